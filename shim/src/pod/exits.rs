//! Exits: a reaped pid's exit is applied to its process (state, waiters, TaskExit).
//!
//! While that process's Start is still finishing the exit waits in `pending_exit`; an
//! exit no process claims yet (a process can die before its RPC returns) is kept in
//! `unclaimed` until one records its pid. A process whose reader has not read all it
//! wrote is reported only once that output is read (bounded by [`DRAIN_WAIT`]):
//! containerd handles an exit by cancelling its own readers that are still opening, and
//! what is left in the pipe is then lost (seen with short-lived containers under load).

use std::time::Duration;

use mypod_sandbox::stdio::Draining;
use mypod_sandbox::ExitStatus;

use super::table::{ContainerHandle, Phase, ProcState, ProcessHandle, Table};
use super::types::{Event, EventSink};
use super::Pod;
use crate::copy;

/// How long an exit waits for its output to be read at most.
pub(super) const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// What a reaped pid is to the table.
pub(super) enum Reaped {
    /// No process of ours records it (yet).
    Unknown,
    /// Process `.0` (container id, exec id): apply the exit now.
    Now(String, String),
    /// As `Now`, once its output is read.
    Drain(String, String, Draining),
}

impl<C: ContainerHandle> Table<C> {
    /// The live process (container id, exec id) whose pid this is.
    fn find_live(&self, pid: i32) -> Option<(String, String)> {
        let live = |s: &ProcState| s.pid == pid && s.exit.is_none() && !s.reaped;
        self.containers.iter().find_map(|(id, e)| {
            if live(&e.init) {
                return Some((id.clone(), String::new()));
            }
            let (x, _) = e.execs.iter().find(|(_, x)| live(&x.state))?;
            Some((id.clone(), x.clone()))
        })
    }

    /// A pid was reaped: when an init without a pid namespace of its own exits, what is
    /// left of its container (execs and their children) is killed now, as runc-v2 does;
    /// the process's output FIFOs are let go.
    pub fn reaped(&mut self, pid: i32) -> Reaped {
        let Some((id, exec_id)) = self.find_live(pid) else {
            return Reaped::Unknown;
        };
        let Some(e) = self.containers.get_mut(&id) else {
            return Reaped::Unknown;
        };
        if exec_id.is_empty() && !e.container.owns_pid_namespace() {
            if let Err(err) = e.container.signal_all(libc::SIGKILL) {
                log::warn!("{id}: kill the processes left after its init exited: {err}");
            }
        }
        let Some((process, state)) = e.proc_mut(&exec_id) else {
            return Reaped::Unknown;
        };
        state.reaped = true;
        match process.release_output() {
            Some(d) => Reaped::Drain(id, exec_id, d),
            None => Reaped::Now(id, exec_id),
        }
    }

    /// Applies the exit of process (`id`, `exec_id`) if it still is the one with `pid`:
    /// deferred while its Start finishes, else reported.
    pub fn exit_of(
        &mut self,
        id: &str,
        exec_id: &str,
        pid: i32,
        exit: ExitStatus,
        events: &dyn EventSink,
    ) {
        let Some((process, state)) = self
            .containers
            .get_mut(id)
            .and_then(|e| e.proc_mut(exec_id))
        else {
            return;
        };
        if state.pid != pid || state.exit.is_some() {
            return;
        }
        if state.phase == Phase::Starting {
            state.pending_exit = Some(exit);
            state.pending_seen.notify_one();
        } else {
            apply_exit(events, id, exec_id, process, state, exit);
        }
    }

    /// Records a reaped pid's exit at once, not waiting for unread output: the unit
    /// tests' synchronous form of [`Pod::on_exit`].
    #[cfg(test)]
    pub fn on_exit(&mut self, pid: i32, exit: ExitStatus, events: &dyn EventSink) {
        match self.reaped(pid) {
            Reaped::Now(id, exec_id) | Reaped::Drain(id, exec_id, _) => {
                self.exit_of(&id, &exec_id, pid, exit, events)
            }
            Reaped::Unknown => {
                self.reaps += 1;
                self.keep_unclaimed(pid, exit, self.reaps)
            }
        }
    }

    /// Keeps an exit numbered `n`, as the reaper would.
    #[cfg(test)]
    pub fn keep_unclaimed_for_test(&mut self, pid: i32, exit: ExitStatus, n: u64) {
        self.keep_unclaimed(pid, exit, n)
    }

