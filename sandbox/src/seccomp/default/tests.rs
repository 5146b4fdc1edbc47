//! The default profile: it validates, compiles, names only real syscalls, and does in a
//! forked child what it says (denials, ENOSYS for clone3, ordinary calls untouched).

use std::collections::HashSet;

use libseccomp::ScmpSyscall;
use oci_spec::runtime::{Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction};

use super::allowed::{ALLOWED, ARCH_ALLOWED, BY_CAPABILITY, NEWER_THAN_LIBSECCOMP};
use super::{filter, profile, profile_for, profile_for_spec, DENIED, RESTRICTED};
use crate::seccomp::filter::arch;
use crate::seccomp::{in_child, test_spec, Filter, Optimize};

/// Every capability containerd's profile looks at.
fn all_caps() -> Capabilities {
    BY_CAPABILITY.iter().map(|(c, _)| *c).collect()
}

/// The names the profile's rules with `action` and no argument checks cover.
fn unconditional(sc: &LinuxSeccomp, action: LinuxSeccompAction) -> HashSet<String> {
    sc.syscalls()
        .iter()
        .flatten()
        .filter(|s| s.action() == action && s.args().as_deref().unwrap_or_default().is_empty())
        .flat_map(|s| s.names().iter().cloned())
        .collect()
}

#[test]
fn validates_and_compiles_like_any_profile() {
    for sc in [profile(), profile_for(&all_caps())] {
        crate::seccomp::validate(&sc).unwrap();
        // Through config.json's path: a spec carrying it, compiled as runc would.
        let json = serde_json::to_string(&sc).unwrap();
        let via_spec = Filter::compile(&test_spec(&json)).unwrap().unwrap();
        let tree = filter(&sc).unwrap();
        let linear = Filter::compile_profile(&sc, Optimize::Linear).unwrap();
        assert!(tree.prog.len() < 4096 && linear.prog.len() < 4096);
        // Above 32 rules runc's layout is the tree too; the linear one differs.
        assert_eq!(via_spec.prog.len(), tree.prog.len());
        assert_ne!(linear.prog.len(), tree.prog.len());
    }
}

