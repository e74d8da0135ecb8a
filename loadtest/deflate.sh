#!/usr/bin/env bash
# permessage-deflate benchmark: server CPU per compressed echo. Each server is pinned to
# CPU 0 (one shard/thread), the generator (`ringws-loadtest echo --deflate`, JSON-like
# text payloads, one thread) to CPU 1, 100 connections, 1 in flight each; server CPU per
# message from /proc/PID/stat (utime + stime) over a window inside the measured time,
# as compare.sh does; the compression ratio (wire bytes / payload bytes, each way) from
# the generator's own counts. Every run is bounded (warmup + duration, and the
# generator's hard cap); only the processes this script starts are stopped, by PID.
#
# Usage: loadtest/deflate.sh [options]
#   --servers LIST     comma list from: ringws-uring-off, ringws-uring-nct, ringws-uring-ct,
#                      ringws-epoll-off, ringws-epoll-nct, ringws-epoll-ct, uws-shared,
#                      uws-dedicated, ws-ct, ws-nct   (default: all available)
#   --sizes LIST       payload sizes in bytes (default 125,16384)
#   --variants LIST    distinct payloads per connection, one per size (default 1024,8:
#                      125 KiB and 128 KiB of distinct JSON, more than a 32 KiB window)
#   --connections N    (default 100)
#   --duration S       measured seconds per run (default 10)
#   --warmup S         (default 1)
#   --repeats N        interleaved repeats (default 2)
#   --out DIR          results directory (default target/deflate/DATE)
#   --bin-dir DIR      ringws and ringws-loadtest binaries (default: cargo build --release
#                      into ${CARGO_TARGET_DIR:-target})
# Servers:
#   ringws-*-off: `ringws serve --shards 1 --backend B` (no deflate; the generator does
#                 not offer it), *-nct: `--deflate-mode no-context-takeover`, *-ct:
#                 `--deflate` (context takeover, 15-bit windows, zlib level 1).
#   uws-shared / uws-dedicated: set UWS_DEFLATE_SERVER to a uWebSockets EchoServer built
#                 with `.compression = SHARED_COMPRESSOR | SHARED_DECOMPRESSOR` or
#                 `DEDICATED_COMPRESSOR | DEDICATED_DECOMPRESSOR` chosen by its first
#                 argument (shared|dedicated), its second the port, and every echo sent
#                 with compress = true: loadtest/peers/uws-deflate-echo.cpp, built as its
#                 header says (outside the repository); skipped otherwise.
#   ws-ct / ws-nct: node's `ws` (loadtest/peers/ws-deflate-echo.js, perMessageDeflate
#                 { threshold: 0 }); set WS_DIR to a folder with node_modules/ws
#                 (`npm install ws` there); skipped otherwise.
# Independent client: with UWS_LOAD_TEST set to uWebSockets' benchmarks/load_test (built
# with its request path changed from / to /echo), extra rows drive ringws-uring-ct and
# uws-dedicated (its third argument `plain`: echoes uncompressed) with
# `load_test CONNECTIONS 127.0.0.1 PORT 0 1 20`: 20 B binary messages sent compressed
# (zlib default level, a fresh stream per message), echoes uncompressed (ringws does
# not compress messages under its 64 B threshold; load_test needs them so); msgs/s is
# the median of its 4-second "Msg/sec" lines.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=""
SIZES="125,16384"
VARIANTS="1024,8"
CONNECTIONS=100
DURATION=10
WARMUP=1
REPEATS=2
OUT="target/deflate/$(date +%Y%m%d-%H%M%S)"
BIN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) SERVERS=$2; shift 2 ;;
    --sizes) SIZES=$2; shift 2 ;;
    --variants) VARIANTS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --bin-dir) BIN=$2; shift 2 ;;
    -h|--help) sed -n '2,44p' "$0"; exit 0 ;;
    *) echo "deflate.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

