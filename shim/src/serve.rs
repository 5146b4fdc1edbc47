//! The serving shim: one per pod, forked by `start`. Single-threaded tokio runtime; ttrpc
//! server on the listener `start` bound; SIGCHLD reaps (we are the pod's subreaper); SIGTERM tears the pod
//! down; the last container's Shutdown ends the process.

use std::os::fd::{IntoRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

use crate::args::Args;
use crate::config::Config;
use crate::events::Publisher;
use crate::logger;
use crate::pod::Pod;
use crate::socket_file::BoundSocket;
use mypod_sandbox::exe::HelperExe;

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Setup(String),
    #[error("ttrpc: {0}")]
    Ttrpc(#[from] ttrpc::Error),
}

/// What `start` hands the server it forks.
#[derive(Debug)]
pub struct Handoff {
    /// The pod's socket, bound (close-on-exec).
    pub listener: UnixListener,
    /// Its file, removed (with its `.pid` file) when the pod ends, if still ours.
    pub socket: BoundSocket,
    /// runtime.toml as `start` validated it (defaults without one).
    pub config: Config,
    /// The shim's binary, sealed read-only for the helpers (see mypod_sandbox::exe).
    pub helper: HelperExe,
    /// containerd's uid (the uid `start` ran as): with root, the only peer allowed on the
    /// socket (see crate::peer).
    pub containerd_uid: u32,
}

/// How long a server that never served a container waits for one before it ends.
const UNUSED_LIFETIME: Duration = Duration::from_secs(30);

/// Runs the server until the pod is gone; returns the process exit code.
pub fn run(args: Args, handoff: Handoff) -> i32 {
    tune_malloc();
    let Handoff {
        listener,
        socket,
        config,
        helper,
        containerd_uid,
    } = handoff;
    logger::init(args.debug || config.debug);
    if let Ok(cwd) = std::env::current_dir() {
        logger::add_bundle(&cwd);
    }
    let code = match serve_blocking(&args, &config, &socket, listener, helper, containerd_uid) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("shim for pod {}: {e}", args.id);
            1
        }
    };
    // Already withdrawn when the pod ended; this covers a server that failed.
    socket.withdraw(std::process::id());
    code
}

fn serve_blocking(
    args: &Args,
    config: &Config,
    socket: &BoundSocket,
    listener: UnixListener,
    helper: HelperExe,
    containerd_uid: u32,
) -> Result<(), ServeError> {
    mypod_sandbox::process::set_child_subreaper()
        .map_err(|e| ServeError::Setup(format!("become subreaper: {e}")))?;
    // Work from / : the first bundle (our cwd) is deleted while the pod lives on.
    let _ = std::env::set_current_dir("/");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(8)
        .thread_keep_alive(Duration::from_secs(2))
        // A blocking thread ends after a burst of container work (create, start, delete,
        // exec): what that work freed goes back to the kernel then, not at exit.
        .on_thread_stop(trim_malloc)
        .build()
        .map_err(|e| ServeError::Setup(format!("runtime: {e}")))?;
    rt.block_on(serve(
        args,
        config,
        socket,
        listener.into_raw_fd(),
        helper,
        containerd_uid,
    ))
}

/// The pod is over: its socket goes at once, under the lock `start` takes, so that a
/// container of a new pod with the same group (a reused id, say) gets a new shim instead of
/// joining this one while it flushes its events and exits (which took up to seconds). A
/// `start` that connected just before still hands out this address; that narrow race
/// remains.
fn withdraw_socket(socket: &BoundSocket) {
    socket.withdraw(std::process::id());
}

/// glibc malloc settings for a small, long-lived process, set before any thread exists.
fn tune_malloc() {
    // SAFETY: mallopt only changes allocator parameters; this process has one thread yet.
    unsafe {
        // One arena: the short-lived blocking threads would each get their own arena
        // (64 MiB reserved, its touched pages kept after the thread is gone).
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // Give free memory at the top of the heap back early (default 128 KiB), and keep
        // the mmap threshold fixed at its default: glibc raises it after a large block is
        // freed, and later large blocks would then fragment the heap.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 * 1024);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Returns the free pages of the heap to the kernel.
fn trim_malloc() {
    // SAFETY: malloc_trim takes glibc's arena locks itself; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

async fn serve(
    args: &Args,
    config: &Config,
    socket: &BoundSocket,
    fd: RawFd,
    helper: HelperExe,
    containerd_uid: u32,
) -> Result<(), ServeError> {
    // Register for SIGCHLD before any child exists.
    let mut sigchld = signal(SignalKind::child()).map_err(|e| ServeError::Setup(e.to_string()))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| ServeError::Setup(e.to_string()))?;
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| format!("{}.ttrpc", args.address));
    let events = Publisher::start(ttrpc_address, args.namespace.clone());
    let layout =
        mypod_sandbox::cgroup::Layout::detect().map_err(|e| ServeError::Setup(e.to_string()))?;
    let launcher = mypod_sandbox::Launcher {
        init_exe: Arc::new(helper),
        setup_timeout: Duration::from_secs(config.container.setup_timeout),
        namespace: args.namespace.clone(),
        policy: config.sandbox.policy(),
        userns: Default::default(),
        zygote: Default::default(),
    };
    // The helpers' fork server starts beside the serving, not before it.
    let (zygote, exe) = (launcher.zygote.clone(), launcher.init_exe.clone());
    tokio::task::spawn_blocking(move || zygote.start(&exe));
    let pod = Arc::new(Pod::new(Arc::new(events.clone()), layout, launcher));
    // SAFETY: `fd` is the listening socket `start` bound, released from its UnixListener:
    // the server takes sole ownership.
    let server = unsafe { ttrpc::asynchronous::Server::new().add_unix_listener(fd)? };
    // Every connection's peer is checked before ttrpc reads from it: a listener added from
    // a unix fd yields sockets that carry their fd, which the hook needs.
    let mut server = server
        .set_accept_hook(crate::peer::PeerCheck { containerd_uid })
        .register_service(crate::service::services(pod.clone()))
        .register_service(crate::sandbox_service::services(pod.clone()));
    server.start().await?;
    log::info!("serving pod {} (namespace {})", args.id, args.namespace);
    // A server whose start containerd failed after it forked (containerd 2.x writes
    // bootstrap.json after `start` returned; a full disk fails that) never gets a Create
    // nor a Shutdown: it ends itself if it still serves nothing after UNUSED_LIFETIME.
    let unused = pod.clone();
    tokio::spawn(async move {
        tokio::time::sleep(UNUSED_LIFETIME).await;
        unused.shutdown();
    });
    loop {
        tokio::select! {
            _ = sigchld.recv() => {
                for (pid, code, n) in mypod_sandbox::process::reap_all() {
                    pod.on_exit(pid, code, n);
                }
            }
            _ = sigterm.recv() => {
                log::info!("SIGTERM: tearing down pod {}", args.id);
                pod.destroy_all().await;
                break;
            }
            _ = pod.exit.notified() => break,
        }
    }
    withdraw_socket(socket);
    events.flush(Duration::from_secs(5)).await;
    // Give the reply to Shutdown a moment to leave before the process ends.
    tokio::time::sleep(Duration::from_millis(20)).await;
    Ok(())
}
