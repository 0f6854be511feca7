//! F12: a bug-report zip cut from the spool, while capture keeps running.
//!
//! ryll's F12 report holds a `traffic.pcap` cut from an in-memory ring to
//! fit a 24 MB target (GitHub's attachment limit is 25 MB). Here the
//! traffic comes from the capture directory instead, read with the spool's
//! reader — which reads a live spool safely, staged segments included — so
//! the channel loops are never touched, and the report can cover the whole
//! session when the budget allows.
//!
//! The newest traffic is kept. Each channel and direction starts at a
//! SPICE message boundary (found by walking the 6-byte mini headers from
//! the start of the stream), never inside a message: a pcap beginning with
//! the tail of one would not decode.
//!
//! Reports get attached to public issue trackers, so by default the
//! keystrokes (bodies of the inputs channel's key messages) and clipboard
//! contents (agent clipboard messages on the main channel) are zeroed with
//! [`spool2pcap::redact`], which keeps every header, size and sequence
//! number; [`BugReportOptions::redact`] turns that off for private use.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use serde::Serialize;
use spool::reader::Event;
use spool::{Capture, Direction};
use spool2pcap::redact::{Redaction, Redactor};

use crate::baseline::{MAX_SEGMENT_PAYLOAD, PCAP_SNAPLEN};

/// ryll's target for a report's `traffic.pcap`.
pub const DEFAULT_BUDGET_BYTES: u64 = 24 * 1000 * 1000;

const PCAP_FILE_HEADER_BYTES: u64 = 24;
const PCAP_RECORD_HEADER_BYTES: u64 = 16;
/// Ethernet + IPv4 + TCP headers of each frame.
const FRAME_HEADER_BYTES: u64 = 14 + 20 + 20;

/// `traffic_capture` in the report's `metadata.json`, ryll's field names.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrafficCaptureSummary {
    /// Bytes the pcap was allowed to use.
    pub budget_bytes: u64,
    /// Size of the `traffic.pcap` written.
    pub written_bytes: u64,
    /// Packets (TCP segments) in the pcap.
    pub packets_written: u64,
    /// Older packets left out to stay within `budget_bytes` (or to start
    /// each stream at a message boundary).
    pub packets_omitted: u64,
    /// Frame bytes of the packets left out.
    pub bytes_omitted: u64,
    /// Session time (seconds) of the oldest packet kept; `None` if empty.
    pub oldest_packet_secs: Option<f64>,
    /// True when older traffic was left out.
    pub truncated: bool,
    /// What was redacted ("inputs keystrokes", "clipboard"); empty: nothing.
    pub redacted: Vec<String>,
}

/// How [`write_bug_report_with`] cuts the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BugReportOptions {
    /// Bytes `traffic.pcap` may use.
    pub budget_bytes: u64,
    /// What to zero before writing; default: keystrokes and clipboard.
    pub redact: Redaction,
}

impl Default for BugReportOptions {
    fn default() -> Self {
        BugReportOptions {
            budget_bytes: DEFAULT_BUDGET_BYTES,
            redact: Redaction::ALL,
        }
    }
}

/// One channel in `capture-summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChannelSummary {
    /// Data records in the spool.
    pub records: u64,
    /// Payload bytes in the spool.
    pub bytes: u64,
    /// Records the writer dropped (from gap records).
    pub dropped_records: u64,
    /// Bytes the writer dropped.
    pub dropped_bytes: u64,
    /// Session time of the first record, seconds.
    pub first_secs: Option<f64>,
    /// Session time of the last record, seconds.
    pub last_secs: Option<f64>,
    /// Damaged regions the reader skipped.
    pub damaged_records: u64,
}

/// What [`write_bug_report`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct BugReportSummary {
    /// The pcap's summary.
    pub traffic_capture: TrafficCaptureSummary,
    /// Per channel.
    pub channels: BTreeMap<String, ChannelSummary>,
}

/// One data record, without its bytes (pass 1).
struct Entry {
    ts_ns: u64,
    channel: usize,
    dir: Direction,
    /// Starts at a SPICE message boundary of its stream.
    boundary: bool,
    /// Frame bytes in the pcap (record headers + frame headers + payload).
    cost: u64,
    packets: u64,
}

