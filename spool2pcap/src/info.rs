//! Summaries of a capture, like `capinfos`: what each channel holds, what was
//! dropped, what is damaged, and whether the session ended cleanly.
//!
//! Everything is counted by reading every record (checksums included), so
//! the numbers describe what a conversion would actually get, not what the
//! manifest claims. Where the manifest of a cleanly closed session disagrees
//! with what is on disk, that is listed as a mismatch: it is how a segment
//! deleted from the end of a channel shows up.

use std::path::{Path, PathBuf};

use serde::Serialize;
use spool::read::event::{Damage, Event};
use spool::store::limit::Trimmed;
use spool::store::manifest::ChannelCounters;

use crate::guard::{clean, clean_notes, MAX_NAME_CHARS, MAX_TEXT_CHARS};
use crate::metadata::CaptureMetadata;
use crate::output::wireshark::{decode_as, shell_quote, wireshark_command};
use crate::pipeline::clock::TimeMode;
use crate::pipeline::error::ConvertError;
use crate::pipeline::opened::{Access, OpenedCapture, Opening};
use crate::spice::channels::SERVER_PORT;
use crate::spice::redact::Redaction;
use crate::time::{format_secs, format_unix_ns};

/// One damaged region, in a form that serializes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamageInfo {
    /// The segment file.
    pub file: PathBuf,
    /// Byte offset in the file.
    pub offset: u64,
    /// Bytes affected.
    pub len: u64,
    /// What is wrong, in words.
    pub kind: String,
    /// Records known to be lost there.
    pub records_lost: u64,
    /// Only the torn last record of a crashed session.
    pub torn_tail: bool,
}

impl From<&Damage> for DamageInfo {
    fn from(d: &Damage) -> DamageInfo {
        DamageInfo {
            file: d.file.clone(),
            offset: d.offset,
            len: d.len,
            kind: clean(&d.kind.to_string(), MAX_TEXT_CHARS),
            records_lost: d.records_lost,
            torn_tail: d.is_torn_tail(),
        }
    }
}

/// What one channel holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelInfo {
    /// Channel name.
    pub name: String,
    /// Client TCP port a conversion gives it.
    pub client_port: u16,
    /// Segment files read.
    pub segments: u64,
    /// Bytes of segment files.
    pub file_bytes: u64,
    /// Bytes those segments held before compression (equal to
    /// `file_bytes` when none is compressed).
    pub raw_bytes: u64,
    /// Segments that are compressed.
    pub compressed_segments: u64,
    /// Data records.
    pub records: u64,
    /// Client→server data records.
    pub records_c2s: u64,
    /// Server→client data records.
    pub records_s2c: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Client→server payload bytes.
    pub bytes_c2s: u64,
    /// Server→client payload bytes.
    pub bytes_s2c: u64,
    /// First record's time, ns since session start.
    pub first_ts_ns: Option<u64>,
    /// Last record's time, ns since session start.
    pub last_ts_ns: Option<u64>,
    /// Gap records.
    pub gaps: u64,
    /// Records the writer dropped.
    pub dropped_records: u64,
    /// Bytes the writer dropped.
    pub dropped_bytes: u64,
    /// Damaged regions found.
    pub damage_count: u64,
    /// Records the reader could tell were lost in the damaged regions.
    pub damaged_records: u64,
    /// Bytes of segment files in damaged regions.
    pub damaged_bytes: u64,
    /// Records lost: what the reader could tell, or, when the manifest of a
    /// clean shutdown says more records were written than the segments
    /// hold, that difference (a damaged segment header hides all of its
    /// records from the reader). What `verify` reports too.
    pub records_lost: u64,
    /// Data bytes lost, when a clean shutdown's manifest tells (`None`:
    /// unknown; damage hides how much payload a region held).
    pub bytes_lost: Option<u64>,
    /// The last segment carries a final seal (clean close of the channel).
    pub closed_cleanly: bool,
    /// The manifest's counters for this channel, if it has any.
    pub manifest: Option<ChannelCounters>,
    /// Data records read from segments still staged in memory (a crashed
    /// session whose staging was not recovered yet, or a live one).
    pub staged_records: u64,
    /// What the flight recorder deleted from the channel's start.
    pub trimmed: Option<Trimmed>,
    /// The damaged regions in detail: the first of them, as many as the
    /// reader keeps ([`spool::read::event::MAX_DAMAGE_KEPT`]); `damage_count`
    /// counts them all.
    pub damage: Vec<DamageInfo>,
}

