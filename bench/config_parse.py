#!/usr/bin/env python3
"""Config parsing at scale: `keepalived-rs -t` against `keepalived -t`.

Generates a keepalived.conf with 1,000 vrrp_instances and 37,000 real_servers
(370 virtual servers x 100 real servers, each with a TCP_CHECK), runs each
checker on it several times, and reports the median wall time and the peak
RSS (from wait4) side by side, with ratios. Prints a markdown table and writes
a PNG plot.

usage: bench/config_parse.py [--runs N] [--out DIR] BINARY [PEER...]
  BINARY  keepalived-rs
  PEER    keepalived binaries to compare with (e.g. /usr/sbin/keepalived)
"""

import argparse
import re
import os
import statistics
import subprocess
import sys
import time

INSTANCES = 1000
VIRTUAL_SERVERS = 370
REAL_PER_VS = 100


def generate(path):
    lines = ["global_defs {", "    router_id BENCH", "}"]
    for i in range(INSTANCES):
        lines += [
            f"vrrp_instance VI_{i} {{",
            "    state BACKUP",
            f"    interface bench{i // 250}",
            f"    virtual_router_id {i % 250 + 1}",
            f"    priority {100 + i % 100}",
            "    advert_int 1",
            "    virtual_ipaddress {",
            f"        198.51.{100 + i // 250}.{i % 250 + 1}/32",
            "    }",
            "}",
        ]
    for v in range(VIRTUAL_SERVERS):
        lines += [
            f"virtual_server 203.0.113.{v % 250 + 1} {8000 + v} {{",
            "    delay_loop 6",
            "    lb_algo wrr",
            "    lb_kind DR",
            "    protocol TCP",
        ]
        for r in range(REAL_PER_VS):
            n = v * REAL_PER_VS + r
            lines += [
                f"    real_server 198.51.{100 + n // 65536 % 4}.{n // 256 % 256} {1024 + n % 256} {{",
                "        weight 1",
                "        TCP_CHECK {",
                "            connect_timeout 3",
                "            retry 3",
                "            delay_before_retry 3",
                "        }",
                "    }",
            ]
        lines.append("}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines)


def measure(cmd, scratch):
    """Wall seconds and peak RSS (KiB) of one run of cmd; output discarded.

    The RSS comes from GNU time's %M, not from our own wait4(): Linux carries
    the pre-exec image's high-water mark into the child, so a child of this
    Python process would never report less than Python's own RSS.
    """
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", scratch] + cmd,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    with open(scratch) as f:
        lines = [l for l in f.read().split("\n") if l.strip()]
    # With a non-zero exit GNU time writes "Command exited with non-zero status N" first.
    rss = int(lines[-1])
    return wall, rss, proc.returncode


def version_of(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip().splitlines()
        first = text[0] if text else binary
        # "Keepalived v2.4.3 (07/20,2026)" -> "keepalived 2.4.3"
        m = re.match(r"Keepalived v(\S+)", first)
        return f"keepalived {m.group(1)}" if m else first
    except OSError:
        return binary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default="bench/out")
    ap.add_argument("binary")
    ap.add_argument("peers", nargs="*")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    conf = os.path.join(args.out, "scale.conf")
    n_lines = generate(conf)
    size = os.path.getsize(conf)

    rows = []
    for binary in [args.binary] + args.peers:
        walls, rss, codes = [], [], set()
        for _ in range(args.runs):
            w, r, c = measure([binary, "-t", "-f", conf], os.path.join(args.out, "time.out"))
            walls.append(w)
            rss.append(r)
            codes.add(c)
        rows.append((version_of(binary), statistics.median(walls), max(rss), sorted(codes)))

    ours = rows[0]
    print(f"Config: {INSTANCES} vrrp_instance, {VIRTUAL_SERVERS * REAL_PER_VS} real_server "
          f"({n_lines} lines, {size / 1e6:.1f} MB); median of {args.runs} runs of `-t`.\n")
    print("| program | time (ms) | peak RSS (MiB) | time vs keepalived-rs | RSS vs keepalived-rs | exit codes |")
    print("|---|---:|---:|---:|---:|---|")
    for name, wall, rss, codes in rows:
        print(f"| {name} | {wall * 1000:.0f} | {rss / 1024:.1f} | {wall / ours[1]:.2f}x | "
              f"{rss / ours[2]:.2f}x | {','.join(map(str, codes))} |")

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("\n(matplotlib not installed: no plot)", file=sys.stderr)
        return
    names = [r[0].replace(" ", "\n", 1) for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.bar(names, [r[1] * 1000 for r in rows], color="tab:blue")
    a.set_ylabel("ms (median)")
    a.set_title("-t wall time")
    b.bar(names, [r[2] / 1024 for r in rows], color="tab:orange")
    b.set_ylabel("MiB")
    b.set_title("-t peak RSS")
    fig.suptitle(f"{INSTANCES} vrrp_instance + {VIRTUAL_SERVERS * REAL_PER_VS} real_server")
    fig.tight_layout()
    png = os.path.join(args.out, "config_parse.png")
    fig.savefig(png, dpi=100)
    print(f"\nplot: {png}", file=sys.stderr)


if __name__ == "__main__":
    main()
