//! A capture opened and ready to convert ([`OpenedCapture`]): what
//! `convert`, `convert --follow`, excerpts and `info` all settle before
//! they read a record — the capture, the files no output may overwrite,
//! each channel's client port, the channels selected, the session (its id,
//! its start and the packet clock that start gives), what ryll's
//! `metadata.json` says, and the report begun with the problems met so far.
//!
//! One opening ([`OpenedCapture::open`]) so that every command picks
//! channels, numbers ports, names the session and dates packets the same
//! way, and so that the reports stay data: the files they mention are read
//! here.

use std::path::Path;

use spool::read::capture::{Capture, SessionInfo};
use spool::store::manifest::session_id_hex;

use crate::guard::{
    clean, clean_notes, load_manifest, open_capture, peek_session, InputFiles, MAX_TEXT_CHARS,
};
use crate::metadata::CaptureMetadata;
use crate::pipeline::clock::{session_clock, PacketClock, StartUnknown, TimeMode};
use crate::pipeline::error::ConvertError;
use crate::pipeline::report::ConvertReport;
use crate::spice::channels::{spice_channel_type, PortMap, SERVER_PORT};
use crate::spice::redact::Redaction;

/// How the capture will be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Channel by channel, as it is on disk now (a closed capture, a
    /// crashed one, or a snapshot of a live one). `map`: readers may map
    /// segment files ([`Capture::set_mapping`]).
    Read {
        /// Allow mapping.
        map: bool,
    },
    /// Followed as it is written ([`crate::pipeline::follow`]): channels
    /// may appear later, so ports are given as they do.
    Follow,
}

/// What [`OpenedCapture::open`] is asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opening<'a> {
    /// How the capture will be read.
    pub access: Access,
    /// Channels wanted; empty means all of them.
    pub channels: &'a [String],
    /// Absolute or relative packet times.
    pub time: TimeMode,
    /// What the output will have redacted (for the report).
    pub redact: Redaction,
    /// The synthetic server port (for the report).
    pub server_port: u16,
    /// List the capture's files, so that no output overwrites one
    /// ([`OpenedCapture::inputs`]).
    pub protect_inputs: bool,
}

/// A capture opened for converting: everything settled before the first
/// record is read.
#[derive(Debug)]
pub(crate) struct OpenedCapture {
    /// The capture (when followed: as it was at the start).
    pub cap: Capture,
    /// Its files, if [`Opening::protect_inputs`] asked for them.
    pub inputs: Option<InputFiles>,
    /// Each channel's client port (when followed: empty, filled as
    /// channels appear).
    pub ports: PortMap,
    /// The channels to convert, in the capture's (name) order; when
    /// followed, the channels asked for (empty: all).
    pub selected: Vec<String>,
    /// The session as the first readable segment header of the selected
    /// channels says (never read when followed).
    pub peeked: Option<SessionInfo>,
    /// The session id: the manifest's, else the segment header's.
    pub session_id: Option<String>,
    /// Wall-clock session start (ns since the Unix epoch): the segment
    /// header's, else the manifest's.
    pub session_start: Option<u64>,
    /// The report begun: the problems met opening the capture (and, when
    /// followed, its manifest), ryll's metadata, how it shut down,
    /// redaction, server port and session start.
    pub report: ConvertReport,
    clock: PacketClock,
    /// Why the clock is relative when absolute time was asked for, until
    /// the report says so ([`OpenedCapture::clock`]).
    start_unknown: Option<StartUnknown>,
}

impl OpenedCapture {
    /// Opens `capture` as `how` says. Every check of the capture and of the
    /// channels asked for happens here, before any output is created.
    pub(crate) fn open(capture: &Path, how: &Opening) -> Result<OpenedCapture, ConvertError> {
        let mut cap = open_capture(capture)?;
        if let Access::Read { map } = how.access {
            cap.set_mapping(map);
        }
        let inputs = if how.protect_inputs {
            Some(InputFiles::of(capture, &cap)?)
        } else {
            None
        };
        let mut opened = match how.access {
            Access::Read { .. } => OpenedCapture::read(capture, cap, how)?,
            Access::Follow => OpenedCapture::follow(capture, cap, how)?,
        };
        opened.inputs = inputs;
        opened.report.redaction = how.redact;
        opened.report.server_port = (how.server_port != SERVER_PORT).then_some(how.server_port);
        if how.time == TimeMode::Absolute {
            opened.report.session_start_unix_ns = opened.session_start;
        }
        Ok(opened)
    }

    /// The opening of a capture read as it is on disk.
    fn read(capture: &Path, cap: Capture, how: &Opening) -> Result<OpenedCapture, ConvertError> {
        let ports = PortMap::new(cap.channels().iter().map(|c| c.name.as_str()));
        let selected = select_channels(&cap, how.channels)?;
        let mut problems = clean_notes(cap.problems());
        let metadata = load_metadata(capture, &mut problems);
        let peeked = selected.iter().find_map(|name| {
            let mut reader = cap.reader(name)?;
            peek_session(&cap, &mut reader)
        });
        let manifest = cap.manifest();
        let session_start = peeked
            .map(|s| s.session_start_unix_ns)
            .or_else(|| manifest.map(|m| m.session_start_unix_ns));
        let session_id = manifest
            .map(|m| m.session_id.clone())
            .or_else(|| peeked.map(|s| session_id_hex(&s.session_id)));
        let report = ConvertReport {
            problems,
            metadata,
            clean_shutdown: manifest.map(|m| m.clean_shutdown),
            ..ConvertReport::default()
        };
        Ok(OpenedCapture {
            cap,
            inputs: None,
            ports,
            selected,
            peeked,
            session_id,
            session_start,
            report,
            clock: session_clock(how.time, session_start),
            start_unknown: unknown_start(how.time, session_start, StartUnknown::NoHeaderNoManifest),
        })
    }

