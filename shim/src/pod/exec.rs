//! Execs: added (Exec) with their spec, set up and started in one go (Start), forgotten
//! once stopped (Delete).

use mypod_sandbox::container::ExecOpts;
use mypod_sandbox::stdio::Draining;
use mypod_sandbox::ExitStatus;

use super::exits::apply_exit;
use super::table::{
    not_found, ContainerHandle, Exec, PendingExec, Phase, ProcState, ProcessHandle, Table,
};
use super::types::{Deleted, Event, EventSink, ExecRequest};
use super::{start_copies, Pod, Result};
use crate::error::ServiceError;

impl Pod {
    /// Exec: record the process (it is set up at Start), report TaskExecAdded.
    pub fn exec(&self, req: ExecRequest) -> Result<()> {
        self.lock().add_exec(req, self.events.as_ref())
    }

    pub(super) async fn start_exec(&self, id: &str, exec_id: &str) -> Result<i32> {
        let (target, process, stdio, since) = {
            let mut st = self.lock();
            let e = st.get_mut(id)?;
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
            let since = mypod_sandbox::process::reaps();
            (target, process, p.state.stdio.clone(), since)
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
        let res = match res {
            Ok(Err(e)) => Ok(Err(self.explain_setup_death(e, since).await)),
            other => other,
        };
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
        let exec = Exec { process, state };
        match st.exec_started(id, exec_id, exec, since, self.events.as_ref()) {
            Err(x) => {
                let _ = x.process.signal(libc::SIGKILL);
                return Err(not_found(id, ""));
            }
            Ok(Some((exit, draining))) => {
                drop(st);
                self.exit_when_read(id.into(), exec_id.into(), pid, exit, draining);
            }
            Ok(None) => {}
        }
        log::info!("exec {exec_id} in {id}: pid {pid}");
        Ok(pid)
    }

    pub(super) fn delete_exec(&self, id: &str, exec_id: &str) -> Result<Deleted> {
        self.lock().delete_exec(id, exec_id)
    }
}

/// An exit to apply once the output it left is read.
pub(super) type ExitLater = (ExitStatus, Draining);

impl<C: ContainerHandle> Table<C> {
    /// Records an exec to be started later; only in a running container, under an id
    /// not in use there.
    pub fn add_exec(&mut self, req: ExecRequest, events: &dyn EventSink) -> Result<()> {
        let (id, exec_id) = (req.id.as_str(), req.exec_id.as_str());
        let e = self.get_mut(id)?;
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
        // A process.terminal that disagrees with the request is refused, as runc refuses
        // it (docs/spec-validation.md); an absent one takes the request's.
        if let Some(t) = req.process.terminal().filter(|t| *t != req.terminal) {
            return Err(ServiceError::InvalidArgument(format!(
                "exec {exec_id}: process.terminal: {t}, but the exec was requested {} a terminal",
                if req.terminal { "with" } else { "without" }
            )));
        }
        let terminal = req.terminal;
        let mut process = req.process;
        process.set_terminal(Some(terminal));
        e.pending_execs.insert(
            exec_id.to_string(),
            PendingExec {
                process: Some(process),
                state: ProcState::new(0, req.stdio, terminal),
            },
        );
        events.emit(Event::ExecAdded {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
        });
        Ok(())
    }

    /// An exec's process runs (launched when the reaper's count read `since`): record it
    /// (applying an exit its pid already had) and
    /// report TaskExecStarted. The exec comes back if its container is gone. An exit it
    /// already had whose output is unread comes back, to be applied once it is read.
    pub fn exec_started(
        &mut self,
        id: &str,
        exec_id: &str,
        mut exec: Exec<C::Process>,
        since: u64,
        events: &dyn EventSink,
    ) -> std::result::Result<Option<ExitLater>, Box<Exec<C::Process>>> {
        let unclaimed = self.take_unclaimed(exec.state.pid, since);
        let Some(e) = self.containers.get_mut(id) else {
            return Err(Box::new(exec));
        };
        events.emit(Event::ExecStarted {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid: exec.state.pid,
        });
        let mut later = None;
        if let Some(exit) = unclaimed {
            match exec.process.release_output() {
                Some(d) => {
                    exec.state.reaped = true;
                    later = Some((exit, d));
                }
                None => apply_exit(
                    events,
                    id,
                    exec_id,
                    &mut exec.process,
                    &mut exec.state,
                    exit,
                ),
            }
        }
        e.execs.insert(exec_id.to_string(), exec);
        Ok(later)
    }

