//! Helpers shared by the spool's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use spool::reader::{Capture, Event};
use spool::{Direction, Spool, SpoolConfig, StagingChoice};

/// A capture directory on disk and a staging root on tmpfs, both removed at the end.
pub struct Dirs {
    pub capture_parent: tempfile::TempDir,
    pub staging_parent: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Dirs {
        Dirs {
            capture_parent: tempfile::tempdir().unwrap(),
            staging_parent: tempfile::tempdir_in("/dev/shm").unwrap(),
        }
    }

    pub fn capture(&self) -> PathBuf {
        self.capture_parent.path().join("cap")
    }

    pub fn staging_root(&self) -> PathBuf {
        self.staging_parent.path().join("staging")
    }

    pub fn config(&self) -> SpoolConfig {
        SpoolConfig::new(self.capture()).staging(StagingChoice::Root(self.staging_root()))
    }
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub dir: Direction,
    pub ts: u64,
    pub data: Vec<u8>,
}

/// Everything a channel holds: data records, gaps (records, bytes) and damage count.
#[derive(Debug, Default)]
pub struct ChannelDump {
    pub records: Vec<Rec>,
    pub gaps: Vec<(u64, u64)>,
    pub damage: Vec<spool::reader::Damage>,
    pub closed_cleanly: bool,
}

pub fn read_channel(capture: &Path, channel: &str) -> ChannelDump {
    let cap = Capture::open(capture).unwrap();
    let mut out = ChannelDump::default();
    let Some(mut r) = cap.reader(channel) else {
        return out;
    };
    while let Some(ev) = r.next_event() {
        match ev {
            Event::Data(d) => out.records.push(Rec {
                dir: d.direction,
                ts: d.ts_ns,
                data: d.payload.to_vec(),
            }),
            Event::Gap(g) => out.gaps.push((g.records(), g.bytes())),
            Event::Damage(d) => out.damage.push(d),
        }
    }
    out.closed_cleanly = r.stats().closed_cleanly;
    out
}

pub fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

pub fn spool(cfg: SpoolConfig) -> Spool {
    Spool::create(cfg).unwrap()
}
