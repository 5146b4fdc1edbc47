//! A container's life: create, start (and settling a failed start), delete, and what
//! Wait and State report of its processes.

use std::path::PathBuf;
use std::time::SystemTime;

use mypod_sandbox::mount::MountSpec;
use mypod_sandbox::{Container, CreateOpts, ExitStatus};
use tokio::sync::watch;

use super::table::{not_found, ContainerHandle, Entry, Phase, ProcState, Table};
use super::types::{CreateRequest, Deleted, Event, ProcessState, Status};
use super::{start_copies, Pod, Result};
use crate::error::ServiceError;
use crate::logger;

impl Pod {
    /// Create: build the container and report TaskCreate.
    pub async fn create(&self, req: CreateRequest) -> Result<i32> {
        self.create_with(req, false).await
    }

    /// Create a container, or (`holder`) the pod holder of a sandbox: every container of a
    /// sandbox gets the pod's files ([`Pod::pod_mounts`]).
    pub(super) async fn create_with(&self, req: CreateRequest, holder: bool) -> Result<i32> {
        let id = req.id.clone();
        let since = {
            let mut st = self.lock();
            if st.containers.contains_key(&id)
                || st.deleting.contains(&id)
                || !st.creating.insert(id.clone())
            {
                return Err(ServiceError::AlreadyExists(format!("container {id}")));
            }
            mypod_sandbox::process::reaps()
        };
        let opts = CreateOpts {
            id: id.clone(),
            bundle: PathBuf::from(&req.bundle),
            rootfs: req
                .rootfs
                .iter()
                .map(|m| MountSpec {
                    typ: m.typ.clone(),
                    source: m.source.clone(),
                    options: m.options.clone(),
                })
                .collect(),
            stdio: req.stdio.clone(),
            launcher: self.launcher.clone(),
            holder,
            pod_mounts: if holder {
                Vec::new()
            } else {
                self.pod_mounts()
            },
            terminal: req.terminal,
        };
        let layout = self.layout.clone();
        let made = match tokio::task::spawn_blocking(move || {
            crate::delete::claim(&opts.bundle);
            Container::create(opts, &layout)
        })
        .await
        {
            Ok(Err(e)) => Ok(Err(self.explain_setup_death(e, since).await)),
            other => other,
        };
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
        let mut init = ProcState::new(pid, req.stdio.clone(), false);
        start_copies(&mut container.init, &mut init, &id);
        self.events.emit(Event::Create {
            id: id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs,
            stdio: req.stdio,
            terminal: req.terminal,
            pid,
        });
        logger::add_bundle(&PathBuf::from(&req.bundle));
        let entry = Entry::new(container, init, req.bundle, oom);
        self.lock().insert(&id, entry, since, self.events.as_ref());
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
            let e = st.get_mut(id)?;
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
        let e = st.get_mut(id)?;
        e.init.phase = Phase::Running;
        let out = match res {
            Ok(Ok(())) => {
                self.events.emit(Event::Start {
                    id: id.to_string(),
                    pid,
                });
                log::info!("started container {id}");
                Ok(pid)
            }
            Ok(Err(err)) => {
                log::warn!("start {id}: {err}");
                Err(err.into())
            }
            Err(err) => Err(ServiceError::Internal(format!("start {id}: {err}"))),
        };
        e.apply_pending_init_exit(id, self.events.as_ref());
        out
    }

    /// A start that failed (a startContainer or poststart hook, a failed exec) leaves a
    /// process that is gone or going: kill it and wait (briefly) until its exit is
    /// recorded, so that the error reaches containerd with the task already stopped and
    /// its Delete, which follows at once, succeeds.
    async fn settle_failed_start(&self, id: &str) {
        let seen = {
            let st = self.lock();
            let Some(e) = st.containers.get(id) else {
                return;
            };
            let _ = e.container.init.signal(libc::SIGKILL);
            if e.init.pending_exit.is_some() || e.init.exit.is_some() {
                return;
            }
            e.init.pending_seen.clone()
        };
        // The reaper stores a permit when it defers the exit, so an exit recorded between
        // the check above and this wait is not missed. The bound only keeps a process
        // that cannot die (stuck in the kernel) from holding the RPC forever.
        let wait = std::time::Duration::from_secs(2);
        if tokio::time::timeout(wait, seen.notified()).await.is_err() {
            log::warn!("start {id} failed and its process has not exited after 2s");
        }
    }