    /// Keeps the exit of a pid no process records yet (the newest 256).
    fn keep_unclaimed(&mut self, pid: i32, exit: ExitStatus, n: u64) {
        if self.unclaimed.len() >= 256 {
            self.unclaimed.remove(0);
        }
        self.unclaimed.push((pid, exit, n));
    }
}

/// The process exited: its state says so, waiters wake, TaskExit is reported.
pub(super) fn apply_exit<P: ProcessHandle>(
    events: &dyn EventSink,
    id: &str,
    exec_id: &str,
    process: &mut P,
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
    events.emit(Event::Exit {
        id: id.to_string(),
        exec_id: exec_id.to_string(),
        pid: state.pid,
        exit,
    });
    log::info!("{id} {exec_id} exited with {}", exit.code);
}

impl Pod {
    /// A reaped child: a process of one of our containers, or a helper. An exit whose
    /// output is still unread is applied once it is read, else now.
    pub fn on_exit(&self, pid: i32, code: u32, n: u64) {
        let exit = ExitStatus {
            code,
            at: std::time::SystemTime::now(),
        };
        let mut t = self.lock();
        match t.reaped(pid) {
            Reaped::Unknown => t.keep_unclaimed(pid, exit, n),
            Reaped::Now(id, exec_id) => t.exit_of(&id, &exec_id, pid, exit, self.events.as_ref()),
            Reaped::Drain(id, exec_id, d) => {
                drop(t);
                self.exit_when_read(id, exec_id, pid, exit, d);
            }
        }
    }

    /// Applies the exit of process (`id`, `exec_id`), marked reaped, once its output is
    /// read ([`DRAIN_WAIT`] at most), on the runtime (at once without one).
    pub(super) fn exit_when_read(
        &self,
        id: String,
        exec_id: String,
        pid: i32,
        exit: ExitStatus,
        draining: Draining,
    ) {
        if tokio::runtime::Handle::try_current().is_err() {
            return self
                .lock()
                .exit_of(&id, &exec_id, pid, exit, self.events.as_ref());
        }
        let (table, events) = (self.state.clone(), self.events.clone());
        tokio::spawn(async move {
            if !copy::drained(draining, DRAIN_WAIT).await {
                log::warn!(
                    "{id} {exec_id}: its output was not read within {DRAIN_WAIT:?} of its \
                     exit; reporting the exit anyway"
                );
            }
            // A panic while holding the lock aborts (panic=abort): never poisoned.
            let mut t = table.lock().unwrap_or_else(|p| p.into_inner());
            t.exit_of(&id, &exec_id, pid, exit, events.as_ref());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{exit, running, Recorder};
    use super::*;

    #[test]
    fn a_reaped_exit_waits_for_exit_of_and_is_applied_once() {
        let ev = Recorder::default();
        let mut t = running("c1", 42);
        assert!(matches!(t.reaped(42), Reaped::Now(ref id, ref x) if id == "c1" && x.is_empty()));
        // Reaped, not reported yet: still running, and not found again for its pid.
        let e = t.get("c1").unwrap();
        assert_eq!((e.init.phase, e.init.exit), (Phase::Running, None));
        assert!(matches!(t.reaped(42), Reaped::Unknown));
        assert!(ev.exits().is_empty());
        // Only the process that had the pid gets the exit.
        t.exit_of("c1", "", 43, exit(9), &ev);
        t.exit_of("nope", "", 42, exit(9), &ev);
        assert!(ev.exits().is_empty());
        t.exit_of("c1", "", 42, exit(3), &ev);
        t.exit_of("c1", "", 42, exit(4), &ev);
        assert_eq!(ev.exits(), vec![("c1".into(), String::new(), 42, 3)]);
        let e = t.get("c1").unwrap();
        assert_eq!(e.init.phase, Phase::Stopped);
        assert_eq!(e.container.init.exits, 1, "its output released once");
        // Its container's other processes were killed when the init was reaped.
        assert_eq!(*e.container.signalled.borrow(), vec![libc::SIGKILL]);
    }

    #[test]
    fn an_exit_reaped_during_start_waits_for_the_start() {
        let ev = Recorder::default();
        let mut t = running("c1", 42);
        t.get_mut("c1").unwrap().init.phase = Phase::Starting;
        assert!(matches!(t.reaped(42), Reaped::Now(..)));
        t.exit_of("c1", "", 42, exit(5), &ev);
        let e = t.get("c1").unwrap();
        assert_eq!(e.init.pending_exit, Some(exit(5)));
        assert!(ev.exits().is_empty());
    }
}