#[test]
fn capabilities_come_from_the_spec_bounding_set() {
    let spec = test_spec(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#);
    assert_eq!(profile_for_spec(&spec), profile());
    let mut spec = spec;
    let mut caps = oci_spec::runtime::LinuxCapabilities::default();
    caps.set_bounding(Some([Capability::SysChroot].into_iter().collect()));
    let mut process = spec.process().clone().unwrap();
    process.set_capabilities(Some(caps));
    spec.set_process(Some(process));
    let allowed = unconditional(&profile_for_spec(&spec), LinuxSeccompAction::ScmpActAllow);
    assert!(allowed.contains("chroot"));
    assert!(!unconditional(&profile(), LinuxSeccompAction::ScmpActAllow).contains("chroot"));
}

#[test]
fn denied_and_restricted_are_never_allowed_unconditionally() {
    let sc = profile_for(&all_caps());
    let allowed = unconditional(&sc, LinuxSeccompAction::ScmpActAllow);
    for (name, _) in DENIED.iter().chain(RESTRICTED) {
        assert!(!allowed.contains(*name), "{name} is allowed");
    }
    // Containerd's table does allow some of them: the subtraction is what denies them.
    let gated: HashSet<&str> = BY_CAPABILITY
        .iter()
        .flat_map(|(_, g)| g.iter().copied())
        .collect();
    for name in [
        "bpf",
        "mount",
        "unshare",
        "reboot",
        "open_by_handle_at",
        "init_module",
    ] {
        assert!(gated.contains(name), "{name}");
    }
    // Some of the capability groups do make it through.
    for name in ["chroot", "setns", "sethostname", "settimeofday", "kcmp"] {
        assert!(
            allowed.contains(name),
            "{name} is not allowed with every capability"
        );
        assert!(!unconditional(&profile(), LinuxSeccompAction::ScmpActAllow).contains(name));
    }
    for (table, what) in [(DENIED, "DENIED"), (RESTRICTED, "RESTRICTED")] {
        for (name, why) in table {
            assert!(!why.is_empty(), "{what}: {name} has no reason");
        }
        let unique: HashSet<_> = table.iter().map(|(n, _)| n).collect();
        assert_eq!(unique.len(), table.len(), "{what} lists a name twice");
    }
}

/// A name libseccomp cannot resolve is skipped by the filter (runc does the same), so a
/// typo would silently allow or deny nothing: every name must be in libseccomp's syscall
/// table, or be one of the few newer syscalls listed (with their kernel) in
/// NEWER_THAN_LIBSECCOMP. libseccomp's table covers every architecture: a name of another
/// architecture (chown32 on x86-64) resolves to a negative pseudo-number, not an error.
#[test]
fn every_name_is_a_syscall() {
    let arches: Vec<_> = super::arches().into_iter().map(arch).collect();
    let known = |name: &str| {
        ScmpSyscall::from_name(name).is_ok()
            || arches
                .iter()
                .any(|a| ScmpSyscall::from_name_by_arch(name, *a).is_ok())
    };
    let newer: HashSet<&str> = NEWER_THAN_LIBSECCOMP.iter().map(|(n, _, _)| *n).collect();
    let names = ALLOWED
        .iter()
        .chain(ARCH_ALLOWED)
        .chain(BY_CAPABILITY.iter().flat_map(|(_, g)| g.iter()))
        .chain(DENIED.iter().map(|(n, _)| n))
        .chain(RESTRICTED.iter().map(|(n, _)| n));
    let mut unknown = Vec::new();
    for name in names {
        if !known(name) && !newer.contains(name) {
            unknown.push(*name);
        }
    }
    assert!(
        unknown.is_empty(),
        "not syscalls libseccomp knows: {unknown:?}"
    );
    // The escape hatch only holds names of the allow-list.
    for name in &newer {
        assert!(ALLOWED.contains(name), "{name}");
    }
    // The denials must resolve on this host, whatever its libseccomp: a denial is not
    // worth much if its name is skipped.
    for (name, _) in DENIED.iter().chain(RESTRICTED) {
        assert!(known(name), "{name}");
    }
}

/// Runs `probe` in a forked child under the default profile (for `caps`); the probe returns
/// 0 or the number of the first check that failed.
fn run(caps: &Capabilities, probe: fn() -> i32) -> i32 {
    in_child(&filter(&profile_for(caps)).unwrap(), probe)
}

/// errno of a raw syscall with all six arguments given, 0 on success.
fn errno6(nr: libc::c_long, a: [libc::c_long; 6]) -> i32 {
    // SAFETY: the probes pass only invalid or harmless arguments (null pointers, bad fds,
    // bad magic numbers), and run in a throwaway child.
    let r = unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]) };
    if r < 0 {
        // SAFETY: reading this thread's errno.
        unsafe { *libc::__errno_location() }
    } else {
        0
    }
}

/// clone(2) with `flags` as fork does it (no new stack): the child exits 7 at once.
/// Returns the errno, or 0 when the child ran and exited 7.
fn clone_and_wait(flags: libc::c_long) -> i32 {
    // SAFETY: without CLONE_VM the child has its own copy of memory; it only calls _exit.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags | libc::SIGCHLD as libc::c_long,
            0,
            0,
            0,
            0,
        )
    };
    match pid {
        // SAFETY: in the child: exit at once.
        0 => unsafe { libc::_exit(7) },
        // SAFETY: reading this thread's errno.
        p if p < 0 => unsafe { *libc::__errno_location() },
        p => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(p as libc::pid_t, &mut status, 0) };
            if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7 {
                0
            } else {
                -1
            }
        }
    }
}

/// The first check (1-based) that is false, 0 when all hold.
fn first_failed(checks: &[bool]) -> i32 {
    checks.iter().position(|ok| !ok).map_or(0, |i| i as i32 + 1)
}

const EPERM: i32 = libc::EPERM;
const NEWUSER: libc::c_long = libc::CLONE_NEWUSER as libc::c_long;

