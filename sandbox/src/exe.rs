//! The helper binary as containers could reach it: read-only, whatever its file is.
//!
//! Every container process starts as `<shim> init`, and a process's `/proc/PID/exe`
//! reaches its executable's file even from inside a container. A container that gets
//! the helper to exec a script starting `#!/proc/self/exe` makes the kernel run the
//! shim's binary again, dumpable, inside the container; opening `/proc/PID/exe` of
//! that process then yields a handle to the host's `containerd-shim-mypod-v2`, which
//! opens for writing as soon as no shim runs from it, and containerd runs it as root
//! (the runc CVE-2019-5736 class).
//!
//! So the helper is never exec'd from the host's file itself but from a bind mount of
//! it that is read-only (and nosuid, nodev) and no longer mounted anywhere:
//! `open_tree(OPEN_TREE_CLONE)` of the file, `mount_setattr(MOUNT_ATTR_RDONLY)` on the
//! clone, an `O_PATH` descriptor of the file on it, then the clone's own descriptor
//! closed, which dissolves its anonymous mount namespace and unmounts it (as runc's
//! bind-mount-then-`MNT_DETACH` trick does, without touching any mount table). Made
//! once per shim and exec'd with `execveat(fd, "", AT_EMPTY_PATH)`.
//!
//! `/proc/PID/exe` of a helper (and of anything it re-execs through that link) then
//! resolves to that mount, and every open for writing fails with EROFS. The mount
//! cannot be made writable again: mount_setattr(2), move_mount(2) and open_tree(2)
//! refuse an unmounted mount (EINVAL) even to a caller that is root in a user and
//! mount namespace of its own — which a still-attached detached mount would not: such
//! a caller could clear its read-only flag. It costs one mount reference per shim and
//! no copy of the binary: the page cache is shared with the file as before (runc
//! 1.1's memfd copy costs a binary's size of memory per start).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Errors sealing the binary.
#[derive(Debug, thiserror::Error)]
pub enum ExeError {
    #[error(
        "{path}: {what}: {source} (mypod needs Linux 5.12 or later: open_tree and mount_setattr)"
    )]
    Seal {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
}

/// The helper binary: its path (argv[0], logs) and a read-only detached mount of it.
#[derive(Debug)]
pub struct HelperExe {
    path: PathBuf,
    fd: OwnedFd,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;

impl HelperExe {
    /// Makes the read-only detached bind mount of the file at `path`.
    pub fn seal(path: &Path) -> Result<HelperExe, ExeError> {
        let err = |what| {
            move |source| ExeError::Seal {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
            .map_err(err("path"))?;
        let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
        // SAFETY: open_tree(2) with a NUL-terminated path that outlives the call; a
        // non-negative result is a new descriptor that nothing else owns.
        let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
        if fd < 0 {
            return Err(err("open_tree")(std::io::Error::last_os_error()));
        }
        // SAFETY: see above: fd is ours alone.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        use crate::mount::attr;
        let ro = attr::RDONLY | attr::NOSUID | attr::NODEV;
        crate::mount::mount_setattr(fd.as_raw_fd(), false, ro, 0, None)
            .map_err(err("mount_setattr(MOUNT_ATTR_RDONLY)"))?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(err("open the sealed file"))?;
        // Closing the clone unmounts it; `file` keeps it alive, unmounted.
        drop(fd);
        Ok(HelperExe {
            path: path.to_path_buf(),
            fd: file.into(),
        })
    }

    /// The binary's path, for argv[0] and messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor to execveat(2): the file on the read-only detached mount.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Needs root (open_tree of a clone); skipped otherwise.
    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn the_sealed_file_runs_but_opens_read_only() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("mypod-exe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("true");
        std::fs::copy("/bin/true", &copy).unwrap();
        let exe = HelperExe::seal(&copy).unwrap();
        assert_eq!(exe.path(), copy);
        let via = format!("/proc/self/fd/{}", exe.fd());
        let e = std::fs::OpenOptions::new()
            .write(true)
            .open(&via)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
        // The same file, and it executes from the detached mount.
        assert_eq!(std::fs::read(&via).unwrap(), std::fs::read(&copy).unwrap());
        // Another test's fork may hold a copy of the write descriptor `fs::copy` had open
        // until that child execs: the kernel says ETXTBSY meanwhile (seen in CI); retry.
        let mut tries = 0;
        let status = loop {
            match Command::new(&via).status() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 200 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                r => break r.unwrap(),
            }
        };
        assert!(status.success(), "{status:?}");
        assert_eq!(root_in_own_namespaces_cannot_unseal(exe.fd()), 0);
        // The file itself stays writable for its owner: only the mount is read-only.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&copy)
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// In a child that is root in a new user and mount namespace (what any container
    /// process can make unless seccomp stops it): clearing the read-only flag, moving
    /// the mount into its namespace, cloning it, and opening the file for writing must
    /// all fail. Returns a bit per step that succeeded.
    fn root_in_own_namespaces_cannot_unseal(fd: RawFd) -> i32 {
        let path = std::ffi::CString::new(format!("/proc/self/fd/{fd}")).unwrap();
        let target = std::env::temp_dir().join(format!("mypod-exe-t-{}", std::process::id()));
        std::fs::write(&target, b"").unwrap();
        let target_c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).unwrap();
        // struct mount_attr that clears MOUNT_ATTR_RDONLY.
        let clear: [u64; 4] = [0, crate::mount::attr::RDONLY, 0, 0];
        // SAFETY: the child makes raw system calls only, on memory prepared before the
        // fork, and ends with _exit: nothing it does needs the parent's other threads.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                let mut bad = 0;
                if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
                    libc::_exit(64);
                }
                let e = c"".as_ptr();
                let empty = libc::AT_EMPTY_PATH;
                if libc::syscall(libc::SYS_mount_setattr, fd, e, empty, clear.as_ptr(), 32) == 0 {
                    bad |= 1;
                }
                // MOVE_MOUNT_F_EMPTY_PATH
                let to = target_c.as_ptr();
                if libc::syscall(libc::SYS_move_mount, fd, e, libc::AT_FDCWD, to, 4) == 0 {
                    bad |= 2;
                }
                if libc::syscall(libc::SYS_open_tree, fd, e, 1 | empty) >= 0 {
                    bad |= 4;
                }
                if libc::open(path.as_ptr(), libc::O_WRONLY) >= 0 {
                    bad |= 8;
                }
                libc::_exit(bad)
            }
        }
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        let _ = std::fs::remove_file(&target);
        match status {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("{other:?}"),
        }
    }
}