/// What a capture directory holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureInfo {
    /// The capture directory.
    pub capture: PathBuf,
    /// A `manifest.json` was found and parsed.
    pub manifest_present: bool,
    /// Session id (hex), from the manifest or a segment header.
    pub session_id: Option<String>,
    /// Wall-clock session start, ns since the Unix epoch.
    pub session_start_unix_ns: Option<u64>,
    /// The manifest says the session shut down cleanly (`None`: no manifest).
    pub clean_shutdown: Option<bool>,
    /// Wall-clock time of the clean shutdown.
    pub closed_unix_ns: Option<u64>,
    /// Some segments are still in the staging directory (live or crashed).
    pub staged_segments: bool,
    /// Errors the writer recorded in the manifest.
    pub writer_errors: Vec<String>,
    /// Directory entries skipped while listing, and why.
    pub problems: Vec<String>,
    /// Disagreements between a clean manifest and the segments on disk.
    pub mismatches: Vec<String>,
    /// Channels, by name.
    pub channels: Vec<ChannelInfo>,
    /// The session did not shut down cleanly (crash, kill, or still
    /// running): the manifest says so.
    pub unclean_shutdown: bool,
    /// Data records read from staged segments, all channels.
    pub staged_records: u64,
    /// Crash recovery, if any applies: records still staged, or staged
    /// segments already moved in by `spool2pcap recover`.
    pub recovered: Option<RecoveredInfo>,
    /// The flight recorder trimmed the start of some channels.
    pub trimmed: bool,
    /// Always `false`: a capture directory holds what ryll recorded;
    /// redaction applies to converted output (`convert --redact`, the F12
    /// bundle), whose pcapng section comment starts a line `redacted: …`.
    pub redacted: bool,
    /// Each notable fact (unclean shutdown, recovery, trimming) in one line,
    /// as the text output prints them.
    pub facts: Vec<String>,
    /// What ryll's `metadata.json` says (ryll version, platform, server,
    /// capture start), if the capture has a readable one.
    pub metadata: Option<CaptureMetadata>,
    /// Wireshark's "Decode As" for SPICE on the converted connections, only
    /// needed when Wireshark's SPICE heuristic is switched off.
    pub decode_as: String,
    /// A conversion into one pcapng file next to the capture directory.
    pub convert_command: String,
    /// The exact command that opens that file in Wireshark, SPICE decoded.
    pub wireshark_command: String,
}

impl CaptureInfo {
    /// Damaged regions, all channels.
    pub fn damage_count(&self) -> u64 {
        self.channels
            .iter()
            .map(|c| c.damage_count)
            .fold(0, u64::saturating_add)
    }

    /// Records lost, all channels ([`ChannelInfo::records_lost`]).
    pub fn records_lost(&self) -> u64 {
        self.channels
            .iter()
            .map(|c| c.records_lost)
            .fold(0, u64::saturating_add)
    }

    /// Data bytes lost, all channels, if known for every channel
    /// ([`ChannelInfo::bytes_lost`]).
    pub fn bytes_lost(&self) -> Option<u64> {
        self.channels
            .iter()
            .map(|c| c.bytes_lost)
            .try_fold(0u64, |a, b| Some(a.saturating_add(b?)))
    }

    /// Whether anything is damaged or missing: damage in a segment, or a
    /// clean manifest that disagrees with the segments.
    pub fn has_damage(&self) -> bool {
        self.damage_count() > 0 || !self.mismatches.is_empty()
    }
}

/// How a crashed session's staged records were or can be recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveredInfo {
    /// Records read from segments still staged in memory.
    pub staged_records: u64,
    /// Where they are staged (`None` once moved in).
    pub staging_dir: Option<String>,
    /// `spool2pcap recover` already moved staged segments in (the manifest
    /// recorded it).
    pub moved_in: bool,
    /// The manifest's note of the move, if any.
    pub note: Option<String>,
}