    /// Delete: an exec (stopped) is forgotten; a container (stopped or never started)
    /// is cleaned up and TaskDelete reported.
    pub async fn delete(&self, id: &str, exec_id: &str) -> Result<Deleted> {
        if !exec_id.is_empty() {
            return self.delete_exec(id, exec_id);
        }
        // A Create still under way (containerd cleans up after a Create whose deadline
        // passed, while the Create goes on: see crate::detached) is waited for, so that
        // what it makes is deleted, not left to nobody. Create ends within its setup
        // timeout.
        while self.lock().creating.contains(id) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let (mut entry, mark) = self.lock().begin_delete(id)?;
        let exit = exit_or_killed(&entry.init);
        let pid = entry.init.pid;
        let bundle = PathBuf::from(&entry.bundle);
        let destroyed = tokio::task::spawn_blocking(move || {
            for x in entry.execs.values() {
                let _ = x.process.signal(libc::SIGKILL);
            }
            let r = entry.container.destroy();
            (entry, r)
        })
        .await;
        match destroyed {
            Ok((_, Ok(()))) => {
                self.lock().deleting.remove(id);
                logger::remove_bundle(&bundle);
            }
            Ok((entry, Err(e))) => {
                // Kept, so that containerd's next Delete tries again.
                log::error!("delete {id}: {e}");
                self.lock()
                    .end_failed_delete(id, entry, mark, self.events.as_ref());
                return Err(e.into());
            }
            Err(e) => {
                self.lock().deleting.remove(id);
                return Err(ServiceError::Internal(format!("delete {id}: {e}")));
            }
        }
        self.events.emit(Event::Delete {
            id: id.to_string(),
            pid,
            exit,
        });
        log::info!("deleted container {id}");
        Ok(Deleted {
            pid,
            exit: Some(exit),
        })
    }

    /// State of a container's init or of an exec.
    pub fn state(&self, id: &str, exec_id: &str) -> Result<ProcessState> {
        self.lock().state(id, exec_id)
    }

    /// Wait: resolves when the process has exited.
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<ExitStatus> {
        let mut rx = self.lock().subscribe(id, exec_id)?;
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
}

/// The exit Delete reports: the recorded one, else (never started) a SIGKILL now.
fn exit_or_killed(init: &ProcState) -> ExitStatus {
    init.exit.unwrap_or(ExitStatus {
        code: 128 + libc::SIGKILL as u32,
        at: SystemTime::now(),
    })
}

impl<C: ContainerHandle> Table<C> {
    /// Takes a container out of the table for Delete (refused while its init runs or is
    /// starting), marked as being deleted; with the reaper's count at that moment.
    pub fn begin_delete(&mut self, id: &str) -> Result<(Entry<C>, u64)> {
        if self.deleting.contains(id) {
            return Err(ServiceError::FailedPrecondition(format!(
                "container {id} is being deleted"
            )));
        }
        let entry = self.remove_unless_running(id)?;
        self.deleting.insert(id.to_string());
        Ok((entry, mypod_sandbox::process::reaps()))
    }

    /// A Delete whose destroy failed puts the container back for the next try; exits of
    /// its processes reaped meanwhile (numbered after `mark`) are applied.
    pub fn end_failed_delete(
        &mut self,
        id: &str,
        mut entry: Entry<C>,
        mark: u64,
        events: &dyn super::types::EventSink,
    ) {
        self.deleting.remove(id);
        let pids: Vec<(String, i32)> = entry
            .execs
            .iter()
            .filter(|(_, x)| x.state.exit.is_none())
            .map(|(x, p)| (x.clone(), p.state.pid))
            .collect();
        for (exec_id, pid) in pids {
            let Some(exit) = self.take_unclaimed(pid, mark) else {
                continue;
            };
            if let Some((process, state)) = entry.proc_mut(&exec_id) {
                super::exits::apply_exit(events, id, &exec_id, process, state, exit);
            }
        }
        self.containers.insert(id.to_string(), entry);
    }

    /// Takes a container out of the table: refused while its init runs (or is starting);
    /// a stopped or never-started one goes.
    pub fn remove_unless_running(&mut self, id: &str) -> Result<Entry<C>> {
        let e = self.get(id)?;
        if matches!(e.init.phase, Phase::Running | Phase::Starting) {
            return Err(ServiceError::FailedPrecondition(format!(
                "cannot delete running container {id}: kill it first"
            )));
        }
        self.containers.remove(id).ok_or_else(|| not_found(id, ""))
    }

