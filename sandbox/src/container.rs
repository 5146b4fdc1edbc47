//! A container: created from a bundle by an exec'd init helper, started by a byte on
//! the init channel, cleaned up (processes, rootfs, cgroup) on delete.
//!
//! Create: the caller's process (multi-threaded) only spawns `<exe> init` with the
//! channel on fd 3 and the process's stdio on 0-2. The helper — single-threaded and
//! freshly exec'd — joins the cgroup and namespaces, forks the container process, reports
//! its pid and exits; the container process builds its root, drops privileges, reports
//! `Ready` and blocks until the start byte, then execs. A successful exec closes the
//! channel (close-on-exec), which is how the caller learns it started.
//!
//! The caller must reap children (the helper exits right after reporting the pid), and
//! should be a child subreaper so the container process is reparented to it.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use oci_spec::runtime::Spec;

use crate::cgroup::{Cgroup, CgroupError, Layout};
use crate::mount::{self, MountError, MountSpec};
use crate::process::{PidFd, ProcessError};
use crate::spec::{self, SpecError};
use crate::stdio::{Stdio, StdioError, StdioPaths};
use crate::wire::{self, InitMsg, InitRequest, WireError};

/// Errors of the container lifecycle.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Stdio(#[from] StdioError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("start init helper {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        source: std::io::Error,
    },
    /// Setup inside the container failed; the text comes from the init process.
    #[error("{0}")]
    Init(String),
    #[error("container init exited before it was ready")]
    InitVanished,
    #[error("container is not in the created state")]
    NotCreated,
}

/// What Create needs.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub id: String,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// containerd's snapshot mounts; empty means the bundle's rootfs is ready.
    pub rootfs: Vec<MountSpec>,
    pub stdio: StdioPaths,
    /// The helper binary (normally /proc/self/exe of the shim).
    pub init_exe: PathBuf,
    /// How long setup may take before Create gives up.
    pub setup_timeout: Duration,
}

/// A created or running container.
#[derive(Debug)]
pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub spec: Spec,
    pid: PidFd,
    cgroup: Cgroup,
    /// Set when we mounted the rootfs ourselves (and must unmount it).
    mounted_rootfs: Option<PathBuf>,
    /// The init channel, until the process has exec'd.
    chan: Option<UnixStream>,
    stdio: Stdio,
}

/// Resources taken during create, released if create fails half way.
struct Partial {
    mounted_rootfs: Option<PathBuf>,
    cgroup: Option<Cgroup>,
    pid: Option<i32>,
}

impl Partial {
    fn undo(&mut self) {
        if let Some(pid) = self.pid.take() {
            // SAFETY: kill(2) on the pid the helper reported; it is our (not yet
            // reaped) descendant, so the pid cannot have been reused.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill_all();
            if let Err(e) = cg.remove() {
                log::warn!("cleanup after failed create: {e}");
            }
        }
        if let Some(r) = self.mounted_rootfs.take() {
            if let Err(e) = mount::unmount_all(&r) {
                log::warn!("cleanup after failed create: {e}");
            }
        }
    }
}

/// The cgroup path a spec asks for, or mypod's default.
pub fn cgroups_path(spec: &Spec, id: &str) -> String {
    spec.linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| format!("/mypod/{id}"))
}

/// The container's root filesystem path.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> PathBuf {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| PathBuf::from("rootfs"));
    bundle.join(root)
}

impl Container {
    /// Creates the container; blocks until it is ready to start or has failed.
    pub fn create(opts: CreateOpts, layout: &Layout) -> Result<Container, ContainerError> {
        let spec = spec::load(&opts.bundle)?;
        spec::validate(&spec)?;
        let mut partial = Partial {
            mounted_rootfs: None,
            cgroup: None,
            pid: None,
        };
        match Self::create_inner(opts, layout, spec, &mut partial) {
            Ok(c) => Ok(c),
            Err(e) => {
                partial.undo();
                Err(e)
            }
        }
    }

    fn create_inner(
        opts: CreateOpts,
        layout: &Layout,
        spec: Spec,
        partial: &mut Partial,
    ) -> Result<Container, ContainerError> {
        let rootfs = rootfs_path(&spec, &opts.bundle);
        if !opts.rootfs.is_empty() {
            partial.mounted_rootfs = Some(rootfs.clone());
            mount::mount_rootfs(&opts.rootfs, &rootfs)?;
        }
        let cgroup = Cgroup::new(layout, &cgroups_path(&spec, &opts.id))?;
        partial.cgroup = Some(cgroup.clone());
        cgroup.create()?;
        let devices = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        cgroup.apply_devices(&devices)?;
        let mut stdio = Stdio::open(&opts.stdio)?;
        let child_stdio = stdio.take_child().ok_or(ContainerError::NotCreated)?;

        let req = InitRequest {
            id: opts.id.clone(),
            spec,
            rootfs,
            cgroup_procs: cgroup.procs_files(),
            cgroup_binds: cgroup.binds(),
            cgroup_v2: cgroup.v2,
            exec: false,
        };
        let mut chan = spawn_init(&opts.init_exe, child_stdio)?;
        chan.set_read_timeout(Some(opts.setup_timeout).filter(|d| !d.is_zero()))
            .map_err(WireError::Io)?;
        wire::send(&mut chan, &req)?;
        let pid = loop {
            match wire::recv::<InitMsg>(&mut chan)? {
                Some(InitMsg::Pid(pid)) => {
                    partial.pid = Some(pid);
                    break pid;
                }
                Some(InitMsg::Error(e)) => return Err(ContainerError::Init(e)),
                Some(_) => continue,
                None => return Err(ContainerError::InitVanished),
            }
        };
        let pidfd = PidFd::open(pid)?;
        loop {
            match wire::recv::<InitMsg>(&mut chan)? {
                Some(InitMsg::Ready) => break,
                Some(InitMsg::Error(e)) => return Err(ContainerError::Init(e)),
                Some(_) => continue,
                None => return Err(ContainerError::InitVanished),
            }
        }
        partial.pid = None;
        partial.cgroup = None;
        let mounted_rootfs = partial.mounted_rootfs.take();
        Ok(Container {
            id: opts.id,
            bundle: opts.bundle,
            spec: req.spec,
            pid: pidfd,
            cgroup,
            mounted_rootfs,
            chan: Some(chan),
            stdio,
        })
    }

