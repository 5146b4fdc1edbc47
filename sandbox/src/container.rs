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

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oci_spec::runtime::{Process as ProcessSpec, Spec};

use crate::cgroup::{Cgroup, CgroupError, Layout};
use crate::console::{self, ConsoleError};
use crate::exe::HelperExe;
use crate::freezer::{self, FreezerError};
use crate::hooks::{self, HookError};
use crate::mount::{self, MountError, MountSpec};
use crate::oom::{OomError, OomWatcher};
use crate::process::{PidFd, ProcessError};
use crate::resources::{self, ResourceError};
use crate::spawn;
use crate::spec::{self, SpecError};
use crate::stats::{self, Stats};
use crate::stdio::{Linger, LogContext, Stdio, StdioError, StdioPaths};
use crate::stuck::Trace;
use crate::wire::{self, InitMsg, InitRequest, WireError};

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
    #[error("process is not in the created state")]
    NotCreated,
    #[error("{0}")]
    Invalid(String),
}

/// How to launch processes: the helper binary and limits.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The helper binary (the shim's own), sealed read-only: see [`crate::exe`].
    pub init_exe: Arc<HelperExe>,
    /// How long setup may take before it is given up.
    pub setup_timeout: Duration,
    /// containerd namespace (for logging binaries).
    pub namespace: String,
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
}

/// Resources taken during create, released if create fails half way.
#[derive(Default)]
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

/// Warns about the parts of linux.resources this host cannot apply (for example a
/// controller that has no hierarchy here), so that nothing is dropped silently.
fn warn_unapplied_resources(id: &str, cg: &Cgroup, spec: &Spec) {
    let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) else {
        return;
    };
    let kinds = resources::unapplied(cg, r);
    if !kinds.is_empty() {
        log::warn!(
            "container {id}: linux.resources not applied: {}",
            kinds.join(", ")
        );
    }
}

fn wants_terminal(p: Option<&ProcessSpec>) -> bool {
    p.and_then(|p| p.terminal()).unwrap_or(false)
}

impl Container {
    /// Creates the container; blocks until it is ready to start or has failed.
    pub fn create(opts: CreateOpts, layout: &Layout) -> Result<Container, ContainerError> {
        let (spec, idmaps) = spec::load_with_idmaps(&opts.bundle)?;
        spec::validate(&spec)?;
        crate::sysctl::validate(&spec, crate::sysctl::is_own_namespace)?;
        let mut partial = Partial::default();
        match Self::create_inner(opts, layout, spec, &idmaps, &mut partial) {
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
        idmaps: &[crate::idmap::MountIdmap],
        partial: &mut Partial,
    ) -> Result<Container, ContainerError> {
        let rootfs = rootfs_path(&spec, &opts.bundle);
        let cgroup = Cgroup::new(layout, &cgroups_path(&spec, &opts.id))?;
        partial.cgroup = Some(cgroup.clone());
        cgroup.create()?;
        let terminal = wants_terminal(spec.process().as_ref());
        let ctx = LogContext {
            id: opts.id.clone(),
            namespace: opts.launcher.namespace.clone(),
        };
        let trees = if idmaps.is_empty() {
            Vec::new()
        } else {
            let mounts = spec.mounts().clone().unwrap_or_default();
            let base = rootfs.parent().unwrap_or(Path::new("/")).to_path_buf();
            let source = |i: usize| {
                let s = mounts.get(i)?.source().clone()?;
                Some(if s.is_absolute() { s } else { base.join(s) })
            };
            crate::idmap::prepare(idmaps, source, opts.launcher.init_exe.path())
                .map_err(SpecError::from)?
        };
        let join = cgroup.join();
        // The helper starts now, in its cgroup2 directory; it joins the v1 hierarchies
        // and builds the container once the request below comes, after the rootfs is
        // mounted and the cgroup limits are set.
        let helper = Launching::spawn(
            &opts.launcher,
            &opts.stdio,
            &ctx,
            Extras {
                terminal,
                trees,
                cgroup2: join.v2_dir,
            },
        )?;
        if !opts.rootfs.is_empty() {
            partial.mounted_rootfs = Some(rootfs.clone());
            mount::mount_rootfs(&opts.rootfs, &rootfs)?;
        }
        let devices = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        cgroup.apply_devices(&devices)?;
        if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            resources::apply(&cgroup, r)?;
        }
        warn_unapplied_resources(&opts.id, &cgroup, &spec);
        let req = InitRequest {
            id: opts.id.clone(),
            bundle: opts.bundle.clone(),
            spec,
            rootfs,
            cgroup_tasks: join.tasks,
            cgroup_procs: Vec::new(),
            cgroup_binds: cgroup.binds(),
            cgroup_v2: cgroup.v2,
            join_pid: None,
            console_fd: None,
            idmapped: Vec::new(),
        };
        let init = helper.finish(req, &mut partial.pid)?;
        partial.pid = None;
        partial.cgroup = None;
        let mounted_rootfs = partial.mounted_rootfs.take();
        Ok(Container {
            id: opts.id,
            bundle: opts.bundle,
            spec: init.1,
            init: init.0,
            cgroup,
            mounted_rootfs,
            poststop_done: false,
        })
    }

