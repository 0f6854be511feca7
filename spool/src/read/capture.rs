//! Opening a capture directory for reading: its manifest, its channels and
//! their segment files, in the capture directory and (for a live or crashed
//! session) still staged. Entries that cannot be channels or segments are
//! skipped and listed, never opened. [`Capture::reader`] then reads one
//! channel ([`reader`](super::reader)).

use std::path::{Path, PathBuf};

use super::reader::ChannelReader;
use crate::store::format;
use crate::store::manifest::{Manifest, MANIFEST_FILE};

use crate::store::layout::SPOOL_DIR;

/// A problem that stops a capture directory from being read at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory (or its `spool/` subdirectory) could not be listed.
    #[error("{path}: {source}")]
    Io {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a capture directory: no `spool/` inside.
    #[error("{0}: not a capture directory (no spool/ subdirectory and no manifest.json)")]
    NotACapture(PathBuf),
}

/// Where a segment file is and which index its name gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// Position of the segment in its channel.
    pub index: u64,
    /// Full path.
    pub path: PathBuf,
    /// Whether it was found in the staging directory rather than the capture
    /// directory (a live or crashed session).
    pub staged: bool,
    /// For a staged segment: where it will be once the writer moves it, to
    /// read from if it moves between listing and reading.
    pub moved_to: Option<PathBuf>,
}

/// A channel found in a capture directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelFiles {
    /// Channel name (validated).
    pub name: String,
    /// Segment files in index order.
    pub segments: Vec<SegmentFile>,
}

/// Session facts taken from a valid segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// Random session id.
    pub session_id: [u8; 16],
    /// Wall-clock start, nanoseconds since the Unix epoch.
    pub session_start_unix_ns: u64,
    /// `CLOCK_MONOTONIC` at session start.
    pub monotonic_base_ns: u64,
}

/// A capture directory opened for reading.
#[derive(Debug, Clone)]
pub struct Capture {
    dir: PathBuf,
    manifest: Option<Manifest>,
    problems: Vec<String>,
    channels: Vec<ChannelFiles>,
    /// Whether readers may map segments (see [`Capture::set_mapping`]).
    mapping: bool,
}

impl Capture {
    /// Opens a capture directory: loads `manifest.json` if present, lists
    /// `spool/<channel>/NNNNNNNN.seg`, and adds segments still staged in the
    /// session's memory-backed directory (a live or crashed session).
    ///
    /// Entries that cannot be channels or segments (invalid names, symlinks)
    /// are skipped and listed in [`Capture::problems`]; they never become paths
    /// that are opened.
    pub fn open(dir: &Path) -> Result<Capture, OpenError> {
        let mut problems = Vec::new();
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = if manifest_path.exists() {
            match Manifest::load(&manifest_path) {
                Ok(m) => Some(m),
                Err(e) => {
                    problems.push(format!("manifest unreadable: {e}"));
                    None
                }
            }
        } else {
            None
        };
        // Staged segments are listed before the capture directory's: a
        // segment moved in between is then found in one listing or the other
        // (the writer renames it into place before removing the staged copy).
        let mut staged = Vec::new();
        if let Some(m) = &manifest {
            match crate::store::staging::trusted_for_reading(m, dir) {
                Ok(Some(staging)) => {
                    let _ = list_channels(&staging, true, &mut staged, &mut problems);
                }
                Ok(None) => {}
                Err(e) => problems.push(format!("staging directory ignored: {e}")),
            }
        }
        let spool_dir = dir.join(SPOOL_DIR);
        let mut channels = Vec::new();
        match std::fs::symlink_metadata(&spool_dir) {
            Ok(md) if md.is_dir() => {
                list_channels(&spool_dir, false, &mut channels, &mut problems)?;
            }
            Ok(_) => problems.push(format!("{}: not a directory", spool_dir.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if manifest.is_none() {
                    if std::fs::metadata(dir).is_err() {
                        return Err(OpenError::Io {
                            path: dir.to_path_buf(),
                            source: e,
                        });
                    }
                    return Err(OpenError::NotACapture(dir.to_path_buf()));
                }
            }
            Err(e) => {
                return Err(OpenError::Io {
                    path: spool_dir,
                    source: e,
                })
            }
        }
        merge_staged(&mut channels, staged, &spool_dir);
        channels.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Capture {
            dir: dir.to_path_buf(),
            manifest,
            problems,
            channels,
            mapping: false,
        })
    }

    /// Allows or forbids (the default) mapping segment files in readers made
    /// after this call. Mapping saves a copy of every byte, but a mapped
    /// file that shrinks under the reader — a capture being copied, synced
    /// or cleaned while it is read, which is ordinary — or a disk error
    /// while a page is loaded, kills the process with `SIGBUS` where
    /// `read()` returns an error; so a reader only maps when asked.
    pub fn set_mapping(&mut self, allow: bool) {
        self.mapping = allow;
    }

