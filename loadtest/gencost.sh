#!/usr/bin/env bash
# Generator cost of `ringws-loadtest echo`: CPU µs and syscalls per echoed message of the
# generator process itself (whole run, --warmup 0s, so every message it sent is counted
# except the few in flight at the deadline). Server and generator on separate CPUs.
#   loadtest/gencost.sh [BIN_DIR] [INFLIGHT...]      (default: target/release, 16 1)
# Env: PORT (9301), CONNS (100), SIZE (20), DURATION (5s), SERVER_CPU (0), GEN_CPU (1).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-${CARGO_TARGET_DIR:-target}/release}; shift || true
if ! perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
  echo "gencost.sh: needs perf with the raw_syscalls tracepoint (linux-perf; root or kernel.perf_event_paranoid <= 1)" >&2
  exit 2
fi
if [ "$BIN" = "${CARGO_TARGET_DIR:-target}/release" ]; then
  # Separate calls: `--bin ringws` would filter the generator out of one.
  cargo build --release -q --bin ringws
  cargo build --release -q -p ringws-loadtest
fi
INFLIGHTS=${*:-16 1}
PORT=${PORT:-9301}; CONNS=${CONNS:-100}; SIZE=${SIZE:-20}; DURATION=${DURATION:-5s}
SERVER_CPU=${SERVER_CPU:-0}; GEN_CPU=${GEN_CPU:-1}
SERVER_BIN=${SERVER_BIN:-$BIN/ringws}
# shellcheck source=loadtest/servers.sh
. loadtest/servers.sh
srv=""
tmp=$(mktemp -d); trap 'if [ -n "$srv" ]; then kill "$srv" 2>/dev/null; fi; rm -rf "$tmp"' EXIT
taskset -c "$SERVER_CPU" "$SERVER_BIN" serve --bind "127.0.0.1:$PORT" --shards 1 >/dev/null 2>&1 &
srv=$!
wait_port "$PORT" || { echo "gencost.sh: the server did not start" >&2; exit 1; }
for inflight in $INFLIGHTS; do
  perf stat -x, -e task-clock,raw_syscalls:sys_enter -o "$tmp/perf" -- \
    taskset -c "$GEN_CPU" "$BIN/ringws-loadtest" echo --url "ws://127.0.0.1:$PORT/echo" \
    -c "$CONNS" --inflight "$inflight" --size "$SIZE" --duration "$DURATION" --warmup 0s \
    --threads 1 --json >"$tmp/json"
  python3 - "$tmp/perf" "$tmp/json" "$inflight" <<'PY'
import json, sys
perf, res, inflight = sys.argv[1:]
ms = sc = None
for line in open(perf):
    f = line.strip().split(",")
    if len(f) > 2 and f[2] == "task-clock": ms = float(f[0])
    if len(f) > 2 and f[2].startswith("raw_syscalls"): sc = int(f[0])
r = json.load(open(res))["results"]
n = r["messages"]
print("inflight %s: %d msgs, %.0f msgs/s, p50 %s us, generator %.2f us cpu/msg, %.3f syscalls/msg, errors %d"
      % (inflight, n, r["msgs_per_sec"], r["latency"].get("p50_us"), ms * 1e3 / n, sc / n,
         sum(r["errors"].values())))
PY
done
