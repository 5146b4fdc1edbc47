//! What a launch that stopped answering looks like: the state, wait channel and kernel
//! stack of the helper and of the process, and every process that holds the helper's end
//! of the init channel (a holder that never execs keeps the caller from seeing EOF).
//!
//! Only read when a setup timed out, so it is written for clarity, not speed.

use std::fmt::Write as _;
use std::os::fd::AsRawFd;

/// The processes of one launch and the inode of the helper's end of its channel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trace {
    /// Pid of the `init` helper.
    pub helper: i32,
    /// Pid of the container process, once reported.
    pub process: Option<i32>,
    /// Inode of the helper's end of the channel (`socket:[ino]` in /proc/*/fd).
    pub chan_ino: u64,
}

impl Trace {
    /// The inode of a socket fd (0 if fstat fails: the report then lists no holders).
    pub fn inode_of(fd: &impl AsRawFd) -> u64 {
        nix::sys::stat::fstat(fd.as_raw_fd())
            .map(|st| st.st_ino)
            .unwrap_or(0)
    }

    /// A multi-line description for the log.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "helper {}", describe(self.helper));
        if let Some(p) = self.process {
            let _ = writeln!(out, "process {}", describe(p));
        }
        if self.chan_ino != 0 {
            let holders = holders(self.chan_ino);
            let _ = writeln!(
                out,
                "channel socket:[{}] held by {holders:?}",
                self.chan_ino
            );
            for pid in holders {
                if Some(pid) != self.process && pid != self.helper {
                    let _ = writeln!(out, "holder {}", describe(pid));
                }
            }
        }
        out
    }
}

fn read(path: String) -> String {
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("({path}: {e})"))
}

/// State, wait channel, command line and kernel stack of `pid`.
fn describe(pid: i32) -> String {
    let state = read(format!("/proc/{pid}/status"))
        .lines()
        .filter(|l| l.starts_with("State:") || l.starts_with("PPid:") || l.starts_with("Name:"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ");
    let cmdline = read(format!("/proc/{pid}/cmdline")).replace('\0', " ");
    let wchan = read(format!("/proc/{pid}/wchan"));
    let stack = read(format!("/proc/{pid}/stack")).replace('\n', " | ");
    format!("{pid} [{state}] cmdline={cmdline:?} wchan={wchan} stack: {stack}")
}

/// Pids of every process with an fd on `socket:[ino]`.
fn holders(ino: u64) -> Vec<i32> {
    let want = format!("socket:[{ino}]");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()))
        {
            out.push(pid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn finds_the_holders_of_a_socket() {
        let (a, _b) = UnixStream::pair().unwrap();
        let t = Trace {
            helper: std::process::id() as i32,
            process: None,
            chan_ino: Trace::inode_of(&a),
        };
        assert!(t.chan_ino != 0);
        let me = std::process::id() as i32;
        // Other tests of this process fork: a child holds a copy of the socket until it
        // execs (close-on-exec). Such copies are ours; no other process may hold it.
        let held = holders(t.chan_ino);
        assert!(held.contains(&me), "{held:?}");
        for p in held.iter().filter(|p| **p != me) {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|v| v.parse::<i32>().ok());
            assert!(
                ppid.is_none() || ppid == Some(me),
                "{p} holds our socket: {held:?}"
            );
        }
        let r = t.report();
        assert!(r.contains("held by ["), "{r}");
        assert!(r.contains(&me.to_string()), "{r}");
        assert!(r.contains("State:"), "{r}");
    }
}
