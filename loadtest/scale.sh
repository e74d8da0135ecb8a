#!/usr/bin/env bash
# Shard scaling: runs compare.sh once per shard count with the same generator placement,
# then prints msgs/s, CPU per message and scaling efficiency (msgs/s at N shards over N
# times msgs/s at one shard) per server and scenario, and draws scaling.svg.
#
# CPU placement is read from /sys: shard i runs on the first hardware thread of physical
# core i (never two shards on one core's hyperthreads), and the generator on every CPU
# the largest shard count leaves free, for all shard counts alike. On a machine with
# fewer than 2x the largest shard count of physical cores the generator shares cores
# with the server's siblings; machine.txt says so.
#
# Usage: loadtest/scale.sh [options]
#   --shards LIST       shard counts (default 1,2,4,8)
#   --servers LIST      compare.sh servers with a --shards/--threads knob
#                       (default ringws-uring,ringws-epoll,floor-uring)
#   --one-shard-peers L servers run at one shard only, as a reference (e.g. uws)
#   --scenarios LIST    SIZExINFLIGHT list (default 20x1,20x16)
#   --connections N     connections per run, the same for every shard count (default 1000)
#   --duration S        measured seconds per run (default 4)
#   --repeats N         interleaved repeats (default 3)
#   --bin-dir DIR       prebuilt binaries (see compare.sh); default: cargo build here
#   --out DIR           results directory (default target/scale/DATE)
set -euo pipefail
cd "$(dirname "$0")/.."

SHARDS_LIST=1,2,4,8
SERVERS=ringws-uring,ringws-epoll,floor-uring
ONE_SHARD_PEERS=""
SCENARIOS=20x1,20x16
CONNECTIONS=1000
DURATION=4
REPEATS=3
BIN_ARGS=()
OUT="target/scale/$(date +%Y%m%d-%H%M%S)"
while [ $# -gt 0 ]; do
  case "$1" in
    --shards) SHARDS_LIST=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --one-shard-peers) ONE_SHARD_PEERS=$2; shift 2 ;;
    --scenarios) SCENARIOS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --bin-dir) BIN_ARGS=(--bin-dir "$2"); shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "scale.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

# Prints "SERVER_CPUS_FOR_EACH_N;GENERATOR_CPUS" where the first part is a space list of
# N=CPULIST entries.
placement=$(python3 - "$SHARDS_LIST" <<'EOF'
import glob, os, sys
counts = [int(n) for n in sys.argv[1].split(",")]
cores = {}
for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*"):
    cpu = int(os.path.basename(path)[3:])
    try:
        with open(f"{path}/topology/core_id") as f:
            core = int(f.read())
        with open(f"{path}/topology/physical_package_id") as f:
            package = int(f.read())
    except OSError:
        continue
    cores.setdefault((package, core), []).append(cpu)
physical = [sorted(cpus) for _, cpus in sorted(cores.items(), key=lambda kv: min(kv[1]))]
largest = max(counts)
if largest > len(physical):
    sys.exit(f"scale.sh: {largest} shards need {largest} physical cores, this machine has {len(physical)}")
servers = {n: [physical[i][0] for i in range(n)] for n in counts}
busy = set(servers[largest])
generator = [c for cpus in physical for c in cpus if c not in busy]
print(" ".join(f"{n}={','.join(map(str, servers[n]))}" for n in counts) + ";" + ",".join(map(str, generator)))
EOF
)
GEN_CPUS=${placement#*;}
GEN_THREADS=$(echo "$GEN_CPUS" | tr ',' '\n' | wc -l)
mkdir -p "$OUT"
echo "scale: generator on CPUs $GEN_CPUS ($GEN_THREADS threads); servers: ${placement%;*}" | tee "$OUT/placement.txt" >&2

for entry in ${placement%;*}; do
  n=${entry%%=*}; cpus=${entry#*=}
  servers=$SERVERS
  if [ "$n" = 1 ] && [ -n "$ONE_SHARD_PEERS" ]; then servers="$servers,$ONE_SHARD_PEERS"; fi
  echo "scale: $n shard(s) on CPUs $cpus" >&2
  loadtest/compare.sh "${BIN_ARGS[@]}" --servers "$servers" --scenarios "$SCENARIOS" \
    --connections "$CONNECTIONS" --duration "$DURATION" --repeats "$REPEATS" --shards "$n" \
    --server-cpus "$cpus" --gen-cpus "$GEN_CPUS" --gen-threads "$GEN_THREADS" \
    --out "$OUT/shards-$n" > /dev/null
done

python3 loadtest/scale_report.py "$OUT" | tee "$OUT/summary.md"
echo "scale: results in $OUT" >&2