    /// Host pid of the container's init process.
    pub fn pid(&self) -> i32 {
        self.init.pid()
    }

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

    fn state(&self, status: &'static str) -> hooks::State {
        let pid = if status == "stopped" { 0 } else { self.pid() };
        hooks::State::new(&self.spec, &self.id, &self.bundle, status, pid)
    }

    /// What an exec needs of this container, detached from it.
    pub fn exec_target(&self) -> ExecTarget {
        ExecTarget {
            id: self.id.clone(),
            spec: self.spec.clone(),
            cgroup: self.cgroup.clone(),
            pid: self.pid(),
        }
    }

    /// Whether the container has a pid namespace of its own (a new one, not joined by
    /// path). Without one, its processes outlive its init unless they are killed, so the
    /// caller kills them when the init exits (as containerd's runc shim does).
    pub fn owns_pid_namespace(&self) -> bool {
        spec::namespaces(&self.spec)
            .iter()
            .any(|(t, path)| *t == oci_spec::runtime::LinuxNamespaceType::Pid && path.is_none())
    }

    /// Signals every process in the container.
    pub fn signal_all(&self, sig: i32) -> Result<(), ContainerError> {
        self.cgroup.signal_all(sig)?;
        Ok(())
    }

    /// Pids of every process in the container.
    pub fn pids(&self) -> Result<Vec<i32>, ContainerError> {
        Ok(self.cgroup.pids()?)
    }

    /// The container's cgroup (for updates, freezing and statistics off the caller's lock).
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// Applies new resource limits to the running container's cgroup (blocking; fields
    /// absent from `r` are left as they are). Device rules are applied too.
    pub fn update(
        cg: &Cgroup,
        r: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), ContainerError> {
        resources::validate(r, cg.v2)?;
        if let Some(d) = r.devices().as_ref().filter(|d| !d.is_empty()) {
            cg.apply_devices(d)?;
        }
        resources::apply(cg, r)?;
        Ok(())
    }

    /// Freezes (pause) or thaws (resume) every process of the container (blocking until
    /// the kernel reports it done).
    pub fn set_paused(cg: &Cgroup, paused: bool) -> Result<(), ContainerError> {
        Ok(freezer::set_frozen(cg, paused)?)
    }

    /// The cgroup's statistics (blocking file reads).
    pub fn stats(cg: &Cgroup) -> Stats {
        stats::read(cg)
    }

    /// A pollable OOM watch on the container's cgroup (`None` without a memory controller).
    pub fn oom_watcher(&self) -> Result<Option<OomWatcher>, ContainerError> {
        Ok(OomWatcher::new(&self.cgroup)?)
    }

