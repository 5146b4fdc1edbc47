//! The pod: every container this shim serves, their processes (init and execs), states
//! and exits.
//!
//! State lives behind one std mutex that is never held across an await; blocking
//! container work (create, exec, start, destroy) runs on the blocking pool. The pod takes
//! and returns plain types ([`types`]); `crate::convert` maps them to containerd's
//! messages at the service edge.
//!
//! - [`table`]: the container table (testable with fakes).
//! - [`exits`]: applying exits, once the output they leave is read.
//! - [`lifecycle`]: create, start, delete, wait, state of containers.
//! - [`exec`]: adding, starting and deleting execs.
//! - [`control`]: kill, pause, update, stats, stdio, OOM events, shutdown, teardown.

mod control;
mod exec;
mod exits;
#[cfg(test)]
mod fake;
mod lifecycle;
mod sandbox;
mod setup_death;
pub use sandbox::{is_sandbox_bundle, POD_FILES};
mod table;
mod types;

use std::sync::{Arc, Mutex, MutexGuard};

use mypod_sandbox::cgroup::Layout;
use mypod_sandbox::container::Launcher;
use mypod_sandbox::{Container, Process};
use tokio::sync::Notify;

use crate::copy;
use crate::error::ServiceError;
use table::{ProcState, Table};

pub use types::{
    CreateRequest, Deleted, Event, EventSink, ExecRequest, ProcessState, RootfsMount, Status,
};

/// The pod's event sink, which keeps quiet about the pod holder: containerd knows it as
/// the sandbox, not as a task.
pub struct Events {
    inner: Arc<dyn EventSink>,
    quiet: Mutex<Option<String>>,
}

impl Events {
    /// Passes `event` on unless it is about the pod holder.
    pub fn emit(&self, event: Event) {
        let quiet = self.quiet.lock().unwrap_or_else(|p| p.into_inner());
        if quiet.as_deref() != Some(event.id()) {
            self.inner.emit(event);
        }
    }
}

impl EventSink for Events {
    fn emit(&self, event: Event) {
        Events::emit(self, event);
    }
}

/// The pod this shim serves.
pub struct Pod {
    state: Arc<Mutex<Table<Container>>>,
    events: Arc<Events>,
    /// The pod as a sandbox (containerd 2.x Sandbox API), once CreateSandbox made it.
    sandbox: Mutex<Option<sandbox::SandboxState>>,
    /// A CreateSandbox is under way (it awaits before the sandbox is recorded).
    sandbox_creating: std::sync::atomic::AtomicBool,
    layout: Layout,
    launcher: Launcher,
    /// Notified when the shim should exit.
    pub exit: Notify,
}

type Result<T> = std::result::Result<T, ServiceError>;

impl Pod {
    /// A pod with no containers yet.
    pub fn new(events: Arc<dyn EventSink>, layout: Layout, launcher: Launcher) -> Pod {
        Pod {
            state: Arc::new(Mutex::new(Table::default())),
            events: Arc::new(Events {
                inner: events,
                quiet: Mutex::new(None),
            }),
            sandbox: Mutex::new(None),
            sandbox_creating: Default::default(),
            layout,
            launcher,
            exit: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table<Container>> {
        // A panic while holding the lock would abort (panic=abort), so poisoning
        // cannot be observed; recover the guard anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Starts the shim's copies for a new process: its terminal, or its stdin pipe.
fn start_copies(process: &mut Process, state: &mut ProcState, what: &str) {
    if let Some((master, stdin, stdout)) = process.take_terminal() {
        state.terminal = true;
        match copy::terminal(master, stdin, stdout) {
            Ok((m, closer)) => {
                state.master = Some(m);
                state.stdin_closer = closer;
            }
            Err(e) => log::error!("terminal of {what}: {e}"),
        }
    } else if let Some((fifo, pipe)) = process.take_stdin_copy() {
        match copy::stdin(fifo, pipe) {
            Ok(c) => state.stdin_closer = Some(c),
            Err(e) => log::error!("stdin of {what}: {e}"),
        }
    }
}

/// Shared handle.
pub type PodRef = Arc<Pod>;
