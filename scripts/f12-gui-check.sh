#!/usr/bin/env bash
# F12 in the patched ryll's window, for real: the busy guest of
# tests/guest/spice-guest, ryll's GUI on a virtual X display (Xvfb) with
# --capture, and xdotool pressing F12, then the dialog's "Capture" button,
# then Escape (a Display report without a region). Checks that the report
# lands in DIR/bug-reports and that its traffic.pcap decodes as SPICE in
# tshark, then that Ctrl-C closes the window and leaves a clean capture
# and a display.mp4 (video recording works as in stock ryll).
#
# With --no-capture: the session records into its memory ring instead
# (ryll_hook::ring); the report must land in --bug-report-dir and decode
# the same, F11 then opens the traffic viewer (screenshot 5), and Ctrl-C
# must leave nothing in the session's tmpfs runtime directory.
#
# usage: scripts/f12-gui-check.sh RYLL_GUI_BINARY [WORKDIR] [--no-capture]
# Needs: Xvfb, xdotool, imagemagick (screenshots of each step, kept in
# WORKDIR), tshark, and what spice-guest needs (qemu-system-x86,
# linux-image-amd64, busybox-static, cpio).
set -euo pipefail

ryll=${1:?usage: $0 RYLL_GUI_BINARY [WORKDIR] [--no-capture]}
work=${2:-$(mktemp -d /tmp/f12-gui-check.XXXXXX)}
ring=false
[ "${3:-}" = --no-capture ] && ring=true
here=$(cd "$(dirname "$0")" && pwd)
guest_script=$here/../tests/guest/spice-guest
mkdir -p "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
fail() { echo "f12-gui-check: FAIL: $*" >&2; exit 1; }
shot() { import -display "$DISPLAY" -window root "$work/$1.png" 2>/dev/null || true; }

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bash "$guest_script" "$port" scroll >"$work/guest.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

display_no=$((90 + RANDOM % 100))
Xvfb ":$display_no" -screen 0 1280x1024x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
pids+=($!)
export DISPLAY=:$display_no
for _ in $(seq 100); do xdotool getmouselocation >/dev/null 2>&1 && break; sleep 0.1; done

cap=$work/capture
reports=$cap/bug-reports
runtime=$(mktemp -d /dev/shm/f12-gui-check.XXXXXX)
if $ring; then
  reports=$work/bug-reports
  XDG_RUNTIME_DIR=$runtime "$ryll" --direct "127.0.0.1:$port" --bug-report-dir "$reports" >"$work/ryll.log" 2>&1 &
else
  XDG_RUNTIME_DIR=$runtime "$ryll" --direct "127.0.0.1:$port" --capture "$cap" >"$work/ryll.log" 2>&1 &
fi
ryll_pid=$!
pids+=("$ryll_pid")
win=$(timeout 60 xdotool search --sync --onlyvisible --pid "$ryll_pid" | head -n 1) ||
  fail "ryll opened no window (see $work/ryll.log)"
sleep 15 # the guest boots and scrolls
xdotool windowactivate --sync "$win" 2>/dev/null || xdotool windowfocus --sync "$win"
shot 1-session

