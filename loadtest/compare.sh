#!/usr/bin/env bash
# Side-by-side echo benchmark: ringws (io_uring, epoll), the frame-reflector floor and
# peer servers, with identical settings, interleaved repeats, server and generator on
# separate cores. Prints a table of medians with server CPU per message (user and
# kernel, from /proc) and syscalls per message (perf, when available); writes every raw
# result to $OUT/results.jsonl and the table to $OUT/summary.md.
#
# Usage: loadtest/compare.sh [options]
#   --servers LIST      comma list from: ringws-uring,ringws-epoll,floor-uring,floor-epoll,
#                       tungstenite,fastwebsockets,adapter,uws-js,uws
#                       (default: all available but adapter; loadtest/adapter.sh runs it)
#   --scenarios LIST    comma list of SIZExINFLIGHT (default 20x1,16384x1,20x16,65536x4)
#   --connections N     connections per run (default 100)
#   --duration S        measured seconds per run (default 5)
#   --warmup S          seconds between the last connection open and the measuring
#                       (default 1; CPU sampling starts WARMUP + 0.5 s after start, so
#                       raise it when opening the connections takes longer than 0.5 s)
#   --repeats N         interleaved repeats (default 3)
#   --shards N          server shards/threads (default 1)
#   --server-cpus LIST  taskset list for servers (default 0)
#   --gen-cpus LIST     taskset list for the generator (default: the other cores)
#   --gen-threads N     generator threads (default: number of generator cores)
#   --out DIR           results directory (default target/compare/DATE)
#   --bin-dir DIR       use the ringws, ringws-loadtest and peer binaries in DIR as they
#                       are (no cargo build; for a machine without a toolchain)
# Peers:
#   tungstenite, fastwebsockets, floor-*: built from this workspace (cargo build --release).
#   uws-js:  uWebSockets.js, installed from the npm registry into target/compare/uws-js
#            (@trufflesuite/uws-js-unofficial 20.30, native addon loaded directly).
#   uws:     set UWS_ECHO_SERVER to a uWebSockets examples/EchoServer binary you built
#            (it listens on port 9001); skipped otherwise.
#   before-uring, before-epoll: set RINGWS_BEFORE to another ringws binary (an earlier
#            commit's release build) for before/after rows in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=""
SCENARIOS="20x1,16384x1,20x16,65536x4"
CONNECTIONS=100
DURATION=5
WARMUP=1
REPEATS=3
SHARDS=1
SERVER_CPUS=0
GEN_CPUS=""
GEN_THREADS=""
OUT="target/compare/$(date +%Y%m%d-%H%M%S)"
BIN=""
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) SERVERS=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --server-cpus) SERVER_CPUS=$2; shift 2 ;;
    --gen-cpus) GEN_CPUS=$2; shift 2 ;;
    --gen-threads) GEN_THREADS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --bin-dir) BIN=$2; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

