//! `start`: find or start the pod's serving shim and print its address.
//!
//! Containers of one pod share one shim: the group and the socket path come from
//! [`crate::group`]. A lock file serializes concurrent starts for a pod, so exactly one
//! shim is started.

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use nix::unistd::ForkResult;

use crate::args::Args;
use crate::config::Config;
use crate::group::{self, SOCKET_DIR};

/// Errors of `start`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Exe(#[from] mypod_sandbox::exe::ExeError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartError {
    let what = what.into();
    move |source| StartError::Io { what, source }
}

/// The shim API version `start` announces for a pod sandbox (see [`bootstrap`]).
const SANDBOX_API_VERSION: u32 = 3;

/// What `start` prints: the bare address (shim API version 2, which every containerd
/// reads) for a container; for a pod sandbox (containerd 2.x's Sandbox API: a bundle with
/// no config.json, which containerd 1.6 and 1.7 never make) the bootstrap parameters of
/// version 3, whose containers containerd 2.1+ then creates on this shim without running
/// `start` again for each (its `ShimManager.Start`), as it does for runc-v2's pods. The
/// shim serves the Task API under both names (see `service::services`).
fn bootstrap(address: &str, sandbox: bool) -> String {
    if !sandbox {
        return address.to_string();
    }
    serde_json::json!({
        "version": SANDBOX_API_VERSION,
        "address": address,
        "protocol": "ttrpc",
    })
    .to_string()
}

/// Runs `start` in the bundle directory (cwd); returns what to print (see [`bootstrap`]).
pub fn run(args: &Args) -> Result<String, StartError> {
    let bundle = std::env::current_dir().map_err(io("current dir"))?;
    let sandbox = !bundle.join("config.json").exists();
    // Validate runtime.toml now, so a bad file fails the pod's start naming the key.
    let config = match Config::source_from_stdin()? {
        Some((text, origin)) => Config::parse(&text, &origin)?,
        None => Config::default(),
    };
    // A config.json that cannot be read is reported by Create; group by id meanwhile.
    let group = group::of_bundle(&bundle).unwrap_or_else(|| args.id.clone());
    let sock = group::socket_path(&args.address, &args.namespace, &group);
    let address = format!("unix://{}", sock.display());
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(SOCKET_DIR)
        .map_err(io(format!("create {SOCKET_DIR}")))?;
    let lock = lock(&sock)?;

    let pid = if UnixStream::connect(&sock).is_ok() {
        // The pod's shim is alive: this container joins it.
        None
    } else {
        if sock.exists() {
            // Its shim died (the socket refuses): start a new one; the new shim logs it.
            let _ = fs::remove_file(&sock);
        }
        Some(spawn_server(args, &sock, &group, config)?)
    };
    let written = write_bundle_files(&bundle, &address, pid, &sock);
    if let (Err(_), Some(pid)) = (&written, pid) {
        // containerd fails the start and never talks to the server: it must not stay.
        abandon_server(pid, &sock);
    }
    written?;
    drop(lock);
    Ok(bootstrap(&address, sandbox))
}

/// Writes the bundle's `address` and `shim.pid` (the server's: `pid` if we just started
/// it, else the running one's).
fn write_bundle_files(
    bundle: &Path,
    address: &str,
    pid: Option<u32>,
    sock: &Path,
) -> Result<(), StartError> {
    write_file(&bundle.join("address"), address)?;
    if let Some(pid) = pid {
        write_file(&bundle.join("shim.pid"), &pid.to_string())?;
    } else if let Ok(p) = fs::read_to_string(sock.with_extension("pid")) {
        write_file(&bundle.join("shim.pid"), p.trim())?;
    }
    Ok(())
}

/// Ends a server this `start` forked and that serves nothing yet (our child: reaped here),
/// and removes its socket and pid file, so that the next start of the pod begins afresh.
fn abandon_server(pid: u32, sock: &Path) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    let child = nix::unistd::Pid::from_raw(raw);
    if nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL).is_ok() {
        let _ = nix::sys::wait::waitpid(child, None);
    }
    let _ = fs::remove_file(sock);
    let _ = fs::remove_file(sock.with_extension("pid"));
}

/// Serializes starts by locking the socket directory itself (nothing to clean up; the
/// critical section is a connect or a bind + spawn).
pub(crate) fn lock(sock: &Path) -> Result<File, StartError> {
    let path = sock.parent().unwrap_or(Path::new(SOCKET_DIR));
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(path)
        .map_err(io(format!("open {}", path.display())))?;
    // Blocks until the other start releases it.
    f.lock().map_err(io(format!("lock {}", path.display())))?;
    Ok(f)
}

fn write_file(path: &Path, data: &str) -> Result<(), StartError> {
    let tmp = path.with_extension("tmp");
    if let Err(e) = fs::write(&tmp, data) {
        let _ = fs::remove_file(&tmp);
        return Err(io(format!("write {}", tmp.display()))(e));
    }
    fs::rename(&tmp, path).map_err(io(format!("rename {}", path.display())))
}

