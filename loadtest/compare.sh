#!/usr/bin/env bash
# Side-by-side echo benchmark: ringws (io_uring, epoll), the frame-reflector floor and
# peer servers, with identical settings, interleaved repeats, server and generator on
# separate cores. Prints a table of medians with server CPU per message (user and
# kernel, from /proc) and syscalls per message (perf, when available); writes every raw
# result to $OUT/results.jsonl and the table to $OUT/summary.md.
#
# Usage: loadtest/compare.sh [options]
#   --servers LIST      comma list from: ringws-uring,ringws-epoll,floor-uring,floor-epoll,
#                       tungstenite,fastwebsockets,uws-js,uws   (default: all available)
#   --scenarios LIST    comma list of SIZExINFLIGHT (default 20x1,16384x1,20x16,65536x4)
#   --connections N     connections per run (default 100)
#   --duration S        measured seconds per run (default 5)
#   --repeats N         interleaved repeats (default 3)
#   --shards N          server shards/threads (default 1)
#   --server-cpus LIST  taskset list for servers (default 0)
#   --gen-cpus LIST     taskset list for the generator (default: the other cores)
#   --gen-threads N     generator threads (default: number of generator cores)
#   --out DIR           results directory (default target/compare/DATE)
# Peers:
#   tungstenite, fastwebsockets, floor-*: built from this workspace (cargo build --release).
#   uws-js:  uWebSockets.js, installed from the npm registry into target/compare/uws-js
#            (@trufflesuite/uws-js-unofficial 20.30, native addon loaded directly).
#   uws:     set UWS_ECHO_SERVER to a uWebSockets examples/EchoServer binary you built
#            (it listens on port 9001); skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=""
SCENARIOS="20x1,16384x1,20x16,65536x4"
CONNECTIONS=100
DURATION=5
REPEATS=3
SHARDS=1
SERVER_CPUS=0
GEN_CPUS=""
GEN_THREADS=""
OUT="target/compare/$(date +%Y%m%d-%H%M%S)"
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) SERVERS=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --server-cpus) SERVER_CPUS=$2; shift 2 ;;
    --gen-cpus) GEN_CPUS=$2; shift 2 ;;
    --gen-threads) GEN_THREADS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
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

echo "compare: building release binaries" >&2
cargo build --release -q -p ringws --bin ringws -p ringws-loadtest -p ringws-peers
BIN=target/release
LOADTEST=$BIN/ringws-loadtest

UWSJS_DIR=target/compare/uws-js
have_uwsjs() {
  command -v node >/dev/null && command -v npm >/dev/null || return 1
  if [ ! -f "$UWSJS_DIR/node_modules/@trufflesuite/uws-js-unofficial/package.json" ]; then
    mkdir -p "$UWSJS_DIR"
    (cd "$UWSJS_DIR" && npm init -y >/dev/null 2>&1 &&
      timeout 300 npm install --no-audit --no-fund --silent \
        @trufflesuite/uws-js-unofficial@20.30.0-unofficial.0 >/dev/null 2>&1) || return 1
  fi
  cp loadtest/peers/uws-echo.js "$UWSJS_DIR/echo.js"
  node -e "require('$PWD/$UWSJS_DIR/echo.js').check()" 2>/dev/null
}

if [ -z "$SERVERS" ]; then
  SERVERS="ringws-uring,ringws-epoll,floor-uring,floor-epoll,tungstenite,fastwebsockets"
  if have_uwsjs; then SERVERS="$SERVERS,uws-js"; else echo "compare: uws-js unavailable, skipped" >&2; fi
  if [ -n "${UWS_ECHO_SERVER:-}" ]; then SERVERS="$SERVERS,uws"; else echo "compare: UWS_ECHO_SERVER unset, uws skipped" >&2; fi
fi

