//! Which `linux.sysctl` keys a container may set: only those of a kernel namespace the
//! container does not share with the host (runc's rules). Anything else would change the
//! host for every pod — a pod with hostNetwork and `net.ipv4.ip_forward` must fail, not
//! flip the node's setting.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// A sysctl the container may not set.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SysctlError {
    #[error("linux.sysctl: {key:?} needs the container's own {ns} namespace, but it {why}")]
    SharedNamespace {
        key: String,
        ns: &'static str,
        why: &'static str,
    },
    #[error(
        "linux.sysctl: {key:?} is not in a separate kernel namespace: it would change the host"
    )]
    NotNamespaced { key: String },
    #[error("linux.sysctl: \"kernel.hostname\" conflicts with the spec's hostname field")]
    Hostname,
}

/// The namespace a sysctl key belongs to (as runc decides), or None if none does.
fn namespace_of(key: &str) -> Option<LinuxNamespaceType> {
    const IPC: [&str; 7] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
    ];
    if IPC.contains(&key) || key == "kernel.shm_rmid_forced" || key.starts_with("fs.mqueue.") {
        Some(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if key == "kernel.domainname" {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

/// Checks every sysctl of the spec. `is_host_ns(type, path)` says whether a namespace
/// joined by path is the host's (the shim's own) one.
pub fn validate(
    spec: &Spec,
    is_host_ns: impl Fn(LinuxNamespaceType, &Path) -> bool,
) -> Result<(), SysctlError> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    let namespaces = crate::spec::namespaces(spec);
    // Sorted, so the error names the same key every time.
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    for key in keys {
        if key == "kernel.hostname" {
            return Err(SysctlError::Hostname);
        }
        let Some(ty) = namespace_of(key) else {
            return Err(SysctlError::NotNamespaced { key: key.clone() });
        };
        let ns = match ty {
            LinuxNamespaceType::Ipc => "ipc",
            LinuxNamespaceType::Network => "network",
            _ => "uts",
        };
        let why = match namespaces.iter().find(|(t, _)| *t == ty) {
            None => Some("shares the host's"),
            Some((_, Some(path))) if is_host_ns(ty, path) => Some("joins the host's"),
            Some(_) => None,
        };
        if let Some(why) = why {
            return Err(SysctlError::SharedNamespace {
                key: key.clone(),
                ns,
                why,
            });
        }
    }
    Ok(())
}

/// Whether `path` is the namespace of that type this process is in (what a container
/// without that namespace would share). Also used for host access (`crate::host_access`).
pub fn is_own_namespace(ty: LinuxNamespaceType, path: &Path) -> bool {
    let name = match ty {
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        _ => return false,
    };
    let own = std::fs::metadata(format!("/proc/self/ns/{name}"));
    let other = std::fs::metadata(path);
    matches!((own, other), (Ok(a), Ok(b)) if a.dev() == b.dev() && a.ino() == b.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(namespaces: &str, sysctl: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
                "process":{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}}}},
                "linux":{{"namespaces":[{namespaces}],"sysctl":{{{sysctl}}}}}}}"#
        ))
        .unwrap()
    }

    fn check(namespaces: &str, sysctl: &str) -> Result<(), SysctlError> {
        validate(&spec(namespaces, sysctl), |_, p| p == Path::new("/host"))
    }

    #[test]
    fn namespaced_keys_need_their_own_namespace() {
        let all = r#"{"type":"network"},{"type":"ipc"},{"type":"uts"},{"type":"mount"}"#;
        check(
            all,
            r#""net.ipv4.ip_forward":"1","kernel.shmmax":"1","fs.mqueue.msg_max":"9","kernel.domainname":"x""#,
        )
        .unwrap();
        check(
            r#"{"type":"network","path":"/proc/7/ns/net"}"#,
            r#""net.core.somaxconn":"1""#,
        )
        .unwrap();
    }

    #[test]
    fn host_namespaces_are_refused_naming_the_key() {
        let err = check(r#"{"type":"ipc"}"#, r#""net.ipv4.ip_forward":"1""#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.sysctl: \"net.ipv4.ip_forward\" needs the container's own network namespace, but it shares the host's"
        );
        let err = check(
            r#"{"type":"network","path":"/host"}"#,
            r#""net.ipv4.ip_forward":"1""#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("joins the host's"), "{err}");
        assert!(check(r#"{"type":"network"}"#, r#""kernel.sem":"1 2 3 4""#).is_err());
        assert!(check(r#"{"type":"network"}"#, r#""kernel.domainname":"x""#).is_err());
        assert_eq!(
            check(r#"{"type":"uts"}"#, r#""kernel.hostname":"x""#).unwrap_err(),
            SysctlError::Hostname
        );
    }

    #[test]
    fn keys_of_no_namespace_are_refused() {
        let all = r#"{"type":"network"},{"type":"ipc"},{"type":"uts"}"#;
        assert_eq!(
            check(all, r#""vm.swappiness":"1""#).unwrap_err(),
            SysctlError::NotNamespaced {
                key: "vm.swappiness".into()
            }
        );
        assert!(check(all, r#""kernel.pid_max":"100""#).is_err());
    }
}