/// What every container is denied, whatever its capabilities.
fn denials() -> Vec<bool> {
    let z = [0; 6];
    vec![
        errno6(libc::SYS_unshare, [NEWUSER, 0, 0, 0, 0, 0]) == EPERM,
        clone_and_wait(NEWUSER) == EPERM,
        errno6(libc::SYS_clone3, z) == libc::ENOSYS,
        errno6(libc::SYS_io_uring_setup, z) == EPERM,
        errno6(libc::SYS_io_uring_enter, [-1, 0, 0, 0, 0, 0]) == EPERM,
        errno6(libc::SYS_bpf, [-1, 0, 0, 0, 0, 0]) == EPERM,
        errno6(libc::SYS_keyctl, [-1, 0, 0, 0, 0, 0]) == EPERM,
        errno6(libc::SYS_add_key, z) == EPERM,
        errno6(libc::SYS_mount, z) == EPERM,
        errno6(libc::SYS_umount2, z) == EPERM,
        errno6(libc::SYS_open_tree, [-1, 0, 0, 0, 0, 0]) == EPERM,
        errno6(libc::SYS_fsopen, z) == EPERM,
        errno6(libc::SYS_mount_setattr, [-1, 0, 0, 0, 0, 0]) == EPERM,
        errno6(libc::SYS_userfaultfd, z) == EPERM,
        errno6(libc::SYS_perf_event_open, z) == EPERM,
        errno6(libc::SYS_open_by_handle_at, [-1, 0, 0, 0, 0, 0]) == EPERM,
        errno6(libc::SYS_delete_module, z) == EPERM,
        errno6(libc::SYS_pivot_root, z) == EPERM,
        errno6(libc::SYS_swapoff, z) == EPERM,
        // Bad magic: EINVAL if the filter let it through.
        errno6(libc::SYS_reboot, z) == EPERM,
        // AF_ALG and AF_VSOCK are refused, the families around them are not.
        errno6(
            libc::SYS_socket,
            [libc::AF_ALG.into(), libc::SOCK_SEQPACKET.into(), 0, 0, 0, 0],
        ) == EPERM,
        errno6(
            libc::SYS_socket,
            [libc::AF_VSOCK.into(), libc::SOCK_STREAM.into(), 0, 0, 0, 0],
        ) == EPERM,
        errno6(
            libc::SYS_socket,
            [libc::AF_UNIX.into(), libc::SOCK_STREAM.into(), 0, 0, 0, 0],
        ) == 0,
        // personality(2): the query yes, ADDR_NO_RANDOMIZE no.
        errno6(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]) == 0,
        errno6(libc::SYS_personality, [0x0040000, 0, 0, 0, 0, 0]) == EPERM,
    ]
}

/// What any program needs, which must keep working.
fn ordinary() -> Vec<bool> {
    let z = [0; 6];
    // SAFETY: plain calls on buffers and descriptors owned by this function.
    unsafe {
        let fd = libc::openat(
            libc::AT_FDCWD,
            c"/proc/self/status".as_ptr(),
            libc::O_RDONLY,
        );
        let mut buf = [0u8; 64];
        let read = fd >= 0 && libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) > 0;
        let mut p = [0; 2];
        let piped = libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) == 0
            && libc::write(p[1], b"x".as_ptr().cast(), 1) == 1
            && libc::read(p[0], buf.as_mut_ptr().cast(), 1) == 1;
        let mut ts = std::mem::zeroed::<libc::timespec>();
        let clock = libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_MONOTONIC, &mut ts) == 0;
        let forked = match libc::fork() {
            0 => libc::_exit(3),
            pid if pid > 0 => {
                let mut status = 0;
                libc::waitpid(pid, &mut status, 0) == pid && libc::WEXITSTATUS(status) == 3
            }
            _ => false,
        };
        vec![
            libc::syscall(libc::SYS_getpid) > 0,
            read,
            piped,
            clock,
            forked,
            // clone without namespace flags, and with the flags of a thread's siblings.
            clone_and_wait(0) == 0,
            clone_and_wait((libc::CLONE_FILES | libc::CLONE_FS) as libc::c_long) == 0,
            errno6(libc::SYS_getrandom, z) == 0,
        ]
    }
}