SERVER_CPUS=0
GEN_CPUS=1
SHARDS=1
if [ -z "$BIN" ]; then
  echo "deflate: building release binaries" >&2
  cargo build --release -q --bin ringws
  cargo build --release -q -p ringws-loadtest
  BIN=${CARGO_TARGET_DIR:-target}/release
fi
LOADTEST=$BIN/ringws-loadtest
# wait_port, cpu_ticks.
# shellcheck source=loadtest/servers.sh
. loadtest/servers.sh

if [ -z "$SERVERS" ]; then
  SERVERS="ringws-uring-off,ringws-uring-nct,ringws-uring-ct,ringws-epoll-off,ringws-epoll-nct,ringws-epoll-ct"
  if [ -n "${UWS_DEFLATE_SERVER:-}" ]; then SERVERS="$SERVERS,uws-shared,uws-dedicated"
  else echo "deflate: UWS_DEFLATE_SERVER unset, uws skipped" >&2; fi
  if [ -n "${WS_DIR:-}" ] && command -v node >/dev/null; then SERVERS="$SERVERS,ws-ct,ws-nct"
  else echo "deflate: WS_DIR unset (or no node), ws skipped" >&2; fi
fi

# Starts deflate server $1 on port $2 pinned to SERVER_CPUS; prints its PID.
start_deflate_server() {
  local name=$1 port=$2 addr=127.0.0.1:$2 backend mode
  case "$name" in
    ringws-*)
      backend=${name#ringws-}; mode=${backend#*-}; backend=${backend%-*}
      case "$mode" in
        off) set -- ;;
        nct) set -- --deflate-mode no-context-takeover ;;
        ct) set -- --deflate ;;
        *) echo "deflate: unknown mode $mode" >&2; return 1 ;;
      esac
      exec taskset -c "$SERVER_CPUS" "$BIN/ringws" serve --bind "$addr" --shards "$SHARDS" \
        --backend "$backend" "$@" ;;
    uws-shared) exec taskset -c "$SERVER_CPUS" "$UWS_DEFLATE_SERVER" shared "$port" ;;
    uws-dedicated) exec taskset -c "$SERVER_CPUS" "$UWS_DEFLATE_SERVER" dedicated "$port" ;;
    uws-dedicated-plain)
      exec taskset -c "$SERVER_CPUS" "$UWS_DEFLATE_SERVER" dedicated "$port" plain ;;
    ws-ct) exec env PORT="$port" WS_DIR="$WS_DIR" taskset -c "$SERVER_CPUS" \
        node loadtest/peers/ws-deflate-echo.js ;;
    ws-nct) exec env PORT="$port" WS_DIR="$WS_DIR" WS_DEFLATE_MODE=no-context-takeover \
        taskset -c "$SERVER_CPUS" node loadtest/peers/ws-deflate-echo.js ;;
    *) echo "deflate: unknown server $name" >&2; return 1 ;;
  esac >/dev/null 2>&1 &
  echo $!
}

# Starts server $1 on a random port (up to 3 tries: a busy machine may be slow to bind,
# or the port taken); sets pid and port, false when it never listened.
start_on_free_port() {
  local try
  for try in 1 2 3; do
    # Below the ephemeral range (32768+), where the generators' own sockets linger.
    port=$((20000 + RANDOM % 12000))
    pid=$(start_deflate_server "$1" "$port")
    if wait_port "$port"; then return 0; fi
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    echo "deflate: $1 did not listen on $port (try $try)" >&2
  done
  return 1
}

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "rustc: $(rustc --version 2>/dev/null || echo none)"
  echo "node: $(node --version 2>/dev/null || echo none)"
  echo "servers on CPU $SERVER_CPUS, generator on CPU $GEN_CPUS (1 thread)"
  echo "connections $CONNECTIONS, $WARMUP s warmup, $DURATION s per run, $REPEATS interleaved repeats"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2
HZ=$(getconf CLK_TCK)

