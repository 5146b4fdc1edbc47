#!/usr/bin/env bash
# The long runs behind docs/reliability.md (not in CI; CI runs the short version of each):
# the e2e tests `reliability_*` with MYPOD_SOAK=1 (20 containerd restarts, 1000 pod cycles,
# 1000 execs and Stats, 50 containers and 50 pods at once, many race rounds, the faults),
# then, unless --no-fuzz, each fuzz target for FUZZ_SECS (default 1800) seconds.
# Every test prints its figures as `FIGURE|...` lines; they are collected, with the fuzz
# summaries, in target/soak/figures-<date>.txt and printed at the end.
# Needs root (re-runs itself through sudo); installs what it needs (scripts/setup.sh).
#
#   scripts/soak.sh                     # everything, every containerd version (hours)
#   scripts/soak.sh --no-fuzz v1_6      # the e2e soak only, containerd 1.6 only
#   extra args filter the tests (libtest filters, e.g. reliability_churn:: or v2_1)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "soak.sh: not root, re-running through sudo"
    exec sudo -E env "PATH=$PATH" bash "$0" "$@"
fi

fuzz=1
filters=()
for a in "$@"; do
    case "$a" in
        --no-fuzz) fuzz=0 ;;
        *) filters+=("$a") ;;
    esac
done
[ ${#filters[@]} -gt 0 ] || filters=(reliability_)

out="$REPO/target/soak"
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
log="$out/e2e-$stamp.log"
figures="$out/figures-$stamp.txt"

bash scripts/setup.sh
cargo build --release -p containerd-shim-mypod-v2
start=$(date +%s)
set +e
MYPOD_SOAK=1 RUST_BACKTRACE=0 cargo test -p mypod-tests --test e2e --no-fail-fast -- \
    --test-threads 1 --nocapture "${filters[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
{
    echo "# soak run $stamp ($(uname -r), $(nproc) cores): e2e took $(($(date +%s) - start)) s, exit $rc"
    grep -ho 'FIGURE|.*' "$log" || true
    grep -h '^test result:' "$log" || true
} >"$figures"

if [ "$fuzz" = 1 ] && [ -f scripts/fuzz.sh ]; then
    FUZZ_SECS="${FUZZ_SECS:-1800}" bash scripts/fuzz.sh 2>&1 | tee "$out/fuzz-$stamp.log"
    grep -h -E '^(== |   )' "$out/fuzz-$stamp.log" >>"$figures" || true
fi

echo
echo "==== soak.sh figures ($figures)"
cat "$figures"
exit "$rc"
