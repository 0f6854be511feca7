#!/bin/sh
# Mounts the "slow disk" of scripts/slowfs.py (a FUSE passthrough that
# delays every write of 4 KiB or more by 20 ms + size / 4 MB/s, serialised) at
# MOUNTPOINT, installing what it needs if missing, and waits until it is
# mounted. Needs root. Prints the mountpoint and the PID of the FUSE process.
#
#   scripts/slowfs-mount.sh MOUNTPOINT [BACKING]
#   SLOWFS_DIR=MOUNTPOINT cargo bench -p e2e --bench append -- slow
#   fusermount -u MOUNTPOINT
#
# BACKING defaults to MOUNTPOINT.backing. The filesystem's log goes to
# BACKING.log.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 MOUNTPOINT [BACKING]" >&2
    exit 2
fi
mnt=$1
backing=${2:-$mnt.backing}
here=$(cd "$(dirname "$0")" && pwd)
slowfs=$here/slowfs.py

if mountpoint -q "$mnt" 2>/dev/null; then
    echo "$0: $mnt is already a mountpoint" >&2
    exit 1
fi

# Install-if-missing, from Debian: fuse3 (fusermount) and python3-fusepy
# (the binding, for Debian's /usr/bin/python3 that slowfs.py runs on; it
# brings libfuse2).
if ! command -v fusermount >/dev/null 2>&1 && ! command -v fusermount3 >/dev/null 2>&1 ||
    ! /usr/bin/python3 -c 'import fusepy' 2>/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        fuse3 python3-fusepy >/dev/null
fi

mkdir -p -m 0700 "$mnt" "$backing"
"$slowfs" "$backing" "$mnt" >"$backing.log" 2>&1 &
pid=$!

# Wait (up to 20 s) for the mount to appear.
i=0
until mountpoint -q "$mnt"; do
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "$0: slowfs exited; its log:" >&2
        cat "$backing.log" >&2
        exit 1
    fi
    i=$((i + 1))
    if [ $i -ge 200 ]; then
        echo "$0: $mnt not mounted after 20 s" >&2
        kill "$pid" 2>/dev/null || true
        exit 1
    fi
    sleep 0.1
done
echo "slowfs mounted at $mnt (backing $backing, pid $pid); unmount with: fusermount -u $mnt"
