#!/usr/bin/env bash
# Builds ryll 0.3.0 from its published source, fetched through cargo (the
# package registry), with this project's patch series applied
# (scripts/ryll-0.3.0/NNNN-*.patch, in the order of their names): `--capture
# DIR` writes a capture spool through ryll-hook (0001), Ctrl-C / SIGTERM
# stop a busy session at once (0002), SIGUSR1 writes a report without a
# window (0003), and every other session records into a ring in memory that
# reports cut traffic.pcap from (0004).
#
# usage: scripts/build-ryll.sh DEST [--headless] [--stock] [--upto NNNN] [--source-only]
#   DEST        the build goes to DEST/bin/ryll (sources in DEST/src, objects
#               in DEST/target unless CARGO_TARGET_DIR is set)
#   --headless  no GUI (`--no-default-features --features capture`): for CI
#               and servers; runs with --headless or --web
#   --stock     ryll 0.3.0 as published, without the series (for comparisons)
#   --upto NNNN the series up to and including patch NNNN only (to check
#               that each prefix builds)
#   --source-only  stop once the source is in DEST/src/ryll-0.3.0 and print
#               its path (with --stock: the published source, unpatched)
# Without --headless the features are those of `cargo install ryll`: gui,
# capture, and audio where ALSA's development files are installed
# (Debian: libasound2-dev, pkg-config). Building needs cmake.
set -euo pipefail

usage() { sed -n '10,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
dest=$1
shift
headless=false
stock=false
upto=9999
source_only=false
while [ $# -gt 0 ]; do
  case $1 in
    --headless) headless=true ;;
    --stock) stock=true ;;
    --upto) [ $# -ge 2 ] && [[ $2 =~ ^[0-9]{4}$ ]] || usage; upto=$2; shift ;;
    --source-only) source_only=true ;;
    *) usage ;;
  esac
  shift
done

repo=$(cd "$(dirname "$0")/.." && pwd)
version=0.3.0
# The series, in the order it applies (the glob sorts by name), up to
# --upto.
patches=()
shopt -s nullglob
for p in "$repo/scripts/ryll-$version"/[0-9][0-9][0-9][0-9]-*.patch; do
  n=$(basename "$p")
  if [ "$((10#${n:0:4}))" -le "$((10#$upto))" ]; then
    patches+=("$p")
  fi
done
shopt -u nullglob
[ ${#patches[@]} -gt 0 ] || { echo "build-ryll: no patches in scripts/ryll-$version" >&2; exit 1; }
tools=(cargo patch)
$source_only || tools+=(cmake)
for tool in "${tools[@]}"; do
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
    patch -p1 --forward --fuzz=0 --quiet -d "$src" < "$p"
  done
  # The patch depends on ryll-hook by version, as it would upstream; until
  # ryll-hook is published, point that dependency at this checkout.
  cat >> "$src/Cargo.toml" <<EOF

[patch.crates-io]
ryll-hook = { path = "$repo/ryll-hook" }
EOF
fi

if $source_only; then
  echo "$src"
  exit 0
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
