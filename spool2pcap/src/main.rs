//! `spool2pcap`: convert, summarize and check ryll capture spools.
//!
//! Errors are reported as one line naming the file and the problem, and the
//! exit code tells success (0), success with damage skipped (1), usage
//! errors (2) and unreadable input or failed output (3) apart, so scripts and
//! `ryll` itself can react without parsing text.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use spool2pcap::guard::{clean, MAX_TEXT_CHARS};
use spool2pcap::info::{scan, write_text};
use spool2pcap::pipeline::convert::{ConvertError, ConvertReport, Destination};
use spool2pcap::{ConvertOptions, Format, Progress, Redaction, Synthesis, TimeMode};

const EXIT_DAMAGE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_FAILURE: u8 = 3;

/// The help's closing text: exit codes, how channels become TCP
/// connections (ports and SPICE types listed from the one channel table,
/// [`spool2pcap::spice::channels::SPICE_CHANNELS`]), the security model and
/// examples.
fn after_help() -> String {
    use spool2pcap::spice::channels::{known_port, SPICE_CHANNELS};
    // Words wrapped at 78 columns.
    let wrap = |words: Vec<String>| {
        let mut text = String::new();
        let mut line = String::new();
        for word in words {
            if !line.is_empty() && line.len() + 1 + word.len() > 78 {
                text.push_str(&line);
                text.push('\n');
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&word);
        }
        text + &line
    };
    let words = |text: &str| text.split(' ').map(str::to_string).collect::<Vec<_>>();
    let per_channel = |value: &dyn Fn(&str, u8) -> String| {
        SPICE_CHANNELS
            .iter()
            .map(|(name, ty)| format!("{name} {},", value(name, *ty)))
            .collect::<Vec<_>>()
    };
    let ports = wrap(
        [
            words("Client ports:"),
            per_channel(&|name, _| known_port(name).unwrap_or_default().to_string()),
            words("other channels 10100-15099 (hash of the name)."),
        ]
        .concat(),
    );
    let mut types = per_channel(&|_, ty| ty.to_string());
    types[0].insert(0, '(');
    let types = wrap(
        [
            words("type"),
            types,
            words("other names: 10, port) and, if the channel was closed cleanly, a FIN exchange."),
        ]
        .concat(),
    );
    format!(
        "\
Exit status:
  0  success
  1  success, but damaged spool data was found and skipped (see the report)
  2  usage error
  3  the capture could not be read, or the output could not be written

Each channel becomes a TCP connection from 10.0.0.1:<port> to 10.0.0.2:5900.
{ports}

ryll records channels after their SPICE link phase, and Wireshark's SPICE
dissector decodes nothing without one, so by default each connection gets a
synthetic TCP handshake, a synthetic link phase announcing the channel's SPICE
{types}
Data keeps client seq 1000 and server seq 2000. Open the result with:
wireshark -d tcp.port==5900,spice FILE

{AFTER_HELP_REST}"
    )
}

const AFTER_HELP_REST: &str = "\
Capture directories are untrusted (bug reports come from strangers). What
one holds may make spool2pcap read the regular files inside it (bounded in
size), report damage and skip it, and copy its strings, control characters
replaced and length cut, into the output and onto the terminal. It may not
make spool2pcap follow a symlink (none is followed on an output path, nor a
capture file's), wait on a FIFO or device, write anywhere but the output
named, overwrite one of the capture's own files or write inside its spool/,
or write a file Wireshark refuses.

Examples:
  spool2pcap convert ./capture -o ./pcaps
  spool2pcap convert ./capture -w all.pcapng --format pcapng
  spool2pcap convert ./capture --channel display -w - | wireshark -k -i -
  spool2pcap convert --follow -w - ./capture | wireshark -k -i -
  spool2pcap convert ./capture -w report.pcapng --format pcapng --redact inputs,clipboard
  spool2pcap info ./capture --json
  spool2pcap recover ./capture
  spool2pcap verify ./capture";

/// Convert ryll capture spools to pcap/pcapng for Wireshark.
#[derive(Parser, Debug)]
#[command(name = "spool2pcap", version, after_help = after_help())]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Write pcap/pcapng files from a capture directory.
    #[command(after_help = after_help())]
    Convert(ConvertArgs),
    /// Summarize a capture directory (records, bytes, time span, drops,
    /// damage, clean shutdown), like capinfos.
    #[command(after_help = after_help())]
    Info {
        /// Capture directory (the one holding manifest.json and spool/).
        dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read every record, print each damaged region, exit 1 if any.
    #[command(after_help = after_help())]
    Verify {
        /// Capture directory.
        dir: PathBuf,
    },
    /// Move the segments a crashed (killed) session left staged in memory
    /// into its capture directory for good. convert/info read them in place
    /// without this, but a reboot loses them.
    #[command(after_help = after_help())]
    Recover {
        /// Capture directory.
        dir: PathBuf,
    },
    /// List the in-memory traffic rings that sessions which died left on
    /// tmpfs (ryll records every session into one; its next start writes
    /// them as bug reports). With --convert, write each as a pcap and
    /// remove it; with --delete, remove them unread.
    #[command(after_help = after_help())]
    Rings {
        /// Write each ring, all channels merged, keystrokes and clipboard
        /// redacted, as OUTDIR/<ring>.pcap (created 0700 if missing), then
        /// remove the ring.
        #[arg(long, value_name = "OUTDIR", conflicts_with = "delete")]
        convert: Option<PathBuf>,
        /// Remove the rings without reading them.
        #[arg(long)]
        delete: bool,
    },
}

/// `--format`: the command line's names for [`Format`] (the library's
/// types do not depend on clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FormatArg {
    /// Classic libpcap format (`.pcap`), nanosecond timestamps.
    Pcap,
    /// pcapng (`.pcapng`): one interface per channel, named after it.
    Pcapng,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Pcap => Format::Pcap,
            FormatArg::Pcapng => Format::Pcapng,
        }
    }
}