CORES=$(nproc)
if [ -z "$GEN_CPUS" ]; then
  GEN_CPUS=$(python3 - "$SERVER_CPUS" "$CORES" <<'EOF'
import sys
def expand(spec):
    out = set()
    for part in spec.split(","):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out
server, cores = expand(sys.argv[1]), int(sys.argv[2])
rest = [c for c in range(cores) if c not in server] or list(range(cores))
print(",".join(map(str, rest)))
EOF
)
fi
[ -n "$GEN_THREADS" ] || GEN_THREADS=$(echo "$GEN_CPUS" | tr ',' '\n' | python3 -c '
import sys
n = 0
for part in sys.stdin.read().split():
    a, _, b = part.partition("-"); n += int(b or a) - int(a) + 1
print(n)')

if [ -z "$BIN" ]; then
  echo "compare: building release binaries" >&2
  # Separate calls: `--bin ringws` would filter the other packages' binaries out.
  cargo build --release -q --bin ringws
  cargo build --release -q -p ringws-loadtest -p ringws-peers
  BIN=${CARGO_TARGET_DIR:-target}/release
fi
LOADTEST=$BIN/ringws-loadtest
# shellcheck source=loadtest/servers.sh
. loadtest/servers.sh

if [ -z "$SERVERS" ]; then
  SERVERS="ringws-uring,ringws-epoll,floor-uring,floor-epoll,tungstenite,fastwebsockets"
  if have_uwsjs; then SERVERS="$SERVERS,uws-js"; else echo "compare: uws-js unavailable, skipped" >&2; fi
  if [ -n "${UWS_ECHO_SERVER:-}" ]; then SERVERS="$SERVERS,uws"; else echo "compare: UWS_ECHO_SERVER unset, uws skipped" >&2; fi
  if [ -n "${RINGWS_BEFORE:-}" ]; then SERVERS="$SERVERS,before-uring,before-epoll"; fi
fi

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $CORES cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "rustc: $(rustc --version 2>/dev/null || echo "none here; binaries from $BIN")"
  echo "topology (CPU,core,socket): $(lscpu -p=CPU,CORE,SOCKET 2>/dev/null | grep -v '^#' | tr '\n' ' ')"
  echo "node: $(node --version 2>/dev/null || echo none)"
  echo "servers on CPUs $SERVER_CPUS ($SHARDS shard(s)/thread(s)); generator on CPUs $GEN_CPUS ($GEN_THREADS threads)"
  echo "connections $CONNECTIONS, $WARMUP s warmup, $DURATION s per run, $REPEATS interleaved repeats"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2
HZ=$(getconf CLK_TCK)
PERF=0
if perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then PERF=1; fi

IFS=, read -ra server_list <<< "$SERVERS"
IFS=, read -ra scenario_list <<< "$SCENARIOS"
for repeat in $(seq "$REPEATS"); do
  for scenario in "${scenario_list[@]}"; do
    size=${scenario%x*}; inflight=${scenario#*x}
    for name in "${server_list[@]}"; do
      port=$(port_of "$name")
      pid=$(start_server "$name" "$port")
      if ! wait_port "$port"; then
        echo "compare: $name did not start, skipped" >&2; kill "$pid" 2>/dev/null || true; continue
      fi
      # The generator opens its connections, warms up, then measures for DURATION. Server
      # and generator CPU (and the server's syscalls) are sampled over one window inside
      # the measured time, from WARMUP + 0.5 s to WARMUP + DURATION - 0.2 s, as rates:
      # CPU per message = CPU rate / message rate, so opening and closing never count.
      json_file=$OUT/.json
      # Computed before the generator starts: nothing slow may run between its start and
      # the first sample.
      start_delay=$(awk "BEGIN { print $WARMUP + 0.5 }")
      window=$(awk "BEGIN { w = $DURATION - 0.7; print (w < 0.5 ? 0.5 : w) }")
      taskset -c "$GEN_CPUS" "$LOADTEST" echo --url "ws://127.0.0.1:$port/echo" \
        -c "$CONNECTIONS" --size "$size" --inflight "$inflight" --duration "${DURATION}s" \
        --warmup "${WARMUP}s" --threads "$GEN_THREADS" --json > "$json_file" &
      gen_pid=$!
      perf_out=$OUT/perf-$name-$scenario-$repeat.txt
      sleep "$start_delay"
      before="$(cpu_ticks "$pid") $(cpu_ticks "$gen_pid" 2>/dev/null || echo 0 0)"
      perf_pid=""
      if [ "$PERF" = 1 ]; then
        # Counts over its own `sleep`, about the same window (syscalls/msg is a rate too).
        perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$perf_out" -- sleep "$window" &
        perf_pid=$!
      fi
      sleep "$window"
      after="$(cpu_ticks "$pid") $(cpu_ticks "$gen_pid" 2>/dev/null || echo 0 0)"
      [ -z "$perf_pid" ] || wait "$perf_pid" 2>/dev/null || true
      wait "$gen_pid" 2>/dev/null || true
      json=$(cat "$json_file" 2>/dev/null || true)
      kill -INT "$pid" 2>/dev/null || true; sleep 0.2; kill -9 "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      syscalls=null
      if [ "$PERF" = 1 ] && [ -f "$perf_out" ]; then
        syscalls=$(awk -F, '/raw_syscalls/ {print $1}' "$perf_out" | head -1)
        [ -n "$syscalls" ] && [ "$syscalls" != "<not counted>" ] || syscalls=null
      fi
      python3 - "$name" "$scenario" "$repeat" "$before" "$after" "$HZ" "$syscalls" "$window" \
        "$GEN_THREADS" <<EOF >> "$RESULTS"
import json, sys
name, scenario, repeat, before, after, hz, syscalls, window, gen_threads = sys.argv[1:]
run = json.loads('''$json''' or "{}")
b, a = [list(map(int, s.split())) for s in (before, after)]
window = float(window)
results = run.get("results", {})
rate = results.get("msgs_per_sec") or 0
msgs = rate * window  # messages in the sampling window, at the measured rate
user_us = (a[0] - b[0]) / int(hz) * 1e6
sys_us = (a[1] - b[1]) / int(hz) * 1e6
gen_cpu_s = (a[2] + a[3] - b[2] - b[3]) / int(hz)
per = lambda x: x / msgs if msgs else None
print(json.dumps({"server": name, "scenario": scenario, "repeat": int(repeat),
    "msgs_per_sec": results.get("msgs_per_sec"), "latency": results.get("latency"),
    "errors": sum(results.get("errors", {}).values()) if results else None,
    "user_us_per_msg": per(user_us), "sys_us_per_msg": per(sys_us),
    "cpu_us_per_msg": per(user_us + sys_us),
    "syscalls_per_msg": (int(syscalls) / msgs) if syscalls != "null" and msgs else None,
    "server_cores_busy": (user_us + sys_us) / 1e6 / window,
    "generator_cores_busy": gen_cpu_s / window, "generator_threads": int(gen_threads)}))
EOF
      echo "compare: [$repeat/$REPEATS] $scenario $name: $(tail -1 "$RESULTS" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("%.0f msgs/s, %.2f us cpu/msg, server %.2f cores, generator %.2f of %d cores" % (
    r["msgs_per_sec"] or 0, r["cpu_us_per_msg"] or 0, r["server_cores_busy"],
    r["generator_cores_busy"], r["generator_threads"]))')" >&2
    done
  done
done

python3 loadtest/compare_report.py "$RESULTS" | tee "$OUT/summary.md"
echo "compare: results in $OUT" >&2