    /// Kills what is left, unmounts the rootfs we mounted and removes the cgroup.
    /// Blocking; safe to call more than once.
    pub fn destroy(&mut self) -> Result<(), ContainerError> {
        let _ = self.init.signal(libc::SIGKILL);
        // Being destroyed: nobody is left to read what did not linger.
        drop(self.init.on_exit());
        // Frozen processes cannot die: thaw a paused container first.
        if freezer::is_frozen(&self.cgroup) {
            let _ = self.cgroup.signal_all(libc::SIGKILL);
            if let Err(e) = freezer::set_frozen(&self.cgroup, false) {
                log::warn!("thaw {} before destroying it: {e}", self.id);
            }
        }
        self.cgroup.kill_all()?;
        self.cgroup.remove()?;
        if let Some(r) = self.mounted_rootfs.take() {
            mount::unmount_all(&r)?;
        }
        if !self.poststop_done {
            self.poststop_done = true;
            // The container is gone whatever a poststop hook says: the runtime spec
            // asks for a warning and the next hook, not a failed delete.
            let state = self.state("stopped");
            for e in hooks::run_each(self.spec.hooks().as_ref(), hooks::Kind::Poststop, &state) {
                log::warn!("{}: {e}", self.id);
            }
        }
        Ok(())
    }
}

/// A running container's identity, enough to exec into it.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    id: String,
    spec: Spec,
    cgroup: Cgroup,
    pid: i32,
}

impl ExecTarget {
    /// Sets up an exec'd process in the container (blocking); start it with
    /// [`Process::begin_start`].
    pub fn exec(&self, opts: ExecOpts) -> Result<Process, ContainerError> {
        let terminal = wants_terminal(Some(&opts.process));
        if opts.process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(ContainerError::Invalid(format!(
                "exec {}: process.args is empty",
                opts.exec_id
            )));
        }
        // The exec's process is checked as Create checks the container's: a field mypod
        // cannot honour (an AppArmor profile, a bad scheduler) is refused, never ignored.
        // The rest of the spec was checked at Create.
        spec::validate_process(&opts.process)?;
        let mut spec = self.spec.clone();
        spec.set_process(Some(opts.process));
        let ctx = LogContext {
            id: self.id.clone(),
            namespace: opts.launcher.namespace.clone(),
        };
        let join = self.cgroup.join();
        let req = InitRequest {
            id: format!("{}/{}", self.id, opts.exec_id),
            bundle: PathBuf::new(),
            spec,
            rootfs: PathBuf::from("/"),
            cgroup_tasks: join.tasks,
            cgroup_procs: Vec::new(),
            cgroup_binds: Vec::new(),
            cgroup_v2: self.cgroup.v2,
            join_pid: Some(self.pid),
            console_fd: None,
            idmapped: Vec::new(),
        };
        let mut pid = None;
        match launch(
            &opts.launcher,
            req,
            &opts.stdio,
            &ctx,
            Extras {
                terminal,
                trees: Vec::new(),
                cgroup2: join.v2_dir,
            },
            &mut pid,
        ) {
            Ok((p, _)) => Ok(p),
            Err(e) => {
                if let Some(pid) = pid {
                    // SAFETY: kill(2) on our unreaped descendant (see Partial::undo).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                Err(e)
            }
        }
    }
}

/// What a launch needs besides the request.
struct Extras {
    /// The process wants a terminal.
    terminal: bool,
    /// Detached idmapped mounts: (index in the spec's mounts, mount fd).
    trees: Vec<(usize, OwnedFd)>,
    /// The cgroup2 directory the helper is started in.
    cgroup2: Option<PathBuf>,
}