/// Reads every channel of `capture` and summarizes it. `on_damage` is called
/// as each damaged region is found (for streaming reports).
pub fn scan(
    capture: &Path,
    on_damage: &mut dyn FnMut(&str, &Damage),
) -> Result<CaptureInfo, ConvertError> {
    // `info` and `verify` are how a suspect capture is looked at: a disk
    // error must come out as a report, never as a SIGBUS of a mapping.
    let mut opened = OpenedCapture::open(
        capture,
        &Opening {
            access: Access::Read { map: false },
            channels: &[],
            time: TimeMode::Relative,
            redact: Redaction::NONE,
            server_port: SERVER_PORT,
            protect_inputs: false,
        },
    )?;
    let mut info = begin_info(capture, &mut opened);
    let cap = &opened.cap;
    let manifest = cap.manifest();
    for files in cap.channels() {
        let Some(mut reader) = cap.reader(&files.name) else {
            continue;
        };
        let ways = count_directions(&mut reader, &files.name, on_damage);
        let channel = channel_info(
            &files.name,
            &reader,
            ways,
            opened.ports.port(&files.name),
            &mut info,
            manifest,
        );
        info.channels.push(channel);
    }
    add_facts(&mut info, manifest);
    if let (Some(m), Some(true)) = (manifest, info.clean_shutdown) {
        for name in m.channels.keys() {
            if !cap.channels().iter().any(|c| &c.name == name) {
                info.mismatches.push(format!(
                    "{}: in the manifest but no segments on disk",
                    clean(name, MAX_NAME_CHARS).escape_debug()
                ));
            }
        }
    }
    Ok(info)
}

/// What the opening of `capture` found, before any channel is read: what
/// the manifest says (else the first readable segment header), the
/// problems met and ryll's metadata (both taken from its report).
fn begin_info(capture: &Path, opened: &mut OpenedCapture) -> CaptureInfo {
    let cap = &opened.cap;
    let manifest = cap.manifest();
    let peeked = opened.peeked.as_ref();
    let merged = merged_output_path(capture);
    CaptureInfo {
        capture: capture.to_path_buf(),
        manifest_present: manifest.is_some(),
        session_id: opened
            .session_id
            .as_deref()
            .map(|id| clean(id, MAX_TEXT_CHARS)),
        session_start_unix_ns: manifest
            .map(|m| m.session_start_unix_ns)
            .or(peeked.map(|s| s.session_start_unix_ns)),
        clean_shutdown: manifest.map(|m| m.clean_shutdown),
        closed_unix_ns: manifest.and_then(|m| m.closed_unix_ns),
        staged_segments: cap.has_staged_segments(),
        writer_errors: manifest.map(|m| clean_notes(&m.errors)).unwrap_or_default(),
        problems: std::mem::take(&mut opened.report.problems),
        mismatches: Vec::new(),
        channels: Vec::new(),
        unclean_shutdown: manifest.is_some_and(|m| !m.clean_shutdown),
        staged_records: 0,
        recovered: None,
        trimmed: false,
        redacted: false,
        facts: Vec::new(),
        metadata: opened.report.metadata.take(),
        decode_as: decode_as(),
        convert_command: format!(
            "spool2pcap convert {} -w {} --format pcapng",
            shell_quote(capture),
            shell_quote(&merged)
        ),
        wireshark_command: wireshark_command(&merged),
    }
}

/// Records and payload bytes of a channel each way.
#[derive(Default)]
struct Ways {
    records_c2s: u64,
    records_s2c: u64,
    bytes_c2s: u64,
    bytes_s2c: u64,
}