#[test]
fn denies_what_it_says_without_capabilities() {
    fn probe() -> i32 {
        let mut checks = denials();
        // Without CAP_SYS_ADMIN: no namespace at all, and no unshare.
        checks.push(clone_and_wait(libc::CLONE_NEWUTS as libc::c_long) == EPERM);
        checks.push(errno6(libc::SYS_unshare, [0; 6]) == EPERM);
        checks.push(errno6(libc::SYS_chroot, [0; 6]) == EPERM);
        first_failed(&checks)
    }
    assert_eq!(
        run(&Capabilities::new(), probe),
        0,
        "check failed (1-based)"
    );
}

#[test]
fn denies_what_it_says_even_with_every_capability() {
    fn probe() -> i32 {
        let mut checks = denials();
        // With CAP_SYS_ADMIN: namespaces other than the user namespace are allowed.
        checks.push(errno6(libc::SYS_unshare, [0; 6]) == 0);
        checks.push(
            errno6(
                libc::SYS_unshare,
                [libc::CLONE_NEWUTS.into(), 0, 0, 0, 0, 0],
            ) == 0,
        );
        checks.push(clone_and_wait(libc::CLONE_NEWUTS as libc::c_long) == 0);
        checks.push(clone_and_wait(NEWUSER | libc::CLONE_NEWUTS as libc::c_long) == EPERM);
        first_failed(&checks)
    }
    assert_eq!(run(&all_caps(), probe), 0, "check failed (1-based)");
}

#[test]
fn ordinary_calls_work() {
    fn probe() -> i32 {
        first_failed(&ordinary())
    }
    assert_eq!(
        run(&Capabilities::new(), probe),
        0,
        "check failed (1-based)"
    );
}

/// Nanoseconds per call of syscall `nr` (no arguments), measured in a forked child under
/// `filter` (none: no filter), through a pipe.
fn ns_per_call(filter: Option<&Filter>, nr: libc::c_long) -> f64 {
    const N: u64 = 2_000_000;
    let mut p = [0; 2];
    // SAFETY: a pipe into our own array.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    let _forking = crate::forks::spawning();
    // SAFETY: the child makes raw syscalls, writes 8 bytes and exits.
    match unsafe { libc::fork() } {
        0 => unsafe {
            // SAFETY: async-signal-safe calls only; the program was built before fork.
            if let Some(f) = filter {
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                if crate::seccomp::load::load_raw(&f.prog, f.flags) != 0 {
                    libc::_exit(1);
                }
            }
            let mut t0 = std::mem::zeroed::<libc::timespec>();
            let mut t1 = t0;
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t0);
            for _ in 0..N {
                libc::syscall(nr, 0, 0, 0);
            }
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t1);
            let ns = (t1.tv_sec - t0.tv_sec) as u64 * 1_000_000_000 + t1.tv_nsec as u64
                - t0.tv_nsec as u64;
            libc::write(p[1], (&ns as *const u64).cast(), 8);
            libc::_exit(0)
        },
        pid => {
            let mut ns = 0u64;
            // SAFETY: reading into our own u64, then reaping our own child.
            unsafe {
                libc::close(p[1]);
                assert_eq!(libc::read(p[0], (&mut ns as *mut u64).cast(), 8), 8);
                libc::close(p[0]);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            ns as f64 / N as f64
        }
    }
}

/// The cost of the filter per syscall: `cargo test -p mypod-sandbox -- --ignored
/// --nocapture seccomp_cost`. Timing, so not part of the normal run.
#[test]
#[ignore]
fn seccomp_cost() {
    let sc = profile();
    let tree = filter(&sc).unwrap();
    let linear = Filter::compile_profile(&sc, Optimize::Linear).unwrap();
    for (name, nr) in [
        ("getpid", libc::SYS_getpid),
        ("getrandom", libc::SYS_getrandom),
        ("personality", libc::SYS_personality),
    ] {
        // The best of 5: the least disturbed by the rest of the machine.
        let best = |f: Option<&Filter>| (0..5).map(|_| ns_per_call(f, nr)).fold(f64::MAX, f64::min);
        let (none, t, l) = (best(None), best(Some(&tree)), best(Some(&linear)));
        println!(
            "{name}: no filter {none:.1} ns, binary tree {t:.1} ns (+{:.1}, {} insns), linear {l:.1} ns (+{:.1}, {} insns)",
            t - none,
            tree.prog.len(),
            l - none,
            linear.prog.len()
        );
    }
}
