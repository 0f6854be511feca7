//! Files a test sets up or checks around a run: a FIFO a hostile capture
//! plants, and everything under a directory, to tell that a run left it
//! alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Makes a FIFO (mode 0600) at `path`: what a reader that opens a file
/// without checking its type blocks on.
pub fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("a path without NUL");
    // SAFETY: mkfifo reads a valid NUL-terminated path and nothing else.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(
        r,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Every file under `dir` with its contents, to compare before and after:
/// directories are walked (a symlink to one is not followed), regular
/// files read, anything else (a FIFO, a symlink, a socket) listed with no
/// contents, so that taking the snapshot never blocks or leaves `dir`.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let ft = e.file_type().expect("file type");
            let p = e.path();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                out.insert(p, bytes);
            } else {
                out.insert(p, Vec::new());
            }
        }
    }
    out
}
