//! Pods and containers through CRI: run, create, start, wait, inspect, exec, stop.

use std::fs;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use super::CRI_NAMESPACE;
use crate::cleanup;
use crate::containerd::Containerd;
use crate::cri::{
    api, container_state_name, describe_status, verbose_info, ContainerBuilder, CriError,
    CriResult, PodBuilder,
};
use crate::procfs;

/// A pod sandbox made through CRI.
#[derive(Clone, Debug)]
pub struct Pod {
    pub id: String,
    pub builder: PodBuilder,
    pub config: api::PodSandboxConfig,
    pub handler: String,
}

impl Pod {
    pub fn name(&self) -> &str {
        &self.builder.name
    }

    pub fn log_directory(&self) -> PathBuf {
        self.builder
            .log_directory
            .clone()
            .expect("pods made by Containerd::pod have a log directory")
    }

    /// The cgroup path (relative to a hierarchy's root) of the sandbox or a container `id`.
    pub fn cgroup_of(&self, id: &str) -> String {
        let parent = self.builder.cgroup_parent.clone().unwrap_or_default();
        format!("{}/{id}", parent.trim_start_matches('/'))
    }
}

impl Containerd {
    /// A pod of this instance: log directory `<dir>/logs/NAME` (created, as the kubelet does)
    /// and cgroup parent `/<instance>/NAME`.
    pub fn pod(&self, name: &str) -> PodBuilder {
        let logs = self.dir().join("logs").join(name);
        fs::create_dir_all(&logs).unwrap_or_else(|e| panic!("mkdir {}: {e}", logs.display()));
        PodBuilder::new(name)
            .log_directory(&logs)
            .cgroup_parent(&format!("/{}/{name}", self.namespace()))
    }

    /// RunPodSandbox with the handler of the runtime under test.
    pub fn run_pod(&self, b: PodBuilder) -> CriResult<Pod> {
        self.run_pod_with_handler(b, self.cri_handler())
    }

    pub fn run_pod_with_handler(&self, b: PodBuilder, handler: &str) -> CriResult<Pod> {
        let config = b.build();
        let id = self.cri().run_pod_sandbox(&config, handler)?;
        Ok(Pod {
            id,
            builder: b,
            config,
            handler: handler.to_string(),
        })
    }

    /// `run_pod`, panicking with the error unless it worked.
    pub fn run_pod_ok(&self, b: PodBuilder) -> Pod {
        let name = b.name.clone();
        self.run_pod(b).unwrap_or_else(|e| {
            panic!("RunPodSandbox {name} (handler {}): {e}", self.cri_handler())
        })
    }

    pub fn create_container(&self, pod: &Pod, c: &ContainerBuilder) -> CriResult<String> {
        self.cri()
            .create_container(&pod.id, &c.build(&pod.builder), &pod.config)
    }

    /// CreateContainer + StartContainer; panics with the error unless both worked.
    pub fn start_in_pod(&self, pod: &Pod, c: &ContainerBuilder) -> String {
        let id = self
            .create_container(pod, c)
            .unwrap_or_else(|e| panic!("container {} of pod {}: {e}", c.name, pod.name()));
        self.cri()
            .start_container(&id)
            .unwrap_or_else(|e| panic!("container {} of pod {}: {e}", c.name, pod.name()));
        self.note_shim_sockets();
        id
    }

