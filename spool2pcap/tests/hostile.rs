//! The `spool2pcap` binary on hostile capture directories: what a capture
//! may not make it do (see the crate's `guard` module). Every run has a
//! deadline, so a blocking open fails the test instead of hanging it.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{code, run, stderr};
use spool::store::format::Direction::{ClientToServer as C2S, ServerToClient as S2C};
use spool2pcap::capture_builder::{simple_channel, write_manifest, write_segment, Seg};
use testkit::files::mkfifo;

/// A closed capture of two channels, with a manifest holding `extra`
/// fields over ryll's.
fn capture_with_manifest(extra: serde_json::Value) -> tempfile::TempDir {
    let cap = tempfile::tempdir().unwrap();
    simple_channel(cap.path(), "main", &[(C2S, 10, b"m1"), (S2C, 30, b"m2")]);
    simple_channel(cap.path(), "display", &[(S2C, 20, b"d1")]);
    write_manifest(cap.path(), extra);
    cap
}

fn seg_path(cap: &Path, channel: &str) -> PathBuf {
    cap.join("spool").join(channel).join("00000000.seg")
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn a_symlinked_output_directory_is_refused_however_spelled() {
    let cap = capture_with_manifest(serde_json::json!({}));
    let work = tempfile::tempdir().unwrap();
    let target = work.path().join("system");
    std::fs::create_dir(&target).unwrap();
    let link = work.path().join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let l = link.display().to_string();
    for spelled in [
        l.clone(),
        format!("{l}/"),
        format!("{l}//"),
        format!("{l}/."),
        format!("{l}/./"),
        format!("{l}/sub"),
        format!("{l}/sub/.."),
    ] {
        let o = run(args!["convert", cap.path(), "-o", &spelled]);
        assert_eq!(code(&o), 3, "-o {spelled}: {}", stderr(&o));
        assert!(stderr(&o).contains("symlink"), "{}", stderr(&o));
        let o = run(args![
            "convert",
            cap.path(),
            "-w",
            &format!("{spelled}/all.pcap")
        ]);
        assert_ne!(code(&o), 0, "-w {spelled}/all.pcap");
    }
    // A link to a file is not followed either, --force or not.
    let file = work.path().join("file");
    std::fs::write(&file, b"keep").unwrap();
    let flink = work.path().join("flink.pcap");
    std::os::unix::fs::symlink(&file, &flink).unwrap();
    let o = run(args!["convert", cap.path(), "-w", &flink, "--force"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert_eq!(std::fs::read(&file).unwrap(), b"keep");
    assert_eq!(entries(&target), 0, "nothing written through the link");
}

#[test]
fn fifos_are_refused_without_waiting() {
    // As the output, with and without --force.
    let cap = capture_with_manifest(serde_json::json!({}));
    let work = tempfile::tempdir().unwrap();
    let fifo = work.path().join("out.pcap");
    mkfifo(&fifo);
    let o = run(args!["convert", cap.path(), "-w", &fifo, "--force"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    let o = run(args!["convert", cap.path(), "-w", &fifo]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let o = run(args![
        "convert",
        "--follow",
        cap.path(),
        "-w",
        &fifo,
        "--force"
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));

    // In place of manifest.json: every command refuses the capture.
    let bad = capture_with_manifest(serde_json::json!({}));
    std::fs::remove_file(bad.path().join("manifest.json")).unwrap();
    mkfifo(&bad.path().join("manifest.json"));
    let out = work.path().join("m.pcap");
    for o in [
        run(args!["convert", bad.path(), "-w", &out]),
        run(args!["convert", "--follow", bad.path(), "-w", &out]),
        run(args!["info", bad.path()]),
        run(args!["verify", bad.path()]),
    ] {
        assert_eq!(code(&o), 3, "{}", stderr(&o));
        assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    }
    assert!(!out.exists());

    // In place of metadata.json: ignored with a warning.
    let meta = capture_with_manifest(serde_json::json!({}));
    mkfifo(&meta.path().join("metadata.json"));
    let o = run(args![
        "convert",
        meta.path(),
        "-w",
        &work.path().join("x.pcap")
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("metadata.json"), "{}", stderr(&o));
    let o = run(args!["info", meta.path()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    // In place of a segment: damage, reported, the rest converted.
    let seg = capture_with_manifest(serde_json::json!({}));
    std::fs::remove_file(seg_path(seg.path(), "display")).unwrap();
    mkfifo(&seg_path(seg.path(), "display"));
    let o = run(args![
        "convert",
        seg.path(),
        "-w",
        &work.path().join("s.pcap")
    ]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("main: 2 records"), "{}", stderr(&o));
    let o = run(args!["verify", seg.path()]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
}

/// Every pcapng option of `bytes`, with its length, by walking the blocks
/// by hand (a reader that trusted the lengths would not notice a cut one).
fn option_lengths(bytes: &[u8]) -> Vec<usize> {
    let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let u16_at = |at: usize| u16::from_ne_bytes(bytes[at..at + 2].try_into().unwrap()) as usize;
    let mut lens = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (ty, len) = (u32_at(at), u32_at(at + 4));
        assert_eq!(u32_at(at + len - 4), len, "block at {at}: trailing length");
        let body = match ty {
            0x0A0D_0D0A => 16,
            1 => 8,
            5 => 12,
            6 => 20 + u32_at(at + 20).div_ceil(4) * 4,
            _ => {
                at += len;
                continue;
            }
        };
        let mut o = at + 8 + body;
        while o < at + len - 4 {
            let (code, olen) = (u16_at(o), u16_at(o + 2));
            if code == 0 {
                break;
            }
            lens.push(olen);
            o += 4 + olen.div_ceil(4) * 4;
        }
        assert_eq!(o, at + len - 8, "block at {at}: options end at the trailer");
        at += len;
    }
    lens
}

#[test]
fn huge_manifest_strings_give_a_pcapng_that_reads() {
    let trimmed: serde_json::Map<String, serde_json::Value> = (0..5000)
        .map(|i| {
            (
                format!("ch{i:05}{}", "x".repeat(20)),
                serde_json::json!({"segments": 1, "records": 2, "data_bytes": 3, "file_bytes": 4, "first_kept_index": 1, "until_ts_ns": 4}),
            )
        })
        .collect();
    let cap = capture_with_manifest(serde_json::json!({
        "session_id": "é".repeat(35_000),
        "trimmed": trimmed,
        "errors": vec!["y".repeat(70_000); 3],
    }));
    let work = tempfile::tempdir().unwrap();
    for args in [
        vec!["-w", "all.pcapng"],
        vec!["-o", "dir"],
        vec!["--follow", "-w", "live.pcapng"],
    ] {
        let mut a: Vec<&OsStr> = vec![OsStr::new("convert"), cap.path().as_os_str()];
        a.extend(args.iter().map(OsStr::new));
        a.extend([OsStr::new("--format"), OsStr::new("pcapng")]);
        let o = Command::new(env!("CARGO_BIN_EXE_spool2pcap"))
            .args(&a)
            .current_dir(work.path())
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    }
    for file in [
        "all.pcapng",
        "dir/main.pcapng",
        "dir/display.pcapng",
        "live.pcapng",
    ] {
        let bytes = std::fs::read(work.path().join(file)).unwrap();
        let lens = option_lengths(&bytes);
        assert!(lens.iter().all(|&l| l < 16 << 10), "{file}: {lens:?}");
        // Reads to the end, every block whole.
        let read = testkit::pcap::read(&bytes);
        let comment = read.section_comment.expect("a section comment");
        assert!(comment.contains("ryll capture of session éé"), "{file}");
    }
}

#[test]
fn capture_strings_reach_no_terminal_and_no_comment_raw() {
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\u{202e}";
    let cap = capture_with_manifest(serde_json::json!({
        "session_id": format!("id{evil}"),
        "errors": [format!("recovered {evil}"), format!("boom{evil}")],
        "staging_dir": format!("/dev/shm/nowhere{evil}"),
        "clean_shutdown": false,
        "trimmed": {format!("x{evil}"): {"segments": 1, "records": 2, "data_bytes": 3, "file_bytes": 4, "first_kept_index": 1, "until_ts_ns": 4}},
    }));
    std::fs::write(
        cap.path().join("metadata.json"),
        serde_json::to_vec(&serde_json::json!({"ryll_version": format!("v{evil}")})).unwrap(),
    )
    .unwrap();
    let hidden = |s: &str| {
        s.chars()
            .any(|c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c))
    };
    let o = run(args!["info", cap.path()]);
    let text = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(text.contains("boom"), "{text}");
    assert!(!hidden(&text), "{text:?}");
    assert!(!hidden(&stderr(&o)), "{:?}", stderr(&o));
    let o = run(args!["info", cap.path(), "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(!hidden(&json.to_string()), "{json}");
    assert!(!hidden(&serde_json::to_string_pretty(&json).unwrap()));
    for value in [&json["session_id"], &json["writer_errors"][1]] {
        assert!(!hidden(&value.to_string()), "{value}");
    }
    let work = tempfile::tempdir().unwrap();
    for follow in [false, true] {
        let out = work.path().join(format!("{follow}.pcapng"));
        let mut a = vec![OsStr::new("convert"), cap.path().as_os_str()];
        if follow {
            // A live follow ends when the manifest says closed.
            write_manifest(
                cap.path(),
                serde_json::json!({"session_id": format!("id{evil}"), "clean_shutdown": true}),
            );
            a.push(OsStr::new("--follow"));
        }
        a.extend([OsStr::new("-w"), out.as_os_str()]);
        a.extend([OsStr::new("--format"), OsStr::new("pcapng")]);
        let o = run(&a);
        assert!(code(&o) <= 1, "{}", stderr(&o));
        assert!(!hidden(&stderr(&o)), "{:?}", stderr(&o));
        let bytes = std::fs::read(&out).unwrap();
        let read = testkit::pcap::read(&bytes);
        if let Some(c) = &read.section_comment {
            assert!(c.contains("session id"), "{c}");
            assert!(!hidden(c), "{c:?}");
        }
        for isb in &read.interface_stats {
            assert!(!hidden(&format!("{:?}", isb.options).replace("\\n", "")));
        }
    }
}

#[test]
fn an_output_that_is_one_of_the_inputs_is_refused() {
    let cap = capture_with_manifest(serde_json::json!({}));
    let seg = seg_path(cap.path(), "main");
    let before = std::fs::read(&seg).unwrap();
    // The segment itself, however named.
    let dotted = cap.path().join("spool/display/../main/00000000.seg");
    for target in [&seg, &dotted] {
        let o = run(args!["convert", cap.path(), "-w", target, "--force"]);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(
            stderr(&o).contains("inside the capture's spool/"),
            "{}",
            stderr(&o)
        );
    }
    // A hard link to it, outside the capture.
    let work = tempfile::tempdir().unwrap();
    let hard = work.path().join("innocent.pcap");
    std::fs::hard_link(&seg, &hard).unwrap();
    let o = run(args!["convert", cap.path(), "-w", &hard, "--force"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = run(args![
        "convert",
        "--follow",
        cap.path(),
        "-w",
        &hard,
        "--force"
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    // The manifest, and a directory inside spool/.
    let manifest = std::fs::read(cap.path().join("manifest.json")).unwrap();
    let o = run(args![
        "convert",
        cap.path(),
        "-w",
        &cap.path().join("manifest.json"),
        "--force"
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    for dir in ["spool", "spool/main", "spool/new/deeper"] {
        let o = run(args![
            "convert",
            cap.path(),
            "-o",
            &cap.path().join(dir),
            "--force"
        ]);
        assert_eq!(code(&o), 2, "{dir}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("inside the capture's spool/"),
            "{}",
            stderr(&o)
        );
    }
    assert!(
        !cap.path().join("spool/new").exists(),
        "nothing created in spool/"
    );
    assert_eq!(std::fs::read(&seg).unwrap(), before);
    assert_eq!(
        std::fs::read(cap.path().join("manifest.json")).unwrap(),
        manifest
    );
    // Beside the capture's files is fine.
    let o = run(args!["convert", cap.path(), "-o", cap.path()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn a_missing_or_linked_spool_is_an_error_for_every_command() {
    let work = tempfile::tempdir().unwrap();
    let elsewhere = capture_with_manifest(serde_json::json!({}));
    let missing = capture_with_manifest(serde_json::json!({}));
    std::fs::remove_dir_all(missing.path().join("spool")).unwrap();
    let linked = capture_with_manifest(serde_json::json!({}));
    std::fs::remove_dir_all(linked.path().join("spool")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path().join("spool"), linked.path().join("spool"))
        .unwrap();
    for cap in [missing.path(), linked.path()] {
        let out = work.path().join("out");
        for o in [
            run(args!["convert", cap, "-o", &out]),
            run(args!["convert", cap, "-w", &work.path().join("x.pcap")]),
            run(args![
                "convert",
                "--follow",
                cap,
                "-w",
                &work.path().join("y.pcap")
            ]),
            run(args!["info", cap]),
            run(args!["verify", cap]),
        ] {
            assert_eq!(code(&o), 3, "{}: {}", cap.display(), stderr(&o));
            assert!(stderr(&o).contains("spool"), "{}", stderr(&o));
        }
        assert_eq!(entries(work.path()), 0, "nothing written");
    }
}

#[test]
fn follow_refuses_like_convert_before_creating_output() {
    let cap = capture_with_manifest(serde_json::json!({}));
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("f.pcap");
    let plain = run(args![
        "convert",
        cap.path(),
        "--channel",
        "nope",
        "-w",
        &out
    ]);
    let follow = run(args![
        "convert",
        "--follow",
        cap.path(),
        "--channel",
        "nope",
        "-w",
        &out
    ]);
    assert_eq!(code(&plain), 2, "{}", stderr(&plain));
    assert_eq!(code(&follow), 2, "{}", stderr(&follow));
    assert_eq!(stderr(&plain), stderr(&follow));
    let not_a_capture = tempfile::tempdir().unwrap();
    let o = run(args![
        "convert",
        "--follow",
        not_a_capture.path(),
        "-w",
        &out
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("not a capture"), "{}", stderr(&o));
    assert_eq!(entries(work.path()), 0, "no output file left behind");
    // A SPICE channel a live session may still open is waited for.
    let o = run(args![
        "convert",
        "--follow",
        cap.path(),
        "--channel",
        "main",
        "-w",
        &out
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// A channel whose gap records' counts add up past `u64::MAX`.
fn overflowing_gaps() -> tempfile::TempDir {
    let cap = tempfile::tempdir().unwrap();
    let big = u64::MAX - 1;
    let mut s = Seg::new("main", 0, 0);
    s.data(C2S, 1, b"a");
    s.gap_counts(2, [big, big], [big, big]);
    s.gap_counts(3, [big, 5], [big, 5]);
    s.data(S2C, 4, b"b");
    s.seal(true);
    write_segment(cap.path(), "main", 0, &s.finish(0));
    write_manifest(cap.path(), serde_json::json!({}));
    cap
}

fn says_saturated_drops(o: &Output) {
    let max = u64::MAX;
    assert_eq!(code(o), 0, "{}", stderr(o));
    assert!(
        stderr(o).contains(&format!("{max} records / {max} bytes dropped")),
        "{}",
        stderr(o)
    );
}

#[test]
fn gap_counts_past_u64_max_saturate_when_followed() {
    let cap = overflowing_gaps();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("b.pcapng");
    says_saturated_drops(&run(args![
        "convert",
        "--follow",
        cap.path(),
        "-w",
        &out,
        "--format",
        "pcapng"
    ]));
}

/// Gap records whose counts add past u64::MAX: the reader's counters and
/// every total built from them saturate (a debug build would otherwise
/// panic on the overflow).
#[test]
fn gap_counts_past_u64_max_saturate_in_convert_info_and_verify() {
    let cap = overflowing_gaps();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("a.pcapng");
    says_saturated_drops(&run(args![
        "convert",
        cap.path(),
        "-w",
        &out,
        "--format",
        "pcapng"
    ]));
    let o = run(args!["info", cap.path(), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["channels"][0]["dropped_records"], u64::MAX);
    assert_eq!(json["channels"][0]["dropped_bytes"], u64::MAX);
    let o = run(args!["verify", cap.path()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn help_states_the_security_model() {
    let o = run(args!["--help"]);
    assert_eq!(code(&o), 0);
    let help = String::from_utf8_lossy(&o.stdout);
    for words in ["untrusted", "symlink", "FIFO", "capture's own files"] {
        assert!(help.contains(words), "{words}: {help}");
    }
}

/// A manifest naming a private directory of this user elsewhere as its
/// staging directory: no command lists, reads or converts what is there,
/// and each says, naming it, that it ignored it.
#[test]
fn a_staging_dir_elsewhere_is_never_read() {
    use std::os::unix::fs::PermissionsExt;
    const SECRET: &[u8] = b"SECRET-FROM-ELSEWHERE";
    let elsewhere = tempfile::tempdir().unwrap();
    simple_channel(elsewhere.path(), "main", &[(C2S, 40, SECRET)]);
    simple_channel(elsewhere.path(), "usbredir", &[(C2S, 40, SECRET)]);
    let private = elsewhere.path().join("spool");
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let cap = capture_with_manifest(serde_json::json!({
        "staging_dir": private,
        "clean_shutdown": false,
        "closed_unix_ns": null,
    }));
    let shown = private.display().to_string();
    let o = run(args!["info", cap.path()]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    // A warning, not damage: the capture itself reads whole.
    assert_eq!(code(&o), 0, "{text}");
    assert!(!text.contains("usbredir"), "{text}");
    assert!(!text.contains("From staging"), "{text}");
    assert!(text.contains("staging directory ignored"), "{text}");
    assert!(text.contains(&shown), "{text}");
    let work = tempfile::tempdir().unwrap();
    for follow in [false, true] {
        let out = work.path().join(format!("{follow}.pcap"));
        let mut a = vec![OsStr::new("convert"), cap.path().as_os_str()];
        if follow {
            a.push(OsStr::new("--follow"));
        }
        a.extend([OsStr::new("-w"), out.as_os_str()]);
        let o = run(&a);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(
            stderr(&o).contains("staging directory ignored"),
            "{}",
            stderr(&o)
        );
        let bytes = std::fs::read(&out).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET),
            "follow {follow}: {} read from {shown}",
            String::from_utf8_lossy(SECRET)
        );
    }
}

/// Standard output opened onto a segment (`1<>segment`) is refused like
/// `-w segment`, and `-w` inside `spool/` like `-o`: nothing is written.
#[test]
fn an_output_onto_an_input_by_stdout_or_into_spool_is_refused() {
    let cap = capture_with_manifest(serde_json::json!({}));
    let seg = seg_path(cap.path(), "main");
    let before = std::fs::read(&seg).unwrap();
    for follow in [false, true] {
        let onto = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg)
            .unwrap();
        let mut a = vec!["convert", cap.path().to_str().unwrap(), "-w", "-"];
        if follow {
            a.push("--follow");
        }
        let o = Command::new(env!("CARGO_BIN_EXE_spool2pcap"))
            .args(&a)
            .stdin(Stdio::null())
            .stdout(Stdio::from(onto))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(stderr(&o).contains("capture's own files"), "{}", stderr(&o));
        assert_eq!(std::fs::read(&seg).unwrap(), before, "follow {follow}");
    }
    let new = cap.path().join("spool/main/00000003.seg");
    for follow in [false, true] {
        let mut a = vec![OsStr::new("convert"), cap.path().as_os_str()];
        if follow {
            a.push(OsStr::new("--follow"));
        }
        a.extend([OsStr::new("-w"), new.as_os_str()]);
        let o = run(&a);
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(
            stderr(&o).contains("inside the capture's spool/"),
            "{}",
            stderr(&o)
        );
        assert!(!new.exists());
    }
}

/// Every kind of invisible character, and a 3-million-character channel
/// name, in a manifest and metadata: `info` shows none of them raw, and
/// cuts every string, as text and as JSON.
#[test]
fn invisible_characters_and_huge_names_reach_no_terminal() {
    use spool2pcap::guard::{is_hidden, MAX_TEXT_CHARS};
    let evil = "\u{61c}\u{2028}\u{3164}\u{fff9}\u{ad}\u{e0041}\u{e007f}\u{2066}\u{200d}\u{feff}\u{115f}\u{e000}";
    let huge = "n".repeat(3_000_000);
    let cap = capture_with_manifest(serde_json::json!({
        "session_id": format!("id{evil}"),
        "errors": [format!("boom{evil}"), "e".repeat(100_000)],
        "channels": {&huge: {"records": 1, "bytes": 1, "dropped_records": 0, "dropped_bytes": 0, "segments": 1},
                     format!("x{evil}"): {"records": 1, "bytes": 1, "dropped_records": 0, "dropped_bytes": 0, "segments": 1}},
    }));
    std::fs::write(
        cap.path().join("metadata.json"),
        serde_json::to_vec(
            &serde_json::json!({"ryll_version": format!("v{evil}"), "target": format!("h{evil}")}),
        )
        .unwrap(),
    )
    .unwrap();
    let visible = |s: &str| !s.chars().any(|c| c != '\n' && is_hidden(c));
    for json in [false, true] {
        let mut a = vec![OsStr::new("info"), cap.path().as_os_str()];
        if json {
            a.push(OsStr::new("--json"));
        }
        let o = run(&a);
        let out = String::from_utf8(o.stdout.clone()).unwrap();
        assert!(out.contains("boom"), "{out}");
        assert!(
            visible(&out),
            "{:?}",
            out.chars().filter(|&c| is_hidden(c)).collect::<Vec<_>>()
        );
        assert!(visible(&stderr(&o)));
        let longest = out.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(out.len() < 64 << 10, "json {json}: {} bytes", out.len());
        assert!(
            longest <= MAX_TEXT_CHARS + 200,
            "json {json}: a line of {longest}"
        );
    }
}
