//! Builds `fixtures/`: a real capture directory made from the recorded
//! session, and damaged copies of it for the robustness tests.
//!
//! Regenerate after a format change with
//! `cargo run -p e2e --bin make-fixtures -- fixtures`.

use std::path::{Path, PathBuf};

use spool::store::format::{self, RecordKind};
use spool::{Spool, SpoolConfig, StagingChoice};

use crate::recorded::Session;

/// Name of the real capture inside `fixtures/`.
pub const CAPTURE: &str = "qemu-seabios-4ch";

/// The shipped capture of the real session, `fixtures/qemu-seabios-4ch`.
pub fn shipped_capture() -> PathBuf {
    fixtures_dir().join(CAPTURE)
}

/// A damaged variant of it, `fixtures/damaged/<name>` (see [`VARIANTS`]).
pub fn damaged_capture(name: &str) -> PathBuf {
    fixtures_dir().join("damaged").join(name)
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The recorded real session (`fixtures/recorded/`), loaded; panics naming the file if it
/// cannot be, since every test that asks for it needs it.
pub fn recorded_session() -> Session {
    let path = crate::recorded::recorded_session_path();
    crate::recorded::load(&path, crate::recorded::RECORDED_SESSION_PORT)
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// Segment size of the fixture capture: small, so channels span several
/// segments and rotations are exercised, yet larger than the biggest TCP
/// segment on loopback (64 KiB).
pub const SEGMENT_BYTES: usize = 128 << 10;

/// Feeds every chunk of `session` through a spool in arrival order, as the
/// channel loops would, with the recorded timestamps.
pub fn write_capture(session: &Session, dir: &Path) -> Result<(), String> {
    let staging = tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .map_err(|e| e.to_string())?;
    let spool = session_spool(session, dir, &staging.path().join("staging"), SEGMENT_BYTES)?;
    append_session(&spool, session)?;
    spool.close().map_err(|e| e.to_string())?;
    set_closed_at_session_end(session, dir)
}

/// A new spool at `dir` for `session`: its channels and start, segments of
/// `segment_bytes`, staged under `staging`.
pub fn session_spool(
    session: &Session,
    dir: &Path,
    staging: &Path,
    segment_bytes: usize,
) -> Result<Spool, String> {
    let names: Vec<&str> = session
        .connections
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    Spool::create(
        SpoolConfig::new(dir)
            .staging(StagingChoice::Root(staging.to_path_buf()))
            .segment_bytes(segment_bytes)
            .channels(&names)
            .session_start_unix_ns(session.start_unix_ns),
    )
    .map_err(|e| e.to_string())
}

/// Appends every chunk of `session` to `spool` in arrival order, with the
/// recorded timestamps, and returns how many. Never drops: the whole
/// session must be there, so it waits for a prepared segment before every
/// append (a channel loop never would), at most 10 s.
pub fn append_session(spool: &Spool, session: &Session) -> Result<u64, String> {
    let mut appended = 0;
    for (name, chunk) in session.merged() {
        let mut waited = 0;
        while spool.ready_segments(name) == 0 {
            waited += 1;
            if waited > 10_000 {
                return Err(format!("{name}: no segment prepared in 10 s"));
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if !spool.append_at(name, chunk.dir, chunk.ts_ns, &chunk.data) {
            return Err(format!(
                "{name}: a {}-byte chunk was dropped",
                chunk.data.len()
            ));
        }
        appended += 1;
    }
    Ok(appended)
}

/// Replaying a recording takes seconds, long after the session it
/// replays: the spool stamps its close with the wall clock, which is right
/// for a live session but would put a fixture's close a day or more after
/// its (backdated) start. The session ended with its last recorded chunk,
/// so that is its close.
fn set_closed_at_session_end(session: &Session, dir: &Path) -> Result<(), String> {
    let path = dir.join(spool::store::manifest::MANIFEST_FILE);
    let mut manifest = spool::Manifest::load(&path).map_err(|e| e.to_string())?;
    let last_ns = session.merged().last().map_or(0, |(_, chunk)| chunk.ts_ns);
    manifest.closed_unix_ns = Some(session.start_unix_ns.saturating_add(last_ns));
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
    std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))
}

/// One damaged variant: what was done, and where.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Directory name under `fixtures/damaged/`.
    pub name: &'static str,
    /// What a reader should make of it.
    pub expect: &'static str,
}

/// The damaged variants [`write_damaged`] makes.
pub const VARIANTS: &[Variant] = &[
    Variant {
        name: "truncated",
        expect: "display's last segment cut mid-record: a torn or corrupt tail is reported, everything before it is read",
    },
    Variant {
        name: "bitflip",
        expect: "one payload bit flipped in three display records: each is reported (file, offset) and skipped, all others read",
    },
    Variant {
        name: "absurd-len",
        expect: "a display record's length set to 0xfffffff0: reported and skipped, no large allocation",
    },
    Variant {
        name: "bad-magic",
        expect: "display segment 0 has the wrong magic: reported as not a spool segment, later segments read",
    },
    Variant {
        name: "bad-version",
        expect: "display segment 0 says format version 99: a clear unsupported-version error, never a misread",
    },
    Variant {
        name: "hostile-name",
        expect: "channel directories named EVIL and x.y, a symlink 'escape' pointing out of the capture, and a cursor segment whose header names '../../etc': none becomes a path, the cursor segment is reported as a header mismatch",
    },
];

/// Copies the capture directory `src` to `dest` (directories and regular
/// files only, as a capture holds).
pub fn copy_tree(src: &Path, dest: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dest)?;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let to = dest.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_tree(&e.path(), &to)?;
        } else {
            std::fs::copy(e.path(), &to)?;
        }
    }
    Ok(())
}

