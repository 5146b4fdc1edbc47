#!/usr/bin/env bash
# Benchmarks mypod against containerd's runc-v2 shim (Debian's runc) on one private containerd:
# lifecycle, create+start, delete, exec, CRI pod start/teardown, shim memory and threads,
# density, and what the sandbox defaults cost with gVisor's runsc beside them; prints a table and rewrites docs/benchmarks.md and docs/benchmarks.png.
# Not part of the test suite. Needs root (re-runs itself through sudo otherwise).
#
#   scripts/bench.sh                        # full run on containerd 1.6 (≈ 5 min on 2 cores)
#   scripts/bench.sh --containerd 2.1       # on containerd 2.1 (or 1.7)
#   scripts/bench.sh --quick --no-docs      # a smoke run that leaves docs/ alone
#   scripts/bench.sh --help                 # all options (iterations, phases, density, ...)
#
# What it does: scripts/setup.sh if the machine is not set up yet (containerd, runc, images,
# containerd 1.7/2.1 under .cache/), python3-matplotlib from Debian for the plot, the release
# build of the shim (target/release, as the tests use it), the bench binary (target/bench:
# the release profile with panic=unwind, so that the harness cleans up after a failure too),
# then the bench. Ctrl-C stops it; everything it started is removed.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "bench.sh: not root, re-running through sudo"
    exec sudo -E env "PATH=$PATH" bash "$0" "$@"
fi
log() { echo "bench.sh: $*" >&2; }

# --- set-up, only what is missing ---------------------------------------------------------------
need_setup=0
for f in /usr/bin/containerd /usr/bin/ctr /usr/bin/containerd-shim-runc-v2 \
    .cache/containerd-1.7/usr/bin/containerd .cache/containerd-2.1/usr/bin/containerd \
    .cache/images/busybox.tar .cache/images/pause.tar /usr/lib/cni/bridge; do
    [ -e "$f" ] || { need_setup=1; log "missing $f"; }
done
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || { need_setup=1; log "missing runc"; }
command -v protoc >/dev/null 2>&1 || { need_setup=1; log "missing protoc"; }
if [ "$need_setup" = 1 ]; then
    log "running scripts/setup.sh"
    bash scripts/setup.sh
fi
if ! /usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1; then
    log "installing python3-matplotlib (for docs/benchmarks.png)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends python3-matplotlib >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-matplotlib >/dev/null; } ||
        log "WARNING: no python3-matplotlib: the bench will run, but draw no plot"
fi

# gVisor: Debian trixie's runsc (2024-07; static), unpacked under .cache/runsc like containerd 1.7:
# bookworm's (2022-12) has no systrap platform, and ptrace is far slower.
RUNSC="$REPO/.cache/runsc/usr/bin/runsc"
if [ ! -x "$RUNSC" ]; then
    log "fetching runsc from Debian trixie (gVisor: the sandboxed peer in the sandbox phase)"
    tmp=$(mktemp -d)
    if (cd "$tmp" && apt-get download -qq runsc/trixie >/dev/null 2>&1 &&
        dpkg-deb -x runsc_*.deb "$REPO/.cache/runsc"); then
        log "runsc: $("$RUNSC" --version | head -1)"
    else
        log "WARNING: could not fetch runsc: the sandbox phase will run without gVisor"
    fi
    rm -rf "$tmp"
fi
export MYPOD_BENCH_RUNSC="$RUNSC"

# --- builds ----------------------------------------------------------------------------------------
log "building the shim (cargo build --release -p containerd-shim-mypod-v2)"
cargo build --release -p containerd-shim-mypod-v2
log "building the bench (target/bench, release with panic=unwind)"
CARGO_PROFILE_RELEASE_PANIC=unwind CARGO_PROFILE_RELEASE_LTO=false \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo build --release --target-dir target/bench -p mypod-tests --bin bench

# --- run ---------------------------------------------------------------------------------------------
exec "$REPO/target/bench/release/bench" "$@"
