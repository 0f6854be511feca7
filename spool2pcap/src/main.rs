//! `spool2pcap`: convert, summarize and check ryll capture spools.
//!
//! Errors are reported as one line naming the file and the problem, and the
//! exit code tells success (0), success with damage skipped (1), usage
//! errors (2) and unreadable input or failed output (3) apart, so scripts and
//! `ryll` itself can react without parsing text. A reader of standard
//! output that goes away (`| head`) ends the command quietly with 0, as it
//! ends tshark and tcpdump.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cli;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use cli::args::{Cli, Command, ConvertArgs, FormatArg};
use cli::checks::check_capture;
use spool2pcap::guard::{clean, MAX_TEXT_CHARS};
use spool2pcap::info::{scan, write_text, CaptureInfo, Verdict};
use spool2pcap::output::OutputTarget;
use spool2pcap::pipeline::convert::{ConvertError, ConvertReport, Destination};
use spool2pcap::{
    ConvertOptions, ExcerptError, ExcerptOptions, Format, Progress, Redaction, Synthesis, TimeMode,
};

const EXIT_DAMAGE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_FAILURE: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Convert(args) => run_convert(args),
        Command::Info { dirs, json } => run_info(&dirs, json),
        Command::Verify { dir, json, quiet } => run_verify(&dir, json, quiet),
        Command::Recover { dir } => run_recover(&dir),
        Command::Rings { convert, delete } => run_rings(convert.as_deref(), delete),
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "spool2pcap", &mut out);
            write_stdout(&out)
        }
        Command::Man => {
            let mut out = Vec::new();
            match clap_mangen::Man::new(Cli::command()).render(&mut out) {
                Ok(()) => write_stdout(&out),
                Err(e) => fail(&format!("rendering the man page: {e}"), EXIT_FAILURE),
            }
        }
    }
}

/// Prints `message` as spool2pcap's one error line and returns `code`.
fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("spool2pcap: {}", clean(message, MAX_TEXT_CHARS));
    ExitCode::from(code)
}

/// Whether `e` is standard output's reader having gone away.
fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Writes `bytes` to standard output: 0, quietly 0 if its reader went
/// away, else the error and 3.
fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("<stdout>: {e}"), EXIT_FAILURE),
    }
}

/// The output format: `--format` if given, else pcapng for a `-w` file
/// named `*.pcapng`, else classic pcap. A `--format` the file name
/// contradicts is warned about (it is what was asked for).
fn output_format(args: &ConvertArgs) -> Format {
    let named_pcapng = args
        .write
        .as_deref()
        .and_then(Path::extension)
        .is_some_and(|e| e.eq_ignore_ascii_case("pcapng"));
    match args.format {
        Some(FormatArg::Pcap) if named_pcapng && !args.quiet => {
            eprintln!("spool2pcap: warning: writing classic pcap (--format pcap) into a file named .pcapng");
            Format::Pcap
        }
        Some(f) => f.into(),
        None if named_pcapng => Format::Pcapng,
        None => Format::Pcap,
    }
}

