//! CRI-enabled containerd instances (`Containerd::builder(v).cri(true)`), as the kubelet uses
//! containerd, and what tests do with their pods.
//!
//! Each instance gets, besides what every instance has (own dir, root, state, sockets, PATH):
//! - the CRI plugin with runtime entries `mypod` (`io.containerd.mypod.v2`, options
//!   `ConfigPath = <repo>/runtime.toml`) and, with `with_runc`, `runc` (`io.containerd.runc.v2`,
//!   options `Root = <dir>/runc`); the RuntimeClass handler of the runtime under test is the
//!   default runtime;
//! - `sandbox_image` = `registry.k8s.io/pause:local` (or `:broken`), imported with busybox into
//!   namespace `k8s.io` from `.cache/images/` (`scripts/build-pause-image.sh`): no pull is ever
//!   attempted;
//! - its own network namespace (`netns::NetNs`) that containerd runs in, and CNI from its own
//!   dirs: `<dir>/cni/bin` (links to Debian's `bridge`, `host-local`, `loopback` in
//!   /usr/lib/cni), `<dir>/cni/net.d/10-mypodtest.conflist` (a bridge `mypodbr0` with host-local
//!   IPAM on `POD_SUBNET`, its data in `<dir>/cni/ipam`);
//! - `netns_mounts_under_state_dir = true`: CRI's pod network namespaces are bind-mounted under
//!   the instance's state dir (not /run/netns), so the harness' unmount sweep finds them;
//! - `restrict_oom_score_adj = true` (this VM withholds CAP_SYS_RESOURCE), `disable_apparmor`,
//!   `enable_cdi = false` (1.7, 2.x);
//! - pods whose cgroup parent is `/<instance name>/<pod name>` (kubelet's pod cgroup), so that
//!   every cgroup of the instance lies under `/<instance name>` in each hierarchy.
//!
//! Teardown (on drop, also when the test failed): every pod stopped and removed through CRI,
//! then the usual ctr/kill/unmount/cgroup/dir purge (which also removes libcni's cache files
//! in /var/lib/cni/results that name the instance dir), and any process still in the network
//! namespace killed; the namespace goes with its last process and the harness' fd.
//!
//! Layout: `parts` (the instance's CRI config, CNI and network namespace), `cni` (libcni's
//! cache dir), `instance` (connecting CRI, teardown), `pods` (pods and containers through
//! CRI), `streams` (Exec and Attach sessions on CRI's stream server), `footprint` (what a pod
//! leaves on the host); ExecSync output helpers here.

use std::fs;

use crate::cri::api;

mod cni;
mod footprint;
mod instance;
mod parts;
mod pods;
mod streams;

pub use footprint::PodFootprint;
pub use parts::{handler_for, CriParts, SandboxImage, SHIM_SANDBOXER};
pub use pods::Pod;

/// CRI's containerd namespace.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// The working pause image (`scripts/build-pause-image.sh`).
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:local";
/// A pause image whose entrypoint `/pause` does not exist.
pub const BROKEN_PAUSE_IMAGE: &str = "registry.k8s.io/pause:broken";
/// The pods' subnet (inside the instance's own network namespace).
pub const POD_SUBNET: &str = "10.88.77.0/24";
/// The prefix every pod IP has.
pub const POD_IP_PREFIX: &str = "10.88.77.";
/// The CNI bridge in the instance's network namespace.
pub const BRIDGE: &str = "mypodbr0";

/// stdout of an ExecSync answer as text.
pub fn stdout_of(r: &api::ExecSyncResponse) -> String {
    String::from_utf8_lossy(&r.stdout).into_owned()
}

/// stderr of an ExecSync answer as text.
pub fn stderr_of(r: &api::ExecSyncResponse) -> String {
    String::from_utf8_lossy(&r.stderr).into_owned()
}

/// `readlink /proc/PID/ns/KIND` from the host.
pub fn host_ns(pid: u32, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{kind}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;

    use super::cni::CniCacheUser;
    use super::*;
    use crate::containerd::MYPOD_RUNTIME;
    use crate::netns::NetNs;
    use crate::version::Version;

    #[test]
    fn config_sections_parse_per_version() {
        let dir = Path::new("/tmp/mypodtest-x-1");
        for v in Version::ALL {
            let parts = CriParts {
                netns: match NetNs::new() {
                    Ok(n) => n,
                    Err(_) => return, // not root
                },
                client: None,
                sandbox_image: SandboxImage::Pause,
                network: "n".into(),
                seen_sockets: Mutex::new(Vec::new()),
                _cni_cache: CniCacheUser::new(),
            };
            let mut text = crate::containerd::config_toml_with(v, dir, true);
            text.push_str(&parts.config_sections(v, dir, MYPOD_RUNTIME, true));
            let headers: Vec<&str> = text
                .lines()
                .filter(|l| l.trim().starts_with('['))
                .map(str::trim)
                .collect();
            let mut uniq = headers.clone();
            uniq.sort_unstable();
            uniq.dedup();
            assert_eq!(
                uniq.len(),
                headers.len(),
                "a table is defined twice:\n{text}"
            );
            assert!(
                text.contains("runtime_type = \"io.containerd.mypod.v2\""),
                "{text}"
            );
            assert!(
                text.contains("netns_mounts_under_state_dir = true"),
                "{text}"
            );
            assert!(
                !text.contains("\"io.containerd.grpc.v1.cri\", "),
                "CRI must be enabled:\n{text}"
            );
        }
    }
}
