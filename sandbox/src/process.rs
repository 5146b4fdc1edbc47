//! Process handles: pidfds for race-free signalling, exit statuses, and reaping.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Errors signalling a process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A fork that needs a single-threaded process found more threads (0: unknown).
    #[error("{what}: the process has {threads} threads, a plain fork needs one")]
    Threads { what: String, threads: usize },
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

    /// A second handle on the same process.
    pub fn try_clone(&self) -> Result<PidFd, ProcessError> {
        let fd = self.fd.try_clone().map_err(|e| ProcessError::Open {
            pid: self.pid,
            errno: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EBADF)),
        })?;
        Ok(PidFd { pid: self.pid, fd })
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

/// The number of threads of this process, if readable: field 20 (`num_threads`) of
/// /proc/self/stat, one short line that the kernel makes far faster than `status` (this
/// is read on every container start).
pub fn thread_count() -> Option<usize> {
    use std::io::Read;
    let mut buf = [0u8; 1024];
    let mut f = std::fs::File::open("/proc/self/stat").ok()?;
    let n = f.read(&mut buf).ok()?;
    num_threads(std::str::from_utf8(&buf[..n]).ok()?)
}

/// `num_threads` of a /proc/PID/stat line: the 18th field after the `)` that ends the
/// command name (which may itself hold spaces and parentheses).
fn num_threads(stat: &str) -> Option<usize> {
    stat_field(stat, 17)
}

/// Field `n` (0: the state) after the `)` that ends a /proc/PID/stat line's command name.
fn stat_field<T: std::str::FromStr>(stat: &str, n: usize) -> Option<T> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n)?.parse().ok()
}

/// When process `pid` started (`starttime` of /proc/PID/stat, in clock ticks since boot):
/// with its pid, what tells a process from a later one that reuses the number.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_field(&stat, 19)
}

/// Checks what a plain fork(2) relies on: this process has one thread, so the child is
/// a complete copy that may allocate, lock and run any code. `what` names the fork.
pub fn ensure_single_threaded(what: &str) -> Result<(), ProcessError> {
    match thread_count() {
        Some(1) => Ok(()),
        n => Err(ProcessError::Threads {
            what: what.to_string(),
            threads: n.unwrap_or(0),
        }),
    }
}

/// Reaps every child that has exited, without blocking: (pid, exit code, its number in
/// [`reaps`]). Children
/// started by [`spawn_watched`] are not returned: their status goes to their [`Watch`].
pub fn reap_all() -> Vec<(i32, u32, u64)> {
    let mut out = Vec::new();
    loop {
        // Held across the wait: a Watch that sees its pid unreaped under this lock knows
        // the pid is still its child's.
        let mut w = watched();
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return out,
            Ok(s) => {
                if let Some((pid, code)) = ExitStatus::from_wait(s) {
                    match w.get_mut(&pid) {
                        Some(slot) => *slot = Some(code),
                        // Numbered as the pid is freed: see [`reaps`].
                        None => out.push((pid, code, REAPS.fetch_add(1, Ordering::SeqCst) + 1)),
                    }
                }
            }
        }
    }
}

/// How many exits [`reap_all`] has returned, each numbered as it is reaped (at the
/// moment its pid is freed). A process launched when this read `n` can only have an exit
/// numbered above `n`; a lower one with its pid is an earlier owner's.
pub fn reaps() -> u64 {
    REAPS.load(Ordering::SeqCst)
}

static REAPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Exit codes of watched children, by pid (None: not reaped yet).
type Watched = BTreeMap<i32, Option<u32>>;
static WATCHED: Mutex<Watched> = Mutex::new(BTreeMap::new());

fn watched() -> MutexGuard<'static, Watched> {
    // The map stays consistent whatever panicked while it was held: one insert or remove.
    WATCHED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child whose exit status its starter collects, even in a process whose SIGCHLD loop
/// calls [`reap_all`] (the shim): whichever reaps it first, the status reaches the Watch.
#[derive(Debug)]
pub struct Watch {
    pid: i32,
}

/// Spawns `cmd` as a watched child. The registry's lock is held from before the fork
/// until the pid is registered, and [`reap_all`] takes it after reaping, so a child
/// that exits at once is still found.
pub fn spawn_watched(cmd: &mut Command) -> std::io::Result<(Child, Watch)> {
    let mut w = watched();
    let child = {
        let _forking = crate::forks::spawning();
        cmd.spawn()?
    };
    let pid = child.id() as i32;
    w.insert(pid, None);
    Ok((child, Watch { pid }))
}

