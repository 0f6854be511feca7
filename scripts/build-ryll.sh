#!/usr/bin/env bash
# Builds ryll 0.3.0 from its published source, fetched through cargo (the
# package registry), with this project's patches applied
# (scripts/ryll-0.3.0-*.patch, in the order of `patches` below):
# `--capture DIR` writes a capture spool through ryll-hook, every other
# session records into a ring in memory, F12 / --pedantic / SIGUSR1 reports
# cut traffic.pcap from either, and Ctrl-C / SIGTERM stop a busy session at
# once.
#
# usage: scripts/build-ryll.sh DEST [--headless] [--stock]
#   DEST        the build goes to DEST/bin/ryll (sources in DEST/src, objects
#               in DEST/target unless CARGO_TARGET_DIR is set)
#   --headless  no GUI (`--no-default-features --features capture`): for CI
#               and servers; runs with --headless or --web
#   --stock     ryll 0.3.0 as published, without the patch (for comparisons)
# Without --headless the features are those of `cargo install ryll`: gui,
# capture, and audio where ALSA's development files are installed
# (Debian: libasound2-dev, pkg-config). Building needs cmake.
set -euo pipefail

usage() { sed -n '8,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
dest=$1
shift
headless=false
stock=false
for a in "$@"; do
  case $a in
    --headless) headless=true ;;
    --stock) stock=true ;;
    *) usage ;;
  esac
done

repo=$(cd "$(dirname "$0")/.." && pwd)
# The series, in the order it applies: the spool as --capture's writer
# (with prompt shutdown and the SIGUSR1 report), then every session's
# traffic ring for its reports.
patches=("$repo/scripts/ryll-0.3.0-spool.patch" "$repo/scripts/ryll-0.3.0-traffic-ring.patch")
version=0.3.0
for tool in cargo patch cmake; do
  command -v "$tool" >/dev/null || { echo "build-ryll: needs $tool" >&2; exit 2; }
done

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

# 1. The published source, through cargo: a throwaway package that depends on
#    ryll makes `cargo fetch` download it and unpack it in cargo's registry
#    (cargo warns, in fetch.log, that ryll has no library to link; fetching
#    is all we want). `[workspace]`: DEST may lie inside another workspace.
fetch=$dest/fetch
mkdir -p "$fetch/src"
cat > "$fetch/Cargo.toml" <<EOF
[package]
name = "ryll-source"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
ryll = "=$version"

[workspace]
EOF
echo 'fn main() {}' > "$fetch/src/main.rs"
if ! cargo fetch --manifest-path "$fetch/Cargo.toml" 2>"$fetch/fetch.log"; then
  cat "$fetch/fetch.log" >&2
  echo "build-ryll: cargo could not fetch ryll $version" >&2
  exit 1
fi
registry_src=
for d in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"ryll-$version"; do
  [ -f "$d/Cargo.toml" ] && registry_src=$d && break
done
[ -n "$registry_src" ] || { echo "build-ryll: cargo did not fetch ryll $version" >&2; exit 1; }

# 2. A fresh copy, patched.
src=$dest/src/ryll-$version
rm -rf "$src"
mkdir -p "$dest/src"
cp -R "$registry_src" "$src"
chmod -R u+w "$src"
# Its own workspace, even when DEST lies inside another one (this
# repository's target/, say).
printf '\n[workspace]\n' >> "$src/Cargo.toml"
if ! $stock; then
  for p in "${patches[@]}"; do
    patch -p1 --forward --quiet -d "$src" < "$p"
  done
  # The patch depends on ryll-hook by version, as it would upstream; until
  # ryll-hook is published, point that dependency at this checkout.
  cat >> "$src/Cargo.toml" <<EOF

[patch.crates-io]
ryll-hook = { path = "$repo/ryll-hook" }
EOF
fi

# 3. Build.
features=()
if $headless; then
  features=(--no-default-features --features capture)
elif ! pkg-config --exists alsa 2>/dev/null; then
  echo "build-ryll: no ALSA development files (libasound2-dev); building without audio" >&2
  features=(--no-default-features --features capture,gui)
fi
target=${CARGO_TARGET_DIR:-$dest/target}
# What `ryll --version` and its reports call the build (ryll's build.rs would
# otherwise take the SHA of whatever git checkout DEST lies in).
if $stock; then
  export RYLL_GIT_SHA=crates.io
else
  export RYLL_GIT_SHA="crates.io+ryll-hook-$(git -C "$repo" rev-parse --short=8 HEAD 2>/dev/null || echo unknown)"
fi
cargo build --release --manifest-path "$src/Cargo.toml" --target-dir "$target" "${features[@]}" >&2
mkdir -p "$dest/bin"
install -m 0755 "$target/release/ryll" "$dest/bin/ryll"
echo "$dest/bin/ryll"