/// Reads `reader` to its end, counting records and bytes each way, and
/// calling `on_damage` with each damaged region of `channel` as it is met.
fn count_directions(
    reader: &mut spool::read::reader::ChannelReader,
    channel: &str,
    on_damage: &mut dyn FnMut(&str, &Damage),
) -> Ways {
    let mut w = Ways::default();
    while let Some(event) = reader.next_event() {
        match event {
            Event::Data(d) => {
                let n = d.payload.len() as u64;
                let (records, bytes) = match d.direction {
                    spool::Direction::ClientToServer => (&mut w.records_c2s, &mut w.bytes_c2s),
                    spool::Direction::ServerToClient => (&mut w.records_s2c, &mut w.bytes_s2c),
                };
                *records = records.saturating_add(1);
                *bytes = bytes.saturating_add(n);
            }
            Event::Gap(_) => {}
            Event::Damage(d) => on_damage(channel, &d),
        }
    }
    w
}

/// The summary of channel `name`, read whole by `reader` (`ways` its
/// counts each way), on synthetic client port `client_port`, checked
/// against what a clean shutdown's `manifest` says it holds (a difference
/// goes to `info.mismatches`).
fn channel_info(
    name: &str,
    reader: &spool::read::reader::ChannelReader,
    ways: Ways,
    client_port: u16,
    info: &mut CaptureInfo,
    manifest: Option<&spool::Manifest>,
) -> ChannelInfo {
    let st = reader.stats();
    // Records lost are attributed to the damage entry before them, and
    // may be updated after it was reported; read the final list.
    // The list is the first regions in detail; the totals count them all.
    let damage: Vec<DamageInfo> = reader.damage().iter().map(DamageInfo::from).collect();
    let totals = reader.damage_totals();
    let summary = manifest.and_then(|m| m.channels.get(name)).copied();
    let expected = summary
        .filter(|_| info.clean_shutdown == Some(true))
        .map(|m| expected_after_trimming(&m, reader.trimmed()));
    if let Some((records, bytes, trimmed)) = expected {
        if records != st.records || bytes != st.bytes {
            info.mismatches.push(format!(
                "{name}: manifest says {records} records / {bytes} bytes{}, segments hold {} / {}",
                if trimmed { " (after trimming)" } else { "" },
                st.records,
                st.bytes
            ));
        }
    }
    let damaged_records = totals.records_lost;
    let (records_lost, bytes_lost) = match expected {
        Some((records, bytes, _)) => (
            damaged_records.max(records.saturating_sub(st.records)),
            Some(bytes.saturating_sub(st.bytes)),
        ),
        None => (damaged_records, (totals.regions == 0).then_some(0)),
    };
    ChannelInfo {
        name: name.to_string(),
        client_port,
        segments: st.segments,
        file_bytes: st.file_bytes,
        raw_bytes: st.raw_bytes,
        compressed_segments: st.compressed_segments,
        records: st.records,
        records_c2s: ways.records_c2s,
        records_s2c: ways.records_s2c,
        bytes: st.bytes,
        bytes_c2s: ways.bytes_c2s,
        bytes_s2c: ways.bytes_s2c,
        first_ts_ns: st.first_ts_ns,
        last_ts_ns: st.last_ts_ns,
        gaps: st.gaps,
        dropped_records: st.dropped_records,
        dropped_bytes: st.dropped_bytes,
        damage_count: totals.regions,
        damaged_records,
        damaged_bytes: totals.bytes,
        records_lost,
        bytes_lost,
        closed_cleanly: st.closed_cleanly,
        manifest: summary,
        staged_records: st.staged_records,
        trimmed: reader.trimmed().filter(|t| t.segments > 0).copied(),
        damage,
    }
}

/// What a clean shutdown's manifest says `m`'s channel should hold once
/// the flight recorder's deletions (`trimmed`, accounted for, not missing)
/// are taken off: records, data bytes, and whether anything was trimmed.
fn expected_after_trimming(m: &ChannelCounters, trimmed: Option<&Trimmed>) -> (u64, u64, bool) {
    let t = trimmed.copied().unwrap_or_default();
    (
        m.records.saturating_sub(t.records),
        m.bytes.saturating_sub(t.data_bytes),
        t.segments > 0 || t.records > 0,
    )
}

