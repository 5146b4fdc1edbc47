//! `PodBuilder` and `ContainerBuilder`: the configs the kubelet would send for a simple pod.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::api::{
    self, ContainerConfig, ContainerMetadata, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
};

/// The kubelet-like configuration of a pod sandbox.
#[derive(Clone, Debug)]
pub struct PodBuilder {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub hostname: String,
    pub log_directory: Option<PathBuf>,
    pub cgroup_parent: Option<String>,
    /// Containers share the pod's pid namespace (`shareProcessNamespace: true`).
    pub share_pid: bool,
    /// The pod uses the node's network namespace (`hostNetwork: true`).
    pub host_network: bool,
    /// The pod's sysctls (`securityContext.sysctls`).
    pub sysctls: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    /// `privileged` in the pod's security context (a privileged container needs it).
    pub privileged: bool,
}

impl PodBuilder {
    pub fn new(name: &str) -> PodBuilder {
        PodBuilder {
            name: name.to_string(),
            namespace: "mypodtest".to_string(),
            uid: format!("uid-{name}"),
            hostname: name.to_string(),
            log_directory: None,
            cgroup_parent: None,
            share_pid: false,
            host_network: false,
            sysctls: HashMap::new(),
            labels: HashMap::from([("mypodtest".to_string(), name.to_string())]),
            privileged: false,
        }
    }

    pub fn privileged(mut self, yes: bool) -> Self {
        self.privileged = yes;
        self
    }

    pub fn log_directory(mut self, dir: &Path) -> Self {
        self.log_directory = Some(dir.to_path_buf());
        self
    }

    pub fn cgroup_parent(mut self, parent: &str) -> Self {
        self.cgroup_parent = Some(parent.to_string());
        self
    }

    pub fn share_pid(mut self, yes: bool) -> Self {
        self.share_pid = yes;
        self
    }

    pub fn host_network(mut self, yes: bool) -> Self {
        self.host_network = yes;
        self
    }

    pub fn sysctl(mut self, key: &str, value: &str) -> Self {
        self.sysctls.insert(key.to_string(), value.to_string());
        self
    }

    pub fn hostname(mut self, h: &str) -> Self {
        self.hostname = h.to_string();
        self
    }

    /// The namespace options of the pod and (as the kubelet passes them) of its containers.
    pub fn namespace_options(&self) -> NamespaceOption {
        NamespaceOption {
            network: if self.host_network {
                NamespaceMode::Node as i32
            } else {
                NamespaceMode::Pod as i32
            },
            ipc: NamespaceMode::Pod as i32,
            pid: if self.share_pid {
                NamespaceMode::Pod as i32
            } else {
                NamespaceMode::Container as i32
            },
            ..Default::default()
        }
    }

    pub fn build(&self) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: 0,
            }),
            hostname: self.hostname.clone(),
            log_directory: self
                .log_directory
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            labels: self.labels.clone(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone().unwrap_or_default(),
                sysctls: self.sysctls.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(self.namespace_options()),
                    privileged: self.privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// The kubelet-like configuration of one container of a pod.
#[derive(Clone, Debug)]
pub struct ContainerBuilder {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// `metadata.attempt`: 0 for the first container of this name in the pod, +1 for each
    /// restart (the kubelet re-creates an exited container with the next attempt).
    pub attempt: u32,
    /// Relative to the pod's log directory; default `NAME/ATTEMPT.log` as the kubelet does.
    pub log_path: Option<String>,
    /// `linux.resources` (limits), if any were asked for.
    pub resources: Option<api::LinuxContainerResources>,
    /// Volumes: (host path, container path), read-write, as a hostPath or emptyDir.
    pub mounts: Vec<(String, String)>,
    /// `privileged` in the container's security context.
    pub privileged: bool,
    /// `stdin: true`: CRI keeps a pipe to the container's stdin open for attaching.
    pub stdin: bool,
    /// `stdinOnce: true`: the first attach that closes stdin closes it for good (the kubelet
    /// sets it for `kubectl run -i`).
    pub stdin_once: bool,
    /// `tty: true`: the container's stdio is a terminal.
    pub tty: bool,
}

impl ContainerBuilder {
    /// A container of the busybox test image running `command`.
    pub fn new(name: &str, command: &[&str]) -> ContainerBuilder {
        ContainerBuilder {
            name: name.to_string(),
            image: crate::image::IMAGE.to_string(),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
            env: Vec::new(),
            attempt: 0,
            log_path: None,
            resources: None,
            mounts: Vec::new(),
            privileged: false,
            stdin: false,
            stdin_once: false,
            tty: false,
        }
    }

    pub fn privileged(mut self, yes: bool) -> Self {
        self.privileged = yes;
        self
    }

    /// `stdin` and `stdinOnce` (see the fields).
    pub fn stdin(mut self, stdin: bool, once: bool) -> Self {
        self.stdin = stdin;
        self.stdin_once = once;
        self
    }

    /// `tty` (see the field).
    pub fn tty(mut self, yes: bool) -> Self {
        self.tty = yes;
        self
    }

    /// A read-write volume: host directory `host` at `container` (hostPath, emptyDir).
    pub fn mount(mut self, host: &str, container: &str) -> Self {
        self.mounts.push((host.to_string(), container.to_string()));
        self
    }

    fn resources_mut(&mut self) -> &mut api::LinuxContainerResources {
        self.resources.get_or_insert_with(Default::default)
    }

    /// `resources.limits.memory`: `memory_limit_in_bytes`.
    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.resources_mut().memory_limit_in_bytes = bytes;
        self
    }

    /// `resources.limits.cpu` as the kubelet sends it: CFS quota over a period (µs).
    pub fn cpu_quota(mut self, quota: i64, period: i64) -> Self {
        let r = self.resources_mut();
        r.cpu_quota = quota;
        r.cpu_period = period;
        self
    }

    /// `resources.requests.cpu` as the kubelet sends it: cpu shares.
    pub fn cpu_shares(mut self, shares: i64) -> Self {
        self.resources_mut().cpu_shares = shares;
        self
    }

    pub fn image(mut self, image: &str) -> Self {
        self.image = image.to_string();
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// `metadata.attempt` (and with it the default log path `NAME/ATTEMPT.log`).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    pub fn log_path(mut self, p: &str) -> Self {
        self.log_path = Some(p.to_string());
        self
    }

    /// The log path relative to the pod's log directory.
    pub fn relative_log_path(&self) -> String {
        self.log_path
            .clone()
            .unwrap_or_else(|| format!("{}/{}.log", self.name, self.attempt))
    }

    pub fn build(&self, pod: &PodBuilder) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: self.name.clone(),
                attempt: self.attempt,
            }),
            image: Some(ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: self.command.clone(),
            args: self.args.clone(),
            envs: self
                .env
                .iter()
                .map(|(k, v)| api::KeyValue {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
            log_path: self.relative_log_path(),
            mounts: self
                .mounts
                .iter()
                .map(|(h, c)| api::Mount {
                    host_path: h.clone(),
                    container_path: c.clone(),
                    ..Default::default()
                })
                .collect(),
            labels: HashMap::from([("mypodtest-container".to_string(), self.name.clone())]),
            stdin: self.stdin,
            stdin_once: self.stdin_once,
            tty: self.tty,
            linux: Some(LinuxContainerConfig {
                resources: self.resources.clone(),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(pod.namespace_options()),
                    privileged: self.privileged,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}
