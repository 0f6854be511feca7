//! Redaction checked on hand-built message streams: key and clipboard
//! bodies zeroed and nothing else, across record boundaries, and failing
//! closed where the framing is lost.

use super::*;

use crate::spice::messages::test_message as msg;

fn agent(ty: u32, body: &[u8]) -> Vec<u8> {
    let mut v = VD_AGENT_PROTOCOL.to_le_bytes().to_vec();
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(&7u64.to_le_bytes());
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// Feeds `stream` cut at `cuts` through a redactor; returns the output.
fn run(r: &mut Redactor, dir: Direction, stream: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts.iter().chain([stream.len()].iter()) {
        out.extend_from_slice(r.apply(dir, &stream[at..c]));
        at = c;
    }
    out
}

#[test]
fn key_bodies_are_zeroed_at_every_split() {
    let mut stream = Vec::new();
    stream.extend(msg(MSGC_INPUTS_KEY_DOWN, &0x1Eu32.to_le_bytes()));
    stream.extend(msg(111, &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0]));
    stream.extend(msg(MSGC_INPUTS_KEY_UP, &0x9Eu32.to_le_bytes()));
    stream.extend(msg(MSGC_INPUTS_KEY_SCANCODE, &[0xE0, 0x48, 0xE0, 0xC8]));
    let mut want = stream.clone();
    want[6..10].fill(0);
    want[32..36].fill(0);
    want[42..46].fill(0);
    for a in 0..stream.len() {
        for b in a..stream.len() {
            let mut r = Redactor::for_channel("inputs", Redaction::ALL, false).unwrap();
            let got = run(&mut r, Direction::ClientToServer, &stream, &[a, b]);
            assert_eq!(got, want, "cut at {a}, {b}");
            assert_eq!(r.stats().messages, 3);
        }
    }
    // Server→client is left alone.
    let mut r = Redactor::for_channel("inputs", Redaction::ALL, false).unwrap();
    assert_eq!(r.apply(Direction::ServerToClient, &stream), &stream[..]);
}

#[test]
fn clipboard_in_chunked_agent_data_is_zeroed() {
    let secret = b"correct horse battery staple ".repeat(200);
    let mut agent_stream = agent(6, &[1, 2, 3, 4]);
    let clip_at = agent_stream.len();
    let mut body = vec![0u8, 0, 0, 0, 1, 0, 0, 0];
    body.extend_from_slice(&secret);
    agent_stream.extend(agent(VD_AGENT_CLIPBOARD, &body));
    agent_stream.extend(agent(7, &[1, 0, 0, 0]));
    // AGENT_DATA chunks of at most 2048 bytes, the header split too.
    let mut stream = msg(105, &[1, 0, 0, 0]);
    let mut rest = &agent_stream[..];
    let mut first = true;
    while !rest.is_empty() {
        let n = if first {
            clip_at + 7
        } else {
            2048.min(rest.len())
        };
        first = false;
        stream.extend(msg(MSGC_MAIN_AGENT_DATA, &rest[..n]));
        rest = &rest[n..];
    }
    let mut r = Redactor::for_channel("main", Redaction::ALL, false).unwrap();
    let got = run(
        &mut r,
        Direction::ClientToServer,
        &stream,
        &[3, 100, 2500, 4001],
    );
    assert_eq!(got.len(), stream.len());
    assert!(!got.windows(12).any(|w| w == &secret[..12]));
    assert_eq!(r.stats().messages, 1);
    // The messages after the clipboard one survive.
    assert!(got.ends_with(&agent(7, &[1, 0, 0, 0])));
    // Without clipboard redaction the main channel is not touched.
    assert!(Redactor::for_channel("main", Redaction::parse("inputs").unwrap(), false).is_none());
}

#[test]
fn lost_framing_zeroes_until_a_record_parses() {
    let mut r = Redactor::for_channel("inputs", Redaction::ALL, true).unwrap();
    let junk = [0x1Eu8, 0, 0, 0, 9, 9, 9];
    assert_eq!(r.apply(Direction::ClientToServer, &junk), &[0u8; 7][..]);
    let key = msg(MSGC_INPUTS_KEY_DOWN, &0x1Eu32.to_le_bytes());
    let got = r.apply(Direction::ClientToServer, &key).to_vec();
    assert_eq!(&got[..6], &key[..6]);
    assert_eq!(&got[6..], &[0; 4]);
    // A gap inside a header loses framing again.
    let mut r = Redactor::for_channel("inputs", Redaction::ALL, false).unwrap();
    r.apply(Direction::ClientToServer, &key[..3]);
    r.gap(&Gap {
        bytes_c2s: 2,
        records_c2s: 1,
        ..Gap::default()
    });
    assert_eq!(r.apply(Direction::ClientToServer, &key[5..]), &[0u8; 5][..]);
}

#[test]
fn link_phase_is_skipped() {
    let link = crate::spice::link::LinkPhase::new(3, 0);
    let mut stream = link.bytes(Direction::ClientToServer).to_vec();
    stream.extend(msg(MSGC_INPUTS_KEY_DOWN, &0x1Eu32.to_le_bytes()));
    let mut r = Redactor::for_channel("inputs", Redaction::ALL, false).unwrap();
    let got = r.apply(Direction::ClientToServer, &stream).to_vec();
    assert_eq!(&got[..got.len() - 4], &stream[..stream.len() - 4]);
    assert_eq!(&got[got.len() - 4..], &[0; 4]);
}

#[test]
fn parse_lists() {
    assert_eq!(
        Redaction::parse("inputs,clipboard").unwrap(),
        Redaction::ALL
    );
    assert_eq!(Redaction::parse("none").unwrap(), Redaction::NONE);
    assert!(Redaction::parse("passwords").is_err());
    assert_eq!(Redaction::ALL.describe(), "inputs keystrokes, clipboard");
}
