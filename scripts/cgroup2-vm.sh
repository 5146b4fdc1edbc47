#!/usr/bin/env bash
# Runs mypod's end-to-end tests (crate mypod-tests) on a cgroup2-only machine: a small KVM guest
# that boots Debian bookworm's kernel with `systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all`
# (no systemd runs: a busybox /init mounts cgroup2 alone at /sys/fs/cgroup) and sees this
# host's root filesystem read-only over 9p under a tmpfs overlay, so the host's build, containerd
# 1.6/1.7/2.1 and .cache/ images are all there at the same paths, and nothing the guest writes
# reaches the host. Needs root and /dev/kvm; installs qemu-system-x86 and busybox-static with apt
# and unpacks the kernel package under .cache/cgroup2-vm/ (apt-get download + dpkg -x).
#
#   scripts/cgroup2-vm.sh                          # every ctr e2e test module (not cri_*), 3 versions
#   scripts/cgroup2-vm.sh --test first_light::hello  # one module's tests matching a path prefix
#   scripts/cgroup2-vm.sh --test exec -- --skip v1_6 # args after the --test options (and after
#                                                  # `--`) go to the test binary (libtest args)
#   scripts/cgroup2-vm.sh --exec 'cat /proc/self/cgroup; stat -fc %T /sys/fs/cgroup'
#
# Options: --test FILTER (repeatable: a module of tests/tests/e2e/, or a test path prefix; cri_*
# modules only when named), --exec CMD (run CMD with bash in the repo instead of tests),
# --no-build (use the newest e2e test binary in target/debug/deps).
# Env: MYPOD_TEST_RUNTIME (mypod or runc) is passed on to the guest's tests.
# CGROUP2_VM_TIMEOUT (seconds, default 1200), CGROUP2_VM_MEM (default 4G), CGROUP2_VM_CPUS
# (default 2), CGROUP2_VM_KERNEL_PKG (a kernel package; default: what bookworm's linux-image-amd64
# depends on). Exits with the guest's exit status (124: timed out, 125: the guest failed to
# report one). The serial console streams to the terminal and is kept, with the containerd logs of
# the guest's tests, in target/cgroup2-vm/ (console.log, test-logs/, summary).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HERE="$REPO/scripts/cgroup2-vm"
CACHE="$REPO/.cache/cgroup2-vm"
OUT="$REPO/target/cgroup2-vm"
TIMEOUT="${CGROUP2_VM_TIMEOUT:-1200}"
MEM="${CGROUP2_VM_MEM:-4G}"
CPUS="${CGROUP2_VM_CPUS:-2}"

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "cgroup2-vm.sh: not root, re-running through sudo"
    exec sudo -E env "PATH=$PATH" bash "$0" "$@"
fi

log() { echo "cgroup2-vm.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# --- arguments -------------------------------------------------------------------------------------
TESTS=()
TEST_ARGS=()
EXEC=""
BUILD=1
while [ $# -gt 0 ]; do
    case "$1" in
    --test) [ $# -ge 2 ] || die "--test needs a name"; TESTS+=("$2"); shift 2 ;;
    --test=*) TESTS+=("${1#--test=}"); shift ;;
    --exec) [ $# -ge 2 ] || die "--exec needs a command"; EXEC="$2"; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; TEST_ARGS+=("$@"); break ;;
    *) TEST_ARGS+=("$1"); shift ;;
    esac
done

# --- accelerator -----------------------------------------------------------------------------------
# KVM where the CPU offers hardware virtualisation (vmx/svm) to this machine. Where /dev/kvm is
# there without it (this VM: /dev/kvm is kvm_pvm, which runs only PVM-enabled guest kernels; a
# stock kernel hangs right after "Probing EDD"), fall back to TCG (software emulation, slower).
ACCEL="${CGROUP2_VM_ACCEL:-auto}"
if [ "$ACCEL" = auto ]; then
    if [ -c /dev/kvm ] && grep -qw -E 'vmx|svm' /proc/cpuinfo; then
        ACCEL=kvm
    else
        ACCEL=tcg
        log "no hardware virtualisation here ($([ -d /sys/module/kvm_pvm ] && echo "/dev/kvm is kvm_pvm: PVM guest kernels only" || echo "no vmx/svm, or no /dev/kvm")): using TCG"
    fi
