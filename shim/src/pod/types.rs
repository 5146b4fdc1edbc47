//! The pod's vocabulary at its edge: plain requests, replies and events, free of protobuf
//! and ttrpc (`crate::convert` maps containerd's messages to and from these).

use mypod_sandbox::stdio::StdioPaths;
use mypod_sandbox::ExitStatus;

/// One mount of a container's rootfs, as containerd passes it.
#[derive(Debug, Clone, Default)]
pub struct RootfsMount {
    pub typ: String,
    pub source: String,
    pub target: String,
    pub options: Vec<String>,
}

/// Create: a container from a bundle.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: String,
    pub rootfs: Vec<RootfsMount>,
    pub stdio: StdioPaths,
    pub terminal: bool,
}

/// Exec: a process to add to a running container.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub id: String,
    pub exec_id: String,
    /// The process spec (its `terminal` must agree with the request's; absent, it takes
    /// the request's).
    pub process: oci_spec::runtime::Process,
    pub stdio: StdioPaths,
    pub terminal: bool,
}

/// The status of a process as containerd names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

/// State: what the pod knows of a container's init or of an exec.
#[derive(Debug, Clone)]
pub struct ProcessState {
    pub id: String,
    pub exec_id: String,
    pub bundle: String,
    pub pid: i32,
    pub status: Status,
    pub stdio: StdioPaths,
    pub terminal: bool,
    pub exit: Option<ExitStatus>,
}

/// What Delete reports: the process's pid and exit (none for an exec never started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Deleted {
    pub pid: i32,
    pub exit: Option<ExitStatus>,
}

/// A task event, in the order the pod reports them.
#[derive(Debug, Clone)]
pub enum Event {
    Create {
        id: String,
        bundle: String,
        rootfs: Vec<RootfsMount>,
        stdio: StdioPaths,
        terminal: bool,
        pid: i32,
    },
    Start {
        id: String,
        pid: i32,
    },
    /// A process exited; `exec_id` is empty for a container's init.
    Exit {
        id: String,
        exec_id: String,
        pid: i32,
        exit: ExitStatus,
    },
    Delete {
        id: String,
        pid: i32,
        exit: ExitStatus,
    },
    ExecAdded {
        id: String,
        exec_id: String,
    },
    ExecStarted {
        id: String,
        exec_id: String,
        pid: i32,
    },
    Oom {
        id: String,
    },
    Paused {
        id: String,
    },
    Resumed {
        id: String,
    },
}

impl Event {
    /// The container the event is about.
    pub fn id(&self) -> &str {
        match self {
            Event::Create { id, .. }
            | Event::Start { id, .. }
            | Event::Exit { id, .. }
            | Event::Delete { id, .. }
            | Event::ExecAdded { id, .. }
            | Event::ExecStarted { id, .. }
            | Event::Oom { id }
            | Event::Paused { id }
            | Event::Resumed { id } => id,
        }
    }
}

/// Where the pod reports its events (containerd's event queue, or a test's recorder).
pub trait EventSink: Send + Sync {
    /// Queues one event; never blocks.
    fn emit(&self, event: Event);
}
