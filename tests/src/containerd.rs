//! One private containerd instance per test: its own temp dir, config, sockets, root, state,
//! PATH and namespace; torn down completely when dropped, also when the test fails.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use crate::cleanup;
use crate::command::{self, Output, CTR_TIMEOUT};
use crate::cri_instance::{CriParts, SandboxImage, CRI_NAMESPACE};
use crate::image::{self, IMAGE};
use crate::procfs;
use crate::version::{repo_root, Binaries, Version};

/// Runtime type of the mypod shim.
pub const MYPOD_RUNTIME: &str = "io.containerd.mypod.v2";
/// Runtime type of containerd's runc shim (for differential runs).
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";

/// Instance dirs and namespaces are `<tmp>/mypodtest-<pid>-<n>`.
const PREFIX: &str = "mypodtest-";

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static SWEEP: Once = Once::new();

pub(crate) fn tmp_root() -> PathBuf {
    // Short on purpose: unix socket paths must stay under 108 bytes.
    std::env::var_os("MYPOD_TEST_TMPDIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

/// The shim binary under test: env MYPOD_SHIM, else `<repo>/target/release/containerd-shim-mypod-v2`.
pub fn shim_path() -> PathBuf {
    std::env::var_os("MYPOD_SHIM")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/containerd-shim-mypod-v2"))
}

/// The shim binary name containerd derives from a runtime type
/// (`io.containerd.mypod.v2` → `containerd-shim-mypod-v2`).
pub fn shim_binary_name(runtime: &str) -> String {
    let parts: Vec<&str> = runtime.split('.').collect();
    assert!(parts.len() >= 2, "odd runtime type {runtime}");
    format!(
        "containerd-shim-{}-{}",
        parts[parts.len() - 2],
        parts[parts.len() - 1]
    )
}

/// How to start an instance. `Containerd::start(version)` uses the defaults, which come from
/// env MYPOD_TEST_RUNTIME: `mypod` (default) or `runc` (runs the whole suite against runc, to
/// check the tests themselves).
pub struct Builder {
    version: Version,
    runtime: String,
    with_runc: bool,
    with_criu: bool,
    cri: bool,
    sandbox_image: SandboxImage,
    shim_copy: bool,
    log_level: &'static str,
    compat: bool,
}

/// An instance with runc's shim beside mypod and mypod in its runc-compatible configuration
/// (no pod user namespace or default seccomp profile, host access allowed), so both runtimes
/// judge the same spec: `per_version!(NAME with mypod_tests::beside_runc)`.
pub fn beside_runc(b: Builder) -> Builder {
    b.with_runc(true).compat(true)
}

impl Builder {
    /// Run mypod with the repository's runtime-compat.toml (no pod user namespace, no
    /// default seccomp profile, host access allowed: runc's behaviour), for tests that
    /// compare mypod with runc or test a spec field's runc semantics: every `ctr run` of
    /// the mypod runtime gets `--runtime-config-path=<repo>/runtime-compat.toml`.
    pub fn compat(mut self, yes: bool) -> Self {
        self.compat = yes;
        self
    }

    /// containerd's log level (default "debug", at which it passes `-debug` to shims).
    pub fn log_level(mut self, level: &'static str) -> Self {
        self.log_level = level;
        self
    }

    /// Put a copy of the mypod shim on containerd's PATH instead of a link to the built
    /// one, for tests that try to overwrite it (see [`Containerd::shim_copy_path`]).
    pub fn shim_copy(mut self, yes: bool) -> Self {
        self.shim_copy = yes;
        self
    }

    /// The runtime type `run`/`run_detached` pass to `ctr --runtime`.
    pub fn runtime(mut self, runtime: &str) -> Self {
        self.runtime = runtime.to_string();
        self
    }

    /// Put `runc` and this version's `containerd-shim-runc-v2` on containerd's PATH.
    pub fn with_runc(mut self, yes: bool) -> Self {
        self.with_runc = yes;
        self
    }

    /// Put the host's `criu` (if installed: Debian's package `criu`) on containerd's PATH:
    /// containerd 2.x's CRI answers CheckpointContainer without asking the runtime unless it
    /// finds CRIU 3.16 or later.
    pub fn with_criu(mut self, yes: bool) -> Self {
        self.with_criu = yes;
        self
    }

    /// Enable CRI (see `cri_instance`): CNI, a private network namespace, the pause image,
    /// runtime entries `mypod` (and `runc` with `with_runc`), ctr's namespace `k8s.io`.
    pub fn cri(mut self, yes: bool) -> Self {
        self.cri = yes;
        self
    }

    /// The CRI sandbox (pause) image the instance is configured with (default: the working one).
    pub fn sandbox_image(mut self, image: SandboxImage) -> Self {
        self.sandbox_image = image;
        self
    }

    pub fn start(self) -> Containerd {
        Containerd::launch(self)
    }
}

/// A running containerd of one version, private to one test.
pub struct Containerd {
    version: Version,
    bins: Binaries,
    dir: PathBuf,
    ns: String,
    /// The containerd namespace ctr works in: `ns`, or `k8s.io` (CRI's) for CRI instances.
    ctr_ns: String,
    runtime: String,
    test_name: String,
    /// See [`Builder::compat`].
    compat: bool,
    child: Option<Child>,
    /// Set for CRI instances (dropped last: it holds the instance's network namespace).
    pub(crate) cri: Option<CriParts>,
}

impl Containerd {
    /// Starts `version` ("1.6", "1.7", "2.1", or "v1_7" style) with the default runtime and the
    /// test image imported into a fresh namespace. Panics (fails the test) if that version's
    /// binaries are missing.
    pub fn start(version: &str) -> Containerd {
        Containerd::builder(version).start()
    }

    pub fn builder(version: &str) -> Builder {
        let version = Version::parse(version);
        let which = std::env::var("MYPOD_TEST_RUNTIME").unwrap_or_else(|_| "mypod".into());
        let (runtime, with_runc) = match which.as_str() {
            "mypod" | "" => (MYPOD_RUNTIME, false),
            "runc" => (RUNC_RUNTIME, true),
            other => panic!("MYPOD_TEST_RUNTIME={other:?}: want mypod or runc"),
        };
        Builder {
            version,
            runtime: runtime.to_string(),
            with_runc,
            with_criu: false,
            cri: false,
            sandbox_image: SandboxImage::Pause,
            shim_copy: false,
            log_level: "debug",
            compat: false,
        }
    }

    fn launch(b: Builder) -> Containerd {
        crate::panic_note::install();
        SWEEP.call_once(|| cleanup::sweep_stale(&tmp_root(), PREFIX));
        let bins = b.version.binaries();
        let ns = format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tmp_root().join(&ns);
        let _ = fs::remove_dir_all(&dir);
        for sub in [
            "bin",
            "root",
            "state",
            "opt",
            "verifiers",
            "specs",
            "scratch",
        ] {
            fs::create_dir_all(dir.join(sub))
                .unwrap_or_else(|e| panic!("mkdir {}/{sub}: {e}", dir.display()));
        }
        let test_name = thread::current().name().unwrap_or("unnamed").to_string();
        let _ = fs::write(dir.join("test-name"), &test_name);

        // containerd's PATH: only what the test asked for. No runc unless with_runc.
        let bin = dir.join("bin");
        let shim = shim_path();
        if shim.is_file() && b.shim_copy {
            let to = bin.join("containerd-shim-mypod-v2");
            fs::copy(&shim, &to)
                .unwrap_or_else(|e| panic!("cp {} {}: {e}", shim.display(), to.display()));
        } else if shim.is_file() {
            link(&shim, &bin.join("containerd-shim-mypod-v2"));
        } else {
            assert!(
                b.runtime != MYPOD_RUNTIME,
                "the mypod shim {} is missing: cargo build --release -p containerd-shim-mypod-v2 \
                 (or set MYPOD_SHIM)",
                shim.display()
            );
        }
        if b.with_runc {
            assert!(
                bins.runc_shim.is_file(),
                "{} is missing",
                bins.runc_shim.display()
            );
            link(&bins.runc_shim, &bin.join("containerd-shim-runc-v2"));
            let runc = [
                "/usr/sbin/runc",
                "/usr/bin/runc",
                "/usr/local/sbin/runc",
                "/usr/local/bin/runc",
            ]
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .expect("with_runc: no runc binary (apt-get install runc)");
            link(runc, &bin.join("runc"));
        }

        if b.with_criu {
            let criu = ["/usr/sbin/criu", "/usr/bin/criu", "/usr/local/sbin/criu"]
                .iter()
                .map(Path::new)
                .find(|p| p.is_file());
            if let Some(criu) = criu {
                link(criu, &bin.join("criu"));
            }
        }

        let cri = b.cri.then(|| CriParts::prepare(&dir, &ns, b.sandbox_image));
        let mut config_text = config_toml_with(b.version, &dir, cri.is_some())
            .replace("level = \"debug\"", &format!("level = \"{}\"", b.log_level));
        if let Some(parts) = &cri {
            config_text.push_str(&parts.config_sections(b.version, &dir, &b.runtime, b.with_runc));
        }
        let config = dir.join("config.toml");
        fs::write(&config, config_text).expect("write config.toml");
        let child = spawn_daemon(&bins, &dir, cri.as_ref());

        // From here on, Drop cleans up whatever happens.
        let ctr_ns = if cri.is_some() {
            CRI_NAMESPACE.to_string()
        } else {
            ns.clone()
        };
        let mut c = Containerd {
            version: b.version,
            bins,
            dir,
            ns,
            ctr_ns,
            runtime: b.runtime,
            test_name,
            compat: b.compat,
            child: Some(child),
            cri,
        };
        c.wait_ready();
        if c.cri.is_some() {
            c.cri_ready();
        } else {
            c.import_image();
        }
        c
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "containerd {} exited during start-up ({status}); log:\n{}",
                        self.version,
                        self.log_tail(60)
                    );
                }
            }
            let out = self.ctr_timeout(&["version"], Duration::from_secs(5));
            if out.success() && out.stdout.contains("Server:") {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "containerd {} did not answer within 30 s:\n{out}",
                self.version
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn import_image(&self) {
        let tar = image::image_tar();
        let tar = tar.to_string_lossy();
        let out = self.ctr_timeout(&["images", "import", &tar], Duration::from_secs(120));
        out.assert_success();
        let ls = self.ctr_ok(&["images", "ls", "-q"]);
        assert!(
            ls.stdout.lines().any(|l| l.trim() == IMAGE),
            "after importing {tar}, {IMAGE} is not listed:\n{ls}\nimport said:\n{out}"
        );
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The instance's unique name (`mypodtest-PID-N`): its dir's name, ctr's namespace for
    /// plain instances, and the top cgroup of everything it runs.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The containerd namespace ctr works in (`namespace()`, or `k8s.io` for CRI instances).
    pub fn ctr_namespace(&self) -> &str {
        &self.ctr_ns
    }

    /// Pid of the containerd daemon (None while it is stopped for a restart).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The runtime type containers are run with (`--runtime`).
    pub fn runtime(&self) -> &str {
        &self.runtime
    }

    /// True when this instance runs the mypod shim (not the runc reference).
    pub fn is_mypod(&self) -> bool {
        self.runtime == MYPOD_RUNTIME
    }

    /// The instance's private temp dir.
    /// The instance's own copy of the shim (with `Builder::shim_copy`).
    pub fn shim_copy_path(&self) -> PathBuf {
        self.dir.join("bin").join("containerd-shim-mypod-v2")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn address(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// `ctr` bound to this instance and namespace, with the default deadline.
    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_timeout(args, CTR_TIMEOUT)
    }

    /// Like `ctr`, and panics with the output unless it succeeded.
    pub fn ctr_ok(&self, args: &[&str]) -> Output {
        let out = self.ctr(args);
        out.assert_success();
        out
    }

    pub fn ctr_timeout(&self, args: &[&str], timeout: Duration) -> Output {
        command::run(self.ctr_command(args), timeout)
    }

    /// The `ctr` command line without running it (for `Spawned`).
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bins.ctr);
        cmd.arg("--address")
            .arg(self.address())
            .arg("--namespace")
            .arg(&self.ctr_ns);
        let mypod_run = args.first() == Some(&"run") && args.contains(&MYPOD_RUNTIME);
        if self.compat && mypod_run && !spec_has_uid_mappings(args) {
            let config = crate::version::repo_root().join("runtime-compat.toml");
            cmd.arg("run")
                .arg(format!("--runtime-config-path={}", config.display()))
                .args(&args[1..]);
        } else {
            cmd.args(args);
        }
        for var in [
            "CONTAINERD_ADDRESS",
            "CONTAINERD_NAMESPACE",
            "CONTAINERD_SNAPSHOTTER",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }

    /// The last `lines` lines of containerd's log, without the start-up plugin chatter.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let all: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("msg=\"loading plugin"))
            .collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn stop_containerd(&mut self) -> Vec<String> {
        let mut report = Vec::new();
        let Some(mut child) = self.child.take() else {
            return report;
        };
        procfs::signal(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if matches!(child.try_wait(), Ok(None)) {
            report.push(format!(
                "containerd pid {} ignored SIGTERM for 10 s: SIGKILL",
                child.id()
            ));
            let _ = child.kill();
        }
        let _ = child.wait();
        report
    }

    /// Restarts containerd as a crash would: SIGKILL, then the same daemon again on the same
    /// root, state and sockets. Shims and containers keep running meanwhile; `down` is how
    /// long containerd stays away. Waits until it (and CRI, for CRI instances) answers again.
    pub fn restart(&mut self, down: Duration) {
        self.stop_daemon(libc::SIGKILL, Duration::from_secs(10));
        thread::sleep(down);
        self.start_daemon();
    }

    /// Sends containerd `signal` (SIGKILL: a crash; SIGTERM: a clean shutdown) and waits up
    /// to `patience` for it to exit (then SIGKILL). Shims and containers keep running.
    /// Returns how containerd ended, or None if it had to be killed after all (or was not
    /// running). Start it again with [`Containerd::start_daemon`].
    pub fn stop_daemon(&mut self, signal: i32, patience: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Some(cri) = self.cri.as_mut() {
            cri.client = None;
        }
        procfs::signal(child.id(), signal);
        let deadline = Instant::now() + patience;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Starts containerd again on the same root, state and sockets after
    /// [`Containerd::stop_daemon`]; waits until it (and CRI, for CRI instances) answers.
    pub fn start_daemon(&mut self) {
        assert!(self.child.is_none(), "containerd is already running");
        self.child = Some(spawn_daemon(&self.bins, &self.dir, self.cri.as_ref()));
        self.wait_ready();
        if self.cri.is_some() {
            self.cri_ready();
        }
    }

    /// Kills and removes every task and container of the namespace through ctr.
    fn remove_all_through_ctr(&self) {
        let t = Duration::from_secs(15);
        for task in self.tasks_with_timeout(t) {
            self.ctr_timeout(&["tasks", "kill", "-s", "KILL", &task.id], t);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline
                && self
                    .tasks_with_timeout(t)
                    .iter()
                    .any(|x| x.id == task.id && x.status != "STOPPED")
            {
                thread::sleep(Duration::from_millis(50));
            }
            self.ctr_timeout(&["tasks", "rm", "-f", &task.id], t);
        }
        let out = self.ctr_timeout(&["containers", "ls", "-q"], t);
        for id in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
            self.ctr_timeout(&["containers", "rm", id], t);
        }
    }

    fn teardown(&mut self) {
        let failing = thread::panicking();
        if failing {
            let saved = repo_root()
                .join("target/mypod-test-logs")
                .join(format!("{}.log", self.ns));
            let _ = fs::create_dir_all(saved.parent().expect("has parent"));
            let _ = fs::copy(self.dir.join("containerd.log"), &saved);
            eprintln!(
                "\n==== {} failed on containerd {} (runtime {}, namespace {}); full log kept at {}; \
                 last lines:\n{}\n==== end of containerd log",
                self.test_name,
                self.version,
                self.runtime,
                self.ns,
                saved.display(),
                self.log_tail(60)
            );
            if let Some(cri) = &self.cri {
                eprintln!("{}", cri.describe_network());
            }
            if let Some(msg) = crate::panic_note::last() {
                eprintln!("==== {} failed: {msg}", self.test_name);
            }
        }
        let mut report = Vec::new();
        if self.child.is_some() {
            if self.cri.is_some() {
                report.extend(self.cri_remove_all());
            }
            self.remove_all_through_ctr();
        }
        let state = self.state_dir();
        let shims = cleanup::shim_pids_from_state(&state);
        let mut sockets = cleanup::shim_sockets_from_state(&state);
        sockets.extend(cleanup::shim_debug_sockets(&state, &self.address()));
        if let Some(cri) = &self.cri {
            sockets.extend(cri.sockets());
        }
        report.extend(self.stop_containerd());
        report.extend(cleanup::purge(&self.dir, &self.ns, &shims, &sockets));
        if let Some(cri) = self.cri.take() {
            report.extend(cri.teardown());
        }
        let report: Vec<String> = report
            .into_iter()
            .filter(|l| !l.ends_with(": ok") || failing)
            .collect();
        if !report.is_empty() {
            eprintln!(
                "mypod-tests: cleanup after {} ({}):\n  {}",
                self.test_name,
                self.ns,
                report.join("\n  ")
            );
        }
    }
}

/// Starts `containerd --config <dir>/config.toml` with PATH = `<dir>/bin`, its output appended
/// to `<dir>/containerd.log`, in the instance's network namespace for CRI instances.
fn spawn_daemon(bins: &Binaries, dir: &Path, cri: Option<&CriParts>) -> Child {
    let config = dir.join("config.toml");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("containerd.log"))
        .expect("open containerd.log");
    let mut cmd = Command::new(&bins.containerd);
    cmd.arg("--config").arg(&config);
    cmd.env_clear().env("PATH", dir.join("bin"));
    for (k, v) in std::env::vars_os() {
        let k_str = k.to_string_lossy();
        if k_str.starts_with("MYPOD_") || k_str.starts_with("RUST_") {
            cmd.env(&k, v);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log fd"))
        .stderr(log)
        .current_dir(dir);
    if let Some(parts) = cri {
        // containerd (and so its shims and CNI plugins) runs in the instance's own network
        // namespace, in the host's mount namespace.
        parts.netns.enter_on_spawn(&mut cmd);
    }
    cmd.spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bins.containerd.display()))
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn link(target: &Path, at: &Path) {
    symlink(target, at)
        .unwrap_or_else(|e| panic!("ln -s {} {}: {e}", target.display(), at.display()));
}

/// Plugins that need host set-up or touch host paths. CRI (and, on 2.x, its image, runtime and
/// pod sandbox plugins) only for instances that are not CRI instances.
fn disabled_plugins(v: Version, cri: bool) -> Vec<&'static str> {
    let mut p = vec![
        "io.containerd.nri.v1.nri",
        "io.containerd.internal.v1.tracing",
        "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.blockfile",
    ];
    if !cri {
        p.push("io.containerd.grpc.v1.cri");
    }
    if v == Version::V2_1 {
        p.extend([
            "io.containerd.snapshotter.v1.erofs",
            "io.containerd.differ.v1.erofs",
        ]);
        if !cri {
            p.extend([
                "io.containerd.cri.v1.images",
                "io.containerd.cri.v1.runtime",
                "io.containerd.podsandbox.controller.v1.podsandbox",
            ]);
        }
    }
    p
}

/// The instance's config.toml: version 2 format for 1.6/1.7, version 3 for 2.x.
pub fn config_toml(v: Version, dir: &Path) -> String {
    config_toml_with(v, dir, false)
}

/// `config_toml` with the CRI plugins enabled or not (their sections come from `cri_instance`).
pub fn config_toml_with(v: Version, dir: &Path, cri: bool) -> String {
    let d = dir.display();
    let disabled: Vec<String> = disabled_plugins(v, cri)
        .iter()
        .map(|p| format!("\"{p}\""))
        .collect();
    let mut s = format!(
        "version = {}\nroot = \"{d}/root\"\nstate = \"{d}/state\"\ndisabled_plugins = [{}]\n\n\
         [grpc]\n  address = \"{d}/containerd.sock\"\n\n\
         [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\n\
         [debug]\n  level = \"debug\"\n\n\
         [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{d}/opt\"\n",
        v.config_version(),
        disabled.join(", ")
    );
    if v == Version::V2_1 {
        // The transfer service (used by `ctr images import` on 2.x) needs the image verifier.
        s.push_str(&format!("\n[plugins.\"io.containerd.image-verifier.v1.bindir\"]\n  bin_dir = \"{d}/verifiers\"\n"));
    }
    s
}

/// Whether `ctr run --config FILE` names a spec with uid mappings. ctr 2.x gives such a task
/// runc's options type (`WithUIDOwner`), which fails on any other options, so the compat
/// configuration cannot be passed with it; such a spec has its own user namespace, which
/// mypod honours as given whatever `[sandbox] user_namespace` says.
fn spec_has_uid_mappings(args: &[&str]) -> bool {
    let Some(i) = args.iter().position(|a| *a == "--config") else {
        return false;
    };
    args.get(i + 1)
        .and_then(|f| fs::read_to_string(f).ok())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| {
            v["linux"]["uidMappings"]
                .as_array()
                .is_some_and(|m| !m.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_names() {
        assert_eq!(shim_binary_name(MYPOD_RUNTIME), "containerd-shim-mypod-v2");
        assert_eq!(shim_binary_name(RUNC_RUNTIME), "containerd-shim-runc-v2");
    }

    #[test]
    fn config_versions() {
        let d = Path::new("/tmp/x");
        assert!(config_toml(Version::V1_6, d).starts_with("version = 2\n"));
        assert!(config_toml(Version::V2_1, d).starts_with("version = 3\n"));
        assert!(config_toml(Version::V2_1, d).contains("image-verifier"));
    }
}
