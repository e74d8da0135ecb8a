#!/usr/bin/env python3
"""Draws compare.sh results as SVG bar charts, with no plotting library: for every
scenario, server CPU per message (user and kernel stacked) and messages per second.

Usage: loadtest/plot.py RESULTS_DIR OUTPUT_DIR
Reads RESULTS_DIR/summary.json (written by compare_report.py) and writes
OUTPUT_DIR/cpu-per-msg.svg and OUTPUT_DIR/msgs-per-sec.svg."""
import json
import os
import sys
from html import escape

COLORS = {"user": "#3b6ea8", "sys": "#a8c4e0", "msgs": "#5a9e5a"}
BAR_H, GAP, LABEL_W, CHART_W = 16, 4, 150, 420


def chart(title, unit, groups, stacked):
    """groups: [(scenario title, [(server, [values...])])]; stacked values share a bar."""
    peak = max((sum(v for v in vals if v) for _, rows in groups for _, vals in rows), default=1) or 1
    height = 40 + sum(30 + len(rows) * (BAR_H + GAP) for _, rows in groups) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL_W + CHART_W + 90}" height="{height}" '
           'font-family="sans-serif" font-size="12">',
           f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>']
    y = 40
    for scenario, rows in groups:
        out.append(f'<text x="10" y="{y + 14}" font-weight="bold">{escape(scenario)}</text>')
        y += 22
        for server, vals in rows:
            out.append(f'<text x="{LABEL_W - 6}" y="{y + BAR_H - 4}" text-anchor="end">{escape(server)}</text>')
            x = LABEL_W
            for value, color in zip(vals, stacked):
                if not value:
                    continue
                w = value / peak * CHART_W
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR_H}" fill="{COLORS[color]}"/>')
                x += w
            total = sum(v for v in vals if v)
            out.append(f'<text x="{x + 4:.1f}" y="{y + BAR_H - 4}">{total:,.2f} {escape(unit)}</text>'
                       if total < 1000 else f'<text x="{x + 4:.1f}" y="{y + BAR_H - 4}">{total:,.0f}</text>')
            y += BAR_H + GAP
        y += 8
    if len(stacked) > 1:
        lx = LABEL_W
        for name in stacked:
            out.append(f'<rect x="{lx}" y="{y}" width="12" height="12" fill="{COLORS[name]}"/>'
                       f'<text x="{lx + 16}" y="{y + 10}">{name}</text>')
            lx += 70
    out.append("</svg>")
    return "\n".join(out)


def main(results_dir, out_dir):
    with open(os.path.join(results_dir, "summary.json")) as f:
        summary = json.load(f)
    cpu_groups, rate_groups = [], []
    for scenario, rows in summary.items():
        size, inflight = scenario.split("x")
        title = f"{size} B, {inflight} in flight"
        cpu_groups.append((title, [(s, [r["user_us_per_msg"], r["sys_us_per_msg"]]) for s, r in rows.items()]))
        rate_groups.append((title, [(s, [r["msgs_per_sec"]]) for s, r in rows.items()]))
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "cpu-per-msg.svg"), "w") as f:
        f.write(chart("Server CPU per echoed message (lower is better)", "µs", cpu_groups, ["user", "sys"]))
    with open(os.path.join(out_dir, "msgs-per-sec.svg"), "w") as f:
        f.write(chart("Echoed messages per second (generator-bound here)", "msgs/s", rate_groups, ["msgs"]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
