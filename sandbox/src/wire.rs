//! Framed messages between the shim and its init helper over a unix stream socket.
//!
//! Each frame is a 4-byte little-endian length followed by that many bytes of JSON.
//! The helper (its `Pid`) and the process it forked (`Ready` or `Error`) write
//! concurrently; each frame is small and goes in one `write_all`, so frames never
//! interleave, but they may arrive in either order.

use std::io::{Read, Write};
use std::path::PathBuf;

use oci_spec::runtime::Spec;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Largest frame accepted (a spec with thousands of env entries stays far below).
const MAX_FRAME: usize = 16 << 20;

/// Errors of the wire protocol.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("init channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("init channel: bad message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("init channel: frame of {0} bytes is too large")]
    TooLarge(usize),
}

/// What the shim asks the init helper to build.
#[derive(Debug, Serialize, Deserialize)]
pub struct InitRequest {
    /// Container id (for error messages and hooks' state).
    pub id: String,
    /// Absolute bundle path (hooks' state).
    pub bundle: PathBuf,
    /// The OCI spec, as validated by the shim.
    pub spec: Spec,
    /// Absolute path of the container's root filesystem (already mounted).
    pub rootfs: PathBuf,
    /// v1 `tasks` files the (single-threaded) helper moves itself into, by writing `0`,
    /// before anything else (see [`crate::cgroup::Join`]).
    pub cgroup_tasks: Vec<PathBuf>,
    /// `cgroup.procs` files it writes its pid to: a cgroup2 directory it could not be
    /// born in (kernels before 5.7).
    pub cgroup_procs: Vec<PathBuf>,
    /// Cgroup v1 hierarchies to expose under /sys/fs/cgroup: (name, host dir).
    pub cgroup_binds: Vec<(String, PathBuf)>,
    /// True on a cgroup2-only host.
    pub cgroup_v2: bool,
    /// Exec: join the namespaces of this (host) pid instead of building a container.
    pub join_pid: Option<i32>,
    /// The start time ([`crate::process::start_time`]) that `join_pid` had at Create: the
    /// helper joins nothing if the pid now names another process.
    #[serde(default)]
    pub join_start_time: Option<u64>,
    /// The fd of the console socket when the process wants a terminal.
    pub console_fd: Option<i32>,
    /// Idmapped mounts made by the shim: (index in the spec's mounts, fd of the
    /// detached mount in the helper).
    #[serde(default)]
    pub idmapped: Vec<(usize, i32)>,
    /// The pod's user namespace (`user_namespace = "pod"`): the helper's fd of it, joined
    /// after the namespaces given by path.
    #[serde(default)]
    pub userns_fd: Option<i32>,
    /// The rootfs comes idmapped, as a detached mount passed (SCM_RIGHTS) right after
    /// the request: the container attaches it over the rootfs and pivots into it.
    #[serde(default)]
    pub rootfs_tree: bool,
    /// `linux.seccomp` compiled by the shim (see [`crate::seccomp::cache`]); the helper
    /// compiles the spec's profile itself only when this is absent.
    #[serde(default)]
    pub seccomp: Option<crate::seccomp::cache::WireFilter>,
    /// The pod holder ([`crate::holder`]): after setup the process runs
    /// [`crate::holder::serve`] instead of exec'ing `process.args`.
    #[serde(default)]
    pub holder: bool,
}

/// What the helper and the container init report back.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub enum InitMsg {
    /// Host pid of the container process.
    Pid(i32),
    /// Setup finished; the process waits for the start byte.
    Ready,
    /// Mounts are done: the shim runs the prestart and createRuntime hooks, then
    /// answers [`HOOKS_DONE`].
    Hooks,
    /// Setup failed; the text is shown to the user.
    Error(String),
}

/// Shim → helper: the rootfs is mounted and the limits are set: go on past the joined
/// namespaces (the idmapped rootfs, when the request says one comes, is sent instead).
pub const GO: u8 = b'g';
/// Shim → container init: the runtime's create hooks succeeded.
pub const HOOKS_DONE: u8 = b'h';
/// Shim → container init: go (exec the process).
pub const START: u8 = b's';

/// Writes one frame, in a single write: the helper and the process it forked share the
/// channel, and their frames must not interleave.
pub fn send<T: Serialize>(w: &mut impl Write, msg: &T) -> Result<(), WireError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)?;
    Ok(())
}

/// Reads one frame; `Ok(None)` on a clean end of stream.
pub fn recv<T: DeserializeOwned>(r: &mut impl Read) -> Result<Option<T>, WireError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(Some(serde_json::from_slice(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut buf = Vec::new();
        send(&mut buf, &InitMsg::Pid(42)).unwrap();
        send(&mut buf, &InitMsg::Error("boom".into())).unwrap();
        let mut r = &buf[..];
        assert_eq!(recv::<InitMsg>(&mut r).unwrap(), Some(InitMsg::Pid(42)));
        assert_eq!(
            recv::<InitMsg>(&mut r).unwrap(),
            Some(InitMsg::Error("boom".into()))
        );
        assert_eq!(recv::<InitMsg>(&mut r).unwrap(), None);
    }

    #[test]
    fn oversized_frame_is_refused() {
        let mut r = &((MAX_FRAME as u32) + 1).to_le_bytes()[..];
        assert!(matches!(
            recv::<InitMsg>(&mut r),
            Err(WireError::TooLarge(_))
        ));
    }
}
