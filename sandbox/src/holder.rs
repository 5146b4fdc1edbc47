//! The pod holder: the process that holds a pod's namespaces when the shim is the pod's
//! sandbox (containerd 2.x `sandboxer = "shim"`), in place of a pause container.
//!
//! It is an ordinary container of the pod built from [`spec`] — no image: an empty,
//! read-only root with a tmpfs `/dev` — so it gets everything a container gets (the pod's
//! user namespace, cgroup, seccomp profile, no capabilities) from the same code. Its
//! helper does not exec anything: after setup it becomes [`serve`], which waits for
//! signals and reaps orphans (it is pid 1 of the pod's pid namespace when the pod shares
//! one). containerd builds each container's namespaces from `/proc/<holder>/ns/*`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

/// Errors building the holder's spec.
#[derive(Debug, thiserror::Error)]
pub enum HolderError {
    #[error("pod holder spec: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    #[error("pod config: {0}")]
    Invalid(String),
}

/// How a pod namespace is shared, as CRI's `NamespaceMode` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// One for the pod (the holder's).
    #[default]
    Pod,
    /// One per container (pid only).
    Container,
    /// The node's (host access).
    Node,
}

/// What a pod asks of its holder: the parts of CRI's PodSandboxConfig the holder and the
/// pod's files need, decoded by the shim.
#[derive(Debug, Clone, Default)]
pub struct PodConfig {
    /// The sandbox id.
    pub id: String,
    pub hostname: String,
    /// `linux.cgroup_parent`; the holder's cgroup is `<parent>/<id>` (or systemd's form for
    /// a `.slice` parent), as containerd's CRI names the pause container's.
    pub cgroup_parent: String,
    pub sysctls: HashMap<String, String>,
    /// The network namespace CRI made (CreateSandbox's netns_path); none with host network.
    pub netns: Option<PathBuf>,
    pub network: Sharing,
    pub pid: Sharing,
    pub ipc: Sharing,
    /// DNS servers, searches and options (`dns_config`); empty: the host's resolv.conf.
    pub dns_servers: Vec<String>,
    pub dns_searches: Vec<String>,
    pub dns_options: Vec<String>,
    /// The pod asked for a privileged sandbox.
    pub privileged: bool,
}

/// The cgroupsPath containerd's CRI gives a pod's sandbox (and mypod its holder).
pub fn cgroups_path(parent: &str, id: &str) -> String {
    let base = Path::new(parent)
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    if base.ends_with(".slice") {
        format!("{base}:cri-containerd:{id}")
    } else if parent.is_empty() {
        format!("/mypod/{id}")
    } else {
        format!("{}/{id}", parent.trim_end_matches('/'))
    }
}

