//! What a capture directory may make spool2pcap do, and the checks that
//! hold it to that.
//!
//! Bug reports come from strangers, so a capture directory is untrusted
//! input. It may make spool2pcap read the regular files inside it (bounded
//! in size), skip and report what is damaged, and copy what it says, with
//! control characters replaced and lengths cut, into the output and onto
//! the terminal. It may not make spool2pcap block, follow a symlink it
//! planted, write anywhere but the output the user named, overwrite one of
//! the capture's own files, or write a file Wireshark refuses.
//!
//! This module holds the input side of that: [`open_input`] (every file
//! spool2pcap itself opens in a capture), [`open_capture`] (the checks
//! every command makes before reading a capture), [`InputFiles`] (what an
//! output must not be) and [`clean`] (every capture string before it is
//! shown). The output side is in [`crate::output`].

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use spool::read::capture::{Capture, OpenError, SessionInfo};
use spool::read::reader::ChannelReader;
use spool::store::layout::SPOOL_DIR;
use spool::store::manifest::{Manifest, MANIFEST_FILE, MAX_MANIFEST_BYTES};

/// Why a file of a capture was not read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A symlink, FIFO, device, socket or directory where a file should be.
    #[error("{0}: not a regular file: refused")]
    NotRegular(PathBuf),
    /// The file is larger than anything ryll writes there.
    #[error("{path}: larger than {max} bytes: refused")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        max: u64,
    },
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not what its name says (invalid JSON, wrong fields).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// Opens a file of a capture for reading: `Ok(None)` if there is none. A
/// symlink, FIFO, device or anything else that is not a regular file is
/// refused: it is looked at without following it first, and the file that
/// was opened is checked again, so that neither a planted link nor a FIFO
/// swapped in meanwhile is followed or waited on (the open never blocks).
pub fn open_input(path: &Path) -> Result<Option<File>, InputError> {
    let io_err = |source| InputError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_file() => {}
        Ok(_) => return Err(InputError::NotRegular(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    }
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(InputError::NotRegular(path.to_path_buf()))
        }
        Err(e) => return Err(io_err(e)),
    };
    if !file.metadata().map_err(io_err)?.is_file() {
        return Err(InputError::NotRegular(path.to_path_buf()));
    }
    Ok(Some(file))
}

