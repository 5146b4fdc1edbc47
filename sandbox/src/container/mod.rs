//! Containers and their processes: created by an exec'd init helper, started by a byte on
//! the init channel, cleaned up (processes, rootfs, cgroup) on delete.
//!
//! Create: the caller (multi-threaded) only spawns `<exe> init` ([`crate::spawn`]: born in
//! the cgroup2 directory) with the channel on fd 3, an optional console socket on fd 4 and
//! the process's stdio on 0-2, then mounts the rootfs and sets cgroup limits while the
//! helper starts, and sends the request. The helper — single-threaded and freshly exec'd —
//! joins the v1 cgroups ([`crate::cgroup::Join`]) and namespaces, forks the process,
//! reports its pid and exits; the process builds its root (or, for an exec, joins the
//! container's namespaces), applies the process spec, reports `Ready` and blocks until the
//! start byte, then execs. A successful exec closes the channel (close-on-exec), which is
//! how the caller learns it started.
//!
//! The caller must reap children (the helper exits right after reporting the pid), and
//! should be a child subreaper so the processes are reparented to it.
//!
//! Layout, one verb or phase per file: `create` (validation, cgroup, rootfs mount,
//! idmapped mounts, then the launch), `launch` (starting the init helper and sending it
//! the request), `channel` (the caller's side of the pid/Ready/hooks exchange), `start`,
//! `exec`, `control` (queries, update, pause, stats and OOM watch of a running container)
//! and `cleanup` (kill, delete, undo of a failed create, cleanup after a dead shim).

mod channel;
mod cleanup;
mod control;
mod create;
mod exec;
mod launch;
mod start;

pub use cleanup::cleanup_dead;
pub use start::Starter;

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::{Process as ProcessSpec, Spec};

use crate::cgroup::freezer::FreezerError;
use crate::cgroup::oom::OomError;
use crate::cgroup::resources::ResourceError;
use crate::cgroup::{Cgroup, CgroupError};
use crate::console::ConsoleError;
use crate::exe::HelperExe;
use crate::hooks::{self, HookError};
use crate::mount::{MountError, MountSpec};
use crate::pod_userns::PodUsernsSlot;
use crate::policy::Policy;
use crate::process::{PidFd, ProcessError};
use crate::spec::SpecError;
use crate::stdio::{Draining, Linger, Stdio, StdioError, StdioPaths};
use crate::stuck::Trace;
use crate::wire::WireError;