IFS=, read -ra server_list <<< "$SERVERS"
IFS=, read -ra size_list <<< "$SIZES"
IFS=, read -ra variant_list <<< "$VARIANTS"
for repeat in $(seq "$REPEATS"); do
  for i in "${!size_list[@]}"; do
    size=${size_list[$i]}; variants=${variant_list[$i]:-1}
    for name in "${server_list[@]}"; do
      start_on_free_port "$name" || continue
      deflate_flag=(--deflate)
      case "$name" in *-off) deflate_flag=() ;; esac
      json_file=$OUT/.json
      start_delay=$(awk "BEGIN { print $WARMUP + 0.5 }")
      window=$(awk "BEGIN { w = $DURATION - 0.7; print (w < 0.5 ? 0.5 : w) }")
      taskset -c "$GEN_CPUS" "$LOADTEST" echo --url "ws://127.0.0.1:$port/echo" \
        -c "$CONNECTIONS" --size "$size" --payload json --variants "$variants" --inflight 1 \
        --duration "${DURATION}s" --warmup "${WARMUP}s" --threads 1 --json \
        "${deflate_flag[@]}" > "$json_file" 2> "$OUT/.stderr" &
      gen_pid=$!
      sleep "$start_delay"
      before="$(cpu_ticks "$pid" 2>/dev/null || echo 0 0) $(cpu_ticks "$gen_pid" 2>/dev/null || echo 0 0)"
      sleep "$window"
      after="$(cpu_ticks "$pid" 2>/dev/null || echo 0 0) $(cpu_ticks "$gen_pid" 2>/dev/null || echo 0 0)"
      wait "$gen_pid" 2>/dev/null || true
      json=$(cat "$json_file" 2>/dev/null || true)
      kill -INT "$pid" 2>/dev/null || true; sleep 0.2; kill -9 "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      [ -n "$json" ] || echo "deflate: $name $size: no result: $(head -c 300 "$OUT/.stderr")" >&2
      JSON="$json" python3 - "$name" "$size" "$repeat" "$before" "$after" "$HZ" "$window" \
        <<'EOF' >> "$RESULTS"
import json, os, sys
name, size, repeat, before, after, hz, window = sys.argv[1:]
run = json.loads(os.environ.get("JSON") or "{}")
b, a = [list(map(int, s.split())) for s in (before, after)]
window = float(window)
res = run.get("results", {})
rate = res.get("msgs_per_sec") or 0
msgs = rate * window
cpu_us = (a[0] + a[1] - b[0] - b[1]) / int(hz) * 1e6
gen_us = (a[2] + a[3] - b[2] - b[3]) / int(hz) * 1e6
d = res.get("deflate") or {}
print(json.dumps({"server": name, "size": int(size), "repeat": int(repeat),
    "msgs_per_sec": res.get("msgs_per_sec"),
    "p50_us": (res.get("latency") or {}).get("p50_us"),
    "errors": sum(res.get("errors", {}).values()) if res else None,
    "cpu_us_per_msg": cpu_us / msgs if msgs else None,
    "gen_cpu_us_per_msg": gen_us / msgs if msgs else None,
    "agreed": d.get("agreed"),
    "compressed_received": d.get("compressed_received"),
    "messages_received": d.get("messages_received"),
    "ratio_sent": d.get("ratio_sent"), "ratio_received": d.get("ratio_received")}))
EOF
      echo "deflate: [$repeat/$REPEATS] ${size} B $name: $(tail -1 "$RESULTS")" >&2
    done
  done
done

