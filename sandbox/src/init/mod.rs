//! The init helper: `<shim> init`, exec'd fresh for every container so that all setup
//! runs in a single-threaded process (no async-signal-safety limits).
//!
//! Steps: join the cgroup, join and create namespaces (a user namespace first, with its
//! id maps written from outside it), fork the container process, report its pid and
//! exit. The container process builds its root, applies the process spec, resolves the
//! executable, reports `Ready`, waits for the start byte and execs.

mod attached;
mod exec;
mod namespaces;
mod paths;
mod rootfs;
mod security;
mod terminal;

use std::io::Read;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;

use nix::unistd::{fork, ForkResult};

use crate::hooks;
use crate::seccomp;
use crate::wire::{self, InitMsg, InitRequest, WireError};

/// The fd the shim passes the channel on.
pub const CHANNEL_FD: i32 = 3;

/// Errors of container setup, shown to the user through containerd.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("{what}: {errno}")]
    Sys { what: String, errno: nix::Error },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Adds context to a failed system call.
pub(crate) trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, InitError>;
}

impl<T> Context<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, InitError> {
        self.map_err(|errno| InitError::Sys {
            what: what(),
            errno,
        })
    }
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, InitError> {
        self.map_err(|source| InitError::Io {
            what: what(),
            source,
        })
    }
}

/// Entry point of `<shim> init`. Never returns.
pub fn main() -> ! {
    // SAFETY: the shim started us with the channel on CHANNEL_FD and nothing else owns it.
    let mut chan = unsafe { UnixStream::from_raw_fd(CHANNEL_FD) };
    let code = match run(&mut chan) {
        Ok(()) => 0,
        Err(e) => {
            let _ = wire::send(&mut chan, &InitMsg::Error(e.to_string()));
            1
        }
    };
    // SAFETY: _exit ends this process without running anything else.
    unsafe { libc::_exit(code) }
}

fn run(chan: &mut UnixStream) -> Result<(), InitError> {
    set_cloexec(CHANNEL_FD);
    // The forks below are plain fork(2)s: checked here, while /proc is still the host's
    // (after joining a container's mount namespace /proc/self may not resolve), and
    // nothing in the helper starts a thread.
    crate::process::ensure_single_threaded("init helper")
        .map_err(|e| InitError::Invalid(e.to_string()))?;
    let req: InitRequest = wire::recv(chan)?
        .ok_or_else(|| InitError::Invalid("init: no request from the shim".into()))?;
    // Other processes in the container must not reach our memory or /proc/self/exe.
    nix::sys::prctl::set_dumpable(false).ctx(|| "prctl(PR_SET_DUMPABLE)".into())?;
    // Single-threaded, this process moves whole when its one thread moves; the kernel
    // moves a thread that writes 0 to a v1 `tasks` file without its global lock.
    for tasks in &req.cgroup_tasks {
        std::fs::write(tasks, "0").ctx(|| format!("join cgroup {}", tasks.display()))?;
    }
    for procs in &req.cgroup_procs {
        std::fs::write(procs, std::process::id().to_string())
            .ctx(|| format!("join cgroup {}", procs.display()))?;
    }
    // As runc (nsexec): before any namespace is joined, as host root, so that a lower
    // value than the shim's needs no capability the user namespace would not grant; the
    // process inherits it.
    if let Some(p) = req.spec.process() {
        security::oom_score_adj(p)?;
    }
    let plan = match req.join_pid {
        Some(pid) => namespaces::Plan::of_process(pid, req.join_start_time)?,
        None => namespaces::Plan::new(&req.spec, req.userns_fd)?,
    };
    plan.join()?;
    // A joined network namespace belongs to the host's user namespace: its sysctls are
    // written now, as host root, before the user namespace is entered.
    let early_net_sysctls = req.join_pid.is_none() && plan.in_userns() && plan.joins_net();
    if early_net_sysctls {
        paths::sysctls(&req.spec, paths::Sysctls::Net)?;
        if req.userns_fd.is_some() {
            paths::default_ping_group_range(&req.spec)?;
        }
    }
    // The shim sends the request as soon as we run and mounts the rootfs meanwhile: what
    // follows (the mount namespace made below copies the mounts) waits for its word.
    let rootfs_tree = wait_go(chan, req.rootfs_tree)?;
    if rootfs_tree.is_some() {
        // The working directory is where the container attaches its rootfs: entered now,
        // as host root (the bundle directory is not searchable by the pod's ids), it
        // follows into the new mount namespace.
        nix::unistd::chdir(&req.rootfs).ctx(|| format!("chdir {}", req.rootfs.display()))?;
    }
    plan.enter_user()?;
    plan.unshare_rest()?;
    // SAFETY: this process is single-threaded (freshly exec'd, checked at the start of
    // `run`, and it starts no thread), so the child may allocate and do anything a
    // normal process does.
    match unsafe { fork() }.ctx(|| "fork container process".into())? {
        ForkResult::Parent { child } => {
            wire::send(chan, &InitMsg::Pid(child.as_raw()))?;
            Ok(())
        }
        ForkResult::Child => {
            let sysctls = if early_net_sysctls {
                paths::Sysctls::NotNet
            } else {
                paths::Sysctls::All
            };
            let e = container(chan, &req, &plan, rootfs_tree, sysctls);
            let msg = match e {
                Ok(never) => match never {},
                Err(e) => e.to_string(),
            };
            let _ = wire::send(chan, &InitMsg::Error(msg));
            // SAFETY: _exit ends this process without running anything else.
            unsafe { libc::_exit(127) }
        }
    }
}

