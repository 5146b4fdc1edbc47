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

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::containerd::{Containerd, MYPOD_RUNTIME};
use crate::cri::{
    self, api, container_state_name, describe_status, verbose_info, ContainerBuilder, CriClient,
    CriError, CriResult, PodBuilder,
};
use crate::image::{self, IMAGE};
use crate::netns::NetNs;
use crate::procfs;
use crate::version::{repo_root, Version};

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

/// libcni's cache dir (containerd gives no way to move it): the first pod's CNI ADD creates
/// `/var/lib/cni/results` if it is missing. The files in it are removed per instance by the
/// purge; the dirs themselves, when the tests made them, by the last CRI instance to end.
const CNI_DIR: &str = "/var/lib/cni";
const CNI_RESULTS: &str = "/var/lib/cni/results";
/// Left in `CNI_DIR` when the tests created it: whoever ends the last CRI instance removes it.
const CNI_MARKER: &str = "/var/lib/cni/.made-by-mypod-tests";

/// CRI instances alive in this process.
static CNI_USERS: Mutex<usize> = Mutex::new(0);

/// Held by each CRI instance. The first of a process creates the cache dirs (with a marker) if
/// they are missing; when the process' last one ends and no other live test process has a
/// CRI instance, dirs the tests made are removed again (only if empty).
struct CniCacheUser;

impl CniCacheUser {
    fn new() -> CniCacheUser {
        let mut users = CNI_USERS.lock().unwrap_or_else(|e| e.into_inner());
        if *users == 0 && !Path::new(CNI_DIR).exists() {
            use std::os::unix::fs::DirBuilderExt;
            let made = fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(CNI_RESULTS);
            if made.is_ok() {
                let _ = fs::write(
                    CNI_MARKER,
                    "made by mypod-tests (tests/src/cri_instance.rs)\n",
                );
            }
        }
        *users += 1;
        CniCacheUser
    }
}

/// True if another live test process has a CRI instance (its instance dir has `cni/`).
fn other_process_uses_cni() -> bool {
    let me = std::process::id();
    let Ok(rd) = fs::read_dir(crate::containerd::tmp_root()) else {
        return false;
    };
    rd.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("mypodtest-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        pid.is_some_and(|p| p != me && procfs::alive(p)) && e.path().join("cni").is_dir()
    })
}

impl Drop for CniCacheUser {
    fn drop(&mut self) {
        let mut users = CNI_USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users -= 1;
        if *users == 0 && Path::new(CNI_MARKER).is_file() && !other_process_uses_cni() {
            // remove_dir fails (and keeps the dir) unless it is empty.
            let results_gone = match fs::remove_dir(CNI_RESULTS) {
                Ok(()) => true,
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            };
            if results_gone {
                let _ = fs::remove_file(CNI_MARKER);
                let _ = fs::remove_dir(CNI_DIR);
            }
        }
    }
}

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
    _cni_cache: CniCacheUser,
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

/// The RuntimeClass handler (CRI runtime entry) for a runtime type.
pub fn handler_for(runtime: &str) -> &'static str {
    if runtime == MYPOD_RUNTIME {
        "mypod"
    } else {
        "runc"
    }
}

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

/// What a running pod occupies on the host, recorded to check later that all of it is gone.
#[derive(Clone, Debug, Default)]
pub struct PodFootprint {
    pub pod_id: String,
    pub container_ids: Vec<String>,
    /// Host pids with their command lines (the sandbox's and the running containers').
    pub pids: Vec<(u32, String)>,
    /// The pod's network namespace file (CRI's bind mount).
    pub netns_path: Option<String>,
    pub ip: String,
    /// cgroup paths relative to a hierarchy root.
    pub cgroups: Vec<String>,
    /// The shims serving the pod.
    pub shims: Vec<u32>,
}

impl Containerd {
    fn cri_parts(&self) -> &CriParts {
        self.cri
            .as_ref()
            .expect("not a CRI instance: use Containerd::builder(v).cri(true)")
    }

    /// The CRI client of this instance.
    pub fn cri(&self) -> &CriClient {
        self.cri_parts()
            .client
            .as_ref()
            .expect("the CRI client is connected at start-up")
    }

