//! What a conversion did, per channel and in all ([`ConvertReport`]), and
//! its text for people ([`ConvertReport::write_text`]): one report for
//! `convert`, `convert --follow` and excerpts (the bug report's pcap),
//! built per channel by one function (`ChannelReport::new`) from the
//! counters the spool reader keeps. What only an excerpt has — what it
//! kept of a channel and what it left out — is a channel's [`Cut`].
//!
//! A report is data: what it says of the capture before any channel (its
//! problems, ryll's metadata) was read by the opening (`pipeline::opened`),
//! and its text goes to a writer it is given.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use spool::read::event::{Damage, DamageTotals};
use spool::read::reader::ReadStats;
use spool::store::limit::Trimmed;

use crate::guard::{clean, MAX_TEXT_CHARS};
use crate::metadata::CaptureMetadata;
use crate::output::wireshark::{decode_as_for, wireshark_command_for};
use crate::pipeline::framing::ChannelFramer;
use crate::spice::channels::SERVER_PORT;
use crate::spice::redact::{RedactStats, Redaction};
use crate::time::format_secs;

/// What happened to one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelReport {
    /// Channel name.
    pub channel: String,
    /// Client TCP port it was given.
    pub client_port: u16,
    /// File it was written to (`None` for standard output, and for a
    /// channel that carried nothing in per-channel mode).
    pub output: Option<PathBuf>,
    /// The channel held no record, gap or damage: registered but never
    /// used. Per-channel conversion writes no file for it.
    pub carried_nothing: bool,
    /// Data records read.
    pub records: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Session time (ns) of the first data record read.
    pub first_ts_ns: Option<u64>,
    /// Session time (ns) of the last data record read.
    pub last_ts_ns: Option<u64>,
    /// Frames written, synthetic ones included.
    pub frames: u64,
    /// Frames written that the capture does not hold: handshake, SPICE
    /// link phase, FIN exchange.
    pub synthetic_frames: u64,
    /// A SPICE link phase was made up for this channel.
    pub link_synthesized: bool,
    /// The output has a SPICE link phase for this channel, made up or
    /// recorded: without one Wireshark decodes no SPICE message.
    pub has_link_phase: bool,
    /// Gap records met.
    pub gaps: u64,
    /// Records the writer dropped, per the gap records.
    pub dropped_records: u64,
    /// Bytes the writer dropped, per the gap records.
    pub dropped_bytes: u64,
    /// Damage found (the records around it were still converted): the
    /// first regions in detail, as many as the reader keeps
    /// ([`spool::read::event::MAX_DAMAGE_KEPT`]).
    pub damage: Vec<Damage>,
    /// Every damaged region, counted.
    pub damage_totals: DamageTotals,
    /// The channel's last segment carries a final seal.
    pub closed_cleanly: bool,
    /// Data records read from segments still staged in memory (a crashed
    /// session not yet recovered, or a live one).
    pub staged_records: u64,
    /// What the flight recorder deleted from the channel's start, if any.
    pub trimmed: Option<Trimmed>,
    /// What redaction rewrote (`None`: nothing to redact on this channel).
    pub redacted: Option<RedactStats>,
    /// What an excerpt kept of the channel and left out (`None`: a
    /// conversion, which keeps every record read).
    pub cut: Option<Cut>,
}

/// What an excerpt ([`crate::pipeline::excerpt`]) kept of one channel: the
/// records it read are the whole channel, and what it left out is whole
/// records in front of each direction (and, with a time window, after the
/// window's end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cut {
    /// Data records written.
    pub kept_records: u64,
    /// Data frames of the records left out.
    pub omitted_frames: u64,
    /// Bytes of those frames (headers included, pcap record headers not).
    pub omitted_bytes: u64,
    /// Session time (ns) of the channel's first packet written.
    pub first_written_ns: Option<u64>,
}

