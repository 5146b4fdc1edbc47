//! The container table: entries, phases and per-process state (exits are applied by
//! `exits`). Generic over the container handle so the bookkeeping runs in tests with fakes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mypod_sandbox::container::ContainerError;
use mypod_sandbox::stdio::{Draining, Linger, StdioPaths};
use mypod_sandbox::{Container, ExitStatus, Process};
use tokio::sync::{watch, Notify};

use super::control::AbortOnDrop;
use super::exits::apply_exit;
use super::types::EventSink;
use super::Result;
use crate::copy;
use crate::error::ServiceError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Created,
    Starting,
    Running,
    Stopped,
}

/// What the shim tracks of one process (init or exec).
pub(super) struct ProcState {
    pub phase: Phase,
    pub pid: i32,
    pub stdio: StdioPaths,
    pub terminal: bool,
    pub master: Option<copy::Master>,
    /// Ends the stdin copy (CloseIO).
    pub stdin_closer: Option<copy::StdinCloser>,
    pub exit: Option<ExitStatus>,
    /// An exit reaped while Start was still finishing: applied after the start event.
    pub pending_exit: Option<ExitStatus>,
    /// Woken (one stored permit) when an exit is deferred as `pending_exit`: a failed
    /// Start waits on it instead of polling.
    pub pending_seen: Arc<Notify>,
    /// CloseIO came before the process existed (ctr's stdin copy races Start).
    pub stdin_closed: bool,
    pub exit_tx: watch::Sender<Option<ExitStatus>>,
    /// Reaped, its exit not applied yet: it waits until the output is read (`exits`).
    pub reaped: bool,
}

impl ProcState {
    pub fn new(pid: i32, stdio: StdioPaths, terminal: bool) -> ProcState {
        ProcState {
            phase: Phase::Created,
            pid,
            stdio,
            terminal,
            master: None,
            stdin_closer: None,
            exit: None,
            pending_exit: None,
            pending_seen: Arc::new(Notify::new()),
            stdin_closed: false,
            exit_tx: watch::channel(None).0,
            reaped: false,
        }
    }
}

/// What the bookkeeping needs of a process.
pub(super) trait ProcessHandle {
    /// The process exited (see [`Process::on_exit`]).
    fn on_exit(&mut self) -> Option<Linger>;
    /// The process was reaped (see [`Process::release_output`]).
    fn release_output(&mut self) -> Option<Draining>;
}

/// What the bookkeeping needs of a container.
pub(super) trait ContainerHandle {
    type Process: ProcessHandle;
    fn init_mut(&mut self) -> &mut Self::Process;
    fn owns_pid_namespace(&self) -> bool;
    fn signal_all(&self, sig: i32) -> std::result::Result<(), ContainerError>;
}

impl ProcessHandle for Process {
    fn on_exit(&mut self) -> Option<Linger> {
        Process::on_exit(self)
    }

    fn release_output(&mut self) -> Option<Draining> {
        Process::release_output(self)
    }
}

impl ContainerHandle for Container {
    type Process = Process;

    fn init_mut(&mut self) -> &mut Process {
        &mut self.init
    }

    fn owns_pid_namespace(&self) -> bool {
        Container::owns_pid_namespace(self)
    }

    fn signal_all(&self, sig: i32) -> std::result::Result<(), ContainerError> {
        Container::signal_all(self, sig)
    }
}

/// An exec that was added (Exec) but not started yet.
pub(super) struct PendingExec {
    /// Taken when Start begins; the entry stays (phase Starting) until the process runs.
    pub process: Option<oci_spec::runtime::Process>,
    /// Created at Exec so that Wait (which ctr calls before Start) has a channel.
    pub state: ProcState,
}

pub(super) struct Exec<P> {
    pub process: P,
    pub state: ProcState,
}

pub(super) struct Entry<C: ContainerHandle> {
    pub container: C,
    pub init: ProcState,
    pub bundle: String,
    pub execs: HashMap<String, Exec<C::Process>>,
    pub pending_execs: HashMap<String, PendingExec>,
    /// Frozen by Pause (until Resume, or a SIGKILL that thaws it).
    pub paused: bool,
    /// The OOM watch task, stopped when the entry goes.
    pub _oom: Option<AbortOnDrop>,
}

impl<C: ContainerHandle> Entry<C> {
    /// A created container (its init not started).
    pub fn new(container: C, init: ProcState, bundle: String, oom: Option<AbortOnDrop>) -> Self {
        Entry {
            container,
            init,
            bundle,
            execs: HashMap::new(),
            pending_execs: HashMap::new(),
            paused: false,
            _oom: oom,
        }
    }

