#!/usr/bin/env python3
"""Summarises compare.sh results (JSON lines) as Markdown: medians per server and
scenario, server CPU per message split into user and kernel time, syscalls per message,
and the ratio of each server's CPU per message to ringws on io_uring."""
import json
import statistics
import sys
from collections import defaultdict

REFERENCE = "ringws-uring"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=2):
    if value is None:
        return "-"
    if isinstance(value, float) and value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def main(path):
    runs = defaultdict(list)
    order = []
    with open(path) as f:
        for line in f:
            run = json.loads(line)
            key = (run["scenario"], run["server"])
            if key not in runs:
                order.append(key)
            runs[key].append(run)
    scenarios = list(dict.fromkeys(s for s, _ in order))
    summary = {}
    for scenario in scenarios:
        size, inflight = scenario.split("x")
        print(f"\n### {size} B payload, {inflight} in flight per connection\n")
        print("| server | msgs/s | p50 µs | p99 µs | user µs/msg | sys µs/msg | CPU µs/msg | syscalls/msg | CPU vs ringws-uring | errors |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        rows = {}
        for (s, server) in order:
            if s != scenario:
                continue
            rs = runs[(s, server)]
            rows[server] = {
                "msgs_per_sec": median([r["msgs_per_sec"] for r in rs]),
                "p50_us": median([(r["latency"] or {}).get("p50_us") for r in rs]),
                "p99_us": median([(r["latency"] or {}).get("p99_us") for r in rs]),
                "user_us_per_msg": median([r["user_us_per_msg"] for r in rs]),
                "sys_us_per_msg": median([r["sys_us_per_msg"] for r in rs]),
                "cpu_us_per_msg": median([r["cpu_us_per_msg"] for r in rs]),
                "syscalls_per_msg": median([r["syscalls_per_msg"] for r in rs]),
                "errors": sum(r["errors"] or 0 for r in rs),
                "runs": len(rs),
            }
        reference = rows.get(REFERENCE, {}).get("cpu_us_per_msg")
        for server, row in rows.items():
            ratio = None
            if reference and row["cpu_us_per_msg"]:
                ratio = row["cpu_us_per_msg"] / reference
            row["cpu_ratio_to_reference"] = ratio
            print(f"| {server} | {fmt(row['msgs_per_sec'], 0)} | {fmt(row['p50_us'], 0)} | {fmt(row['p99_us'], 0)} "
                  f"| {fmt(row['user_us_per_msg'])} | {fmt(row['sys_us_per_msg'])} | {fmt(row['cpu_us_per_msg'])} "
                  f"| {fmt(row['syscalls_per_msg'])} | {fmt(ratio)}× | {row['errors']} |")
        summary[scenario] = rows
    with open(path.rsplit("/", 1)[0] + "/summary.json", "w") as f:
        json.dump(summary, f, indent=1)
    print("\nCPU vs ringws-uring above 1.00× means the server spends more CPU per message than ringws on io_uring.")


if __name__ == "__main__":
    main(sys.argv[1])
