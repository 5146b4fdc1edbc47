//! Queries and controls of a running container, mostly through its cgroup: its pid
//! namespace, pids, resource updates, pause/resume, statistics and OOM watch.

use super::{Container, ContainerError};
use crate::cgroup::freezer;
use crate::cgroup::oom::OomWatcher;
use crate::cgroup::resources;
use crate::cgroup::stats::{self, Stats};
use crate::cgroup::Cgroup;
use crate::spec;

impl Container {
    /// Whether the container has a pid namespace of its own (a new one, not joined by
    /// path). Without one, its processes outlive its init unless they are killed, so the
    /// caller kills them when the init exits (as containerd's runc shim does).
    pub fn owns_pid_namespace(&self) -> bool {
        spec::namespaces(&self.spec)
            .iter()
            .any(|(t, path)| *t == oci_spec::runtime::LinuxNamespaceType::Pid && path.is_none())
    }

    /// Pids of every process in the container.
    pub fn pids(&self) -> Result<Vec<i32>, ContainerError> {
        Ok(self.cgroup.pids()?)
    }

    /// The container's cgroup (for updates, freezing and statistics off the caller's lock).
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// Applies new resource limits to the running container's cgroup (blocking; fields
    /// absent from `r` are left as they are). Device rules are applied too.
    pub fn update(
        cg: &Cgroup,
        r: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), ContainerError> {
        resources::validate(r, cg.v2)?;
        if let Some(d) = r.devices().as_ref().filter(|d| !d.is_empty()) {
            cg.apply_devices(d)?;
        }
        resources::apply(cg, r)?;
        Ok(())
    }

    /// Freezes (pause) or thaws (resume) every process of the container (blocking until
    /// the kernel reports it done).
    pub fn set_paused(cg: &Cgroup, paused: bool) -> Result<(), ContainerError> {
        Ok(freezer::set_frozen(cg, paused)?)
    }

    /// The cgroup's statistics (blocking file reads).
    pub fn stats(cg: &Cgroup) -> Stats {
        stats::read(cg)
    }

    /// A pollable OOM watch on the container's cgroup (`None` without a memory controller).
    pub fn oom_watcher(&self) -> Result<Option<OomWatcher>, ContainerError> {
        Ok(OomWatcher::new(&self.cgroup)?)
    }
}