/// The holder's OCI spec: root `rootfs` (relative to the bundle), read-only, /proc and a
/// tmpfs `/dev`; CRI's netns joined by path; new ipc, uts, mount and pid namespaces (unless the
/// pod shares the node's); the pod's hostname and sysctls; uid 0 with no capabilities
/// and no new privileges.
pub fn spec(pod: &PodConfig, rootfs: &str) -> Result<Spec, HolderError> {
    let mut namespaces = vec![
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Mount)
            .build()?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Uts)
            .build()?,
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Cgroup)
            .build()?,
    ];
    match (pod.network, &pod.netns) {
        (Sharing::Node, _) => {}
        (_, Some(path)) => namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path.clone())
                .build()?,
        ),
        (_, None) => {
            return Err(HolderError::Invalid(
                "no network namespace (netns_path) for a pod without host network".into(),
            ))
        }
    }
    if pod.ipc != Sharing::Node {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Ipc)
                .build()?,
        );
    }
    if pod.pid != Sharing::Node {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Pid)
                .build()?,
        );
    }
    let dev = MountBuilder::default()
        .destination("/dev")
        .typ("tmpfs")
        .source("tmpfs")
        .options(
            ["nosuid", "strictatime", "mode=755", "size=65536k"]
                .map(String::from)
                .to_vec(),
        )
        .build()?;
    let none = std::collections::HashSet::<oci_spec::runtime::Capability>::new;
    // /proc, where the helper writes the pod's sysctls.
    let proc = MountBuilder::default()
        .destination("/proc")
        .typ("proc")
        .source("proc")
        .options(["nosuid", "noexec", "nodev"].map(String::from).to_vec())
        .build()?;
    let no_caps = LinuxCapabilitiesBuilder::default()
        .bounding(none())
        .effective(none())
        .permitted(none())
        .inheritable(none())
        .ambient(none())
        .build()?;
    let process = ProcessBuilder::default()
        .args(vec!["pod-holder".to_string()])
        .cwd("/")
        .env(vec!["PATH=/".to_string()])
        .user(UserBuilder::default().uid(0u32).gid(0u32).build()?)
        .capabilities(no_caps)
        .no_new_privileges(true)
        .build()?;
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(cgroups_path(&pod.cgroup_parent, &pod.id)))
        .masked_paths(Vec::new())
        .readonly_paths(Vec::new());
    let mut sysctls = pod.sysctls.clone();
    if pod.network != Sharing::Node {
        // What containerd's CRI gives a pause container's pod (sandbox_run_linux.go), unless
        // the pod sets them: unprivileged low ports and ping.
        for (k, v) in [
            ("net.ipv4.ip_unprivileged_port_start", "0"),
            ("net.ipv4.ping_group_range", "0 2147483647"),
        ] {
            sysctls
                .entry(k.to_string())
                .or_insert_with(|| v.to_string());
        }
    }
    if !sysctls.is_empty() {
        linux = linux.sysctl(sysctls);
    }
    let hostname = if pod.hostname.is_empty() {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        pod.hostname.clone()
    };
    Ok(SpecBuilder::default()
        .version("1.1.0")
        .root(RootBuilder::default().path(rootfs).readonly(true).build()?)
        .hostname(hostname)
        .mounts(vec![proc, dev])
        .process(process)
        .linux(linux.build()?)
        .annotations(HashMap::from([(
            "io.kubernetes.cri.sandbox-id".to_string(),
            pod.id.clone(),
        )]))
        .build()?)
}