/// `--time`: the command line's names for [`TimeMode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TimeArg {
    /// Wall-clock time: session start (Unix epoch) + the record's offset.
    Absolute,
    /// Time since the session started (the first packet is near 0).
    Relative,
}

impl From<TimeArg> for TimeMode {
    fn from(t: TimeArg) -> TimeMode {
        match t {
            TimeArg::Absolute => TimeMode::Absolute,
            TimeArg::Relative => TimeMode::Relative,
        }
    }
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("out").required(true).args(["outdir", "write"])))]
struct ConvertArgs {
    /// Capture directory (the one holding manifest.json and spool/).
    dir: PathBuf,
    /// Write one file per channel, <channel>.pcap(ng), into OUTDIR
    /// (created with mode 0700 if missing).
    #[arg(short = 'o', long = "outdir", value_name = "OUTDIR")]
    outdir: Option<PathBuf>,
    /// Write all selected channels, merged in time order, into FILE;
    /// "-" writes to standard output.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    write: Option<PathBuf>,
    /// Convert only this channel (repeatable). Default: all channels.
    #[arg(long = "channel", value_name = "NAME", value_parser = parse_channel)]
    channels: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Pcap)]
    format: FormatArg,
    /// Timestamps: wall clock (session start + offset) or from session start.
    #[arg(long, value_enum, default_value_t = TimeArg::Absolute)]
    time: TimeArg,
    /// Overwrite existing output files.
    #[arg(long)]
    force: bool,
    /// Do not put a synthetic SPICE link phase in front of channels whose
    /// capture lacks one (Wireshark then decodes no SPICE message).
    #[arg(long)]
    no_synth_link: bool,
    /// Do not make up a TCP handshake before, and a FIN exchange after, each
    /// channel's packets.
    #[arg(long)]
    no_synth_tcp: bool,
    /// Follow a capture that is being written: stream records as they are
    /// committed (flushing every poll), until the session closes. Needs
    /// -w FILE or -w -.
    #[arg(long)]
    follow: bool,
    /// Overwrite what must not be published: "inputs" (scancodes of key
    /// messages), "clipboard" (clipboard data in agent messages), or both
    /// ("inputs,clipboard", "all"); repeatable. Message headers, sizes,
    /// timing and TCP sequence numbers are kept.
    #[arg(long = "redact", value_name = "WHAT", value_parser = parse_redaction)]
    redact: Vec<Redaction>,
    /// Map the segment files of a cleanly closed capture owned by you
    /// instead of reading them: faster, but a segment that shrinks or hits
    /// a disk error mid-conversion then kills spool2pcap with SIGBUS
    /// instead of giving an error.
    #[arg(long, conflicts_with = "no_mmap")]
    mmap: bool,
    /// Read segment files (the default).
    #[arg(long, hide = true)]
    no_mmap: bool,
}

fn parse_redaction(s: &str) -> Result<Redaction, String> {
    Redaction::parse(s).map_err(|e| e.to_string())
}

fn parse_channel(s: &str) -> Result<String, String> {
    spool::format::validate_channel_name(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

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
        Command::Info { dir, json } => run_info(dir, json),
        Command::Verify { dir } => run_verify(dir),
        Command::Recover { dir } => run_recover(dir),
        Command::Rings { convert, delete } => run_rings(convert.as_deref(), delete),
    }
}