impl ChannelReport {
    /// The report of channel `channel` on client port `client_port`, read
    /// with the counters `stats` and the `damage` list, framed (to the end)
    /// by `framer`, written to `output`. A `trimmed` start counts only if
    /// segments were deleted. Nothing is cut: an excerpt sets
    /// [`ChannelReport::cut`] afterwards.
    pub(crate) fn new(
        channel: &str,
        client_port: u16,
        stats: &ReadStats,
        damage: (&[Damage], DamageTotals),
        trimmed: Option<&Trimmed>,
        framer: &ChannelFramer,
        output: Option<PathBuf>,
    ) -> ChannelReport {
        ChannelReport {
            channel: channel.to_string(),
            client_port,
            output,
            carried_nothing: false,
            records: stats.records,
            bytes: stats.bytes,
            first_ts_ns: stats.first_ts_ns,
            last_ts_ns: stats.last_ts_ns,
            frames: framer.frames(),
            synthetic_frames: framer.synthetic_frames(),
            link_synthesized: framer.link_synthesized(),
            has_link_phase: framer.has_link_phase(),
            gaps: stats.gaps,
            dropped_records: stats.dropped_records,
            dropped_bytes: stats.dropped_bytes,
            damage: damage.0.to_vec(),
            damage_totals: damage.1,
            closed_cleanly: stats.closed_cleanly,
            staged_records: stats.staged_records,
            trimmed: trimmed.filter(|t| t.segments > 0).copied(),
            redacted: framer.redact_stats(),
            cut: None,
        }
    }

    /// Written to standard output (not dropped for carrying nothing, not
    /// an excerpt's: that goes to its caller's writer).
    fn to_stdout(&self) -> bool {
        self.output.is_none() && !self.carried_nothing && self.cut.is_none()
    }
}

/// A trimmed start in a few words: "start trimmed by the flight recorder
/// (N records before +T deleted)".
pub(crate) fn trimmed_briefly(t: &Trimmed) -> String {
    format!(
        "start trimmed by the flight recorder ({} records before +{} deleted)",
        t.records,
        format_secs(t.until_ts_ns)
    )
}

/// What [`crate::convert()`], [`crate::pipeline::follow::follow`] or
/// [`crate::pipeline::excerpt::write_excerpt`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConvertReport {
    /// One entry per converted channel, in name order.
    pub channels: Vec<ChannelReport>,
    /// Entries of the capture directory that were skipped, and notes such as
    /// a missing session start.
    pub problems: Vec<String>,
    /// Wall-clock session start used for absolute timestamps, if known.
    pub session_start_unix_ns: Option<u64>,
    /// What ryll's `metadata.json` says about the session, if there is one.
    pub metadata: Option<CaptureMetadata>,
    /// The manifest's `clean_shutdown` (`None`: no manifest).
    pub clean_shutdown: Option<bool>,
    /// What was redacted in the output.
    pub redaction: Redaction,
    /// The synthetic server port, if not [`SERVER_PORT`] (chosen with
    /// [`crate::ConvertOptions::server_port`]).
    pub server_port: Option<u16>,
}

/// Damage lines a conversion prints before it counts the rest: a capture
/// damaged every few bytes would otherwise print a line per region.
const MAX_DAMAGE_LINES: usize = 20;

impl ConvertReport {
    /// Data records read from staged segments, all channels: what a crash
    /// left in memory and this conversion recovered.
    pub fn staged_records(&self) -> u64 {
        self.channels
            .iter()
            .map(|c| c.staged_records)
            .fold(0, u64::saturating_add)
    }

    /// Every damage found, all channels.
    pub fn damage(&self) -> impl Iterator<Item = &Damage> {
        self.channels.iter().flat_map(|c| c.damage.iter())
    }

    /// Whether any damage was found.
    pub fn has_damage(&self) -> bool {
        self.channels.iter().any(|c| c.damage_totals.regions > 0)
    }

    /// Frames written, all channels, synthetic ones included.
    pub fn frames(&self) -> u64 {
        self.channels
            .iter()
            .map(|c| c.frames)
            .fold(0, u64::saturating_add)
    }

