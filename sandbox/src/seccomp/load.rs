//! Installing a compiled [`Filter`] with seccomp(2) (prctl(2) when it has no flags), and
//! the tests that run filters in a forked child to see what the kernel makes of them.

use super::{Filter, SeccompError};

impl Filter {
    /// Installs the filter on this process (and what it execs). Needs no_new_privs or
    /// CAP_SYS_ADMIN. Allocates nothing unless it fails.
    pub fn load(&self) -> Result<(), SeccompError> {
        // SAFETY: `self.prog` is a valid program of `len` instructions that outlives the
        // call; the kernel copies it.
        match unsafe { load_raw(&self.prog, self.flags) } {
            0 => Ok(()),
            errno => {
                let hint = if errno == libc::EACCES {
                    " (loading a filter needs no_new_privs or CAP_SYS_ADMIN)"
                } else {
                    ""
                };
                Err(SeccompError::Sys {
                    what: format!(
                        "linux.seccomp: load the filter ({} instructions, flags {:#x}) with seccomp(2){hint}",
                        self.prog.len(),
                        self.flags
                    ),
                    errno: nix::Error::from_raw(errno),
                })
            }
        }
    }
}

/// Loads `prog` with seccomp(2) (prctl(2) without flags); returns 0 or the errno.
///
/// # Safety
/// `prog` must be a complete classic BPF program; it must not be empty.
pub(super) unsafe fn load_raw(prog: &[libc::sock_filter], flags: libc::c_ulong) -> i32 {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: the kernel reads `fprog` and the `prog` it points to, both alive across the
    // call; the caller vouches that `prog` is a complete, non-empty BPF program.
    let r = unsafe {
        if flags == 0 {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &fprog as *const libc::sock_fprog as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) as libc::c_long
        } else {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
                flags,
                &fprog as *const libc::sock_fprog,
            )
        }
    };
    if r == 0 {
        0
    } else {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    }
}

#[cfg(test)]
mod tests {
    use crate::seccomp::{compiled, errno_of, in_child};

    #[test]
    fn deny_default_gets_enosys_for_newer_syscalls() {
        // Everything below the largest syscall named here is denied with EPERM, except
        // what is allowed; syscalls above it get ENOSYS from the stub.
        let f = compiled(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{"names":["exit_group","exit"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":18}]}"#,
        );
        fn probe() -> i32 {
            let mkdirat = errno_of(libc::SYS_mkdirat, -1, 0);
            let getpid = errno_of(libc::SYS_getpid, 0, 0);
            let beyond = errno_of(1000, 0, 0);
            (mkdirat == 18) as i32
                | ((getpid == libc::EPERM) as i32) << 1
                | ((beyond == libc::ENOSYS) as i32) << 2
        }
        assert_eq!(in_child(&f, probe), 0b111);
    }

    #[test]
    fn same_argument_twice_is_ored_like_runc() {
        // dup3(fd, 99) with fd 4242 or 4243: EXDEV; any other fd: allowed (EBADF).
        let f = compiled(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["dup3"],"action":"SCMP_ACT_ERRNO","errnoRet":18,
                "args":[{"index":0,"value":4242,"op":"SCMP_CMP_EQ"},{"index":0,"value":4243,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        fn probe() -> i32 {
            let r = |fd| errno_of(libc::SYS_dup3, fd, 99);
            (r(4242) == 18) as i32
                | ((r(4243) == 18) as i32) << 1
                | ((r(4244) == libc::EBADF) as i32) << 2
        }
        assert_eq!(in_child(&f, probe), 0b111);
        // Different arguments are ANDed: fd 4242 and newfd 99.
        let f = compiled(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["dup3"],"action":"SCMP_ACT_ERRNO","errnoRet":18,
                "args":[{"index":0,"value":4242,"op":"SCMP_CMP_EQ"},{"index":1,"value":99,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        fn probe2() -> i32 {
            let a = errno_of(libc::SYS_dup3, 4242, 99);
            let b = errno_of(libc::SYS_dup3, 4242, 98);
            (a == 18) as i32 | ((b == libc::EBADF) as i32) << 1
        }
        assert_eq!(in_child(&f, probe2), 0b11);
    }
}
