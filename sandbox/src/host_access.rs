//! Host access: what in a spec reaches past the container to the host, and whether the
//! shim's policy (runtime.toml `[sandbox] host_access`) lets a container ask for it.
//!
//! The rule, checked at Create (an exec joins an existing container and is not checked):
//!
//! - **privileged**: the bounding set holds every capability of the runtime's own
//!   bounding set (what "all current capabilities" grants) — or the spec has no
//!   `process.capabilities`, which leaves the helper's full set — *and* `linux.maskedPaths`
//!   is absent or empty. That is what CRI's `privileged: true` produces (containerd
//!   grants every current capability and clears the masked paths); a container that
//!   keeps mypod's masked paths, or lacks even one capability, is not counted here.
//! - **a host namespace**: no `network`, `pid` or `ipc` entry in `linux.namespaces`
//!   (the container shares the runtime's, that is the host's), or an entry that joins,
//!   by path, the namespace the shim itself is in. Any other path is not host access:
//!   CRI's pod network namespace and the pod's sandbox namespaces are joined by path.
//! - **a host namespace joined by path**: a `mount`, `user`, `uts` or `cgroup` entry whose
//!   path is the shim's own namespace (`/proc/1/ns/mnt`: the container would run on the
//!   host's `/`, with no rootfs, pivot or masked paths).
//! - **the host's root user**: a new user namespace whose `uidMappings` or `gidMappings`
//!   map host id 0.
//! - **mounts that propagate to the host**: `linux.rootfsPropagation` or a mount's option
//!   `shared`/`rshared` (what CRI makes of Kubernetes' `mountPropagation: Bidirectional`,
//!   which Kubernetes allows only in privileged containers). A mount made in the container
//!   then appears on the host, which a pod user namespace cannot give anyway: the kernel
//!   turns a less privileged mount namespace's shared mounts into slaves.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::policy::HostAccess;

/// One kind of host access a spec asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// Every capability and no masked paths; `no_capabilities` when the spec has no
    /// `process.capabilities` at all.
    Privileged { no_capabilities: bool },
    /// No entry for the namespace in `linux.namespaces`.
    SharedNamespace(&'static str),
    /// An entry that joins the shim's own (the host's) namespace by path.
    JoinedHostNamespace(&'static str, PathBuf),
    /// A new user namespace that maps host id 0 (in `uidMappings` or `gidMappings`).
    HostRoot(&'static str),
    /// Shared propagation: `rootfsPropagation` or the mounts (destinations) that ask for it.
    SharedPropagation(Vec<String>),
}

impl fmt::Display for Asked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Asked::Privileged {
                no_capabilities: false,
            } => write!(
                f,
                "a privileged container (every capability in process.capabilities.bounding \
                 and no linux.maskedPaths)"
            ),
            Asked::Privileged {
                no_capabilities: true,
            } => write!(
                f,
                "a privileged container (no process.capabilities, which keeps every \
                 capability, and no linux.maskedPaths)"
            ),
            Asked::SharedNamespace(ns) => write!(
                f,
                "the host's {ns} namespace (no \"{ns}\" entry in linux.namespaces)"
            ),
            Asked::JoinedHostNamespace(ns, path) => write!(
                f,
                "the host's {ns} namespace (the \"{ns}\" entry of linux.namespaces joins {}, \
                 the runtime's own)",
                path.display()
            ),
            Asked::HostRoot(which) => write!(
                f,
                "the host's root user (linux.{which} of the new user namespace map host id 0)"
            ),
            Asked::SharedPropagation(what) => write!(
                f,
                "mounts that propagate back to the host ({}: Bidirectional mount propagation)",
                what.join(", ")
            ),
        }
    }
}

/// What a list of asks reads as: `A and B`.
fn list(asked: &[Asked]) -> String {
    asked
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" and ")
}

/// Host access the policy does not allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostAccessError {
    #[error(
        "config.json asks for {}; runtime.toml [sandbox] host_access = \"refuse\" does not allow it",
        list(.0)
    )]
    Refused(Vec<Asked>),
}

/// The namespaces whose sharing counts as host access, with their names in messages.
const NAMESPACES: [(LinuxNamespaceType, &str); 3] = [
    (LinuxNamespaceType::Network, "network"),
    (LinuxNamespaceType::Pid, "pid"),
    (LinuxNamespaceType::Ipc, "ipc"),
];

