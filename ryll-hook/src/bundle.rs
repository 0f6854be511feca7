//! F12: a bug-report zip cut from the spool, while capture keeps running.
//!
//! ryll's F12 report holds a `traffic.pcap` cut from an in-memory ring to
//! fit a 24 MB target (GitHub's attachment limit is 25 MB). Here the
//! traffic comes from the capture directory instead, read with the spool's
//! reader — which reads a live spool safely, staged segments included — so
//! the channel loops are never touched, and the report can cover the whole
//! session when the budget allows.
//!
//! The pcap is an excerpt made by spool2pcap ([`spool2pcap::pipeline::excerpt`]):
//! the packets `spool2pcap convert` would write for the same records, so
//! Wireshark opens it decoded as SPICE, with no option. Every
//! channel's connection opens with a synthetic TCP handshake and SPICE
//! link phase, without which the SPICE dissector decodes nothing; their
//! bytes count against the budget.
//!
//! The newest traffic is kept. Each channel and direction starts at a
//! SPICE message boundary (found by walking the 6-byte mini headers from
//! the start of the stream), never inside a message: a pcap beginning with
//! the tail of one would not decode.
//!
//! Reports get attached to public issue trackers, so by default the
//! keystrokes (bodies of the inputs channel's key messages) and clipboard
//! contents (agent clipboard messages on the main channel) are zeroed with
//! [`spool2pcap::spice::redact`], which keeps every header, size and sequence
//! number; [`BugReportOptions::redact`] turns that off for private use.
//!
//! The zip is written to a temporary file beside its destination and
//! linked into place once complete, so a failed report leaves nothing
//! behind and an existing file is never overwritten.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use spool::store::fsutil;
use spool2pcap::pipeline::excerpt::{write_excerpt, ExcerptError, ExcerptOptions, Selection};
use spool2pcap::spice::redact::Redaction;
use spool2pcap::time::UtcDateTime;
use spool2pcap::ConvertReport;

/// ryll's target for a report's `traffic.pcap`.
pub const DEFAULT_BUDGET_BYTES: u64 = 24 * 1000 * 1000;

/// `traffic_capture` in the report's `metadata.json`, ryll's field names.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrafficCaptureSummary {
    /// Bytes the pcap was allowed to use.
    pub budget_bytes: u64,
    /// Size of the `traffic.pcap` written, counted as it passes to the
    /// zip entry (or buffer): the excerpt's report says what it made of the
    /// capture, as `convert`'s does, and the size of what a writer received
    /// is known at the writer.
    pub written_bytes: u64,
    /// Packets (TCP segments) in the pcap, the synthetic handshake, link
    /// phase and close included.
    pub packets_written: u64,
    /// Older packets left out to stay within `budget_bytes` (or to start
    /// each stream at a message boundary).
    pub packets_omitted: u64,
    /// Frame bytes of the packets left out.
    pub bytes_omitted: u64,
    /// Session time (seconds) of the oldest packet in the pcap; `None` if
    /// it has none.
    pub oldest_packet_secs: Option<f64>,
    /// True when older traffic was left out.
    pub truncated: bool,
    /// What was redacted ("inputs keystrokes", "clipboard"); empty: nothing.
    pub redacted: Vec<String>,
}

/// How [`write_bug_report_with`] and [`capture_traffic_pcap`] cut the report.
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

/// One channel's entry in the report's `capture-summary.json`: what the
/// reader found in the spool for it. Not the manifest's
/// [`spool::store::manifest::ChannelCounters`], which holds the writer's counts and
/// no time span or damage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CaptureSummaryEntry {
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
    pub channels: BTreeMap<String, CaptureSummaryEntry>,
}

