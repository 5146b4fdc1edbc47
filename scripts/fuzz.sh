#!/usr/bin/env bash
# Fuzzes mypod with cargo-fuzz (libFuzzer): the `spec` and `task` targets of fuzz/,
# both at once (see docs/fuzzing.md).
#   scripts/fuzz.sh           each target for ${FUZZ_SECS:-1800} seconds
#   scripts/fuzz.sh --short   each target for ${FUZZ_SHORT_SECS:-25} seconds (CI)
# Installs cargo-fuzz when missing; builds with the stable toolchain (RUSTC_BOOTSTRAP=1,
# as cargo-fuzz needs -Z flags). New inputs go to fuzz/work/<target> (ignored by git);
# the committed seeds in fuzz/corpus/<target> are read, never written. Prints a summary
# per target and fails when a target crashed, leaked, hung or found nothing to run.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${FUZZ_SECS:-1800}
if [ "${1:-}" = "--short" ]; then
    secs=${FUZZ_SHORT_SECS:-25}
fi
targets=(spec task)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
cd "$root/fuzz"
cargo fuzz build -O

for t in "${targets[@]}"; do
    mkdir -p "work/$t" "artifacts/$t"
done

pids=()
for t in "${targets[@]}"; do
    # Absolute paths: the task target chroots (its corpus and artifact directories are
    # bound in at their own paths), and LeakSanitizer needs a /proc it does not have.
    extra=()
    if [ "$t" = task ]; then
        extra=(-detect_leaks=0)
    fi
    # -timeout: one input may take at most 30 s (the task target's own limit is 10 s a
    # request); -rss_limit_mb: libFuzzer's default, stated.
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=$([ "$t" = task ] && echo 0 || echo 1)} \
        nice -n 19 cargo fuzz run -O "$t" "$PWD/work/$t" "$PWD/corpus/$t" -- \
        -max_total_time="$secs" -timeout=30 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 "${extra[@]}" >"work/$t.log" 2>&1 &
    pids+=($!)
done

status=0
for i in "${!targets[@]}"; do
    t=${targets[$i]}
    rc=0
    wait "${pids[$i]}" || rc=$?
    log="work/$t.log"
    stat() { grep -m1 "^stat::$1:" "$log" | awk '{print $2}' || true; }
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1 || true)
    crashes=$(find "artifacts/$t" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    corpus=$(find "work/$t" -type f | wc -l)
    execs=$(stat number_of_executed_units)
    echo "== $t: ${secs}s, exit $rc"
    echo "   runs (execs): ${execs:-?}   execs/s: $(stat average_exec_per_sec)   new units: $(stat new_units_added)   peak RSS: $(stat peak_rss_mb) MB"
    echo "   crashes: $crashes   corpus: $corpus files in work/$t (+ $(ls "corpus/$t" | wc -l) seeds)"
    echo "   final: ${done_line:-none}"
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ] || [ -z "$execs" ] || [ "$execs" = 0 ]; then
        echo "   FAILED: see fuzz/$log and fuzz/artifacts/$t/"
        status=1
    fi
done
exit $status