/// The container process: build, report ready, wait for start, exec.
fn container(
    chan: &mut UnixStream,
    req: &InitRequest,
    plan: &namespaces::Plan,
    rootfs_tree: Option<std::os::fd::OwnedFd>,
    sysctls: paths::Sysctls,
) -> Result<std::convert::Infallible, InitError> {
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let spec = &req.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| InitError::Invalid("config.json: process is missing".into()))?;
    let exec = req.join_pid.is_some();
    if plan.new_mount() && !exec {
        rootfs::prepare(req, rootfs_tree, || create_hooks(chan, req, false))?;
    }
    if let Some(fd) = req.console_fd {
        terminal::setup(fd, process, !exec)?;
    }
    if !exec && !plan.new_mount() {
        // No mount namespace, so no pivot: the create hooks run here, still privileged.
        create_hooks(chan, req, true)?;
    }
    if !exec {
        paths::hostname(spec, plan)?;
        paths::sysctls(spec, sysctls)?;
        if plan.new_mount() {
            paths::masked_and_readonly(spec)?;
            rootfs::finish(spec)?;
        }
    }
    security::rlimits(process)?;
    // Scheduler and I/O priority need the privileges dropped below (CAP_SYS_NICE for a
    // real-time policy, for example): set before the drop, as runc sets them.
    let sched = |e: crate::sched::SchedError| InitError::Invalid(e.to_string());
    if let Some(s) = process.scheduler() {
        crate::sched::apply_scheduler(s).map_err(sched)?;
    }
    if let Some(p) = process.io_priority() {
        crate::sched::apply_io_priority(p).map_err(sched)?;
    }
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        crate::sched::apply_personality(p).map_err(sched)?;
    }
    // HOME from the container's /etc/passwd when the spec's env lacks it (as runc), read
    // while still root and before any seccomp filter.
    let mut env = process.env().clone().unwrap_or_default();
    exec::add_home(&mut env, process.user().uid());
    // linux.seccomp, placed as runc places it (standard_init_linux.go, setns_init_linux.go).
    // Compiled by the shim (from its host-wide cache) or, without that, now: either way a
    // profile libseccomp refuses fails Create. Without
    // noNewPrivileges, loading a filter needs CAP_SYS_ADMIN: it is loaded here, before the
    // user switch and the capability drop, and the rest of the setup (setgroups, setuid,
    // capset, chdir, the Ready write, the start-byte read, execve) must pass it, as in
    // runc. With noNewPrivileges it is loaded as late as possible: after the start byte,
    // right before execve (runc loads it just before it waits for start), so only execve
    // and the argv/envp allocations before it must pass it; a failure there fails Start.
    let nnp = process.no_new_privileges() == Some(true);
    let filter = match &req.seccomp {
        Some(w) => Some(seccomp::Filter::from_wire(w)?),
        None => seccomp::Filter::compile(spec)?,
    };
    if let (Some(f), false) = (&filter, nnp) {
        f.load()?;
    }
    security::user_and_caps(process, plan.in_userns())?;
    let umask = process
        .user()
        .umask()
        .unwrap_or(old_umask.bits() as u32 & 0o777);
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        umask as libc::mode_t,
    ));
    if nnp {
        nix::sys::prctl::set_no_new_privs().ctx(|| "prctl(PR_SET_NO_NEW_PRIVS)".into())?;
    }
    let cwd = process.cwd();
    nix::unistd::chdir(cwd).ctx(|| format!("chdir to cwd {:?} set in config.json", cwd))?;
    let args = process.args().clone().unwrap_or_default();
    let exe = if req.holder {
        std::path::PathBuf::new()
    } else {
        exec::lookup(&args, &env)?
    };
    exec::close_other_fds();
    wire::send(chan, &InitMsg::Ready)?;
    let mut go = [0u8; 1];
    match chan.read(&mut go) {
        Ok(1) if go[0] == wire::START => {}
        // The shim went away or deleted us before start.
        // SAFETY: _exit ends this process without running anything else.
        _ => unsafe { libc::_exit(1) },
    }
    if let (Some(f), true) = (&filter, nnp) {
        f.load()?;
    }
    if req.holder {
        // The shim learns that a container has started when the channel closes at its
        // exec (close-on-exec); the holder execs nothing, so it closes it here.
        use std::os::fd::AsRawFd;
        // SAFETY: the channel's fd is closed once and never used again: `serve` does not
        // return, so the stream that owns it is never dropped.
        unsafe { libc::close(chan.as_raw_fd()) };
        crate::holder::serve();
    }
    if !exec {
        // As runc: in the container, as its user, under its seccomp filter.
        let state = hooks::State::new(spec, &req.id, &req.bundle, "created", own_pid());
        hooks::run(spec.hooks().as_ref(), hooks::Kind::StartContainer, &state)
            .map_err(|e| InitError::Invalid(e.to_string()))?;
    }
    Err(exec::exec(&exe, &args, &env))
}