fn run_convert(args: ConvertArgs) -> ExitCode {
    if let Err(e) = check_capture(&args.dir) {
        return fail(&e, EXIT_FAILURE);
    }
    let destination = match (&args.outdir, &args.write) {
        (Some(dir), _) => Destination::Dir(dir.clone()),
        (None, Some(file)) if file.as_os_str() == "-" => Destination::Stdout,
        (None, Some(file)) => Destination::File(file.clone()),
        // clap's required group makes this unreachable; answer it anyway.
        (None, None) => return fail("one of -o OUTDIR or -w FILE is required", EXIT_USAGE),
    };
    let opts = ConvertOptions {
        destination,
        channels: args.channels.clone(),
        format: output_format(&args),
        time: args.time.into(),
        force: args.force,
        synth: Synthesis {
            link: !args.no_synth_link,
            tcp: !args.no_synth_tcp,
        },
        redact: args.redact.iter().fold(Redaction::NONE, |a, b| a.union(*b)),
        mmap: args.mmap,
        server_port: args.server_port,
    };
    if args.has_cut() {
        return run_cut(&args, &opts);
    }
    if args.follow {
        return finish_convert(
            spool2pcap::pipeline::follow::follow(
                &args.dir,
                &opts,
                spool2pcap::pipeline::follow::DEFAULT_POLL_INTERVAL,
            ),
            args.quiet,
        );
    }
    let bar = (!args.quiet).then(progress_bar).flatten();
    let result = spool2pcap::convert_with_progress(&args.dir, &opts, &mut |p: Progress| {
        if let Some(bar) = &bar {
            bar.set_length(p.total.max(p.done));
            bar.set_position(p.done);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    finish_convert(result, args.quiet)
}

/// `convert` with a cut: the library's excerpt of the session times asked
/// for, as one classic pcap (`-w FILE` or `-w -`).
fn run_cut(args: &ConvertArgs, opts: &ConvertOptions) -> ExitCode {
    let target = match &opts.destination {
        Destination::File(path) => OutputTarget::Path(path.clone()),
        Destination::Stdout => OutputTarget::Stdout,
        Destination::Dir(_) => {
            return fail(
                "a cut (--from, --until, --count) writes one file: use -w FILE or -w -",
                EXIT_USAGE,
            )
        }
    };
    if opts.format != Format::Pcap {
        return fail(
            "a cut (--from, --until, --count) writes classic pcap: name the file .pcap or \
             give --format pcap",
            EXIT_USAGE,
        );
    }
    let from_ns = args.from.unwrap_or(0);
    let until_ns = args.until.unwrap_or(u64::MAX);
    if from_ns > until_ns {
        return fail("--from is after --until: nothing to keep", EXIT_USAGE);
    }
    let selection = match cli::cut::window(&args.dir, &opts.channels, from_ns, until_ns, args.count)
    {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string(), EXIT_FAILURE),
    };
    // The capture's own files are never overwritten, as in a conversion.
    let inputs = spool2pcap::guard::open_capture(&args.dir)
        .and_then(|cap| spool2pcap::guard::InputFiles::of(&args.dir, &cap));
    let inputs = match inputs {
        Ok(i) => i,
        Err(e) => return fail(&e.to_string(), EXIT_FAILURE),
    };
    let out = match target.open(opts.force, Some(&inputs)) {
        Ok(f) => f,
        Err(source) => {
            let e = ConvertError::create(&target, source);
            return fail(&e.to_string(), exit_code_of(&e));
        }
    };
    let excerpt = ExcerptOptions {
        channels: opts.channels.clone(),
        selection,
        redact: opts.redact,
        synth: opts.synth,
        time: opts.time,
    };
    let result = spool2pcap::write_excerpt(&args.dir, &excerpt, out);
    match result {
        Ok(mut report) => {
            if let OutputTarget::Path(p) = &target {
                for c in report.channels.iter_mut().filter(|c| !c.carried_nothing) {
                    c.output = Some(p.clone());
                }
            }
            finish_convert(Ok(report), args.quiet)
        }
        Err(ExcerptError::Capture(e)) => finish_convert(Err(e), args.quiet),
        Err(ExcerptError::Write(pcap_file::PcapError::IoError(e))) if is_broken_pipe(&e) => {
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("{target}: {e}"), EXIT_FAILURE),
    }
}

fn finish_convert(result: Result<ConvertReport, ConvertError>, quiet: bool) -> ExitCode {
    match result {
        Ok(report) => {
            if !quiet {
                // The summary goes to stderr: stdout may be the capture.
                let _ = report.write_text(&mut std::io::stderr().lock());
            }
            if report.has_damage() {
                ExitCode::from(EXIT_DAMAGE)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(ConvertError::Write {
            path: OutputTarget::Stdout,
            source: pcap_file::PcapError::IoError(e),
        }) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string(), exit_code_of(&e)),
    }
}

fn exit_code_of(e: &ConvertError) -> u8 {
    if e.is_usage() {
        EXIT_USAGE
    } else {
        EXIT_FAILURE
    }
}

/// A progress bar on stderr when it is a terminal; nothing otherwise, so
/// logs and pipes get no control characters.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// Reads `dir` for `info` or `verify`, after the common first check.
fn scan_capture(
    dir: &Path,
    on_damage: &mut dyn FnMut(&str, &spool::read::event::Damage),
) -> Result<CaptureInfo, String> {
    check_capture(dir)?;
    scan(dir, on_damage).map_err(|e| e.to_string())
}

/// `info DIR...`: each capture's summary, one after the other (JSON: one
/// object, or an array of them for several); the exit status is the worst.
fn run_info(dirs: &[PathBuf], json: bool) -> ExitCode {
    let mut infos = Vec::new();
    let mut code = 0;
    for dir in dirs {
        match scan_capture(dir, &mut |_, _| {}) {
            Ok(info) => {
                if info.has_damage() {
                    code = code.max(EXIT_DAMAGE);
                }
                infos.push(info);
            }
            Err(e) => {
                eprintln!("spool2pcap: {}", clean(&e, MAX_TEXT_CHARS));
                code = EXIT_FAILURE;
            }
        }
    }
    let mut out = Vec::new();
    let written = if json && dirs.len() == 1 {
        infos
            .first()
            .map_or(Ok(()), |i| serde_json::to_writer_pretty(&mut out, i))
    } else if json {
        serde_json::to_writer_pretty(&mut out, &infos)
    } else {
        Ok(())
    };
    if let Err(e) = written {
        return fail(&format!("<stdout>: {e}"), EXIT_FAILURE);
    }
    if json && !(dirs.len() == 1 && infos.is_empty()) {
        out.push(b'\n');
    }
    if !json {
        for (i, info) in infos.iter().enumerate() {
            if i > 0 {
                out.push(b'\n');
            }
            // Writing into memory cannot fail.
            let _ = write_text(info, &mut out);
        }
    }
    match write_stdout(&out) {
        c if c == ExitCode::SUCCESS => ExitCode::from(code),
        failed => failed,
    }
}

/// `verify DIR`: each damaged region as it is found, then the verdict
/// (text), or only the verdict (`--json`), or nothing (`--quiet`).
fn run_verify(dir: &Path, json: bool, quiet: bool) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let mut gone = false;
    let stream = !json && !quiet;
    let result = scan_capture(dir, &mut |channel, d| {
        if stream && !gone {
            gone = writeln!(
                out,
                "{channel}: {}: offset {}: {}",
                d.file.display(),
                d.offset,
                clean(&d.kind.to_string(), MAX_TEXT_CHARS)
            )
            .is_err();
        }
    });
    drop(out);
    let info = match result {
        Ok(info) => info,
        Err(e) => return fail(&e, EXIT_FAILURE),
    };
    let verdict = Verdict::of(&info);
    let mut text = Vec::new();
    if json {
        // Writing into memory cannot fail.
        let _ = serde_json::to_writer_pretty(&mut text, &verdict);
        text.push(b'\n');
    } else if !quiet {
        let _ = verdict.write_text(&info, &mut text);
    }
    let written = write_stdout(&text);
    if written != ExitCode::SUCCESS {
        return written;
    }
    if verdict.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DAMAGE)
    }
}

