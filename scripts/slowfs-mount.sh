#!/bin/sh
# Mounts the "slow disk" of ../shared/tools/slowfs.py (a FUSE passthrough that
# delays every write of 4 KiB or more by 20 ms + size / 4 MB/s, serialised) at
# MOUNTPOINT, installing what it needs if missing, and waits until it is
# mounted. Needs root. Prints the mountpoint and the PID of the FUSE process.
#
#   scripts/slowfs-mount.sh MOUNTPOINT [BACKING]
#   SLOWFS_DIR=MOUNTPOINT cargo bench -p e2e --bench append -- slow
#   fusermount -u MOUNTPOINT
#
# BACKING defaults to MOUNTPOINT.backing. The filesystem's log goes to
# BACKING.log. SLOWFS_PY overrides where slowfs.py is found.
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 MOUNTPOINT [BACKING]" >&2
    exit 2
fi
mnt=$1
backing=${2:-$mnt.backing}
here=$(cd "$(dirname "$0")" && pwd)
slowfs=${SLOWFS_PY:-$here/../../shared/tools/slowfs.py}
[ -f "$slowfs" ] || slowfs=/work/shared/tools/slowfs.py
if [ ! -f "$slowfs" ]; then
    echo "$0: slowfs.py not found (set SLOWFS_PY)" >&2
    exit 1
fi

if mountpoint -q "$mnt" 2>/dev/null; then
    echo "$0: $mnt is already a mountpoint" >&2
    exit 1
fi

# Install-if-missing: fuse3 (fusermount, /dev/fuse helper), libfuse2 (what
# fusepy loads), fusepy.
if ! command -v fusermount >/dev/null 2>&1 && ! command -v fusermount3 >/dev/null 2>&1 ||
    ! ldconfig -p | grep -q 'libfuse\.so\.2'; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 libfuse2 >/dev/null
fi
if ! python3 -c 'import fuse' 2>/dev/null; then
    pip install -q fusepy 2>/dev/null || pip install -q --break-system-packages fusepy
fi

mkdir -p "$mnt" "$backing"
python3 "$slowfs" "$backing" "$mnt" >"$backing.log" 2>&1 &
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
