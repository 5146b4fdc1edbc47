//! The `task` fuzz target's body: the Task service in-process, as ttrpc dispatches to it.
//!
//! An input is a sequence of requests, each `[method][len: u16 LE][len bytes]`: the first
//! byte picks one of the 17 Task methods (and, by its top bit, the v2 or v3 service name),
//! the bytes are the request message as containerd would marshal it. Each goes to the
//! method handler ttrpc's server calls ([`crate::service::services`]), which decodes it,
//! runs the service over a real [`Pod`] and encodes the answer or the error status.
//! Properties: nothing panics; every request is answered (an OK response or an error
//! status; only an undecodable message fails, as ttrpc's server then answers for it)
//! within [`ANSWER_WITHIN`]; afterwards the service still answers Connect and State, and
//! the pod has no container (Shutdown reports it empty).
//!
//! Safety: the fuzzer runs as root and Create is real, so [`confine`] first puts the
//! process in a private mount namespace and chroots it into an empty tmpfs that holds
//! only the fixture bundles of [`FIXTURES`]. Every config.json a request can name is one
//! of them, and each is refused by Create before anything is made (parse, validation or
//! the host-access policy): no cgroup, mount, process or file comes of a request, and as
//! no container ever exists, Kill, Pause, Update and the rest find no process to act on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use containerd_shim_protos::api::{ConnectRequest, ShutdownRequest, StateRequest};
use containerd_shim_protos::protobuf::MessageDyn;
use ttrpc::asynchronous::{Service, TtrpcContext};
use ttrpc::{Code, Request};

use crate::pod::{Event, EventSink, Pod, PodRef};

/// How long a request may take before it counts as a hang.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// The Task methods, as ttrpc names them.
pub const METHODS: [&str; 17] = [
    "State",
    "Create",
    "Start",
    "Delete",
    "Pids",
    "Pause",
    "Resume",
    "Checkpoint",
    "Kill",
    "Exec",
    "ResizePty",
    "CloseIO",
    "Update",
    "Wait",
    "Stats",
    "Connect",
    "Shutdown",
];

const SERVICES: [&str; 2] = ["containerd.task.v2.Task", "containerd.task.v3.Task"];

/// The bundles in the confined root: (directory, config.json or none). Each is refused at
/// Create before anything is made.
pub const FIXTURES: [(&str, Option<&str>); 4] = [
    // Valid, but with the host's pid, network and ipc namespaces: host access, refused
    // by the default policy.
    (
        "/bundle/host",
        Some(
            r#"{"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"/","user":{"uid":0,"gid":0}},"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"mount"}]}}"#,
        ),
    ),
    // Refused by validation.
    (
        "/bundle/invalid",
        Some(
            r#"{"ociVersion":"1.0.2","process":{"args":[],"cwd":"/","user":{"uid":0,"gid":0}},"root":{"path":"rootfs"}}"#,
        ),
    ),
    ("/bundle/notjson", Some("{\"ociVersion\":")),
    ("/bundle/empty", None),
];

/// Errors setting the confinement up.
#[derive(Debug, thiserror::Error)]
pub enum FuzzError {
    #[error("fuzz confinement: {what}: {source}")]
    Sys {
        what: String,
        source: std::io::Error,
    },
    #[error("fuzz harness: {0}")]
    Setup(String),
}

fn sys(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> FuzzError {
    let what = what.into();
    move |source| FuzzError::Sys { what, source }
}

fn errno(what: &str) -> impl FnOnce(nix::Error) -> FuzzError + '_ {
    move |e| FuzzError::Sys {
        what: what.to_string(),
        source: std::io::Error::from(e),
    }
}

/// Confines this (single-threaded) process: a private mount namespace, a new tmpfs root
/// with the fixture bundles and an inert helper file, `keep` bind-mounted at their own
/// paths (the fuzzer's corpus and artifact directories), then chroot into it.
/// Returns the helper file's path inside the new root (sealed before the chroot).
pub fn confine(keep: &[PathBuf]) -> Result<mypod_sandbox::exe::HelperExe, FuzzError> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_NEWNS).map_err(errno("unshare(CLONE_NEWNS)"))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(errno("make / private"))?;
    let root = std::env::temp_dir().join(format!("mypod-fuzz-root-{}", std::process::id()));
    std::fs::create_dir_all(&root).map_err(sys(format!("mkdir {}", root.display())))?;
    mount(
        Some("tmpfs"),
        &root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=16m,mode=0755"),
    )
    .map_err(errno("mount the tmpfs root"))?;
    for (dir, config) in FIXTURES {
        let d = root.join(dir.trim_start_matches('/'));
        std::fs::create_dir_all(d.join("rootfs")).map_err(sys(format!("mkdir {dir}")))?;
        if let Some(c) = config {
            std::fs::write(d.join("config.json"), c).map_err(sys("write a fixture"))?;
        }
    }
    for k in keep {
        let inside = root.join(k.strip_prefix("/").unwrap_or(k));
        std::fs::create_dir_all(&inside).map_err(sys(format!("mkdir {}", inside.display())))?;
        mount(
            Some(k.as_path()),
            &inside,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(errno("bind a kept directory"))?;
    }
    // Never executable (mode 0644, no content): a helper it would launch cannot run.
    let helper = root.join("helper");
    std::fs::write(&helper, b"").map_err(sys("write the helper file"))?;
    let exe = mypod_sandbox::exe::HelperExe::seal(&helper)
        .map_err(|e| FuzzError::Setup(format!("seal the helper file: {e}")))?;
    nix::unistd::chroot(&root).map_err(errno("chroot"))?;
    nix::unistd::chdir("/").map_err(errno("chdir /"))?;
    Ok(exe)
}

