//! Acting on running containers: signals, pause and resume, resource updates, stats and
//! pids, stdin and terminal size, OOM events; and the pod's end (Shutdown, SIGTERM).

use mypod_sandbox::cgroup::oom::{OomCheck, OomWatcher};
use mypod_sandbox::cgroup::stats::Stats;
use mypod_sandbox::Container;
use tokio::sync::Notify;

use super::table::{not_found, ContainerHandle, Entry, Phase, Table};
use super::types::Event;
use super::{Pod, Result};
use crate::error::ServiceError;

/// A Kill request's signal number, refused unless it is one (0, the probe, to SIGRTMAX):
/// 999 or 2^32-1 would otherwise reach the kernel as an unexplained EINVAL.
fn signal_number(sig: u32) -> Result<i32> {
    let max = libc::SIGRTMAX();
    match i32::try_from(sig) {
        Ok(s) if s <= max => Ok(s),
        _ => Err(ServiceError::InvalidArgument(format!(
            "signal {sig} is not a signal: valid numbers are 0-{max}"
        ))),
    }
}

/// Aborts a task when dropped.
pub(super) struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Pod {
    /// Kill: signal a process, or with `all` every process of the container.
    pub fn kill(&self, id: &str, exec_id: &str, sig: u32, all: bool) -> Result<()> {
        let sig = signal_number(sig)?;
        let mut st = self.lock();
        let e = st.get_mut(id)?;
        if all && exec_id.is_empty() {
            e.container.signal_all(sig)?;
            if e.paused && sig == libc::SIGKILL {
                thaw_for_kill(id, e);
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
        process.signal(sig)?;
        if e.paused && sig == libc::SIGKILL {
            thaw_for_kill(id, e);
        }
        Ok(())
    }

    /// Pause (`true`) or Resume (`false`): freeze or thaw the container's processes and
    /// report TaskPaused / TaskResumed.
    pub async fn set_paused(&self, id: &str, pause: bool) -> Result<()> {
        let what = if pause { "pause" } else { "resume" };
        let cg = {
            let st = self.lock();
            let e = st.get(id)?;
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
        let id = id.to_string();
        self.events.emit(if pause {
            Event::Paused { id: id.clone() }
        } else {
            Event::Resumed { id: id.clone() }
        });
        log::info!("{what}d container {id}");
        Ok(())
    }

    /// Update: apply new resource limits to a container that has not stopped.
    pub async fn update(&self, id: &str, r: oci_spec::runtime::LinuxResources) -> Result<()> {
        let cg = {
            let st = self.lock();
            let e = st.get(id)?;
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
        let cg = self.lock().get(id)?.container.cgroup().clone();
        tokio::task::spawn_blocking(move || Container::stats(&cg))
            .await
            .map_err(|e| ServiceError::Internal(format!("stats {id}: {e}")))
    }

    /// Pids of a container's processes, with the exec id of those that are execs; see
    /// [`listed_pids`] for a container whose processes have all exited.
    pub fn pids(&self, id: &str) -> Result<Vec<(i32, Option<String>)>> {
        let st = self.lock();
        let e = st.get(id)?;
        let pids = listed_pids(e.container.pids()?, e.init.pid, e.init.exit.is_some());
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

    /// The init pid of a container, if it exists.
    pub fn pid(&self, id: &str) -> Option<i32> {
        self.lock().containers.get(id).map(|e| e.init.pid)
    }

    /// CloseIO: EOF on a process's stdin.
    pub fn close_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        self.lock().close_stdin(id, exec_id)
    }

    /// ResizePty: set a terminal's window size.
    pub fn resize(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let st = self.lock();
        let e = st.get(id)?;
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
    pub(super) fn watch_oom(&self, id: &str, w: OomWatcher) -> Option<AbortOnDrop> {
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
                        events.emit(Event::Oom { id: id.clone() });
                    }
                    OomCheck::Gone => return,
                    OomCheck::Nothing => {}
                }
            }
        });
        Some(AbortOnDrop(task.abort_handle()))
    }

    /// Shutdown: exit once no container is left.
    pub fn shutdown(&self) {
        self.lock().shutdown(&self.exit);
    }

    /// SIGTERM: tear every container down.
    pub async fn destroy_all(&self) {
        let all: Vec<(String, Entry<Container>)> = self.lock().containers.drain().collect();
        for (id, mut e) in all {
            let r = tokio::task::spawn_blocking(move || e.container.destroy()).await;
            if let Ok(Err(err)) = r {
                log::error!("tear down {id}: {err}");
            }
        }
    }
}

/// A frozen process cannot act on SIGKILL: thaw a paused container so that it dies
/// (as runc does). Runs on the blocking pool; the kill has been sent already.
fn thaw_for_kill(id: &str, e: &mut Entry<Container>) {
    e.paused = false;
    let cg = e.container.cgroup().clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || {
        if let Err(err) = Container::set_paused(&cg, false) {
            log::warn!("thaw {id} after SIGKILL: {err}");
        }
    });
}