    /// Forgets an exec: one never started at once, a started one once it stopped.
    pub fn delete_exec(&mut self, id: &str, exec_id: &str) -> Result<Deleted> {
        let e = self.get_mut(id)?;
        if let Some(p) = e.pending_execs.get(exec_id) {
            // Its Start is under way: the process it makes must not go unrecorded, nor
            // land on a new exec of the same id.
            if p.state.phase == Phase::Starting {
                return Err(ServiceError::FailedPrecondition(format!(
                    "cannot delete exec {exec_id} of {id}: it is being started"
                )));
            }
            e.pending_execs.remove(exec_id);
            return Ok(Deleted::default());
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
        Ok(Deleted {
            pid: x.state.pid,
            exit: x.state.exit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{exit, running, FakeProcess, Recorder};
    use super::super::types::Status;
    use super::*;

    fn req(id: &str, exec_id: &str) -> ExecRequest {
        let process: oci_spec::runtime::Process =
            serde_json::from_str(r#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}"#).unwrap();
        ExecRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            process,
            stdio: Default::default(),
            terminal: false,
        }
    }

    /// What start_exec records once the process runs.
    fn started(pid: i32) -> Exec<FakeProcess> {
        let mut state = ProcState::new(pid, Default::default(), false);
        state.phase = Phase::Running;
        Exec {
            process: FakeProcess::default(),
            state,
        }
    }

    #[test]
    fn exec_after_the_init_exited_is_refused() {
        let ev = Recorder::default();
        let mut t = running("c1", 42);
        t.add_exec(req("c1", "before"), &ev).unwrap();
        t.on_exit(42, exit(0), &ev);
        let err = t.add_exec(req("c1", "e1"), &ev).err();
        assert!(
            matches!(err, Some(ServiceError::FailedPrecondition(ref m))
                if m == "cannot exec in container c1: it is not running"),
            "{err:?}"
        );
        let e = t.get("c1").unwrap();
        assert!(!e.pending_execs.contains_key("e1"));
        let added: Vec<_> = ev
            .all()
            .into_iter()
            .filter(|e| matches!(e, Event::ExecAdded { .. }))
            .collect();
        assert_eq!(added.len(), 1);
    }

    #[test]
    fn a_terminal_that_disagrees_with_the_request_is_refused() {
        let ev = Recorder::default();
        let mut t = running("c1", 42);
        for (spec, asked) in [(true, false), (false, true)] {
            let mut r = req("c1", "e1");
            r.process.set_terminal(Some(spec));
            r.terminal = asked;
            let e = t.add_exec(r, &ev).unwrap_err();
            assert!(
                matches!(&e, ServiceError::InvalidArgument(m) if m.contains("process.terminal")),
                "{e:?}"
            );
        }
        let mut r = req("c1", "e1");
        r.process.set_terminal(Some(true));
        r.terminal = true;
        t.add_exec(r, &ev).unwrap();
    }

    #[test]
    fn exec_ids_are_unique_and_a_pending_exec_has_state() {
        let ev = Recorder::default();
        let mut t = running("c1", 42);
        let mut r = req("c1", "e1");
        r.terminal = true;
        t.add_exec(r, &ev).unwrap();
        let s = t.state("c1", "e1").unwrap();
        assert_eq!((s.status, s.pid, s.terminal), (Status::Created, 0, true));
        let pending = &t.get("c1").unwrap().pending_execs["e1"];
        assert_eq!(
            pending.process.as_ref().and_then(|p| p.terminal()),
            Some(true)
        );
        for dup in ["e1", ""] {
            assert!(matches!(
                t.add_exec(req("c1", dup), &ev),
                Err(ServiceError::AlreadyExists(_))
            ));
        }
        assert!(
            matches!(t.add_exec(req("c9", "e1"), &ev), Err(ServiceError::NotFound(ref m)) if m == "container c9 not found")
        );
    }

    #[test]
    fn an_exec_that_exited_before_start_recorded_it_is_stopped() {
        let ev = Recorder::default();
        let mut t = running("c1", 42);
        t.add_exec(req("c1", "e1"), &ev).unwrap();
        t.get_mut("c1").unwrap().pending_execs.remove("e1");
        // Reaped before start_exec got the lock back.
        t.on_exit(77, exit(5), &ev);
        assert!(ev.exits().is_empty());
        assert!(t.exec_started("c1", "e1", started(77), 0, &ev).is_ok());
        let x = &t.get("c1").unwrap().execs["e1"];
        assert_eq!(x.state.phase, Phase::Stopped);
        assert_eq!(x.state.exit, Some(exit(5)));
        assert_eq!(x.process.exits, 1);
        assert!(t.unclaimed.is_empty());
        // TaskExecStarted, then TaskExit.
        let tail: Vec<_> = ev.all().into_iter().skip(1).collect();
        assert!(matches!(&tail[0], Event::ExecStarted { exec_id, pid: 77, .. } if exec_id == "e1"));
        assert_eq!(ev.exits(), vec![("c1".into(), "e1".into(), 77, 5)]);
        assert_eq!(
            t.delete_exec("c1", "e1").unwrap(),
            Deleted {
                pid: 77,
                exit: Some(exit(5))
            }
        );
        assert!(t.exec_started("gone", "e2", started(78), 0, &ev).is_err());
    }

    #[test]
    fn a_running_exec_is_not_deleted_and_a_pending_one_is() {
        let ev = Recorder::default();
        let mut t = running("c1", 42);
        assert!(t.exec_started("c1", "e1", started(77), 0, &ev).is_ok());
        assert!(matches!(
            t.delete_exec("c1", "e1"),
            Err(ServiceError::FailedPrecondition(ref m))
                if m == "cannot delete running exec e1 of c1: kill it first"
        ));
        t.on_exit(77, exit(0), &ev);
        assert_eq!(t.delete_exec("c1", "e1").unwrap().pid, 77);
        assert!(matches!(
            t.delete_exec("c1", "e1"),
            Err(ServiceError::NotFound(ref m)) if m == "exec e1 of container c1 not found"
        ));
        t.add_exec(req("c1", "e2"), &ev).unwrap();
        assert_eq!(t.delete_exec("c1", "e2").unwrap(), Deleted::default());
        // One whose Start is under way stays, for that Start to record.
        t.add_exec(req("c1", "e3"), &ev).unwrap();
        let e = t.get_mut("c1").unwrap();
        e.pending_execs.get_mut("e3").unwrap().state.phase = Phase::Starting;
        assert!(matches!(
            t.delete_exec("c1", "e3"),
            Err(ServiceError::FailedPrecondition(ref m)) if m.contains("being started")
        ));
        assert!(t.get("c1").unwrap().pending_execs.contains_key("e3"));
    }
}
