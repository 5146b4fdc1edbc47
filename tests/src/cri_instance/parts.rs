//! The CRI parts of an instance: its sandbox image, network namespace, CNI config and the CRI
//! sections of its config.toml.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::cni::CniCacheUser;
use super::{BRIDGE, BROKEN_PAUSE_IMAGE, PAUSE_IMAGE, POD_SUBNET};
use crate::cleanup;
use crate::containerd::MYPOD_RUNTIME;
use crate::cri::CriClient;
use crate::netns::NetNs;
use crate::version::{repo_root, Version};

/// Which pause image an instance is configured with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxImage {
    Pause,
    Broken,
}

impl SandboxImage {
    pub fn name(self) -> &'static str {
        match self {
            SandboxImage::Pause => PAUSE_IMAGE,
            SandboxImage::Broken => BROKEN_PAUSE_IMAGE,
        }
    }

    /// The OCI layout tar holding it; panics if it is missing.
    pub fn tar(self) -> PathBuf {
        let file = match self {
            SandboxImage::Pause => "pause.tar",
            SandboxImage::Broken => "pause-broken.tar",
        };
        let p = repo_root().join(".cache/images").join(file);
        assert!(
            p.is_file(),
            "{} is missing: run scripts/setup.sh (scripts/build-pause-image.sh)",
            p.display()
        );
        p
    }
}

/// The CRI parts of an instance.
pub struct CriParts {
    pub netns: NetNs,
    pub client: Option<CriClient>,
    pub sandbox_image: SandboxImage,
    /// The CNI network's name (= the instance's name).
    pub network: String,
    /// Shim sockets seen in bundles' `address` files while pods ran: a shim that was killed
    /// leaves its socket (under /run/containerd/s/) after its bundles are gone.
    pub(crate) seen_sockets: Mutex<Vec<PathBuf>>,
    pub(super) _cni_cache: CniCacheUser,
}