/// Fills the summary's one-line facts: shutdown, recovery, trimming.
fn add_facts(info: &mut CaptureInfo, manifest: Option<&spool::Manifest>) {
    info.staged_records = info
        .channels
        .iter()
        .map(|c| c.staged_records)
        .fold(0, u64::saturating_add);
    let note = manifest.and_then(|m| {
        m.errors
            .iter()
            .find(|e| e.starts_with("recovered "))
            .map(|e| clean(e, MAX_TEXT_CHARS))
    });
    let staging = manifest.and_then(|m| m.staging_dir.as_deref().map(|s| clean(s, MAX_TEXT_CHARS)));
    if info.unclean_shutdown {
        info.facts.push(
            "Unclean shutdown: the session did not shut down cleanly (writer killed or \
             crashed, or still running)"
                .to_string(),
        );
    }
    if info.staged_records > 0 || info.staged_segments || note.is_some() {
        let r = RecoveredInfo {
            staged_records: info.staged_records,
            staging_dir: staging.filter(|_| info.staged_segments),
            moved_in: note.is_some(),
            note,
        };
        if info.staged_records > 0 {
            info.facts.push(format!(
                "Recovered: {} records read from segments still staged in memory{} \
                 (`spool2pcap recover DIR` moves them in; a reboot would lose them)",
                r.staged_records,
                r.staging_dir
                    .as_deref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            ));
        }
        if let Some(n) = &r.note {
            info.facts.push(format!("Recovered: {n}"));
        }
        info.recovered = Some(r);
    }
    for c in &info.channels {
        if let Some(t) = &c.trimmed {
            info.trimmed = true;
            info.facts.push(format!(
                "Trimmed: {}",
                crate::pipeline::section::trimmed_note(&c.name, t)
                    .replace("; this is the oldest packet kept", "")
            ));
        }
    }
}

/// Where [`CaptureInfo::convert_command`] writes: `<capture dir>.pcapng`
/// beside the capture directory (`capture.pcapng` if the path has no last
/// component, like `.`).
pub fn merged_output_path(capture: &Path) -> PathBuf {
    match capture.file_name() {
        Some(name) => {
            let mut name = name.to_os_string();
            name.push(".pcapng");
            capture.with_file_name(name)
        }
        None => PathBuf::from("capture.pcapng"),
    }
}

/// Writes `info` as text, one block per channel, in the manner of capinfos.
pub fn write_text(info: &CaptureInfo, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    write_session_text(info, out)?;
    for c in &info.channels {
        write_channel_text(c, out)?;
    }
    for p in &info.problems {
        writeln!(out, "warning: {p}")?;
    }
    for m in &info.mismatches {
        writeln!(out, "mismatch: {m}")?;
    }
    for e in &info.writer_errors {
        writeln!(out, "writer error: {e}")?;
    }
    writeln!(out)?;
    writeln!(out, "To open in Wireshark (SPICE decodes with no option):")?;
    writeln!(out, "  {}", info.convert_command)?;
    writeln!(out, "  {}", info.wireshark_command)?;
    Ok(())
}

/// The lines of [`write_text`] about the session as a whole.
fn write_session_text(info: &CaptureInfo, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let yn = |b: bool| if b { "yes" } else { "no" };
    writeln!(out, "Capture directory:   {}", info.capture.display())?;
    writeln!(
        out,
        "Session id:          {}",
        info.session_id.as_deref().unwrap_or("unknown")
    )?;
    match info.session_start_unix_ns {
        Some(ns) => writeln!(out, "Session start:       {}", format_unix_ns(ns))?,
        None => writeln!(out, "Session start:       unknown")?,
    }
    let clean = match info.clean_shutdown {
        Some(b) => yn(b),
        None => "unknown (no manifest)",
    };
    writeln!(out, "Clean shutdown:      {clean}")?;
    if let Some(m) = info.metadata.as_ref().filter(|m| !m.is_empty()) {
        writeln!(out, "Recorded by:         {}", m.describe())?;
    }
    if let Some(ns) = info.closed_unix_ns {
        writeln!(out, "Closed at:           {}", format_unix_ns(ns))?;
    }
    if info.staged_segments {
        writeln!(out, "Staged segments:     yes (session live or crashed)")?;
    }
    for f in &info.facts {
        writeln!(out, "{f}")?;
    }
    writeln!(out, "Channels:            {}", info.channels.len())?;
    let file: u64 = info.channels.iter().map(|c| c.file_bytes).sum();
    let compressed: u64 = info.channels.iter().map(|c| c.compressed_segments).sum();
    write!(out, "Segments on disk:    {file} bytes")?;
    if compressed > 0 {
        let raw: u64 = info.channels.iter().map(|c| c.raw_bytes).sum();
        write!(
            out,
            " ({compressed} segments compressed; {raw} bytes uncompressed, ratio {:.2})",
            raw as f64 / file.max(1) as f64
        )?;
    }
    writeln!(out)?;
    Ok(())
}