/// The pod as an OCI spec for containerd's record (containerd >= 2.3 stores
/// StartSandboxResponse.spec): the holder's namespaces by path (`/proc/<pid>/ns/*`: network,
/// ipc, uts, the pid namespace when the pod shares one, the user namespace when the holder
/// has its own) and the mounts every container of the pod gets.
pub fn pod_spec(
    pod: &PodConfig,
    pid: i32,
    mounts: Vec<oci_spec::runtime::Mount>,
) -> Result<Spec, HolderError> {
    let path = |ns: &str| PathBuf::from(format!("/proc/{pid}/ns/{ns}"));
    let mut kinds = vec![
        (LinuxNamespaceType::Network, "net"),
        (LinuxNamespaceType::Ipc, "ipc"),
        (LinuxNamespaceType::Uts, "uts"),
    ];
    if pod.pid == Sharing::Pod {
        kinds.push((LinuxNamespaceType::Pid, "pid"));
    }
    let own_user = std::fs::read_link("/proc/self/ns/user").ok();
    if std::fs::read_link(path("user")).ok() != own_user {
        kinds.push((LinuxNamespaceType::User, "user"));
    }
    let namespaces = kinds
        .into_iter()
        .map(|(t, n)| {
            LinuxNamespaceBuilder::default()
                .typ(t)
                .path(path(n))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SpecBuilder::default()
        .version("1.1.0")
        .hostname(crate::pod_files::hostname(pod).map_err(|e| HolderError::Invalid(e.to_string()))?)
        .mounts(mounts)
        .linux(
            LinuxBuilder::default()
                .namespaces(namespaces)
                .cgroups_path(PathBuf::from(cgroups_path(&pod.cgroup_parent, &pod.id)))
                .build()?,
        )
        .build()?)
}

/// The holder's life after setup, in its helper (single-threaded, freshly exec'd): wait
/// for signals, reap every child that ends (orphans of a shared pid namespace are
/// re-parented to it), and exit 0 on SIGTERM or SIGINT. Never returns.
pub fn serve() -> ! {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

    extern "C" fn quit(_: libc::c_int) {
        // SAFETY: _exit is async-signal-safe and ends the process at once.
        unsafe { libc::_exit(0) }
    }
    extern "C" fn wake(_: libc::c_int) {}

    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    // SIGCHLD stays blocked except inside sigsuspend, so none is lost between the reaping
    // pass and the wait.
    let _ = chld.thread_block();
    for (sig, handler) in [
        (Signal::SIGTERM, quit as extern "C" fn(libc::c_int)),
        (Signal::SIGINT, quit),
        (Signal::SIGCHLD, wake),
    ] {
        let action = SigAction::new(
            SigHandler::Handler(handler),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: both handlers only call async-signal-safe functions (none, or _exit).
        let _ = unsafe { sigaction(sig, &action) };
    }
    let mut others = SigSet::all();
    others.remove(Signal::SIGCHLD);
    let _ = others.thread_unblock();
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        // Waits with SIGCHLD unblocked; returns after any handled signal.
        let _ = SigSet::empty().suspend();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> PodConfig {
        PodConfig {
            id: "sb1".into(),
            hostname: "web-0".into(),
            cgroup_parent: "/kubepods/besteffort/pod1".into(),
            sysctls: HashMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
            netns: Some("/var/run/netns/cni-1".into()),
            ..Default::default()
        }
    }

    #[test]
    fn cgroups_paths_as_cri_names_them() {
        assert_eq!(cgroups_path("/kubepods/pod1", "x"), "/kubepods/pod1/x");
        assert_eq!(
            cgroups_path("/kubepods.slice/kubepods-pod1.slice", "x"),
            "kubepods-pod1.slice:cri-containerd:x"
        );
        assert_eq!(cgroups_path("", "x"), "/mypod/x");
    }

    #[test]
    fn the_holder_spec_holds_the_pods_namespaces() {
        let s = spec(&pod(), "holder").unwrap();
        let linux = s.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_ref().unwrap();
        let path_of = |t| ns.iter().find(|n| n.typ() == t).map(|n| n.path().clone());
        assert_eq!(
            path_of(LinuxNamespaceType::Network),
            Some(Some("/var/run/netns/cni-1".into()))
        );
        for t in [
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Mount,
        ] {
            assert_eq!(path_of(t), Some(None), "{t:?} is new");
        }
        assert_eq!(s.hostname().as_deref(), Some("web-0"));
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/kubepods/besteffort/pod1/sb1"))
        );
        assert_eq!(linux.sysctl().as_ref().unwrap()["net.ipv4.ip_forward"], "1");
        let p = s.process().as_ref().unwrap();
        assert_eq!(p.no_new_privileges(), Some(true));
        let caps = p.capabilities().as_ref().unwrap();
        assert!(caps.bounding().as_ref().unwrap().is_empty());
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
    }

    #[test]
    fn the_pod_spec_names_the_holders_namespaces() {
        let s = pod_spec(&pod(), std::process::id() as i32, Vec::new()).unwrap();
        let ns = s.linux().as_ref().unwrap().namespaces().clone().unwrap();
        let me = std::process::id();
        let paths: Vec<_> = ns.iter().map(|n| n.path().clone().unwrap()).collect();
        assert_eq!(
            paths,
            ["net", "ipc", "uts", "pid"].map(|n| PathBuf::from(format!("/proc/{me}/ns/{n}")))
        );
        assert_eq!(s.hostname().as_deref(), Some("web-0"));
    }

    #[test]
    fn node_namespaces_are_not_made_and_a_missing_netns_is_refused() {
        let mut p = pod();
        p.ipc = Sharing::Node;
        p.pid = Sharing::Node;
        let s = spec(&p, "holder").unwrap();
        let ns = s.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Ipc));
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Pid));
        p.netns = None;
        assert!(spec(&p, "holder").is_err());
        p.network = Sharing::Node;
        let s = spec(&p, "holder").unwrap();
        let ns = s.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    }
}