    /// ContainerStatus (verbose); panics on error.
    pub fn container_status(&self, id: &str) -> api::ContainerStatusResponse {
        self.cri()
            .container_status(id, true)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Polls ContainerStatus until container `id` is in `state`; panics after `timeout` with
    /// the last status.
    pub fn wait_container_state(
        &self,
        id: &str,
        state: api::ContainerState,
        timeout: Duration,
    ) -> api::ContainerStatus {
        let start = Instant::now();
        loop {
            let resp = self.container_status(id);
            let st = resp.status.clone().expect("ContainerStatus has a status");
            if st.state == state as i32 {
                return st;
            }
            assert!(
                start.elapsed() < timeout,
                "container {id} did not reach {} within {timeout:?}; last status: {}",
                container_state_name(state as i32),
                describe_status(&st)
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The host pid of a running container (ContainerStatus verbose info `pid`).
    pub fn container_pid(&self, id: &str) -> u32 {
        let resp = self.container_status(id);
        let info = verbose_info(&resp.info);
        info["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p > 0)
            .unwrap_or_else(|| panic!("no pid in ContainerStatus info of {id}: {:?}", resp.info))
    }

    /// PodSandboxStatus (verbose); panics on error.
    pub fn sandbox_status(&self, pod_id: &str) -> api::PodSandboxStatusResponse {
        self.cri()
            .pod_sandbox_status(pod_id, true)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The host pid of the pod's sandbox (pause) process.
    pub fn sandbox_pid(&self, pod_id: &str) -> u32 {
        let resp = self.sandbox_status(pod_id);
        let info = verbose_info(&resp.info);
        info["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p > 0)
            .unwrap_or_else(|| {
                panic!(
                    "no pid in PodSandboxStatus info of {pod_id}: {:?}",
                    resp.info
                )
            })
    }

    /// The pod's network namespace path, from the sandbox's runtime spec.
    pub fn sandbox_netns_path(&self, pod_id: &str) -> Option<String> {
        let info = verbose_info(&self.sandbox_status(pod_id).info);
        info["runtimeSpec"]["linux"]["namespaces"]
            .as_array()?
            .iter()
            .find(|n| n["type"] == "network")?["path"]
            .as_str()
            .map(str::to_string)
    }

    /// Remembers the shim sockets the bundles name now, for the teardown.
    pub fn note_shim_sockets(&self) {
        let mut now = cleanup::shim_sockets_from_state(&self.state_dir());
        now.extend(cleanup::shim_debug_sockets(
            &self.state_dir(),
            &self.address(),
        ));
        let mut seen = self
            .cri_parts()
            .seen_sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for s in now {
            if !seen.contains(&s) {
                seen.push(s);
            }
        }
    }

    /// The pid of the shim that serves the pod: the `shim.pid` file of the sandbox's bundle
    /// (mypod writes one; containerd 1.6's runc-v2 does not), else the shim of this instance
    /// started with `-id SANDBOX_ID` (the first container of a group names the shim).
    pub fn sandbox_shim_pid(&self, pod_id: &str) -> Option<u32> {
        self.note_shim_sockets();
        let f = self
            .state_dir()
            .join("io.containerd.runtime.v2.task")
            .join(CRI_NAMESPACE)
            .join(pod_id)
            .join("shim.pid");
        if let Some(p) = fs::read_to_string(f)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            return Some(p);
        }
        let flag = format!(" -id {pod_id} ");
        self.shim_pids()
            .into_iter()
            .find(|&p| procfs::cmdline(p).is_some_and(|c| format!("{c} ").contains(&flag)))
    }

    /// StopPodSandbox + RemovePodSandbox; panics unless both worked.
    pub fn stop_and_remove_pod(&self, pod: &Pod) {
        self.cri()
            .stop_pod_sandbox(&pod.id)
            .unwrap_or_else(|e| panic!("pod {}: {e}", pod.name()));
        self.cri()
            .remove_pod_sandbox(&pod.id)
            .unwrap_or_else(|e| panic!("pod {}: {e}", pod.name()));
    }

    /// StopPodSandbox + RemovePodSandbox until both succeed, as the kubelet retries them; panics
    /// with the last error after `timeout`. Returns the errors of the failed attempts.
    /// (After a shim died, containerd 1.7/2.x handle the containers' exits asynchronously with
    /// back-off, and RemovePodSandbox fails with "container is still running" until they are
    /// done: seen with runc too.)
    pub fn stop_and_remove_pod_retrying(&self, pod: &Pod, timeout: Duration) -> Vec<CriError> {
        let start = Instant::now();
        let mut failed = Vec::new();
        loop {
            let res = self
                .cri()
                .stop_pod_sandbox(&pod.id)
                .and_then(|()| self.cri().remove_pod_sandbox(&pod.id));
            match res {
                Ok(()) => return failed,
                Err(e) => {
                    assert!(
                        start.elapsed() < timeout,
                        "pod {} could not be stopped and removed within {timeout:?}: {e}
                         (earlier attempts: {failed:?})",
                        pod.name()
                    );
                    failed.push(e);
                }
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// ExecSync, panicking with the error unless the call worked (the command's exit code is
    /// in the answer).
    pub fn exec_ok(&self, id: &str, cmd: &[&str]) -> api::ExecSyncResponse {
        self.cri()
            .exec_sync(id, cmd, 30)
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?} in {id}: {e}"))
    }
}
