//! Writing a staged segment into a new file around the page cache.
//!
//! A buffered `write` copies every byte into the page cache before the
//! disk sees it: measured at about 0.7 ms of CPU per MB on this project's
//! machines (`PERFORMANCE.md`), most of what `--capture` costs over the
//! memory ring. It also leaves the capture's pages in the cache, dirty
//! until written back, where they push out the user's own files. A staged
//! segment is already a page-aligned mapping that nobody writes any more,
//! so the retirer asks for `O_DIRECT` instead: the device reads those pages
//! itself, and the process spends only the system call.
//!
//! `O_DIRECT` wants the buffer, the length and the file offset aligned to
//! the device's logical block. [`write_all`] writes the page-aligned bulk
//! that way and the short tail (less than a page) with an ordinary write.
//! Where the file system refuses `O_DIRECT` (tmpfs, many FUSE file
//! systems) or the device wants a larger alignment than a page, it writes
//! everything the ordinary way: the bytes on disk are the same either way.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// The alignment asked of buffer, length and offset: a page, which is a
/// multiple of every common logical block size (512 and 4096 bytes).
const ALIGN: usize = 4096;

/// Bytes per direct `write`: large enough that the device sees few
/// requests, small enough that `abandoned` is asked often on a slow disk.
const DIRECT_CHUNK: usize = 1 << 20;

/// Bytes per ordinary `write`.
const BUFFERED_CHUNK: usize = 256 << 10;

/// Writes `bytes` at the start of `file`, a new empty file opened for
/// writing, around the page cache for as much as can be; returns how many
/// bytes went that way (0 where `O_DIRECT` was refused). Asks `abandoned`
/// before each write and, if it says so, stops with
/// [`io::ErrorKind::Interrupted`] (which no write returns: `write_all_at`
/// retries it), having written part. The caller syncs the file: a direct
/// write leaves its size and block map to `fsync` like any other.
pub(crate) fn write_all(
    file: &File,
    bytes: &[u8],
    abandoned: &dyn Fn() -> bool,
) -> io::Result<usize> {
    let bulk = aligned_bulk(bytes);
    let direct = if bulk > 0 && set_direct(file, true).is_ok() {
        let written = write_chunks(file, &bytes[..bulk], 0, DIRECT_CHUNK, abandoned);
        // Back to ordinary writes for the tail, or all of it on a refusal.
        set_direct(file, false)?;
        match written {
            Ok(()) => bulk,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => 0,
            Err(e) => return Err(e),
        }
    } else {
        0
    };
    write_chunks(file, bytes, direct, BUFFERED_CHUNK, abandoned)?;
    Ok(direct)
}

/// How many bytes at the start of `bytes` a direct write may take: whole
/// pages, if `bytes` starts on a page.
fn aligned_bulk(bytes: &[u8]) -> usize {
    if (bytes.as_ptr() as usize) % ALIGN == 0 {
        bytes.len() - bytes.len() % ALIGN
    } else {
        0
    }
}

/// Writes `bytes[from..]` at offset `from`, `chunk` bytes per `write`
/// (direct or not, as the file is set), asking `abandoned` before each.
fn write_chunks(
    file: &File,
    bytes: &[u8],
    from: usize,
    chunk: usize,
    abandoned: &dyn Fn() -> bool,
) -> io::Result<()> {
    let mut offset = from;
    for part in bytes[from..].chunks(chunk) {
        if abandoned() {
            return Err(io::ErrorKind::Interrupted.into());
        }
        file.write_all_at(part, offset as u64)?;
        offset += part.len();
    }
    Ok(())
}

/// Turns `O_DIRECT` on or off for `file`'s open file description. Fails
/// with `EINVAL` where the file system does not do direct I/O.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL on a descriptor `file` owns and keeps open for the
    // call; it reads the status flags and changes nothing.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_DIRECT
    } else {
        flags & !libc::O_DIRECT
    };
    // SAFETY: F_SETFL on the same owned descriptor; O_DIRECT is one of the
    // flags F_SETFL may change, and nothing else is changed.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A page-aligned buffer of `len` bytes, each telling its offset, as a
    /// staged segment's mapping is.
    fn aligned(len: usize) -> memmap2::MmapMut {
        let mut map = memmap2::MmapMut::map_anon(len.max(1)).expect("anonymous map");
        for (i, b) in map.iter_mut().enumerate() {
            *b = (i * 7 + i / 4096) as u8;
        }
        map
    }

    fn written(dir: &Path, name: &str, bytes: &[u8]) -> (Vec<u8>, usize) {
        let path = dir.join(name);
        let file = crate::store::fsutil::create_new_file(&path).expect("create");
        let direct = write_all(&file, bytes, &|| false).expect("write");
        (std::fs::read(&path).expect("read back"), direct)
    }

    /// Aligned or not, a page or not, on a disk or on tmpfs (which may
    /// refuse `O_DIRECT`), what lands in the file is the buffer.
    #[test]
    fn the_file_holds_the_bytes_whichever_way_they_went() {
        for dir in [std::env::temp_dir(), "/dev/shm".into()] {
            if dir.is_dir() {
                the_file_holds_the_bytes_in(&dir);
            }
        }
    }

    fn the_file_holds_the_bytes_in(dir: &Path) {
        let dir = tempfile::tempdir_in(dir).expect("tempdir");
        for len in [0, 1, 4095, 4096, 4097, 3 * 4096, (1 << 20) + 4096 + 123] {
            let map = aligned(len + 1);
            let (back, direct) = written(dir.path(), &format!("a{len}"), &map[..len]);
            assert_eq!(back, &map[..len], "aligned, {len} bytes");
            // All the whole pages, or none where the file system refuses.
            assert!(
                direct == 0 || direct == len - len % ALIGN,
                "{direct} of {len}"
            );
            let (back, direct) = written(dir.path(), &format!("u{len}"), &map[1..len + 1]);
            assert_eq!(back, &map[1..len + 1], "unaligned, {len} bytes");
            assert_eq!(direct, 0, "an unaligned buffer goes the ordinary way");
        }
    }

    #[test]
    fn abandoned_before_the_first_write_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let file = crate::store::fsutil::create_new_file(&path).expect("create");
        let map = aligned(8192);
        let e = write_all(&file, &map, &|| true).expect_err("abandoned");
        assert_eq!(e.kind(), io::ErrorKind::Interrupted);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 0);
    }
}
