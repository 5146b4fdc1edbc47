//! The pod: every container this shim serves, their states and exits.
//!
//! State lives behind one std mutex that is never held across an await; blocking
//! container work (create, start, destroy) runs on the blocking pool.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use containerd_shim_protos::api::{CreateTaskRequest, DeleteResponse, StateResponse, Status};
use containerd_shim_protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskIO, TaskStart};
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::topics;
use mypod_sandbox::cgroup::Layout;
use mypod_sandbox::mount::MountSpec;
use mypod_sandbox::stdio::StdioPaths;
use mypod_sandbox::{Container, CreateOpts, ExitStatus};
use tokio::sync::{watch, Notify};

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

struct Entry {
    container: Container,
    phase: Phase,
    pid: i32,
    bundle: String,
    stdio: StdioPaths,
    exit: Option<ExitStatus>,
    /// An exit reaped while Start was still finishing: applied after TaskStart.
    pending_exit: Option<ExitStatus>,
    exit_tx: watch::Sender<Option<ExitStatus>>,
}

#[derive(Default)]
struct State {
    containers: HashMap<String, Entry>,
    creating: HashSet<String>,
    /// Exits of pids no container claimed yet (a process can die before Create returns).
    unclaimed: Vec<(i32, ExitStatus)>,
}

/// The pod this shim serves.
pub struct Pod {
    state: Mutex<State>,
    events: Publisher,
    layout: Layout,
    exe: PathBuf,
    setup_timeout: std::time::Duration,
    /// Notified when the shim should exit.
    pub exit: Notify,
}

type Result<T> = std::result::Result<T, ServiceError>;