/// Clones a child into the new namespaces `ns_flags` (`CLONE_NEW*`) that only waits until
/// `wait_fd` reads end-of-file (every write end closed), then exits: a holder whose
/// `/proc/PID` files (a user namespace's id maps, its `ns/*` links) the caller uses
/// meanwhile. No exec and no second binary: the child is a copy of this process that
/// shares its descriptor table (`CLONE_FILES`), so it holds no copies of our descriptors
/// (a FIFO's read end among them, see [`crate::forks`]); closing the write end in this
/// process ends it.
pub fn clone_waiting(ns_flags: libc::c_int, wait_fd: std::os::fd::RawFd) -> std::io::Result<Watch> {
    let flags = (ns_flags | libc::CLONE_FILES | libc::SIGCHLD) as libc::c_ulong;
    let parent = std::process::id() as libc::pid_t;
    // Held from before the clone until the pid is registered (see spawn_watched).
    let mut w = watched();
    // SAFETY: clone(2) without CLONE_VM and with a null stack forks: the child runs on a
    // copy of this thread's stack and memory. The child may be the copy of a
    // multi-threaded process, so it calls only prctl(2), getppid(2), read(2) and _exit(2),
    // which are async-signal-safe, on a buffer of its own stack, and never returns; the
    // parent continues normally.
    let pid = unsafe {
        let pid = libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize);
        if pid == 0 {
            // It shares our descriptor table, write end included: if we die before we
            // close it (SIGKILLed), no end-of-file would ever come. The thread that cloned
            // it waits for it, so its death signal comes with ours.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            if libc::getppid() != parent {
                libc::_exit(0);
            }
            let mut buf = [0u8; 1];
            while libc::read(wait_fd, buf.as_mut_ptr().cast(), 1) > 0 {}
            libc::_exit(0);
        }
        pid
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let pid = pid as i32;
    w.insert(pid, None);
    Ok(Watch { pid })
}

/// Registers the child that `start` forks (returning its pid) as watched, as
/// [`spawn_watched`] does for a `Command`.
pub fn watch_spawned<E>(start: impl FnOnce() -> Result<i32, E>) -> Result<Watch, E> {
    let mut w = watched();
    let pid = start()?;
    w.insert(pid, None);
    Ok(Watch { pid })
}

impl Watch {
    /// The child's pid (valid until it is reaped, which the Watch sees).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The exit code (128+signal when killed) once the child has exited.
    pub fn try_status(&self) -> Option<u32> {
        let mut w = watched();
        if let Some(code) = w.get_mut(&self.pid).and_then(|s| *s) {
            return Some(code);
        }
        // Not reaped by reap_all yet: reap it here, under the lock so that the two
        // never both wait for it.
        match waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(s) => {
                let code = ExitStatus::from_wait(s).map(|(_, c)| c);
                if let (Some(c), Some(slot)) = (code, w.get_mut(&self.pid)) {
                    *slot = Some(c);
                }
                code
            }
            Err(_) => None,
        }
    }

    /// SIGKILLs the child if it has not been reaped (so its pid cannot be reused).
    pub fn kill(&self) {
        let w = watched();
        if w.get(&self.pid).is_some_and(|s| s.is_none()) {
            // The pid is our unreaped child: reap_all records every reaped watched pid
            // under this lock, which we hold, so it cannot have been reused.
            let _ =
                nix::sys::signal::kill(Pid::from_raw(self.pid), nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Blocks until the child has exited; its exit code.
    pub fn wait(&self) -> Option<u32> {
        if let Some(c) = self.try_status() {
            return Some(c);
        }
        // Sleep until it exits (its pidfd turns readable), at most as long as the loop
        // below would poll.
        if let Some(fd) = self.pidfd() {
            let mut p = [nix::poll::PollFd::new(
                fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut p, 10_000u16);
        }
        for _ in 0..5000 {
            if let Some(c) = self.try_status() {
                return Some(c);
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        None
    }
}

impl Watch {
    /// A pidfd of the child while it is not reaped. Opened under the registry's lock, which
    /// [`reap_all`] holds while it reaps: an unreaped pid is still our child's.
    fn pidfd(&self) -> Option<OwnedFd> {
        let w = watched();
        if !w.get(&self.pid).is_some_and(|s| s.is_none()) {
            return None;
        }
        PidFd::open(self.pid).ok().map(|p| p.fd)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        watched().remove(&self.pid);
    }
}

/// Makes the calling process the reaper of orphaned descendants.
pub fn set_child_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn num_threads_is_read_past_an_odd_command_name() {
        let line = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 7 0 1234 0";
        assert_eq!(num_threads(line), Some(7));
        assert_eq!(num_threads("42 (x"), None);
        assert_eq!(stat_field::<u64>(line, 19), Some(1234));
    }

    #[test]
    fn a_live_process_has_a_start_time_a_missing_one_none() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
        assert_eq!(start_time(-1), None);
    }

    #[test]
    fn a_second_thread_is_seen_before_a_fork() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || rx.recv());
        let n = thread_count().unwrap();
        assert!(n >= 2, "{n}");
        let e = ensure_single_threaded("fork x").unwrap_err().to_string();
        assert!(e.starts_with("fork x: the process has"), "{e}");
        drop(tx);
        t.join().unwrap().unwrap_err();
    }
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