/// Tracks SPICE mini-header framing of one direction of one channel.
#[derive(Default)]
struct Framer {
    /// Body bytes still to come of the current message.
    need: u64,
    /// Bytes of a header split across records.
    header: Vec<u8>,
    lost: bool,
}

impl Framer {
    fn at_boundary(&self) -> bool {
        !self.lost && self.need == 0 && self.header.is_empty()
    }

    fn feed(&mut self, mut data: &[u8]) {
        if self.lost {
            return;
        }
        while !data.is_empty() {
            if self.need > 0 {
                let take = self.need.min(data.len() as u64);
                self.need -= take;
                data = &data[take as usize..];
                continue;
            }
            let want = 6 - self.header.len();
            let take = want.min(data.len());
            self.header.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.header.len() == 6 {
                let h = &self.header;
                self.need = u64::from(u32::from_le_bytes([h[2], h[3], h[4], h[5]]));
                self.header.clear();
            }
        }
    }

    /// Bytes of the stream were dropped: framing survives only if they lie
    /// inside the current message's body.
    fn skip(&mut self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        if self.header.is_empty() && self.need >= bytes {
            self.need -= bytes;
        } else {
            self.lost = true;
        }
    }
}

fn packets_of(len: usize) -> u64 {
    len.div_ceil(MAX_SEGMENT_PAYLOAD).max(1) as u64
}

/// Writes a bug-report zip at `out` from the capture directory `capture`
/// (live or closed): `traffic.pcap` (the newest traffic of all channels
/// within `budget_bytes`), `metadata.json` (the capture's metadata plus
/// `traffic_capture`), and `capture-summary.json`. Keystrokes and
/// clipboard contents are redacted ([`BugReportOptions::default`]).
pub fn write_bug_report(
    capture: &Path,
    out: &Path,
    budget_bytes: u64,
) -> Result<BugReportSummary, String> {
    let opts = BugReportOptions {
        budget_bytes,
        ..BugReportOptions::default()
    };
    write_bug_report_with(capture, out, &opts)
}