/// The contents of a capture file opened by [`open_input`], refused if it
/// is larger than `max` bytes; `Ok(None)` if there is none.
pub fn read_input(path: &Path, max: u64) -> Result<Option<Vec<u8>>, InputError> {
    let Some(file) = open_input(path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| InputError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > max {
        return Err(InputError::TooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(Some(bytes))
}

/// The manifest of `capture`, read by [`read_input`]: `Ok(None)` if there
/// is none.
pub fn load_manifest(capture: &Path) -> Result<Option<Manifest>, InputError> {
    let path = capture.join(MANIFEST_FILE);
    let Some(text) = read_input(&path, MAX_MANIFEST_BYTES)? else {
        return Ok(None);
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|source| InputError::Parse { path, source })
}

/// Why a capture directory cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The spool reader could not open it.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// `manifest.json` is not a regular file.
    #[error(transparent)]
    Input(#[from] InputError),
    /// There is a manifest but no `spool/` directory: nothing to read.
    #[error("{0}: no spool/ directory: nothing was recorded here, or it was removed")]
    NoSpool(PathBuf),
    /// `spool/` is a symlink or not a directory.
    #[error("{0}: a symlink or not a directory: refused")]
    SpoolNotADirectory(PathBuf),
    /// Listing the capture to protect its files took too many entries.
    #[error("{0}: more than {MAX_INPUT_ENTRIES} entries: not a capture directory")]
    TooManyEntries(PathBuf),
}

/// Checks what [`Capture::open`] and the follower take on trust: that
/// `manifest.json`, if there is one, is a regular file (they open it with a
/// plain, blocking `open`), and that `spool/` is a real directory.
pub fn check_capture_dir(dir: &Path) -> Result<(), CaptureError> {
    let manifest = dir.join(MANIFEST_FILE);
    let has_manifest = match std::fs::symlink_metadata(&manifest) {
        Ok(md) if md.is_file() => true,
        Ok(_) => return Err(InputError::NotRegular(manifest).into()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(source) => {
            return Err(InputError::Io {
                path: manifest,
                source,
            }
            .into())
        }
    };
    let spool = dir.join(SPOOL_DIR);
    match std::fs::symlink_metadata(&spool) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(CaptureError::SpoolNotADirectory(spool)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Err(source) = std::fs::metadata(dir) {
                return Err(OpenError::Io {
                    path: dir.to_path_buf(),
                    source,
                }
                .into());
            }
            if has_manifest {
                Err(CaptureError::NoSpool(spool))
            } else {
                Err(OpenError::NotACapture(dir.to_path_buf()).into())
            }
        }
        Err(source) => Err(OpenError::Io {
            path: spool,
            source,
        }
        .into()),
    }
}

/// Opens a capture directory for reading, after [`check_capture_dir`].
/// Every command that reads a capture opens it here.
pub fn open_capture(dir: &Path) -> Result<Capture, CaptureError> {
    check_capture_dir(dir)?;
    Ok(Capture::open(dir)?)
}

/// [`ChannelReader::peek_session`], which reads segment headers through a
/// plain open, only if every segment of the channel is a regular file:
/// else `None` (the conversion then takes the session start from the
/// manifest, and reading the channel reports the odd file as damage).
pub fn peek_session(cap: &Capture, reader: &mut ChannelReader) -> Option<SessionInfo> {
    let files = cap.channel(reader.channel())?;
    let all_regular = files
        .segments
        .iter()
        .all(|s| std::fs::symlink_metadata(&s.path).is_ok_and(|m| m.is_file()));
    all_regular.then(|| reader.peek_session()).flatten()
}

/// Entries of a capture directory [`InputFiles::of`] looks at before giving
/// up: ryll writes a few per channel and segment.
pub const MAX_INPUT_ENTRIES: usize = 1 << 20;

/// How deep [`InputFiles::of`] descends: a capture is
/// `spool/<channel>/<segment>`, three levels.
const MAX_INPUT_DEPTH: usize = 8;

/// A file's identity: device and inode.
type FileId = (u64, u64);

fn id_of(md: &std::fs::Metadata) -> FileId {
    (md.dev(), md.ino())
}

/// The files of a capture, by device and inode, so that an output can be
/// refused if it is one of them however it is named (a path through `..`,
/// a hard link, the segment itself).
#[derive(Debug, Clone, Default)]
pub struct InputFiles {
    files: HashSet<FileId>,
    spool_dir: Option<FileId>,
}

impl InputFiles {
    /// Every file under `dir` (symlinks not followed), and the segments
    /// `cap` lists outside it (staged ones).
    pub fn of(dir: &Path, cap: &Capture) -> Result<InputFiles, CaptureError> {
        let mut inputs = InputFiles {
            spool_dir: std::fs::symlink_metadata(dir.join(SPOOL_DIR))
                .ok()
                .filter(|m| m.is_dir())
                .map(|m| id_of(&m)),
            ..InputFiles::default()
        };
        let mut seen = 0usize;
        let mut stack = vec![(dir.to_path_buf(), 0usize)];
        while let Some((d, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for entry in entries.flatten() {
                seen += 1;
                if seen > MAX_INPUT_ENTRIES {
                    return Err(CaptureError::TooManyEntries(dir.to_path_buf()));
                }
                let Ok(md) = std::fs::symlink_metadata(entry.path()) else {
                    continue;
                };
                if md.is_dir() {
                    if depth < MAX_INPUT_DEPTH {
                        stack.push((entry.path(), depth + 1));
                    }
                } else {
                    inputs.files.insert(id_of(&md));
                }
            }
        }
        for seg in cap.channels().iter().flat_map(|c| c.segments.iter()) {
            if let Ok(md) = std::fs::symlink_metadata(&seg.path) {
                inputs.files.insert(id_of(&md));
            }
        }
        Ok(inputs)
    }

    /// Whether the file `md` describes is one of the capture's.
    pub fn contains(&self, md: &std::fs::Metadata) -> bool {
        self.files.contains(&id_of(md))
    }

    /// The capture's `spool/` directory, by device and inode.
    pub fn spool_dir(&self) -> Option<(u64, u64)> {
        self.spool_dir
    }
}

/// Longest string from a capture shown in full, in characters: a
/// session id, a staging directory, a writer's error.
pub const MAX_TEXT_CHARS: usize = 1000;

/// Longest name from a capture (a channel a manifest lists) shown in
/// full, in characters: longer than any valid channel name.
pub const MAX_NAME_CHARS: usize = 80;

/// A string from a capture, fit for a terminal, a JSON report and a file
/// comment: every character [`is_hidden`] says a terminal would act on or
/// not show is replaced by U+FFFD, surrounding space trimmed, and at most
/// `max_chars` characters kept (a longer one ends in `…`). Every string a
/// capture supplies goes through here before it is printed or written.
pub fn clean(s: &str, max_chars: usize) -> String {
    let s = s.trim();
    let mut out: String = s
        .chars()
        .take(max_chars)
        .map(|c| if is_hidden(c) { '\u{FFFD}' } else { c })
        .collect();
    if s.chars().nth(max_chars).is_some() {
        out.pop();
        out.push('…');
    }
    out
}

/// Whether a terminal would act on `c`, draw it as nothing, or draw
/// something a reader cannot tell from other text, rather than show it:
///
/// * the general categories Cc (controls: escape sequences, C1), Cf
///   (format: bidirectional controls and isolates, U+061C, zero-width
///   characters, the soft hyphen, U+FFF9..U+FFFB annotations, tag
///   characters U+E0000..U+E007F), Zl and Zp (line and paragraph
///   separators), Co (private use: a font may draw anything), Cs and Cn
///   (unassigned, noncharacters: a newer terminal may give them a meaning);
/// * space separators other than U+0020 (look like a space, are not one);
/// * the other default-ignorable characters, drawn as nothing though
///   their category is a letter or mark: the Hangul fillers (U+115F,
///   U+1160, U+3164, U+FFA0), the combining grapheme joiner U+034F, Khmer
///   U+17B4..U+17B5, Mongolian U+180B..U+180F and the variation selectors.
pub fn is_hidden(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    let hidden_category = matches!(
        get_general_category(c),
        G::Control
            | G::Format
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::PrivateUse
            | G::Surrogate
            | G::Unassigned
    );
    hidden_category
        || (c != ' ' && get_general_category(c) == G::SpaceSeparator)
        || matches!(c,
            '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FFA0}'
            | '\u{E0000}'..='\u{E0FFF}')
}

/// Notes about a capture (skipped entries, unreadable files), which name
/// what the capture holds, fit to print ([`clean`]).
pub fn clean_notes(problems: &[String]) -> Vec<String> {
    problems.iter().map(|p| clean(p, MAX_TEXT_CHARS)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every class of character that reached a terminal through `info`,
    /// and the kinds the same rule must cover.
    #[test]
    fn clean_hides_every_invisible_class() {
        let hidden = [
            '\u{0}',
            '\u{1b}',
            '\u{7f}',
            '\u{85}',
            '\u{9b}', // Cc
            '\u{ad}',
            '\u{61c}',
            '\u{180e}',
            '\u{200b}',
            '\u{200d}',
            '\u{200e}', // Cf
            '\u{202a}',
            '\u{202e}',
            '\u{2066}',
            '\u{2069}',
            '\u{feff}',
            '\u{fff9}',
            '\u{fffb}',
            '\u{e0001}',
            '\u{e0041}',
            '\u{e007f}', // tags
            '\u{2028}',
            '\u{2029}', // Zl, Zp
            '\u{e000}',
            '\u{f8ff}',
            '\u{10fffd}', // Co
            '\u{378}',
            '\u{fffe}',
            '\u{ffff}',
            '\u{10ffff}', // Cn
            '\u{a0}',
            '\u{2000}',
            '\u{3000}', // Zs but U+0020
            '\u{115f}',
            '\u{1160}',
            '\u{3164}',
            '\u{ffa0}', // Hangul fillers
            '\u{34f}',
            '\u{17b4}',
            '\u{180b}',
            '\u{fe0f}',
            '\u{e0100}', // ignorables
        ];
        for c in hidden {
            assert!(is_hidden(c), "U+{:04X} shown", c as u32);
            assert_eq!(
                clean(&format!("a{c}b"), 10),
                "a\u{FFFD}b",
                "U+{:04X}",
                c as u32
            );
        }
        for c in [
            'a', ' ', 'é', 'ß', '中', '한', 'ا', '…', '\u{FFFD}', '😀', '\u{301}',
        ] {
            assert!(!is_hidden(c), "U+{:04X} hidden", c as u32);
        }
    }

    #[test]
    fn clean_cuts_a_huge_string_at_its_limit() {
        let huge = "x".repeat(3_000_000);
        let out = clean(&huge, MAX_NAME_CHARS);
        assert_eq!(out.chars().count(), MAX_NAME_CHARS);
        assert!(out.ends_with('…'));
    }

    #[test]
    fn clean_replaces_controls_and_cuts() {
        assert_eq!(
            clean(" a\u{1b}[2Jb\u{202E}c\u{9b}d ", 100),
            "a\u{FFFD}[2Jb\u{FFFD}c\u{FFFD}d"
        );
        assert_eq!(clean("abcdef", 3), "ab…");
        assert_eq!(clean("abc", 3), "abc");
        assert_eq!(clean("ééé", 2).chars().count(), 2);
    }

    #[test]
    fn inputs_that_are_not_regular_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(matches!(open_input(&fifo), Err(InputError::NotRegular(_))));
        let target = dir.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(matches!(open_input(&link), Err(InputError::NotRegular(_))));
        assert!(matches!(
            open_input(dir.path()),
            Err(InputError::NotRegular(_))
        ));
        assert!(open_input(&dir.path().join("none")).unwrap().is_none());
        assert_eq!(read_input(&target, 1).unwrap().unwrap(), b"x");
        assert!(matches!(
            read_input(&target, 0),
            Err(InputError::TooLarge { .. })
        ));
    }
}