fn run_convert(args: ConvertArgs) -> ExitCode {
    let destination = match (args.outdir, args.write) {
        (Some(dir), _) => Destination::Dir(dir),
        (None, Some(file)) if file.as_os_str() == "-" => Destination::Stdout,
        (None, Some(file)) => Destination::File(file),
        // clap's required group makes this unreachable; answer it anyway.
        (None, None) => {
            eprintln!("spool2pcap: one of -o OUTDIR or -w FILE is required");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let opts = ConvertOptions {
        destination,
        channels: args.channels,
        format: args.format.into(),
        time: args.time.into(),
        force: args.force,
        synth: Synthesis {
            link: !args.no_synth_link,
            tcp: !args.no_synth_tcp,
        },
        redact: args.redact.iter().fold(Redaction::NONE, |a, b| a.union(*b)),
        mmap: args.mmap,
    };
    if args.follow {
        return finish_convert(spool2pcap::pipeline::follow::follow(
            &args.dir,
            &opts,
            spool2pcap::pipeline::follow::DEFAULT_POLL_INTERVAL,
        ));
    }
    let bar = progress_bar();
    let result = spool2pcap::convert_with_progress(&args.dir, &opts, &mut |p: Progress| {
        if let Some(bar) = &bar {
            bar.set_length(p.total.max(p.done));
            bar.set_position(p.done);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    finish_convert(result)
}

fn finish_convert(result: Result<ConvertReport, ConvertError>) -> ExitCode {
    match result {
        Ok(report) => {
            print_report(&report);
            if report.has_damage() {
                ExitCode::from(EXIT_DAMAGE)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("spool2pcap: {}", clean(&e.to_string(), MAX_TEXT_CHARS));
            ExitCode::from(exit_code_of(&e))
        }
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

/// The summary after a conversion, on stderr (stdout may be the capture).
fn print_report(report: &ConvertReport) {
    let _ = report.write_text(&mut std::io::stderr().lock());
}

fn run_info(dir: PathBuf, json: bool) -> ExitCode {
    let info = match scan(&dir, &mut |_, _| {}) {
        Ok(info) => info,
        Err(e) => {
            eprintln!("spool2pcap: {}", clean(&e.to_string(), MAX_TEXT_CHARS));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut out = std::io::stdout().lock();
    let written = if json {
        serde_json::to_writer_pretty(&mut out, &info)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        write_text(&info, &mut out)
    };
    if let Err(e) = written.and_then(|()| out.flush()) {
        eprintln!("spool2pcap: <stdout>: {e}");
        return ExitCode::from(EXIT_FAILURE);
    }
    if info.has_damage() {
        ExitCode::from(EXIT_DAMAGE)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_verify(dir: PathBuf) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let result = scan(&dir, &mut |channel, d| {
        let _ = writeln!(
            out,
            "{channel}: {}: offset {}: {}",
            d.file.display(),
            d.offset,
            clean(&d.kind.to_string(), MAX_TEXT_CHARS)
        );
    });
    let info = match result {
        Ok(info) => info,
        Err(e) => {
            eprintln!("spool2pcap: {}", clean(&e.to_string(), MAX_TEXT_CHARS));
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    for p in &info.problems {
        let _ = writeln!(out, "warning: {p}");
    }
    for m in &info.mismatches {
        let _ = writeln!(out, "mismatch: {m}");
    }
    let records = info
        .channels
        .iter()
        .map(|c| c.records)
        .fold(0, u64::saturating_add);
    let verdict = if info.has_damage() { "DAMAGED" } else { "OK" };
    let _ = writeln!(
        out,
        "{verdict}: {} channels, {} records, {} damaged regions, {} mismatches",
        info.channels.len(),
        records,
        info.damage_count(),
        info.mismatches.len()
    );
    let _ = out.flush();
    if info.has_damage() {
        ExitCode::from(EXIT_DAMAGE)
    } else {
        ExitCode::SUCCESS
    }
}

fn run_recover(dir: PathBuf) -> ExitCode {
    match spool::recover::recover(&dir) {
        Ok(r) => {
            println!("{}", recover_message(&r, &dir));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("spool2pcap: {}", clean(&e.to_string(), MAX_TEXT_CHARS));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run_rings(convert: Option<&Path>, delete: bool) -> ExitCode {
    let Some(root) = spool::staging::ring_root() else {
        println!("no memory-backed filesystem, so no rings");
        return ExitCode::SUCCESS;
    };
    let rings = spool::recover::abandoned_rings(&root);
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
                eprintln!(
                    "spool2pcap: {}: {}",
                    clean(&name, MAX_TEXT_CHARS),
                    clean(&e, MAX_TEXT_CHARS)
                );
                code = ExitCode::from(EXIT_FAILURE);
            }
        }
    }
    code
}

/// Moves a ring's staged segments home (still on tmpfs) and writes it as
/// one redacted pcap in `out`.
fn convert_ring(ring: &Path, out: &Path) -> Result<(), String> {
    spool::recover::recover(ring).map_err(|e| e.to_string())?;
    let name = ring.file_name().unwrap_or_default().to_string_lossy();
    let file = out.join(format!("{name}.pcap"));
    spool::fsutil::create_private_dir(out, false).map_err(|e| format!("{}: {e}", out.display()))?;
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
fn recover_message(r: &spool::recover::RecoveryReport, dir: &Path) -> String {
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
    use spool::recover::RecoveryReport;

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
