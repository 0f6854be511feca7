#!/usr/bin/python3
"""slowfs: a FUSE passthrough filesystem that writes like a slow disk.

usage: slowfs.py BACKING MOUNTPOINT   (root; unmount with fusermount -u)

Every file operation goes straight to the directory BACKING, except that
each write of 4 KiB or more first waits 20 ms plus its size at 4 MB/s
(a 128 KiB write: 53 ms), one write at a time across the whole filesystem,
as on a single slow disk (a USB stick, a network home directory). Small
writes (metadata, manifests) pass at once. The benches and bench-ryll.py
use it to show what a slow capture disk does to a client; FUSE also gives
the mount a strict dirty-page limit, so writers through mapped files are
throttled as on such disks.

SLOWFS_FIXED_MS (default 20) and SLOWFS_MBPS (default 4) change the delay.
Every 5 s it logs the writes it delayed to stderr. Needs Debian's
python3-fusepy (which brings libfuse2) and fuse3 (fusermount);
scripts/slowfs-mount.sh mounts it and waits until it is up.
"""

import errno
import os
import sys
import threading
import time

try:  # Debian's python3-fusepy
    from fusepy import FUSE, FuseOSError, Operations
except ImportError:  # pip's fusepy
    from fuse import FUSE, FuseOSError, Operations

SLOW_FROM_BYTES = 4096
FIXED_S = float(os.environ.get("SLOWFS_FIXED_MS", "20")) / 1000.0
BYTES_PER_S = float(os.environ.get("SLOWFS_MBPS", "4")) * 1e6
STAT_FIELDS = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size",
               "st_atime", "st_mtime", "st_ctime", "st_blocks")
STATVFS_FIELDS = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail",
                  "f_files", "f_ffree", "f_favail", "f_flag", "f_namemax")


class SlowDisk:
    """The one disk head: writes wait for it in turn, and are counted."""

    def __init__(self):
        self.head = threading.Lock()
        self.writes = 0
        self.bytes = 0

    def write(self, size):
        """Blocks as long as a slow disk would take for `size` bytes."""
        if size < SLOW_FROM_BYTES:
            return
        with self.head:
            time.sleep(FIXED_S + size / BYTES_PER_S)
            self.writes += 1
            self.bytes += size

    def report_forever(self):
        while True:
            time.sleep(5)
            print(f"slowfs: {self.writes} slow writes, {self.bytes} bytes",
                  file=sys.stderr, flush=True)


class Passthrough(Operations):
    """BACKING as it is, with writes through SlowDisk. Symlinks are never
    followed when a file is opened or created (O_NOFOLLOW)."""

    def __init__(self, backing, disk):
        self.backing = os.path.realpath(backing)
        self.disk = disk

    def _real(self, path):
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise FuseOSError(errno.EACCES)
        return os.path.join(self.backing, *parts)

    def getattr(self, path, fh=None):
        st = os.lstat(self._real(path))
        return {k: getattr(st, k) for k in STAT_FIELDS}

    def statfs(self, path):
        st = os.statvfs(self._real(path))
        return {k: getattr(st, k) for k in STATVFS_FIELDS}

    def access(self, path, amode):
        if not os.access(self._real(path), amode, follow_symlinks=False):
            raise FuseOSError(errno.EACCES)

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._real(path))

    def readlink(self, path):
        return os.readlink(self._real(path))

    def mkdir(self, path, mode):
        os.mkdir(self._real(path), mode)

    def rmdir(self, path):
        os.rmdir(self._real(path))

    def unlink(self, path):
        os.unlink(self._real(path))

    def rename(self, old, new):
        os.rename(self._real(old), self._real(new))

    def chmod(self, path, mode):
        os.chmod(self._real(path), mode, follow_symlinks=False)

    def chown(self, path, uid, gid):
        os.chown(self._real(path), uid, gid, follow_symlinks=False)

    def utimens(self, path, times=None):
        os.utime(self._real(path), times, follow_symlinks=False)

    def truncate(self, path, length, fh=None):
        if fh is not None:
            os.ftruncate(fh, length)
            return
        fd = os.open(self._real(path), os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.ftruncate(fd, length)
        finally:
            os.close(fd)

    def open(self, path, flags):
        return os.open(self._real(path), flags | os.O_NOFOLLOW)

    def create(self, path, mode, fi=None):
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        return os.open(self._real(path), flags, mode)

    def read(self, path, size, offset, fh):
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        self.disk.write(len(data))
        return os.pwrite(fh, data, offset)

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)

    def release(self, path, fh):
        os.close(fh)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: slowfs.py BACKING MOUNTPOINT")
    backing, mountpoint = sys.argv[1], sys.argv[2]
    disk = SlowDisk()
    threading.Thread(target=disk.report_forever, daemon=True).start()
    # Writes of up to 128 KiB per call, like a kernel's block layer would
    # hand a disk; several threads so reads pass while a write waits.
    FUSE(Passthrough(backing, disk), mountpoint, foreground=True,
         nothreads=False, big_writes=True, max_write=131072)


if __name__ == "__main__":
    main()
