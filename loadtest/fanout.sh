#!/usr/bin/env bash
# Pub/sub fan-out benchmark, three parts, in one run, server and generator on separate
# cores; every raw result goes to $OUT/results.jsonl, the tables to $OUT/summary.md.
#
# 1. broadcast: uWebSockets' benchmarks/broadcast_test (N clients each send one 20-byte
#    binary message, then wait until each has received all N: N^2 deliveries per
#    iteration; it prints iterations/s every 4 s) against one-topic broadcast servers:
#    ringws `serve` /broadcast (--shards 1 io_uring, --shards 1 epoll, all shards), the
#    uWS C++ server (app.publish to all, the sender included) and uWebSockets.js
#    (loadtest/peers/uws-broadcast.js). Interleaved repeats. Per run: the first 4 s
#    report (connecting, warming) is skipped, the next WINDOWS reports are the measured
#    window; deliveries/s = mean iterations/s x N^2; the server's and broadcast_test's CPU
#    (utime + stime from /proc/PID/stat) are read at the window's start and end;
#    deliveries per server core-second = deliveries/s / server cores busy.
# 2. fanout: `ringws-loadtest fanout` against ringws /pubsub (--shards 1, io_uring):
#    1,000 and 10,000 subscribers on one topic, 1,000 topics x 10 subscribers.
# 3. cross-node: a redis-server started here (--save '' --appendonly no, killed by PID),
#    two `ringws serve --redis` nodes (--redis-mode pubsub, then streams); fanout with
#    subscribers on node A, publishers on node B, against the same run with publishers
#    on node A (same process): the added latency of the Redis hop.
#
# Usage: loadtest/fanout.sh [options]
#   --parts LIST        comma list from broadcast,fanout,cross (default: all three)
#   --servers LIST      broadcast servers, from ringws-uring,ringws-epoll,ringws-all,uws,
#                       uws-js (default: all available)
#   --clients LIST      broadcast_test client counts (default 100,500)
#   --windows N         measured 4-second reports per broadcast run (default 3)
#   --repeats N         interleaved repeats (default 3)
#   --fanout-duration S measured seconds per fanout run (default 5)
#   --server-cpus LIST  taskset list for the servers (default 0)
#   --gen-cpus LIST     taskset list for the generators (default 1)
#   --all-shards N      shards of the ringws-all row (default: nproc)
#   --all-cpus LIST     taskset list of the ringws-all row (default: every CPU, so on a
#                       small machine its shards share the generator's cores)
#   --out DIR           results directory (default target/fanout/DATE)
#   --bin-dir DIR       ringws and ringws-loadtest from DIR (default: cargo build --release)
# Peers (built outside the repository, never copied into it):
#   BROADCAST_TEST      the broadcast_test binary (default /tmp/uws/broadcast_test)
#   UWS_BROADCAST_SERVER the uWS C++ one-topic server (default /tmp/uws/broadcast_server;
#                       takes the port as its argument)
#   --build-uws DIR     first build both into /tmp/uws from DIR, a uWebSockets checkout
#                       with its uSockets submodule (see "uWS build" below)
#   uws-js: installed from the npm registry into target/compare/uws-js like compare.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

PARTS=broadcast,fanout,cross
SERVERS=""
CLIENTS=100,500
WINDOWS=3
REPEATS=3
FANOUT_DURATION=5
SERVER_CPUS=0
GEN_CPUS=1
ALL_SHARDS=$(nproc)
ALL_CPUS=0-$(($(nproc) - 1))
OUT="target/fanout/$(date +%Y%m%d-%H%M%S)"
BIN=""
BUILD_UWS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --parts) PARTS=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --clients) CLIENTS=$2; shift 2 ;;
    --windows) WINDOWS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --fanout-duration) FANOUT_DURATION=$2; shift 2 ;;
    --server-cpus) SERVER_CPUS=$2; shift 2 ;;
    --gen-cpus) GEN_CPUS=$2; shift 2 ;;
    --all-shards) ALL_SHARDS=$2; shift 2 ;;
    --all-cpus) ALL_CPUS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --bin-dir) BIN=$2; shift 2 ;;
    --build-uws) BUILD_UWS=$2; shift 2 ;;
    -h|--help) sed -n '2,43p' "$0"; exit 0 ;;
    *) echo "fanout.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
