//! `linux.seccomp`, in one place: the spec-time checks and the filter, compiled with
//! libseccomp and loaded the way runc does it (runc's libcontainer/seccomp and
//! seccomp/patchbpf):
//!
//! - `SCMP_ACT_KILL` is `KILL_THREAD`; `ERRNO` and `TRACE` return `errnoRet` /
//!   `defaultErrnoRet`, EPERM when unset;
//! - every name of a `syscalls[]` entry is a rule of its own; names libseccomp does not know
//!   on this architecture are skipped; a rule whose action is the default action is skipped
//!   (libseccomp refuses those);
//! - a rule's `args` are ANDed, unless two of them test the same argument: then each
//!   condition becomes a rule of its own, so they are ORed;
//! - `flags`: `SECCOMP_FILTER_FLAG_LOG` and `_SPEC_ALLOW` are passed to seccomp(2), as is
//!   `_TSYNC` (a no-op here: the process has one thread); with no `flags` at all,
//!   `SPEC_ALLOW` is set when libseccomp and the kernel have it (runc ≥ 1.2, crun);
//! - the BPF program libseccomp generates is prefixed with runc's -ENOSYS stub: a syscall
//!   numbered above every syscall the profile names (per listed architecture) returns
//!   ENOSYS instead of the default action, so that a libc falls back from syscalls newer
//!   than the profile (clone3, fchmodat2, ...) instead of failing with EPERM. Only when
//!   the default action denies (not ALLOW, LOG or TRACE);
//! - the program is loaded with seccomp(2) (prctl(2) when there are no flags), without
//!   setting no_new_privs: that is `process.noNewPrivileges`' business.
//!
//! Files: `validate` (the checks [`crate::spec`] runs), `filter` (profile to libseccomp
//! context), `bpf` (the exported program and the ENOSYS stub), `load` (seccomp(2)),
//! [`default`] (mypod's own default profile, for `seccomp = "default"`), [`cache`] (compiled
//! programs kept host-wide, handed to the helper in its request).
//! When the filter is loaded is the caller's choice (see `container` in `init/mod.rs`).

mod bpf;
pub mod cache;
pub mod default;
mod filter;
mod load;
mod validate;

pub use validate::{parse_fallback, validate};

/// A compiled filter, ready to load: [`Filter::compile`], then [`Filter::load`].
#[derive(Debug)]
pub struct Filter {
    prog: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

/// How libseccomp lays out the syscall dispatch of a filter (its SCMP_FLTATR_CTL_OPTIMIZE
/// attribute). Only the layout changes, never what the filter allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Optimize {
    /// What user-supplied profiles get ([`Filter::compile`]): runc's choice, a binary tree
    /// above 32 rules, libseccomp's linear list below.
    Runc,
    /// Always a binary tree sorted by syscall number (level 2, libseccomp ≥ 2.5.0): a
    /// syscall costs about log2(rules) comparisons instead of up to one per rule. Falls
    /// back silently to the linear list when libseccomp lacks the attribute.
    BinaryTree,
    /// Always libseccomp's linear list (level 1, its default), whatever the size.
    Linear,
}

/// Errors compiling or loading a filter. Their texts are those of the init helper's
/// errors, which they become (see the `From` below).
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("{what}: {errno}")]
    Sys { what: String, errno: nix::Error },
    #[error("{0}")]
    Invalid(String),
}

/// Into the same variants, and so the same texts, the init helper always reported.
impl From<SeccompError> for crate::init::InitError {
    fn from(e: SeccompError) -> Self {
        match e {
            SeccompError::Sys { what, errno } => Self::Sys { what, errno },
            SeccompError::Invalid(s) => Self::Invalid(s),
        }
    }
}

fn invalid(what: impl std::fmt::Display) -> SeccompError {
    SeccompError::Invalid(format!("linux.seccomp: {what}"))
}

/// Test helper: the filter of a minimal spec with `linux.seccomp` set to `seccomp`.
#[cfg(test)]
fn compiled(seccomp: &str) -> Filter {
    Filter::compile(&test_spec(seccomp)).unwrap().unwrap()
}

/// Test helper: a minimal spec with `linux.seccomp` set to `seccomp`.
#[cfg(test)]
fn test_spec(seccomp: &str) -> oci_spec::runtime::Spec {
    let json = format!(
        r#"{{"ociVersion":"1.0.2","process":{{"args":["/bin/true"],"cwd":"/","user":{{"uid":0,"gid":0}}}},"root":{{"path":"rootfs"}},"linux":{{"seccomp":{seccomp}}}}}"#
    );
    serde_json::from_str(&json).unwrap()
}

/// Test helper: forks, loads `filter` in the child (no_new_privs set first), runs `probe`
/// there and returns its exit code. The child only makes raw syscalls (nothing allocates), so
/// forking from the multi-threaded test harness is fine.
#[cfg(test)]
fn in_child(filter: &Filter, probe: fn() -> i32) -> i32 {
    // The child holds copies of every descriptor until it exits (see crate::forks).
    let _forking = crate::forks::spawning();
    // SAFETY: the child only calls prctl, seccomp, raw syscalls and _exit.
    match unsafe { libc::fork() } {
        0 => unsafe {
            // SAFETY: async-signal-safe calls only; `filter.prog` was built before fork.
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(100);
            }
            if load::load_raw(&filter.prog, filter.flags) != 0 {
                libc::_exit(101);
            }
            libc::_exit(probe())
        },
        pid => {
            assert!(pid > 0, "fork failed");
            let mut status = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            assert!(libc::WIFEXITED(status), "child status {status:#x}");
            libc::WEXITSTATUS(status)
        }
    }
}

/// Test helper: errno of a raw syscall, 0 on success.
#[cfg(test)]
fn errno_of(nr: libc::c_long, a: libc::c_long, b: libc::c_long) -> i32 {
    // SAFETY: the probes only pass invalid or harmless arguments.
    let r = unsafe { libc::syscall(nr, a, b, 0 as libc::c_long) };
    if r < 0 {
        // SAFETY: reading errno of this thread.
        unsafe { *libc::__errno_location() }
    } else {
        0
    }
}
