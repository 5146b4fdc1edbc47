//! Launch: opens the process's stdio, starts `<exe> init` with its fds in place (in the
//! container's cgroup2 directory when it can be born there), then sends the request and
//! waits for the process to be ready, running the create hooks when it asks (see
//! [`super::channel`]).

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::Spec;

use super::channel::await_ready;
use super::{ContainerError, Launcher, Process};
use crate::console;
use crate::exe::HelperExe;
use crate::hooks;
use crate::process::PidFd;
use crate::spawn;
use crate::stdio::{LogContext, Stdio, StdioPaths};
use crate::stuck::Trace;
use crate::wire::{self, InitRequest, WireError};

/// What a launch needs besides the request.
pub(super) struct Extras {
    /// The process wants a terminal.
    pub(super) terminal: bool,
    /// Detached idmapped mounts: (index in the spec's mounts, mount fd).
    pub(super) trees: Vec<(usize, OwnedFd)>,
    /// The pod's user namespace, for the helper to join.
    pub(super) userns: Option<OwnedFd>,
    /// The cgroup2 directory the helper is started in.
    pub(super) cgroup2: Option<PathBuf>,
}

/// Spawns the helper for `req` and waits until the process is ready. `pid_out` holds
/// the process's pid as soon as it is known, for cleanup on failure.
pub(super) fn launch(
    launcher: &Launcher,
    req: InitRequest,
    paths: &StdioPaths,
    ctx: &LogContext,
    extras: Extras,
    pid_out: &mut Option<i32>,
) -> Result<(Process, Spec), ContainerError> {
    let mut helper = Launching::spawn(launcher, paths, ctx, extras)?;
    helper.send(req, false, pid_out)?;
    helper.finish(None, pid_out)
}

/// A helper started ahead of the shim's own preparations (rootfs mount, cgroup settings):
/// it gets its request at once ([`Launching::send`]) and goes past the namespaces it joins
/// at the go ([`Launching::finish`]). Dropped unfinished, the helper reads EOF and exits.
pub(super) struct Launching {
    stdio: Stdio,
    /// Our end of the console socket, when the process wants a terminal.
    console: Option<UnixStream>,
    chan: UnixStream,
    trace: Trace,
    /// (index in the spec's mounts, helper fd) of the idmapped mounts passed.
    idmapped: Vec<(usize, i32)>,
    /// The helper's fd of the pod's user namespace.
    userns_fd: Option<i32>,
    /// The cgroup2 directory the helper could not be born in: it joins it itself.
    join_procs: Option<PathBuf>,
    timeout: Option<Duration>,
    /// The request, once sent.
    req: Option<InitRequest>,
}

impl Launching {
    /// Opens the process's stdio and starts the helper.
    pub(super) fn spawn(
        launcher: &Launcher,
        paths: &StdioPaths,
        ctx: &LogContext,
        extras: Extras,
    ) -> Result<Launching, ContainerError> {
        let Extras {
            terminal,
            trees,
            userns,
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
        let mut tree_fds: Vec<i32> = trees.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
        // The pod's user namespace follows the trees.
        let userns_fd = userns.as_ref().map(|ns| {
            tree_fds.push(ns.as_raw_fd());
            FIRST_TREE_FD + tree_fds.len() as i32 - 1
        });
        let (chan, trace, in_cgroup) = spawn_init(
            launcher,
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
            userns_fd,
            join_procs: cgroup2.filter(|_| !in_cgroup),
            timeout,
            req: None,
        })
    }

    /// Sends `req` now: the helper joins the cgroups and the namespaces it joins by path
    /// while the shim mounts the rootfs and sets the limits, and then waits for
    /// [`Launching::finish`]'s go. `tree`: the idmapped rootfs comes with the go.
    pub(super) fn send(
        &mut self,
        mut req: InitRequest,
        tree: bool,
        pid_out: &Option<i32>,
    ) -> Result<(), ContainerError> {
        if self.console.is_some() {
            req.console_fd = Some(4);
        }
        req.idmapped = std::mem::take(&mut self.idmapped);
        req.userns_fd = self.userns_fd;
        req.rootfs_tree = tree;
        if let Some(dir) = self.join_procs.take() {
            req.cgroup_procs.push(dir.join("cgroup.procs"));
        }
        // With the compiled filter the helper has no use for the profile (its JSON is most
        // of the request): it is left out of what is sent, not out of the spec.
        let profile = match req.seccomp {
            Some(_) => req
                .spec
                .linux_mut()
                .as_mut()
                .and_then(|l| l.seccomp_mut().take()),
            None => None,
        };
        let sent = wire::send(&mut self.chan, &req);
        if let (Some(p), Some(l)) = (profile, req.spec.linux_mut().as_mut()) {
            l.set_seccomp(Some(p));
        }
        self.req = Some(req);
        sent.map_err(|e| died(e.into(), pid_out, self.trace.helper))
    }