BROADCAST_TEST=${BROADCAST_TEST:-/tmp/uws/broadcast_test}
UWS_BROADCAST_SERVER=${UWS_BROADCAST_SERVER:-/tmp/uws/broadcast_server}

# uWS build: the one-topic server is ~20 lines of C++ written here; broadcast_test gets
# one change, an optional 5th argument for the request path (upstream always asks for
# "/", and ringws serves the broadcast at /broadcast), and line-buffered stdout.
build_uws() {
  local src=$1 dst=/tmp/uws
  mkdir -p "$dst"
  cat > "$dst/BroadcastServer.cpp" <<'CPP'
#include "App.h"
#include <cstdlib>
#include <iostream>
int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 9001;
    struct PerSocketData {};
    uWS::App *app = new uWS::App();
    app->ws<PerSocketData>("/*", {
        .compression = uWS::DISABLED, .maxPayloadLength = 16 * 1024 * 1024,
        .idleTimeout = 0, .maxBackpressure = 64 * 1024 * 1024,
        .closeOnBackpressureLimit = false, .resetIdleTimeoutOnSend = false,
        .sendPingsAutomatically = false,
        .open = [](auto *ws) { ws->subscribe("broadcast"); },
        .message = [app](auto *, std::string_view message, uWS::OpCode opCode) {
            app->publish("broadcast", message, opCode, false); },
    }).listen("127.0.0.1", port, [port](auto *ls) {
        if (ls) std::cout << "uWS broadcast server on 127.0.0.1:" << port << std::endl;
        else { std::cerr << "listen failed" << std::endl; exit(1); } }).run();
}
CPP
  make -C "$src/uSockets" -j"$(nproc)" >/dev/null
  g++ -march=native -O3 -flto=auto -std=c++2b -DUWS_NO_ZLIB -I"$src/src" -I"$src/uSockets/src" \
    "$dst/BroadcastServer.cpp" "$src/uSockets/uSockets.a" -o "$dst/broadcast_server" 2>/dev/null
  python3 - "$src/benchmarks/broadcast_test.c" "$dst/broadcast_test_path.c" <<'PY'
import sys
s = open(sys.argv[1]).read()
a = s.index('char request[] = "GET / HTTP/1.1\\r\\n"'); b = s.index('char *host;')
s = s[:a] + 'char request[1024];\nint request_length;\n' + s[b:]
s = s.replace('sizeof(request) - 1', 'request_length')
s = s.replace('if (argc != 5) {', 'if (argc != 5 && argc != 6) {')
s = s.replace('    port = atoi(argv[3]);', '''    request_length = snprintf(request, sizeof(request), "GET %s HTTP/1.1\\r\\nUpgrade: websocket\\r\\n"
        "Connection: Upgrade\\r\\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\\r\\n"
        "Host: server.example.com\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n", argc == 6 ? argv[5] : "/");
    setvbuf(stdout, NULL, _IOLBF, 0);
    port = atoi(argv[3]);''')
