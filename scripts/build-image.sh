#!/usr/bin/env bash
# Builds the test image as an OCI image layout tar: .cache/images/busybox.tar
#   - /bin/busybox from Debian's busybox-static, with every applet it lists as a symlink in /bin
#   - /etc/passwd, /etc/group: root, nobody (65534), app (1000:1000), group extra (2000)
#   - /tmp (1777), /proc, /sys, /dev, /root, /home/app, /etc
# Config: linux/amd64, Env PATH=..., Cmd ["/bin/sh"]. Name when imported with
# `ctr images import`: docker.io/library/busybox:local (on containerd 1.6, 1.7 and 2.1).
# Deterministic: fixed mtimes, sorted names, numeric root ownership, uncompressed layer.
# Needs only coreutils, GNU tar and busybox-static. Rebuilds only when the output is missing or
# older than this script or /bin/busybox (set MYPOD_IMAGE_FORCE=1 to force).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO/.cache/images/busybox.tar}"
NAME="docker.io/library/busybox:local"
BUSYBOX=/bin/busybox
EPOCH=1700000000 # fixed mtime for every file in the image: 2023-11-14T22:13:20Z
CREATED="2023-11-14T22:13:20Z"

log() { echo "build-image.sh: $*"; }

if ! dpkg -S "$BUSYBOX" 2>/dev/null | grep -q '^busybox-static:'; then
    echo "build-image.sh: ERROR: $BUSYBOX is not from Debian's busybox-static (apt-get install busybox-static)" >&2
    exit 1
fi
if [ -z "${MYPOD_IMAGE_FORCE:-}" ] && [ -s "$OUT" ] && [ "$OUT" -nt "${BASH_SOURCE[0]}" ] && [ "$OUT" -nt "$BUSYBOX" ]; then
    log "up to date: $OUT"
    exit 0
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"
LAYOUT="$WORK/layout"
mkdir -p "$ROOT" "$LAYOUT/blobs/sha256"

# --- root filesystem -------------------------------------------------------------------------------
umask 022
mkdir -p "$ROOT"/{bin,etc,proc,sys,dev,root,tmp,home/app,usr/bin,var}
chmod 1777 "$ROOT/tmp"
chmod 0700 "$ROOT/root"
install -m 0755 "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] && continue
    ln -s busybox "$ROOT/bin/$applet"
done
cat >"$ROOT/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
cat >"$ROOT/etc/group" <<'GROUP'
root:x:0:
app:x:1000:
extra:x:2000:app
nogroup:x:65534:
GROUP
chmod 0644 "$ROOT/etc/passwd" "$ROOT/etc/group"

# --- layer --------------------------------------------------------------------------------------
LAYER="$WORK/layer.tar"
find "$ROOT" -exec touch -h -d "@$EPOCH" {} +
tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$ROOT" -cf "$LAYER" .
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
LAYER_SHA="$(sha "$LAYER")"
LAYER_SIZE="$(size "$LAYER")"
mv "$LAYER" "$LAYOUT/blobs/sha256/$LAYER_SHA"

# --- config ---------------------------------------------------------------------------------------
CONFIG="$WORK/config.json"
cat >"$CONFIG" <<JSON
{"architecture":"amd64","os":"linux","created":"$CREATED","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:$LAYER_SHA"]},"history":[{"created":"$CREATED","created_by":"mypod scripts/build-image.sh from Debian busybox-static"}]}
JSON
CONFIG_SHA="$(sha "$CONFIG")"
CONFIG_SIZE="$(size "$CONFIG")"
mv "$CONFIG" "$LAYOUT/blobs/sha256/$CONFIG_SHA"

# --- manifest ------------------------------------------------------------------------------------
MANIFEST="$WORK/manifest.json"
cat >"$MANIFEST" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$CONFIG_SHA","size":$CONFIG_SIZE},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$LAYER_SHA","size":$LAYER_SIZE}]}
JSON
MANIFEST_SHA="$(sha "$MANIFEST")"
MANIFEST_SIZE="$(size "$MANIFEST")"
mv "$MANIFEST" "$LAYOUT/blobs/sha256/$MANIFEST_SHA"

# --- index + layout ---------------------------------------------------------------------------------
# io.containerd.image.name gives the full name to every containerd version's importer;
# org.opencontainers.image.ref.name (the tag) is what the OCI spec and other tools read.
cat >"$LAYOUT/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$MANIFEST_SHA","size":$MANIFEST_SIZE,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"$NAME","org.opencontainers.image.ref.name":"local"}}]}
JSON
echo '{"imageLayoutVersion":"1.0.0"}' >"$LAYOUT/oci-layout"

mkdir -p "$(dirname "$OUT")"
find "$LAYOUT" -exec touch -h -d "@$EPOCH" {} +
tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$LAYOUT" -cf "$OUT.partial" oci-layout index.json blobs
mv "$OUT.partial" "$OUT"
log "built $OUT ($(size "$OUT") bytes, sha256 $(sha "$OUT"))"
log "  name $NAME, manifest sha256:$MANIFEST_SHA, layer sha256:$LAYER_SHA ($("$BUSYBOX" --list | wc -l) applets)"