/// Events are dropped (the pod's queue to containerd is not under test here).
struct Discard;

impl EventSink for Discard {
    fn emit(&self, _: Event) {}
}

/// The service under test, on the shim's kind of runtime (current-thread, blocking pool).
pub struct Harness {
    rt: tokio::runtime::Runtime,
    services: HashMap<String, Service>,
    pod: PodRef,
}

impl Harness {
    /// A pod with the default policy and no containers; `helper` from [`confine`].
    pub fn new(helper: mypod_sandbox::exe::HelperExe) -> Result<Harness, FuzzError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .max_blocking_threads(8)
            .build()
            .map_err(|e| FuzzError::Setup(format!("tokio runtime: {e}")))?;
        let layout = mypod_sandbox::cgroup::Layout::parse(
            "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
        )
        .map_err(|e| FuzzError::Setup(e.to_string()))?;
        let launcher = mypod_sandbox::Launcher {
            init_exe: Arc::new(helper),
            setup_timeout: Duration::from_secs(5),
            namespace: "fuzz".into(),
            policy: mypod_sandbox::Policy::default(),
            userns: Default::default(),
            zygote: Default::default(),
        };
        let pod = Arc::new(Pod::new(Arc::new(Discard), layout, launcher));
        let services = crate::service::services(pod.clone());
        Ok(Harness { rt, services, pod })
    }

    /// Runs one input (see the module's documentation); panics when a property fails.
    pub fn run(&self, mut data: &[u8]) {
        while let Some((&op, rest)) = data.split_first() {
            let (len, rest) = match rest {
                [a, b, rest @ ..] => (usize::from(u16::from_le_bytes([*a, *b])), rest),
                _ => (rest.len(), &[][..]),
            };
            let (payload, rest) = rest.split_at(len.min(rest.len()));
            data = rest;
            let method = METHODS[usize::from(op & 0x7f) % METHODS.len()];
            let service = SERVICES[usize::from(op >> 7)];
            self.call(service, method, payload.to_vec());
        }
        self.still_serves();
    }

    /// One request to the v3 service name: [`Harness::call`].
    pub fn answer(&self, method: &str, payload: Vec<u8>) -> Option<Code> {
        self.call(SERVICES[1], method, payload)
    }

    /// One request; its answer's status code (OK when the call succeeded), or `None` when
    /// the message did not decode.
    fn call(&self, service: &str, method: &str, payload: Vec<u8>) -> Option<Code> {
        let Some(handler) = self
            .services
            .get(service)
            .and_then(|s| s.methods.get(method))
        else {
            panic!("{service}/{method} is not served");
        };
        let mut req = Request::new();
        req.service = service.to_string();
        req.method = method.to_string();
        req.payload = payload;
        let answer = self.rt.block_on(async {
            tokio::time::timeout(ANSWER_WITHIN, handler.handler(TtrpcContext::default(), req)).await
        });
        match answer {
            Err(_) => panic!("{method} did not answer within {ANSWER_WITHIN:?}"),
            Ok(Ok(resp)) => Some(resp.status.code.enum_value_or(Code::UNKNOWN)),
            Ok(Err(ttrpc::Error::Others(e))) if e.contains("Unpack request error") => None,
            Ok(Err(e)) => panic!("{method}: an error ttrpc cannot answer with a status: {e}"),
        }
    }

    /// The service answers Connect and State, and the pod holds no container.
    fn still_serves(&self) {
        let bytes = |m: &dyn MessageDyn| m.write_to_bytes_dyn().unwrap_or_default();
        let mut state = StateRequest::new();
        state.id = "fuzz-probe".into();
        let service = SERVICES[1];
        let connect = self.call(service, "Connect", bytes(&ConnectRequest::new()));
        assert_eq!(connect, Some(Code::OK), "Connect after the input");
        let state = self.call(service, "State", bytes(&state));
        assert_eq!(state, Some(Code::NOT_FOUND), "State of no container");
        // A Shutdown of the input may have left its notification: take it first.
        let _ = self.rt.block_on(async {
            tokio::time::timeout(Duration::ZERO, self.pod.exit.notified()).await
        });
        let shutdown = self.call(service, "Shutdown", bytes(&ShutdownRequest::new()));
        assert_eq!(shutdown, Some(Code::OK), "Shutdown");
        let empty = self.rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), self.pod.exit.notified()).await
        });
        assert!(empty.is_ok(), "the pod holds a container after the input");
    }
}

/// One record of an input: `method` (its index in [`METHODS`]) with `msg` as its request.
pub fn record(method: &str, msg: &dyn MessageDyn) -> Vec<u8> {
    let op = METHODS.iter().position(|m| *m == method).unwrap_or(0) as u8;
    let body = msg.write_to_bytes_dyn().unwrap_or_default();
    let mut out = vec![op];
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The fixture bundle paths, for seeds.
pub fn fixture_bundles() -> Vec<&'static Path> {
    FIXTURES.iter().map(|(d, _)| Path::new(*d)).collect()
}

#[cfg(test)]
#[path = "fuzz_seeds.rs"]
mod seeds;
