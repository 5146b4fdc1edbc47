#!/usr/bin/env bash
# Runs what CI runs, fastest checks first: scripts/setup.sh, `cargo fmt --check`, clippy with
# warnings as errors, the workspace's unit tests (no containerd), the release build of the shim,
# then the end-to-end tests (tests/, crate mypod-tests: one test binary, tests/tests/e2e/)
# against containerd 1.6, 1.7 and 2.1: the ctr tests and the CRI tests (modules cri_*: pods
# through CRI with handler mypod). The test binaries build in the dev profile, sharing the unit
# tests' build; only the shim is built for release.
# Needs root (containers, mounts, cgroups); re-runs itself through sudo otherwise.
#
#   scripts/test.sh                       # everything, runtime mypod
#   MYPOD_TEST_RUNTIME=runc scripts/test.sh   # the e2e tests against runc (checks the tests)
#   scripts/test.sh first_light::         # extra args filter the e2e tests (libtest filters)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: not root, re-running through sudo"
    exec sudo -E env "PATH=$PATH" bash "$0" "$@"
fi

START=$(date +%s)
# The CRI tests' CNI plugins cache results under /var/lib/cni (the harness removes its files,
# and the dirs if they were not there before): note whether it was there.
CNI_CACHE_EXISTED=0
[ -e /var/lib/cni ] && CNI_CACHE_EXISTED=1
LOG_DIR="$REPO/target/test-sh"
mkdir -p "$LOG_DIR"
STAGES=()
passed=0
failed=0
ignored=0

# Adds up cargo's "test result:" lines of a log.
count() {
    local p f i
    while read -r p f i; do
        passed=$((passed + p)); failed=$((failed + f)); ignored=$((ignored + i))
    done < <(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed; \([0-9]*\) ignored.*/\1 \2 \3/p' "$1")
}

# stage NAME LOG COMMAND...: runs a stage, keeps its output, records ok/FAILED.
stage() {
    local name=$1 log=$2
    shift 2
    echo
    echo "==== test.sh: $name: $*"
    local t0 rc
    t0=$(date +%s)
    set +e
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    STAGES+=("$name: $([ "$rc" = 0 ] && echo ok || echo "FAILED (exit $rc)") in $(($(date +%s) - t0))s")
    return "$rc"
}

finish() {
    echo
    echo "==== test.sh summary ($(($(date +%s) - START))s)"
    printf '  %s\n' "${STAGES[@]}"
    # Leftovers the tests should never leave (reported, not fatal: CI sees the tests' verdict).
    local left
    left="$(ls -d /tmp/mypodtest-* 2>/dev/null || true; find /sys/fs/cgroup -maxdepth 2 -name 'mypodtest-*' 2>/dev/null || true; grep -o '/tmp/mypodtest-[^ ]*' /proc/self/mountinfo || true
        grep -l '/tmp/mypodtest-' /var/lib/cni/results/* 2>/dev/null || true
        [ "$CNI_CACHE_EXISTED" = 1 ] || { [ ! -e /var/lib/cni ] || echo /var/lib/cni; })"
    if [ -n "$left" ]; then
        echo "  WARNING: left behind by the tests:"
        while IFS= read -r l; do echo "    $l"; done <<<"$left"
    fi
    echo "summary: $passed passed, $failed failed, $ignored skipped"
}

ok=1
stage "setup" "$LOG_DIR/setup.log" bash scripts/setup.sh || { finish; echo "test.sh: setup failed"; exit 1; }
# Style and lints fail fast, before anything long runs.
stage "fmt" "$LOG_DIR/fmt.log" cargo fmt --all -- --check ||
    { finish; echo "test.sh: cargo fmt --all would change files"; exit 1; }
stage "clippy" "$LOG_DIR/clippy.log" cargo clippy --workspace --all-targets -- -D warnings ||
    { finish; echo "test.sh: clippy"; exit 1; }
stage "unit tests" "$LOG_DIR/unit.log" cargo test --workspace --exclude mypod-tests || ok=0
count "$LOG_DIR/unit.log"
stage "build shim" "$LOG_DIR/build.log" cargo build --release -p containerd-shim-mypod-v2 ||
    { finish; echo "test.sh: the shim does not build"; exit 1; }
# Two tests at a time (2 cores); each starts its own containerd. No backtraces: the assertion
# messages carry the ctr output and the containerd log.
stage "e2e tests (runtime ${MYPOD_TEST_RUNTIME:-mypod})" "$LOG_DIR/e2e.log" \
    env RUST_BACKTRACE=0 cargo test -p mypod-tests --no-fail-fast -- --test-threads 2 "$@" || ok=0
count "$LOG_DIR/e2e.log"
finish
[ "$ok" = 1 ] && [ "$failed" = 0 ]