/// [`write_bug_report`] with explicit options (redaction off, for one).
pub fn write_bug_report_with(
    capture: &Path,
    out: &Path,
    opts: &BugReportOptions,
) -> Result<BugReportSummary, String> {
    let budget_bytes = opts.budget_bytes;
    let cap = Capture::open(capture).map_err(|e| format!("{}: {e}", capture.display()))?;
    let names: Vec<String> = cap.channels().iter().map(|c| c.name.clone()).collect();

    // Pass 1: index every record, its cost, and whether it starts a message.
    let mut entries = Vec::new();
    let mut channels = BTreeMap::new();
    for (ci, name) in names.iter().enumerate() {
        let Some(mut r) = cap.reader(name) else {
            continue;
        };
        let mut sum = ChannelSummary::default();
        let mut framers = [Framer::default(), Framer::default()];
        while let Some(ev) = r.next_event() {
            match ev {
                Event::Data(d) => {
                    let f = &mut framers[d.direction.to_byte() as usize];
                    let n = d.payload.len();
                    let packets = packets_of(n);
                    entries.push(Entry {
                        ts_ns: d.ts_ns,
                        channel: ci,
                        dir: d.direction,
                        boundary: f.at_boundary(),
                        cost: packets * (PCAP_RECORD_HEADER_BYTES + FRAME_HEADER_BYTES) + n as u64,
                        packets,
                    });
                    f.feed(d.payload);
                    sum.records += 1;
                    sum.bytes += n as u64;
                    let secs = d.ts_ns as f64 / 1e9;
                    sum.first_secs.get_or_insert(secs);
                    sum.last_secs = Some(secs);
                }
                Event::Gap(g) => {
                    sum.dropped_records += g.records();
                    sum.dropped_bytes += g.bytes();
                    framers[0].skip(g.bytes_c2s);
                    framers[1].skip(g.bytes_s2c);
                }
                Event::Damage(_) => {
                    sum.damaged_records += 1;
                    framers.iter_mut().for_each(|f| f.lost = true);
                }
            }
        }
        channels.insert(name.clone(), sum);
    }
    // Stable: records of one stream keep their order on equal times.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| entries[i].ts_ns);

    let keep = select_newest(&entries, &order, budget_bytes);

    // Pass 2: the kept records, merged across channels in time order and
    // written straight into the zip: memory stays one record per channel,
    // whatever the budget (a whole-session report can be gigabytes).
    let mut by_channel: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
    for (i, e) in entries.iter().enumerate() {
        by_channel[e.channel].push(i);
    }
    let mut streams = Vec::new();
    for (ci, name) in names.iter().enumerate() {
        let Some(reader) = cap.reader(name) else {
            continue;
        };
        let trimmed = reader.trimmed().is_some_and(|t| t.segments > 0);
        streams.push(Stream {
            ci,
            redactor: Redactor::for_channel(name, opts.redact, trimmed),
            reader,
            ids: std::mem::take(&mut by_channel[ci]).into_iter(),
            head: None,
            buf: Vec::new(),
            tcp: spool2pcap::TcpStreamBuilder::new(0),
        });
    }
    let ports = spool2pcap::PortMap::new(names.iter().map(String::as_str));
    for st in &mut streams {
        st.tcp = spool2pcap::TcpStreamBuilder::new(ports.port(&names[st.ci]));
        st.advance(&entries, &keep, &names)?;
    }

    let file =
        spool::fsutil::create_new_file(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut zip = zip::ZipWriter::new(file);
    // SPICE display traffic is mostly compressed images: deflating it saves
    // about 1 % at 35 MB/s, so the pcap is stored; the JSON is deflated.
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true)
        .unix_permissions(0o600);
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o600);
    zip.start_file("traffic.pcap", stored)
        .map_err(|e| format!("traffic.pcap: {e}"))?;
    let session_start = cap.manifest().map_or(0, |m| m.session_start_unix_ns);
    let mut packets_written = 0u64;
    let mut oldest_ns = None;
    let written_bytes = {
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            snaplen: PCAP_SNAPLEN,
            ..Default::default()
        };
        let counted = CountingWriter {
            inner: std::io::BufWriter::with_capacity(1 << 20, &mut zip),
            bytes: 0,
        };
        let mut w = PcapWriter::with_header(counted, header).map_err(|e| e.to_string())?;
        let mut frame = Vec::new();
        // The stream whose head is oldest (ties: channel order).
        while let Some(next) = streams
            .iter()
            .enumerate()
            .filter_map(|(i, st)| st.head.map(|(ts, _)| (ts, i)))
            .min()
            .map(|(_, i)| i)
        {
            let st = &mut streams[next];
            let Some((ts, dir)) = st.head else { break };
            oldest_ns.get_or_insert(ts);
            let when = std::time::Duration::from_nanos(session_start.saturating_add(ts));
            let frames = st.tcp.push(dir, &st.buf, &mut frame, |f: &[u8]| {
                w.write_packet(&PcapPacket::new(when, f.len() as u32, f))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })?;
            packets_written += frames;
            st.advance(&entries, &keep, &names)?;
        }
        let mut counted = w.into_writer();
        counted.flush().map_err(|e| format!("traffic.pcap: {e}"))?;
        counted.bytes
    };
    let omitted = (0..entries.len()).filter(|&i| !keep[i]);
    let (packets_omitted, bytes_omitted) = omitted.fold((0, 0), |(p, b), i| {
        (
            p + entries[i].packets,
            b + entries[i].cost - entries[i].packets * PCAP_RECORD_HEADER_BYTES,
        )
    });
    let traffic_capture = TrafficCaptureSummary {
        budget_bytes,
        written_bytes,
        packets_written,
        packets_omitted,
        bytes_omitted,
        oldest_packet_secs: oldest_ns.map(|ns| ns as f64 / 1e9),
        truncated: packets_omitted > 0,
        redacted: opts.redact.names().iter().map(|n| n.to_string()).collect(),
    };

    let mut metadata = match crate::sink::read_metadata(capture) {
        Ok(m) => serde_json::to_value(m).map_err(|e| e.to_string())?,
        Err(_) => serde_json::json!({}),
    };
    if let Some(obj) = metadata.as_object_mut() {
        obj.insert(
            "traffic_capture".into(),
            serde_json::to_value(&traffic_capture).map_err(|e| e.to_string())?,
        );
    }
    let summary = BugReportSummary {
        traffic_capture,
        channels,
    };

    let mut add = |name: &str, bytes: &[u8]| -> Result<(), String> {
        zip.start_file(name, deflated)
            .map_err(|e| format!("{name}: {e}"))?;
        zip.write_all(bytes).map_err(|e| format!("{name}: {e}"))
    };
    add("metadata.json", &to_json(&metadata)?)?;
    add("capture-summary.json", &to_json(&summary.channels)?)?;
    zip.finish()
        .map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(summary)
}

