//! What a pcapng file says about the capture besides its packets: the
//! section header comment (`section_info`), each channel's interface
//! description (`interface_description`) and its Interface Statistics
//! Block (`write_channel_stats`). One builder each, for `convert` and
//! `convert --follow` alike; classic pcap has nowhere to put them.

use std::collections::BTreeMap;
use std::io::Write;

use pcap_file::PcapError;
use spool::store::limit::Trimmed;
use spool::store::manifest::ChannelCounters;

use crate::guard::{clean, MAX_TEXT_CHARS};
use crate::metadata::CaptureMetadata;
use crate::output::wireshark::{decode_as, decode_as_for};
use crate::output::{InterfaceStats, PacketSink, SectionInfo};
use crate::pipeline::clock::PacketClock;
use crate::pipeline::framing::{ChannelFramer, Synthesis};
use crate::pipeline::report::{trimmed_briefly, ChannelReport};
use crate::spice::channels::SERVER_PORT;
use crate::spice::redact::Redaction;

/// How the capture was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Read after the fact; the manifest's `clean_shutdown` (`None`: no
    /// manifest).
    Closed {
        /// Whether the session shut down cleanly, if known.
        clean_shutdown: Option<bool>,
    },
    /// Followed live while it was written (`convert --follow`).
    Live,
}

/// How a session that did not shut down cleanly was recovered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovered<'a> {
    /// Records still staged in memory were read in place, from this
    /// directory if the manifest says.
    StagedInPlace {
        /// The manifest's staging directory (unchecked).
        staging_dir: Option<&'a str>,
    },
    /// Recovery moved the staged segments into the capture.
    MovedIn,
}

/// What the section header says: which session, which ryll, what was made
/// up, recovered, trimmed and redacted.
pub(crate) struct SessionFacts<'a> {
    /// Session id (unchecked: cleaned here).
    pub id: Option<&'a str>,
    /// Wall-clock session start, ns since the Unix epoch.
    pub start_unix_ns: Option<u64>,
    /// Read after the fact or followed live.
    pub reading: Reading,
    /// How an unclean session was recovered, if it was.
    pub recovered: Option<Recovered<'a>>,
    /// What the flight recorder deleted, per channel (names unchecked).
    pub trimmed: Option<&'a BTreeMap<String, Trimmed>>,
    /// ryll's `metadata.json`.
    pub metadata: Option<&'a CaptureMetadata>,
    /// What was made up.
    pub synth: Synthesis,
    /// What was redacted.
    pub redact: Redaction,
    /// The synthetic server port.
    pub server_port: u16,
}

/// The pcapng section header of a conversion.
pub(crate) fn section_info(s: &SessionFacts) -> SectionInfo {
    let mut lines = vec![session_line(s)];
    if let Some(m) = s.metadata.filter(|m| !m.is_empty()) {
        lines.push(format!("Recorded by {}.", m.describe()));
    }
    lines.push(conversion_line(s));
    match s.recovered {
        Some(Recovered::StagedInPlace { staging_dir }) => lines.push(format!(
            "Recovered: the session did not shut down cleanly; records still staged in \
             memory ({}) were read in place (counts per channel in the interface \
             statistics).",
            staging_dir.map_or_else(|| "staging directory".into(), |s| clean(s, MAX_TEXT_CHARS))
        )),
        Some(Recovered::MovedIn) => lines.push(
            "Recovered: the session did not shut down cleanly; its staged segments were \
             moved in by recovery."
                .to_string(),
        ),
        None => {}
    }
    for (name, t) in s
        .trimmed
        .into_iter()
        .flatten()
        .filter(|(_, t)| t.segments > 0)
    {
        // Names of channels the capture may not have: unchecked.
        let name = clean(name, MAX_TEXT_CHARS);
        lines.push(format!("Trimmed: {}.", trimmed_note(&name, t)));
    }
    if s.redact.any() {
        lines.push(format!(
            "redacted: {} (message bodies zeroed; headers, sizes, timing and sequence \
             numbers kept)",
            s.redact.describe()
        ));
    }
    lines.push(decode_line(s.server_port));
    SectionInfo {
        comment: Some(lines.join("\n")),
        os: s.metadata.and_then(|m| m.platform_os.clone()),
        hardware: s.metadata.and_then(|m| m.platform_arch.clone()),
    }
}

/// The comment's first line: which session, when, and how it ended.
fn session_line(s: &SessionFacts) -> String {
    let mut session = String::from("ryll capture");
    if let Some(id) = s.id {
        session.push_str(&format!(" of session {}", clean(id, MAX_TEXT_CHARS)));
    }
    if let Some(ns) = s.start_unix_ns {
        session.push_str(&format!(", started {}", crate::time::format_unix_ns(ns)));
    }
    session.push_str(match s.reading {
        Reading::Closed {
            clean_shutdown: Some(true),
        } => ", shut down cleanly.",
        Reading::Closed {
            clean_shutdown: Some(false),
        } => ", not shut down cleanly (crash or still running).",
        Reading::Closed {
            clean_shutdown: None,
        } => ", no manifest.",
        Reading::Live => ", followed live while it was written.",
    });
    session
}