xdotool key --window "$win" F12
sleep 2
shot 2-dialog
# The dialog is centred in the window; its "Capture" button is found by
# its position relative to the window's centre (see 2-dialog.png).
eval "$(xdotool getwindowgeometry --shell "$win")"
cx=$((X + WIDTH / 2 + ${CAPTURE_DX:--148}))
cy=$((Y + HEIGHT / 2 + ${CAPTURE_DY:-198}))
echo "window $WIDTH x $HEIGHT at $X,$Y; clicking Capture at $cx,$cy"
xdotool mousemove --sync "$cx" "$cy" click 1
sleep 2
shot 3-region-select
xdotool key --window "$win" Escape
for _ in $(seq 150); do
  report=$(ls "$reports"/*.zip 2>/dev/null | head -n 1) && [ -n "$report" ] && break
  sleep 0.2
done
[ -n "${report:-}" ] || fail "no report in $reports (screenshots in $work)"
sleep 3 # the report is written after a 2 s metrics sample
shot 4-after-report
grep -q "bugreport: reading the capture failed" "$work/ryll.log" &&
  fail "the report fell back to ryll's ring: $(grep 'reading the capture failed' "$work/ryll.log")"

python3 - "$report" "$work/traffic.pcap" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    open(sys.argv[2], "wb").write(z.read("traffic.pcap"))
    print("report entries:", ", ".join(z.namelist()))
EOF
messages=$(tshark -r "$work/traffic.pcap" -T fields -e spice.message_type 2>/dev/null |
  tr ',' '\n' | grep -c . || true)
frames=$(tshark -r "$work/traffic.pcap" 2>/dev/null | wc -l)
echo "traffic.pcap: $frames frames, $messages SPICE messages decoded"
[ "$messages" -gt 0 ] || fail "tshark decodes no SPICE message in the report's traffic.pcap"
if $ring; then
  grep -q "traffic ring: recording in memory" "$work/ryll.log" || fail "no traffic ring started"
  xdotool key --window "$win" F11
  sleep 3
  shot 5-traffic-viewer
fi

start=$(date +%s.%N)
kill -INT "$ryll_pid"
for _ in $(seq 300); do kill -0 "$ryll_pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$ryll_pid" 2>/dev/null && fail "ryll still running 15 s after Ctrl-C"
took=$(python3 -c "import time; print(f'{time.time() - $start:.2f}')")
echo "ryll exited $took s after Ctrl-C"
if $ring; then
  left=$(find "$runtime" -type f | wc -l)
  [ "$left" -eq 0 ] || fail "the ring left $left files in $runtime"
  rmdir "$runtime"/* "$runtime" 2>/dev/null || true
  echo "f12-gui-check: OK, without --capture (screenshots and logs in $work)"
  exit 0
fi
python3 - "$cap/manifest.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["clean_shutdown"], m
print("manifest: clean, display", m["channels"]["display"]["bytes"], "bytes,",
      sum(c["dropped_records"] for c in m["channels"].values()), "dropped records")
EOF
[ -s "$cap/display.mp4" ] || fail "no display.mp4: video recording stopped working"
# Frames in the MP4: the sample count of its track (stsz), or of its
# fragments (trun) if it was written fragmented.
frames=$(python3 - "$cap/display.mp4" <<'EOF'
import struct, sys
CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"moof", b"traf"}
def walk(data, start, end, out):
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        head = 8
        if size == 1 and start + 16 <= end:
            size, head = struct.unpack(">Q", data[start + 8:start + 16])[0], 16
        elif size == 0:
            size = end - start
        if size < head or start + size > end:
            return
        body = start + head
        if kind in CONTAINERS:
            walk(data, body, start + size, out)
        elif kind == b"stsz" and body + 12 <= end:
            out.append(struct.unpack(">I", data[body + 8:body + 12])[0])
        elif kind == b"trun" and body + 8 <= end:
            out.append(struct.unpack(">I", data[body + 4:body + 8])[0])
        start += size
data = open(sys.argv[1], "rb").read()
counts = []
walk(data, 0, len(data), counts)
print(sum(counts))
EOF
)
echo "display.mp4: $(stat -c %s "$cap/display.mp4") bytes, $frames frames"
[ "$frames" -gt 0 ] || fail "display.mp4 holds no frame"
# ryll records a video frame at each display MARK (SPICE_MSG_DISPLAY_MARK,
# type 102), as stock ryll does; QEMU sends one per display surface.
converter=${SPOOL2PCAP:-$here/../target/debug/spool2pcap}
if [ -x "$converter" ]; then
  "$converter" convert "$cap" -o "$work/pcaps" >/dev/null
  marks=$(tshark -r "$work/pcaps/display.pcap" -T fields -e spice.message_type 2>/dev/null |
    tr ',' '\n' | grep -cx 102 || true)
  echo "display MARKs in the capture: $marks"
  [ "$frames" -le "$marks" ] || fail "more video frames ($frames) than display MARKs ($marks)"
else
  echo "(no spool2pcap at $converter: set SPOOL2PCAP to compare frames with display MARKs)"
fi
echo "f12-gui-check: OK (screenshots and logs in $work)"