impl Pod {
    /// A pod with no containers yet.
    pub fn new(
        events: Publisher,
        layout: Layout,
        exe: PathBuf,
        setup_timeout: std::time::Duration,
    ) -> Pod {
        Pod {
            state: Mutex::new(State::default()),
            events,
            layout,
            exe,
            setup_timeout,
            exit: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would abort (panic=abort), so poisoning
        // cannot be observed; recover the guard anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Create: build the container and report TaskCreate.
    pub async fn create(&self, req: CreateTaskRequest) -> Result<i32> {
        let id = req.id.clone();
        if req.terminal {
            return Err(ServiceError::NotImplemented("terminal (pty) containers"));
        }
        if !req.checkpoint.is_empty() {
            return Err(ServiceError::NotImplemented("restore from checkpoint"));
        }
        {
            let mut st = self.lock();
            if st.containers.contains_key(&id) || !st.creating.insert(id.clone()) {
                return Err(ServiceError::AlreadyExists(id));
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
            init_exe: self.exe.clone(),
            setup_timeout: self.setup_timeout,
        };
        let layout = self.layout.clone();
        let made = tokio::task::spawn_blocking(move || Container::create(opts, &layout)).await;
        let mut st = self.lock();
        st.creating.remove(&id);
        let container = match made {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                log::warn!("create {id}: {e}");
                return Err(e.into());
            }
            Err(e) => return Err(ServiceError::Internal(format!("create {id}: {e}"))),
        };
        let pid = container.pid();
        let (exit_tx, _) = watch::channel(None);
        let mut entry = Entry {
            container,
            phase: Phase::Created,
            pid,
            bundle: req.bundle.clone(),
            stdio,
            exit: None,
            pending_exit: None,
            exit_tx,
        };
        logger::add_bundle(&PathBuf::from(&req.bundle));
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
        if let Some(i) = st.unclaimed.iter().position(|(p, _)| *p == pid) {
            let (_, exit) = st.unclaimed.remove(i);
            self.apply_exit(&id, &mut entry, exit);
        }
        st.containers.insert(id.clone(), entry);
        log::info!("created container {id} pid {pid}");
        Ok(pid)
    }

    /// Start: let the process exec; TaskStart strictly before its TaskExit.
    pub async fn start(&self, id: &str) -> Result<i32> {
        let (starter, pid) = {
            let mut st = self.lock();
            let e = st
                .containers
                .get_mut(id)
                .ok_or_else(|| ServiceError::NotFound(id.to_string()))?;
            if e.phase != Phase::Created {
                return Err(ServiceError::FailedPrecondition(format!(
                    "container {id} is not in the created state"
                )));
            }
            let s = e.container.begin_start()?;
            e.phase = Phase::Starting;
            (s, e.pid)
        };
        let res = tokio::task::spawn_blocking(move || starter.run()).await;
        let mut st = self.lock();
        let Some(e) = st.containers.get_mut(id) else {
            return Err(ServiceError::NotFound(id.to_string()));
        };
        e.phase = Phase::Running;
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
        if let Some(exit) = e.pending_exit.take() {
            self.apply_exit(id, e, exit);
        }
        out
    }

    fn apply_exit(&self, id: &str, e: &mut Entry, exit: ExitStatus) {
        e.phase = Phase::Stopped;
        e.exit = Some(exit);
        e.container.on_exit();
        e.exit_tx.send_replace(Some(exit));
        let mut ev = TaskExit::new();
        ev.container_id = id.to_string();
        ev.id = id.to_string();
        ev.pid = e.pid as u32;
        ev.exit_status = exit.code;
        ev.exited_at = MessageField::some(timestamp(exit.at));
        self.events.publish(topics::TASK_EXIT_EVENT_TOPIC, &ev);
        log::info!("container {id} exited with {}", exit.code);
    }

    /// A reaped child: the init of one of our containers, or a helper.
    pub fn on_exit(&self, pid: i32, code: u32) {
        let exit = ExitStatus {
            code,
            at: SystemTime::now(),
        };
        let mut st = self.lock();
        let found = st
            .containers
            .iter_mut()
            .find(|(_, e)| e.pid == pid && e.exit.is_none());
        match found {
            Some((id, e)) => {
                let id = id.clone();
                if e.phase == Phase::Starting {
                    e.pending_exit = Some(exit);
                } else {
                    self.apply_exit(&id, e, exit);
                }
            }
            None => {
                if st.unclaimed.len() >= 256 {
                    st.unclaimed.remove(0);
                }
                st.unclaimed.push((pid, exit));
            }
        }
    }

    /// Kill: signal the init process, or with `all` every process of the container.
    pub fn kill(&self, id: &str, sig: u32, all: bool) -> Result<()> {
        let st = self.lock();
        let e = st
            .containers
            .get(id)
            .ok_or_else(|| ServiceError::NotFound(id.to_string()))?;
        if e.phase == Phase::Stopped && !all {
            return Err(ServiceError::NotFound(format!(
                "process {} of {id} already finished",
                e.pid
            )));
        }
        e.container.signal(sig as i32, all)?;
        Ok(())
    }

    /// Delete: clean up a stopped (or never started) container, report TaskDelete.
    pub async fn delete(&self, id: &str) -> Result<DeleteResponse> {
        let mut entry = {
            let mut st = self.lock();
            let e = st
                .containers
                .get(id)
                .ok_or_else(|| ServiceError::NotFound(id.to_string()))?;
            if matches!(e.phase, Phase::Running | Phase::Starting) {
                return Err(ServiceError::FailedPrecondition(format!(
                    "cannot delete running container {id}: kill it first"
                )));
            }
            st.containers
                .remove(id)
                .ok_or_else(|| ServiceError::NotFound(id.to_string()))?
        };
        let exit = entry.exit.unwrap_or(ExitStatus {
            code: 128 + libc::SIGKILL as u32,
            at: SystemTime::now(),
        });
        let bundle = PathBuf::from(&entry.bundle);
        let destroyed = tokio::task::spawn_blocking(move || {
            let r = entry.container.destroy();
            (entry, r)
        })
        .await;
        logger::remove_bundle(&bundle);
        let pid = match destroyed {
            Ok((entry, Ok(()))) => entry.pid,
            Ok((entry, Err(e))) => {
                log::error!("delete {id}: {e}");
                let _ = entry;
                return Err(e.into());
            }
            Err(e) => return Err(ServiceError::Internal(format!("delete {id}: {e}"))),
        };
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

    /// State of a container.
    pub fn state(&self, id: &str) -> Result<StateResponse> {
        let st = self.lock();
        let e = st
            .containers
            .get(id)
            .ok_or_else(|| ServiceError::NotFound(id.to_string()))?;
        let mut r = StateResponse::new();
        r.id = id.to_string();
        r.bundle = e.bundle.clone();
        r.pid = e.pid as u32;
        r.status = match e.phase {
            Phase::Created => Status::CREATED,
            Phase::Starting | Phase::Running => Status::RUNNING,
            Phase::Stopped => Status::STOPPED,
        }
        .into();
        r.stdin = e.stdio.stdin.clone();
        r.stdout = e.stdio.stdout.clone();
        r.stderr = e.stdio.stderr.clone();
        if let Some(x) = e.exit {
            r.exit_status = x.code;
            r.exited_at = MessageField::some(timestamp(x.at));
        }
        Ok(r)
    }

    /// Wait: resolves when the container's init has exited.
    pub async fn wait(&self, id: &str) -> Result<ExitStatus> {
        let mut rx = {
            let st = self.lock();
            let e = st
                .containers
                .get(id)
                .ok_or_else(|| ServiceError::NotFound(id.to_string()))?;
            e.exit_tx.subscribe()
        };
        loop {
            if let Some(x) = *rx.borrow_and_update() {
                return Ok(x);
            }
            if rx.changed().await.is_err() {
                return Err(ServiceError::NotFound(format!("{id} was deleted")));
            }
        }
    }

    /// Pids of a container's processes.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let st = self.lock();
        let e = st
            .containers
            .get(id)
            .ok_or_else(|| ServiceError::NotFound(id.to_string()))?;
        Ok(e.container.pids()?)
    }

    /// CloseIO: EOF on the container's stdin.
    pub fn close_stdin(&self, id: &str) -> Result<()> {
        let mut st = self.lock();
        let e = st
            .containers
            .get_mut(id)
            .ok_or_else(|| ServiceError::NotFound(id.to_string()))?;
        e.container.close_stdin();
        Ok(())
    }

    /// The init pid of a container, if it exists.
    pub fn pid(&self, id: &str) -> Option<i32> {
        self.lock().containers.get(id).map(|e| e.pid)
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

/// Shared handle.
pub type PodRef = Arc<Pod>;