/// Chooses the records to keep: from the newest back, each stream (channel
/// and direction) keeps going back while the budget lasts, and a stream's
/// kept records always begin at a SPICE message. A record is only committed
/// once its stream reaches a record that starts a message; when a stream's
/// next older record does not fit, the stream stops there and gives back
/// what it had not committed, so the budget goes to the other streams
/// instead of to a message that cannot be shown whole.
fn select_newest(entries: &[Entry], order: &[usize], budget: u64) -> Vec<bool> {
    #[derive(Default)]
    struct Stream {
        pending: Vec<usize>,
        pending_cost: u64,
        closed: bool,
    }
    let mut keep = vec![false; entries.len()];
    let mut used = PCAP_FILE_HEADER_BYTES;
    let mut streams: BTreeMap<(usize, u8), Stream> = BTreeMap::new();
    for &i in order.iter().rev() {
        let e = &entries[i];
        let s = streams.entry((e.channel, e.dir.to_byte())).or_default();
        if s.closed {
            continue;
        }
        if used + e.cost > budget {
            s.closed = true;
            used -= s.pending_cost;
            s.pending.clear();
            s.pending_cost = 0;
            continue;
        }
        used += e.cost;
        s.pending.push(i);
        s.pending_cost += e.cost;
        if e.boundary {
            for &p in &s.pending {
                keep[p] = true;
            }
            s.pending.clear();
            s.pending_cost = 0;
        }
    }
    keep
}

/// One channel's kept records during the merge of pass 2.
struct Stream {
    ci: usize,
    reader: spool::reader::ChannelReader,
    redactor: Option<Redactor>,
    /// This channel's entries (pass 1), in reading order.
    ids: std::vec::IntoIter<usize>,
    /// The next kept record: time and direction; its bytes are in `buf`.
    head: Option<(u64, Direction)>,
    buf: Vec<u8>,
    tcp: spool2pcap::TcpStreamBuilder,
}

impl Stream {
    /// Reads on to the next kept record. Every record goes through the
    /// redactor, kept or not: it follows message framing from the start.
    fn advance(
        &mut self,
        entries: &[Entry],
        keep: &[bool],
        names: &[String],
    ) -> Result<(), String> {
        self.head = None;
        while let Some(ev) = self.reader.next_event() {
            match ev {
                Event::Data(d) => {
                    // A live spool may have grown since pass 1: what is new
                    // is left for the next report.
                    let Some(id) = self.ids.next() else {
                        return Ok(());
                    };
                    if entries[id].ts_ns != d.ts_ns {
                        return Err(format!(
                            "{}: the spool changed while reading it",
                            names[self.ci]
                        ));
                    }
                    let bytes = match self.redactor.as_mut() {
                        Some(red) => red.apply(d.direction, d.payload),
                        None => d.payload,
                    };
                    if keep[id] {
                        self.buf.clear();
                        self.buf.extend_from_slice(bytes);
                        self.head = Some((d.ts_ns, d.direction));
                        return Ok(());
                    }
                }
                Event::Gap(g) => {
                    if let Some(red) = self.redactor.as_mut() {
                        red.gap(&g);
                    }
                }
                Event::Damage(_) => {
                    if let Some(red) = self.redactor.as_mut() {
                        red.lose_framing();
                    }
                }
            }
        }
        Ok(())
    }
}

/// Counts the bytes written through it (the pcap's size, for the summary).
struct CountingWriter<W: Write> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec_pretty(v).map_err(|e| e.to_string())
}
