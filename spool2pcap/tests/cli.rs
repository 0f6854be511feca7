//! The `spool2pcap` binary: exit codes, messages, JSON, stdout output.

use std::process::{Command, Output};

use spool::format::Direction::{ClientToServer as C2S, ServerToClient as S2C};
use spool2pcap::testkit::{simple_channel, write_segment, Seg};

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spool2pcap"))
        .args(args)
        .output()
        .expect("binary runs")
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*][..] };
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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
    assert!(
        stderr(&o).contains("display.pcap: already exists"),
        "{}",
        stderr(&o)
    );
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
    assert_eq!(count_pcap(&o.stdout), 3, "one frame per record");
    // By default each of the two channels also gets a handshake (3), a link
    // phase (5) and a close (3).
    let o = run(args!["convert", cap.path(), "-w", "-"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(count_pcap(&o.stdout), 3 + 2 * 11);
    assert!(
        stderr(&o).contains("wireshark -d tcp.port==5900,spice -k -i -"),
        "{}",
        stderr(&o)
    );
}

fn count_pcap(bytes: &[u8]) -> usize {
    let mut r = pcap_file::pcap::PcapReader::new(bytes).unwrap();
    let mut n = 0;
    while let Some(p) = r.next_packet() {
        p.unwrap();
        n += 1;
    }
    n
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
        assert!(
            stderr(&o).contains(dir.path().to_str().unwrap()),
            "{}",
            stderr(&o)
        );
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
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/qemu-seabios-4ch");
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
        .take_while(|l| !l.starts_with("wireshark -d"));
    for line in generated {
        assert!(line.chars().count() <= 80, "{line:?}");
    }
}
