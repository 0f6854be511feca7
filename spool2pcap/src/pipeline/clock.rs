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
/// since the Unix epoch) if it is known; relative, with a note in
/// `problems` saying `why`, if absolute time was asked for and it is not
/// (the note only if there are `records` to convert).
pub(crate) fn session_clock(
    time: TimeMode,
    session_start: Option<u64>,
    records: bool,
    why: StartUnknown,
    problems: &mut Vec<String>,
) -> PacketClock {
    match (time, session_start) {
        (TimeMode::Relative, _) => PacketClock::relative(),
        (TimeMode::Absolute, Some(ns)) => PacketClock::absolute(ns),
        (TimeMode::Absolute, None) => {
            match why {
                _ if !records => {}
                StartUnknown::NoHeaderNoManifest => problems.push(
                    "session start unknown (no valid segment header, no manifest): \
                     timestamps are relative to it"
                        .to_string(),
                ),
                StartUnknown::ManifestUnreadable => problems.push(
                    "session start unknown (manifest unreadable): timestamps are relative"
                        .to_string(),
                ),
            }
            PacketClock::relative()
        }
    }
}
