#!/usr/bin/env python3
"""Turns the `key=value` lines of loadtest/bench.sh (its results.txt) into a
report: a Markdown file of medians, min-max and ratios against NGINX, and SVG
plots of latency percentiles by rate. Standard library only.

    loadtest/report.py /tmp/rhizome-bench/results.txt loadtest/results

Writes OUT/bench-<UTC date>.md, OUT/latency-<fraction>.svg and
OUT/latest.md (a copy of the newest report). A run the generator flagged
`client_bound=1` or `disturbed=1` is counted and named in the report; the
medians include it, so read the flags before the figures.
"""

import datetime
import math
import os
import re
import statistics
import sys
from collections import defaultdict

PROXIES = ["nginx", "haproxy", "node"]
PERCENTILES = [("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"),
               ("p999_ms", "p99.9"), ("max_ms", "max")]
COLORS = {"direct": "#555555", "nginx": "#2a9d8f", "haproxy": "#e9c46a",
          "node": "#e76f51"}


def parse(path):
    """Result lines as dicts; `rss_*` lines under their own key."""
    runs, rss = [], {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = dict(re.findall(r"(\w+)=(\S+)", line))
            if line.startswith("rss_"):
                rss[line.split()[0]] = fields
            elif "label" in fields and "mode" in fields:
                runs.append(fields)
    return runs, rss


def num(run, key):
    try:
        return float(run[key])
    except (KeyError, ValueError):
        return None


def spread(values):
    """`median (min–max)` of the present values, or `–`."""
    values = [v for v in values if v is not None]
    if not values:
        return None, "–"
    med = statistics.median(values)
    if len(values) == 1:
        return med, f"{med:,.1f}"
    return med, f"{med:,.1f} ({min(values):,.1f}–{max(values):,.1f})"


def flags(runs):
    bad = [r["label"] for r in runs
           if r.get("client_bound") == "1" or r.get("disturbed") == "1"]
    return f"{len(bad)} of {len(runs)}" if runs else "–"


def throughput(by_label):
    rows = ["| | req/s median (min–max) | × NGINX | CPU-µs/req | "
            "runs flagged client-bound or disturbed |", "|---|---|---|---|---|"]
    nginx, _ = spread([num(r, "rps") for r in by_label.get("nginx", [])])
    for label in ["direct"] + PROXIES:
        runs = by_label.get(label, [])
        rps, rps_s = spread([num(r, "rps") for r in runs])
        _, cpu_s = spread([num(r, "cpu_us_per_req") for r in runs])
        ratio = f"{rps / nginx:.2f}×" if rps and nginx else "–"
        rows.append(f"| {label} | {rps_s} | {ratio} | {cpu_s} | {flags(runs)} |")
    return rows


def latency(by_label, fractions):
    rows = ["| rate | proxy | added p50 ms | added p99 ms | added p99.9 ms | "
            "worst round's added p99 ms | CPU-µs/req | flagged |",
            "|---|---|---|---|---|---|---|---|"]
    for frac in fractions:
        direct = by_label.get(f"direct@{frac}", [])
        base = {k: spread([num(r, k) for r in direct])[0]
                for k in ("p50_ms", "p99_ms", "p999_ms")}
        for proxy in PROXIES:
            runs = by_label.get(f"{proxy}@{frac}", [])
            if not runs:
                continue
            cells = []
            for k in ("p50_ms", "p99_ms", "p999_ms"):
                med, _ = spread([num(r, k) for r in runs])
                cells.append("–" if med is None or base[k] is None
                             else f"{med - base[k]:+.3f}")
            # The median hides a round with a stall; the worst round shows it.
            p99s = [v for v in (num(r, "p99_ms") for r in runs) if v is not None]
            cells.append("–" if not p99s or base["p99_ms"] is None
                         else f"{max(p99s) - base['p99_ms']:+.3f}")
            _, cpu_s = spread([num(r, "cpu_us_per_req") for r in runs])
            rate = runs[0].get("rate", "?")
            rows.append(f"| {frac} ({rate}/s) | {proxy} | {' | '.join(cells)} "
                        f"| {cpu_s} | {flags(runs)} |")
    return rows


def memory(by_label, rss):
    rows = ["| | RSS idle KiB | RSS after load KiB | KiB per idle keep-alive connection |",
            "|---|---|---|---|"]
    for proxy in PROXIES:
        idle = rss.get("rss_idle", {}).get(f"{proxy}_kib", "–")
        after = rss.get("rss_after_load", {}).get(f"{proxy}_kib", "–")
        _, per = spread([num(r, "kib_per_conn")
                         for r in by_label.get(f"{proxy}-idle", [])])
        rows.append(f"| {proxy} | {idle} | {after} | {per} |")
    return rows


def svg_latency(by_label, frac):
    """Percentile (x) against median latency in ms (log y), one line each."""
    width, height, left, bottom, top = 640, 360, 60, 40, 30
    series = {}
    for label in ["direct"] + PROXIES:
        runs = by_label.get(f"{label}@{frac}", [])
        if runs:
            series[label] = [spread([num(r, k) for r in runs])[0] or 0.001
                             for k, _ in PERCENTILES]
    if not series:
        return None

    lo = min(min(v) for v in series.values())
    hi = max(max(v) for v in series.values())
    lo_l, hi_l = math.floor(math.log10(max(lo, 1e-3))), math.ceil(math.log10(hi))
    hi_l = max(hi_l, lo_l + 1)

    def x(i):
        return left + i * (width - left - 20) / (len(PERCENTILES) - 1)

    def y(v):
        f = (math.log10(max(v, 1e-3)) - lo_l) / (hi_l - lo_l)
        return height - bottom - f * (height - bottom - top)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18">latency by percentile at {frac} of NGINX '
           f'saturation (ms, log scale)</text>']
    for e in range(lo_l, hi_l + 1):
        yy = y(10 ** e)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{width - 20}" y2="{yy:.1f}" '
                   f'stroke="#ddd"/><text x="8" y="{yy + 4:.1f}">{10 ** e:g}</text>')
    for i, (_, name) in enumerate(PERCENTILES):
        out.append(f'<text x="{x(i) - 12:.1f}" y="{height - 15}">{name}</text>')
    for n, (label, values) in enumerate(series.items()):
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        color = COLORS.get(label, "black")
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        out.append(f'<text x="{left + 10 + n * 90}" y="{top + 14}" fill="{color}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: report.py RESULTS.txt OUT_DIR")
    runs, rss = parse(sys.argv[1])
    if not runs:
        sys.exit(f"{sys.argv[1]}: no result lines")
    by_label = defaultdict(list)
    for r in runs:
        by_label[r["label"]].append(r)
    fractions = sorted({lab.split("@")[1] for lab in by_label if "@" in lab},
                       key=lambda f: int(f.rstrip("%")))
    os.makedirs(sys.argv[2], exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    lines = [f"# Side-by-side loadtest, {stamp}", "",
             "Produced by `loadtest/bench.sh` and `loadtest/report.py`: one worker "
             "each, the proxy alone on core 0 (`taskset`), generator and upstream on "
             "core 1; medians over the interleaved rounds with min–max. A run is "
             "*client-bound* when the proxy used under 90 % of its core in a "
             "closed-loop run, *disturbed* when other work took over 10 % of the "
             "proxy's core.", "", "## Throughput (closed loop, 32 connections)", ""]
    lines += throughput(by_label)
    lines += ["", "## Added latency over direct (open loop, corrected for "
              "coordinated omission)", ""]
    lines += latency(by_label, fractions)
    lines += ["", "## Memory", ""]
    lines += memory(by_label, rss)
    lines += [""]
    for frac in fractions:
        svg = svg_latency(by_label, frac)
        if svg:
            name = f"latency-{frac.rstrip('%')}.svg"
            with open(os.path.join(sys.argv[2], name), "w", encoding="utf-8") as f:
                f.write(svg)
            lines += [f"![latency at {frac}]({name})", ""]
    text = "\n".join(lines)
    for name in (f"bench-{stamp}.md", "latest.md"):
        with open(os.path.join(sys.argv[2], name), "w", encoding="utf-8") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