/// The lines of [`write_text`] about one channel.
fn write_channel_text(c: &ChannelInfo, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let yn = |b: bool| if b { "yes" } else { "no" };
    writeln!(out)?;
    writeln!(out, "Channel {} (client port {})", c.name, c.client_port)?;
    writeln!(
        out,
        "  Segments:          {} ({} bytes)",
        c.segments, c.file_bytes
    )?;
    if c.compressed_segments > 0 {
        writeln!(
            out,
            "  Compressed:        {} of {} segments; {} bytes uncompressed, {:.1}x smaller on disk",
            c.compressed_segments,
            c.segments,
            c.raw_bytes,
            c.raw_bytes as f64 / c.file_bytes.max(1) as f64
        )?;
    }
    writeln!(
        out,
        "  Records:           {} ({} c2s, {} s2c)",
        c.records, c.records_c2s, c.records_s2c
    )?;
    writeln!(
        out,
        "  Data bytes:        {} ({} c2s, {} s2c)",
        c.bytes, c.bytes_c2s, c.bytes_s2c
    )?;
    if let (Some(first), Some(last)) = (c.first_ts_ns, c.last_ts_ns) {
        writeln!(
            out,
            "  Time span:         +{} .. +{} ({})",
            format_secs(first),
            format_secs(last),
            format_secs(last.saturating_sub(first))
        )?;
    }
    writeln!(
        out,
        "  Dropped:           {} records, {} bytes ({} gaps)",
        c.dropped_records, c.dropped_bytes, c.gaps
    )?;
    writeln!(out, "  Damage:            {}", damage_summary(c))?;
    writeln!(out, "  Closed cleanly:    {}", yn(c.closed_cleanly))?;
    if c.staged_records > 0 {
        writeln!(out, "  From staging:      {} records", c.staged_records)?;
    }
    if let Some(t) = &c.trimmed {
        writeln!(
            out,
            "  Trimmed start:     {} segments, {} records, {} bytes before +{}",
            t.segments,
            t.records,
            t.data_bytes,
            format_secs(t.until_ts_ns)
        )?;
    }
    if let Some(m) = &c.manifest {
        writeln!(
            out,
            "  Manifest:          {} records, {} bytes, {} dropped records, {} segments",
            m.records, m.bytes, m.dropped_records, m.segments
        )?;
    }
    for d in &c.damage {
        writeln!(
            out,
            "  damage: {}: offset {}: {}",
            d.file.display(),
            d.offset,
            d.kind
        )?;
    }
    let unlisted = c.damage_count.saturating_sub(c.damage.len() as u64);
    if unlisted > 0 {
        writeln!(out, "  damage: {unlisted} more regions, not listed")?;
    }
    Ok(())
}

/// What `verify` concludes from a capture's summary: the same regions,
/// records and bytes lost as `info` reports, all channels and per channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The capture directory.
    pub capture: PathBuf,
    /// Nothing damaged or missing.
    pub ok: bool,
    /// Channels read.
    pub channels: usize,
    /// Data records read, all channels.
    pub records: u64,
    /// Damaged regions, all channels.
    pub damaged_regions: u64,
    /// Records lost, all channels ([`ChannelInfo::records_lost`]).
    pub records_lost: u64,
    /// Data bytes lost, all channels, if known ([`ChannelInfo::bytes_lost`]).
    pub bytes_lost: Option<u64>,
    /// Channels with damage or losses.
    pub damaged_channels: Vec<ChannelVerdict>,
    /// Disagreements between a clean manifest and the segments.
    pub mismatches: Vec<String>,
    /// Directory entries skipped while listing, and why.
    pub problems: Vec<String>,
}

