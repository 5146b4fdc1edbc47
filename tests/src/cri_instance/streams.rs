//! Exec and Attach sessions on CRI's stream server (as `kubectl exec -it` / `kubectl attach`),
//! and the processes of a pod, to check that a session leaves none behind.

use std::thread;
use std::time::{Duration, Instant};

use super::pods::Pod;
use crate::cleanup;
use crate::containerd::Containerd;
use crate::cri::{api, StreamSession};
use crate::procfs;

impl Containerd {
    /// Opens a session on a stream URL that CRI returned. containerd's stream server listens on
    /// 127.0.0.1 of the instance's network namespace, so the connection is made from there.
    pub fn open_stream(&self, url: &str) -> StreamSession {
        let netns = self.netns();
        StreamSession::open(url, |addr| netns.connect_tcp(addr, Duration::from_secs(10)))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// CRI Attach to container `id` with stdout, stdin if `stdin`, and a terminal if `tty`
    /// (stderr otherwise, as a TTY merges it into stdout), then connects to the URL.
    pub fn attach_stream(&self, id: &str, stdin: bool, tty: bool) -> StreamSession {
        let url = self
            .cri()
            .attach(&api::AttachRequest {
                container_id: id.to_string(),
                stdin,
                tty,
                stdout: true,
                stderr: !tty,
            })
            .unwrap_or_else(|e| panic!("Attach to {id}: {e}"));
        self.open_stream(&url)
    }

    /// CRI Exec of `cmd` in container `id` (stdout, stdin if `stdin`, a terminal if `tty`,
    /// stderr otherwise), then connects to the URL: the command starts once connected.
    pub fn exec_stream(&self, id: &str, cmd: &[&str], stdin: bool, tty: bool) -> StreamSession {
        let url = self
            .cri()
            .exec(&api::ExecRequest {
                container_id: id.to_string(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                tty,
                stdin,
                stdout: true,
                stderr: !tty,
            })
            .unwrap_or_else(|e| panic!("Exec {cmd:?} in {id}: {e}"));
        self.open_stream(&url)
    }

    /// The pod's processes with their command lines: every pid in the pod's cgroups (any
    /// hierarchy) and every child of its shim (`shim`), sorted.
    pub fn pod_processes(&self, pod: &Pod, shim: u32) -> Vec<(u32, String)> {
        let parent = pod.builder.cgroup_parent.clone().unwrap_or_default();
        let mut pids = cleanup::cgroup_pids(parent.trim_start_matches('/'));
        pids.extend(
            procfs::pids()
                .into_iter()
                .filter(|&p| procfs::ppid(p) == Some(shim)),
        );
        pids.sort_unstable();
        pids.dedup();
        pids.into_iter()
            .filter(|&p| procfs::alive(p))
            .map(|p| (p, procfs::cmdline(p).unwrap_or_default()))
            .collect()
    }

    /// Waits up to `timeout` until the pod's processes (see `pod_processes`) are `before`
    /// again; panics naming the extra and missing ones.
    pub fn wait_pod_processes(
        &self,
        pod: &Pod,
        shim: u32,
        before: &[(u32, String)],
        timeout: Duration,
    ) {
        let start = Instant::now();
        loop {
            let now = self.pod_processes(pod, shim);
            if now == before {
                return;
            }
            if start.elapsed() > timeout {
                let extra: Vec<_> = now.iter().filter(|p| !before.contains(p)).collect();
                let missing: Vec<_> = before.iter().filter(|p| !now.contains(p)).collect();
                panic!(
                    "pod {}: processes after the stream differ from before it (after \
                     {timeout:?}): extra {extra:?}, missing {missing:?}",
                    pod.name()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}
