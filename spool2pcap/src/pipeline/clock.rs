//! When packets happened: record timestamps (ns since the session start)
//! turned into packet times, absolute or relative.

use std::time::Duration;

/// How packet timestamps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeMode {
    /// Wall-clock time: session start (Unix epoch) + the record's offset.
    #[default]
    Absolute,
    /// Time since the session started (the first packet is near 0).
    Relative,
}

/// Turns record timestamps (ns since session start) into packet times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PacketClock {
    base_ns: u64,
}

impl PacketClock {
    /// Relative timestamps.
    pub fn relative() -> PacketClock {
        PacketClock { base_ns: 0 }
    }

    /// Absolute timestamps from a session start (ns since the Unix epoch).
    pub fn absolute(session_start_unix_ns: u64) -> PacketClock {
        PacketClock {
            base_ns: session_start_unix_ns,
        }
    }

    /// The packet time of a record.
    pub fn timestamp(&self, ts_ns: u64) -> Duration {
        Duration::from_nanos(self.base_ns.saturating_add(ts_ns))
    }
}

/// Why the session start of a capture is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartUnknown {
    /// A closed capture with no valid segment header and no manifest.
    NoHeaderNoManifest,
    /// A followed capture whose manifest could not be read.
    ManifestUnreadable,
}

/// The clock of a conversion's packets: `time`, from `session_start` (ns
/// since the Unix epoch) if it is known; relative if absolute time was
/// asked for and it is not (the report then says why,
/// [`StartUnknown::note`]).
pub(crate) fn session_clock(time: TimeMode, session_start: Option<u64>) -> PacketClock {
    match (time, session_start) {
        (TimeMode::Absolute, Some(ns)) => PacketClock::absolute(ns),
        _ => PacketClock::relative(),
    }
}

impl StartUnknown {
    /// What a report says when absolute time was asked for and the
    /// session start is unknown for this reason.
    pub(crate) fn note(self) -> String {
        match self {
            StartUnknown::NoHeaderNoManifest => {
                "session start unknown (no valid segment header, no manifest): \
                 timestamps are relative to it"
            }
            StartUnknown::ManifestUnreadable => {
                "session start unknown (manifest unreadable): timestamps are relative"
            }
        }
        .to_string()
    }
}
