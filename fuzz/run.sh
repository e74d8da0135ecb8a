#!/usr/bin/env bash
# Builds the fuzz targets as `cargo fuzz build --release` does and runs each for
# SECONDS (default 600), one after the other.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (no TARGET: all of them; SECONDS=0: build only)
#
# Working corpus: fuzz/corpus/<target> (git-ignored, grows); read-only seeds:
# fuzz/seeds/<target>; crashes: fuzz/artifacts/<target>/; logs: fuzz/logs/<target>.log.
# Prints one Markdown row per target: date, target, seconds, executions, exec/s,
# cov, ft, peak RSS, corpus (libFuzzer's units/size at the end, and the files in
# fuzz/corpus/<target>), result. Exits non-zero if any target failed.
#
# Environment: FUZZ_USE_CARGO_FUZZ=0 builds by hand even if `cargo fuzz` is installed;
# FUZZ_NO_BUILD=1 runs the binaries already in fuzz/target/run/; FUZZ_MERGE=0 keeps the
# working corpus as it is (by default a clean run ends by minimising it, -merge=1);
# FUZZ_ARGS adds libFuzzer flags (e.g. FUZZ_ARGS=-max_len=65536). Run it under `nice`
# on a shared machine.
set -euo pipefail

cd "$(dirname "$0")"
secs=${1:-600}
[ $# -gt 0 ] && shift
all=(decode decode_client handshake hixie http_request sockjs_body session deflate_offer inflate)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")

triple=x86_64-unknown-linux-gnu
out=target/$triple/release
run=target/run

if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
    if [ "${FUZZ_USE_CARGO_FUZZ:-1}" = 1 ] && cargo +nightly fuzz --version >/dev/null 2>&1; then
        cargo +nightly fuzz build --release --target "$triple"
    else
        # The flags cargo-fuzz 0.12 passes for `build --release` (sanitizer=address).
        flags=(
            -Cpasses=sancov-module
            -Cllvm-args=-sanitizer-coverage-level=4
            -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
            -Cllvm-args=-sanitizer-coverage-pc-table
            -Cllvm-args=-sanitizer-coverage-trace-compares
            --cfg fuzzing
            -Cllvm-args=-simplifycfg-branch-fold-threshold=0
            -Zsanitizer=address
            -Cdebug-assertions
            -Coverflow-checks
        )
        RUSTFLAGS="${flags[*]} ${RUSTFLAGS:-}" \
            RUSTDOCFLAGS="${flags[*]}" \
            cargo +nightly build --release --manifest-path Cargo.toml \
            --target "$triple" --bins
    fi
    # Run copies, so a rebuild never replaces a binary a fuzzer is running.
    mkdir -p "$run"
    for t in "${all[@]}"; do cp -f "$out/$t" "$run/$t"; done
fi

[ "$secs" = 0 ] && exit 0   # SECONDS=0: build only

mkdir -p logs
status=0
rows=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
    log=logs/$t.log
    echo "== $t: ${secs}s (log: fuzz/$log)" >&2
    rc=0
    # shellcheck disable=SC2086
    "$run/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" ${FUZZ_ARGS:-} \
        "corpus/$t" "seeds/$t" >"$log" 2>&1 || rc=$?
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    execs=$(stat number_of_executed_units)
    eps=$(stat average_exec_per_sec)
    rss=$(stat peak_rss_mb)
    last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
    # Minimise the working corpus (libFuzzer keeps every reduced input on disk).
    if [ "${FUZZ_MERGE:-1}" = 1 ] && [ "$rc" = 0 ]; then
        rm -rf "corpus/$t.min" && mkdir "corpus/$t.min"
        if "$run/$t" -merge=1 -rss_limit_mb=2048 "corpus/$t.min" "corpus/$t" \
            >"logs/$t.merge.log" 2>&1; then
            rm -rf "corpus/$t" && mv "corpus/$t.min" "corpus/$t"
        else
            rm -rf "corpus/$t.min"
        fi
    fi
    files=$(find "corpus/$t" -type f | wc -l)
    if [ "$rc" = 0 ]; then
        result="ok"
    else
        result="FAILED (rc $rc; $(grep -m1 -oE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer): [a-z-]+( signal)?|panicked at [^ ]+' "$log" || echo see log)); artifacts: $(ls -t "artifacts/$t" | head -3 | tr '\n' ' ')"
        status=1
    fi
    rows+=("| $(date -u +%F) | $t | $secs | ${execs:-?} | ${eps:-?} | ${cov:-?} | ${ft:-?} | ${rss:-?} MB | ${corp:-?} ($files files) | $result |")
    echo "${rows[-1]}" >&2
done

echo "| date | target | seconds | executions | exec/s | cov | ft | peak RSS | corpus: units/size (files on disk) | result |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"
printf '%s\n' "${rows[@]}"
exit $status