    /// The opening of a capture to follow. What the report says of the
    /// start comes from the manifest as the follow starts, and the report
    /// says at once if that leaves the start unknown: a followed capture
    /// is expected to have records.
    fn follow(capture: &Path, cap: Capture, how: &Opening) -> Result<OpenedCapture, ConvertError> {
        check_wanted(&cap, how.channels)?;
        let mut problems = Vec::new();
        let manifest = manifest_at_start(capture, &mut problems);
        let session_start = manifest.as_ref().map(|m| m.session_start_unix_ns);
        if let Some(why) = unknown_start(how.time, session_start, StartUnknown::ManifestUnreadable)
        {
            problems.push(why.note());
        }
        let metadata = load_metadata(capture, &mut problems);
        Ok(OpenedCapture {
            cap,
            inputs: None,
            ports: PortMap::default(),
            selected: how.channels.to_vec(),
            peeked: None,
            session_id: manifest.map(|m| m.session_id),
            session_start,
            report: ConvertReport {
                problems,
                metadata,
                ..ConvertReport::default()
            },
            clock: session_clock(how.time, session_start),
            start_unknown: None,
        })
    }

    /// The clock of the packets. When absolute time was asked for but the
    /// session start is unknown, it is relative, and the report says so
    /// (once) if there are `records` to convert.
    pub(crate) fn clock(&mut self, records: bool) -> PacketClock {
        if records {
            if let Some(why) = self.start_unknown.take() {
                self.report.problems.push(why.note());
            }
        }
        self.clock
    }
}

/// Why the session start is unknown (`why`), if absolute `time` was asked
/// for and `session_start` is not known.
fn unknown_start(
    time: TimeMode,
    session_start: Option<u64>,
    why: StartUnknown,
) -> Option<StartUnknown> {
    (time == TimeMode::Absolute && session_start.is_none()).then_some(why)
}

/// What ryll's `metadata.json` in `capture` says, if there is one; why it
/// was ignored goes to `problems`.
fn load_metadata(capture: &Path, problems: &mut Vec<String>) -> Option<CaptureMetadata> {
    crate::metadata::load(capture).unwrap_or_else(|e| {
        problems.push(e.to_string());
        None
    })
}

/// The channels to convert, in the capture's (name) order.
fn select_channels(cap: &Capture, wanted: &[String]) -> Result<Vec<String>, ConvertError> {
    if let Some(name) = wanted
        .iter()
        .find(|name| !cap.channels().iter().any(|c| &c.name == *name))
    {
        return Err(no_such_channel(cap, name));
    }
    Ok(cap
        .channels()
        .iter()
        .filter(|c| wanted.is_empty() || wanted.contains(&c.name))
        .map(|c| c.name.clone())
        .collect())
}

/// The usage error of a `--channel` that names neither a channel of the
/// capture nor a SPICE channel, which a live session could still open:
/// following would wait for it in vain.
fn check_wanted(cap: &Capture, wanted: &[String]) -> Result<(), ConvertError> {
    let possible = |name: &str| {
        cap.channels().iter().any(|c| c.name == name) || spice_channel_type(name).is_some()
    };
    match wanted.iter().find(|w| !possible(w)) {
        Some(name) => Err(no_such_channel(cap, name)),
        None => Ok(()),
    }
}

/// The usage error of asking for channel `name`, which `cap` lacks.
fn no_such_channel(cap: &Capture, name: &str) -> ConvertError {
    let available: Vec<&str> = cap.channels().iter().map(|c| c.name.as_str()).collect();
    ConvertError::NoSuchChannel {
        capture: cap.dir().to_path_buf(),
        name: name.chars().take(64).collect(),
        available: if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        },
    }
}

/// The manifest as the follow starts, if it can be read (else why not, in
/// `problems`), and whether the staging directory it names will be read:
/// the follower reads one only if it proves to be the capture's, and says
/// so when it does not, as `convert` does.
fn manifest_at_start(capture: &Path, problems: &mut Vec<String>) -> Option<spool::Manifest> {
    let manifest = match load_manifest(capture) {
        Ok(m) => m,
        Err(e) => {
            problems.push(clean(&e.to_string(), MAX_TEXT_CHARS));
            None
        }
    };
    if let Some(Err(e)) = manifest
        .as_ref()
        .map(|m| spool::store::staging::trusted_for_reading(m, capture))
    {
        let ignored = format!("staging directory ignored: {e}");
        problems.push(clean(&ignored, MAX_TEXT_CHARS));
    }
    manifest
}
