//! Loading config.json and refusing, by name, what mypod does not honour yet.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Annotation CRI sets on every container of a pod.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// Annotation containerd's runc-v2 shim honours for grouping; we honour it too.
pub const RUNC_GROUP: &str = "io.containerd.runc.v2.group";
/// Annotation CRI sets to say whether this is the pod's sandbox container.
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

/// Errors reading or validating a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("config.json: {field} is not supported by mypod yet")]
    Unsupported { field: &'static str },
    #[error("config.json: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// Reads and parses `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&data).map_err(|source| SpecError::Parse { path, source })
}

/// The pod group a container belongs to: CRI's sandbox id, runc's group annotation,
/// or the container's own id.
pub fn group_id<'a>(spec: &'a Spec, id: &'a str) -> &'a str {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(RUNC_GROUP).or_else(|| a.get(SANDBOX_ID)))
        .map(String::as_str)
        .filter(|g| !g.is_empty())
        .unwrap_or(id)
}

/// Checks a spec for fields mypod would otherwise ignore. Security-relevant fields are
/// never ignored silently: they are refused here, naming the field.
pub fn validate(spec: &Spec) -> Result<(), SpecError> {
    let unsupported = |field| Err(SpecError::Unsupported { field });
    let process = spec.process().as_ref().ok_or(SpecError::Invalid {
        field: "process",
        reason: "missing".into(),
    })?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(SpecError::Invalid {
            field: "process.args",
            reason: "no command to run".into(),
        });
    }
    if process
        .apparmor_profile()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
    {
        return unsupported("process.apparmorProfile");
    }
    if process
        .selinux_label()
        .as_ref()
        .is_some_and(|p| !p.is_empty())
    {
        return unsupported("process.selinuxLabel");
    }
    if process.scheduler().is_some() {
        return unsupported("process.scheduler");
    }
    if process.io_priority().is_some() {
        return unsupported("process.ioPriority");
    }
    if process.exec_cpu_affinity().is_some() {
        return unsupported("process.execCPUAffinity");
    }
    if let Some(hooks) = spec.hooks() {
        let any = |h: &Option<Vec<_>>| h.as_ref().is_some_and(|v| !v.is_empty());
        #[allow(deprecated)]
        if any(hooks.prestart())
            || any(hooks.create_runtime())
            || any(hooks.create_container())
            || any(hooks.start_container())
            || any(hooks.poststart())
            || any(hooks.poststop())
        {
            return unsupported("hooks");
        }
    }
    if let Some(linux) = spec.linux() {
        if linux.seccomp().is_some() {
            return unsupported("linux.seccomp");
        }
        if linux.personality().is_some() {
            return unsupported("linux.personality");
        }
        if linux.intel_rdt().is_some() {
            return unsupported("linux.intelRdt");
        }
        if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
            return unsupported("linux.timeOffsets");
        }
        if linux.memory_policy().is_some() {
            return unsupported("linux.memoryPolicy");
        }
        if linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()) {
            return unsupported("linux.netDevices");
        }
        if linux.mount_label().as_ref().is_some_and(|l| !l.is_empty()) {
            return unsupported("linux.mountLabel");
        }
        if let Some(p) = linux.rootfs_propagation() {
            if !p.is_empty() && crate::mount::propagation_flag(p).is_none() {
                return Err(SpecError::Invalid {
                    field: "linux.rootfsPropagation",
                    reason: format!("unknown propagation {p:?}"),
                });
            }
        }
        let mut seen = Vec::new();
        for ns in linux.namespaces().iter().flatten() {
            if seen.contains(&ns.typ()) {
                return Err(SpecError::Invalid {
                    field: "linux.namespaces",
                    reason: format!("namespace {} listed twice", ns.typ()),
                });
            }
            seen.push(ns.typ());
            if ns.typ() == LinuxNamespaceType::Time {
                return unsupported("linux.namespaces[time]");
            }
        }
        let has_userns = seen.contains(&LinuxNamespaceType::User);
        if has_userns
            && linux
                .namespaces()
                .iter()
                .flatten()
                .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none())
            && (linux.uid_mappings().as_ref().is_none_or(|m| m.is_empty())
                || linux.gid_mappings().as_ref().is_none_or(|m| m.is_empty()))
        {
            return Err(SpecError::Invalid {
                field: "linux.uidMappings",
                reason: "a new user namespace needs uid and gid mappings".into(),
            });
        }
    }
    Ok(())
}

/// Namespaces the spec asks for, as (type, optional path to join).
pub fn namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .map(|v| v.iter().map(|n| (n.typ(), n.path().clone())).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const MIN: &str = r#"{"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"/","user":{"uid":0,"gid":0}},"root":{"path":"rootfs"}}"#;

    #[test]
    fn minimal_spec_is_valid() {
        validate(&spec(MIN)).unwrap();
    }

    #[test]
    fn group_prefers_runc_group_then_sandbox_id() {
        let mut s = spec(MIN);
        assert_eq!(group_id(&s, "c1"), "c1");
        s.set_annotations(Some([(SANDBOX_ID.to_string(), "pod".to_string())].into()));
        assert_eq!(group_id(&s, "c1"), "pod");
        s.set_annotations(Some(
            [
                (SANDBOX_ID.to_string(), "pod".to_string()),
                (RUNC_GROUP.to_string(), "grp".to_string()),
            ]
            .into(),
        ));
        assert_eq!(group_id(&s, "c1"), "grp");
    }

    #[test]
    fn seccomp_is_refused_by_name() {
        let s = spec(&MIN.replace(
            r#""root""#,
            r#""linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW"}},"root""#,
        ));
        let e = validate(&s).unwrap_err().to_string();
        assert!(e.contains("linux.seccomp"), "{e}");
    }

    #[test]
    fn empty_args_are_invalid() {
        let s = spec(&MIN.replace(r#"["/bin/true"]"#, "[]"));
        assert!(validate(&s)
            .unwrap_err()
            .to_string()
            .contains("process.args"));
    }

    #[test]
    fn new_userns_needs_mappings() {
        let s = spec(&MIN.replace(
            r#""root""#,
            r#""linux":{"namespaces":[{"type":"user"}]},"root""#,
        ));
        assert!(validate(&s)
            .unwrap_err()
            .to_string()
            .contains("uidMappings"));
    }
}