    pub fn proc_mut(&mut self, exec_id: &str) -> Option<(&mut C::Process, &mut ProcState)> {
        if exec_id.is_empty() {
            return Some((self.container.init_mut(), &mut self.init));
        }
        self.execs
            .get_mut(exec_id)
            .map(|e| (&mut e.process, &mut e.state))
    }

    pub fn state(&self, exec_id: &str) -> Option<&ProcState> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs
                .get(exec_id)
                .map(|e| &e.state)
                .or_else(|| self.pending_execs.get(exec_id).map(|p| &p.state))
        }
    }

    /// Applies an init exit reaped while Start was finishing (after the start event).
    pub fn apply_pending_init_exit(&mut self, id: &str, events: &dyn EventSink) {
        if let Some(exit) = self.init.pending_exit.take() {
            apply_exit(
                events,
                id,
                "",
                self.container.init_mut(),
                &mut self.init,
                exit,
            );
        }
    }
}

/// Every container of the pod, those being created, and exits nobody claimed yet.
pub(super) struct Table<C: ContainerHandle> {
    pub containers: HashMap<String, Entry<C>>,
    pub creating: HashSet<String>,
    /// Containers taken out of `containers` by a Delete that is destroying them.
    pub deleting: HashSet<String>,
    /// Exits of pids no process claimed yet (a process can die before its RPC returns),
    /// each with the number the reaper gave it (`mypod_sandbox::process::reaps`). Most are
    /// setup helpers', never claimed.
    pub unclaimed: Vec<(i32, ExitStatus, u64)>,
    /// The unit tests' stand-in for the reaper's numbering (`Table::on_exit`).
    #[cfg(test)]
    pub reaps: u64,
}

impl<C: ContainerHandle> Default for Table<C> {
    fn default() -> Self {
        Table {
            containers: HashMap::new(),
            creating: HashSet::new(),
            deleting: HashSet::new(),
            unclaimed: Vec::new(),
            #[cfg(test)]
            reaps: 0,
        }
    }
}

pub(super) fn not_found(id: &str, exec_id: &str) -> ServiceError {
    if exec_id.is_empty() {
        ServiceError::NotFound(format!("container {id} not found"))
    } else {
        ServiceError::NotFound(format!("exec {exec_id} of container {id} not found"))
    }
}

impl<C: ContainerHandle> Table<C> {
    pub fn get(&self, id: &str) -> Result<&Entry<C>> {
        self.containers.get(id).ok_or_else(|| not_found(id, ""))
    }

    pub fn get_mut(&mut self, id: &str) -> Result<&mut Entry<C>> {
        self.containers.get_mut(id).ok_or_else(|| not_found(id, ""))
    }

    /// The exit of `pid` numbered after `since` (`mypod_sandbox::process::reaps` read
    /// before the process was launched), if any.
    pub fn take_unclaimed(&mut self, pid: i32, since: u64) -> Option<ExitStatus> {
        let i = self
            .unclaimed
            .iter()
            .position(|(p, _, n)| *p == pid && *n > since)?;
        Some(self.unclaimed.remove(i).1)
    }