/// The namespaces that count as host access only when joined by path and the shim's own.
const JOINED: [(LinuxNamespaceType, &str); 4] = [
    (LinuxNamespaceType::Mount, "mount"),
    (LinuxNamespaceType::User, "user"),
    (LinuxNamespaceType::Uts, "uts"),
    (LinuxNamespaceType::Cgroup, "cgroup"),
];

/// Whether the spec's process keeps every capability (see the module's rule), and
/// whether that is because the spec has no `process.capabilities`.
fn keeps_every_capability(spec: &Spec) -> (bool, bool) {
    let Some(c) = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
    else {
        return (true, true);
    };
    let bounding: HashSet<caps::Capability> = c
        .bounding()
        .iter()
        .flatten()
        .filter_map(|c| caps::Capability::from_str(&format!("CAP_{c}")).ok())
        .collect();
    (runtime_bounding_set().is_subset(&bounding), false)
}

/// Every capability the runtime itself may hold: its own bounding set, which is what
/// containerd's "all current capabilities" (CRI's and ctr's privileged) grants — on a
/// host that withholds one from root (as some VMs withhold CAP_SYS_RESOURCE), a
/// privileged spec lacks it too. All capabilities the kernel knows if it cannot be read.
fn runtime_bounding_set() -> HashSet<caps::Capability> {
    caps::read(None, caps::CapSet::Bounding).unwrap_or_else(|_| caps::all())
}

/// The host access `spec` asks for, in a fixed order (privileged, then network, pid,
/// ipc). `is_host_ns(type, path)` says whether a namespace joined by path is the
/// runtime's own.
pub fn asked(spec: &Spec, is_host_ns: impl Fn(LinuxNamespaceType, &Path) -> bool) -> Vec<Asked> {
    let mut out = Vec::new();
    let linux = spec.linux().as_ref();
    let (all_caps, no_capabilities) = keeps_every_capability(spec);
    let masked = linux
        .and_then(|l| l.masked_paths().as_ref())
        .is_some_and(|m| !m.is_empty());
    if all_caps && !masked {
        out.push(Asked::Privileged { no_capabilities });
    }
    let namespaces = crate::spec::namespaces(spec);
    for (ty, name) in NAMESPACES {
        match namespaces.iter().find(|(t, _)| *t == ty) {
            None => out.push(Asked::SharedNamespace(name)),
            Some((_, Some(path))) if is_host_ns(ty, path) => {
                out.push(Asked::JoinedHostNamespace(name, path.clone()))
            }
            Some(_) => {}
        }
    }
    for (ty, name) in JOINED {
        if let Some((_, Some(path))) = namespaces.iter().find(|(t, _)| *t == ty) {
            if is_host_ns(ty, path) {
                out.push(Asked::JoinedHostNamespace(name, path.clone()));
            }
        }
    }
    let new_userns = namespaces
        .iter()
        .any(|(t, p)| *t == LinuxNamespaceType::User && p.is_none());
    if new_userns {
        let maps_root = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
            m.iter().flatten().any(|m| m.host_id() == 0 && m.size() > 0)
        };
        if linux.is_some_and(|l| maps_root(l.uid_mappings())) {
            out.push(Asked::HostRoot("uidMappings"));
        }
        if linux.is_some_and(|l| maps_root(l.gid_mappings())) {
            out.push(Asked::HostRoot("gidMappings"));
        }
    }
    let shared = |o: &str| matches!(o, "shared" | "rshared");
    let mut propagating = Vec::new();
    if let Some(p) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|p| shared(p))
    {
        propagating.push(format!("rootfsPropagation {p:?}"));
    }
    for m in spec.mounts().iter().flatten() {
        if let Some(o) = m.options().iter().flatten().find(|o| shared(o)) {
            propagating.push(format!("mount {} {o:?}", m.destination().display()));
        }
    }
    if !propagating.is_empty() {
        out.push(Asked::SharedPropagation(propagating));
    }
    out
}

/// Applies the policy: the host access asked for (for a warning) when it is allowed, an
/// error naming all of it when it is refused.
pub fn check(
    spec: &Spec,
    policy: HostAccess,
    is_host_ns: impl Fn(LinuxNamespaceType, &Path) -> bool,
) -> Result<Vec<Asked>, HostAccessError> {
    let asked = asked(spec, is_host_ns);
    match policy {
        HostAccess::Refuse if !asked.is_empty() => Err(HostAccessError::Refused(asked)),
        _ => Ok(asked),
    }
}

