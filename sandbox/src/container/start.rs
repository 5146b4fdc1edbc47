//! Start: takes a created process's init channel (with the container's poststart hooks)
//! and sends the start byte, then waits until the process has exec'd.

use std::io::Write;
use std::os::unix::net::UnixStream;

use super::channel::recv;
use super::{Container, ContainerError, Process};
use crate::hooks;
use crate::process::PidFd;
use crate::stuck::Trace;
use crate::wire::{self, InitMsg, WireError};

impl Process {
    /// Takes what starting needs, so the blocking part can run without the process.
    pub fn begin_start(&mut self) -> Result<Starter, ContainerError> {
        self.chan
            .take()
            .map(|(chan, trace, id)| Starter {
                chan,
                trace,
                id,
                poststart: None,
            })
            .ok_or(ContainerError::NotCreated)
    }

    /// Whether the process is still waiting for start.
    pub fn is_created(&self) -> bool {
        self.chan.is_some()
    }
}

impl Container {
    /// Takes what starting the init needs (see [`Process::begin_start`]), with the
    /// poststart hooks, which run once it has exec'd.
    pub fn begin_start(&mut self) -> Result<Starter, ContainerError> {
        let mut s = self.init.begin_start()?;
        if let Some(h) = self.spec.hooks() {
            if !hooks::Kind::Poststart.of(h).is_empty() {
                s.poststart = Some(Poststart {
                    hooks: h.clone(),
                    state: self.state("running"),
                    process: self.init.pid.try_clone()?,
                });
            }
        }
        Ok(s)
    }
}

/// The start step of a created process, detached from it (see [`Process::begin_start`]).
#[derive(Debug)]
pub struct Starter {
    chan: UnixStream,
    trace: Trace,
    id: String,
    poststart: Option<Poststart>,
}

/// The poststart hooks of a container's init and what they need.
#[derive(Debug)]
struct Poststart {
    hooks: oci_spec::runtime::Hooks,
    state: hooks::State,
    process: PidFd,
}

impl Starter {
    /// Sends the start byte and waits until the process has exec'd (the channel closes)
    /// or reported why it could not.
    pub fn run(mut self) -> Result<(), ContainerError> {
        self.chan.write_all(&[wire::START]).map_err(WireError::Io)?;
        match recv(&mut self.chan, &self.trace, &self.id)? {
            None => match self.poststart {
                None => Ok(()),
                Some(p) => {
                    let r = hooks::run(Some(&p.hooks), hooks::Kind::Poststart, &p.state);
                    if r.is_err() {
                        // As runc: a failed poststart hook fails Start and ends the
                        // container.
                        let _ = p.process.signal(libc::SIGKILL);
                    }
                    Ok(r?)
                }
            },
            Some(InitMsg::Error(e)) => Err(ContainerError::Init(e)),
            Some(other) => Err(ContainerError::Init(format!(
                "unexpected message from container init: {other:?}"
            ))),
        }
    }
}