open(sys.argv[2], 'w').write(s)
PY
  gcc -O3 -march=native -flto -DLIBUS_NO_SSL -I"$src/uSockets/src" "$src"/uSockets/src/*.c \
    "$src"/uSockets/src/eventing/*.c "$src"/uSockets/src/crypto/*.c "$dst/broadcast_test_path.c" \
    -o "$dst/broadcast_test"
  echo "fanout: built $dst/broadcast_server and $dst/broadcast_test" >&2
}
[ -z "$BUILD_UWS" ] || build_uws "$BUILD_UWS"

if [ -z "$BIN" ]; then
  echo "fanout: building release binaries" >&2
  cargo build --release -q --bin ringws
  cargo build --release -q -p ringws-loadtest
  BIN=${CARGO_TARGET_DIR:-target}/release
fi
LOADTEST=$BIN/ringws-loadtest
# have_uwsjs, wait_port, cpu_ticks.
# shellcheck source=loadtest/servers.sh
. loadtest/servers.sh
# 10,000 subscribers + the servers' sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

has_part() { [[ ",$PARTS," == *",$1,"* ]]; }
if [ -z "$SERVERS" ]; then
  SERVERS="ringws-uring,ringws-epoll,ringws-all"
  if [ -x "$UWS_BROADCAST_SERVER" ]; then SERVERS="uws,$SERVERS"; else echo "fanout: $UWS_BROADCAST_SERVER missing, uws skipped" >&2; fi
  if have_uwsjs; then SERVERS="$SERVERS,uws-js"; else echo "fanout: uws-js unavailable, skipped" >&2; fi
fi
if [[ ",$SERVERS," == *",uws-js,"* ]]; then
  have_uwsjs || { echo "fanout: uws-js unavailable" >&2; exit 1; }
  cp loadtest/peers/uws-broadcast.js "$UWSJS_DIR/broadcast.js"
fi
if has_part broadcast && [ ! -x "$BROADCAST_TEST" ]; then
  echo "fanout: $BROADCAST_TEST missing (build it: --build-uws DIR); broadcast part skipped" >&2
  PARTS=${PARTS//broadcast/}
fi

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
HZ=$(getconf CLK_TCK)
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host: $(uname -srm), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "topology (CPU,core,socket): $(lscpu -p=CPU,CORE,SOCKET 2>/dev/null | grep -v '^#' | tr '\n' ' ')"
  echo "rustc: $(rustc --version 2>/dev/null || echo none)"
  echo "node: $(node --version 2>/dev/null || echo none); redis: $(redis-server --version 2>/dev/null | awk '{print $3}' || echo none)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other jobs on this machine count in it)"
  echo "servers on CPUs $SERVER_CPUS; generators on CPUs $GEN_CPUS; ringws-all = $ALL_SHARDS shards on CPUs $ALL_CPUS"
  echo "broadcast: clients $CLIENTS, $WINDOWS x 4 s measured after the first report, $REPEATS interleaved repeats"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# Starts broadcast server $1 on port $2 pinned to SERVER_CPUS; prints its PID.
start_broadcast() {
  local name=$1 port=$2 addr=127.0.0.1:$2
  case "$name" in
    ringws-uring) exec taskset -c "$SERVER_CPUS" "$BIN/ringws" serve --bind "$addr" --shards 1 --backend uring ;;
    ringws-epoll) exec env RINGWS_BACKEND=epoll taskset -c "$SERVER_CPUS" "$BIN/ringws" serve --bind "$addr" --shards 1 --backend epoll ;;
    ringws-all) exec taskset -c "$ALL_CPUS" "$BIN/ringws" serve --bind "$addr" --shards "$ALL_SHARDS" --backend uring ;;
    uws) exec taskset -c "$SERVER_CPUS" "$UWS_BROADCAST_SERVER" "$port" ;;
    uws-js) exec env PORT="$port" taskset -c "$SERVER_CPUS" node "$UWSJS_DIR/broadcast.js" ;;
    *) echo "fanout: unknown server $name" >&2; return 1 ;;
  esac >/dev/null 2>&1 &
  echo $!
}

# A port in 10000..29999 (below the ephemeral range) that nothing listens on.
pick_port() {
  local p
  for _ in $(seq 50); do
    p=$((10000 + RANDOM % 20000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
  done
  echo "$p"
}

stop() { kill -INT "$1" 2>/dev/null || true; sleep 0.3; kill -9 "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
now() { date +%s.%N; }

# One broadcast_test run: server $1, $2 clients.
broadcast_run() {
  local name=$1 clients=$2 repeat=$3 port pid bt log t0 t1 c0 c1 g0 g1 lines
  port=$(pick_port)
  pid=$(start_broadcast "$name" "$port")
  if ! wait_port "$port"; then echo "fanout: $name did not start" >&2; stop "$pid"; return; fi
  log=$OUT/bt-$name-$clients-$repeat.txt
  taskset -c "$GEN_CPUS" "$BROADCAST_TEST" "$clients" 127.0.0.1 "$port" 0 /broadcast > "$log" 2>&1 &
  bt=$!
  # Wait (bounded: 60 s) for report 1, sample; then for report 1 + WINDOWS, sample.
  t0=""; c0=""; g0=""
  for _ in $(seq 3000); do
    lines=$(grep -c Iterations "$log" || true)
    if [ -z "$t0" ] && [ "$lines" -ge 1 ]; then
      t0=$(now); c0=$(cpu_ticks "$pid"); g0=$(cpu_ticks "$bt" 2>/dev/null || echo "0 0")
    fi
    if [ -n "$t0" ] && [ "$lines" -ge $((WINDOWS + 1)) ]; then
      t1=$(now); c1=$(cpu_ticks "$pid"); g1=$(cpu_ticks "$bt" 2>/dev/null || echo "0 0"); break
    fi
    kill -0 "$bt" 2>/dev/null || break
    sleep 0.02
  done
  kill "$bt" 2>/dev/null || true; wait "$bt" 2>/dev/null || true
  stop "$pid"
  python3 - "$name" "$clients" "$repeat" "$log" "${t0:-0}" "${t1:-0}" "${c0:-0 0}" "${c1:-0 0}" \
    "${g0:-0 0}" "${g1:-0 0}" "$HZ" "$WINDOWS" <<'PY' >> "$RESULTS"
import json, re, sys
name, clients, repeat, log, t0, t1, c0, c1, g0, g1, hz, windows = sys.argv[1:]
clients, hz, windows = int(clients), int(hz), int(windows)
its = [float(m) for m in re.findall(r"Iterations/second \(\d+ clients\): ([0-9.]+)", open(log).read())]
measured = its[1:1 + windows]
ok = len(measured) == windows and float(t1) > float(t0)
wall = float(t1) - float(t0) if ok else 0
c0, c1, g0, g1 = [list(map(int, x.split())) for x in (c0, c1, g0, g1)]
srv = (sum(c1) - sum(c0)) / hz if ok else 0
gen = (sum(g1) - sum(g0)) / hz if ok else 0
it = sum(measured) / len(measured) if measured else 0
dps = it * clients * clients
print(json.dumps({"part": "broadcast", "server": name, "clients": clients, "repeat": int(repeat),
  "ok": ok, "iterations_per_sec": it, "reports": its, "deliveries_per_sec": dps,
  "window_s": wall, "server_cpu_s": srv, "server_user_s": (c1[0] - c0[0]) / hz if ok else 0,
  "server_sys_s": (c1[1] - c0[1]) / hz if ok else 0,
  "server_cores_busy": srv / wall if wall else None, "client_cores_busy": gen / wall if wall else None,
  "deliveries_per_server_core_s": dps / (srv / wall) if ok and srv > 0 else None,
  "loadavg_1m": float(open("/proc/loadavg").read().split()[0])}))
PY
  echo "fanout: [$repeat/$REPEATS] broadcast $clients $name: $(tail -1 "$RESULTS" | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("%.0f it/s = %.0f deliveries/s, server %.2f cores, client %.2f cores, %.0f deliveries per server core-s" % (
  r["iterations_per_sec"], r["deliveries_per_sec"], r["server_cores_busy"] or 0, r["client_cores_busy"] or 0,
  r["deliveries_per_server_core_s"] or 0))')" >&2
}

# One fanout run: label $1, then ringws-loadtest fanout arguments.
fanout_run() {
  local label=$1; shift
  local json
  json=$(taskset -c "$GEN_CPUS" "$LOADTEST" fanout --threads 1 --json "$@" 2>"$OUT/fanout-stderr.txt" || true)
  python3 - "$label" "$json" "$*" <<'PY' >> "$RESULTS"
import json, sys
label, raw, args = sys.argv[1:]
try:
    run = json.loads(raw)
except ValueError:
    run = {}
print(json.dumps({"part": "fanout", "label": label, "args": args, "run": run}))
PY
  echo "fanout: $label: $(tail -1 "$RESULTS" | python3 -c '
import json, sys
r = json.load(sys.stdin)["run"].get("results", {})
l = r.get("latency", {})
print("%.0f deliveries/s, p50 %s us p99 %s us p99.9 %s us, lost %s dup %s ooo %s, %s us/delivery, generator %s cores" % (
  r.get("deliveries_per_sec", 0), l.get("p50_us"), l.get("p99_us"), l.get("p999_us"), r.get("lost"),
  r.get("duplicated"), r.get("out_of_order"), r.get("server_cpu_us_per_delivery"), r.get("generator_cores_busy")))')" >&2
}

if has_part broadcast; then
  IFS=, read -ra server_list <<< "$SERVERS"
  IFS=, read -ra client_list <<< "$CLIENTS"
  for repeat in $(seq "$REPEATS"); do
    for clients in "${client_list[@]}"; do
      for name in "${server_list[@]}"; do
        broadcast_run "$name" "$clients" "$repeat"
      done
    done
  done
fi

FD=$FANOUT_DURATION
if has_part fanout; then
  port=$(pick_port)
  for repeat in $(seq "$REPEATS"); do
    pid=$(start_broadcast ringws-uring "$port")
    wait_port "$port" || { echo "fanout: ringws did not start" >&2; exit 1; }
    url=ws://127.0.0.1:$port/pubsub
    fanout_run "1 topic x 1000, 200 msg/s (r$repeat)" --url "$url" -c 1000 --publishers 10 --rate 200 --duration "${FD}s" --server-pid "$pid"
    fanout_run "1 topic x 1000, 1000 msg/s (r$repeat)" --url "$url" -c 1000 --publishers 10 --rate 1000 --duration "${FD}s" --server-pid "$pid"
    fanout_run "1 topic x 10000, 20 msg/s (r$repeat)" --url "$url" -c 10000 --publishers 10 --rate 20 --duration "${FD}s" --server-pid "$pid"
    fanout_run "1000 topics x 10, 20000 msg/s (r$repeat)" --url "$url" -c 10000 --topics 1000 --publishers 10 --rate 20000 --duration "${FD}s" --server-pid "$pid"
    stop "$pid"
  done
fi

if has_part cross; then
  if ! command -v redis-server >/dev/null; then
    echo "fanout: redis-server missing, cross-node part skipped" >&2
  else
    rport=$(pick_port)
    taskset -c "$SERVER_CPUS" redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
      > "$OUT/redis.log" 2>&1 &
    rpid=$!
    wait_port "$rport" || { echo "fanout: redis did not start" >&2; kill "$rpid"; exit 1; }
    for repeat in $(seq "$REPEATS"); do
      for mode in pubsub streams; do
        pa=$(pick_port); pb=$(pick_port)
        taskset -c "$SERVER_CPUS" "$BIN/ringws" serve --bind "127.0.0.1:$pa" --shards 1 --backend uring \
          --redis "redis://127.0.0.1:$rport" --redis-mode "$mode" > "$OUT/node-a.log" 2>&1 &
        a=$!
        taskset -c "$SERVER_CPUS" "$BIN/ringws" serve --bind "127.0.0.1:$pb" --shards 1 --backend uring \
          --redis "redis://127.0.0.1:$rport" --redis-mode "$mode" > "$OUT/node-b.log" 2>&1 &
        b=$!
        wait_port "$pa" && wait_port "$pb" || { echo "fanout: nodes did not start" >&2; stop "$a"; stop "$b"; continue; }
        sleep 1
        for shape in "1000 200" "100 1000"; do
          set -- $shape
          fanout_run "cross $mode same-node $1 subs $2 msg/s (r$repeat)" --url "ws://127.0.0.1:$pa/pubsub" \
            -c "$1" --publishers 10 --rate "$2" --settle 1s --duration "${FD}s" --server-pid "$a" --server-pid "$b" --server-pid "$rpid"
          fanout_run "cross $mode cross-node $1 subs $2 msg/s (r$repeat)" --url "ws://127.0.0.1:$pa/pubsub" \
            --publish-url "ws://127.0.0.1:$pb/pubsub" -c "$1" --publishers 10 --rate "$2" --settle 1s \
            --duration "${FD}s" --server-pid "$a" --server-pid "$b" --server-pid "$rpid"
        done
        stop "$a"; stop "$b"
      done
    done
    kill "$rpid" 2>/dev/null || true; wait "$rpid" 2>/dev/null || true
  fi
fi

python3 - "$RESULTS" <<'PY' | tee "$OUT/summary.md"
import json, re, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
med = lambda xs: statistics.median(xs) if xs else None
def f(x, fmt="%.0f"):
    return "-" if x is None else fmt % x
bc = [r for r in rows if r["part"] == "broadcast" and r["ok"]]
if bc:
    print("## broadcast_test (medians of %d interleaved repeats)\n" % max(r["repeat"] for r in bc))
    print("| clients | server | iterations/s | deliveries/s | server cores busy | broadcast_test cores busy "
          "| deliveries per server core-s | vs uWS deliveries/s | vs uWS per core-s |")
    print("|---|---|---|---|---|---|---|---|---|")
    order = ["uws", "uws-js", "ringws-uring", "ringws-epoll", "ringws-all"]
    for clients in sorted({r["clients"] for r in bc}):
        stats = {}
        for name in order:
            rs = [r for r in bc if r["clients"] == clients and r["server"] == name]
            if rs:
                stats[name] = {k: med([r[k] for r in rs if r[k] is not None]) for k in
                    ("iterations_per_sec", "deliveries_per_sec", "server_cores_busy",
                     "client_cores_busy", "deliveries_per_server_core_s")}
        base = stats.get("uws")
        for name, s in stats.items():
            ratio = lambda k: (s[k] / base[k]) if base and base[k] and s[k] else None
            print("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (clients, name,
                f(s["iterations_per_sec"], "%.1f"), f(s["deliveries_per_sec"]),
                f(s["server_cores_busy"], "%.2f"), f(s["client_cores_busy"], "%.2f"),
                f(s["deliveries_per_server_core_s"]), f(ratio("deliveries_per_sec"), "%.2f"),
                f(ratio("deliveries_per_server_core_s"), "%.2f")))
    print()
fo = [r for r in rows if r["part"] == "fanout" and r["run"]]
if fo:
    print("## ringws-loadtest fanout (medians over repeats; lost/dup/ooo summed)\n")
    print("| run | deliveries/s | p50 µs | p99 µs | p99.9 µs | lost | duplicated | out of order "
          "| drain complete | server µs/delivery | server cores | generator cores |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    labels = []
    for r in fo:
        l = re.sub(r" \(r\d+\)$", "", r["label"])
        if l not in labels:
            labels.append(l)
    for l in labels:
        rs = [r["run"]["results"] for r in fo if re.sub(r" \(r\d+\)$", "", r["label"]) == l]
        g = lambda k: med([x[k] for x in rs if x.get(k) is not None])
        lat = lambda k: med([x["latency"][k] for x in rs])
        cores = med([sum(c["cores_busy"] for c in x["server_cpu"]) for x in rs if x["server_cpu"]])
        print("| %s | %s | %s | %s | %s | %d | %d | %d | %d/%d | %s | %s | %s |" % (l,
            f(g("deliveries_per_sec")), f(lat("p50_us")), f(lat("p99_us")), f(lat("p999_us")),
            sum(x["lost"] for x in rs), sum(x["duplicated"] for x in rs), sum(x["out_of_order"] for x in rs),
            sum(bool(x["drain_complete"]) for x in rs), len(rs),
            f(g("server_cpu_us_per_delivery"), "%.3f"), f(cores, "%.2f"), f(g("generator_cores_busy"), "%.2f")))
    print()
    pairs = [(l, l.replace(" same-node ", " cross-node ")) for l in labels if " same-node " in l]
    pairs = [(a, b) for a, b in pairs if b in labels]
    if pairs:
        print("## cross-node: added latency (medians; cross-node minus same node)\n")
        print("| run | same node p50 / p99 µs | cross-node p50 / p99 µs | added p50 / p99 µs |")
        print("|---|---|---|---|")
        def lat(l, k):
            return med([r["run"]["results"]["latency"][k] for r in fo
                        if re.sub(r" \(r\d+\)$", "", r["label"]) == l])
        for a, b in pairs:
            s50, s99, c50, c99 = lat(a, "p50_us"), lat(a, "p99_us"), lat(b, "p50_us"), lat(b, "p99_us")
            print("| %s | %s / %s | %s / %s | %+d / %+d |" % (a.replace(" same-node", ""),
                f(s50), f(s99), f(c50), f(c99), c50 - s50, c99 - s99))
        print()
PY
echo "fanout: results in $OUT" >&2