/// The warning for host access that the policy allowed.
pub fn allowed_warning(asked: &[Asked]) -> String {
    format!(
        "config.json asks for {}; allowed by runtime.toml [sandbox] host_access = \"allow\"",
        list(asked)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_NS: &str =
        r#"{"type":"pid"},{"type":"network"},{"type":"ipc"},{"type":"uts"},{"type":"mount"}"#;
    const DEFAULT_CAPS: &str = r#""CAP_CHOWN","CAP_NET_BIND_SERVICE","CAP_KILL""#;

    fn all_caps() -> String {
        let mut names: Vec<String> = caps::all().iter().map(|c| format!("\"{c}\"")).collect();
        names.sort();
        names.join(",")
    }

    /// A spec with these namespaces, bounding capabilities (None: no
    /// process.capabilities) and masked paths.
    fn spec(namespaces: &str, bounding: Option<&str>, masked: &str) -> Spec {
        let caps = bounding
            .map(|b| format!(r#","capabilities":{{"bounding":[{b}],"effective":[{b}]}}"#))
            .unwrap_or_default();
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
                "process":{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}}{caps}}},
                "linux":{{"namespaces":[{namespaces}],"maskedPaths":[{masked}]}}}}"#
        ))
        .unwrap()
    }

    fn asked_of(s: &Spec) -> Vec<Asked> {
        asked(s, |_, p| p == Path::new("/host"))
    }

    #[test]
    fn a_normal_spec_asks_for_nothing() {
        let s = spec(ALL_NS, Some(DEFAULT_CAPS), r#""/proc/kcore""#);
        assert_eq!(asked_of(&s), vec![]);
        assert_eq!(check(&s, HostAccess::Refuse, |_, _| false), Ok(vec![]));
    }

    #[test]
    fn namespaces_joined_by_path_are_not_host_access() {
        let ns = r#"{"type":"pid","path":"/proc/7/ns/pid"},{"type":"network","path":"/var/run/netns/cni-1"},{"type":"ipc","path":"/proc/7/ns/ipc"},{"type":"mount"}"#;
        let s = spec(ns, Some(DEFAULT_CAPS), r#""/proc/kcore""#);
        assert_eq!(check(&s, HostAccess::Refuse, |_, _| false), Ok(vec![]));
    }

    #[test]
    fn joining_the_runtimes_own_namespace_is_host_access() {
        let ns = r#"{"type":"pid"},{"type":"network","path":"/host"},{"type":"ipc"}"#;
        let s = spec(ns, Some(DEFAULT_CAPS), r#""/proc/kcore""#);
        let err = check(&s, HostAccess::Refuse, |_, p| p == Path::new("/host")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.json asks for the host's network namespace (the \"network\" entry of \
             linux.namespaces joins /host, the runtime's own); runtime.toml [sandbox] \
             host_access = \"refuse\" does not allow it"
        );
    }

    #[test]
    fn joining_the_hosts_mount_or_user_namespace_is_host_access() {
        let ns = r#"{"type":"pid"},{"type":"network"},{"type":"ipc"},{"type":"mount","path":"/host"},{"type":"user","path":"/host"},{"type":"uts","path":"/proc/7/ns/uts"}"#;
        let s = spec(ns, Some(DEFAULT_CAPS), r#""/proc/kcore""#);
        let asked = asked_of(&s);
        assert!(asked.contains(&Asked::JoinedHostNamespace("mount", "/host".into())));
        assert!(asked.contains(&Asked::JoinedHostNamespace("user", "/host".into())));
        assert!(!asked
            .iter()
            .any(|a| matches!(a, Asked::JoinedHostNamespace("uts", _))));
    }

    #[test]
    fn a_user_namespace_that_maps_host_root_is_host_access() {
        let with_maps = |uid_host: u32, gid_host: u32| -> Spec {
            let mut s = spec(ALL_NS, Some(DEFAULT_CAPS), r#""/proc/kcore""#);
            let mut l = s.linux().clone().unwrap();
            let mut ns = l.namespaces().clone().unwrap();
            ns.push(
                oci_spec::runtime::LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::User)
                    .build()
                    .unwrap(),
            );
            l.set_namespaces(Some(ns));
            let map = |host| {
                oci_spec::runtime::LinuxIdMappingBuilder::default()
                    .container_id(0u32)
                    .host_id(host)
                    .size(65536u32)
                    .build()
                    .unwrap()
            };
            l.set_uid_mappings(Some(vec![map(uid_host)]));
            l.set_gid_mappings(Some(vec![map(gid_host)]));
            s.set_linux(Some(l));
            s
        };
        assert_eq!(
            asked_of(&with_maps(0, 100000)),
            vec![Asked::HostRoot("uidMappings")]
        );
        let err = check(&with_maps(100000, 0), HostAccess::Refuse, |_, _| false).unwrap_err();
        assert!(err
            .to_string()
            .contains("gidMappings of the new user namespace map host id 0"));
        assert_eq!(asked_of(&with_maps(100000, 165536)), vec![]);
    }

    #[test]
    fn each_missing_namespace_is_named() {
        for (missing, name) in [("network", "network"), ("pid", "pid"), ("ipc", "ipc")] {
            let ns: Vec<&str> = ["pid", "network", "ipc", "mount"]
                .into_iter()
                .filter(|t| *t != missing)
                .collect();
            let ns = ns
                .iter()
                .map(|t| format!(r#"{{"type":"{t}"}}"#))
                .collect::<Vec<_>>()
                .join(",");
            let s = spec(&ns, Some(DEFAULT_CAPS), r#""/proc/kcore""#);
            assert_eq!(asked_of(&s), vec![Asked::SharedNamespace(name)]);
            let err = check(&s, HostAccess::Refuse, |_, _| false).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "config.json asks for the host's {name} namespace (no \"{name}\" entry in \
                     linux.namespaces); runtime.toml [sandbox] host_access = \"refuse\" does \
                     not allow it"
                )
            );
        }
    }

    #[test]
    fn privileged_is_every_capability_and_no_masked_paths() {
        let all = all_caps();
        let s = spec(ALL_NS, Some(&all), "");
        assert_eq!(
            asked_of(&s),
            vec![Asked::Privileged {
                no_capabilities: false
            }]
        );
        let err = check(&s, HostAccess::Refuse, |_, _| false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config.json asks for a privileged container"),
            "{err}"
        );
        // No process.capabilities keeps every capability too.
        assert_eq!(
            asked_of(&spec(ALL_NS, None, "")),
            vec![Asked::Privileged {
                no_capabilities: true
            }]
        );
        // Masked paths, or one capability short, is not privileged.
        assert_eq!(
            asked_of(&spec(ALL_NS, Some(&all), r#""/proc/kcore""#)),
            vec![]
        );
        let short = all.replace(r#""CAP_SYS_ADMIN","#, "");
        assert_ne!(short, all);
        assert_eq!(asked_of(&spec(ALL_NS, Some(&short), "")), vec![]);
    }

    #[test]
    fn everything_asked_is_named_and_allow_returns_it() {
        let all = all_caps();
        let s = spec(r#"{"type":"mount"}"#, Some(&all), "");
        let asked = check(&s, HostAccess::Allow, |_, _| false).unwrap();
        assert_eq!(asked.len(), 4);
        let w = allowed_warning(&asked);
        assert!(w.contains("privileged container"), "{w}");
        assert!(w.contains("the host's network namespace"), "{w}");
        assert!(w.contains("the host's pid namespace"), "{w}");
        assert!(
            w.ends_with("the host's ipc namespace (no \"ipc\" entry in linux.namespaces); allowed by runtime.toml [sandbox] host_access = \"allow\""),
            "{w}"
        );
        assert_eq!(
            check(&s, HostAccess::Refuse, |_, _| false),
            Err(HostAccessError::Refused(asked))
        );
    }

    #[test]
    fn shared_propagation_is_host_access() {
        let mut s = spec(ALL_NS, Some(DEFAULT_CAPS), r#""/proc/kcore""#);
        let mounts: Vec<oci_spec::runtime::Mount> = serde_json::from_str(
            r#"[{"destination":"/vol","type":"bind","source":"/srv","options":["rbind","rshared"]},
                {"destination":"/ro","type":"bind","source":"/srv","options":["rbind","rslave"]}]"#,
        )
        .unwrap();
        s.set_mounts(Some(mounts));
        if let Some(l) = s.linux_mut() {
            l.set_rootfs_propagation(Some("rshared".into()));
        }
        let err = check(&s, HostAccess::Refuse, |_, _| false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.json asks for mounts that propagate back to the host (rootfsPropagation \
             \"rshared\", mount /vol \"rshared\": Bidirectional mount propagation); \
             runtime.toml [sandbox] host_access = \"refuse\" does not allow it"
        );
        if let Some(l) = s.linux_mut() {
            l.set_rootfs_propagation(Some("rslave".into()));
        }
        s.set_mounts(None);
        assert_eq!(asked_of(&s), vec![]);
    }
}