fi
case "$ACCEL" in
kvm) ACCEL_ARGS=(-enable-kvm -cpu host) ;;
tcg) ACCEL_ARGS=(-accel tcg,thread=multi,tb-size=1024 -cpu max) ;;
*) die "CGROUP2_VM_ACCEL must be auto, kvm or tcg" ;;
esac

# --- packages --------------------------------------------------------------------------------------
export DEBIAN_FRONTEND=noninteractive
missing=()
for p in qemu-system-x86 busybox-static; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || die "$BUSYBOX (busybox-static) is missing"

# --- the guest's kernel: a Debian bookworm kernel package, unpacked once --------------------------
# (This host's own kernel is not usable: /boot and /lib/modules are empty here.)
kernel_dir() {
    local pkg=${CGROUP2_VM_KERNEL_PKG:-}
    if [ -z "$pkg" ]; then
        # Reuse what is unpacked (no network needed), newest first.
        local d
        d=$(ls -d "$CACHE"/linux-image-*/ 2>/dev/null | sort -V | tail -n 1)
        if [ -n "$d" ] && [ -e "$d/.complete" ]; then echo "${d%/}"; return; fi
        pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1)
        if [ -z "$pkg" ]; then
            apt-get update -qq
            pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1)
        fi
        [ -n "$pkg" ] || die "cannot tell which kernel package linux-image-amd64 depends on"
    fi
    local dir="$CACHE/$pkg"
    if [ ! -e "$dir/.complete" ]; then
        log "unpacking kernel package $pkg into $dir"
        rm -rf "$dir" "$dir.tmp"
        mkdir -p "$dir.tmp/deb"
        (cd "$dir.tmp/deb" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
            { apt-get update -qq && (cd "$dir.tmp/deb" && apt-get download -q "$pkg" >/dev/null); } ||
            die "apt-get download $pkg failed"
        dpkg -x "$dir.tmp"/deb/*.deb "$dir.tmp/root"
        local kver
        kver=$(ls "$dir.tmp/root/lib/modules")
        # modules.dep for busybox modprobe in the guest (modules loaded on demand).
        "$BUSYBOX" depmod -b "$dir.tmp/root" "$kver"
        rm -rf "$dir.tmp/deb"
        mv "$dir.tmp" "$dir"
        touch "$dir/.complete"
    fi
    echo "$dir"
}
KDIR=$(kernel_dir)
KVER=$(ls "$KDIR/root/lib/modules")
VMLINUZ="$KDIR/root/boot/vmlinuz-$KVER"
MODDIR="$KDIR/root/lib/modules/$KVER"
[ -f "$VMLINUZ" ] || die "no kernel image at $VMLINUZ"

# --- the binaries ----------------------------------------------------------------------------------
E2E=""  # the one e2e test binary (tests/tests/e2e/)
cd "$REPO"
if [ -z "$EXEC" ]; then
    if [ "$BUILD" = 1 ]; then
        log "building the shim (release) and the e2e test binary (cargo)"
        cargo build --release -p containerd-shim-mypod-v2 >&2
        E2E=$(cargo test -p mypod-tests --test e2e --no-run --message-format=json 2>/dev/null |
            sed -n 's/.*"target":{"kind":\["test"\],[^}]*"name":"e2e".*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    else
        E2E=$(ls -t target/debug/deps/e2e-???????????????? 2>/dev/null | head -n 1)
    fi
    [ -n "$E2E" ] && [ -x "$E2E" ] || die "no e2e test binary found (build: cargo test -p mypod-tests --no-run)"
    [ -x target/release/containerd-shim-mypod-v2 ] || die "target/release/containerd-shim-mypod-v2 is missing"
    if [ "${#TESTS[@]}" -eq 0 ]; then
        for name in $("$E2E" --list 2>/dev/null | sed -n 's/^\([a-z_0-9]*\)::.*: test$/\1/p' | sort -u); do
            case "$name" in cri_*) ;; *) TESTS+=("$name") ;; esac
        done
    fi
    # A bare module name selects that module's tests only (not another whose name contains it).
    for i in "${!TESTS[@]}"; do
        case "${TESTS[$i]}" in *::*) ;; *) TESTS[$i]="${TESTS[$i]}::" ;; esac
    done
fi

# --- run directory, cleaned up on every exit ------------------------------------------------------
mkdir -p "$OUT"
RUN=$(mktemp -d /tmp/cgroup2-vm.XXXXXX)
QPID=""
TPID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
        kill -TERM "$QPID" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$QPID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$QPID" 2>/dev/null || true
        wait "$QPID" 2>/dev/null || true
    fi
    if [ -n "$TPID" ] && kill -0 "$TPID" 2>/dev/null; then
        kill "$TPID" 2>/dev/null || true
        wait "$TPID" 2>/dev/null || true
    fi
    [ ! -f "$RUN/console" ] || tr -d '\r' <"$RUN/console" >"$OUT/console.log"
    rm -rf "$RUN"
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM HUP

SHARE="$RUN/share"
mkdir -p "$SHARE/bin" "$RUN/initramfs"

# Snapshots of the binaries under test: others may rebuild target/ while the guest runs.
GSHARE=/run/cgroup2-vm/share
if [ -z "$EXEC" ]; then
    cp target/release/containerd-shim-mypod-v2 "$SHARE/bin/"
    cp "$E2E" "$SHARE/bin/e2e"
fi

# --- initramfs: static busybox, /init, the modules for virtio-pci, 9p and overlay ----------------
declare -A KO=() SEEN=()
ORDER=()
while read -r f; do
    n=${f##*/}
    n=${n%.ko}
    KO[${n//-/_}]=$f
done < <(find "$MODDIR/kernel" -name '*.ko')
resolve() {
    local m=${1//-/_} d
    [ -z "${SEEN[$m]:-}" ] || return 0
    SEEN[$m]=1
    [ -n "${KO[$m]:-}" ] || return 0 # built into the kernel
    for d in $(tr '\0' '\n' <"${KO[$m]}" | sed -n 's/^depends=//p' | tr ',' ' '); do resolve "$d"; done
    ORDER+=("$m")
}
for m in virtio_pci 9pnet_virtio 9p overlay; do resolve "$m"; done
IR="$RUN/initramfs"
mkdir -p "$IR"/{bin,dev,proc,sys,modules}
cp "$BUSYBOX" "$IR/bin/busybox"
install -m 0755 "$HERE/init" "$IR/init"
for m in "${ORDER[@]}"; do cp "${KO[$m]}" "$IR/modules/$m.ko"; done
printf '%s\n' "${ORDER[@]}" >"$IR/modules/order"
(cd "$IR" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null) >"$RUN/initrd"

# --- what the guest runs ---------------------------------------------------------------------------
cp "$HERE/stage2" "$SHARE/stage2"
{
    printf 'REPO=%q\n' "$REPO"
    printf 'KVER=%q\n' "$KVER"
    printf 'MODULES_DIR=%q\n' "$MODDIR"
} >"$SHARE/config"
{
    echo 'set -u'
    echo "SHARE=$GSHARE"
    cat <<'EOF'
echo "cgroup2-vm: kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024) " MiB"}' /proc/meminfo)"
echo "cgroup2-vm: /proc/self/cgroup: $(cat /proc/self/cgroup | tr '\n' ' ')"
echo "cgroup2-vm: stat -fc %T /sys/fs/cgroup: $(stat -fc %T /sys/fs/cgroup)"
echo "cgroup2-vm: cgroup mounts: $(awk '$3 ~ /^cgroup/' /proc/self/mounts | tr '\n' ';')"
echo "cgroup2-vm: root subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ] || grep -q '^[0-9]*:[^:]' /proc/self/cgroup; then
    echo "cgroup2-vm: NOT a cgroup2-only machine"; exit 125
fi
EOF
    if [ -n "$EXEC" ]; then
        printf 'bash -c %q\n' "$EXEC"
    else
        printf 'export RUST_BACKTRACE=0 MYPOD_SHIM=%q\n' "$GSHARE/bin/containerd-shim-mypod-v2"
        # The runtime under test (mypod, or runc to check the tests themselves) reaches the guest.
        [ -z "${MYPOD_TEST_RUNTIME:-}" ] || printf 'export MYPOD_TEST_RUNTIME=%q\n' "$MYPOD_TEST_RUNTIME"
        printf 'echo "cgroup2-vm: MYPOD_TEST_RUNTIME=${MYPOD_TEST_RUNTIME:-mypod}"\n'
        printf 'ARGS=('; [ "${#TEST_ARGS[@]}" -eq 0 ] || printf ' %q' "${TEST_ARGS[@]}"; printf ' )\n'
        printf 'TESTS=('; printf ' %q' "${TESTS[@]}"; printf ' )\n'
        cat <<'EOF'
case " ${ARGS[*]} " in *" --test-threads"*) ;; *) ARGS+=(--test-threads 2) ;; esac
rc=0
: >"$SHARE/summary"
for t in "${TESTS[@]}"; do
    echo; echo "==== cgroup2-vm: $t ${ARGS[*]}"
    t0=$(date +%s)
    "$SHARE/bin/e2e" "$t" "${ARGS[@]}" 2>&1 | tee "/tmp/$t.out"
    r=${PIPESTATUS[0]}
    res=$(grep '^test result:' "/tmp/$t.out" | tail -n 1)
    fails=$(sed -n '/^failures:$/,/^$/p' "/tmp/$t.out" | grep '^    ' | sed 's/^ *//' | tr '\n' ' ')
    printf '%-18s %s in %ss: %s%s\n' "$t" "$([ "$r" = 0 ] && echo ok || echo "FAILED (exit $r)")" \
        "$(( $(date +%s) - t0 ))" "${res:-no test result}" "${fails:+ -- failed: $fails}" >>"$SHARE/summary"
    [ "$r" = 0 ] || rc=1
done
echo; echo "==== cgroup2-vm summary"; cat "$SHARE/summary"
exit $rc
EOF
    fi
} >"$SHARE/cmd"

# --- boot ------------------------------------------------------------------------------------------
CONSOLE="$OUT/console.log"
: >"$RUN/console"
APPEND="console=ttyS0 quiet loglevel=4 panic=-1 rdinit=/init systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all 8250.nr_uarts=1 tsc=reliable ${CGROUP2_VM_APPEND:-}"
log "booting $KVER ($ACCEL, $CPUS vCPUs, $MEM), timeout ${TIMEOUT}s; console: $CONSOLE"
qemu-system-x86_64 "${ACCEL_ARGS[@]}" -smp "$CPUS" -m "$MEM" -M q35 \
    -nodefaults -no-user-config -display none -monitor none -no-reboot \
    -serial "file:$RUN/console" \
    -kernel "$VMLINUZ" -initrd "$RUN/initrd" -append "$APPEND" \
    -virtfs "local,path=/,mount_tag=root,security_model=passthrough,readonly=on,multidevs=remap" \
    -virtfs "local,path=$SHARE,mount_tag=share,security_model=passthrough" \
    </dev/null >"$RUN/qemu.out" 2>&1 &
QPID=$!
# Stream the console (qemu writes it unbuffered); tail ends on its own once qemu has exited.
tail -n +1 -F --pid="$QPID" "$RUN/console" 2>/dev/null | sed -u 's/\r$//' &
TPID=$!
start=$(date +%s)
timed_out=0
while kill -0 "$QPID" 2>/dev/null; do
    if [ $(($(date +%s) - start)) -ge "$TIMEOUT" ]; then
        log "timeout: the guest ran ${TIMEOUT}s, killing it"
        timed_out=1
        kill -TERM "$QPID" 2>/dev/null || true
        sleep 2
        kill -KILL "$QPID" 2>/dev/null || true
        break
    fi
    sleep 1
done
qrc=0
wait "$QPID" || qrc=$?
QPID=""
wait "$TPID" 2>/dev/null || true
TPID=""
rm -rf "$OUT/test-logs" "$OUT/summary"
[ -d "$SHARE/test-logs" ] && cp -a "$SHARE/test-logs" "$OUT/test-logs"
[ -f "$SHARE/summary" ] && cp "$SHARE/summary" "$OUT/summary"
if [ -s "$RUN/qemu.out" ]; then log "qemu said:"; sed 's/^/  /' "$RUN/qemu.out" >&2; fi

if [ "$timed_out" = 1 ]; then
    rc=124
elif [ -f "$SHARE/rc" ]; then
    rc=$(cat "$SHARE/rc")
else
    log "the guest ended without an exit status (qemu exit $qrc); see $CONSOLE"
    rc=125
fi
log "guest finished in $(($(date +%s) - start))s with exit status $rc"
exit "$rc"