fn segments(capture: &Path, channel: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(capture.join("spool").join(channel))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Offsets of the data records of a segment file.
fn data_records(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = format::SEGMENT_HEADER_LEN;
    while at + format::RECORD_HEADER_LEN <= bytes.len() {
        let tag = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4]));
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap_or([0; 4])) as usize;
        match format::parse_tag(tag) {
            Some((RecordKind::Data, _)) => out.push((at, len)),
            Some(_) => {}
            None => break,
        }
        at += format::record_len(len);
    }
    out
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
    let mut bytes = std::fs::read(path)?;
    f(&mut bytes);
    std::fs::write(path, bytes)
}

/// Makes every variant of [`VARIANTS`] under `dest`, from a good capture.
pub fn write_damaged(capture: &Path, dest: &Path) -> Result<(), String> {
    let err = |e: std::io::Error| e.to_string();
    for v in VARIANTS {
        let dir = dest.join(v.name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(err)?;
        }
        // The damage is all in display and cursor; main (half the bytes)
        // stays out of the copies to keep the repository small.
        copy_tree(capture, &dir).map_err(err)?;
        std::fs::remove_dir_all(dir.join("spool/main")).map_err(err)?;
        let manifest_path = dir.join(spool::store::manifest::MANIFEST_FILE);
        let mut manifest = spool::Manifest::load(&manifest_path).map_err(|e| e.to_string())?;
        manifest.channels.remove("main");
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
        std::fs::write(&manifest_path, json).map_err(err)?;
        let display = segments(&dir, "display");
        let first = display.first().ok_or("no display segments")?.clone();
        let last = display.last().ok_or("no display segments")?.clone();
        match v.name {
            "truncated" => {
                let bytes = std::fs::read(&last).map_err(err)?;
                let recs = data_records(&bytes);
                let (at, len) = *recs.last().ok_or("empty segment")?;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&last)
                    .map_err(err)?;
                f.set_len((at + format::RECORD_HEADER_LEN + len / 2) as u64)
                    .map_err(err)?;
            }
            "bitflip" => {
                let mid = &display[display.len() / 2];
                edit(mid, |b| {
                    let recs = data_records(b);
                    for &(at, len) in recs.iter().skip(1).step_by(recs.len().max(3) / 3).take(3) {
                        b[at + format::RECORD_HEADER_LEN + len / 2] ^= 0x04;
                    }
                })
                .map_err(err)?;
            }
            "absurd-len" => {
                edit(&display[display.len() / 2], |b| {
                    let recs = data_records(b);
                    if let Some(&(at, _)) = recs.get(recs.len() / 2) {
                        b[at + 4..at + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
                    }
                })
                .map_err(err)?;
            }
            "bad-magic" => edit(&first, |b| b[..8].copy_from_slice(b"PCAPNGXX")).map_err(err)?,
            "bad-version" => edit(&first, |b| {
                b[8..10].copy_from_slice(&99u16.to_le_bytes());
                // A correct header checksum: the version alone must stop it.
                let crc = crc32fast::hash(&b[..124]);
                b[124..128].copy_from_slice(&crc.to_le_bytes());
            })
            .map_err(err)?,
            "hostile-name" => {
                let spool_dir = dir.join("spool");
                for bad in ["EVIL", "x.y"] {
                    let d = spool_dir.join(bad);
                    std::fs::create_dir_all(&d).map_err(err)?;
                    std::fs::copy(&first, d.join("00000000.seg")).map_err(err)?;
                }
                std::os::unix::fs::symlink("../../..", spool_dir.join("escape")).map_err(err)?;
                let cursor = segments(&dir, "cursor");
                let seg = cursor.first().ok_or("no cursor segments")?;
                edit(seg, |b| {
                    let mut name = [0u8; format::MAX_CHANNEL_NAME];
                    name[..9].copy_from_slice(b"../../etc");
                    b[32..64].copy_from_slice(&name);
                    let crc = crc32fast::hash(&b[..124]);
                    b[124..128].copy_from_slice(&crc.to_le_bytes());
                })
                .map_err(err)?;
            }
            _ => {}
        }
    }
    let mut readme = String::from(
        "# Damaged captures\n\nMade by `cargo run -p e2e --bin make-fixtures -- fixtures` from the good\ncapture `../qemu-seabios-4ch`. What a reader should report for each:\n\n",
    );
    for v in VARIANTS {
        readme.push_str(&format!("- `{}`: {}\n", v.name, v.expect));
    }
    std::fs::write(dest.join("README.md"), readme).map_err(err)
}
