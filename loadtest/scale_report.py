#!/usr/bin/env python3
"""Summarises scale.sh results as Markdown and an SVG line chart.

For every scenario and server: median msgs/s per shard count, server CPU per message,
cores the server and the generator kept busy, and scaling efficiency, msgs/s at N shards
divided by N times msgs/s at one shard. A generator near its thread count is the
bottleneck, and the efficiency then measures it, not the server: the table shows both.

Usage: loadtest/scale_report.py RESULTS_DIR   (reads RESULTS_DIR/shards-*/results.jsonl,
writes RESULTS_DIR/scale.json and RESULTS_DIR/scaling.svg)"""
import glob
import json
import os
import re
import statistics
import sys
from collections import defaultdict
from html import escape

COLORS = ["#3b6ea8", "#5a9e5a", "#c0703a", "#8a5ab0", "#b03a5a", "#3aa0a0"]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def load(results_dir):
    rows = defaultdict(list)  # (scenario, server, shards) -> runs
    for path in glob.glob(os.path.join(results_dir, "shards-*", "results.jsonl")):
        shards = int(re.search(r"shards-(\d+)", path).group(1))
        with open(path) as f:
            for line in f:
                run = json.loads(line)
                rows[(run["scenario"], run["server"], shards)].append(run)
    table = {}
    for (scenario, server, shards), runs in rows.items():
        table.setdefault(scenario, {}).setdefault(server, {})[shards] = {
            "msgs_per_sec": median([r["msgs_per_sec"] for r in runs]),
            "cpu_us_per_msg": median([r["cpu_us_per_msg"] for r in runs]),
            "server_cores_busy": median([r.get("server_cores_busy") for r in runs]),
            "generator_cores_busy": median([r.get("generator_cores_busy") for r in runs]),
            "generator_threads": runs[0].get("generator_threads"),
            "errors": sum(r["errors"] or 0 for r in runs),
            "runs": len(runs),
        }
    for servers in table.values():
        for by_shards in servers.values():
            base = (by_shards.get(1) or {}).get("msgs_per_sec")
            for n, row in by_shards.items():
                rate = row["msgs_per_sec"]
                row["efficiency"] = rate / (n * base) if base and rate else None
    return table


def fmt(value, pattern):
    return "-" if value is None else pattern.format(value)


def markdown(table):
    out = []
    for scenario, servers in table.items():
        size, inflight = scenario.split("x")
        out.append(f"\n#### {size} B payload, {inflight} in flight per connection\n")
        out.append("| server | shards | msgs/s | efficiency | CPU µs/msg | server cores busy | generator cores busy | errors |")
        out.append("|---|---|---|---|---|---|---|---|")
        for server, by_shards in servers.items():
            for n in sorted(by_shards):
                r = by_shards[n]
                gen = fmt(r["generator_cores_busy"], "{:.1f}") + f" of {r['generator_threads']}"
                out.append(f"| {server} | {n} | {fmt(r['msgs_per_sec'], '{:,.0f}')} | "
                           f"{fmt(r['efficiency'], '{:.0%}')} | {fmt(r['cpu_us_per_msg'], '{:.2f}')} | "
                           f"{fmt(r['server_cores_busy'], '{:.2f}')} | {gen} | {r['errors']} |")
    return "\n".join(out)


def svg(table):
    """One panel per scenario: msgs/s against shards, one line per server, plus the ideal
    line (N times the first server's one-shard rate)."""
    width, panel_h, left, plot_w, plot_h = 560, 260, 80, 330, 190
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{panel_h * len(table) + 10}" '
           'font-family="sans-serif" font-size="12">']
    for index, (scenario, servers) in enumerate(table.items()):
        top = index * panel_h + 30
        size, inflight = scenario.split("x")
        out.append(f'<text x="10" y="{top - 10}" font-size="14" font-weight="bold">'
                   f'msgs/s vs shards: {size} B, {inflight} in flight</text>')
        shard_counts = sorted({n for by in servers.values() for n in by})
        peak = max((r["msgs_per_sec"] or 0) for by in servers.values() for r in by.values()) or 1
        first = next(iter(servers.values()))
        base = (first.get(1) or {}).get("msgs_per_sec")
        if base:
            peak = max(peak, base * max(shard_counts))
        x_of = lambda n: left + (shard_counts.index(n) / max(1, len(shard_counts) - 1)) * plot_w
        y_of = lambda v: top + plot_h - v / peak * plot_h
        out.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#888"/>')
        out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#888"/>')
        for n in shard_counts:
            out.append(f'<text x="{x_of(n):.1f}" y="{top + plot_h + 15}" text-anchor="middle">{n}</text>')
        for frac in (0.5, 1.0):
            out.append(f'<text x="{left - 5}" y="{y_of(peak * frac) + 4:.1f}" text-anchor="end">'
                       f'{peak * frac / 1e6:.2f}M</text>')
        series = list(servers.items())
        if base:
            series = [("ideal (N × 1 shard)", {n: {"msgs_per_sec": base * n} for n in shard_counts})] + series
        for k, (server, by_shards) in enumerate(series):
            color = "#aaa" if k == 0 and base else COLORS[k % len(COLORS)]
            points = [(x_of(n), y_of(by_shards[n]["msgs_per_sec"])) for n in shard_counts
                      if n in by_shards and by_shards[n]["msgs_per_sec"]]
            dash = ' stroke-dasharray="4 3"' if k == 0 and base else ""
            if len(points) > 1:
                path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
                out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
            for x, y in points:
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
            out.append(f'<text x="{left + plot_w + 12}" y="{top + 12 + k * 16}" fill="{color}">{escape(server)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def main(results_dir):
    table = load(results_dir)
    print(markdown(table))
    with open(os.path.join(results_dir, "scale.json"), "w") as f:
        json.dump(table, f, indent=1)
    with open(os.path.join(results_dir, "scaling.svg"), "w") as f:
        f.write(svg(table))


if __name__ == "__main__":
    main(sys.argv[1])