    /// Host pid of the container's init process.
    pub fn pid(&self) -> i32 {
        self.pid.pid()
    }

    /// Lets the process exec; returns once it has (or failed to).
    pub fn start(&mut self) -> Result<(), ContainerError> {
        self.begin_start()?.run()
    }

    /// Takes what starting needs, so the blocking part can run without the container.
    pub fn begin_start(&mut self) -> Result<Starter, ContainerError> {
        self.chan
            .take()
            .map(|chan| Starter { chan })
            .ok_or(ContainerError::NotCreated)
    }

    /// Whether the process is still waiting for start.
    pub fn is_created(&self) -> bool {
        self.chan.is_some()
    }

    /// Signals the init process, or with `all` every process in the container.
    pub fn signal(&self, sig: i32, all: bool) -> Result<(), ContainerError> {
        if all {
            self.cgroup.signal_all(sig)?;
            return Ok(());
        }
        Ok(self.pid.signal(sig)?)
    }

    /// Pids of every process in the container.
    pub fn pids(&self) -> Result<Vec<i32>, ContainerError> {
        Ok(self.cgroup.pids()?)
    }

    /// CloseIO: let the process read EOF on stdin.
    pub fn close_stdin(&mut self) {
        self.stdin_mut().close_stdin();
    }

    fn stdin_mut(&mut self) -> &mut Stdio {
        &mut self.stdio
    }

    /// The init process exited: readers of stdout/stderr may now see EOF.
    pub fn on_exit(&mut self) {
        self.chan = None;
        self.stdio.release();
    }

    /// Kills what is left, unmounts the rootfs we mounted and removes the cgroup.
    /// Blocking; safe to call more than once.
    pub fn destroy(&mut self) -> Result<(), ContainerError> {
        self.chan = None;
        let _ = self.pid.signal(libc::SIGKILL);
        self.cgroup.kill_all()?;
        self.stdio.release();
        self.cgroup.remove()?;
        if let Some(r) = self.mounted_rootfs.take() {
            mount::unmount_all(&r)?;
        }
        Ok(())
    }
}

/// The start step of a created container, detached from it (see [`Container::begin_start`]).
#[derive(Debug)]
pub struct Starter {
    chan: UnixStream,
}

impl Starter {
    /// Sends the start byte and waits until the process has exec'd (the channel closes)
    /// or reported why it could not.
    pub fn run(mut self) -> Result<(), ContainerError> {
        self.chan.write_all(&[wire::START]).map_err(WireError::Io)?;
        match wire::recv::<InitMsg>(&mut self.chan)? {
            None => Ok(()),
            Some(InitMsg::Error(e)) => Err(ContainerError::Init(e)),
            Some(other) => Err(ContainerError::Init(format!(
                "unexpected message from container init: {other:?}"
            ))),
        }
    }
}

/// Cleans up after a container whose shim died: kill, unmount, remove the cgroup.
pub fn cleanup_dead(bundle: &Path, id: &str, layout: &Layout) -> Result<(), ContainerError> {
    let spec = spec::load(bundle)?;
    let cg = Cgroup::new(layout, &cgroups_path(&spec, id))?;
    cg.kill_all()?;
    mount::unmount_all(&rootfs_path(&spec, bundle))?;
    cg.remove()?;
    Ok(())
}

/// Starts `<exe> init` with the channel on fd 3 and the process's stdio on 0-2.
pub(crate) fn spawn_init(exe: &Path, stdio: [OwnedFd; 3]) -> Result<UnixStream, ContainerError> {
    let (ours, theirs) = UnixStream::pair().map_err(WireError::Io)?;
    let [stdin, stdout, stderr] = stdio;
    let mut cmd = Command::new(exe);
    cmd.arg("init")
        .env_clear()
        .current_dir("/")
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr);
    let fd = theirs.as_raw_fd();
    // SAFETY: the closure runs between fork and exec and calls only dup2 and fcntl,
    // which are async-signal-safe; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                let fl = libc::fcntl(3, libc::F_GETFD);
                if fl < 0 || libc::fcntl(3, libc::F_SETFD, fl & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| ContainerError::Spawn {
        exe: exe.to_path_buf(),
        source,
    })?;
    // Our copy of the helper's end must close, or we would never see EOF.
    drop(cmd);
    drop(theirs);
    Ok(ours)
}
