#!/usr/bin/env bash
# Prepares a Debian bookworm machine for mypod's tests. Idempotent; run as root (or it re-runs
# itself through sudo). Installs containerd 1.6 + runc + busybox-static from bookworm, and for
# the CRI tests the CNI plugins (containernetworking-plugins: /usr/lib/cni), iproute2, gcc +
# libc6-dev (the static pause binary), protobuf-compiler (protoc, for the k8s-cri crate's
# build script) and criu (containerd 2.x's CRI checks for it before it asks the runtime to
# checkpoint: tests/tests/e2e/cri_lifecycle.rs); unpacks containerd 1.7 (trixie) and 2.1 (sid)
# under .cache/ without installing them, and builds the test images .cache/images/busybox.tar,
# pause.tar and pause-broken.tar.
# Exports nothing.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$REPO/.cache"

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: not root, re-running through sudo"
    exec sudo -E bash "$0" "$@"
fi

log() { echo "setup.sh: $*"; }
export DEBIAN_FRONTEND=noninteractive

# --- apt suites: trixie and sid, pinned so low that nothing is ever upgraded from them -----------
SOURCES=/etc/apt/sources.list.d/mypod-extra-suites.sources
PINS=/etc/apt/preferences.d/mypod-extra-suites
want_sources='# Added by mypod scripts/setup.sh: only for "apt-get download containerd/trixie|sid".
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
want_pins='# Added by mypod scripts/setup.sh: never install or upgrade anything from trixie or sid.
Package: *
Pin: release n=trixie
Pin-Priority: 1

Package: *
Pin: release n=sid
Pin-Priority: 1'
changed=0
if [ "$(cat "$SOURCES" 2>/dev/null)" != "$want_sources" ]; then
    printf '%s\n' "$want_sources" >"$SOURCES"; changed=1; log "wrote $SOURCES"
fi
if [ "$(cat "$PINS" 2>/dev/null)" != "$want_pins" ]; then
    printf '%s\n' "$want_pins" >"$PINS"; changed=1; log "wrote $PINS (Pin-Priority 1)"
fi

# --- packages from bookworm ----------------------------------------------------------------------
PKGS=(containerd runc busybox-static ca-certificates
    containernetworking-plugins iproute2 gcc libc6-dev protobuf-compiler tmux libseccomp-dev pkg-config
    criu)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
lists_fresh() {
    # Both extra suites must have package lists, or apt-get download cannot find them.
    ls /var/lib/apt/lists/*_dists_trixie_main_binary-amd64_Packages* >/dev/null 2>&1 &&
        ls /var/lib/apt/lists/*_dists_sid_main_binary-amd64_Packages* >/dev/null 2>&1
}
need_17=1; need_21=1
[ -x "$CACHE/containerd-1.7/usr/bin/containerd" ] && need_17=0
[ -x "$CACHE/containerd-2.1/usr/bin/containerd" ] && need_21=0
if [ "$changed" = 1 ] || [ "${#missing[@]}" -gt 0 ] || { [ $((need_17 + need_21)) -gt 0 ] && ! lists_fresh; }; then
    log "apt-get update"
    apt-get update -qq
fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    log "already installed: ${PKGS[*]}"
fi
# The tests start their own containerd instances; the packaged service is not needed, but leave
# its state to the machine's owner.

# --- Rust toolchain ------------------------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
    log "cargo is MISSING: no Rust toolchain on PATH or in ~/.cargo; trying apt-get install cargo"
    apt-get install -y -qq --no-install-recommends cargo rustc
fi
log "rust: $(cargo --version)"

# --- containerd 1.7 (trixie) and 2.1 (sid), unpacked under .cache/ -------------------------------
fetch_containerd() { # suite dir expected-prefix
    local suite=$1 dir=$2 prefix=$3
    if [ -x "$dir/usr/bin/containerd" ]; then
        log "containerd $(cat "$dir/.deb-version" 2>/dev/null || echo '?') from $suite already in $dir"
        return
    fi
    local tmp
    tmp="$(mktemp -d)"
    # apt drops to user _apt for downloads: let it write there.
    if id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi
    if ! (cd "$tmp" && apt-get download -qq "containerd/$suite"); then
        # The suite moved on since the lists were fetched: refresh them once and retry.
        log "apt-get download containerd/$suite failed; apt-get update and retry"
        apt-get update -qq
        (cd "$tmp" && apt-get download -qq "containerd/$suite")
    fi
    local deb
    deb="$(ls "$tmp"/containerd_*.deb)"
    local ver
    ver="$(dpkg-deb -f "$deb" Version)"
    log "downloaded $(basename "$deb") (version $ver) from $suite"
    case "$ver" in
        "$prefix"*) ;;
        *) echo "setup.sh: ERROR: containerd/$suite is $ver, expected $prefix*" >&2; rm -rf "$tmp"; exit 1 ;;
    esac
    rm -rf "$dir.partial"
    mkdir -p "$dir.partial"
    dpkg -x "$deb" "$dir.partial"
    echo "$ver" >"$dir.partial/.deb-version"
    mv "$dir.partial" "$dir"
    rm -rf "$tmp"
    log "unpacked into $dir: $("$dir/usr/bin/containerd" --version)"
}
mkdir -p "$CACHE"
fetch_containerd trixie "$CACHE/containerd-1.7" "1.7."
fetch_containerd sid "$CACHE/containerd-2.1" "2.1."
log "containerd 1.6: $(/usr/bin/containerd --version)"

# --- .gitignore -----------------------------------------------------------------------------------
if ! grep -qxF '.cache/' "$REPO/.gitignore" 2>/dev/null; then
    echo '.cache/' >>"$REPO/.gitignore"
    log "added .cache/ to .gitignore"
fi

# --- CNI plugins the CRI tests use --------------------------------------------------------------------
for plugin in bridge host-local loopback; do
    [ -x "/usr/lib/cni/$plugin" ] || { echo "setup.sh: ERROR: /usr/lib/cni/$plugin is missing (containernetworking-plugins)" >&2; exit 1; }
done

# --- test images -----------------------------------------------------------------------------------
"$REPO/scripts/build-image.sh"
"$REPO/scripts/build-pause-image.sh"
log "done"
