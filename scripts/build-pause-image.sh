#!/usr/bin/env bash
# Builds the pod sandbox ("pause") images for the CRI tests, as OCI image layout tars:
#   .cache/images/pause.tar         registry.k8s.io/pause:local   /pause from scripts/pause.c
#   .cache/images/pause-broken.tar  registry.k8s.io/pause:broken  the same config, but no /pause
# The config matches Kubernetes' pause image: Entrypoint ["/pause"], User 65535:65535,
# WorkingDir /. The CRI tests set the instance's sandbox image to the :local name (no registry
# is reachable here, so CRI must never try to pull) and import these into namespace k8s.io.
# Needs gcc and libc6-dev (static glibc). Deterministic: fixed mtimes, numeric root ownership,
# uncompressed layers, a stripped binary. Rebuilds only when an output is missing or older than
# this script or scripts/pause.c (set MYPOD_IMAGE_FORCE=1 to force).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-$REPO/.cache/images}"
SRC="$REPO/scripts/pause.c"
EPOCH=1700000000
CREATED="2023-11-14T22:13:20Z"

log() { echo "build-pause-image.sh: $*"; }

fresh() { [ -s "$1" ] && [ "$1" -nt "${BASH_SOURCE[0]}" ] && [ "$1" -nt "$SRC" ]; }
if [ -z "${MYPOD_IMAGE_FORCE:-}" ] && fresh "$OUT_DIR/pause.tar" && fresh "$OUT_DIR/pause-broken.tar"; then
    log "up to date: $OUT_DIR/pause.tar, $OUT_DIR/pause-broken.tar"
    exit 0
fi
command -v gcc >/dev/null || { echo "build-pause-image.sh: ERROR: gcc is missing (apt-get install gcc libc6-dev)" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
umask 022

gcc -static -Os -s -Wall -Werror -o "$WORK/pause" "$SRC"
[ "$("$WORK/pause" -v)" = "mypod-test pause" ] || { echo "build-pause-image.sh: ERROR: the built pause does not run" >&2; exit 1; }

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
tar_det() { # tar_det OUT DIR MEMBERS...
    local out=$1 dir=$2
    shift 2
    find "$dir" -exec touch -h -d "@$EPOCH" {} +
    tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner --format=posix \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -C "$dir" -cf "$out" "$@"
}

# image NAME TAG ROOTFS OUT: writes an OCI layout tar holding one image with ROOTFS as its layer.
image() {
    local name=$1 tag=$2 rootfs=$3 out=$4
    local layout="$WORK/layout-$tag"
    rm -rf "$layout"
    mkdir -p "$layout/blobs/sha256"
    tar_det "$WORK/layer.tar" "$rootfs" .
    local layer_sha layer_size
    layer_sha="$(sha "$WORK/layer.tar")"
    layer_size="$(size "$WORK/layer.tar")"
    mv "$WORK/layer.tar" "$layout/blobs/sha256/$layer_sha"

    cat >"$WORK/config.json" <<JSON
{"architecture":"amd64","os":"linux","created":"$CREATED","config":{"User":"65535:65535","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":["/pause"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$layer_sha"]},"history":[{"created":"$CREATED","created_by":"mypod scripts/build-pause-image.sh ($tag)"}]}
JSON
    local config_sha config_size
    config_sha="$(sha "$WORK/config.json")"
    config_size="$(size "$WORK/config.json")"
    mv "$WORK/config.json" "$layout/blobs/sha256/$config_sha"

    cat >"$WORK/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config_sha","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$layer_sha","size":$layer_size}]}
JSON
    local manifest_sha manifest_size
    manifest_sha="$(sha "$WORK/manifest.json")"
    manifest_size="$(size "$WORK/manifest.json")"
    mv "$WORK/manifest.json" "$layout/blobs/sha256/$manifest_sha"

    cat >"$layout/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest_sha","size":$manifest_size,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"$name:$tag","org.opencontainers.image.ref.name":"$tag"}}]}
JSON
    echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
    mkdir -p "$(dirname "$out")"
    tar_det "$out.partial" "$layout" oci-layout index.json blobs
    mv "$out.partial" "$out"
    log "built $out ($(size "$out") bytes): $name:$tag, manifest sha256:$manifest_sha"
}

# The working image: only /pause (mode 0755), as in Kubernetes' pause image.
mkdir -p "$WORK/rootfs-ok"
install -m 0755 "$WORK/pause" "$WORK/rootfs-ok/pause"
image registry.k8s.io/pause local "$WORK/rootfs-ok" "$OUT_DIR/pause.tar"

# The broken image: the same config (Entrypoint /pause), but the layer has no /pause.
mkdir -p "$WORK/rootfs-broken/etc"
image registry.k8s.io/pause broken "$WORK/rootfs-broken" "$OUT_DIR/pause-broken.tar"
