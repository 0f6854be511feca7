#!/usr/bin/env python3
"""ryll against a real busy SPICE server: stock ryll 0.3.0 without capture,
stock with --capture, and the patched ryll with --capture (the spool), with
tcpdump on loopback as the ground truth. Prints a markdown table.

usage: scripts/bench-ryll.py --stock BIN --patched BIN [--seconds 30]
                             [--slowfs MOUNTPOINT] [--work DIR] [--only SCENARIO]
                             [--rounds N]

Scenarios (each on a fresh tests/guest/spice-guest):
  random-extra-ext4  `spice-guest PORT random --extra`, capture dir on --work (ext4)
  scroll-slowfs      `spice-guest PORT scroll`, capture dir on the slow FUSE disk
                     (scripts/slowfs-mount.sh MOUNTPOINT first; skipped without it)

Columns, per run of --seconds, all measured on the same window:
  display MB/s  display bytes the server delivered to the client from its
                start to the SIGINT (tcpdump, retransmissions counted once),
                per second of the run: the session's throughput
  kept          display bytes the capture holds (stock: its display.pcap's
                payload; patched: the spool's manifest), and their share of
                every display byte delivered (until the connection closed)
  drops         records the capture reported dropped (stock cannot tell: the
                missing bytes show in `kept`)
  on disk MB    what the capture directory takes on its disk once complete
                (the patched client's detached mover waited for), every
                channel and file included: compression shows here
  CPU s         user + system CPU seconds of the client (wait4 rusage)
  CPU ms/MB     the client's CPU until the SIGINT per MB of display traffic
                it read until then: what the client costs per byte, which
                the guest's drifting rate does not change
  peak RSS      client's peak resident memory (VmHWM, MB; the spool's mapped
                segments are in it) + peak staging files on tmpfs (MB)
  peak memory   the peak, sampled every 0.25 s, of resident memory less the
                tmpfs pages mapped (RssShmem) plus the staging files (mapped
                or not): what the client holds, staging counted once (MiB)
  exit s        seconds from SIGINT to the process's exit (SIGKILL after
                --kill-after seconds, 60 by default)
Repeats (--rounds N): the guest's own rate drifts by tens of percent over
minutes, so one run per client compares guests as much as clients. With
--rounds the clients run N times in turn, the order reversed every other
round, and a summary gives each client's median throughput and its ratio to
stock without capture, round by round (each ratio from neighbouring runs).
The guest's rate mostly climbs through a session, so a client's place in
the round biases that ratio. --bracket removes the bias: stock without
capture runs before and after every other client's run (B X1 B X2 B X1 B
…), and each run's ratio is to the mean of the two baseline runs around it,
which cancels any drift that is linear over those three runs.

The guest (QEMU) and the client share the machine's cores, so a client
that costs more CPU also slows the server it measures; that is part of what
the throughput column shows. Anything else running competes too: run on a
quiet machine, or nice it with the kernel's autogroup off
(/proc/sys/kernel/sched_autogroup_enabled), since with autogroup on a niced
job in another session still takes an equal share of the CPU.

Needs root (tcpdump), qemu-system-x86, linux-image-amd64, busybox-static, cpio.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GUEST = os.path.normpath(os.path.join(HERE, "..", "tests", "guest", "spice-guest"))
DISPLAY_CHANNEL = 2  # SPICE_CHANNEL_DISPLAY


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port}")


def packets(path):
    """(time, ip packet) of every frame of an Ethernet/Linux-SLL pcap,
    streamed: these files reach gigabytes."""
    with open(path, "rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return
        magic = struct.unpack("<I", head[:4])[0]
        endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
        link = struct.unpack(endian + "I", head[20:24])[0]
        skip = {1: 14, 113: 16, 0: 4}[link]
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            ts, frac, incl, _ = struct.unpack(endian + "IIII", rec)
            pkt = f.read(incl)
            yield ts + frac / (1e9 if nano else 1e6), pkt[skip:]


def tcp_segments(path):
    """(time, src port, dst port, seq, payload length, first payload bytes)
    of every TCP segment, lengths from the IP header so a short snaplen
    still counts every byte."""
    for t, ip in packets(path):
        if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 15) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        tcp = ip[ihl:]
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack(">HHI", tcp[:8])
        doff = (tcp[12] >> 4) * 4
        yield t, sport, dport, seq, max(0, total - ihl - doff), tcp[doff:doff + 32]


def display_bytes(path, server_port, until=None):
    """Display bytes the server delivered on the wire (retransmissions
    counted once): all of them, and those sent up to `until`."""
    channel = {}   # client port -> SPICE channel type, from its link message
    high = {}      # client port -> highest s2c sequence end seen
    total = {}
    window = {}
    for t, sport, dport, seq, n, head in tcp_segments(path):
        if dport == server_port and sport not in channel and head[:4] == b"REDQ" and len(head) > 20:
            channel[sport] = head[20]
        if sport != server_port or n == 0:
            continue
        end = (seq + n) & 0xFFFFFFFF
        prev = high.get(dport)
        if prev is None:
            new = n
        else:
            ahead = (end - prev) & 0xFFFFFFFF
            new = min(n, ahead) if ahead < 1 << 31 else 0
        if new:
            high[dport] = end
        total[dport] = total.get(dport, 0) + new
        if until is None or t <= until:
            window[dport] = window.get(dport, 0) + new
    ports = [p for p, c in channel.items() if c == DISPLAY_CHANNEL]
    return sum(total.get(p, 0) for p in ports), sum(window.get(p, 0) for p in ports)


def pcap_payload_bytes(path):
    """TCP payload bytes of every packet in a pcap stock ryll wrote."""
    return sum(n for _, _, _, _, n, _ in tcp_segments(path))


def vm_hwm_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def unshared_rss_mb(pid):
    """Resident memory now less the tmpfs pages mapped (RssShmem): what
    the process holds besides staging, so that staging, counted from its
    files, is not counted twice."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssShmem"):
                    fields[key] = int(rest.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return fields.get("VmRSS", 0.0) - fields.get("RssShmem", 0.0)


def tree_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def cpu_now(pid):
    """User + system CPU seconds `pid` (all its threads) has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def run_client(argv, env, seconds, runtime_dir):
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_staging = 0
    peak_rss = 0.0
    peak_total = 0.0
    end = time.time() + seconds
    while time.time() < end and proc.poll() is None:
        staging = tree_bytes(runtime_dir)
        peak_staging = max(peak_staging, staging)
        peak_rss = max(peak_rss, vm_hwm_mb(proc.pid))
        peak_total = max(peak_total, unshared_rss_mb(proc.pid) + staging / 2**20)
        time.sleep(0.25)
    cpu_at_sigint = cpu_now(proc.pid)
    sent = time.time()
    proc.send_signal(signal.SIGINT)
    killed = False
    while True:
        peak_rss = max(peak_rss, vm_hwm_mb(proc.pid))
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if not killed and time.time() - sent > ARGS.kill_after:
            proc.kill()
            killed = True
        time.sleep(0.02)
    exit_s = time.time() - sent
    proc.returncode = status
    err = proc.stderr.read().decode(errors="replace")
    return {
        "cpu": usage.ru_utime + usage.ru_stime,
        "cpu_window": cpu_at_sigint,
        # Not ru_maxrss: across exec it keeps the forking (Python) process's
        # peak.
        "rss_mb": peak_rss,
        "total_mb": peak_total,
        "sigint_at": sent,
        "staging_mb": peak_staging / 1e6,
        "exit_s": exit_s,
        "status": status,
        "killed": killed,
        "stderr": err,
    }


def on_disk(variant, capture, timeout=180):
    """Bytes the capture takes on its disk once complete: stock's pcaps;
    the spool's directory after its detached mover, if any, has moved
    the rest in (the manifest stops saying `pending_move`)."""
    if variant.startswith("patched"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with open(os.path.join(capture, "manifest.json")) as f:
                    if not json.load(f).get("pending_move"):
                        break
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
    return tree_bytes(capture)


def kept_and_drops(variant, capture):
    if variant.endswith("no capture"):
        return None, None
    if variant.startswith("stock"):
        pcap = os.path.join(capture, "display.pcap")
        kept = pcap_payload_bytes(pcap) if os.path.exists(pcap) else 0
        return kept, None
    with open(os.path.join(capture, "manifest.json")) as f:
        m = json.load(f)
    ch = m.get("channels", {}).get("display", {})
    drops = sum(c.get("dropped_records", 0) for c in m.get("channels", {}).values())
    return ch.get("bytes", 0), drops


def scenario(name, load, extra, capture_root, args, results):
    port = free_port()
    guest_argv = ["bash", GUEST, str(port), load] + (["--extra"] if extra else [])
    guest = subprocess.Popen(guest_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        time.sleep(args.boot)
        variants = [
            ("stock, no capture", args.stock, False, {}),
            ("stock, --capture", args.stock, True, {}),
            ("patched, --capture", args.patched, True, {}),
        ]
        if args.patched_uncompressed:
            variants.append(("patched, --capture, uncompressed", args.patched, True,
                             {"RYLL_CAPTURE_COMPRESS": "0"}))
        if args.patched_without_capture:
            variants.append(("patched, no capture", args.patched, False, {}))
        if args.reverse and not args.bracket:
            variants.reverse()
        order = []
        if args.bracket:
            base, others = variants[0], variants[1:]
            order.append((0, base))
            for n in range(args.rounds):
                for v in (others if n % 2 == 0 else others[::-1]):
                    order += [(n, v), (n, base)]
        else:
            for n in range(args.rounds):
                order += [(n, v) for v in (variants if n % 2 == 0 else variants[::-1])]
        for round_no, (variant, binary, capture, extra_env) in order:
            work = tempfile.mkdtemp(prefix="bench-ryll-", dir=args.work)
            cap_dir = os.path.join(capture_root, f"cap-{os.path.basename(work)}")
            runtime_dir = tempfile.mkdtemp(prefix="bench-ryll-rt-", dir="/dev/shm")
            truth = os.path.join(work, "truth.pcap")
            dump = subprocess.Popen((["tcpdump", "-i", "lo", "-s", "256", "-U", "-w", truth, f"tcp port {port}"]),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.5)
            argv = [binary, "--headless", "--direct", f"127.0.0.1:{port}"]
            if capture:
                argv += ["--capture", cap_dir]
            env = dict(os.environ, XDG_RUNTIME_DIR=runtime_dir, **extra_env)
            r = run_client(argv, env, args.seconds, runtime_dir)
            time.sleep(1)
            dump.send_signal(signal.SIGINT)
            dump.wait()
            wire, window = display_bytes(truth, port, until=r["sigint_at"])
            kept, drops = kept_and_drops(variant, cap_dir) if capture else (None, None)
            disk = on_disk(variant, cap_dir) if capture else None
            r.update(scenario=name, variant=variant, round=round_no, wire=wire, window=window, kept=kept, drops=drops, disk=disk)
            results.append(r)
            print_row(r, file=sys.stderr)
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(runtime_dir, ignore_errors=True)
            if not args.keep:
                shutil.rmtree(cap_dir, ignore_errors=True)
    finally:
        guest.terminate()
        guest.wait()


HEADER = ("| scenario | client | display MB/s | kept | drops | on disk MB | CPU s | CPU ms/MB | peak RSS + staging MB | peak memory MiB | exit s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def ms_per_mb(r):
    return 1e3 * r.get("cpu_window", 0.0) / max(r["window"] / 1e6, 1e-9)


def print_row(r, file=sys.stdout):
    secs = r["seconds"] if "seconds" in r else ARGS.seconds
    kept = "–" if r["kept"] is None else f"{r['kept'] / 1e6:.1f} MB ({100 * r['kept'] / max(r['wire'], 1):.0f} %)"
    drops = "–" if r["drops"] is None else str(r["drops"])
    disk = "–" if r.get("disk") is None else f"{r['disk'] / 1e6:.1f}"
    print(f"| {r['scenario']} | {r['variant']} | {r['window'] / 1e6 / secs:.2f} | {kept} | {drops} | {disk} | "
          f"{r['cpu']:.1f} | {ms_per_mb(r):.1f} | {r['rss_mb']:.0f} + {r['staging_mb']:.0f} | "
          f"{r.get('total_mb', 0.0):.0f} | "
          f"{'killed after ' if r['killed'] else ''}{r['exit_s']:.2f} |", file=file)


def median(xs):
    xs = sorted(xs)
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


def print_summary(results):
    """Per scenario and client: median throughput over the rounds, and the
    ratio to stock without capture of the same round (median and range)."""
    print("\n| scenario | client | runs | median MB/s | ratio to stock, no capture: median (range) | median CPU ms/MB |")
    print("|---|---|---|---|---|---|")
    for name in dict.fromkeys(r["scenario"] for r in results):
        rows = [r for r in results if r["scenario"] == name]
        rate = lambda r: r["window"] / 1e6 / ARGS.seconds
        base = {r["round"]: rate(r) for r in rows if r["variant"] == "stock, no capture"}
        for variant in dict.fromkeys(r["variant"] for r in rows):
            mine = [r for r in rows if r["variant"] == variant]
            ratios = [rate(r) / base[r["round"]] for r in mine if base.get(r["round"])]
            ratio = (f"{median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"
                     if ratios and variant != "stock, no capture" else "–")
            cost = median([ms_per_mb(r) for r in mine])
            print(f"| {name} | {variant} | {len(mine)} | {median([rate(r) for r in mine]):.2f} | {ratio} | {cost:.1f} |")


def print_bracketed(results):
    """Per scenario and client: each run's throughput over the mean of the
    baseline (stock, no capture) runs just before and after it — the
    median and range of those ratios, and their mean."""
    print("\n| scenario | client | runs | ratio to the stock-without-capture runs around it: median (range) | mean ratio | median CPU ms/MB |")
    print("|---|---|---|---|---|---|")
    rate = lambda r: r["window"] / 1e6 / ARGS.seconds
    for name in dict.fromkeys(r["scenario"] for r in results):
        rows = [r for r in results if r["scenario"] == name]
        ratios = {}
        for i, r in enumerate(rows):
            if r["variant"] == "stock, no capture" or i == 0 or i + 1 >= len(rows):
                continue
            around = (rate(rows[i - 1]) + rate(rows[i + 1])) / 2
            if around > 0:
                ratios.setdefault(r["variant"], []).append(rate(r) / around)
        for variant, xs in ratios.items():
            cost = median([ms_per_mb(r) for r in rows if r["variant"] == variant])
            print(f"| {name} | {variant} | {len(xs)} | {median(xs):.2f}× ({min(xs):.2f}–{max(xs):.2f}) | "
                  f"{sum(xs) / len(xs):.2f}× | {cost:.1f} |")
        base = [ms_per_mb(r) for r in rows if r["variant"] == "stock, no capture"]
        print(f"| {name} | stock, no capture | {len(base)} | – | – | {median(base):.1f} |")


def main():
    global ARGS
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stock", required=True)
    p.add_argument("--patched", required=True)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--boot", type=float, default=15, help="seconds for the guest to boot and get busy")
    p.add_argument("--slowfs", help="mountpoint of scripts/slowfs-mount.sh")
    p.add_argument("--work", default=None, help="where ground truth goes (ext4; default: $TMPDIR)")
    p.add_argument("--only", help="run one scenario")
    p.add_argument("--keep", action="store_true", help="keep the capture directories")
    p.add_argument("--patched-uncompressed", action="store_true",
                   help="also run the patched client with RYLL_CAPTURE_COMPRESS=0")
    p.add_argument("--patched-without-capture", action="store_true",
                   help="also run the patched ryll without --capture (what the patch costs)")
    p.add_argument("--reverse", action="store_true",
                   help="run the clients in the opposite order (the guest's own rate drifts)")
    p.add_argument("--bracket", action="store_true",
                   help="run stock without capture between every two other runs; ratios to the mean of the two around each")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every client this many times, alternating the order (see above)")
    p.add_argument("--kill-after", type=float, default=60, help="SIGKILL a client this long after SIGINT")
    ARGS = args = p.parse_args()
    results = []
    work = args.work or tempfile.gettempdir()
    if args.only in (None, "random-extra-ext4"):
        scenario("random --extra, ext4", "random", True, work, args, results)
    if args.only in (None, "scroll-slowfs"):
        if args.slowfs:
            scenario("scroll, slow disk", "scroll", False, args.slowfs, args, results)
        else:
            print("scroll-slowfs skipped: no --slowfs", file=sys.stderr)
    print(f"\n{args.seconds:.0f} s per run; {os.uname().nodename}, {os.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M')}\n")
    print(HEADER)
    for r in results:
        print_row(r)
    if args.bracket:
        print_bracketed(results)
    elif args.rounds > 1:
        print_summary(results)


if __name__ == "__main__":
    main()