/// What the converter made of it: the addresses, and what is synthetic.
fn conversion_line(s: &SessionFacts) -> String {
    let mut made_up = Vec::new();
    if s.synth.tcp {
        made_up.push("TCP handshake and close");
    }
    if s.synth.link {
        made_up.push("SPICE link phase");
    }
    let synthetic = if made_up.is_empty() {
        String::new()
    } else {
        format!(
            "; {} synthetic (marked by packet comments)",
            made_up.join(" and ")
        )
    };
    format!(
        "Converted by spool2pcap {}: one TCP connection per SPICE channel, 10.0.0.1 -> \
         10.0.0.2:{}{synthetic}.",
        env!("CARGO_PKG_VERSION"),
        s.server_port,
    )
}

/// How Wireshark decodes the file: by its heuristic on our default port,
/// else with the "Decode As" rule given.
fn decode_line(server_port: u16) -> String {
    if server_port == SERVER_PORT {
        format!(
            "SPICE decodes by Wireshark's SPICE heuristic (no option needed); with it \
             switched off: wireshark -d {} FILE",
            decode_as()
        )
    } else {
        format!(
            "Decode with: wireshark -d {} FILE",
            decode_as_for(server_port)
        )
    }
}

/// What the flight recorder deleted from the start of a channel, in words.
pub fn trimmed_note(channel: &str, t: &Trimmed) -> String {
    format!(
        "{channel}: start trimmed by the flight recorder: {} segments ({} records, {} data \
         bytes) before +{} of the session were deleted; this is the oldest packet kept",
        t.segments,
        t.records,
        t.data_bytes,
        crate::time::format_secs(t.until_ts_ns)
    )
}

/// `if_description` of a channel's interface. It also gives the drops the
/// manifest of a cleanly closed session counts: the Interface Statistics
/// Block says the same at the end of the file, but `capinfos` (4.0) shows
/// descriptions and not `isb_ifdrop`.
pub(crate) fn interface_description(
    channel: &str,
    (port, server_port): (u16, u16),
    summary: Option<&ChannelCounters>,
) -> String {
    let ty = crate::spice::link::channel_type_for(channel);
    let known = if crate::spice::channels::spice_channel_type(channel).is_some() {
        ""
    } else {
        ", unknown name: linked as port"
    };
    let mut d = format!(
        "SPICE {channel} channel (type {ty}{known}), 10.0.0.1:{port} -> 10.0.0.2:{server_port}"
    );
    if let Some(s) = summary {
        d.push_str(&format!(
            "; capture writer dropped {} records ({} bytes)",
            s.dropped_records, s.dropped_bytes
        ));
    }
    d
}

/// The Interface Statistics Block of the channel `c` reports, framed by
/// `framer` (pcapng only): records received, dropped by the spool writer or
/// known lost to damage (`isb_ifdrop`) and converted, the time span of its packets, and a
/// comment saying the same in words and how the channel was `read`.
pub(crate) fn write_channel_stats<W: Write>(
    sink: &mut PacketSink<W>,
    c: &ChannelReport,
    framer: &ChannelFramer,
    clock: PacketClock,
    read: Reading,
) -> Result<(), PcapError> {
    if matches!(sink, PacketSink::Pcap(_)) {
        return Ok(());
    }
    let span = framer.time_span_ns();
    // Records known lost to damage count as dropped, like the writer's.
    let lost = c
        .damage
        .iter()
        .map(|d| d.records_lost)
        .fold(0, u64::saturating_add);
    let dropped = c.dropped_records.saturating_add(lost);
    let stats = InterfaceStats {
        received: c.records.saturating_add(dropped),
        dropped,
        delivered: c.records,
        start: span.map(|(a, _)| clock.timestamp(a)),
        end: span.map(|(_, b)| clock.timestamp(b)),
    };
    let (how, closed) = match (read, c.closed_cleanly) {
        (Reading::Closed { .. }, true) => ("captured", "closed cleanly"),
        (Reading::Closed { .. }, false) => ("captured", "not closed cleanly"),
        (Reading::Live, true) => ("followed live", "session closed cleanly"),
        (Reading::Live, false) => ("followed live", "session ended without a clean shutdown"),
    };
    let mut comment = format!(
        "{}: {} records ({} bytes) {how}; {} records ({} bytes) dropped by the capture \
         writer in {} gaps; {} damaged regions skipped ({lost} records known lost); {closed}",
        c.channel,
        c.records,
        c.bytes,
        c.dropped_records,
        c.dropped_bytes,
        c.gaps,
        c.damage.len(),
    );
    if c.staged_records > 0 {
        comment.push_str(&format!(
            "; {} records recovered from segments still staged in memory",
            c.staged_records
        ));
    }
    if let Some(t) = &c.trimmed {
        comment.push_str(&format!("; {}", trimmed_briefly(t)));
    }
    if let Some(r) = &c.redacted {
        comment.push_str(&format!(
            "; redacted: {} messages, {} bytes zeroed",
            r.messages, r.bytes
        ));
    }
    sink.write_interface_stats(framer.interface(), &stats, Some(&comment))
}
