# Shared by compare.sh and idle.sh (sourced, not run): how to start each server of the
# rig on a port, pinned to $SERVER_CPUS with $SHARDS shards/threads, from the binaries
# in $BIN; and small helpers to wait for a port and read a process's CPU time.

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

# Starts server $1 on port $2 pinned to SERVER_CPUS; prints its PID.
start_server() {
  local name=$1 port=$2 addr=127.0.0.1:$2
  case "$name" in
    ringws-uring) exec taskset -c "$SERVER_CPUS" $BIN/ringws serve --bind "$addr" --shards "$SHARDS" --backend uring ;;
    ringws-epoll) exec taskset -c "$SERVER_CPUS" $BIN/ringws serve --bind "$addr" --shards "$SHARDS" --backend epoll ;;
    # Another build of ringws (an earlier commit), for before/after rows in one run.
    before-uring) exec taskset -c "$SERVER_CPUS" "$RINGWS_BEFORE" serve --bind "$addr" --shards "$SHARDS" --backend uring ;;
    before-epoll) exec taskset -c "$SERVER_CPUS" "$RINGWS_BEFORE" serve --bind "$addr" --shards "$SHARDS" --backend epoll ;;
    floor-uring) exec env RINGWS_BACKEND=uring taskset -c "$SERVER_CPUS" $BIN/peer-floor --bind "$addr" --threads "$SHARDS" ;;
    floor-epoll) exec env RINGWS_BACKEND=epoll taskset -c "$SERVER_CPUS" $BIN/peer-floor --bind "$addr" --threads "$SHARDS" ;;
    tungstenite) exec taskset -c "$SERVER_CPUS" $BIN/peer-tungstenite --bind "$addr" --threads "$SHARDS" ;;
    fastwebsockets) exec taskset -c "$SERVER_CPUS" $BIN/peer-fastwebsockets --bind "$addr" --threads "$SHARDS" ;;
    # ringws's Handler inside a hyper 1 server (ringws::adapter): hyper on the same tokio
    # runtime as the two peers above, sessions on SHARDS adapter thread(s).
    adapter) exec taskset -c "$SERVER_CPUS" $BIN/peer-adapter --bind "$addr" --threads "$SHARDS" ;;
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