    /// The capture directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest, if it exists and parses.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Entries that were skipped while listing, and why.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Channels, sorted by name.
    pub fn channels(&self) -> &[ChannelFiles] {
        &self.channels
    }

    /// Whether any segment is still in the staging directory.
    pub fn has_staged_segments(&self) -> bool {
        self.channels
            .iter()
            .any(|c| c.segments.iter().any(|s| s.staged))
    }

    /// The files of one channel, found by name in the sorted list (a
    /// hostile capture may list tens of thousands: no scan per lookup).
    pub fn channel(&self, channel: &str) -> Option<&ChannelFiles> {
        let i = self
            .channels
            .binary_search_by(|c| c.name.as_str().cmp(channel))
            .ok()?;
        self.channels.get(i)
    }

    /// A reader over one channel's records, or `None` if there is no such channel.
    pub fn reader(&self, channel: &str) -> Option<ChannelReader> {
        self.channel(channel).map(|c| {
            let mut r = ChannelReader::new(c.clone());
            // Only a capture whose writer closed it cleanly has segments
            // that can be mapped (see `map_segment`).
            r.map_session = self
                .manifest
                .as_ref()
                .filter(|m| self.mapping && m.clean_shutdown)
                .and_then(|m| crate::store::manifest::session_id_from_hex(&m.session_id));
            r.set_trimmed(
                self.manifest
                    .as_ref()
                    .and_then(|m| m.trimmed.get(channel).copied()),
            );
            r.set_ring(self.manifest.as_ref().is_some_and(|m| m.memory_only));
            r
        })
    }
}

fn list_channels(
    root: &Path,
    staged: bool,
    out: &mut Vec<ChannelFiles>,
    problems: &mut Vec<String>,
) -> Result<(), OpenError> {
    let entries = std::fs::read_dir(root).map_err(|source| OpenError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let raw = entry.file_name();
        let Some(name) = raw.to_str() else {
            problems.push(format!(
                "{}: skipped an entry whose name is not UTF-8",
                root.display()
            ));
            continue;
        };
        if staged && crate::store::staging::is_own_entry(name) {
            continue;
        }
        if format::validate_channel_name(name).is_err() {
            problems.push(format!(
                "{}: skipped {:?}: not a valid channel name",
                root.display(),
                name
            ));
            continue;
        }
        let path = root.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(md) if md.is_dir() => {}
            _ => {
                problems.push(format!("{}: skipped: not a directory", path.display()));
                continue;
            }
        }
        let mut segments = Vec::new();
        let Ok(files) = std::fs::read_dir(&path) else {
            problems.push(format!("{}: cannot list", path.display()));
            continue;
        };
        for f in files.flatten() {
            let fname = f.file_name();
            match fname.to_str().and_then(format::parse_segment_file_name) {
                Some(index) => segments.push(SegmentFile {
                    index,
                    path: path.join(&fname),
                    staged,
                    moved_to: None,
                }),
                None => {
                    // Temporary files of an interrupted move are expected.
                    let n = fname.to_string_lossy();
                    if !n.ends_with(".tmp") {
                        problems.push(format!("{}: skipped {:?}", path.display(), n));
                    }
                }
            }
        }
        segments.sort_by_key(|s| s.index);
        out.push(ChannelFiles {
            name: name.to_string(),
            segments,
        });
    }
    Ok(())
}

/// Adds staged segments that the capture directory does not hold yet. A
/// segment present in both was copied in full before the staged copy was
/// removed, so the capture directory's copy wins.
///
/// By name and index through maps: a scan per staged channel, and per
/// staged segment, made a capture of many quadratic.
fn merge_staged(channels: &mut Vec<ChannelFiles>, staged: Vec<ChannelFiles>, spool_dir: &Path) {
    let mut by_name: std::collections::HashMap<String, usize> = channels
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    for mut s in staged {
        for seg in &mut s.segments {
            if let Some(name) = seg.path.file_name() {
                seg.moved_to = Some(spool_dir.join(&s.name).join(name));
            }
        }
        match by_name.get(&s.name) {
            Some(&i) => {
                let c = &mut channels[i];
                let present: std::collections::HashSet<u64> =
                    c.segments.iter().map(|x| x.index).collect();
                c.segments.extend(
                    s.segments
                        .into_iter()
                        .filter(|seg| !present.contains(&seg.index)),
                );
                c.segments.sort_by_key(|s| s.index);
            }
            None => {
                by_name.insert(s.name.clone(), channels.len());
                channels.push(s);
            }
        }
    }
}