/// Spawns the helper for `req` and waits until the process is ready. `pid_out` holds
/// the process's pid as soon as it is known, for cleanup on failure.
fn launch(
    launcher: &Launcher,
    req: InitRequest,
    paths: &StdioPaths,
    ctx: &LogContext,
    extras: Extras,
    pid_out: &mut Option<i32>,
) -> Result<(Process, Spec), ContainerError> {
    Launching::spawn(launcher, paths, ctx, extras)?.finish(req, pid_out)
}

/// A helper started ahead of its request, so that its exec overlaps the shim's own
/// preparations (rootfs mount, cgroup settings). Dropped unfinished, the helper reads
/// EOF and exits.
struct Launching {
    stdio: Stdio,
    /// Our end of the console socket, when the process wants a terminal.
    console: Option<UnixStream>,
    chan: UnixStream,
    trace: Trace,
    /// (index in the spec's mounts, helper fd) of the idmapped mounts passed.
    idmapped: Vec<(usize, i32)>,
    /// The cgroup2 directory the helper could not be born in: it joins it itself.
    join_procs: Option<PathBuf>,
    timeout: Option<Duration>,
}

impl Launching {
    /// Opens the process's stdio and starts the helper.
    fn spawn(
        launcher: &Launcher,
        paths: &StdioPaths,
        ctx: &LogContext,
        extras: Extras,
    ) -> Result<Launching, ContainerError> {
        let Extras {
            terminal,
            trees,
            cgroup2,
        } = extras;
        let mut stdio = if terminal {
            Stdio::open_terminal(paths)?
        } else {
            Stdio::open(paths, ctx)?
        };
        let child_stdio = stdio.take_child().ok_or(ContainerError::NotCreated)?;
        let console = if terminal {
            Some(UnixStream::pair().map_err(WireError::Io)?)
        } else {
            None
        };
        // The detached idmapped mounts go to the helper as fds 5, 6, ...
        let idmapped = trees
            .iter()
            .enumerate()
            .map(|(n, (index, _))| (*index, FIRST_TREE_FD + n as i32))
            .collect();
        let tree_fds: Vec<i32> = trees.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        let (chan, trace, in_cgroup) = spawn_init(
            &launcher.init_exe,
            child_stdio,
            console.as_ref().map(|(_, t)| t.as_raw_fd()),
            &tree_fds,
            cgroup2.as_deref(),
        )?;
        let timeout = Some(launcher.setup_timeout).filter(|d| !d.is_zero());
        chan.set_read_timeout(timeout).map_err(WireError::Io)?;
        Ok(Launching {
            stdio,
            console: console.map(|(ours, _theirs)| ours),
            chan,
            trace,
            idmapped,
            join_procs: cgroup2.filter(|_| !in_cgroup),
            timeout,
        })
    }

    /// Sends `req` and waits until the process is ready (see [`launch`]).
    fn finish(
        self,
        mut req: InitRequest,
        pid_out: &mut Option<i32>,
    ) -> Result<(Process, Spec), ContainerError> {
        let Launching {
            stdio,
            console,
            mut chan,
            mut trace,
            idmapped,
            join_procs,
            timeout,
        } = self;
        if console.is_some() {
            req.console_fd = Some(4);
        }
        req.idmapped = idmapped;
        if let Some(dir) = join_procs {
            req.cgroup_procs.push(dir.join("cgroup.procs"));
        }
        wire::send(&mut chan, &req)?;
        let mut create_hooks = |pid: i32| -> Result<(), ContainerError> {
            let state = hooks::State::new(&req.spec, &req.id, &req.bundle, "creating", pid);
            let h = req.spec.hooks().as_ref();
            hooks::run(h, hooks::Kind::Prestart, &state)?;
            hooks::run(h, hooks::Kind::CreateRuntime, &state)?;
            Ok(())
        };
        let pid = await_ready(&mut chan, &mut trace, &req.id, pid_out, &mut create_hooks)?;
        // The process is blocked waiting for the start byte and is our (reparented) child,
        // so its pid cannot have been reused.
        let pidfd = PidFd::open(pid)?;
        let master = match console {
            Some(sock) => {
                sock.set_read_timeout(timeout).map_err(WireError::Io)?;
                Some(console::recv_fd(sock.as_raw_fd())?)
            }
            None => None,
        };
        Ok((
            Process {
                pid: pidfd,
                chan: Some((chan, trace, req.id.clone())),
                stdio,
                console: master,
            },
            req.spec,
        ))
    }
}

