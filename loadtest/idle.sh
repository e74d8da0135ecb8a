#!/usr/bin/env bash
# Idle-connection memory: for each server and connection count, starts a fresh server,
# opens and holds N WebSocket connections with `ringws-loadtest idle --server-pid`, and
# records the server's RSS growth per connection. Raises the open-files limit first
# (the server inherits it); N past ~28k needs a wider net.ipv4.ip_local_port_range,
# since every connection comes from 127.0.0.1 to one port.
#
# Usage: loadtest/idle.sh [options]
#   --servers LIST      compare.sh server names (default ringws-uring,ringws-epoll)
#   --counts LIST       connection counts (default 10000,50000)
#   --shards N          server shards/threads (default 1)
#   --server-cpus LIST  taskset list for the server (default 0)
#   --gen-cpus LIST     taskset list for the generator (default: the other cores)
#   --bin-dir DIR       prebuilt binaries (see compare.sh); default: cargo build here
#   --out DIR           results directory (default target/idle/DATE)
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=ringws-uring,ringws-epoll
COUNTS=10000,50000
SHARDS=1
SERVER_CPUS=0
GEN_CPUS=""
BIN=""
OUT="target/idle/$(date +%Y%m%d-%H%M%S)"
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) SERVERS=$2; shift 2 ;;
    --counts) COUNTS=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
    --server-cpus) SERVER_CPUS=$2; shift 2 ;;
    --gen-cpus) GEN_CPUS=$2; shift 2 ;;
    --bin-dir) BIN=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "idle.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$GEN_CPUS" ] || GEN_CPUS="1-$(($(nproc) - 1))"
if [ -z "$BIN" ]; then
  cargo build --release -q --bin ringws
  cargo build --release -q -p ringws-loadtest -p ringws-peers
  BIN=${CARGO_TARGET_DIR:-target}/release
fi
# shellcheck source=loadtest/servers.sh
. loadtest/servers.sh
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "open files: $(ulimit -n); local ports: $(cat /proc/sys/net/ipv4/ip_local_port_range | tr '\t' '-')"
  echo "servers on CPUs $SERVER_CPUS ($SHARDS shard(s)); generator on CPUs $GEN_CPUS"
} | tee "$OUT/machine.txt" >&2

gen_threads=$(taskset -c "$GEN_CPUS" nproc)
IFS=, read -ra server_list <<< "$SERVERS"
IFS=, read -ra count_list <<< "$COUNTS"
for n in "${count_list[@]}"; do
  for name in "${server_list[@]}"; do
    port=$(port_of "$name")
    pid=$(start_server "$name" "$port")
    if ! wait_port "$port"; then
      echo "idle: $name did not start, skipped" >&2; kill "$pid" 2>/dev/null || true; continue
    fi
    json=$(taskset -c "$GEN_CPUS" "$BIN/ringws-loadtest" idle --url "ws://127.0.0.1:$port/echo" \
      -c "$n" --server-pid "$pid" --duration 3s --open-timeout 120s --threads "$gen_threads" \
      --json) || true
    kill -INT "$pid" 2>/dev/null || true; sleep 0.5; kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    python3 -c '
import json, sys
name, n = sys.argv[1], int(sys.argv[2])
run = json.loads(sys.stdin.read() or "{}")
print(json.dumps({"server": name, "connections": n, "results": run.get("results")}))' \
      "$name" "$n" <<< "$json" | tee -a "$RESULTS" >&2
  done
done
echo "idle: results in $RESULTS" >&2