fn run_recover(dir: &Path) -> ExitCode {
    // recover needs the manifest; without one, the common check says what
    // the directory is (a file, a spool/, a folder of captures) in the
    // words of every other command.
    if !dir.join(spool::store::manifest::MANIFEST_FILE).is_file() {
        if let Err(e) = check_capture(dir) {
            return fail(&e, EXIT_FAILURE);
        }
    }
    match spool::store::recover::recover(dir) {
        Ok(r) => {
            println!("{}", recover_message(&r, dir));
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string(), EXIT_FAILURE),
    }
}

fn run_rings(convert: Option<&Path>, delete: bool) -> ExitCode {
    let Some(root) = spool::store::staging::ring_root() else {
        println!("no memory-backed filesystem, so no rings");
        return ExitCode::SUCCESS;
    };
    let rings = spool::store::recover::abandoned_rings(&root);
    if rings.is_empty() {
        println!("{}: no ring of a session that died", root.display());
    }
    let mut code = ExitCode::SUCCESS;
    for ring in rings {
        let name = ring.dir.display().to_string();
        let started = spool2pcap::time::UtcDateTime::from_unix_secs(
            ring.manifest.session_start_unix_ns / 1_000_000_000,
        );
        println!(
            "{}  session started {}",
            clean(&name, MAX_TEXT_CHARS),
            started.rfc3339()
        );
        let done = match convert {
            Some(out) => convert_ring(&ring.dir, out),
            None if delete => Ok(()),
            None => continue,
        };
        match done.and_then(|()| {
            std::fs::remove_dir_all(&ring.dir).map_err(|e| format!("removing it: {e}"))
        }) {
            Ok(()) => println!("  removed"),
            Err(e) => {
                code = fail(&format!("{name}: {e}"), EXIT_FAILURE);
            }
        }
    }
    code
}