/// Waits for the process's pid and its Ready; returns the pid. The helper reports the
/// pid after fork while the process, running concurrently, reports Ready: the two may
/// come in either order (an exec has little to set up, so its Ready often wins when the
/// helper is descheduled right after fork).
///
/// The process may also ask for the create hooks (`Hooks`), which need its host pid:
/// they run once both have come, and the process continues on [`wire::HOOKS_DONE`].
fn await_ready(
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
fn recv(chan: &mut impl Read, trace: &Trace, id: &str) -> Result<Option<InitMsg>, WireError> {
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

/// Cleans up after a container whose shim died: kill, unmount, remove the cgroup.
pub fn cleanup_dead(bundle: &Path, id: &str, layout: &Layout) -> Result<(), ContainerError> {
    let spec = spec::load(bundle)?;
    let cg = Cgroup::new(layout, &cgroups_path(&spec, id))?;
    if freezer::is_frozen(&cg) {
        let _ = cg.signal_all(libc::SIGKILL);
        let _ = freezer::set_frozen(&cg, false);
    }
    cg.kill_all()?;
    mount::unmount_all(&rootfs_path(&spec, bundle))?;
    cg.remove()?;
    Ok(())
}

/// The helper's fd of the first detached idmapped mount.
const FIRST_TREE_FD: i32 = 5;
/// At most this many idmapped mounts per container.
const MAX_TREES: usize = 32;

/// Starts `<exe> init` with the channel on fd 3, the console socket (if any) on fd 4,
/// the detached idmapped mounts `trees` on 5, 6, ... and the process's stdio on 0-2,
/// in the cgroup2 directory `cgroup2` if given. Returns the shim's end of the channel,
/// the trace of the launch, and whether the helper was born in `cgroup2`.
fn spawn_init(
    exe: &HelperExe,
    stdio: [OwnedFd; 3],
    console: Option<i32>,
    trees: &[i32],
    cgroup2: Option<&Path>,
) -> Result<(UnixStream, Trace, bool), ContainerError> {
    if trees.len() > MAX_TREES {
        return Err(ContainerError::Invalid(format!(
            "{} idmapped mounts: at most {MAX_TREES} are supported",
            trees.len()
        )));
    }
    let (ours, theirs) = UnixStream::pair().map_err(WireError::Io)?;
    let mut fds: Vec<(i32, i32)> = stdio
        .iter()
        .enumerate()
        .map(|(n, fd)| (fd.as_raw_fd(), n as i32))
        .collect();
    fds.push((theirs.as_raw_fd(), crate::init::CHANNEL_FD));
    if let Some(console) = console {
        fds.push((console, 4));
    }
    fds.extend(
        trees
            .iter()
            .enumerate()
            .map(|(i, fd)| (*fd, FIRST_TREE_FD + i as i32)),
    );
    let child = spawn::spawn(&spawn::Spawn {
        exe: exe.path(),
        exe_fd: Some(exe.fd()),
        args: &["init"],
        fds: &fds,
        cgroup: cgroup2,
    })
    .map_err(|source| ContainerError::Spawn {
        exe: exe.path().to_path_buf(),
        source,
    })?;
    let trace = Trace {
        helper: child.pid,
        process: None,
        chan_ino: Trace::inode_of(&theirs),
    };
    // Our copies of the helper's ends must close, or we would never see EOF.
    drop(stdio);
    drop(theirs);
    Ok((ours, trace, child.in_cgroup))
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
