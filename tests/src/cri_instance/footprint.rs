//! What a running pod occupies on the host, and whether any of it is left after the pod is gone.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::pods::Pod;
use crate::cleanup;
use crate::containerd::Containerd;
use crate::cri::{self, api, container_state_name};
use crate::procfs;

/// What a running pod occupies on the host, recorded to check later that all of it is gone.
#[derive(Clone, Debug, Default)]
pub struct PodFootprint {
    pub pod_id: String,
    pub container_ids: Vec<String>,
    /// Host pids with their command lines (the sandbox's and the running containers').
    pub pids: Vec<(u32, String)>,
    /// The pod's network namespace file (CRI's bind mount).
    pub netns_path: Option<String>,
    pub ip: String,
    /// cgroup paths relative to a hierarchy root.
    pub cgroups: Vec<String>,
    /// The shims serving the pod.
    pub shims: Vec<u32>,
}

impl Containerd {
    /// Records what the pod and its running containers occupy now.
    pub fn footprint(&self, pod: &Pod, containers: &[String]) -> PodFootprint {
        self.note_shim_sockets();
        let mut fp = PodFootprint {
            pod_id: pod.id.clone(),
            container_ids: containers.to_vec(),
            netns_path: self.sandbox_netns_path(&pod.id),
            ..Default::default()
        };
        let st = self.sandbox_status(&pod.id);
        fp.ip = st
            .status
            .as_ref()
            .and_then(|s| s.network.as_ref())
            .map(|n| n.ip.clone())
            .unwrap_or_default();
        let sp = self.sandbox_pid(&pod.id);
        fp.pids.push((sp, procfs::cmdline(sp).unwrap_or_default()));
        fp.cgroups.push(pod.cgroup_of(&pod.id));
        for id in containers {
            let st = self.container_status(id);
            if st
                .status
                .as_ref()
                .is_some_and(|s| s.state == api::ContainerState::ContainerRunning as i32)
            {
                let p = self.container_pid(id);
                fp.pids.push((p, procfs::cmdline(p).unwrap_or_default()));
            }
            fp.cgroups.push(pod.cgroup_of(id));
        }
        fp.shims = self.shim_pids();
        fp
    }

    /// What is left of a pod (see `footprint`) after it was stopped and removed: empty when
    /// nothing is. `other_pods` = false also counts any shim or container process of the
    /// instance (the test runs no other pod).
    pub fn pod_leftovers(&self, fp: &PodFootprint, other_pods: bool) -> Vec<String> {
        let mut left = Vec::new();
        let mut ids = vec![fp.pod_id.clone()];
        ids.extend(fp.container_ids.iter().cloned());
        match self.cri().list_pod_sandbox(None) {
            Ok(pods) => {
                for p in pods.iter().filter(|p| p.id == fp.pod_id) {
                    left.push(format!(
                        "CRI still lists pod sandbox {} ({})",
                        p.id,
                        cri::sandbox_state_name(p.state)
                    ));
                }
            }
            Err(e) => left.push(e.to_string()),
        }
        match self.cri().list_containers(None) {
            Ok(cs) => {
                for c in cs.iter().filter(|c| ids.contains(&c.id)) {
                    left.push(format!(
                        "CRI still lists container {} ({})",
                        c.id,
                        container_state_name(c.state)
                    ));
                }
            }
            Err(e) => left.push(e.to_string()),
        }
        let t = Duration::from_secs(30);
        for task in self.tasks_with_timeout(t) {
            if ids.contains(&task.id) {
                left.push(format!("containerd task {task:?}"));
            }
        }
        let out = self.ctr_timeout(&["containers", "ls", "-q"], t);
        for c in out.stdout.lines().map(str::trim) {
            if ids.iter().any(|id| id == c) {
                left.push(format!("containerd container {c}"));
            }
        }
        for (pid, cmd) in &fp.pids {
            if procfs::alive(*pid) && procfs::cmdline(*pid).as_deref() == Some(cmd.as_str()) {
                left.push(format!("process {pid} ({cmd}) {}", describe_process(*pid)));
            }
        }
        if !other_pods {
            // Every shim of the instance: those seen while the pod ran and any started since.
            let mut shims: Vec<u32> = fp.shims.clone();
            shims.extend(self.shim_pids());
            shims.sort_unstable();
            shims.dedup();
            let needle = format!("{}/", self.dir().display());
            for p in shims {
                let cmd = procfs::cmdline(p).unwrap_or_default();
                if procfs::alive(p) && cmd.contains(&needle) {
                    left.push(format!("shim pid {p}: {cmd}"));
                }
            }
            for p in cleanup::pids_rooted_under(self.dir()) {
                left.push(format!(
                    "container process pid {p}: {}",
                    procfs::cmdline(p).unwrap_or_default()
                ));
            }
        }
        for m in cleanup::mounts_under(self.dir()) {
            let s = m.to_string_lossy();
            if ids.iter().any(|id| s.contains(id.as_str())) || fp.netns_path.as_deref() == Some(&*s)
            {
                left.push(format!("mount {s}"));
            }
        }
        if let Some(ns) = &fp.netns_path {
            if Path::new(ns).exists() {
                left.push(format!("pod network namespace file {ns}"));
            }
        }
        for cg in &fp.cgroups {
            for d in cleanup::cgroup_dirs(cg) {
                left.push(format!("cgroup {}", d.display()));
            }
        }
        if !fp.ip.is_empty() {
            let lease = self
                .dir()
                .join("cni/ipam")
                .join(&self.cri_parts().network)
                .join(&fp.ip);
            if lease.exists() {
                left.push(format!("IP lease {}", lease.display()));
            }
        }
        left
    }

    /// Panics unless nothing of the pod is left within `timeout`.
    pub fn assert_pod_gone(&self, fp: &PodFootprint, other_pods: bool, timeout: Duration) {
        let start = Instant::now();
        loop {
            let left = self.pod_leftovers(fp, other_pods);
            if left.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "pod {} left behind after {timeout:?}:\n  {}",
                fp.pod_id,
                left.join("\n  ")
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Parent and cgroup of a host process, for leftover reports.
fn describe_process(pid: u32) -> String {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let cg = cg
        .lines()
        .find(|l| l.contains(":memory:") || l.starts_with("0::"))
        .unwrap_or("?");
    format!("[ppid {}, cgroup {cg}]", procfs::ppid(pid).unwrap_or(0))
}