    /// The RuntimeClass handler of the runtime under test: `mypod`, or `runc` with
    /// MYPOD_TEST_RUNTIME=runc.
    pub fn cri_handler(&self) -> &'static str {
        handler_for(self.runtime())
    }

    /// The instance's network namespace.
    pub fn netns(&self) -> &NetNs {
        &self.cri_parts().netns
    }

    /// Connects the CRI client, waits for CRI to be ready (runtime and network), imports the
    /// images into `k8s.io` and waits until CRI sees them.
    pub(crate) fn cri_ready(&mut self) {
        let socket = self.address();
        let start = Instant::now();
        let client = loop {
            let attempt = CriClient::connect(&socket)
                .map_err(|e| e.to_string())
                .and_then(|c| c.version().map(|_| c).map_err(|e| e.to_string()));
            match attempt {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        start.elapsed() < Duration::from_secs(30),
                        "CRI of containerd {} did not answer within 30 s: {e}\n{}",
                        self.version(),
                        self.log_tail(40)
                    );
                    thread::sleep(Duration::from_millis(100));
                }
            }
        };
        loop {
            let st = client.status(false);
            let conditions: Vec<(String, bool, String)> = st
                .as_ref()
                .ok()
                .and_then(|s| s.status.as_ref())
                .map(|s| {
                    s.conditions
                        .iter()
                        .map(|c| (c.r#type.clone(), c.status, c.message.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let ready = |t: &str| conditions.iter().any(|c| c.0 == t && c.1);
            if ready("RuntimeReady") && ready("NetworkReady") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "CRI of containerd {} is not ready after 30 s: {st:?}\n{}",
                self.version(),
                self.log_tail(40)
            );
            thread::sleep(Duration::from_millis(100));
        }
        let image_tar = image::image_tar();
        let sandbox_image = self.cri_parts().sandbox_image;
        for (tar, name) in [
            (image_tar, IMAGE),
            (sandbox_image.tar(), sandbox_image.name()),
        ] {
            let tar = tar.to_string_lossy().into_owned();
            self.ctr_timeout(&["images", "import", &tar], Duration::from_secs(120))
                .assert_success();
            loop {
                match client.image_status(name) {
                    Ok(Some(_)) => break,
                    other => assert!(
                        start.elapsed() < Duration::from_secs(60),
                        "CRI does not see image {name} after importing {tar}: {other:?}"
                    ),
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        self.cri.as_mut().expect("CRI instance").client = Some(client);
    }

    /// Stops and removes every pod and container through CRI (teardown); never panics.
    pub(crate) fn cri_remove_all(&self) -> Vec<String> {
        let mut report = Vec::new();
        let client = match CriClient::connect_with_timeout(&self.address(), Duration::from_secs(20))
        {
            Ok(c) => c,
            Err(e) => return vec![format!("CRI teardown: {e}")],
        };
        match client.list_pod_sandbox(None) {
            Ok(pods) => {
                for p in pods {
                    if let Err(e) = client.stop_pod_sandbox(&p.id) {
                        report.push(format!("teardown: {e}"));
                    }
                    if let Err(e) = client.remove_pod_sandbox(&p.id) {
                        report.push(format!("teardown: {e}"));
                    }
                }
            }
            Err(e) => report.push(format!("teardown: {e}")),
        }
        if let Ok(containers) = client.list_containers(None) {
            for c in containers {
                let _ = client.stop_container(&c.id, 0);
                if let Err(e) = client.remove_container(&c.id) {
                    report.push(format!("teardown: {e}"));
                }
            }
        }
        report
    }

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

    /// Records what the pod and its running containers occupy now.
    pub fn footprint(&self, pod: &Pod, containers: &[String]) -> PodFootprint {
        self.note_shim_sockets();
        let mut fp = PodFootprint {
            pod_id: pod.id.clone(),
            container_ids: containers.to_vec(),
            netns_path: self.sandbox_netns_path(&pod.id),
            ..Default::default()
        };
        let st = self.sandbox_status(&pod.id);
        fp.ip = st
            .status
            .as_ref()
            .and_then(|s| s.network.as_ref())
            .map(|n| n.ip.clone())
            .unwrap_or_default();
        let sp = self.sandbox_pid(&pod.id);
        fp.pids.push((sp, procfs::cmdline(sp).unwrap_or_default()));
        fp.cgroups.push(pod.cgroup_of(&pod.id));
        for id in containers {
            let st = self.container_status(id);
            if st
                .status
                .as_ref()
                .is_some_and(|s| s.state == api::ContainerState::ContainerRunning as i32)
            {
                let p = self.container_pid(id);
                fp.pids.push((p, procfs::cmdline(p).unwrap_or_default()));
            }
            fp.cgroups.push(pod.cgroup_of(id));
        }
        fp.shims = self.shim_pids();
        fp
    }

    /// What is left of a pod (see `footprint`) after it was stopped and removed: empty when
    /// nothing is. `other_pods` = false also counts any shim or container process of the
    /// instance (the test runs no other pod).
    pub fn pod_leftovers(&self, fp: &PodFootprint, other_pods: bool) -> Vec<String> {
        let mut left = Vec::new();
        let mut ids = vec![fp.pod_id.clone()];
        ids.extend(fp.container_ids.iter().cloned());
        match self.cri().list_pod_sandbox(None) {
            Ok(pods) => {
                for p in pods.iter().filter(|p| p.id == fp.pod_id) {
                    left.push(format!(
                        "CRI still lists pod sandbox {} ({})",
                        p.id,
                        cri::sandbox_state_name(p.state)
                    ));
                }
            }
            Err(e) => left.push(e.to_string()),
        }
        match self.cri().list_containers(None) {
            Ok(cs) => {
                for c in cs.iter().filter(|c| ids.contains(&c.id)) {
                    left.push(format!(
                        "CRI still lists container {} ({})",
                        c.id,
                        container_state_name(c.state)
                    ));
                }
            }
            Err(e) => left.push(e.to_string()),
        }
        let t = Duration::from_secs(30);
        for task in self.tasks_with_timeout(t) {
            if ids.contains(&task.id) {
                left.push(format!("containerd task {task:?}"));
            }
        }
        let out = self.ctr_timeout(&["containers", "ls", "-q"], t);
        for c in out.stdout.lines().map(str::trim) {
            if ids.iter().any(|id| id == c) {
                left.push(format!("containerd container {c}"));
            }
        }
        for (pid, cmd) in &fp.pids {
            if procfs::alive(*pid) && procfs::cmdline(*pid).as_deref() == Some(cmd.as_str()) {
                left.push(format!("process {pid} ({cmd}) {}", describe_process(*pid)));
            }
        }
        if !other_pods {
            // Every shim of the instance: those seen while the pod ran and any started since.
            let mut shims: Vec<u32> = fp.shims.clone();
            shims.extend(self.shim_pids());
            shims.sort_unstable();
            shims.dedup();
            let needle = format!("{}/", self.dir().display());
            for p in shims {
                let cmd = procfs::cmdline(p).unwrap_or_default();
                if procfs::alive(p) && cmd.contains(&needle) {
                    left.push(format!("shim pid {p}: {cmd}"));
                }
            }
            for p in cleanup::pids_rooted_under(self.dir()) {
                left.push(format!(
                    "container process pid {p}: {}",
                    procfs::cmdline(p).unwrap_or_default()
                ));
            }
        }
        for m in cleanup::mounts_under(self.dir()) {
            let s = m.to_string_lossy();
            if ids.iter().any(|id| s.contains(id.as_str())) || fp.netns_path.as_deref() == Some(&*s)
            {
                left.push(format!("mount {s}"));
            }
        }
        if let Some(ns) = &fp.netns_path {
            if Path::new(ns).exists() {
                left.push(format!("pod network namespace file {ns}"));
            }
        }
        for cg in &fp.cgroups {
            for d in cleanup::cgroup_dirs(cg) {
                left.push(format!("cgroup {}", d.display()));
            }
        }
        if !fp.ip.is_empty() {
            let lease = self
                .dir()
                .join("cni/ipam")
                .join(&self.cri_parts().network)
                .join(&fp.ip);
            if lease.exists() {
                left.push(format!("IP lease {}", lease.display()));
            }
        }
        left
    }

    /// Panics unless nothing of the pod is left within `timeout`.
    pub fn assert_pod_gone(&self, fp: &PodFootprint, other_pods: bool, timeout: Duration) {
        let start = Instant::now();
        loop {
            let left = self.pod_leftovers(fp, other_pods);
            if left.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "pod {} left behind after {timeout:?}:\n  {}",
                fp.pod_id,
                left.join("\n  ")
            );
            thread::sleep(Duration::from_millis(100));
        }
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

/// Parent and cgroup of a host process, for leftover reports.
fn describe_process(pid: u32) -> String {
    let cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let cg = cg
        .lines()
        .find(|l| l.contains(":memory:") || l.starts_with("0::"))
        .unwrap_or("?");
    format!("[ppid {}, cgroup {cg}]", procfs::ppid(pid).unwrap_or(0))
}

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
    use super::*;

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
