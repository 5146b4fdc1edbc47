//! Loading config.json and refusing, by name, what mypod does not honour yet.

use std::path::{Path, PathBuf};

use crate::idmap::MountIdmap;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// Errors reading or validating a spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `field` is the failing field's path and ": " (empty for the document itself).
    #[error("cannot parse {path}: {field}{source}")]
    Parse {
        path: PathBuf,
        field: String,
        source: serde_json::Error,
    },
    #[error("config.json: {field} is not supported by mypod yet")]
    Unsupported { field: &'static str },
    /// A bad scheduler, I/O priority or personality.
    #[error("config.json: {0}")]
    Sched(#[from] crate::sched::SchedError),
    #[error("config.json: {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// A bad `linux.seccomp` value; `field` is its path, e.g. `linux.seccomp.syscalls[2].action`.
    #[error("config.json: {field}: {reason}")]
    Seccomp { field: String, reason: String },
    #[error(transparent)]
    Idmap(#[from] crate::idmap::IdmapError),
    /// A uid or gid out of range (see [`crate::ids`]).
    #[error("config.json: {0}")]
    Id(#[from] crate::ids::IdError),
    /// A bad hook; `field` is its path, e.g. `hooks.poststop[0].path`.
    #[error("config.json: {field}: {reason}")]
    Hook { field: String, reason: String },
    /// A value runc refuses, or one whose meaning would change (see [`crate::spec_checks`]).
    #[error("config.json: {0}")]
    Check(#[from] crate::spec_checks::CheckError),
}

/// Reads and parses `<bundle>/config.json`.
pub fn load(bundle: &Path) -> Result<Spec, SpecError> {
    load_with_idmaps(bundle).map(|(spec, _)| spec)
}

/// Reads and parses `<bundle>/config.json`, with the idmappings of its mounts, which
/// the spec parser (oci-spec) does not model.
pub fn load_with_idmaps(bundle: &Path) -> Result<(Spec, Vec<MountIdmap>), SpecError> {
    let path = bundle.join("config.json");
    let data = std::fs::read(&path).map_err(|source| SpecError::Read {
        path: path.clone(),
        source,
    })?;
    parse_with_idmaps(&data, path)
}

/// Parses config.json's bytes as [`load_with_idmaps`] does (`path` names it in errors).
pub fn parse_with_idmaps(data: &[u8], path: PathBuf) -> Result<(Spec, Vec<MountIdmap>), SpecError> {
    match crate::json_path::parse(data) {
        Ok(spec) => Ok((spec, crate::idmap::parse(data)?)),
        Err((field, source)) => match crate::seccomp::parse_fallback(data) {
            Some(r) => r.map(|spec| (spec, Vec::new())),
            None => Err(SpecError::Parse {
                path,
                field: match crate::json_path::describe(&field, &source) {
                    d if d == source.to_string() => String::new(),
                    _ => format!("{field}: "),
                },
                source,
            }),
        },
    }
}

/// The checks of a process alone: an exec's process (the rest of the spec was checked
/// when the container was created), and the container's own as part of [`validate`].
pub fn validate_process(process: &oci_spec::runtime::Process) -> Result<(), SpecError> {
    let unsupported = |field| Err(SpecError::Unsupported { field });
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(SpecError::Invalid {
            field: "process.args",
            reason: "no command to run".into(),
        });
    }
    crate::ids::check_user("process.user", process.user())?;
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
    if let Some(s) = process.scheduler() {
        crate::sched::validate_scheduler(s)?;
    }
    if let Some(p) = process.io_priority() {
        crate::sched::validate_io_priority(p)?;
    }
    if process.exec_cpu_affinity().is_some() {
        return unsupported("process.execCPUAffinity");
    }
    crate::spec_checks::process(process)?;
    Ok(())
}

/// Checks a spec for fields mypod would otherwise ignore. Security-relevant fields are
/// never ignored silently: they are refused here, naming the field.
pub fn validate(spec: &Spec) -> Result<(), SpecError> {
    let unsupported = |field| Err(SpecError::Unsupported { field });
    let process = spec.process().as_ref().ok_or(SpecError::Invalid {
        field: "process",
        reason: "missing".into(),
    })?;
    validate_process(process)?;
    crate::hooks::validate(spec).map_err(|(field, reason)| SpecError::Hook { field, reason })?;
    if let Some(linux) = spec.linux() {
        if let Some(sc) = linux.seccomp() {
            crate::seccomp::validate(sc)?;
        }
        if let Some(p) = linux.personality() {
            crate::sched::validate_personality(p)?;
        }
        validate_linux_ids(linux)?;
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
    crate::spec_checks::spec(spec)?;
    Ok(())
}

/// The ids of `linux`: the user namespace's uid and gid maps and the device owners.
fn validate_linux_ids(linux: &oci_spec::runtime::Linux) -> Result<(), SpecError> {
    let maps = [
        ("linux.uidMappings", linux.uid_mappings()),
        ("linux.gidMappings", linux.gid_mappings()),
    ];
    for (field, ranges) in maps {
        for (i, r) in ranges.iter().flatten().enumerate() {
            let field = format!("{field}[{i}]");
            crate::ids::check_range(&field, r.container_id(), r.host_id(), r.size())?;
        }
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if let Some(uid) = d.uid() {
            crate::ids::check(|| format!("linux.devices[{i}].uid"), uid)?;
        }
        if let Some(gid) = d.gid() {
            crate::ids::check(|| format!("linux.devices[{i}].gid"), gid)?;
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
        let with_mnt = r#""linux":{"namespaces":[{"type":"mount"}]},"root""#;
        validate(&spec(&MIN.replace(r#""root""#, with_mnt))).unwrap();
    }

    fn load_str(json: &str) -> Result<Spec, SpecError> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mypod-spec-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), json).unwrap();
        let r = load(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    #[test]
    fn other_parse_errors_are_left_alone() {
        let e = load_str(&MIN.replace(r#""uid":0"#, r#""uid":"zero""#))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot parse"), "{e}");
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

    #[test]
    fn ids_that_set_id_would_read_as_unchanged_are_refused() {
        let cases = [
            (r#""uid":0"#, r#""uid":4294967295"#, "process.user.uid"),
            (r#""gid":0"#, r#""gid":4294967295"#, "process.user.gid"),
            (
                r#""gid":0"#,
                r#""gid":0,"additionalGids":[4294967295]"#,
                "process.user.additionalGids[0]",
            ),
        ];
        for (from, to, field) in cases {
            let e = validate(&spec(&MIN.replace(from, to)))
                .unwrap_err()
                .to_string();
            assert!(e.contains(field) && e.contains("0-2147483647"), "{to}: {e}");
        }
        let linux = |l: &str| spec(&MIN.replace(r#""root""#, &format!(r#""linux":{l},"root""#)));
        let map = r#"[{"containerID":0,"hostID":100000,"size":65536}]"#;
        let bad = r#"[{"containerID":0,"hostID":4294967295,"size":1}]"#;
        let e = validate(&linux(&format!(
            r#"{{"namespaces":[{{"type":"user"}}],"uidMappings":{map},"gidMappings":{bad}}}"#
        )))
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.gidMappings[0].hostID"), "{e}");
        validate(&linux(&format!(
            r#"{{"namespaces":[{{"type":"user"}},{{"type":"mount"}}],"uidMappings":{map},"gidMappings":{map}}}"#
        )))
        .unwrap();
        let dev =
            r#"{"devices":[{"path":"/dev/x","type":"c","major":1,"minor":3,"uid":4294967295}]}"#;
        let e = validate(&linux(dev)).unwrap_err().to_string();
        assert!(e.contains("linux.devices[0].uid"), "{e}");
    }

    #[test]
    fn an_exec_process_is_checked_alone() {
        let p = |json: &str| -> oci_spec::runtime::Process { serde_json::from_str(json).unwrap() };
        let ok = p(r#"{"args":["/bin/true"],"cwd":"/","user":{"uid":0,"gid":0}}"#);
        assert!(validate_process(&ok).is_ok());
        let e = validate_process(&p(
            r#"{"args":["/bin/true"],"cwd":"/","user":{"uid":0,"gid":0},"apparmorProfile":"x"}"#,
        ))
        .unwrap_err();
        assert!(e.to_string().contains("process.apparmorProfile"), "{e}");
        let e =
            validate_process(&p(r#"{"args":[],"cwd":"/","user":{"uid":0,"gid":0}}"#)).unwrap_err();
        assert!(e.to_string().contains("process.args"), "{e}");
    }
}