/// Why a bug report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The capture could not be read, a channel asked for is not in it, or
    /// writing the pcap failed.
    #[error(transparent)]
    Traffic(#[from] ExcerptError),
    /// Something already exists where the report was to be written.
    #[error("{0}: already exists")]
    Exists(PathBuf),
    /// Writing the report file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The zip library refused an entry.
    #[error("{path}: zip: {source}")]
    Zip {
        /// The report being written.
        path: PathBuf,
        /// Why.
        source: zip::result::ZipError,
    },
    /// A summary could not be serialized.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A bug report's `traffic.pcap` without the zip: the newest traffic of
/// `channel` (a channel name such as `"display"`; `None` for every
/// channel) in the capture directory `capture` (live or closed), within
/// `opts.budget_bytes`, redacted as `opts` says. Returns the pcap's bytes
/// and its summary (`metadata.json`'s `traffic_capture`). Named for its
/// source, a capture directory: [`crate::report::traffic_pcap`], what
/// ryll's own report code calls, takes the process's registered capture or
/// ring and comes here.
pub fn capture_traffic_pcap(
    capture: &Path,
    channel: Option<&str>,
    opts: &BugReportOptions,
) -> Result<(Vec<u8>, TrafficCaptureSummary), BundleError> {
    let mut pcap = Vec::new();
    let (summary, _) = write_traffic(capture, channel, opts, &mut pcap)?;
    Ok((pcap, summary))
}

/// Writes the traffic of a report to `out` as [`capture_traffic_pcap`] makes it.
fn write_traffic<W: Write>(
    capture: &Path,
    channel: Option<&str>,
    opts: &BugReportOptions,
    out: W,
) -> Result<(TrafficCaptureSummary, ConvertReport), BundleError> {
    let mut excerpt = ExcerptOptions::new(Selection::Newest {
        budget_bytes: opts.budget_bytes,
    });
    excerpt.channels = channel.map(str::to_string).into_iter().collect();
    excerpt.redact = opts.redact;
    let mut counted = CountingWriter {
        inner: out,
        bytes: 0,
    };
    let report = write_excerpt(capture, &excerpt, &mut counted)?;
    let packets_omitted = report.omitted_frames();
    let summary = TrafficCaptureSummary {
        budget_bytes: opts.budget_bytes,
        written_bytes: counted.bytes,
        packets_written: report.frames(),
        packets_omitted,
        bytes_omitted: report.omitted_bytes(),
        oldest_packet_secs: report.oldest_written_ns().map(secs),
        truncated: packets_omitted > 0,
        redacted: opts.redact.names().iter().map(|n| n.to_string()).collect(),
    };
    Ok((summary, report))
}

fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Counts the bytes written through it: the size of `traffic.pcap`.
struct CountingWriter<W: Write> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
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
) -> Result<BugReportSummary, BundleError> {
    let opts = BugReportOptions {
        budget_bytes,
        ..BugReportOptions::default()
    };
    write_bug_report_with(capture, out, &opts)
}

/// [`write_bug_report`] with explicit options (redaction off, for one).
///
/// An existing file (or symlink) at `out` is an error. The zip's entries
/// are dated with the time of writing, in UTC (zip dates carry no time
/// zone).
pub fn write_bug_report_with(
    capture: &Path,
    out: &Path,
    opts: &BugReportOptions,
) -> Result<BugReportSummary, BundleError> {
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(BundleError::Exists(out.to_path_buf()));
    }
    let temp = TempFile::create_beside(out)?;
    let summary = write_zip(capture, out, opts, temp.file()?)?;
    temp.publish(out)?;
    Ok(summary)
}

/// Writes the report's zip into `file` (`out` names it in errors).
fn write_zip(
    capture: &Path,
    out: &Path,
    opts: &BugReportOptions,
    file: &File,
) -> Result<BugReportSummary, BundleError> {
    let zip_err = |source| BundleError::Zip {
        path: out.to_path_buf(),
        source,
    };
    let io_err = |source| BundleError::Io {
        path: out.to_path_buf(),
        source,
    };
    let mut zip = zip::ZipWriter::new(file);
    let now = zip_time_now();
    // SPICE display traffic is mostly compressed images: deflating it saves
    // about 1 % at 35 MB/s, so the pcap is stored; the JSON is deflated.
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true)
        .last_modified_time(now)
        .unix_permissions(0o600);
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(now)
        .unix_permissions(0o600);
    zip.start_file("traffic.pcap", stored).map_err(zip_err)?;
    let (traffic_capture, report) = write_traffic(capture, None, opts, &mut zip)?;
    let channels = report
        .channels
        .iter()
        .map(|c| {
            let summary = CaptureSummaryEntry {
                records: c.records,
                bytes: c.bytes,
                dropped_records: c.dropped_records,
                dropped_bytes: c.dropped_bytes,
                first_secs: c.first_ts_ns.map(secs),
                last_secs: c.last_ts_ns.map(secs),
                damaged_records: c.damage.len() as u64,
            };
            (c.channel.clone(), summary)
        })
        .collect();

    // Read as spool2pcap reads it, every string already cleaned (control
    // characters replaced, length cut): anyone may have edited the file,
    // and whoever reads the report's `metadata.json` on a terminal must not
    // get raw C1 controls, which JSON does not escape.
    let mut metadata = match crate::metadata::read_metadata(capture) {
        Ok(m) => serde_json::to_value(m)?,
        Err(_) => serde_json::json!({}),
    };
    if let Some(obj) = metadata.as_object_mut() {
        obj.insert(
            "traffic_capture".into(),
            serde_json::to_value(&traffic_capture)?,
        );
    }
    let summary = BugReportSummary {
        traffic_capture,
        channels,
    };
    for (name, bytes) in [
        ("metadata.json", serde_json::to_vec_pretty(&metadata)?),
        (
            "capture-summary.json",
            serde_json::to_vec_pretty(&summary.channels)?,
        ),
    ] {
        zip.start_file(name, deflated).map_err(zip_err)?;
        zip.write_all(&bytes).map_err(io_err)?;
    }
    let file = zip.finish().map_err(zip_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(summary)
}