/// Binds the socket and forks the detached serving process with it.
///
/// The child becomes the server without an exec: `start` runs no thread, so its forked
/// copy may run any code, and the pod's first Create does not wait for the binary to be
/// loaded and linked a second time (about 3 ms of every pod start here).
fn spawn_server(args: &Args, sock: &Path, group: &str, config: Config) -> Result<u32, StartError> {
    // Containers reach the helper's binary through /proc/PID/exe: sealed here, so that a
    // kernel that cannot seal it fails the start with the reason (see mypod_sandbox::exe).
    let exe = std::env::current_exe().map_err(io("own executable"))?;
    let helper = mypod_sandbox::exe::HelperExe::seal(&exe)?;
    mypod_sandbox::process::ensure_single_threaded("fork the serving shim")
        .map_err(|e| io("fork the serving shim")(std::io::Error::other(e.to_string())))?;
    let listener = UnixListener::bind(sock).map_err(io(format!("listen on {}", sock.display())))?;
    // Under the start lock: the file just bound, which the server removes only while it
    // is still this one.
    let bound = crate::socket_file::BoundSocket::record(sock);
    // containerd runs `start` with its own credentials: our uid is containerd's. The server
    // lets only it and root connect (crate::peer).
    let containerd_uid = nix::unistd::getuid().as_raw();
    let oom_score = shim_oom_score();
    // SAFETY: this process is single-threaded (`start` starts no thread; checked just
    // above), so the child is a complete copy that may allocate, lock and run any code.
    match unsafe { nix::unistd::fork() } {
        Err(e) => Err(io("fork the serving shim")(e.into())),
        Ok(ForkResult::Child) => {
            if let Some(score) = oom_score {
                set_own_oom_score(score);
            }
            let code = become_server(args, bound, group, config, listener, helper, containerd_uid);
            std::process::exit(code)
        }
        Ok(ForkResult::Parent { child }) => {
            let pid = child.as_raw() as u32;
            let _ = fs::write(sock.with_extension("pid"), pid.to_string());
            Ok(pid)
        }
    }
}

/// In the forked child: detaches from `start` and serves the pod on `listener`.
fn become_server(
    args: &Args,
    socket: crate::socket_file::BoundSocket,
    group: &str,
    config: Config,
    listener: UnixListener,
    helper: mypod_sandbox::exe::HelperExe,
    containerd_uid: u32,
) -> i32 {
    // Its own session, out of containerd's process group.
    let _ = nix::unistd::setsid();
    // containerd reads start's stdout and stderr to the end: the server must not hold
    // them (it logs to the bundle's log FIFO), nor any other descriptor of `start`: the
    // start lock is released only when its last copy closes.
    if let Ok(null) = OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    close_fds_except(&[listener.as_raw_fd(), helper.fd()]);
    show_as_serving();
    let mut serve = args.clone();
    serve.id = group.to_string();
    serve.action = "serve".to_string();
    let handoff = crate::serve::Handoff {
        listener,
        socket,
        config,
        helper,
        containerd_uid,
    };
    crate::serve::run(serve, handoff)
}

/// Turns the trailing `start` of this process's command line into `serve`, in place, so
/// that `ps` shows the long-lived server as it showed it when it was exec'd.
fn show_as_serving() {
    let (Ok(stat), Ok(cmdline)) = (
        fs::read_to_string("/proc/self/stat"),
        fs::read("/proc/self/cmdline"),
    ) else {
        return;
    };
    // Fields after the command name (which may hold spaces): field 48 is arg_start.
    let Some(arg_start) = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(45))
        .and_then(|f| f.parse::<usize>().ok())
    else {
        return;
    };
    if !cmdline.ends_with(b"\0start\0") || arg_start == 0 {
        return;
    }
    let offset = cmdline.len() - b"start\0".len();
    // SAFETY: [arg_start, arg_start + cmdline.len()) is this process's own argument area
    // on its initial stack, mapped and writable for the process's life; the kernel just
    // reported it (and its content). The write replaces 5 bytes with 5 bytes inside it;
    // nothing else in this single-threaded process reads them concurrently.
    unsafe {
        std::ptr::copy_nonoverlapping(b"serve".as_ptr(), (arg_start + offset) as *mut u8, 5);
    }
}

/// Closes every descriptor from 3 up except those in `keep`.
fn close_fds_except(keep: &[RawFd]) {
    let open: Vec<RawFd> = match fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|&fd| fd > 2 && !keep.contains(&fd))
            .collect(),
        Err(_) => return,
    };
    for fd in open {
        // The directory's own fd is among them and already closed: EBADF is harmless.
        let _ = nix::unistd::close(fd);
    }
}

/// The serving shim's oom_score_adj: containerd's (`start`'s parent's) + 1, at most 1000,
/// as containerd's runc shim does: under memory pressure the kernel picks a shim before
/// containerd, and the pod's containers (usually scored higher by the kubelet) before
/// their shim. Setting it is not fatal: the shim works with the score it inherited.
fn shim_oom_score() -> Option<i32> {
    let ppid = std::os::unix::process::parent_id();
    fs::read_to_string(format!("/proc/{ppid}/oom_score_adj"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .map(oom_score_for_shim)
}

/// Sets this process's oom_score_adj (the server's, first thing: what it starts, the
/// zygote among them, inherits it).
fn set_own_oom_score(score: i32) {
    if let Err(e) = fs::write("/proc/self/oom_score_adj", score.to_string()) {
        log::warn!("set the shim's oom_score_adj to {score}: {e}");
    }
}

fn oom_score_for_shim(containerd: i32) -> i32 {
    (containerd + 1).min(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_scores_one_above_containerd() {
        assert_eq!(oom_score_for_shim(-999), -998);
        assert_eq!(oom_score_for_shim(0), 1);
        assert_eq!(oom_score_for_shim(1000), 1000);
    }

    #[test]
    fn a_sandbox_announces_version_3_a_container_the_bare_address() {
        let a = "unix:///run/containerd/s/mypod-1";
        assert_eq!(bootstrap(a, false), a);
        let v: serde_json::Value = serde_json::from_str(&bootstrap(a, true)).unwrap();
        assert_eq!(v["version"], 3);
        assert_eq!(v["protocol"], "ttrpc");
        assert_eq!(v["address"], a);
    }
}