# Starts server $1 on port $2 pinned to SERVER_CPUS; prints its PID.
start_server() {
  local name=$1 port=$2 addr=127.0.0.1:$2
  case "$name" in
    ringws-uring) exec taskset -c "$SERVER_CPUS" $BIN/ringws serve --bind "$addr" --shards "$SHARDS" --backend uring ;;
    ringws-epoll) exec taskset -c "$SERVER_CPUS" $BIN/ringws serve --bind "$addr" --shards "$SHARDS" --backend epoll ;;
    floor-uring) exec env RINGWS_BACKEND=uring taskset -c "$SERVER_CPUS" $BIN/peer-floor --bind "$addr" --threads "$SHARDS" ;;
    floor-epoll) exec env RINGWS_BACKEND=epoll taskset -c "$SERVER_CPUS" $BIN/peer-floor --bind "$addr" --threads "$SHARDS" ;;
    tungstenite) exec taskset -c "$SERVER_CPUS" $BIN/peer-tungstenite --bind "$addr" --threads "$SHARDS" ;;
    fastwebsockets) exec taskset -c "$SERVER_CPUS" $BIN/peer-fastwebsockets --bind "$addr" --threads "$SHARDS" ;;
    uws-js) exec env PORT=$port taskset -c "$SERVER_CPUS" node "$UWSJS_DIR/echo.js" ;;
    uws) exec taskset -c "$SERVER_CPUS" "$UWS_ECHO_SERVER" ;;
    *) echo "compare: unknown server $name" >&2; return 1 ;;
  esac >/dev/null 2>&1 &
  # Each branch execs, so $! is the server itself (perf and /proc read its PID).
  echo $!
}

port_of() { if [ "$1" = uws ]; then echo 9001; else echo $((20000 + RANDOM % 20000)); fi; }

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# utime+stime of a process, in clock ticks, as "user system".
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $CORES cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "rustc: $(rustc --version)"
  echo "node: $(node --version 2>/dev/null || echo none)"
  echo "servers on CPUs $SERVER_CPUS ($SHARDS shard(s)/thread(s)); generator on CPUs $GEN_CPUS ($GEN_THREADS threads)"
  echo "connections $CONNECTIONS, $DURATION s per run, $REPEATS interleaved repeats"
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
      # The generator opens its connections and warms up for 1 s; CPU and syscalls are
      # sampled from then until it stops, so they cover the measured window only.
      before_file=$OUT/.before
      perf_out=$OUT/perf-$name-$scenario-$repeat.txt
      (
        sleep 1
        cpu_ticks "$pid" > "$before_file"
        if [ "$PERF" = 1 ]; then
          exec perf stat -x, -e raw_syscalls:sys_enter -p "$pid" -o "$perf_out" -- sleep "$DURATION"
        fi
      ) &
      sampler=$!
      json=$(taskset -c "$GEN_CPUS" "$LOADTEST" echo --url "ws://127.0.0.1:$port/echo" \
        -c "$CONNECTIONS" --size "$size" --inflight "$inflight" --duration "${DURATION}s" \
        --warmup 1s --threads "$GEN_THREADS" --json) || true
      after=$(cpu_ticks "$pid")
      wait "$sampler" 2>/dev/null || true
      before=$(cat "$before_file" 2>/dev/null || echo "$after")
      kill -INT "$pid" 2>/dev/null || true; sleep 0.2; kill -9 "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      syscalls=null
      if [ "$PERF" = 1 ] && [ -f "$perf_out" ]; then
        syscalls=$(awk -F, '/raw_syscalls/ {print $1}' "$perf_out" | head -1)
        [ -n "$syscalls" ] && [ "$syscalls" != "<not counted>" ] || syscalls=null
      fi
      python3 - "$name" "$scenario" "$repeat" "$before" "$after" "$HZ" "$syscalls" <<EOF >> "$RESULTS"
import json, sys
name, scenario, repeat, before, after, hz, syscalls = sys.argv[1:]
run = json.loads('''$json''' or "{}")
b, a = [list(map(int, s.split())) for s in (before, after)]
results = run.get("results", {})
msgs = results.get("messages", 0)
user_us = (a[0] - b[0]) / int(hz) * 1e6
sys_us = (a[1] - b[1]) / int(hz) * 1e6
per = lambda x: x / msgs if msgs else None
print(json.dumps({"server": name, "scenario": scenario, "repeat": int(repeat),
    "msgs_per_sec": results.get("msgs_per_sec"), "latency": results.get("latency"),
    "errors": sum(results.get("errors", {}).values()) if results else None,
    "user_us_per_msg": per(user_us), "sys_us_per_msg": per(sys_us),
    "cpu_us_per_msg": per(user_us + sys_us),
    "syscalls_per_msg": (int(syscalls) / msgs) if syscalls != "null" and msgs else None}))
EOF
      echo "compare: [$repeat/$REPEATS] $scenario $name: $(tail -1 "$RESULTS" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("%.0f msgs/s, %.2f us cpu/msg" % (r["msgs_per_sec"] or 0, r["cpu_us_per_msg"] or 0))')" >&2
    done
  done
done

python3 loadtest/compare_report.py "$RESULTS" | tee "$OUT/summary.md"
echo "compare: results in $OUT" >&2
