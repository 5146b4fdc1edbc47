//! Test doubles for the table: containers and processes that only count what was done
//! to them, and an event recorder.

use std::cell::RefCell;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use mypod_sandbox::container::ContainerError;
use mypod_sandbox::stdio::{Draining, Linger};
use mypod_sandbox::ExitStatus;

use super::table::{ContainerHandle, Entry, Phase, ProcState, ProcessHandle, Table};
use super::types::{Event, EventSink};

#[derive(Default)]
pub struct FakeProcess {
    /// How often `on_exit` ran.
    pub exits: usize,
}

impl ProcessHandle for FakeProcess {
    fn on_exit(&mut self) -> Option<Linger> {
        self.exits += 1;
        None
    }

    fn release_output(&mut self) -> Option<Draining> {
        None
    }
}

pub struct FakeContainer {
    pub init: FakeProcess,
    pub own_pid_namespace: bool,
    /// Signals sent with `signal_all`.
    pub signalled: RefCell<Vec<i32>>,
}

impl FakeContainer {
    pub fn new() -> FakeContainer {
        FakeContainer {
            init: FakeProcess::default(),
            own_pid_namespace: false,
            signalled: RefCell::new(Vec::new()),
        }
    }
}

impl ContainerHandle for FakeContainer {
    type Process = FakeProcess;

    fn init_mut(&mut self) -> &mut FakeProcess {
        &mut self.init
    }

    fn owns_pid_namespace(&self) -> bool {
        self.own_pid_namespace
    }

    fn signal_all(&self, sig: i32) -> Result<(), ContainerError> {
        self.signalled.borrow_mut().push(sig);
        Ok(())
    }
}

/// Records every event.
#[derive(Default)]
pub struct Recorder(Mutex<Vec<Event>>);

impl EventSink for Recorder {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

impl Recorder {
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// The TaskExit events, as (id, exec id, pid, exit code).
    pub fn exits(&self) -> Vec<(String, String, i32, u32)> {
        self.all()
            .into_iter()
            .filter_map(|e| match e {
                Event::Exit {
                    id,
                    exec_id,
                    pid,
                    exit,
                } => Some((id, exec_id, pid, exit.code)),
                _ => None,
            })
            .collect()
    }
}

/// An exit with `code` (at a fixed time, so exits compare equal).
pub fn exit(code: u32) -> ExitStatus {
    ExitStatus {
        code,
        at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    }
}

/// A table holding one created container `id` whose init is `pid`.
pub fn table_with(id: &str, pid: i32) -> Table<FakeContainer> {
    let mut t = Table::default();
    let init = ProcState::new(pid, Default::default(), false);
    t.insert(
        id,
        Entry::new(FakeContainer::new(), init, format!("/b/{id}"), None),
        0,
        &Recorder::default(),
    );
    t
}

/// A table holding one running container `id` whose init is `pid`.
pub fn running(id: &str, pid: i32) -> Table<FakeContainer> {
    let mut t = table_with(id, pid);
    if let Some(e) = t.containers.get_mut(id) {
        e.init.phase = Phase::Running;
    }
    t
}