    /// Records a created container (launched when the reaper's count read `since`); an
    /// exit its init pid already had is applied.
    pub fn insert(&mut self, id: &str, mut entry: Entry<C>, since: u64, events: &dyn EventSink) {
        if let Some(exit) = self.take_unclaimed(entry.init.pid, since) {
            apply_exit(
                events,
                id,
                "",
                entry.container.init_mut(),
                &mut entry.init,
                exit,
            );
        }
        self.containers.insert(id.to_string(), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{exit, running, table_with, FakeContainer, Recorder};
    use super::*;

    #[test]
    fn an_exit_before_create_records_the_pid_is_claimed_by_it() {
        let ev = Recorder::default();
        let mut t: Table<FakeContainer> = Table::default();
        t.on_exit(41, exit(3), &ev);
        t.on_exit(42, exit(7), &ev);
        assert_eq!(t.unclaimed.len(), 2);
        assert!(ev.exits().is_empty());

        let c = FakeContainer::new();
        t.insert(
            "c1",
            Entry::new(
                c,
                ProcState::new(42, Default::default(), false),
                "b".into(),
                None,
            ),
            0,
            &ev,
        );
        let e = t.get("c1").unwrap();
        assert_eq!(e.init.phase, Phase::Stopped);
        assert_eq!(e.init.exit.map(|x| x.code), Some(7));
        assert_eq!(*e.init.exit_tx.borrow(), e.init.exit);
        assert_eq!(e.container.init.exits, 1);
        assert_eq!(ev.exits(), vec![("c1".into(), String::new(), 42, 7)]);
        // Only its own pid was claimed.
        assert_eq!(t.unclaimed, vec![(41, exit(3), 1)]);
    }

    #[test]
    fn an_exit_while_start_finishes_waits_for_the_start_event() {
        let ev = Recorder::default();
        let mut t = table_with("c1", 42);
        t.get_mut("c1").unwrap().init.phase = Phase::Starting;
        t.on_exit(42, exit(1), &ev);
        let e = t.get_mut("c1").unwrap();
        assert_eq!(e.init.phase, Phase::Starting);
        assert_eq!(e.init.pending_exit.map(|x| x.code), Some(1));
        assert!(e.init.exit.is_none());
        assert!(ev.exits().is_empty());
        assert!(t.unclaimed.is_empty());

        // What start does when its blocking part returns.
        let e = t.get_mut("c1").unwrap();
        e.init.phase = Phase::Running;
        e.apply_pending_init_exit("c1", &ev);
        assert_eq!(e.init.phase, Phase::Stopped);
        assert_eq!(e.init.exit.map(|x| x.code), Some(1));
        assert!(e.init.pending_exit.is_none());
        assert_eq!(ev.exits(), vec![("c1".into(), String::new(), 42, 1)]);
    }

    #[test]
    fn a_deferred_exit_wakes_a_failed_start_that_waits_after_it() {
        let ev = Recorder::default();
        let mut t = table_with("c1", 42);
        t.get_mut("c1").unwrap().init.phase = Phase::Starting;
        let seen = t.get_mut("c1").unwrap().init.pending_seen.clone();
        // The exit is recorded before anybody waits: the stored permit wakes the waiter.
        t.on_exit(42, exit(9), &ev);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let waited = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), seen.notified()).await
        });
        assert!(waited.is_ok(), "the deferred exit woke the waiter");
        // No exit, no wake-up.
        let quiet = table_with("c2", 43)
            .get_mut("c2")
            .unwrap()
            .init
            .pending_seen
            .clone();
        let waited = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_millis(50), quiet.notified()).await
        });
        assert!(waited.is_err());
    }

    #[test]
    fn an_init_exit_kills_the_rest_unless_the_container_has_its_own_pid_namespace() {
        let ev = Recorder::default();
        let mut t = running("c1", 42);
        t.on_exit(42, exit(0), &ev);
        assert_eq!(
            *t.get("c1").unwrap().container.signalled.borrow(),
            vec![libc::SIGKILL]
        );

        let mut t = running("c2", 43);
        t.get_mut("c2").unwrap().container.own_pid_namespace = true;
        t.on_exit(43, exit(0), &ev);
        assert!(t.get("c2").unwrap().container.signalled.borrow().is_empty());
        assert_eq!(ev.exits().len(), 2);
    }

    #[test]
    fn a_pid_exits_once_and_unclaimed_exits_are_bounded() {
        let ev = Recorder::default();
        let mut t = running("c1", 42);
        t.on_exit(42, exit(0), &ev);
        // The same pid again (reused by some other child) is not the init's any more.
        t.on_exit(42, exit(9), &ev);
        assert_eq!(t.get("c1").unwrap().init.exit.map(|x| x.code), Some(0));
        assert_eq!(t.unclaimed, vec![(42, exit(9), 1)]);
        for pid in 1000..1300 {
            t.on_exit(pid, exit(0), &ev);
        }
        assert_eq!(t.unclaimed.len(), 256);
        assert_eq!(t.unclaimed.last().map(|u| u.0), Some(1299));
        assert_eq!(t.take_unclaimed(42, 0), None);
        assert_eq!(t.take_unclaimed(1299, 0), Some(exit(0)));
        assert_eq!(t.take_unclaimed(1299, 0), None);
    }

    #[test]
    fn an_exit_kept_before_a_launch_is_not_the_new_process() {
        let ev = Recorder::default();
        let mut t: Table<FakeContainer> = Table::default();
        // A setup helper's exit, never claimed; later its pid is reused by a container.
        t.on_exit(42, exit(0), &ev);
        let since = t.reaps;
        let entry = Entry::new(
            FakeContainer::new(),
            ProcState::new(42, Default::default(), false),
            "b".into(),
            None,
        );
        t.insert("c1", entry, since, &ev);
        assert_eq!(t.get("c1").unwrap().init.exit, None);
        assert!(ev.exits().is_empty());
        // Its own exit, reaped after the launch, is claimed.
        t.on_exit(43, exit(4), &ev);
        assert_eq!(t.take_unclaimed(43, since), Some(exit(4)));
    }
}