# The independent client (uWebSockets' load_test), 20 B, client → server compressed.
if [ -n "${UWS_LOAD_TEST:-}" ]; then
  lt_servers=(ringws-uring-ct)
  [ -z "${UWS_DEFLATE_SERVER:-}" ] || lt_servers+=(uws-dedicated-plain)
  for repeat in $(seq "$REPEATS"); do
    for name in "${lt_servers[@]}"; do
      start_on_free_port "$name" || continue
      total=$(awk "BEGIN { print $WARMUP + $DURATION + 1 }")
      window=$(awk "BEGIN { w = $DURATION - 0.7; print (w < 0.5 ? 0.5 : w) }")
      timeout "$total" taskset -c "$GEN_CPUS" stdbuf -oL "$UWS_LOAD_TEST" "$CONNECTIONS" \
        127.0.0.1 "$port" 0 1 20 > "$OUT/.lt" 2>&1 &
      gen_pid=$!
      sleep "$(awk "BEGIN { print $WARMUP + 0.5 }")"
      before="$(cpu_ticks "$pid" 2>/dev/null || echo 0 0) 0 0"
      sleep "$window"
      after="$(cpu_ticks "$pid" 2>/dev/null || echo 0 0) 0 0"
      wait "$gen_pid" 2>/dev/null || true
      kill -INT "$pid" 2>/dev/null || true; sleep 0.2; kill -9 "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      rate=$(awk '/^Msg\/sec/ {print $2}' "$OUT/.lt" | sort -g | awk '{v[NR]=$1} END {
        if (NR == 0) print 0; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2 }')
      errors=$(grep -c 'ERROR\|Closed' "$OUT/.lt" || true)
      JSON="{\"results\":{\"msgs_per_sec\":$rate,\"errors\":{\"load_test\":$errors}}}" \
        python3 - "$name / uws load_test" 20 "$repeat" "$before" "$after" "$HZ" "$window" \
        <<'EOF' >> "$RESULTS"
import json, os, sys
name, size, repeat, before, after, hz, window = sys.argv[1:]
res = json.loads(os.environ["JSON"])["results"]
b, a = [list(map(int, s.split())) for s in (before, after)]
msgs = (res["msgs_per_sec"] or 0) * float(window)
cpu_us = (a[0] + a[1] - b[0] - b[1]) / int(hz) * 1e6
print(json.dumps({"server": name, "size": int(size), "repeat": int(repeat),
    "msgs_per_sec": res["msgs_per_sec"], "p50_us": None,
    "errors": sum(res["errors"].values()), "cpu_us_per_msg": cpu_us / msgs if msgs else None,
    "gen_cpu_us_per_msg": None, "agreed": "permessage-deflate (load_test's offer)",
    "compressed_received": 0, "messages_received": 0,
    "ratio_sent": None, "ratio_received": None}))
EOF
      echo "deflate: [$repeat/$REPEATS] 20 B $name / uws load_test: $(tail -1 "$RESULTS")" >&2
    done
  done
fi

python3 - "$RESULTS" <<'EOF' | tee "$OUT/summary.md"
import json, statistics, sys
from collections import defaultdict
runs, order = defaultdict(list), []
for line in open(sys.argv[1]):
    r = json.loads(line)
    k = (r["size"], r["server"])
    if k not in runs:
        order.append(k)
    runs[k].append(r)
def med(k, f):
    v = [r[f] for r in runs[k] if r.get(f) is not None]
    return statistics.median(v) if v else None
def fmt(v, d=2):
    return "-" if v is None else (f"{v:,.0f}" if v >= 1000 else f"{v:.{d}f}")
print("| server | size B | msgs/s | server CPU µs/msg | gen CPU µs/msg | ratio server→client | ratio client→server | compressed echoes | errors | agreed |")
print("|---|---|---|---|---|---|---|---|---|---|")
for k in sorted(order, key=lambda k: (k[0], order.index(k))):
    rs = runs[k]
    comp = sum(r["compressed_received"] or 0 for r in rs)
    recv = sum(r["messages_received"] or 0 for r in rs)
    print(f"| {k[1]} | {k[0]} | {fmt(med(k, 'msgs_per_sec'))} | {fmt(med(k, 'cpu_us_per_msg'))} "
          f"| {fmt(med(k, 'gen_cpu_us_per_msg'))} | {fmt(med(k, 'ratio_received'), 3)} "
          f"| {fmt(med(k, 'ratio_sent'), 3)} | {comp}/{recv} | {sum(r['errors'] or 0 for r in rs)} "
          f"| {rs[0]['agreed'] or 'off'} |")
EOF
echo "deflate: results in $OUT" >&2
