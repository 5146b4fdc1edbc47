#!/usr/bin/env bash
# mypod's main job on a fresh Debian machine: install what is needed, build the shim and a
# local busybox image, start a private containerd with the mypod runtime configured, and run
# containers through mypod — one alone, then two of one pod served by a single shim process.
# Everything it starts is stopped and removed again on exit, also on failure.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$(id -u)" -ne 0 ]; then exec sudo -E bash "$0" "$@"; fi

bash "$REPO/scripts/setup.sh"
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
echo "demo: building containerd-shim-mypod-v2 (release)"
cargo build --release --quiet -p containerd-shim-mypod-v2 --manifest-path "$REPO/Cargo.toml"
SHIM="$REPO/target/release/containerd-shim-mypod-v2"

DIR=$(mktemp -d /tmp/mypod-demo.XXXXXX)
NS=mypod-demo
ADDR="$DIR/containerd.sock"
CTR=(ctr --address "$ADDR" --namespace "$NS")
CTD_PID=

cleanup() {
    set +e
    if [ -n "$CTD_PID" ]; then
        for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
            "${CTR[@]}" tasks kill -s KILL "$t" >/dev/null 2>&1; sleep 0.2
            "${CTR[@]}" tasks rm -f "$t" >/dev/null 2>&1
        done
        for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do "${CTR[@]}" containers rm "$c" >/dev/null 2>&1; done
        kill "$CTD_PID" 2>/dev/null; wait "$CTD_PID" 2>/dev/null
    fi
    grep -o " $DIR[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
    for cg in /sys/fs/cgroup/*/"$NS" /sys/fs/cgroup/"$NS"; do [ -d "$cg" ] && find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null; done
    rm -rf "$DIR"
}
trap cleanup EXIT

mkdir -p "$DIR/bin"
ln -s "$SHIM" "$DIR/bin/containerd-shim-mypod-v2"
cat >"$DIR/config.toml" <<TOML
version = 2
root = "$DIR/root"
state = "$DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$ADDR"
[ttrpc]
  address = "$ADDR.ttrpc"
TOML
echo "demo: starting a private containerd $(containerd --version | awk '{print $3}') in $DIR"
PATH="$DIR/bin:/usr/sbin:/usr/bin:/sbin:/bin" containerd --config "$DIR/config.toml" >"$DIR/containerd.log" 2>&1 &
CTD_PID=$!
for _ in $(seq 50); do "${CTR[@]}" version >/dev/null 2>&1 && break; sleep 0.1; done
"${CTR[@]}" images import "$REPO/.cache/images/busybox.tar" >/dev/null
IMG=docker.io/library/busybox:local

echo
echo "\$ ctr run --rm --runtime io.containerd.mypod.v2 $IMG demo /bin/sh -c 'echo hello; exit 7'"
set +e
"${CTR[@]}" run --rm --runtime io.containerd.mypod.v2 "$IMG" demo /bin/sh -c 'echo hello; exit 7'
echo "(ctr exited $?)"
set -e

echo
echo "A pod of two containers (same io.containerd.runc.v2.group annotation, as CRI's sandbox id):"
for c in web sidecar; do
    "${CTR[@]}" run -d --runtime io.containerd.mypod.v2 --annotation io.containerd.runc.v2.group=pod1 \
        "$IMG" "$c" /bin/sh -c "echo $c up; sleep 1000" >/dev/null
done
"${CTR[@]}" tasks ls
shims=$(for f in "$DIR"/state/io.containerd.runtime.v2.task/"$NS"/*/shim.pid; do cat "$f"; echo; done | sort -u)
echo "shim processes serving the pod: $(echo "$shims" | wc -l) (pid $(echo $shims))"
for c in web sidecar; do
    pid=$("${CTR[@]}" tasks ls | awk -v c="$c" '$1==c{print $2}')
    echo "  $c: pid $pid, parent $(awk '{print $4}' /proc/"$pid"/stat) ($(tr '\0' ' ' </proc/"$(awk '{print $4}' /proc/"$pid"/stat)"/cmdline | awk '{print $1}'))"
done
echo
echo "demo: done; cleaning up"