/// Errors of the container lifecycle.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Sysctl(#[from] crate::sysctl::SysctlError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Stdio(#[from] StdioError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Console(#[from] ConsoleError),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Resource(#[from] ResourceError),
    #[error(transparent)]
    Freezer(#[from] FreezerError),
    #[error(transparent)]
    Oom(#[from] OomError),
    #[error(transparent)]
    Hook(#[from] HookError),
    /// Host access that `[sandbox] host_access` refuses.
    #[error(transparent)]
    HostAccess(#[from] crate::host_access::HostAccessError),
    /// The pod's user namespace: its range, its making, ids outside it.
    #[error(transparent)]
    PodUserns(#[from] crate::pod_userns::PodUsernsError),
    /// Compiling `linux.seccomp` (the shim compiles it for the helper).
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// The zygote took a helper's request and did not answer (see [`crate::zygote`]).
    #[error(transparent)]
    Zygote(#[from] crate::zygote::ZygoteError),
    #[error("start init helper {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        source: crate::spawn::SpawnError,
    },
    /// Setup failed; the text comes from the init process.
    #[error("{0}")]
    Init(String),
    #[error("the process exited before it was ready")]
    InitVanished,
    /// The setup helper, or the container process it forked, died before the process was
    /// ready (killed, crashed) and said nothing: the channel broke. `how` is filled in by
    /// whoever reaps it (the shim): how it ended, or empty.
    #[error("the container's setup {role} (pid {pid}) died before the container was ready{how}")]
    SetupDied {
        role: &'static str,
        pid: i32,
        how: String,
    },
    #[error("process is not in the created state")]
    NotCreated,
    #[error("{0}")]
    Invalid(String),
}

/// How to launch processes: the helper binary, limits and the sandbox policy.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The helper binary (the shim's own), sealed read-only: see [`crate::exe`].
    pub init_exe: Arc<HelperExe>,
    /// How long setup may take before it is given up.
    pub setup_timeout: Duration,
    /// containerd namespace (for logging binaries).
    pub namespace: String,
    /// The shim's sandboxing policy (runtime.toml `[sandbox]`), applied at Create.
    pub policy: Policy,
    /// The pod's user namespace under `user_namespace = "pod"`, made with the pod's
    /// first container (the shim serves one pod, so one slot per shim).
    pub userns: Arc<PodUsernsSlot>,
    /// The shim's fork server for helpers, once started (see [`crate::zygote`]).
    pub zygote: Arc<crate::zygote::ZygoteSlot>,
}

/// What Create needs.
#[derive(Debug, Clone)]
pub struct CreateOpts {
    pub id: String,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// containerd's snapshot mounts; empty means the bundle's rootfs is ready.
    pub rootfs: Vec<MountSpec>,
    pub stdio: StdioPaths,
    pub launcher: Launcher,
    /// This is the pod holder ([`crate::holder`]), not a container of an image.
    pub holder: bool,
    /// Mounts every container of the pod gets unless its spec mounts the destination
    /// itself (the pod's hostname, hosts, resolv.conf and /dev/shm when the shim is the
    /// pod's sandbox).
    pub pod_mounts: Vec<oci_spec::runtime::Mount>,
    /// The task was created with a terminal (containerd's `CreateTaskRequest.terminal`);
    /// it must agree with the spec's `process.terminal`.
    pub terminal: bool,
}

/// What an exec needs.
#[derive(Debug, Clone)]
pub struct ExecOpts {
    pub exec_id: String,
    pub process: ProcessSpec,
    pub stdio: StdioPaths,
    pub launcher: Launcher,
}

/// A process of a container (its init or an exec), after setup.
#[derive(Debug)]
pub struct Process {
    pid: PidFd,
    /// The init channel (with what diagnoses a stuck start), until the process has exec'd.
    chan: Option<(UnixStream, Trace, String)>,
    stdio: Stdio,
    /// The pty master, for a process on a terminal.
    console: Option<OwnedFd>,
}

impl Process {
    /// Host pid.
    pub fn pid(&self) -> i32 {
        self.pid.pid()
    }

    /// Signals the process (pidfd: never a reused pid).
    pub fn signal(&self, sig: i32) -> Result<(), ContainerError> {
        Ok(self.pid.signal(sig)?)
    }

    /// The stdin FIFO and the process's stdin pipe, for copying (once; see
    /// [`Stdio::take_stdin_copy`]).
    pub fn take_stdin_copy(&mut self) -> Option<(std::fs::File, std::fs::File)> {
        self.stdio.take_stdin_copy()
    }

    /// The pty master and the shim's FIFO ends, for copying (terminal mode; once).
    pub fn take_terminal(
        &mut self,
    ) -> Option<(OwnedFd, Option<std::fs::File>, Option<std::fs::File>)> {
        let master = self.console.take()?;
        let (stdin, stdout) = self.stdio.take_terminal_ends();
        Some((master, stdin, stdout))
    }

    /// The process exited: readers of its output may now see EOF. Output FIFOs that no
    /// reader has opened yet come back, to be kept until one does (see [`Linger`]).
    #[must_use]
    pub fn on_exit(&mut self) -> Option<Linger> {
        self.chan = None;
        drop(self.stdio.release());
        self.stdio.take_linger()
    }

    /// The process was reaped: its output FIFOs are let go ([`Stdio::release`]); those
    /// whose reader has not read everything yet come back, for the exit to wait on.
    #[must_use]
    pub fn release_output(&mut self) -> Option<Draining> {
        self.stdio.release()
    }
}

/// A created or running container.
#[derive(Debug)]
pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub spec: Spec,
    /// The container's init process.
    pub init: Process,
    cgroup: Cgroup,
    /// Set when we mounted the rootfs ourselves (and must unmount it).
    mounted_rootfs: Option<PathBuf>,
    /// Whether the poststop hooks have run (destroy may be called more than once).
    poststop_done: bool,
    /// Whether it runs in the pod's user namespace (its execs' ids must map there).
    pod_userns: bool,
    /// The init's start time, read at Create ([`crate::process::start_time`]).
    start_time: Option<u64>,
}

/// A running container's identity, enough to exec into it.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    id: String,
    spec: Spec,
    cgroup: Cgroup,
    pid: i32,
    start_time: Option<u64>,
    pod_userns: bool,
}

/// The cgroup path a spec asks for, or mypod's default.
pub(crate) fn cgroups_path(spec: &Spec, id: &str) -> String {
    spec.linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| format!("/mypod/{id}"))
}

/// The container's root filesystem path.
pub(crate) fn rootfs_path(spec: &Spec, bundle: &Path) -> PathBuf {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    bundle.join(root)
}

/// Whether the spec's root is `<bundle>/rootfs`, where containerd's rootfs mounts go: the
/// only place mypod mounts (and, after a dead shim, unmounts) a snapshot.
pub(crate) fn root_is_bundle_rootfs(spec: &Spec, bundle: &Path) -> bool {
    rootfs_path(spec, bundle)
        .components()
        .eq(bundle.join("rootfs").components())
}

/// Whether the process spec asks for a terminal.
fn wants_terminal(p: Option<&ProcessSpec>) -> bool {
    p.and_then(|p| p.terminal()).unwrap_or(false)
}

impl Container {
    /// Host pid of the container's init process.
    pub fn pid(&self) -> i32 {
        self.init.pid()
    }

    /// The container's state for its hooks (no pid once stopped).
    fn state(&self, status: &'static str) -> hooks::State {
        let pid = if status == "stopped" { 0 } else { self.pid() };
        hooks::State::new(&self.spec, &self.id, &self.bundle, status, pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_root(path: &str) -> Spec {
        serde_json::from_str(&format!(
            r#"{{"ociVersion":"1.0.2","root":{{"path":"{path}"}},
                "process":{{"args":["sh"],"cwd":"/","user":{{"uid":0,"gid":0}}}}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_snapshot_goes_only_to_the_bundles_rootfs() {
        let b = Path::new("/run/b/c1");
        for ok in ["rootfs", "./rootfs", "rootfs/", "/run/b/c1/rootfs"] {
            assert!(root_is_bundle_rootfs(&with_root(ok), b), "{ok}");
        }
        for bad in ["/run", "../../../../run", "rootfs/..", "pod", "/run/b/c1"] {
            assert!(!root_is_bundle_rootfs(&with_root(bad), b), "{bad}");
        }
    }
}