/// Moves a ring's staged segments home (still on tmpfs) and writes it as
/// one redacted pcap in `out`.
fn convert_ring(ring: &Path, out: &Path) -> Result<(), String> {
    spool::store::recover::recover(ring).map_err(|e| e.to_string())?;
    let name = ring.file_name().unwrap_or_default().to_string_lossy();
    let file = out.join(format!("{name}.pcap"));
    spool::store::fsutil::create_private_dir(out, false)
        .map_err(|e| format!("{}: {e}", out.display()))?;
    let opts = ConvertOptions {
        destination: Destination::File(file.clone()),
        channels: Vec::new(),
        format: Format::Pcap,
        time: TimeMode::Absolute,
        force: false,
        synth: Synthesis {
            link: true,
            tcp: true,
        },
        redact: Redaction::ALL,
        mmap: false,
        server_port: spool2pcap::spice::channels::SERVER_PORT,
    };
    let report = spool2pcap::convert(ring, &opts).map_err(|e| e.to_string())?;
    println!(
        "  written to {} ({} frames)",
        file.display(),
        report.frames()
    );
    Ok(())
}

/// What `recover` did, in one line: a move left pending by a clean close
/// finished, segments of a session that stopped without closing saved, or
/// nothing to do.
fn recover_message(r: &spool::store::recover::RecoveryReport, dir: &Path) -> String {
    let Some(staging) = &r.staging_dir else {
        return format!(
            "{}: nothing to recover (no segments staged in memory)",
            dir.display()
        );
    };
    let what = format!(
        "{} segments ({} bytes) from {} into {}",
        r.segments,
        r.bytes,
        clean(&staging.display().to_string(), MAX_TEXT_CHARS),
        dir.display()
    );
    if r.was_pending_move {
        format!(
            "moved {what}; the session had closed cleanly and its segments were still \
             being moved"
        )
    } else {
        format!("recovered {what}; the session did not shut down cleanly")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spool::store::recover::RecoveryReport;

    #[test]
    fn recover_says_whether_the_session_closed_cleanly() {
        let dir = Path::new("/cap");
        let mut r = RecoveryReport {
            segments: 3,
            bytes: 4096,
            staging_dir: Some(PathBuf::from("/dev/shm/st")),
            was_pending_move: true,
        };
        let pending = recover_message(&r, dir);
        assert_eq!(
            pending,
            "moved 3 segments (4096 bytes) from /dev/shm/st into /cap; the session had \
             closed cleanly and its segments were still being moved"
        );
        r.was_pending_move = false;
        let crashed = recover_message(&r, dir);
        assert_eq!(
            crashed,
            "recovered 3 segments (4096 bytes) from /dev/shm/st into /cap; the session did \
             not shut down cleanly"
        );
        r.staging_dir = None;
        assert!(recover_message(&r, dir).contains("nothing to recover"));
    }
}
