//! The `spool2pcap` binary: exit codes, messages, JSON, stdout output.

mod common;

use std::process::Command;

use common::{assert_stderr_has, code, run, shipped_fixture, stderr, stdout};
use spool::store::format::Direction::{ClientToServer as C2S, ServerToClient as S2C};
use spool2pcap::capture_builder::{simple_channel, write_segment, Seg};

fn good_capture() -> tempfile::TempDir {
    let cap = tempfile::tempdir().unwrap();
    simple_channel(cap.path(), "main", &[(C2S, 10, b"m1"), (S2C, 30, b"m2")]);
    simple_channel(cap.path(), "display", &[(S2C, 20, b"d1")]);
    cap
}

fn damaged_capture() -> tempfile::TempDir {
    let cap = good_capture();
    let mut s = Seg::new("cursor", 0, 0);
    s.data(S2C, 1, b"12345678");
    let at = s.data(S2C, 2, b"abcdefgh");
    s.data(S2C, 3, b"ABCDEFGH");
    s.seal(true);
    let mut b = s.finish(0);
    b[at + 30] ^= 1;
    write_segment(cap.path(), "cursor", 0, &b);
    cap
}

#[test]
fn convert_success_is_0_and_summarizes_on_stderr() {
    let cap = good_capture();
    let out = tempfile::tempdir().unwrap();
    let o = run(args!["convert", cap.path(), "-o", out.path()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let e = stderr(&o);
    assert!(e.contains("main: 2 records"), "{e}");
    assert!(e.contains("port 10002"), "{e}");
    assert!(out.path().join("main.pcap").exists());
    // Again without --force: refused, exit 3, names the file.
    let o = run(args!["convert", cap.path(), "-o", out.path()]);
    assert_eq!(code(&o), 3);
    assert_stderr_has(&o, "display.pcap: already exists");
    let o = run(args!["convert", cap.path(), "-o", out.path(), "--force"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn convert_to_stdout_writes_a_pcap_stream() {
    let cap = good_capture();
    let o = run(args![
        "convert",
        cap.path(),
        "-w",
        "-",
        "--time",
        "relative",
        "--no-synth-link",
        "--no-synth-tcp"
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        testkit::pcap::frames(&o.stdout).len(),
        3,
        "one frame per record"
    );
    // By default each of the two channels also gets a handshake (3), a link
    // phase (5) and a close (3).
    let o = run(args!["convert", cap.path(), "-w", "-"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(testkit::pcap::frames(&o.stdout).len(), 3 + 2 * 11);
    assert_stderr_has(
        &o,
        "(SPICE decodes with no option): ... | wireshark -k -i -",
    );
}

#[test]
fn damage_gives_exit_1_and_names_file_and_offset() {
    let cap = damaged_capture();
    let out = tempfile::tempdir().unwrap();
    let o = run(args![
        "convert",
        cap.path(),
        "-w",
        &out.path().join("x.pcapng"),
        "--format",
        "pcapng"
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("cursor/00000000.seg: offset 160"), "{e}");

    let o = run(args!["verify", cap.path()]);
    assert_eq!(code(&o), 1);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("cursor: "), "{s}");
    assert!(s.contains("offset 160"), "{s}");
    assert!(s.contains("DAMAGED"), "{s}");

    let o = run(args!["verify", good_capture().path()]);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("OK: 2 channels, 3 records"));
}

#[test]
fn usage_errors_are_2() {
    let cap = good_capture();
    let out = tempfile::tempdir().unwrap();
    for a in [
        args!["convert", cap.path()],
        args!["convert", cap.path(), "-o", out.path(), "--format", "bogus"],
        args![
            "convert",
            cap.path(),
            "-o",
            out.path(),
            "--channel",
            "../etc"
        ],
        args!["convert", cap.path(), "-o", out.path(), "--channel", "nope"],
        args!["frobnicate"],
    ] {
        let o = run(a);
        assert_eq!(code(&o), 2, "{a:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
    let o = run(args!["--help"]);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Exit status"));
}

#[test]
fn unreadable_input_is_3() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    for a in [
        args!["convert", &missing, "-o", out.path()],
        args!["info", &missing],
        args!["verify", dir.path()],
    ] {
        let o = run(a);
        assert_eq!(code(&o), 3, "{a:?}: {}", stderr(&o));
        assert_stderr_has(&o, dir.path().to_str().unwrap());
        assert!(!stderr(&o).contains("panicked"));
    }
}

#[test]
fn info_text_and_json() {
    let cap = damaged_capture();
    let o = run(args!["info", cap.path()]);
    assert_eq!(code(&o), 1);
    let t = String::from_utf8_lossy(&o.stdout);
    assert!(t.contains("Channel display (client port 10002)"), "{t}");
    assert!(
        t.contains("Session start:       2023-11-14 22:13:20"),
        "{t}"
    );
    assert!(t.contains("Clean shutdown:      unknown"), "{t}");

    let o = run(args!["info", cap.path(), "--json"]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let chans = v["channels"].as_array().unwrap();
    assert_eq!(chans.len(), 3);
    let cursor = chans.iter().find(|c| c["name"] == "cursor").unwrap();
    assert_eq!(cursor["damage_count"], 1);
    assert_eq!(cursor["records"], 2);
    assert_eq!(cursor["closed_cleanly"], true);
    assert_eq!(cursor["client_port"], 10004);
    let main = chans.iter().find(|c| c["name"] == "main").unwrap();
    assert_eq!(main["records_c2s"], 1);
    assert_eq!(main["bytes_s2c"], 2);
    assert_eq!(main["first_ts_ns"], 10);
    assert_eq!(main["last_ts_ns"], 30);
}

/// `--mmap` maps the segments of a closed capture instead of reading
/// them (the default); the output is the same, byte for byte.
#[test]
fn mmap_converts_the_same_bytes() {
    let fixture = shipped_fixture();
    let mapped = run(args![
        "convert", &fixture, "-w", "-", "--format", "pcapng", "--mmap"
    ]);
    assert_eq!(code(&mapped), 0, "{}", stderr(&mapped));
    let read = run(args!["convert", &fixture, "-w", "-", "--format", "pcapng"]);
    assert_eq!(code(&read), 0, "{}", stderr(&read));
    assert!(
        mapped.stdout.len() > 100_000,
        "{} bytes",
        mapped.stdout.len()
    );
    assert!(mapped.stdout == read.stdout, "outputs differ");
}

#[test]
fn help_lists_every_known_channel_with_its_port_and_type_in_short_lines() {
    let out = run(&["--help".as_ref()]);
    assert_eq!(code(&out), 0);
    let help = String::from_utf8_lossy(&out.stdout);
    // Wrapping may break a line between a name and its number.
    let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for (name, ty) in spool2pcap::spice::channels::SPICE_CHANNELS {
        let port = spool2pcap::spice::channels::known_port(name).unwrap();
        assert!(flat.contains(&format!("{name} {port},")), "{name} {port}");
        assert!(flat.contains(&format!("{name} {ty},")), "{name} {ty}");
    }
    let generated = help
        .lines()
        .skip_while(|l| !l.starts_with("Each channel"))
        .take_while(|l| !l.starts_with("wireshark FILE"));
    for line in generated {
        assert!(line.chars().count() <= 80, "{line:?}");
    }
}

/// The command printed after converting opens the file with no option
/// (the ports are ones Wireshark's SPICE heuristic gets); with
/// `--no-synth-link` nothing would decode, so no such command is given.
#[test]
fn open_hint_needs_no_option_and_is_absent_without_a_link_phase() {
    let cap = good_capture();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("all.pcap");
    let o = run(args!["convert", cap.path(), "-w", &file]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("\n  wireshark {}\n", file.display())),
        "{e}"
    );
    assert!(!e.contains(" -d "), "{e}");
    let o = run(args![
        "convert",
        cap.path(),
        "-w",
        &file,
        "--force",
        "--no-synth-link"
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(!e.contains("wireshark"), "{e}");
    assert!(e.contains("no SPICE link phase in the output"), "{e}");
}

/// `-w FILE.pcapng` writes pcapng without `--format`; `--format` wins, with
/// a warning when the name says otherwise.
#[test]
fn the_file_name_picks_pcapng() {
    let cap = good_capture();
    let out = tempfile::tempdir().unwrap();
    let ng = out.path().join("a.pcapng");
    let o = run(args!["convert", cap.path(), "-w", &ng]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let bytes = std::fs::read(&ng).unwrap();
    assert_eq!(
        &bytes[..4],
        &[0x0a, 0x0d, 0x0d, 0x0a],
        "a pcapng section header"
    );
    let o = run(args![
        "convert",
        cap.path(),
        "-w",
        &ng,
        "--force",
        "--format",
        "pcap"
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_stderr_has(&o, "warning: writing classic pcap");
    assert_eq!(
        testkit::pcap::frames(&std::fs::read(&ng).unwrap()).len(),
        25
    );
    let classic = out.path().join("a.pcap");
    let o = run(args!["convert", cap.path(), "-w", &classic]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        testkit::pcap::frames(&std::fs::read(&classic).unwrap()).len(),
        25
    );
}

/// A reader of standard output that goes away (`| head`) ends the
/// conversion quietly with status 0, as it ends tshark.
#[test]
fn a_closed_pipe_ends_quietly_with_0() {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_spool2pcap"))
        .args([
            "convert".as_ref(),
            shipped_fixture().as_os_str(),
            "-w".as_ref(),
            "-".as_ref(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 100];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe's read end is closed here; the output is ~450 KB, far more
    // than a pipe holds, so the writer meets EPIPE.
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    // info's reader going away: the same.
    let mut child = Command::new(env!("CARGO_BIN_EXE_spool2pcap"))
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
}

/// `--channel` takes a comma list, like `--redact`; every word `--redact`
/// accepts is in its help.
#[test]
fn channel_takes_a_list_and_redact_lists_its_words() {
    let cap = good_capture();
    let out = tempfile::tempdir().unwrap();
    let o = run(args![
        "convert",
        cap.path(),
        "-o",
        out.path(),
        "--channel",
        "display,main"
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(out.path().join("main.pcap").exists());
    assert!(out.path().join("display.pcap").exists());
    let o = run(args![
        "convert",
        cap.path(),
        "-o",
        out.path(),
        "--channel",
        "main,nope"
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let help = stdout(&run(args!["convert", "--help"]));
    let short = stdout(&run(args!["convert", "-h"]));
    for word in ["inputs", "keys", "keystrokes", "clipboard", "all", "none"] {
        assert!(spool2pcap::Redaction::parse(word).is_ok(), "{word}");
        assert!(help.contains(&format!("\"{word}\"")), "{word}: {help}");
        assert!(short.contains(word), "{word}: {short}");
    }
}

/// The long explanation is the top-level `--help`'s, once; each command
/// has its own help, short with `-h` and long with `--help`.
#[test]
fn help_explains_once_and_commands_have_their_own() {
    let top = stdout(&run(args!["--help"]));
    assert_eq!(top.matches("Exit status:").count(), 1, "{top}");
    assert!(!stdout(&run(args!["-h"])).contains("Exit status:"));
    for cmd in [
        "convert",
        "info",
        "verify",
        "recover",
        "rings",
        "completions",
        "man",
    ] {
        let long = run(args![cmd, "--help"]);
        let short = run(args![cmd, "-h"]);
        assert_eq!((code(&long), code(&short)), (0, 0), "{cmd}");
        let (long, short) = (stdout(&long), stdout(&short));
        assert!(!long.contains("Exit status:"), "{cmd}: {long}");
        assert!(short.len() < long.len(), "{cmd}: -h is not shorter");
    }
}

/// What the user named instead of a capture directory gets one wording in
/// every command, and a hint where one can be given.
#[test]
fn errors_say_what_was_given_and_what_to_give() {
    let fixture = shipped_fixture();
    let manifest = fixture.join("manifest.json");
    for cmd in ["info", "verify", "recover"] {
        let o = run(args![cmd, &manifest]);
        assert_eq!(code(&o), 3, "{cmd}");
        let e = stderr(&o);
        assert!(
            e.contains("manifest.json: is a file, not a capture directory"),
            "{cmd}: {e}"
        );
        assert!(!e.contains("manifest.json/manifest.json"), "{cmd}: {e}");
        assert!(
            e.contains(&format!("its capture directory is {}", fixture.display())),
            "{e}"
        );
    }
    let o = run(args!["convert", &manifest, "-w", "-"]);
    assert_stderr_has(&o, "is a file, not a capture directory");
    // spool/ of a capture: give the capture.
    let o = run(args!["info", &fixture.join("spool")]);
    assert_eq!(code(&o), 3);
    assert_stderr_has(&o, "it is the spool/ of the capture");
    // A folder of captures: name some, and how to see them all.
    let folder = fixture.parent().unwrap().join("damaged");
    for cmd in ["info", "verify", "recover"] {
        let o = run(args![cmd, &folder]);
        assert_eq!(code(&o), 3, "{cmd}");
        let e = stderr(&o);
        assert!(e.contains("not a capture directory"), "{cmd}: {e}");
        assert!(
            e.contains("it holds captures (absurd-len, bad-magic"),
            "{cmd}: {e}"
        );
    }
    // recover says "not a capture directory" as the others do.
    let empty = tempfile::tempdir().unwrap();
    let info = stderr(&run(args!["info", empty.path()]));
    let recover = stderr(&run(args!["recover", empty.path()]));
    assert_eq!(info, recover);
    assert!(recover.contains(": not a capture directory"), "{recover}");
    // -w DIR is a directory, with and without --force.
    let cap = good_capture();
    for force in [false, true] {
        let mut a = vec![
            "convert".as_ref(),
            cap.path().as_os_str(),
            "-w".as_ref(),
            empty.path().as_os_str(),
        ];
        if force {
            a.push("--force".as_ref());
        }
        let o = run(&a);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("is a directory: -w names the file to write"),
            "{e}"
        );
        assert!(!e.contains("--force"), "{e}");
    }
}

/// `--quiet` prints nothing but errors; `verify -q` only sets the status.
#[test]
fn quiet_prints_nothing() {
    let cap = good_capture();
    let out = tempfile::tempdir().unwrap();
    let o = run(args!["convert", cap.path(), "-o", out.path(), "-q"]);
    assert_eq!(code(&o), 0);
    assert_eq!((stdout(&o), stderr(&o)), (String::new(), String::new()));
    let o = run(args![
        "convert",
        damaged_capture().path(),
        "-w",
        &out.path().join("d.pcap"),
        "--quiet"
    ]);
    assert_eq!(code(&o), 1);
    assert_eq!(stderr(&o), "");
    let o = run(args!["verify", "-q", damaged_capture().path()]);
    assert_eq!(code(&o), 1);
    assert_eq!((stdout(&o), stderr(&o)), (String::new(), String::new()));
    let o = run(args!["verify", "--quiet", cap.path()]);
    assert_eq!(code(&o), 0);
    assert_eq!(stdout(&o), "");
}

/// `verify --json`: the verdict, as `info --json` counts it.
#[test]
fn verify_json() {
    let o = run(args!["verify", damaged_capture().path(), "--json"]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["channels"], 3);
    assert_eq!(v["records"], 5);
    assert_eq!(v["damaged_regions"], 1);
    assert_eq!(v["damaged_channels"][0]["name"], "cursor");
    assert_eq!(v["damaged_channels"][0]["damage"][0]["offset"], 160);
    let o = run(args!["verify", good_capture().path(), "--json"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["records_lost"].as_u64()),
        (Some(true), Some(0))
    );
}

/// `info` over several captures, like capinfos: one summary after the
/// other (a JSON array), the worst exit status, an unreadable one named.
#[test]
fn info_over_several_captures() {
    let (good, bad) = (good_capture(), damaged_capture());
    let missing = good.path().join("nope");
    let o = run(args!["info", good.path(), bad.path()]);
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o).matches("Capture directory:").count(), 2);
    let o = run(args!["info", "--json", good.path(), bad.path(), &missing]);
    assert_eq!(code(&o), 3);
    assert_stderr_has(&o, "nope");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let all = v.as_array().expect("an array for several captures");
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["capture"], bad.path().to_str().unwrap());
    // One capture: one object, as before.
    let o = run(args!["info", "--json", good.path()]);
    assert!(serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .unwrap()
        .is_object());
}

/// A cut by time (`--from`, `--until`) and count (`-c`): only data records
/// inside it, each kept channel still opening with its synthetic packets.
#[test]
fn cut_by_time_and_count() {
    let cap = tempfile::tempdir().unwrap();
    // One whole SPICE message per record (mini header: type 101, 2 bytes
    // of body), so every record is where a message starts.
    const MESSAGE: &[u8] = &[101, 0, 2, 0, 0, 0, b'x', b'y'];
    let records: Vec<(spool::store::format::Direction, u64, &[u8])> = (1..=10)
        .map(|i| (S2C, i * 1_000_000_000, MESSAGE))
        .collect();
    simple_channel(cap.path(), "display", &records);
    let data_times = |bytes: &[u8]| -> Vec<u64> {
        // Data frames carry the message; synthetic ones do not.
        testkit::pcap::frames(bytes)
            .iter()
            .filter(|f| f.data.ends_with(MESSAGE))
            .map(|f| f.ts.as_secs())
            .collect::<Vec<_>>()
    };
    let o = run(args![
        "convert",
        cap.path(),
        "-w",
        "-",
        "--time",
        "relative",
        "--from",
        "3",
        "--until",
        "6.5"
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(data_times(&o.stdout), [3, 4, 5, 6]);
    let o = run(args![
        "convert",
        cap.path(),
        "-w",
        "-",
        "--time",
        "relative",
        "--from",
        "2",
        "-c",
        "3"
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(data_times(&o.stdout), [2, 3, 4]);
    let o = run(args![
        "convert",
        cap.path(),
        "-w",
        "-",
        "--time",
        "relative",
        "--count",
        "100"
    ]);
    assert_eq!(data_times(&o.stdout).len(), 10);
    let out = tempfile::tempdir().unwrap();
    for bad in [
        args!["convert", cap.path(), "-o", out.path(), "--until", "3"],
        args![
            "convert",
            cap.path(),
            "-w",
            &out.path().join("x.pcapng"),
            "--until",
            "3"
        ],
        args![
            "convert",
            cap.path(),
            "-w",
            "-",
            "--from",
            "5",
            "--until",
            "3"
        ],
        args!["convert", cap.path(), "-w", "-", "-c", "0"],
        args!["convert", cap.path(), "-w", "-", "--from", "x"],
        args!["convert", cap.path(), "-w", "-", "--follow", "--from", "1"],
    ] {
        let o = run(bad);
        assert_eq!(code(&o), 2, "{bad:?}: {}", stderr(&o));
    }
}

/// Completions and the man page come from the clap definitions: the bash
/// script parses (`bash -n`), every shell gets one, and the man page is
/// roff naming every command.
#[test]
fn completions_and_man_page_are_generated() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = run(args!["completions", shell]);
        assert_eq!(code(&o), 0, "{shell}");
        assert!(stdout(&o).contains("spool2pcap"), "{shell}");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("spool2pcap.bash");
    std::fs::write(&script, run(args!["completions", "bash"]).stdout).unwrap();
    let o = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash runs");
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&run(args!["completions", "bash"]));
    for word in ["convert", "verify", "--follow", "--redact", "--until"] {
        assert!(text.contains(word), "{word}");
    }
    let o = run(args!["man"]);
    assert_eq!(code(&o), 0);
    let man = stdout(&o);
    assert!(man.contains(".TH spool2pcap 1"), "{man}");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH SUBCOMMANDS",
    ] {
        assert!(man.contains(section), "{section}");
    }
    for cmd in ["convert", "info", "verify", "recover", "rings"] {
        assert!(man.contains(&format!("spool2pcap\\-{cmd}")), "{cmd}");
    }
}

/// `--server-port` puts the synthetic server elsewhere; the printed command
/// then asks Wireshark for SPICE on it (5900 is VNC's to Wireshark).
#[test]
fn a_chosen_server_port() {
    let cap = good_capture();
    let o = run(args![
        "convert",
        cap.path(),
        "-w",
        "-",
        "--server-port",
        "5900"
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_stderr_has(&o, "wireshark -d tcp.port==5900,spice -k -i -");
    let frames = testkit::pcap::frames(&o.stdout);
    for t in frames.iter().map(testkit::tcp::Segment::parse) {
        assert!(
            t.src_port == 5900 || t.dst_port == 5900,
            "{} -> {}",
            t.src_port,
            t.dst_port
        );
    }
    assert_eq!(frames.len(), 25);
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("p.pcapng");
    let o = run(args![
        "convert",
        cap.path(),
        "-w",
        &file,
        "--server-port",
        "5900"
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let bytes = std::fs::read(&file).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("-> 10.0.0.2:5900"), "interface descriptions");
    assert!(text.contains("Decode with: wireshark -d tcp.port==5900,spice FILE"));
    for bad in [
        args!["convert", cap.path(), "-w", "-", "--server-port", "0"],
        args![
            "convert",
            cap.path(),
            "-w",
            "-",
            "--server-port",
            "5900",
            "--until",
            "1"
        ],
    ] {
        assert_eq!(code(&run(bad)), 2, "{bad:?}");
    }
}