impl CriParts {
    /// Makes the network namespace and writes the CNI dirs under `dir`.
    pub(crate) fn prepare(dir: &Path, name: &str, sandbox_image: SandboxImage) -> CriParts {
        let netns = NetNs::new().unwrap_or_else(|e| panic!("create a network namespace: {e}"));
        let cni_cache = CniCacheUser::new();
        let bin = dir.join("cni/bin");
        let conf = dir.join("cni/net.d");
        for d in [&bin, &conf, &dir.join("cni/ipam"), &dir.join("logs")] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        for plugin in ["bridge", "host-local", "loopback"] {
            let target = Path::new("/usr/lib/cni").join(plugin);
            assert!(
                target.is_file(),
                "{} is missing: apt-get install containernetworking-plugins (scripts/setup.sh)",
                target.display()
            );
            symlink(&target, bin.join(plugin))
                .unwrap_or_else(|e| panic!("ln -s {}: {e}", target.display()));
        }
        let conflist = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": name,
            "plugins": [{
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": POD_SUBNET }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": dir.join("cni/ipam"),
                }
            }]
        });
        fs::write(
            conf.join("10-mypodtest.conflist"),
            serde_json::to_string_pretty(&conflist).expect("JSON"),
        )
        .expect("write the CNI config");
        CriParts {
            netns,
            client: None,
            sandbox_image,
            network: name.to_string(),
            seen_sockets: Mutex::new(Vec::new()),
            _cni_cache: cni_cache,
        }
    }

    /// The CRI sections of config.toml for version `v`.
    pub(crate) fn config_sections(
        &self,
        v: Version,
        dir: &Path,
        runtime: &str,
        with_runc: bool,
    ) -> String {
        let d = dir.display();
        let default_runtime = handler_for(runtime);
        let config_path = repo_root().join("runtime.toml");
        let image = self.sandbox_image.name();
        // Settings every version has, in the runtime plugin's table: `io.containerd.grpc.v1.cri`
        // up to 1.7, `io.containerd.cri.v1.runtime` from 2.0 on.
        let common = "  restrict_oom_score_adj = true\n  disable_apparmor = true\n  netns_mounts_under_state_dir = true\n";
        let (rt, mut s) = match v {
            Version::V1_6 | Version::V1_7 => {
                let rt = "plugins.\"io.containerd.grpc.v1.cri\"";
                let mut s = format!(
                    "\n[{rt}]\n  sandbox_image = \"{image}\"\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n{common}"
                );
                if v == Version::V1_7 {
                    s.push_str("  enable_cdi = false\n");
                }
                s.push_str(&format!(
                    "  [{rt}.cni]\n    bin_dir = \"{d}/cni/bin\"\n    conf_dir = \"{d}/cni/net.d\"\n    max_conf_num = 1\n"
                ));
                (rt, s)
            }
            Version::V2_1 => {
                let rt = "plugins.\"io.containerd.cri.v1.runtime\"";
                let mut s = format!(
                    "\n[plugins.\"io.containerd.cri.v1.images\"]\n  snapshotter = \"overlayfs\"\n  [plugins.\"io.containerd.cri.v1.images\".pinned_images]\n    sandbox = \"{image}\"\n"
                );
                s.push_str(
                    "\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\"\n",
                );
                s.push_str(&format!("\n[{rt}]\n{common}  enable_cdi = false\n"));
                s.push_str(&format!(
                    "  [{rt}.cni]\n    bin_dirs = [\"{d}/cni/bin\"]\n    conf_dir = \"{d}/cni/net.d\"\n    max_conf_num = 1\n"
                ));
                (rt, s)
            }
        };
        s.push_str(&format!(
            "  [{rt}.containerd]\n    default_runtime_name = \"{default_runtime}\"\n"
        ));
        s.push_str(&format!(
            "  [{rt}.containerd.runtimes.mypod]\n    runtime_type = \"{MYPOD_RUNTIME}\"\n  [{rt}.containerd.runtimes.mypod.options]\n    ConfigPath = \"{}\"\n",
            config_path.display()
        ));
        // README's second runtime entry: mypod without the sandbox defaults.
        s.push_str(&format!(
            "  [{rt}.containerd.runtimes.mypod-compat]\n    runtime_type = \"{MYPOD_RUNTIME}\"\n  [{rt}.containerd.runtimes.mypod-compat.options]\n    ConfigPath = \"{}\"\n",
            repo_root().join("runtime-compat.toml").display()
        ));
        if v == Version::V2_1 {
            // README's 2.x entry: the shim is the pod's sandbox (no pause container). No
            // options table: containerd 2.1's StartContainer reads a shim sandbox's options
            // as runc's and fails on any other; mypod then uses its built-in defaults, which
            // are runtime.toml's.
            s.push_str(&format!(
                "  [{rt}.containerd.runtimes.{SHIM_SANDBOXER}]\n    runtime_type = \"{MYPOD_RUNTIME}\"\n    sandboxer = \"shim\"\n"
            ));
        }
        if with_runc {
            s.push_str(&format!(
                "  [{rt}.containerd.runtimes.runc]\n    runtime_type = \"io.containerd.runc.v2\"\n  [{rt}.containerd.runtimes.runc.options]\n    Root = \"{d}/runc\"\n"
            ));
        }
        s
    }

    /// The shim sockets seen so far (see `seen_sockets`).
    pub(crate) fn sockets(&self) -> Vec<PathBuf> {
        self.seen_sockets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The network namespace's links, addresses and routes (for failure reports).
    pub fn describe_network(&self) -> String {
        format!(
            "==== network namespace {} of the instance:\n{}{}",
            self.netns.link_text(),
            self.netns.ip(&["-o", "addr"]),
            self.netns.ip(&["route"])
        )
    }

    /// The last steps of an instance's teardown, after containerd is stopped and purged.
    pub(crate) fn teardown(self) -> Vec<String> {
        let mut report = Vec::new();
        let left = self.netns.pids_in();
        report.extend(cleanup::kill_pids(
            &left,
            Duration::ZERO,
            "process in the instance's network namespace",
        ));
        drop(self.client);
        drop(self.netns);
        report
    }
}

/// The CRI runtime entry (containerd 2.x only) whose pods mypod's shim serves as their
/// sandbox (`sandboxer = "shim"`): no pause container.
pub const SHIM_SANDBOXER: &str = "mypod-shim";

/// The RuntimeClass handler (CRI runtime entry) for a runtime type.
pub fn handler_for(runtime: &str) -> &'static str {
    if runtime == MYPOD_RUNTIME {
        "mypod"
    } else {
        "runc"
    }
}
