//! Process handles: pidfds for race-free signalling, exit statuses, and reaping.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::SystemTime;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Errors signalling a process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("process {0} already finished")]
    Finished(i32),
    #[error("pidfd_open({pid}): {errno}")]
    Open { pid: i32, errno: nix::Error },
    #[error("signal {sig} to pid {pid}: {errno}")]
    Signal {
        pid: i32,
        sig: i32,
        errno: nix::Error,
    },
}

/// How a process ended: the exit code, or 128 + the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: u32,
    pub at: SystemTime,
}

impl ExitStatus {
    /// Converts a wait status to containerd's exit code convention.
    pub fn from_wait(status: WaitStatus) -> Option<(i32, u32)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code as u32)),
            WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as u32)),
            _ => None,
        }
    }
}

/// A pidfd: signals reach exactly the process it was opened for, never a reused pid.
#[derive(Debug)]
pub struct PidFd {
    pid: i32,
    fd: OwnedFd,
}

impl PidFd {
    /// Opens a pidfd for a live (or not yet reaped) process.
    pub fn open(pid: i32) -> Result<PidFd, ProcessError> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(ProcessError::Open {
                pid,
                errno: nix::Error::last(),
            });
        }
        // SAFETY: the kernel just returned this fd to us; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(PidFd { pid, fd })
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Sends `sig`; an exited process gives [`ProcessError::Finished`].
    pub fn signal(&self, sig: i32) -> Result<(), ProcessError> {
        // SAFETY: pidfd_send_signal reads only its integer arguments (info is NULL).
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let errno = nix::Error::last();
            if errno == nix::Error::ESRCH {
                return Err(ProcessError::Finished(self.pid));
            }
            return Err(ProcessError::Signal {
                pid: self.pid,
                sig,
                errno,
            });
        }
        Ok(())
    }
}

/// Reaps every child that has exited, without blocking: (pid, exit code).
pub fn reap_all() -> Vec<(i32, u32)> {
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return out,
            Ok(s) => {
                if let Some(e) = ExitStatus::from_wait(s) {
                    out.push(e);
                }
            }
        }
    }
}

/// Makes the calling process the reaper of orphaned descendants.
pub fn set_child_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn exit_codes_follow_containerd() {
        let p = Pid::from_raw(7);
        assert_eq!(
            ExitStatus::from_wait(WaitStatus::Exited(p, 3)),
            Some((7, 3))
        );
        assert_eq!(
            ExitStatus::from_wait(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some((7, 137))
        );
        assert_eq!(ExitStatus::from_wait(WaitStatus::StillAlive), None);
    }

    #[test]
    fn pidfd_signals_and_reports_finished() {
        let mut child = {
            let _forking = crate::forks::spawning();
            std::process::Command::new("sleep")
                .arg("30")
                .spawn()
                .unwrap()
        };
        let pfd = PidFd::open(child.id() as i32).unwrap();
        pfd.signal(libc::SIGKILL).unwrap();
        child.wait().unwrap();
        assert!(matches!(
            pfd.signal(libc::SIGTERM),
            Err(ProcessError::Finished(_))
        ));
    }
}