    /// The cuts of an excerpt's channels (none for a conversion).
    fn cuts(&self) -> impl Iterator<Item = &Cut> {
        self.channels.iter().filter_map(|c| c.cut.as_ref())
    }

    /// Whether this reports an excerpt: its channels carry a [`Cut`].
    pub fn is_excerpt(&self) -> bool {
        self.cuts().next().is_some()
    }

    /// Data frames of the records an excerpt left out, all channels (0 for
    /// a conversion).
    pub fn omitted_frames(&self) -> u64 {
        self.cuts()
            .map(|c| c.omitted_frames)
            .fold(0, u64::saturating_add)
    }

    /// Bytes of those frames.
    pub fn omitted_bytes(&self) -> u64 {
        self.cuts()
            .map(|c| c.omitted_bytes)
            .fold(0, u64::saturating_add)
    }

    /// Session time (ns) of the oldest packet an excerpt wrote, if it
    /// wrote any (`None` for a conversion).
    pub fn oldest_written_ns(&self) -> Option<u64> {
        self.cuts().filter_map(|c| c.first_written_ns).min()
    }

    /// The files written, each once, in the order written.
    pub fn outputs(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        for p in self.channels.iter().filter_map(|c| c.output.as_deref()) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// For every file written, the command that opens it in Wireshark,
    /// SPICE decoded ([`wireshark_command`]).
    pub fn wireshark_commands(&self) -> Vec<String> {
        let port = self.server_port.unwrap_or(SERVER_PORT);
        self.outputs()
            .into_iter()
            .map(|f| wireshark_command_for(f, port))
            .collect()
    }

    /// The summary for people, as the CLI prints it on stderr (stdout may
    /// be the capture): warnings, a line per channel written, what an
    /// excerpt left out, the session's state, channels without traffic,
    /// redaction, damage, and the command that opens the result with SPICE
    /// decoding on.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        for p in &self.problems {
            writeln!(out, "spool2pcap: warning: {p}")?;
        }
        if self.channels.is_empty() {
            writeln!(out, "spool2pcap: warning: no channels to convert")?;
        }
        let unused: Vec<&str> = self
            .channels
            .iter()
            .filter(|c| c.carried_nothing && c.output.is_none())
            .map(|c| c.channel.as_str())
            .collect();
        for c in self
            .channels
            .iter()
            .filter(|c| !(c.carried_nothing && c.output.is_none()))
        {
            write_channel_line(out, c)?;
        }
        if self.is_excerpt() {
            write_cut_line(out, self)?;
        }
        if self.clean_shutdown == Some(false) {
            let staged = self.staged_records();
            if staged > 0 {
                writeln!(
                    out,
                    "spool2pcap: the session did not shut down cleanly; {staged} records were \
                     recovered from segments still staged in memory (`spool2pcap recover DIR` \
                     moves them in for good)"
                )?;
            } else {
                writeln!(out, "spool2pcap: the session did not shut down cleanly")?;
            }
        }
        if !unused.is_empty() {
            writeln!(
                out,
                "no traffic, so no file: {}",
                clean(&unused.join(", "), MAX_TEXT_CHARS)
            )?;
        }
        if self.redaction.any() {
            writeln!(out, "redacted: {}", self.redaction.describe())?;
        }
        for d in self.damage().take(MAX_DAMAGE_LINES) {
            writeln!(
                out,
                "spool2pcap: damage: {}",
                clean(&d.to_string(), MAX_TEXT_CHARS)
            )?;
        }
        let regions = self
            .channels
            .iter()
            .map(|c| c.damage_totals.regions)
            .fold(0, u64::saturating_add);
        if regions > MAX_DAMAGE_LINES as u64 {
            let more = regions - MAX_DAMAGE_LINES as u64;
            writeln!(
                out,
                "spool2pcap: damage: {more} more regions (`spool2pcap info` lists them by channel)"
            )?;
        }
        write_open_hint(out, self)?;
        Ok(())
    }
}

