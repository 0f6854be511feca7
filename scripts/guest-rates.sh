#!/usr/bin/env bash
# The display rate of each load of the busy guest (tests/guest/spice-guest):
# for each load, a fresh guest, ryll-capture as the client (what the tests
# use), and tcpdump on loopback as the ground truth once the guest has
# booted. Prints a markdown table: the display connection's and all
# connections' server-to-client TCP payload, in MB/s over the window.
#
# usage: scripts/guest-rates.sh [SECONDS] [BOOT_SECONDS]   (root: tcpdump)
#   SECONDS       the measured window (default 20)
#   BOOT_SECONDS  wait after the client connects, before measuring (default 15)
# Needs: tcpdump, tshark, and what spice-guest needs; builds ryll-capture.
set -euo pipefail

secs=${1:-20}
boot=${2:-15}
repo=$(cd "$(dirname "$0")/.." && pwd)
cargo build -q --release -p ryll-tools --bin ryll-capture --manifest-path "$repo/Cargo.toml"
target=$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
client=$target/release/ryll-capture
work=$(mktemp -d /tmp/guest-rates.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Server-to-client payload bytes per TCP connection: "bytes" lines, largest
# first.
payload_per_connection() {
  tshark -r "$1" -T fields -e tcp.stream -e tcp.len -Y "tcp.srcport == $2" 2>/dev/null |
    awk '{b[$1] += $2} END {for (s in b) print b[s]}' | sort -rn
}

echo "| load | channels | display MB/s | all channels MB/s |"
echo "|---|---|---|---|"
for load in scroll random mixed idle "random --extra"; do
  port=$(free_port)
  # shellcheck disable=SC2086 # "random --extra" is two arguments
  "$repo/tests/guest/spice-guest" "$port" $load >"$work/guest.log" 2>&1 &
  guest=$!
  pids+=("$guest")
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  rm -rf "$work/capture"
  "$client" --capture "$work/capture" --duration $((boot + secs + 3)) \
    "spice://127.0.0.1:$port" >"$work/client.log" 2>&1 &
  pids+=($!)
  sleep "$boot"
  timeout --signal=INT "$secs" tcpdump -i lo -s 0 -w "$work/wire.pcap" \
    "tcp and src port $port" 2>/dev/null || true
  wait "${pids[-1]}" || true
  kill "$guest" 2>/dev/null || true
  wait "$guest" 2>/dev/null || true
  mapfile -t per < <(payload_per_connection "$work/wire.pcap" "$port")
  all=0
  for b in "${per[@]}"; do all=$((all + b)); done
  # ryll-capture ends with a line per channel it captured.
  channels=$(grep -c " records, " "$work/client.log" || true)
  awk -v l="$load" -v c="$channels" -v d="${per[0]:-0}" -v a="$all" -v s="$secs" \
    'BEGIN {printf "| %s | %d | %.2f | %.2f |\n", l, c, d / s / 1e6, a / s / 1e6}'
done