/// The time of writing as a zip date (UTC; zip dates have no zone). A
/// clock outside the years zip can hold (1980–2107) gives 1980-01-01.
fn zip_time_now() -> zip::DateTime {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    zip_time(secs)
}

/// `unix_secs` as a zip date, in UTC.
fn zip_time(unix_secs: u64) -> zip::DateTime {
    let t = UtcDateTime::from_unix_secs(unix_secs);
    let small = |v: u32| u8::try_from(v).unwrap_or(u8::MAX);
    u16::try_from(t.year)
        .ok()
        .and_then(|year| {
            zip::DateTime::from_date_and_time(
                year,
                small(t.month),
                small(t.day),
                small(t.hour),
                small(t.minute),
                small(t.second),
            )
            .ok()
        })
        .unwrap_or_default()
}

/// Distinguishes temporary files of one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A report being written: a new file (mode 0600, `O_EXCL`, never through
/// a symlink) beside its destination, removed on drop unless published.
/// Its name is short and fixed in length (`.ryll-report.<pid>-<n>.tmp`),
/// so any name the destination's file system takes, up to its 255-byte
/// limit, can be written.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    fn create_beside(out: &Path) -> Result<TempFile, BundleError> {
        if out.file_name().is_none() {
            return Err(BundleError::Io {
                path: out.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
            });
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = out.with_file_name(format!(".ryll-report.{}-{n}.tmp", std::process::id()));
        let file = fsutil::create_new_file(&path).map_err(|source| BundleError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(TempFile {
            path,
            file: Some(file),
        })
    }

    fn file(&self) -> Result<&File, BundleError> {
        self.file.as_ref().ok_or_else(|| BundleError::Io {
            path: self.path.clone(),
            source: io::Error::other("already published"),
        })
    }

    /// Gives the complete file its name `out`, unless something is there by
    /// now. A hard link never replaces anything; where the file system has
    /// none (FAT, some FUSE file systems) the file is renamed after a check
    /// that `out` is free.
    fn publish(mut self, out: &Path) -> Result<(), BundleError> {
        self.file = None;
        let exists = || BundleError::Exists(out.to_path_buf());
        let io_err = |source| BundleError::Io {
            path: out.to_path_buf(),
            source,
        };
        match std::fs::hard_link(&self.path, out) {
            Ok(()) => {
                // The report is in place; the temporary name goes (on drop).
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
            Err(_) => {
                if std::fs::symlink_metadata(out).is_ok() {
                    return Err(exists());
                }
                std::fs::rename(&self.path, out).map_err(io_err)?;
            }
        }
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Durable name: best effort, the report itself is complete.
            let _ = fsutil::sync_dir(dir);
        }
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        // After a rename there is nothing left to remove.
        let _ = fsutil::remove_if_regular(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest name a file system takes (255 bytes) is written: the
    /// temporary name beside it is never longer than 40 bytes.
    #[test]
    fn a_report_may_have_the_longest_name_the_file_system_takes() {
        let dir = tempfile::tempdir().unwrap();
        for len in [254, 255] {
            let out = dir.path().join(format!("{}.zip", "r".repeat(len - 4)));
            let temp = TempFile::create_beside(&out).unwrap();
            assert!(temp.path.file_name().unwrap().len() <= 40);
            std::io::Write::write_all(&mut temp.file().unwrap(), b"zip").unwrap();
            temp.publish(&out).unwrap();
            assert_eq!(std::fs::read(&out).unwrap(), b"zip");
            // Nothing but the report is left.
            std::fs::remove_file(&out).unwrap();
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }

    #[test]
    fn zip_dates_are_utc_and_clamped() {
        let t = zip_time(1_700_000_000); // 2023-11-14 22:13:20 UTC
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2023, 11, 14, 22, 13, 20)
        );
        assert_eq!(zip_time(0), zip::DateTime::default());
        assert_eq!(zip_time(u64::MAX / 2), zip::DateTime::default());
        assert!(zip_time_now().year() > 1980);
    }
}
