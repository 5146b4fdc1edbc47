//! The processes in a container's cgroup: whether a cgroup is in use already, listing its
//! members, signalling them, killing them all.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::Duration;

use super::placement::{io, Cgroup, CgroupError};
use crate::process::PidFd;

impl Cgroup {
    /// Refuses a cgroup that has processes already, in any hierarchy or below, as runc
    /// does: one named by a spec may be the host's (`/system.slice/containerd.service`),
    /// which a failed create or a delete would then kill. A new cgroup's directories do
    /// not exist yet: one failed open each. `cgroups_path` is for the message.
    pub fn ensure_unused(&self, cgroups_path: &str) -> Result<(), CgroupError> {
        let dirs = self.dirs.iter().map(|(_, d)| d.as_path());
        if dirs.chain(self.unified.as_deref()).any(has_processes) {
            return Err(CgroupError::InUse(cgroups_path.to_string()));
        }
        Ok(())
    }

    /// Pids of every process in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let Some((_, dir)) = self
            .dirs
            .iter()
            .find(|(n, _)| n.split(',').any(|c| c == "pids" || c == "memory"))
            .or(self.dirs.first())
        else {
            return Ok(Vec::new());
        };
        let path = dir.join("cgroup.procs");
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Sends `sig` to every process in the cgroup; returns how many were signalled.
    ///
    /// A pid read from `cgroup.procs` may exit, be reaped and be reused by a process
    /// elsewhere before it is signalled: each is pinned with a pidfd first, and only those
    /// still listed after that are signalled, through their pidfd.
    pub fn signal_all(&self, sig: i32) -> Result<usize, CgroupError> {
        let pinned: Vec<PidFd> = self
            .pids()?
            .into_iter()
            .filter_map(|pid| PidFd::open(pid).ok())
            .collect();
        if pinned.is_empty() {
            return Ok(0);
        }
        let members = self.pids()?;
        let mut n = 0;
        for p in pinned.iter().filter(|p| members.contains(&p.pid())) {
            // An exited process is no error: it is gone, as asked.
            let _ = p.signal(sig);
            n += 1;
        }
        Ok(n)
    }

    /// Sends `sig` to `pid` if it is a member of this cgroup (pinned first, as
    /// [`Cgroup::signal_all`] does); false if it is not (any more).
    pub fn signal_member(&self, pid: i32, sig: i32) -> Result<bool, CgroupError> {
        let Ok(pinned) = PidFd::open(pid) else {
            return Ok(false);
        };
        if !self.pids()?.contains(&pid) {
            return Ok(false);
        }
        let _ = pinned.signal(sig);
        Ok(true)
    }

    /// SIGKILLs everything in the cgroup until it is empty (bounded wait).
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        for _ in 0..200 {
            if self.signal_all(libc::SIGKILL)? == 0 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

/// Whether the cgroup at `dir` or one below it has a process. A cgroup directory always
/// has `cgroup.procs`: where it cannot be read there is no cgroup (a new container's, on
/// the create path: one failed open per hierarchy, nothing more).
fn has_processes(dir: &Path) -> bool {
    match fs::read_to_string(dir.join("cgroup.procs")) {
        Err(_) => false,
        Ok(s) if !s.trim().is_empty() => true,
        Ok(_) => fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .any(|e| has_processes(&e.path()))
        }),
    }
}