    /// What State reports of a container's init or of an exec.
    pub fn state(&self, id: &str, exec_id: &str) -> Result<ProcessState> {
        let e = self.get(id)?;
        let s = e.state(exec_id).ok_or_else(|| not_found(id, exec_id))?;
        Ok(ProcessState {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            bundle: e.bundle.clone(),
            pid: s.pid,
            status: match s.phase {
                Phase::Created => Status::Created,
                Phase::Running if e.paused => Status::Paused,
                Phase::Starting | Phase::Running => Status::Running,
                Phase::Stopped => Status::Stopped,
            },
            stdio: s.stdio.clone(),
            terminal: s.terminal,
            exit: s.exit,
        })
    }

    /// A receiver of a process's exit (for Wait).
    pub fn subscribe(
        &self,
        id: &str,
        exec_id: &str,
    ) -> Result<watch::Receiver<Option<ExitStatus>>> {
        let e = self.get(id)?;
        Ok(e.state(exec_id)
            .ok_or_else(|| not_found(id, exec_id))?
            .exit_tx
            .subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{exit, running, table_with, Recorder};
    use super::*;

    #[test]
    fn a_created_container_is_deleted_with_a_sigkill_exit() {
        let mut t = table_with("c1", 42);
        assert_eq!(t.state("c1", "").unwrap().status, Status::Created);
        let before = SystemTime::now();
        let e = t.remove_unless_running("c1").unwrap();
        assert!(t.containers.is_empty());
        assert!(
            matches!(t.state("c1", ""), Err(ServiceError::NotFound(ref m)) if m == "container c1 not found")
        );
        assert_eq!(e.init.pid, 42);
        let x = exit_or_killed(&e.init);
        assert_eq!(x.code, 137);
        assert!(x.at >= before);
    }

    #[test]
    fn a_running_or_starting_container_is_not_deleted() {
        let mut t = running("c1", 42);
        for phase in [Phase::Running, Phase::Starting] {
            t.get_mut("c1").unwrap().init.phase = phase;
            let err = t.remove_unless_running("c1").err();
            assert!(
                matches!(err, Some(ServiceError::FailedPrecondition(ref m))
                    if m == "cannot delete running container c1: kill it first"),
                "{phase:?}"
            );
            assert!(t.containers.contains_key("c1"));
        }
        assert!(matches!(
            t.remove_unless_running("nope"),
            Err(ServiceError::NotFound(_))
        ));
    }

    #[test]
    fn a_stopped_container_is_deleted_with_its_exit() {
        let ev = Recorder::default();
        let mut t = running("c1", 42);
        let mut rx = t.subscribe("c1", "").unwrap();
        assert_eq!(*rx.borrow_and_update(), None);
        t.on_exit(42, exit(3), &ev);
        assert_eq!(*rx.borrow_and_update(), Some(exit(3)));
        let s = t.state("c1", "").unwrap();
        assert_eq!(
            (s.status, s.pid, s.exit),
            (Status::Stopped, 42, Some(exit(3)))
        );
        let e = t.remove_unless_running("c1").unwrap();
        assert_eq!(exit_or_killed(&e.init), exit(3));
    }

    #[test]
    fn a_failed_delete_puts_the_container_back_with_its_execs_exits() {
        let ev = Recorder::default();
        let mut t = running("c1", 42);
        let mut x = ProcState::new(77, Default::default(), false);
        x.phase = Phase::Running;
        let process = super::super::fake::FakeProcess::default();
        let exec = super::super::table::Exec { process, state: x };
        t.get_mut("c1").unwrap().execs.insert("e1".into(), exec);
        t.on_exit(42, exit(0), &ev);
        let (entry, mark) = t.begin_delete("c1").unwrap();
        // Meanwhile: a second Delete waits its turn, the exec killed by destroy is reaped.
        assert!(matches!(
            t.begin_delete("c1"),
            Err(ServiceError::FailedPrecondition(ref m)) if m == "container c1 is being deleted"
        ));
        t.keep_unclaimed_for_test(77, exit(137), mark + 1);
        t.end_failed_delete("c1", entry, mark, &ev);
        assert!(t.deleting.is_empty());
        let x = &t.get("c1").unwrap().execs["e1"];
        assert_eq!(
            (x.state.phase, x.state.exit),
            (Phase::Stopped, Some(exit(137)))
        );
        assert!(t.begin_delete("c1").is_ok(), "the next Delete tries again");
    }

    #[test]
    fn a_paused_running_container_reports_paused() {
        let mut t = running("c1", 42);
        t.get_mut("c1").unwrap().paused = true;
        let s = t.state("c1", "").unwrap();
        assert_eq!(s.status, Status::Paused);
        assert_eq!(s.bundle, "/b/c1");
        assert!(
            matches!(t.state("c1", "x"), Err(ServiceError::NotFound(ref m)) if m == "exec x of container c1 not found")
        );
    }
}
