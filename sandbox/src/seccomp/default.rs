//! mypod's default seccomp profile, for `seccomp = "default"`: containerd's RuntimeDefault
//! (moby's default profile) with its capability-dependent additions, minus what mypod
//! denies to every container whatever its capabilities ([`DENIED`]), with `clone` and
//! `unshare` allowed only without CLONE_NEWUSER and `clone3` answered ENOSYS
//! ([`RESTRICTED`]).
//!
//! Everything not allowed gets EPERM (the default action, as containerd's). The profile is
//! an OCI [`LinuxSeccomp`], compiled like any other ([`filter`] asks libseccomp for a
//! binary tree, so a syscall costs a handful of comparisons). The lists are in `allowed`.

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall, Spec,
};

use super::{Filter, SeccompError};

pub use super::Optimize;

mod allowed;
#[cfg(test)]
mod tests;

/// Denied to every container, even where containerd's profile allows them for a
/// capability: (syscall, why).
#[rustfmt::skip]
pub const DENIED: &[(&str, &str)] = &[
    ("bpf", "loads programs into the kernel, a large attack surface (containerd: CAP_SYS_ADMIN or CAP_BPF)"),
    ("perf_event_open", "kernel profiling: leaks kernel addresses, long CVE history (containerd: CAP_SYS_ADMIN or CAP_PERFMON)"),
    ("io_uring_setup", "io_uring runs I/O that seccomp never sees and is a steady source of kernel exploits"),
    ("io_uring_enter", "io_uring, see io_uring_setup"),
    ("io_uring_register", "io_uring, see io_uring_setup"),
    ("userfaultfd", "stalls kernel page faults at will, a staple of kernel race exploits"),
    ("keyctl", "the kernel keyrings are not namespaced: containers would share the host's keys"),
    ("add_key", "kernel keyrings, see keyctl"),
    ("request_key", "kernel keyrings, see keyctl"),
    ("open_by_handle_at", "opens any file of a mounted filesystem, escaping the container's root (containerd: CAP_DAC_READ_SEARCH)"),
    ("kexec_load", "replaces the host's kernel"),
    ("kexec_file_load", "replaces the host's kernel"),
    ("init_module", "loads code into the host's kernel (containerd: CAP_SYS_MODULE)"),
    ("finit_module", "loads code into the host's kernel (containerd: CAP_SYS_MODULE)"),
    ("delete_module", "unloads the host's kernel modules (containerd: CAP_SYS_MODULE)"),
    ("mount", "mounts are set up by mypod; changing them can uncover masked paths (containerd: CAP_SYS_ADMIN)"),
    ("umount", "mount family, see mount"),
    ("umount2", "mount family, see mount"),
    ("fsopen", "new mount API, see mount"),
    ("fsconfig", "new mount API, see mount"),
    ("fsmount", "new mount API, see mount"),
    ("fspick", "new mount API: reconfigures an existing mount, see mount"),
    ("move_mount", "new mount API, see mount"),
    ("open_tree", "new mount API: clones mounts, see mount"),
    ("mount_setattr", "changes mount flags (read-only, idmaps), see mount"),
    ("pivot_root", "changes the container's root, which only mypod does, at setup"),
    ("swapon", "host memory management"),
    ("swapoff", "host memory management"),
    ("reboot", "reboots the host or ends the pid namespace (containerd: CAP_SYS_BOOT)"),
];

/// Allowed only with argument checks, or answered with an errno other than EPERM:
/// (syscall, what and why).
#[rustfmt::skip]
pub const RESTRICTED: &[(&str, &str)] = &[
    ("clone", "without CLONE_NEWUSER; without any CLONE_NEW* flag unless CAP_SYS_ADMIN (new user namespaces open the kernel's namespaced-root code to anyone)"),
    ("unshare", "with CAP_SYS_ADMIN only (as containerd), and never with CLONE_NEWUSER"),
    ("clone3", "ENOSYS: its flags are in memory, which seccomp cannot read, so libc falls back to clone"),
    ("socket", "any family but AF_ALG (the kernel's crypto API) and AF_VSOCK (host-guest sockets), as containerd"),
    ("personality", "only the personas containerd allows (PER_LINUX, PER_LINUX32, UNAME26, both, and the query)"),
];

/// The personality(2) arguments allowed: PER_LINUX, PER_LINUX32, UNAME26,
/// PER_LINUX32|UNAME26 and 0xffffffff (query the current persona).
const PERSONAS: &[u64] = &[0x0, 0x0008, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Every CLONE_NEW* flag clone(2) takes.
const CLONE_NEW_ANY: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;
const CLONE_NEWUSER: u64 = libc::CLONE_NEWUSER as u64;

/// The argument of clone(2) holding the flags (the second on s390).
#[cfg(target_arch = "s390x")]
const CLONE_FLAGS_ARG: usize = 1;
#[cfg(not(target_arch = "s390x"))]
const CLONE_FLAGS_ARG: usize = 0;

/// The default profile for a process whose bounding set has none of the capabilities
/// containerd's profile looks at: the strictest variant. Use [`profile_for`] with the
/// container's bounding set for containerd's capability-dependent additions (`chroot` with
/// CAP_SYS_CHROOT, which is in containerd's default set, for one).
pub fn profile() -> LinuxSeccomp {
    profile_for(&Capabilities::new())
}

/// The default profile for a process whose bounding set is `spec`'s
/// `process.capabilities.bounding` (none when absent).
pub fn profile_for_spec(spec: &Spec) -> LinuxSeccomp {
    let bounding = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().clone())
        .unwrap_or_default();
    profile_for(&bounding)
}