    /// Sends the go (the idmapped rootfs `rootfs_tree`, if the request said one comes)
    /// and waits until the process is ready (see [`launch`]).
    pub(super) fn finish(
        self,
        rootfs_tree: Option<OwnedFd>,
        pid_out: &mut Option<i32>,
    ) -> Result<(Process, Spec), ContainerError> {
        let Launching {
            stdio,
            console,
            mut chan,
            mut trace,
            timeout,
            req,
            ..
        } = self;
        let helper = trace.helper;
        let req = req.ok_or(ContainerError::NotCreated)?;
        if req.rootfs_tree != rootfs_tree.is_some() {
            return Err(ContainerError::Invalid(
                "the idmapped rootfs does not match the request".into(),
            ));
        }
        let go = match &rootfs_tree {
            Some(tree) => console::send_fd(chan.as_raw_fd(), tree.as_raw_fd()).map_err(Into::into),
            None => chan
                .write_all(&[wire::GO])
                .map_err(|e| ContainerError::from(WireError::Io(e))),
        };
        // A helper that failed before the go (joining a namespace, say) has said why and
        // gone: its word is read below rather than the broken pipe reported.
        if let Err(e) = go {
            if !go_unheard(&e) {
                return Err(died(e, pid_out, helper));
            }
        }
        let mut create_hooks = |pid: i32| -> Result<(), ContainerError> {
            let state = hooks::State::new(&req.spec, &req.id, &req.bundle, "creating", pid);
            let h = req.spec.hooks().as_ref();
            hooks::run(h, hooks::Kind::Prestart, &state)?;
            hooks::run(h, hooks::Kind::CreateRuntime, &state)?;
            Ok(())
        };
        let pid = await_ready(&mut chan, &mut trace, &req.id, pid_out, &mut create_hooks)
            .map_err(|e| died(e, pid_out, helper))?;
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

/// A launch error as the user should read it: when the channel broke, which process died
/// (the helper `helper`, or the container process once its pid is known).
fn died(e: ContainerError, pid_out: &Option<i32>, helper: i32) -> ContainerError {
    match (setup_broke(&e), pid_out) {
        (false, _) => e,
        (true, Some(pid)) => ContainerError::SetupDied {
            role: "process",
            pid: *pid,
            how: String::new(),
        },
        (true, None) => ContainerError::SetupDied {
            role: "helper",
            pid: helper,
            how: String::new(),
        },
    }
}

/// Whether the go could not be sent because the helper has closed the channel.
fn go_unheard(e: &ContainerError) -> bool {
    let errno = match e {
        ContainerError::Console(console::ConsoleError::Sys { errno, .. }) => Some(*errno as i32),
        ContainerError::Wire(WireError::Io(io)) => io.raw_os_error(),
        _ => None,
    };
    matches!(errno, Some(libc::EPIPE | libc::ECONNRESET))
}

/// Whether a launch failed because the other end of the channel went away without a word
/// (EOF, EPIPE, ECONNRESET): the helper or the process died. A timeout is not that.
fn setup_broke(e: &ContainerError) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    match e {
        ContainerError::InitVanished => true,
        ContainerError::Wire(WireError::Io(io)) => {
            matches!(io.kind(), BrokenPipe | ConnectionReset | UnexpectedEof)
        }
        _ => false,
    }
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
    launcher: &Launcher,
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
    let child = spawn_helper(launcher, &fds, cgroup2)?;
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

/// Starts `<exe> init` with `fds` in place: forked by the pod's zygote when it runs, else
/// exec'd (see [`crate::zygote`]).
fn spawn_helper(
    launcher: &Launcher,
    fds: &[(i32, i32)],
    cgroup2: Option<&Path>,
) -> Result<spawn::Spawned, ContainerError> {
    let exe: &HelperExe = &launcher.init_exe;
    match launcher.zygote.get() {
        Some(z) => match z.spawn(fds, cgroup2) {
            Ok(s) => return Ok(s),
            // The same request fails the exec below too, with its reason.
            Err(e) if e.not_sent() => {}
            Err(e) => {
                launcher.zygote.stop();
                if e.ended() {
                    log::debug!("zygote (pid {}) has ended; starting another", z.pid());
                } else {
                    log::warn!("zygote (pid {}): {e}; starting another", z.pid());
                }
                launcher.zygote.restart(&launcher.init_exe);
                // A request the zygote may have read may have forked a helper on these
                // very descriptors: only one it never took is tried again by exec.
                if e.may_have_forked() {
                    return Err(e.into());
                }
            }
        },
        None => launcher.zygote.restart(&launcher.init_exe),
    }
    spawn::spawn(&spawn::Spawn {
        exe: exe.path(),
        exe_fd: Some(exe.fd()),
        args: &["init"],
        fds,
        cgroup: cgroup2,
    })
    .map_err(|source| ContainerError::Spawn {
        exe: exe.path().to_path_buf(),
        source,
    })
}
