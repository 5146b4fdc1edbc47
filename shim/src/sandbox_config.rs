//! CreateSandboxRequest → the pod's config: containerd 2.x passes CRI's PodSandboxConfig
//! as an Any (`runtime.v1.PodSandboxConfig`) and the network namespace it made as a path.

use std::path::PathBuf;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use mypod_protos::cri_pod::{NamespaceMode, PodSandboxConfig};
use mypod_protos::POD_SANDBOX_CONFIG_TYPE_URL;
use mypod_sandbox::holder::{PodConfig, Sharing};

use crate::error::ServiceError;

fn sharing(mode: NamespaceMode) -> Sharing {
    match mode {
        NamespaceMode::POD => Sharing::Pod,
        NamespaceMode::NODE => Sharing::Node,
        NamespaceMode::CONTAINER | NamespaceMode::TARGET => Sharing::Container,
    }
}

/// The pod's config from CreateSandbox's options and netns path. Options of another type
/// (or none: `ctr`-made sandboxes) give a pod with defaults in that network namespace.
pub fn pod_config(
    id: &str,
    options: Option<&Any>,
    netns_path: &str,
) -> Result<PodConfig, ServiceError> {
    let mut pod = PodConfig {
        id: id.to_string(),
        netns: (!netns_path.is_empty()).then(|| PathBuf::from(netns_path)),
        ..Default::default()
    };
    let Some(any) = options.filter(|a| a.type_url.ends_with(POD_SANDBOX_CONFIG_TYPE_URL)) else {
        if let Some(a) = options.filter(|a| !a.type_url.is_empty()) {
            log::warn!(
                "sandbox {id}: options of type {:?} ignored (not {POD_SANDBOX_CONFIG_TYPE_URL})",
                a.type_url
            );
        }
        return Ok(pod);
    };
    let cfg = PodSandboxConfig::parse_from_bytes(&any.value).map_err(|e| {
        ServiceError::InvalidArgument(format!(
            "sandbox {id}: CreateSandbox options: not a {POD_SANDBOX_CONFIG_TYPE_URL}: {e}"
        ))
    })?;
    pod.hostname = cfg.hostname.clone();
    if let Some(dns) = cfg.dns_config.as_ref() {
        pod.dns_servers = dns.servers.clone();
        pod.dns_searches = dns.searches.clone();
        pod.dns_options = dns.options.clone();
    }
    if let Some(linux) = cfg.linux.as_ref() {
        pod.cgroup_parent = linux.cgroup_parent.clone();
        pod.sysctls = linux.sysctls.clone();
        if let Some(sc) = linux.security_context.as_ref() {
            pod.privileged = sc.privileged;
            if let Some(ns) = sc.namespace_options.as_ref() {
                let mode = |v: containerd_shim_protos::protobuf::EnumOrUnknown<NamespaceMode>| {
                    v.enum_value().map(sharing).map_err(|n| {
                        ServiceError::InvalidArgument(format!(
                            "sandbox {id}: unknown namespace mode {n}"
                        ))
                    })
                };
                pod.network = mode(ns.network)?;
                pod.pid = mode(ns.pid)?;
                pod.ipc = mode(ns.ipc)?;
            }
        }
    }
    Ok(pod)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mypod_protos::cri_pod::{
        DNSConfig, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceOption,
    };

    fn any_of(cfg: &PodSandboxConfig) -> Any {
        let mut a = Any::new();
        a.type_url = POD_SANDBOX_CONFIG_TYPE_URL.to_string();
        a.value = cfg.write_to_bytes().unwrap();
        a
    }

    #[test]
    fn a_kubelet_pod_config_is_read() {
        let mut cfg = PodSandboxConfig::new();
        cfg.hostname = "web-0".into();
        let mut dns = DNSConfig::new();
        dns.servers = vec!["10.96.0.10".into()];
        dns.searches = vec!["svc.cluster.local".into()];
        cfg.dns_config = Some(dns).into();
        let mut linux = LinuxPodSandboxConfig::new();
        linux.cgroup_parent = "/kubepods/pod1".into();
        linux
            .sysctls
            .insert("net.ipv4.ip_forward".into(), "1".into());
        let mut ns = NamespaceOption::new();
        ns.pid = NamespaceMode::POD.into();
        ns.ipc = NamespaceMode::NODE.into();
        let mut sc = LinuxSandboxSecurityContext::new();
        sc.namespace_options = Some(ns).into();
        linux.security_context = Some(sc).into();
        cfg.linux = Some(linux).into();
        let pod = pod_config("sb", Some(&any_of(&cfg)), "/var/run/netns/cni-1").unwrap();
        assert_eq!(pod.hostname, "web-0");
        assert_eq!(pod.dns_servers, ["10.96.0.10"]);
        assert_eq!(pod.cgroup_parent, "/kubepods/pod1");
        assert_eq!(pod.sysctls["net.ipv4.ip_forward"], "1");
        assert_eq!(pod.pid, Sharing::Pod);
        assert_eq!(pod.ipc, Sharing::Node);
        assert_eq!(pod.network, Sharing::Pod);
        assert_eq!(pod.netns, Some(PathBuf::from("/var/run/netns/cni-1")));
    }

    #[test]
    fn garbage_options_are_a_clear_error_and_none_give_defaults() {
        let mut a = Any::new();
        a.type_url = format!("type.googleapis.com/{POD_SANDBOX_CONFIG_TYPE_URL}");
        a.value = vec![0xff, 0xff, 0xff];
        let e = pod_config("sb", Some(&a), "").unwrap_err().to_string();
        assert!(e.contains("not a runtime.v1.PodSandboxConfig"), "{e}");
        let pod = pod_config("sb", None, "").unwrap();
        assert_eq!(pod.netns, None);
        assert_eq!(pod.id, "sb");
    }
}
