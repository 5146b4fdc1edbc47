//! The pod: every container this shim serves, their processes (init and execs), states
//! and exits.
//!
//! State lives behind one std mutex that is never held across an await; blocking
//! container work (create, exec, start, destroy) runs on the blocking pool.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use containerd_shim_protos::api::{
    CreateTaskRequest, DeleteResponse, ExecProcessRequest, StateResponse, Status,
};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::topics;
use mypod_sandbox::cgroup::oom::{OomCheck, OomWatcher};
use mypod_sandbox::cgroup::stats::Stats;
use mypod_sandbox::cgroup::Layout;
use mypod_sandbox::container::{ExecOpts, Launcher};
use mypod_sandbox::mount::MountSpec;
use mypod_sandbox::stdio::StdioPaths;
use mypod_sandbox::{Container, CreateOpts, ExitStatus, Process};
use tokio::sync::{watch, Notify};

use crate::copy;
use crate::error::ServiceError;
use crate::events::{timestamp, Publisher};
use crate::logger;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Created,
    Starting,
    Running,
    Stopped,
}

/// What the shim tracks of one process (init or exec).
struct ProcState {
    phase: Phase,
    pid: i32,
    stdio: StdioPaths,
    terminal: bool,
    master: Option<copy::Master>,
    /// Ends the stdin copy (CloseIO).
    stdin_closer: Option<copy::StdinCloser>,
    exit: Option<ExitStatus>,
    /// An exit reaped while Start was still finishing: applied after the start event.
    pending_exit: Option<ExitStatus>,
    /// CloseIO came before the process existed (ctr's stdin copy races Start).
    stdin_closed: bool,
    exit_tx: watch::Sender<Option<ExitStatus>>,
}

impl ProcState {
    fn new(pid: i32, stdio: StdioPaths, terminal: bool) -> ProcState {
        ProcState {
            phase: Phase::Created,
            pid,
            stdio,
            terminal,
            master: None,
            stdin_closer: None,
            exit: None,
            pending_exit: None,
            stdin_closed: false,
            exit_tx: watch::channel(None).0,
        }
    }
}

/// An exec that was added (Exec) but not started yet.
struct PendingExec {
    /// Taken when Start begins; the entry stays (phase Starting) until the process runs.
    process: Option<oci_spec::runtime::Process>,
    /// Created at Exec so that Wait (which ctr calls before Start) has a channel.
    state: ProcState,
}

struct Exec {
    process: Process,
    state: ProcState,
}

struct Entry {
    container: Container,
    init: ProcState,
    bundle: String,
    execs: HashMap<String, Exec>,
    pending_execs: HashMap<String, PendingExec>,
    /// Frozen by Pause (until Resume, or a SIGKILL that thaws it).
    paused: bool,
    /// The OOM watch task, stopped when the entry goes.
    _oom: Option<AbortOnDrop>,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Entry {
    fn proc_mut(&mut self, exec_id: &str) -> Option<(&mut Process, &mut ProcState)> {
        if exec_id.is_empty() {
            return Some((&mut self.container.init, &mut self.init));
        }
        self.execs
            .get_mut(exec_id)
            .map(|e| (&mut e.process, &mut e.state))
    }

    fn state(&self, exec_id: &str) -> Option<&ProcState> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs
                .get(exec_id)
                .map(|e| &e.state)
                .or_else(|| self.pending_execs.get(exec_id).map(|p| &p.state))
        }
    }
}

#[derive(Default)]
struct State {
    containers: HashMap<String, Entry>,
    creating: std::collections::HashSet<String>,
    /// Exits of pids no process claimed yet (a process can die before its RPC returns).
    unclaimed: Vec<(i32, ExitStatus)>,
}

/// The pod this shim serves.
pub struct Pod {
    state: Mutex<State>,
    events: Publisher,
    layout: Layout,
    launcher: Launcher,
    /// Notified when the shim should exit.
    pub exit: Notify,
}

type Result<T> = std::result::Result<T, ServiceError>;

fn not_found(id: &str, exec_id: &str) -> ServiceError {
    if exec_id.is_empty() {
        ServiceError::NotFound(id.to_string())
    } else {
        ServiceError::NotFound(format!("exec {exec_id} of {id}"))
    }
}