impl<C: ContainerHandle> Table<C> {
    /// Shutdown: ends the pod (notifies `exit`) if no container is left or being created.
    pub fn shutdown(&self, exit: &Notify) {
        if self.containers.is_empty() && self.creating.is_empty() && self.deleting.is_empty() {
            log::info!("no containers left: shim exits");
            exit.notify_one();
        }
    }

    /// Ends a process's stdin copy; for an exec not started yet, once it starts.
    pub fn close_stdin(&mut self, id: &str, exec_id: &str) -> Result<()> {
        let e = self.get_mut(id)?;
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
}

/// The pids Pids lists: the container's live processes, or, once they are all gone but the
/// task is not deleted yet, its init's pid. containerd 1.7 and 2.x, when they start again,
/// take a shim whose task lists no pid for one left over from a create that never finished
/// (containerd#6860, PR #6866) and delete it: an exit that happened while containerd was
/// down would then be reported by CRI as exit code 255, reason "Unknown", instead of its
/// code (runc-v2 loses it so; containerd PR #13790 narrows that check upstream).
fn listed_pids(live: Vec<i32>, init: i32, init_exited: bool) -> Vec<i32> {
    if live.is_empty() && init_exited && init > 0 {
        vec![init]
    } else {
        live
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn kill_refuses_numbers_that_are_not_signals() {
        assert_eq!(signal_number(9).unwrap(), 9);
        assert_eq!(signal_number(0).unwrap(), 0);
        assert_eq!(signal_number(64).unwrap(), libc::SIGRTMAX());
        for bad in [65, 999, u32::MAX] {
            match signal_number(bad) {
                Err(ServiceError::InvalidArgument(m)) => {
                    assert!(m.contains(&format!("signal {bad} ")), "{m}")
                }
                other => panic!("signal {bad}: {other:?}"),
            }
        }
    }

    use super::super::fake::{exit, running, table_with, Recorder};
    use super::*;

    #[test]
    fn an_exited_undeleted_task_lists_its_init_pid() {
        assert_eq!(listed_pids(vec![42, 50], 42, false), [42, 50]);
        assert_eq!(
            listed_pids(vec![50], 42, true),
            [50],
            "an exec outlives init"
        );
        assert_eq!(listed_pids(vec![], 42, true), [42]);
        assert_eq!(listed_pids(vec![], 42, false), Vec::<i32>::new());
        assert_eq!(listed_pids(vec![], 0, true), Vec::<i32>::new());
    }

    /// Whether `exit` was notified (a permit is stored).
    fn notified(exit: &Notify) -> bool {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_millis(20), exit.notified()).await
        })
        .is_ok()
    }

    #[test]
    fn shutdown_with_containers_left_does_not_end_the_pod() {
        let ev = Recorder::default();
        let exit_pod = Notify::new();
        let mut t = table_with("c1", 42);
        t.shutdown(&exit_pod);
        assert!(!notified(&exit_pod), "a created container keeps the pod");
        t.on_exit(42, exit(0), &ev);
        t.shutdown(&exit_pod);
        assert!(!notified(&exit_pod), "a stopped, undeleted one keeps it");
        let t2 = running("c2", 43);
        t2.shutdown(&exit_pod);
        assert!(!notified(&exit_pod), "a running one keeps it");

        t.remove_unless_running("c1").unwrap();
        t.creating.insert("c3".into());
        t.shutdown(&exit_pod);
        assert!(!notified(&exit_pod), "one being created keeps it");
        t.creating.clear();
        t.deleting.insert("c1".into());
        t.shutdown(&exit_pod);
        assert!(!notified(&exit_pod), "one being deleted keeps it");
        t.deleting.clear();
        t.shutdown(&exit_pod);
        assert!(notified(&exit_pod), "with none left the pod ends");
    }

    #[test]
    fn close_stdin_before_an_exec_starts_is_remembered() {
        let ev = Recorder::default();
        let mut t = running("c1", 42);
        let process: oci_spec::runtime::Process =
            serde_json::from_str(r#"{"args":["cat"],"cwd":"/","user":{"uid":0,"gid":0}}"#).unwrap();
        let req = super::super::types::ExecRequest {
            id: "c1".into(),
            exec_id: "e1".into(),
            process,
            stdio: Default::default(),
            terminal: false,
        };
        t.add_exec(req, &ev).unwrap();
        t.close_stdin("c1", "e1").unwrap();
        assert!(t.get("c1").unwrap().pending_execs["e1"].state.stdin_closed);
        t.close_stdin("c1", "").unwrap();
        assert!(matches!(
            t.close_stdin("c1", "e9"),
            Err(ServiceError::NotFound(ref m)) if m == "exec e9 of container c1 not found"
        ));
    }
}
