#!/usr/bin/env bash
# The hyper/axum adapter's CPU per echo beside tokio-tungstenite, fastwebsockets and
# ringws's own server, in one run: loadtest/compare.sh's method (server pinned to one
# CPU, `ringws-loadtest echo` on another, server utime+stime from /proc over the
# measured window divided by the messages echoed in it, interleaved repeats, medians).
#
# Servers, all one thread of tokio runtime / one shard (`--threads 1`, `--shards 1`):
#   adapter         peer-adapter: a hyper 1 http1 server on a current-thread tokio
#                   runtime, upgrades through ringws::adapter::WebSocketUpgrade, the
#                   ringws `Handler` echo on Adapter::builder().threads(1)
#   fastwebsockets  peer-fastwebsockets: hyper 1 http1 on a current-thread runtime
#   tungstenite     peer-tungstenite: tokio-tungstenite on a current-thread runtime
#   ringws-uring, ringws-epoll   `ringws serve --shards 1 --backend uring|epoll`
#
# Usage: loadtest/adapter.sh [compare.sh options]   e.g. --repeats 3 --duration 5
#   Defaults here: --servers adapter,fastwebsockets,tungstenite,ringws-uring,ringws-epoll
#   --scenarios 20x1,16384x1,20x16 --server-cpus 0 --gen-cpus 1 (later options win).
# Env: ADAPTER_TIMEOUT (seconds, default 1200) bounds the whole run: compare.sh runs
#   under coreutils `timeout`, which leads a process group of its own and, past the
#   limit (or on Ctrl-C), signals that group: the servers and the generator this run
#   started, nothing else.
# Loopback only (127.0.0.1). Release builds in ${CARGO_TARGET_DIR:-target}.
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout --kill-after=5 "${ADAPTER_TIMEOUT:-1200}" loadtest/compare.sh \
  --servers adapter,fastwebsockets,tungstenite,ringws-uring,ringws-epoll \
  --scenarios 20x1,16384x1,20x16 --server-cpus 0 --gen-cpus 1 \
  --out "target/compare/adapter-$(date +%Y%m%d-%H%M%S)" "$@"
