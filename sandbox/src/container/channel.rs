//! The caller's side of the init channel during a launch: waiting for the process's pid
//! and its Ready (with the create hooks in between when asked), and reading with a
//! diagnosis of a stuck setup on timeout.

use std::io::{Read, Write};

use super::ContainerError;
use crate::stuck::Trace;
use crate::wire::{self, InitMsg, WireError};

/// Waits for the process's pid and its Ready; returns the pid. The helper reports the
/// pid after fork while the process, running concurrently, reports Ready: the two may
/// come in either order (an exec has little to set up, so its Ready often wins when the
/// helper is descheduled right after fork).
///
/// The process may also ask for the create hooks (`Hooks`), which need its host pid:
/// they run once both have come, and the process continues on [`wire::HOOKS_DONE`].
pub(super) fn await_ready(
    chan: &mut (impl Read + Write),
    trace: &mut Trace,
    id: &str,
    pid_out: &mut Option<i32>,
    create_hooks: &mut dyn FnMut(i32) -> Result<(), ContainerError>,
) -> Result<i32, ContainerError> {
    let (mut pid, mut ready, mut hooks) = (None, false, false);
    loop {
        if let (Some(p), true) = (pid, hooks) {
            hooks = false;
            create_hooks(p)?;
            chan.write_all(&[wire::HOOKS_DONE]).map_err(WireError::Io)?;
        }
        if let (Some(p), true) = (pid, ready) {
            return Ok(p);
        }
        match recv(chan, trace, id)? {
            Some(InitMsg::Hooks) => hooks = true,
            Some(InitMsg::Pid(p)) => {
                *pid_out = Some(p);
                trace.process = Some(p);
                pid = Some(p);
            }
            Some(InitMsg::Ready) => ready = true,
            Some(InitMsg::Error(e)) => return Err(ContainerError::Init(e)),
            None => return Err(ContainerError::InitVanished),
        }
    }
}

/// Reads the next message of a launch; on a timeout, logs what the helper and the
/// process are doing and who holds the channel, so a stuck setup can be diagnosed.
pub(super) fn recv(
    chan: &mut impl Read,
    trace: &Trace,
    id: &str,
) -> Result<Option<InitMsg>, WireError> {
    let r = wire::recv::<InitMsg>(chan);
    if let Err(WireError::Io(e)) = &r {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            log::warn!("{id}: setup timed out: {}", trace.report());
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shim's end of a channel: reads `input`, keeps what is written.
    struct Chan {
        input: std::io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Chan {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Chan {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn chan(msgs: &[InitMsg]) -> Chan {
        let mut buf = Vec::new();
        for m in msgs {
            wire::send(&mut buf, m).unwrap();
        }
        Chan {
            input: std::io::Cursor::new(buf),
            written: Vec::new(),
        }
    }

    fn no_hooks(_: i32) -> Result<(), ContainerError> {
        panic!("no hooks were asked for")
    }

    #[test]
    fn ready_before_pid_is_not_lost() {
        for order in [
            [InitMsg::Pid(42), InitMsg::Ready],
            [InitMsg::Ready, InitMsg::Pid(42)],
        ] {
            let mut c = chan(&order);
            let mut pid_out = None;
            let mut trace = Trace::default();
            let pid = await_ready(&mut c, &mut trace, "c", &mut pid_out, &mut no_hooks).unwrap();
            assert_eq!((pid, pid_out, trace.process), (42, Some(42), Some(42)));
        }
    }

    #[test]
    fn create_hooks_wait_for_the_pid_and_are_answered() {
        for order in [
            [InitMsg::Hooks, InitMsg::Pid(42), InitMsg::Ready],
            [InitMsg::Pid(42), InitMsg::Hooks, InitMsg::Ready],
        ] {
            let mut c = chan(&order);
            let mut ran = Vec::new();
            let mut hooks = |pid| {
                ran.push(pid);
                Ok(())
            };
            let pid = await_ready(&mut c, &mut Trace::default(), "c", &mut None, &mut hooks);
            assert_eq!(pid.unwrap(), 42);
            assert_eq!(ran, [42], "run once, with the host pid");
            assert_eq!(c.written, [wire::HOOKS_DONE]);
        }
        let mut c = chan(&[InitMsg::Pid(42), InitMsg::Hooks, InitMsg::Ready]);
        let mut failing = |_| Err(ContainerError::Invalid("hook failed".into()));
        let e = await_ready(&mut c, &mut Trace::default(), "c", &mut None, &mut failing);
        assert_eq!(e.unwrap_err().to_string(), "hook failed");
        assert!(
            c.written.is_empty(),
            "a failed hook does not let setup go on"
        );
    }

    #[test]
    fn an_error_or_an_early_end_fails_the_launch() {
        let mut c = chan(&[InitMsg::Ready, InitMsg::Error("exec: \"nope\"".into())]);
        let e =
            await_ready(&mut c, &mut Trace::default(), "c", &mut None, &mut no_hooks).unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let mut c = chan(&[InitMsg::Pid(7)]);
        let mut pid_out = None;
        let e = await_ready(
            &mut c,
            &mut Trace::default(),
            "c",
            &mut pid_out,
            &mut no_hooks,
        )
        .unwrap_err();
        assert!(matches!(e, ContainerError::InitVanished), "{e}");
        assert_eq!(pid_out, Some(7), "the pid is kept for cleanup");
    }
}
