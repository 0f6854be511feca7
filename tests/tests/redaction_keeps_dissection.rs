//! `spool2pcap convert --redact`: a spool holding real-looking inputs key
//! messages (known scancodes) and main-channel agent clipboard messages (a
//! distinctive string in 2048-byte AGENT_DATA chunks), every message split
//! across records at awkward places, converted with and without redaction.
//! Redacted output holds neither the scancodes (in their message context)
//! nor the clipboard string, while tshark decodes the same SPICE message
//! types with the same TCP sequence numbers and lengths; unredacted output
//! holds both (so the search can fail).

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::tools::{self, spool2pcap_bin};
use spool::{Direction, Spool, SpoolConfig, StagingChoice};

fn msg(ty: u16, body: &[u8]) -> Vec<u8> {
    let mut v = ty.to_le_bytes().to_vec();
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// A VDAgentMessage: protocol 1, type, opaque, size, then the body.
fn agent(ty: u32, body: &[u8]) -> Vec<u8> {
    let mut v = 1u32.to_le_bytes().to_vec();
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// The agent stream cut into AGENT_DATA messages of at most 2048 bytes.
fn agent_data(ty: u16, stream: &[u8]) -> Vec<u8> {
    stream.chunks(2048).flat_map(|c| msg(ty, c)).collect()
}

/// Scancodes typed (PS/2 set 1 make codes of "secret", then an extended key).
const KEYS: [u32; 7] = [0x1f, 0x12, 0x2e, 0x13, 0x12, 0x14, 0xe048];
const CLIP_C2S: &str = "hunter2-the-client-clipboard-";
const CLIP_S2C: &str = "guest-clipboard-secret-token-";

struct Streams {
    inputs_c2s: Vec<u8>,
    inputs_s2c: Vec<u8>,
    main_c2s: Vec<u8>,
    main_s2c: Vec<u8>,
}

fn streams() -> Streams {
    let mut inputs_c2s = Vec::new();
    for (i, k) in KEYS.iter().enumerate() {
        inputs_c2s.extend(msg(101, &k.to_le_bytes()));
        // A mouse motion between keys, which must survive.
        inputs_c2s.extend(msg(111, &[i as u8, 0, 0, 0, 1, 0, 0, 0, 0, 0]));
        inputs_c2s.extend(msg(102, &(k | 0x80).to_le_bytes()));
    }
    inputs_c2s.extend(msg(104, &[0xe0, 0x48, 0xe0, 0xc8]));
    inputs_c2s.extend(msg(103, &[2, 0]));
    let inputs_s2c = msg(101, &[0, 0]); // SPICE_MSG_INPUTS_INIT, modifiers
    let clip = |text: &str, times: usize| {
        let mut body = vec![0, 0, 0, 0, 1, 0, 0, 0]; // selection, UTF8_TEXT
        body.extend(text.repeat(times).as_bytes());
        body
    };
    let mut c2s_agent = agent(6, &[0xff; 4]); // ANNOUNCE_CAPABILITIES
                                              // Big: three AGENT_DATA chunks.
    c2s_agent.extend(agent(4, &clip(CLIP_C2S, 200)));
    c2s_agent.extend(agent(7, &[0, 0, 0, 0, 1, 0, 0, 0])); // CLIPBOARD_GRAB
    let mut main_c2s = msg(105, &[2, 0, 0, 0]); // MOUSE_MODE_REQUEST
    main_c2s.extend(agent_data(107, &c2s_agent));
    let mut main_s2c = msg(107, &[]); // AGENT_CONNECTED
                                      // Small: one chunk, which is what Wireshark's dissector decodes (it
                                      // reports an agent message spanning AGENT_DATA messages as malformed,
                                      // redacted or not).
    main_s2c.extend(agent_data(109, &agent(4, &clip(CLIP_S2C, 20))));
    main_s2c.extend(msg(4, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])); // PING
    Streams {
        inputs_c2s,
        inputs_s2c,
        main_c2s,
        main_s2c,
    }
}

/// Writes the streams into a closed spool, each cut into records of
/// changing small sizes, so messages and headers straddle records.
fn write_spool(capture: &Path, staging: &Path) {
    let s = streams();
    let spool = Spool::create(
        SpoolConfig::new(capture)
            .staging(StagingChoice::Root(staging.to_path_buf()))
            .channels(&["main", "inputs"]),
    )
    .unwrap();
    let mut ts = 1_000u64;
    let mut put = |channel: &str, dir: Direction, stream: &[u8], step: usize| {
        let mut at = 0;
        let mut n = 1;
        while at < stream.len() {
            let len = (n * step % 37 + 1).min(stream.len() - at);
            let len = if n % 5 == 0 {
                (1500).min(stream.len() - at)
            } else {
                len
            };
            assert!(spool.append_at(channel, dir, ts, &stream[at..at + len]));
            ts += 1_000;
            at += len;
            n += 1;
        }
    };
    put("inputs", Direction::ServerToClient, &s.inputs_s2c, 3);
    put("inputs", Direction::ClientToServer, &s.inputs_c2s, 7);
    put("main", Direction::ServerToClient, &s.main_s2c, 11);
    put("main", Direction::ClientToServer, &s.main_c2s, 5);
    spool.close().unwrap();
}

fn convert(capture: &Path, out: &Path, redact: &[&str]) {
    let mut cmd = Command::new(spool2pcap_bin());
    cmd.arg("convert")
        .arg(capture)
        .arg("-w")
        .arg(out)
        .args(["--format", "pcapng"]);
    for r in redact {
        cmd.args(["--redact", r]);
    }
    let o = cmd.output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The needles: every key message as header + original body, and the
/// clipboard strings.
fn secrets() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = KEYS
        .iter()
        .flat_map(|k| {
            [
                msg(101, &k.to_le_bytes()),
                msg(102, &(k | 0x80).to_le_bytes()),
            ]
        })
        .collect();
    v.push(msg(104, &[0xe0, 0x48, 0xe0, 0xc8]));
    v.push(CLIP_C2S.as_bytes().to_vec());
    v.push(CLIP_S2C.as_bytes().to_vec());
    v
}

/// Per TCP payload bytes as the packets carry them, both directions of
/// each port (the needles may straddle packets; search the streams).
fn tcp_streams(file: &Path) -> std::collections::BTreeMap<(u16, bool), Vec<u8>> {
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(
        testkit::pcap::read(&bytes).format,
        testkit::pcap::Format::PcapNg
    );
    testkit::streams::streams(&bytes, spool2pcap::spice::channels::SERVER_PORT)
}

/// What tshark decodes per frame: ports, seq, length, SPICE message types.
fn dissect(file: &Path) -> String {
    tools::tshark(&[
        "-r",
        &file.to_string_lossy(),
        "-o",
        "tcp.relative_sequence_numbers:FALSE",
        "-T",
        "fields",
        "-e",
        "tcp.srcport",
        "-e",
        "tcp.dstport",
        "-e",
        "tcp.seq",
        "-e",
        "tcp.len",
        "-e",
        "spice.message_type",
    ])
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The test spool converted plainly, redacted (two flags), and redacted
/// with the flags combined; files removed on drop.
struct Converted {
    _dir: tempfile::TempDir,
    plain: PathBuf,
    redacted: PathBuf,
    combined: PathBuf,
}

fn converted() -> Converted {
    let dir = tempfile::tempdir().unwrap();
    let staging = tempfile::tempdir_in("/dev/shm").unwrap();
    let capture = dir.path().join("capture");
    write_spool(&capture, staging.path());
    let plain = dir.path().join("plain.pcapng");
    let redacted = dir.path().join("redacted.pcapng");
    let combined = dir.path().join("combined.pcapng");
    convert(&capture, &plain, &[]);
    convert(&capture, &redacted, &["inputs", "clipboard"]);
    convert(&capture, &combined, &["inputs,clipboard"]);
    Converted {
        _dir: dir,
        plain,
        redacted,
        combined,
    }
}

fn redaction_removes_keystrokes_and_clipboard() {
    let c = converted();
    let (plain, redacted, combined) = (&c.plain, &c.redacted, &c.combined);

    let plain_streams = tcp_streams(plain);
    let red_streams = tcp_streams(redacted);
    for s in secrets() {
        assert!(
            plain_streams.values().any(|v| contains(v, &s)),
            "the unredacted output lacks {s:?}: the test could not fail"
        );
        assert!(
            !red_streams.values().any(|v| contains(v, &s)),
            "redacted output still holds {:?}",
            String::from_utf8_lossy(&s)
        );
    }
    // Raw file bytes too (packets split a needle only in the stream view).
    let raw = std::fs::read(redacted).unwrap();
    assert!(!contains(&raw, CLIP_C2S.as_bytes()) && !contains(&raw, CLIP_S2C.as_bytes()));
    assert!(contains(&raw, b"redacted: inputs keystrokes, clipboard"));
    assert_eq!(raw, std::fs::read(combined).unwrap());
    // Same sizes everywhere: every stream keeps its length.
    for (k, v) in &plain_streams {
        assert_eq!(red_streams[k].len(), v.len(), "{k:?}");
    }
}

fn redaction_keeps_the_dissection() {
    let c = converted();
    let (a, b) = (dissect(&c.plain), dissect(&c.redacted));
    assert_eq!(a, b, "tshark decodes the redacted file differently");
    for ty in ["101", "102", "104", "105", "109", "111", "4"] {
        assert!(
            a.lines().any(|l| l
                .rsplit('\t')
                .next()
                .is_some_and(|t| t.split(',').any(|x| x == ty))),
            "tshark decoded no message of type {ty}:\n{a}"
        );
    }
}

fn main() -> std::process::ExitCode {
    needs::run(vec![
        needs::test!(redaction_removes_keystrokes_and_clipboard),
        needs::test!(redaction_keeps_the_dissection, needs::TSHARK),
    ])
}