/// One channel's part of a [`Verdict`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChannelVerdict {
    /// Channel name.
    pub name: String,
    /// Damaged regions.
    pub damaged_regions: u64,
    /// Bytes of segment files in them.
    pub damaged_bytes: u64,
    /// Records lost ([`ChannelInfo::records_lost`]).
    pub records_lost: u64,
    /// Data bytes lost, if known.
    pub bytes_lost: Option<u64>,
    /// The damaged regions in detail: the first of them, as many as the
    /// reader keeps ([`spool::read::event::MAX_DAMAGE_KEPT`]);
    /// `damaged_regions` counts them all.
    pub damage: Vec<DamageInfo>,
}

impl Verdict {
    /// The verdict on `info`.
    pub fn of(info: &CaptureInfo) -> Verdict {
        Verdict {
            capture: info.capture.clone(),
            ok: !info.has_damage(),
            channels: info.channels.len(),
            records: info
                .channels
                .iter()
                .map(|c| c.records)
                .fold(0, u64::saturating_add),
            damaged_regions: info.damage_count(),
            records_lost: info.records_lost(),
            bytes_lost: info.bytes_lost(),
            damaged_channels: info
                .channels
                .iter()
                .filter(|c| c.damage_count > 0 || c.records_lost > 0 || c.bytes_lost != Some(0))
                .map(|c| ChannelVerdict {
                    name: c.name.clone(),
                    damaged_regions: c.damage_count,
                    damaged_bytes: c.damaged_bytes,
                    records_lost: c.records_lost,
                    bytes_lost: c.bytes_lost,
                    damage: c.damage.clone(),
                })
                .collect(),
            mismatches: info.mismatches.clone(),
            problems: info.problems.clone(),
        }
    }

    /// The text after the regions `verify` streams as it finds them:
    /// warnings, mismatches, each damaged channel's line as `info` prints
    /// it, and the verdict line.
    pub fn write_text(
        &self,
        info: &CaptureInfo,
        out: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        for p in &self.problems {
            writeln!(out, "warning: {p}")?;
        }
        for m in &self.mismatches {
            writeln!(out, "mismatch: {m}")?;
        }
        for c in &self.damaged_channels {
            if let Some(ci) = info.channels.iter().find(|ci| ci.name == c.name) {
                writeln!(out, "{}: damage: {}", c.name, damage_summary(ci))?;
            }
        }
        let bytes = match self.bytes_lost {
            Some(b) => format!("{b} data bytes lost"),
            None => "data bytes lost unknown".to_string(),
        };
        writeln!(
            out,
            "{}: {} channels, {} records, {} damaged regions, {} records lost, {bytes}, {} mismatches",
            if self.ok { "OK" } else { "DAMAGED" },
            self.channels,
            self.records,
            self.damaged_regions,
            self.records_lost,
            self.mismatches.len()
        )
    }
}

/// One channel's damage in words, as `info` and `verify` both print it:
/// regions (and their bytes in the segment files), records lost, data bytes
/// lost (when known).
pub fn damage_summary(c: &ChannelInfo) -> String {
    let mut text = format!("{} regions", c.damage_count);
    if c.damaged_bytes > 0 {
        text.push_str(&format!(" ({} bytes of segment files)", c.damaged_bytes));
    }
    text.push_str(&format!(", {} records lost", c.records_lost));
    match c.bytes_lost {
        Some(b) => text.push_str(&format!(", {b} data bytes lost")),
        None => text.push_str(", data bytes lost unknown"),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_unix_ns(0), "1970-01-01 00:00:00.000000000 UTC");
        assert_eq!(
            format_unix_ns(1_700_000_000_123_456_789),
            "2023-11-14 22:13:20.123456789 UTC"
        );
        assert_eq!(
            format_unix_ns(951_782_400_000_000_000),
            "2000-02-29 00:00:00.000000000 UTC"
        );
        format_unix_ns(u64::MAX);
    }
}