impl Pod {
    /// A pod with no containers yet.
    pub fn new(events: Publisher, layout: Layout, launcher: Launcher) -> Pod {
        Pod {
            state: Mutex::new(State::default()),
            events,
            layout,
            launcher,
            exit: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would abort (panic=abort), so poisoning
        // cannot be observed; recover the guard anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_unclaimed(st: &mut State, pid: i32) -> Option<ExitStatus> {
        let i = st.unclaimed.iter().position(|(p, _)| *p == pid)?;
        Some(st.unclaimed.remove(i).1)
    }

    /// Create: build the container and report TaskCreate.
    pub async fn create(&self, req: CreateTaskRequest) -> Result<i32> {
        let id = req.id.clone();
        if !req.checkpoint.is_empty() {
            return Err(ServiceError::NotImplemented("restore from checkpoint"));
        }
        {
            let mut st = self.lock();
            if st.containers.contains_key(&id) || !st.creating.insert(id.clone()) {
                return Err(ServiceError::AlreadyExists(format!("container {id}")));
            }
        }
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
        };
        let opts = CreateOpts {
            id: id.clone(),
            bundle: PathBuf::from(&req.bundle),
            rootfs: req
                .rootfs
                .iter()
                .map(|m| MountSpec {
                    typ: m.type_.clone(),
                    source: m.source.clone(),
                    options: m.options.clone(),
                })
                .collect(),
            stdio: stdio.clone(),
            launcher: self.launcher.clone(),
        };
        let layout = self.layout.clone();
        let made = tokio::task::spawn_blocking(move || Container::create(opts, &layout)).await;
        let mut container = {
            let mut st = self.lock();
            st.creating.remove(&id);
            match made {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    log::warn!("create {id}: {e}");
                    return Err(e.into());
                }
                Err(e) => return Err(ServiceError::Internal(format!("create {id}: {e}"))),
            }
        };
        let pid = container.pid();
        let oom = match container.oom_watcher() {
            Ok(Some(w)) => self.watch_oom(&id, w),
            Ok(None) => None,
            Err(e) => {
                log::warn!("container {id}: no OOM events: {e}");
                None
            }
        };
        let mut init = ProcState::new(pid, stdio, false);
        start_copies(&mut container.init, &mut init, &id);
        let mut ev = TaskCreate::new();
        ev.container_id = id.clone();
        ev.bundle = req.bundle.clone();
        ev.rootfs = req.rootfs.clone();
        let mut io = TaskIO::new();
        io.stdin = req.stdin;
        io.stdout = req.stdout;
        io.stderr = req.stderr;
        io.terminal = req.terminal;
        ev.io = MessageField::some(io);
        ev.pid = pid as u32;
        self.events.publish(topics::TASK_CREATE_EVENT_TOPIC, &ev);
        logger::add_bundle(&PathBuf::from(&req.bundle));
        let mut st = self.lock();
        let unclaimed = Self::take_unclaimed(&mut st, pid);
        let mut entry = Entry {
            container,
            init,
            bundle: req.bundle.clone(),
            execs: HashMap::new(),
            pending_execs: HashMap::new(),
            paused: false,
            _oom: oom,
        };
        if let Some(exit) = unclaimed {
            self.apply_exit(&id, "", &mut entry.container.init, &mut entry.init, exit);
        }
        st.containers.insert(id.clone(), entry);
        log::info!("created container {id} pid {pid}");
        Ok(pid)
    }

    /// Start the container's init, or an exec (which is set up and started in one go).
    pub async fn start(&self, id: &str, exec_id: &str) -> Result<i32> {
        if !exec_id.is_empty() {
            return self.start_exec(id, exec_id).await;
        }
        let (starter, pid) = {
            let mut st = self.lock();
            let e = st.containers.get_mut(id).ok_or_else(|| not_found(id, ""))?;
            if e.init.phase != Phase::Created {
                return Err(ServiceError::FailedPrecondition(format!(
                    "container {id} is not in the created state"
                )));
            }
            let s = e.container.begin_start()?;
            e.init.phase = Phase::Starting;
            (s, e.init.pid)
        };
        let res = tokio::task::spawn_blocking(move || starter.run()).await;
        if !matches!(res, Ok(Ok(()))) {
            self.settle_failed_start(id).await;
        }
        let mut st = self.lock();
        let e = st.containers.get_mut(id).ok_or_else(|| not_found(id, ""))?;
        e.init.phase = Phase::Running;
        let out = match res {
            Ok(Ok(())) => {
                let mut ev = TaskStart::new();
                ev.container_id = id.to_string();
                ev.pid = pid as u32;
                self.events.publish(topics::TASK_START_EVENT_TOPIC, &ev);
                log::info!("started container {id}");
                Ok(pid)
            }
            Ok(Err(err)) => {
                log::warn!("start {id}: {err}");
                Err(err.into())
            }
            Err(err) => Err(ServiceError::Internal(format!("start {id}: {err}"))),
        };
        if let Some(exit) = e.init.pending_exit.take() {
            self.apply_exit(id, "", &mut e.container.init, &mut e.init, exit);
        }
        out
    }

    /// A start that failed (a startContainer or poststart hook, a failed exec) leaves a
    /// process that is gone or going: kill it and wait (briefly) until its exit is
    /// recorded, so that the error reaches containerd with the task already stopped and
    /// its Delete, which follows at once, succeeds.
    async fn settle_failed_start(&self, id: &str) {
        {
            let st = self.lock();
            if let Some(e) = st.containers.get(id) {
                let _ = e.container.init.signal(libc::SIGKILL);
            }
        }
        for _ in 0..200 {
            let recorded = self
                .lock()
                .containers
                .get(id)
                .is_none_or(|e| e.init.pending_exit.is_some() || e.init.exit.is_some());
            if recorded {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        log::warn!("start {id} failed and its process has not exited after 2s");
    }

    /// Exec: record the process (it is set up at Start), report TaskExecAdded.
    pub fn exec(&self, req: ExecProcessRequest) -> Result<()> {
        let (id, exec_id) = (req.id.as_str(), req.exec_id.as_str());
        let process: oci_spec::runtime::Process =
            serde_json::from_slice(&req.spec.value).map_err(|e| {
                ServiceError::InvalidArgument(format!("exec {exec_id}: process spec: {e}"))
            })?;
        let mut st = self.lock();
        let e = st.containers.get_mut(id).ok_or_else(|| not_found(id, ""))?;
        if e.init.phase != Phase::Running {
            return Err(ServiceError::FailedPrecondition(format!(
                "cannot exec in container {id}: it is not running"
            )));
        }
        if exec_id.is_empty()
            || e.execs.contains_key(exec_id)
            || e.pending_execs.contains_key(exec_id)
        {
            return Err(ServiceError::AlreadyExists(format!(
                "exec {exec_id:?} in container {id}"
            )));
        }
        let terminal = req.terminal || process.terminal() == Some(true);
        let mut process = process;
        process.set_terminal(Some(terminal));
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
        };
        e.pending_execs.insert(
            exec_id.to_string(),
            PendingExec {
                process: Some(process),
                state: ProcState::new(0, stdio, terminal),
            },
        );
        let mut ev = TaskExecAdded::new();
        ev.container_id = id.to_string();
        ev.exec_id = exec_id.to_string();
        self.events
            .publish(topics::TASK_EXEC_ADDED_EVENT_TOPIC, &ev);
        Ok(())
    }

    async fn start_exec(&self, id: &str, exec_id: &str) -> Result<i32> {
        let (target, process, stdio) = {
            let mut st = self.lock();
            let e = st.containers.get_mut(id).ok_or_else(|| not_found(id, ""))?;
            if e.init.phase != Phase::Running {
                return Err(ServiceError::FailedPrecondition(format!(
                    "cannot start exec {exec_id}: container {id} is not running"
                )));
            }
            let target = e.container.exec_target();
            let p = e
                .pending_execs
                .get_mut(exec_id)
                .ok_or_else(|| not_found(id, exec_id))?;
            let process = p.process.take().ok_or_else(|| {
                ServiceError::FailedPrecondition(format!("exec {exec_id} was already started"))
            })?;
            p.state.phase = Phase::Starting;
            (target, process, p.state.stdio.clone())
        };
        let opts = ExecOpts {
            exec_id: exec_id.to_string(),
            process,
            stdio,
            launcher: self.launcher.clone(),
        };
        let res = tokio::task::spawn_blocking(move || {
            let mut p = target.exec(opts)?;
            let starter = p.begin_start()?;
            match starter.run() {
                Ok(()) => Ok(p),
                Err(e) => {
                    let _ = p.signal(libc::SIGKILL);
                    Err(e)
                }
            }
        })
        .await;
        let mut st = self.lock();
        let pending = st
            .containers
            .get_mut(id)
            .and_then(|e| e.pending_execs.remove(exec_id));
        let mut process = match res {
            Ok(Ok(p)) => p,
            Ok(Err(err)) => {
                log::warn!("exec {exec_id} in {id}: {err}");
                return Err(err.into());
            }
            Err(err) => return Err(ServiceError::Internal(format!("exec {exec_id}: {err}"))),
        };
        let (Some(pending), true) = (pending, st.containers.contains_key(id)) else {
            // Deleted while starting.
            let _ = process.signal(libc::SIGKILL);
            return Err(not_found(id, exec_id));
        };
        let mut state = pending.state;
        let pid = process.pid();
        state.pid = pid;
        state.phase = Phase::Running;
        start_copies(&mut process, &mut state, &format!("{id} exec {exec_id}"));
        if state.stdin_closed {
            state.stdin_closer = None;
        }
        let unclaimed = Self::take_unclaimed(&mut st, pid);
        let Some(e) = st.containers.get_mut(id) else {
            let _ = process.signal(libc::SIGKILL);
            return Err(not_found(id, ""));
        };
        let mut ev = TaskExecStarted::new();
        ev.container_id = id.to_string();
        ev.exec_id = exec_id.to_string();
        ev.pid = pid as u32;
        self.events
            .publish(topics::TASK_EXEC_STARTED_EVENT_TOPIC, &ev);
        let mut exec = Exec { process, state };
        if let Some(exit) = unclaimed {
            self.apply_exit(id, exec_id, &mut exec.process, &mut exec.state, exit);
        }
        e.execs.insert(exec_id.to_string(), exec);
        log::info!("exec {exec_id} in {id}: pid {pid}");
        Ok(pid)
    }

    fn apply_exit(
        &self,
        id: &str,
        exec_id: &str,
        process: &mut Process,
        state: &mut ProcState,
        exit: ExitStatus,
    ) {
        state.phase = Phase::Stopped;
        state.exit = Some(exit);
        let linger = process.on_exit();
        state.stdin_closer = None;
        state.exit_tx.send_replace(Some(exit));
        if let Some(l) = linger {
            // Subscribed after the exit was sent: the receiver wakes only when the
            // process's state is dropped (Delete).
            copy::linger(l, state.exit_tx.subscribe());
        }
        let mut ev = TaskExit::new();
        ev.container_id = id.to_string();
        ev.id = if exec_id.is_empty() { id } else { exec_id }.to_string();
        ev.pid = state.pid as u32;
        ev.exit_status = exit.code;
        ev.exited_at = MessageField::some(timestamp(exit.at));
        self.events.publish(topics::TASK_EXIT_EVENT_TOPIC, &ev);
        log::info!("{id} {exec_id} exited with {}", exit.code);
    }

    /// A reaped child: a process of one of our containers, or a helper.
    pub fn on_exit(&self, pid: i32, code: u32) {
        let exit = ExitStatus {
            code,
            at: SystemTime::now(),
        };
        let mut st = self.lock();
        for (id, e) in st.containers.iter_mut() {
            let exec_id = if e.init.pid == pid && e.init.exit.is_none() {
                String::new()
            } else if let Some((x, _)) = e
                .execs
                .iter()
                .find(|(_, x)| x.state.pid == pid && x.state.exit.is_none())
            {
                x.clone()
            } else {
                continue;
            };
            if exec_id.is_empty() && !e.container.owns_pid_namespace() {
                // No pid namespace of its own dies with the init: kill what is left of
                // the container (its execs and their children) now, as runc-v2 does.
                if let Err(err) = e.container.signal_all(libc::SIGKILL) {
                    log::warn!("{id}: kill the processes left after its init exited: {err}");
                }
            }
            let Some((process, state)) = e.proc_mut(&exec_id) else {
                continue;
            };
            if state.phase == Phase::Starting {
                state.pending_exit = Some(exit);
            } else {
                self.apply_exit(id, &exec_id, process, state, exit);
            }
            return;
        }
        if st.unclaimed.len() >= 256 {
            st.unclaimed.remove(0);
        }
        st.unclaimed.push((pid, exit));
    }

    /// Kill: signal a process, or with `all` every process of the container.
    pub fn kill(&self, id: &str, exec_id: &str, sig: u32, all: bool) -> Result<()> {
        let mut st = self.lock();
        let e = st.containers.get_mut(id).ok_or_else(|| not_found(id, ""))?;
        if all && exec_id.is_empty() {
            e.container.signal_all(sig as i32)?;
            if e.paused && sig == libc::SIGKILL as u32 {
                self.thaw_for_kill(id, e);
            }
            return Ok(());
        }
        let (process, state) = e.proc_mut(exec_id).ok_or_else(|| not_found(id, exec_id))?;
        if state.phase == Phase::Stopped {
            return Err(ServiceError::NotFound(format!(
                "process {} ({id} {exec_id}) already finished",
                state.pid
            )));
        }
        process.signal(sig as i32)?;
        if e.paused && sig == libc::SIGKILL as u32 {
            self.thaw_for_kill(id, e);
        }
        Ok(())
    }

    /// A frozen process cannot act on SIGKILL: thaw a paused container so that it dies
    /// (as runc does). Runs on the blocking pool; the kill has been sent already.
    fn thaw_for_kill(&self, id: &str, e: &mut Entry) {
        e.paused = false;
        let cg = e.container.cgroup().clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || {
            if let Err(err) = Container::set_paused(&cg, false) {
                log::warn!("thaw {id} after SIGKILL: {err}");
            }
        });
    }

    /// Delete: an exec (stopped) is forgotten; a container (stopped or never started)
    /// is cleaned up and TaskDelete reported.
    pub async fn delete(&self, id: &str, exec_id: &str) -> Result<DeleteResponse> {
        if !exec_id.is_empty() {
            return self.delete_exec(id, exec_id);
        }
        let mut entry = {
            let mut st = self.lock();
            let e = st.containers.get(id).ok_or_else(|| not_found(id, ""))?;
            if matches!(e.init.phase, Phase::Running | Phase::Starting) {
                return Err(ServiceError::FailedPrecondition(format!(
                    "cannot delete running container {id}: kill it first"
                )));
            }
            st.containers.remove(id).ok_or_else(|| not_found(id, ""))?
        };
        let exit = entry.init.exit.unwrap_or(ExitStatus {
            code: 128 + libc::SIGKILL as u32,
            at: SystemTime::now(),
        });
        let pid = entry.init.pid;
        let bundle = PathBuf::from(&entry.bundle);
        let destroyed = tokio::task::spawn_blocking(move || {
            for x in entry.execs.values() {
                let _ = x.process.signal(libc::SIGKILL);
            }
            entry.container.destroy()
        })
        .await;
        logger::remove_bundle(&bundle);
        match destroyed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                log::error!("delete {id}: {e}");
                return Err(e.into());
            }
            Err(e) => return Err(ServiceError::Internal(format!("delete {id}: {e}"))),
        }
        let mut ev = TaskDelete::new();
        ev.container_id = id.to_string();
        ev.id = id.to_string();
        ev.pid = pid as u32;
        ev.exit_status = exit.code;
        ev.exited_at = MessageField::some(timestamp(exit.at));
        self.events.publish(topics::TASK_DELETE_EVENT_TOPIC, &ev);
        log::info!("deleted container {id}");
        let mut r = DeleteResponse::new();
        r.pid = pid as u32;
        r.exit_status = exit.code;
        r.exited_at = MessageField::some(timestamp(exit.at));
        Ok(r)
    }

    fn delete_exec(&self, id: &str, exec_id: &str) -> Result<DeleteResponse> {
        let mut st = self.lock();
        let e = st.containers.get_mut(id).ok_or_else(|| not_found(id, ""))?;
        if e.pending_execs.remove(exec_id).is_some() {
            return Ok(DeleteResponse::new());
        }
        let x = e.execs.get(exec_id).ok_or_else(|| not_found(id, exec_id))?;
        if x.state.phase != Phase::Stopped {
            return Err(ServiceError::FailedPrecondition(format!(
                "cannot delete running exec {exec_id} of {id}: kill it first"
            )));
        }
        let x = e
            .execs
            .remove(exec_id)
            .ok_or_else(|| not_found(id, exec_id))?;
        let mut r = DeleteResponse::new();
        r.pid = x.state.pid as u32;
        if let Some(exit) = x.state.exit {
            r.exit_status = exit.code;
            r.exited_at = MessageField::some(timestamp(exit.at));
        }
        Ok(r)
    }

    /// State of a container's init or of an exec.
    pub fn state(&self, id: &str, exec_id: &str) -> Result<StateResponse> {
        let st = self.lock();
        let e = st.containers.get(id).ok_or_else(|| not_found(id, ""))?;
        let mut r = StateResponse::new();
        r.id = id.to_string();
        r.exec_id = exec_id.to_string();
        r.bundle = e.bundle.clone();
        let s = e.state(exec_id).ok_or_else(|| not_found(id, exec_id))?;
        r.pid = s.pid as u32;
        r.status = match s.phase {
            Phase::Created => Status::CREATED,
            Phase::Running if e.paused => Status::PAUSED,
            Phase::Starting | Phase::Running => Status::RUNNING,
            Phase::Stopped => Status::STOPPED,
        }
        .into();
        r.stdin = s.stdio.stdin.clone();
        r.stdout = s.stdio.stdout.clone();
        r.stderr = s.stdio.stderr.clone();
        r.terminal = s.terminal;
        if let Some(x) = s.exit {
            r.exit_status = x.code;
            r.exited_at = MessageField::some(timestamp(x.at));
        }
        Ok(r)
    }

    /// Wait: resolves when the process has exited.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<ExitStatus> {
        let mut rx = {
            let st = self.lock();
            let e = st.containers.get(id).ok_or_else(|| not_found(id, ""))?;
            e.state(exec_id)
                .ok_or_else(|| not_found(id, exec_id))?
                .exit_tx
                .subscribe()
        };
        loop {
            if let Some(x) = *rx.borrow_and_update() {
                return Ok(x);
            }
            if rx.changed().await.is_err() {
                return Err(ServiceError::NotFound(format!(
                    "{id} {exec_id} was deleted"
                )));
            }
        }
    }

    /// Pids of a container's processes, with the exec id of those that are execs.
    pub fn pids(&self, id: &str) -> Result<Vec<(i32, Option<String>)>> {
        let st = self.lock();
        let e = st.containers.get(id).ok_or_else(|| not_found(id, ""))?;
        let pids = e.container.pids()?;
        Ok(pids
            .into_iter()
            .map(|p| {
                let exec = e
                    .execs
                    .iter()
                    .find(|(_, x)| x.state.pid == p)
                    .map(|(k, _)| k.clone());
                (p, exec)
            })
            .collect())
    }

    /// CloseIO: EOF on a process's stdin.
    pub fn close_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        let mut st = self.lock();
        let e = st.containers.get_mut(id).ok_or_else(|| not_found(id, ""))?;
        if let Some(p) = e.pending_execs.get_mut(exec_id) {
            p.state.stdin_closed = true;
            return Ok(());
        }
        let (_, state) = e.proc_mut(exec_id).ok_or_else(|| not_found(id, exec_id))?;
        if let Some(c) = state.stdin_closer.take() {
            let _ = c.send(());
        }
        Ok(())
    }

    /// ResizePty: set a terminal's window size.
    pub fn resize(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let st = self.lock();
        let e = st.containers.get(id).ok_or_else(|| not_found(id, ""))?;
        let s = e.state(exec_id).ok_or_else(|| not_found(id, exec_id))?;
        let master = s.master.as_ref().ok_or_else(|| {
            ServiceError::FailedPrecondition(format!(
                "{id} {exec_id}: the process has no terminal to resize"
            ))
        })?;
        mypod_sandbox::console::resize(master.get_ref(), width as u16, height as u16)
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// Starts a task that publishes TaskOOM for every OOM kill in the container's cgroup.
    fn watch_oom(&self, id: &str, w: OomWatcher) -> Option<AbortOnDrop> {
        // SAFETY: the watcher owns its fd (an OwnedFd it never replaces), so the fd stays
        // open and the same for as long as the AsyncFd owns the watcher.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(w, tokio::io::Interest::READABLE)
        };
        let afd = match registered {
            Ok(a) => a,
            Err(e) => {
                log::warn!("container {id}: no OOM events: {e}");
                return None;
            }
        };
        let events = self.events.clone();
        let id = id.to_string();
        let task = tokio::spawn(async move {
            let mut afd = afd;
            loop {
                let mut guard = match afd.readable_mut().await {
                    Ok(g) => g,
                    Err(e) => {
                        log::warn!("OOM watch of {id}: {e}");
                        return;
                    }
                };
                let found = guard.get_inner_mut().check();
                guard.clear_ready();
                match found {
                    OomCheck::Oom(n) => {
                        log::info!("container {id}: OOM ({n})");
                        let mut ev = TaskOOM::new();
                        ev.container_id = id.clone();
                        events.publish(topics::TASK_OOM_EVENT_TOPIC, &ev);
                    }
                    OomCheck::Gone => return,
                    OomCheck::Nothing => {}
                }
            }
        });
        Some(AbortOnDrop(task.abort_handle()))
    }

    /// Pause (`true`) or Resume (`false`): freeze or thaw the container's processes and
    /// report TaskPaused / TaskResumed.
    pub async fn set_paused(&self, id: &str, pause: bool) -> Result<()> {
        let what = if pause { "pause" } else { "resume" };
        let cg = {
            let st = self.lock();
            let e = st.containers.get(id).ok_or_else(|| not_found(id, ""))?;
            if e.init.phase != Phase::Running {
                return Err(ServiceError::FailedPrecondition(format!(
                    "cannot {what} container {id}: it is not running"
                )));
            }
            if e.paused == pause {
                return Err(ServiceError::FailedPrecondition(format!(
                    "cannot {what} container {id}: it is {}",
                    if pause {
                        "paused already"
                    } else {
                        "not paused"
                    }
                )));
            }
            e.container.cgroup().clone()
        };
        let res = tokio::task::spawn_blocking(move || Container::set_paused(&cg, pause))
            .await
            .map_err(|e| ServiceError::Internal(format!("{what} {id}: {e}")))?;
        if let Err(e) = res {
            log::warn!("{what} {id}: {e}");
            return Err(e.into());
        }
        let mut st = self.lock();
        if let Some(e) = st.containers.get_mut(id) {
            e.paused = pause;
        }
        if pause {
            let mut ev = TaskPaused::new();
            ev.container_id = id.to_string();
            self.events.publish(topics::TASK_PAUSED_EVENT_TOPIC, &ev);
        } else {
            let mut ev = TaskResumed::new();
            ev.container_id = id.to_string();
            self.events.publish(topics::TASK_RESUMED_EVENT_TOPIC, &ev);
        }
        log::info!("{what}d container {id}");
        Ok(())
    }

    /// Update: apply new resource limits to a container that has not stopped.
    pub async fn update(&self, id: &str, r: oci_spec::runtime::LinuxResources) -> Result<()> {
        let cg = {
            let st = self.lock();
            let e = st.containers.get(id).ok_or_else(|| not_found(id, ""))?;
            if e.init.phase == Phase::Stopped {
                return Err(ServiceError::FailedPrecondition(format!(
                    "cannot update resources of container {id}: it has stopped"
                )));
            }
            e.container.cgroup().clone()
        };
        let res = tokio::task::spawn_blocking(move || Container::update(&cg, &r))
            .await
            .map_err(|e| ServiceError::Internal(format!("update {id}: {e}")))?;
        match res {
            Ok(()) => {
                log::info!("updated resources of container {id}");
                Ok(())
            }
            Err(e) => {
                log::warn!("update {id}: {e}");
                Err(e.into())
            }
        }
    }

    /// Stats: the container's cgroup statistics.
    pub async fn stats(&self, id: &str) -> Result<Stats> {
        let cg = {
            let st = self.lock();
            let e = st.containers.get(id).ok_or_else(|| not_found(id, ""))?;
            e.container.cgroup().clone()
        };
        tokio::task::spawn_blocking(move || Container::stats(&cg))
            .await
            .map_err(|e| ServiceError::Internal(format!("stats {id}: {e}")))
    }

    /// The init pid of a container, if it exists.
    pub fn pid(&self, id: &str) -> Option<i32> {
        self.lock().containers.get(id).map(|e| e.init.pid)
    }

    /// Shutdown: exit once no container is left.
    pub fn shutdown(&self) {
        let st = self.lock();
        if st.containers.is_empty() && st.creating.is_empty() {
            log::info!("no containers left: shim exits");
            self.exit.notify_one();
        }
    }

    /// SIGTERM: tear every container down.
    pub async fn destroy_all(&self) {
        let all: Vec<(String, Entry)> = self.lock().containers.drain().collect();
        for (id, mut e) in all {
            let r = tokio::task::spawn_blocking(move || e.container.destroy()).await;
            if let Ok(Err(err)) = r {
                log::error!("tear down {id}: {err}");
            }
        }
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