/// The last lines of [`ConvertReport::write_text`]: the exact command that
/// opens the result in Wireshark, SPICE decoded with no option. Without a
/// link phase (`--no-synth-link`) Wireshark decodes no SPICE message, so
/// there is no such command to give: it says that instead.
fn write_open_hint(out: &mut dyn Write, r: &ConvertReport) -> io::Result<()> {
    if r.channels.iter().all(|c| c.records == 0) {
        return Ok(());
    }
    if !r.channels.iter().any(|c| c.has_link_phase) {
        return writeln!(
            out,
            "no SPICE link phase in the output: Wireshark shows TCP, not SPICE"
        );
    }
    let (how, option) = match r.server_port {
        Some(p) => (
            "with SPICE on the chosen server port",
            format!("-d {} ", decode_as_for(p)),
        ),
        None => ("SPICE decodes with no option", String::new()),
    };
    let commands = r.wireshark_commands();
    if !commands.is_empty() {
        writeln!(out, "open in Wireshark ({how}):")?;
        for c in commands {
            writeln!(out, "  {c}")?;
        }
    } else if r.channels.iter().any(ChannelReport::to_stdout) {
        writeln!(
            out,
            "open in Wireshark ({how}): ... | wireshark {option}-k -i -"
        )?;
    } else if r.is_excerpt() {
        writeln!(
            out,
            "open in Wireshark ({how}): wireshark {option}EXCERPT.pcap"
        )?;
    }
    Ok(())
}

/// The line of [`ConvertReport::write_text`] that says what an excerpt
/// left out, all channels, and where what it kept begins.
fn write_cut_line(out: &mut dyn Write, r: &ConvertReport) -> io::Result<()> {
    let frames = r.omitted_frames();
    if frames == 0 {
        return writeln!(out, "excerpt: nothing left out");
    }
    write!(
        out,
        "excerpt: {frames} frames ({} bytes) of the capture left out",
        r.omitted_bytes()
    )?;
    match r.oldest_written_ns() {
        Some(ns) => writeln!(out, "; the oldest packet kept is at +{}", format_secs(ns)),
        None => writeln!(out, "; no packet kept"),
    }
}

/// One channel's line of [`ConvertReport::write_text`].
fn write_channel_line(out: &mut dyn Write, c: &ChannelReport) -> io::Result<()> {
    let dest = match (&c.output, &c.cut) {
        (Some(p), _) => p.display().to_string(),
        (None, Some(_)) => "the excerpt".to_string(),
        (None, None) => "<stdout>".to_string(),
    };
    write!(
        out,
        "{}: {} records, {} bytes -> {} frames (port {}) in {}",
        c.channel, c.records, c.bytes, c.frames, c.client_port, dest
    )?;
    if c.synthetic_frames > 0 {
        write!(
            out,
            "; {} synthetic{}",
            c.synthetic_frames,
            if c.link_synthesized {
                " (with SPICE link phase)"
            } else {
                ""
            }
        )?;
    }
    if let Some(cut) = &c.cut {
        write!(out, "; {} records kept", cut.kept_records)?;
        if cut.omitted_frames > 0 {
            write!(
                out,
                ", {} frames ({} bytes) left out",
                cut.omitted_frames, cut.omitted_bytes
            )?;
        }
    }
    if c.gaps > 0 {
        write!(
            out,
            "; {} gaps, {} records / {} bytes dropped by the writer",
            c.gaps, c.dropped_records, c.dropped_bytes
        )?;
    }
    if c.damage_totals.regions > 0 {
        write!(out, "; {} damaged regions skipped", c.damage_totals.regions)?;
    }
    if !c.closed_cleanly {
        write!(out, "; not closed cleanly")?;
    }
    if let Some(t) = &c.trimmed {
        write!(out, "; {}", trimmed_briefly(t))?;
    }
    if let Some(r) = &c.redacted {
        write!(
            out,
            "; redacted {} messages ({} bytes zeroed{})",
            r.messages,
            r.bytes,
            if r.unframed_records > 0 {
                format!(
                    ", {} records whole where framing was lost",
                    r.unframed_records
                )
            } else {
                String::new()
            }
        )?;
    }
    writeln!(out)
}