/// The default profile for a process with this bounding set: containerd's groups for the
/// capabilities in it, minus [`DENIED`] and [`RESTRICTED`] (which get their own rules).
pub fn profile_for(bounding: &Capabilities) -> LinuxSeccomp {
    let admin = bounding.contains(&Capability::SysAdmin);
    let mut names: Vec<&str> = allowed::ALLOWED
        .iter()
        .chain(allowed::ARCH_ALLOWED)
        .copied()
        .collect();
    for (cap, group) in allowed::BY_CAPABILITY {
        if bounding.contains(cap) {
            names.extend_from_slice(group);
        }
    }
    names.retain(|n| !is_listed(DENIED, n) && !is_listed(RESTRICTED, n));
    names.sort_unstable();
    names.dedup();

    let mut calls = vec![rule(&names, LinuxSeccompAction::ScmpActAllow, None, None)];
    // socket(2): three ranges that leave out AF_ALG and AF_VSOCK (one rule with two
    // "not equal" conditions on the same argument would be ORed, allowing both).
    let (alg, vsock) = (libc::AF_ALG as u64, libc::AF_VSOCK as u64);
    for (op, value) in [
        (LinuxSeccompOperator::ScmpCmpLt, alg),
        (LinuxSeccompOperator::ScmpCmpEq, alg + 1),
        (LinuxSeccompOperator::ScmpCmpGt, vsock),
    ] {
        calls.push(allow_if("socket", arg(0, op, value, None)));
    }
    for &persona in PERSONAS {
        calls.push(allow_if(
            "personality",
            arg(0, LinuxSeccompOperator::ScmpCmpEq, persona, None),
        ));
    }
    // clone(2): flags & mask == 0. unshare(2): CAP_SYS_ADMIN only, never a user namespace.
    let mask = if admin { CLONE_NEWUSER } else { CLONE_NEW_ANY };
    let masked = LinuxSeccompOperator::ScmpCmpMaskedEq;
    calls.push(allow_if(
        "clone",
        arg(CLONE_FLAGS_ARG, masked, mask, Some(0)),
    ));
    if admin {
        calls.push(allow_if("unshare", arg(0, masked, CLONE_NEWUSER, Some(0))));
    }
    let errno = LinuxSeccompAction::ScmpActErrno;
    calls.push(rule(&["clone3"], errno, Some(libc::ENOSYS as u32), None));
    // The default action already denies these; listed so that the profile says so (and so
    // that they count for the ENOSYS stub's "newer than the profile" threshold).
    let denied: Vec<&str> = DENIED.iter().map(|(n, _)| *n).collect();
    calls.push(rule(&denied, errno, Some(libc::EPERM as u32), None));

    let mut sc = LinuxSeccomp::default();
    sc.set_default_action(errno);
    sc.set_architectures(Some(arches()));
    sc.set_syscalls(Some(calls));
    sc
}

/// Compiles a default profile with libseccomp's binary-tree layout (see [`Optimize`]);
/// the same checks as for any profile otherwise. For the init helper, which loads it.
#[cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "init compiles every profile with Filter::compile, which already picks the binary tree for a profile this large; the tests compare layouts through this"
    )
)]
pub(crate) fn filter(sc: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    Filter::compile_profile(sc, Optimize::BinaryTree)
}

/// The architectures of the host's ABIs, as containerd lists them: a 64-bit host runs its
/// 32-bit binaries too.
fn arches() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchArm, Arch::ScmpArchAarch64]
    } else {
        // Only the native one (libseccomp's default).
        Vec::new()
    }
}

fn is_listed(table: &[(&str, &str)], name: &str) -> bool {
    table.iter().any(|(n, _)| *n == name)
}

/// An argument condition. oci-spec's builder cannot fail here (every field is set or has a
/// default); were it to, the default condition (argument 0 equal to 0) only narrows what
/// the rule allows, and the tests would notice.
fn arg(index: usize, op: LinuxSeccompOperator, value: u64, two: Option<u64>) -> LinuxSeccompArg {
    let b = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    match two {
        Some(v) => b.value_two(v),
        None => b,
    }
    .build()
    .unwrap_or_default()
}

fn allow_if(name: &str, cond: LinuxSeccompArg) -> LinuxSyscall {
    rule(&[name], LinuxSeccompAction::ScmpActAllow, None, Some(cond))
}

fn rule(
    names: &[&str],
    action: LinuxSeccompAction,
    errno: Option<u32>,
    cond: Option<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(action);
    s.set_errno_ret(errno);
    s.set_args(cond.map(|c| vec![c]));
    s
}