/// Waits for the shim's go: the idmapped rootfs when `tree`, else the [`wire::GO`] byte.
fn wait_go(chan: &mut UnixStream, tree: bool) -> Result<Option<std::os::fd::OwnedFd>, InitError> {
    if tree {
        return crate::console::recv_fd(CHANNEL_FD)
            .map(Some)
            .map_err(|e| InitError::Invalid(format!("receive the idmapped rootfs: {e}")));
    }
    let mut go = [0u8; 1];
    match chan.read(&mut go) {
        Ok(1) if go[0] == wire::GO => Ok(None),
        // The shim gave the container up (its rootfs failed, for one).
        // SAFETY: _exit ends this process without running anything else.
        _ => unsafe { libc::_exit(1) },
    }
}

/// The create hooks: prestart and createRuntime by the shim (asked over the channel,
/// it knows our host pid), then createContainer here, in the container's namespaces
/// with the rootfs as working directory, as runc runs them (`chdir`: it is not yet).
fn create_hooks(chan: &mut UnixStream, req: &InitRequest, chdir: bool) -> Result<(), InitError> {
    use hooks::Kind;
    let spec = &req.spec;
    if hooks::has(spec, &[Kind::Prestart, Kind::CreateRuntime]) {
        wire::send(chan, &InitMsg::Hooks)?;
        let mut done = [0u8; 1];
        match chan.read(&mut done) {
            Ok(1) if done[0] == wire::HOOKS_DONE => {}
            // A hook failed: the shim reports it and removes us.
            // SAFETY: _exit ends this process without running anything else.
            _ => unsafe { libc::_exit(1) },
        }
    }
    if hooks::has(spec, &[Kind::CreateContainer]) {
        if chdir {
            nix::unistd::chdir(&req.rootfs).ctx(|| format!("chdir {}", req.rootfs.display()))?;
        }
        let state = hooks::State::new(spec, &req.id, &req.bundle, "creating", own_pid());
        hooks::run(spec.hooks().as_ref(), Kind::CreateContainer, &state)
            .map_err(|e| InitError::Invalid(e.to_string()))?;
    }
    Ok(())
}

/// Our pid as the container sees it (1 in a new pid namespace), as runc reports it to
/// the hooks that run inside.
fn own_pid() -> i32 {
    std::process::id() as i32
}

fn set_cloexec(fd: i32) {
    // SAFETY: fcntl with integer arguments on an fd this process owns.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFD);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFD, fl | libc::FD_CLOEXEC);
        }
    }
}
