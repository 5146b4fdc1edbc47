//! The pod's fork server for init helpers: `<shim> init` exec'd once per shim, which forks
//! a helper per container or exec instead of the shim exec'ing the binary each time.
//!
//! Every container and exec is set up by a fresh single-threaded helper (see
//! [`crate::init`]). Exec'ing the shim's binary for each costs about 1.3 ms here (execve,
//! dynamic linking, Rust start-up), most of a container's setup. The zygote is that
//! helper exec'd once, from the same sealed read-only binary (see [`crate::exe`]), as
//! `<shim> init` with a `SOCK_SEQPACKET` socket on fd 3 where a helper has its (stream)
//! channel, which is how it knows to be the zygote ([`is_zygote`]); it then only waits on
//! that socket. For each
//! request it forks a child (`clone3`, born in the container's cgroup2 directory, and
//! with `CLONE_PARENT`, so the helper is the shim's child as an exec'd one is), which
//! places the descriptors it was sent, closes every other, resets cwd and signals, and
//! runs [`crate::init::main`]: the state an exec'd helper starts from, as a copy of a
//! process that has done nothing else. The zygote ends after [`IDLE_MS`] without a request;
//! the shim then execs that helper and starts a zygote again for the next ones.
//!
//! The zygote holds none of the shim's descriptors (only its socket), is not dumpable,
//! dies with the shim (its socket reads end-of-file), and no container can reach it: a
//! helper closes the zygote's socket before anything else.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::exe::HelperExe;
use crate::process::Watch;
use crate::spawn::{self, SpawnError, Spawned, MAX_FDS};

/// The zygote's socket, in the zygote (a helper's channel is there too).
const SOCKET_FD: RawFd = 3;
/// A zygote that has had no request for this long ends (see [`main`]); the shim starts
/// another when helpers are asked for again. A pod's setups come in bursts (its sandbox
/// and containers, a restart): the zygote costs memory only then.
const IDLE_MS: u16 = 10_000;
/// The zygote answers a request (one clone3) within this many seconds or is given up.
const ANSWER_WITHIN_S: i64 = 10;

/// Whether this `<shim> init` is the zygote: fd 3 is a `SOCK_SEQPACKET` socket, not a
/// helper's stream channel. Nothing else is passed, so that nothing of the zygote's
/// start (an environment variable, an argument) shows in the helpers it forks.
pub fn is_zygote() -> bool {
    // SAFETY: fd 3 is borrowed for one getsockopt; if it is not open the call fails.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(SOCKET_FD) };
    nix::sys::socket::getsockopt(&fd, nix::sys::socket::sockopt::SockType)
        .is_ok_and(|t| t == nix::sys::socket::SockType::SeqPacket)
}

/// Errors asking the zygote for a helper.
#[derive(Debug, thiserror::Error)]
pub enum ZygoteError {
    #[error("start the zygote: {0}")]
    Start(#[from] SpawnError),
    /// The request itself could not be made (too many descriptors, no cgroup directory):
    /// nothing of the zygote's fault, nothing sent.
    #[error("{0}")]
    Request(SpawnError),
    #[error("zygote: {0}")]
    Io(#[from] std::io::Error),
    #[error("zygote: {0}")]
    Sys(#[from] Errno),
    #[error("zygote: no whole answer ({0} bytes) to a request it may have taken")]
    Answer(usize),
    #[error("zygote: fork the helper: {0}")]
    Fork(Errno),
}

impl ZygoteError {
    /// The request was sent and no whole answer came: the zygote may have forked a
    /// helper before it went away.
    pub fn may_have_forked(&self) -> bool {
        matches!(self, ZygoteError::Answer(_))
    }

    /// The zygote had ended (idle, or killed) before the request: nothing was forked.
    pub fn ended(&self) -> bool {
        matches!(self, ZygoteError::Sys(Errno::EPIPE | Errno::ECONNRESET))
    }

    /// The request could not be made; the zygote is fine.
    pub fn not_sent(&self) -> bool {
        matches!(self, ZygoteError::Request(_))
    }
}

/// The shim's handle on its zygote.
#[derive(Debug)]
pub struct Zygote {
    sock: Mutex<OwnedFd>,
    watch: Watch,
}

impl Zygote {
    /// Execs the zygote from `exe`.
    pub fn start(exe: &HelperExe) -> Result<Zygote, ZygoteError> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let watch = crate::process::watch_spawned(|| {
            spawn::spawn(&spawn::Spawn {
                exe: exe.path(),
                exe_fd: Some(exe.fd()),
                args: &["init"],
                fds: &[(theirs.as_raw_fd(), SOCKET_FD)],
                cgroup: None,
            })
            .map(|s| s.pid)
        })?;
        // A zygote that took a request and hangs fails that Create instead of holding it.
        let limit = nix::sys::time::TimeVal::new(ANSWER_WITHIN_S, 0);
        nix::sys::socket::setsockopt(&ours, nix::sys::socket::sockopt::ReceiveTimeout, &limit)?;
        Ok(Zygote {
            sock: Mutex::new(ours),
            watch,
        })
    }

    /// The zygote's pid.
    pub fn pid(&self) -> i32 {
        self.watch.pid()
    }

    /// Forks a helper with `fds` (source here, number in the helper) in place, born in
    /// the cgroup2 directory `cgroup` when the kernel can: as [`spawn::spawn`] of the
    /// helper binary with `init`.
    pub fn spawn(
        &self,
        fds: &[(RawFd, RawFd)],
        cgroup: Option<&Path>,
    ) -> Result<Spawned, ZygoteError> {
        if fds.len() > MAX_FDS {
            return Err(ZygoteError::Request(SpawnError::TooManyFds(fds.len())));
        }
        let cg = cgroup
            .map(spawn::open_cgroup)
            .transpose()
            .map_err(ZygoteError::Request)?;
        let mut head = vec![fds.len() as u8, u8::from(cg.is_some())];
        for (_, target) in fds {
            head.extend_from_slice(&target.to_le_bytes());
        }
        let mut rights: Vec<RawFd> = fds.iter().map(|(src, _)| *src).collect();
        rights.extend(cg.as_ref().map(|fd| fd.as_raw_fd()));
        // One request at a time: its answer is the next message.
        let sock = self.sock.lock().unwrap_or_else(|e| e.into_inner());
        sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&head)],
            &[ControlMessage::ScmRights(&rights)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        let mut answer = [0u8; 6];
        let n = spawn::read_full(sock.as_raw_fd(), &mut answer);
        drop(sock);
        if n != answer.len() {
            return Err(ZygoteError::Answer(n));
        }
        let value = i32::from_le_bytes([answer[1], answer[2], answer[3], answer[4]]);
        match answer[0] {
            0 if value <= 0 => Err(ZygoteError::Answer(n)),
            0 => Ok(Spawned {
                pid: value,
                in_cgroup: answer[5] == 1,
            }),
            _ => Err(ZygoteError::Fork(Errno::from_raw(value))),
        }
    }
}

impl Drop for Zygote {
    /// Ends the zygote (it would end on its own once its socket closes) and reaps it.
    fn drop(&mut self) {
        self.watch.kill();
        let _ = self.watch.wait();
    }
}

/// The shim's zygote while it runs (started with the shim, again when helpers are asked
/// for after it ended). A zygote that cannot be started is not tried again: that is the
/// binary's or the kernel's doing, and every later try would fail the same way.
#[derive(Debug, Default)]
pub struct ZygoteSlot {
    zygote: Mutex<Option<Arc<Zygote>>>,
    starting: std::sync::atomic::AtomicBool,
    failed: std::sync::atomic::AtomicBool,
}

impl ZygoteSlot {
    /// Starts the zygote from `exe`; on failure helpers are exec'd, as without one.
    pub fn start(&self, exe: &HelperExe) {
        use std::sync::atomic::Ordering;
        if self.starting.swap(true, Ordering::SeqCst) {
            return;
        }
        match Zygote::start(exe) {
            Ok(z) => {
                log::debug!("zygote started (pid {})", z.pid());
                *self.lock() = Some(Arc::new(z));
            }
            Err(e) => {
                log::warn!("{e}; helpers are exec'd");
                self.failed.store(true, Ordering::SeqCst);
            }
        }
        self.starting.store(false, Ordering::SeqCst);
    }

    /// Starts the zygote again on a thread of its own, unless one runs or is starting: the
    /// helper that found it gone is exec'd meanwhile.
    pub fn restart(self: &Arc<Self>, exe: &Arc<HelperExe>) {
        use std::sync::atomic::Ordering;
        if self.starting.load(Ordering::SeqCst)
            || self.failed.load(Ordering::SeqCst)
            || self.lock().is_some()
        {
            return;
        }
        let (slot, exe) = (self.clone(), exe.clone());
        let started = std::thread::Builder::new()
            .name("zygote".into())
            .spawn(move || slot.start(&exe));
        if let Err(e) = started {
            log::warn!("start the zygote: {e}");
        }
    }

    /// The zygote, if it runs.
    pub fn get(&self) -> Option<Arc<Zygote>> {
        self.lock().clone()
    }

    /// Forgets the zygote (it ended or failed); dropped once no request uses it.
    pub fn stop(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<Zygote>>> {
        // One Option: consistent whatever panicked while it was held.
        self.zygote.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Entry point of the zygote. Never returns.
pub fn main() -> ! {
    // No PR_SET_PDEATHSIG: it fires when the *thread* that started us ends (a blocking-pool
    // thread of the shim, idle after a few seconds), not the shim. The shim's end of the
    // socket is close-on-exec and goes to no child, so its exit (however it dies) closes
    // it and the next read here returns end-of-file.
    let _ = nix::sys::prctl::set_dumpable(false);
    // SAFETY: fd 3 is our socket for the whole of this process.
    let sock = unsafe { std::os::fd::BorrowedFd::borrow_raw(SOCKET_FD) };
    loop {
        let mut p = [nix::poll::PollFd::new(sock, nix::poll::PollFlags::POLLIN)];
        match nix::poll::poll(&mut p, IDLE_MS) {
            Ok(0) => {
                // Idle: no request is taken from now on (the shim's next send fails with
                // EPIPE, and it execs that helper), those already sent are served.
                let _ = nix::sys::socket::shutdown(SOCKET_FD, nix::sys::socket::Shutdown::Read);
                while serve_one(MsgFlags::MSG_DONTWAIT).is_ok() {}
                break;
            }
            Err(Errno::EINTR) => continue,
            Err(_) => break,
            // Ends on end-of-file (the shim is gone) or any error of the socket.
            Ok(_) => {
                if serve_one(MsgFlags::empty()).is_err() {
                    break;
                }
            }
        }
    }
    // SAFETY: _exit ends this process without running anything else.
    unsafe { libc::_exit(0) }
}

/// Reads one request, forks its helper and answers.
fn serve_one(flags: MsgFlags) -> Result<(), Errno> {
    let mut head = [0u8; 2 + 4 * MAX_FDS];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS + 1]);
    let (n, received) = {
        let mut iov = [std::io::IoSliceMut::new(&mut head)];
        let msg = recvmsg::<()>(
            SOCKET_FD,
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC | flags,
        )?;
        let mut received: Vec<OwnedFd> = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: the kernel just installed these descriptors for us.
                received.extend(
                    fds.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, received)
    };
    if n == 0 {
        return Err(Errno::EPIPE);
    }
    let count = head[0] as usize;
    let has_cgroup = head[1] == 1;
    if count > MAX_FDS || n != 2 + 4 * count || received.len() != count + usize::from(has_cgroup) {
        return answer(Err(Errno::EINVAL), false);
    }
    let mut fds = [(-1, -1); MAX_FDS];
    for (i, slot) in fds.iter_mut().take(count).enumerate() {
        let t = &head[2 + 4 * i..6 + 4 * i];
        *slot = (
            received[i].as_raw_fd(),
            i32::from_le_bytes([t[0], t[1], t[2], t[3]]),
        );
    }
    let fds = &fds[..count];
    let cgroup = has_cgroup.then(|| received[count].as_raw_fd());
    let flags = libc::CLONE_PARENT as u64;
    let (pid, in_cgroup) = match spawn::clone_into(flags, cgroup) {
        Ok(pid) => (Ok(pid), cgroup.is_some()),
        Err(Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL) if cgroup.is_some() => {
            (spawn::clone_into(flags, None), false)
        }
        Err(e) => (Err(e), false),
    };
    if pid == Ok(0) {
        helper(fds);
    }
    drop(received);
    answer(pid, in_cgroup)
}

/// In the forked helper: the descriptors in place and nothing else open, then `init`.
fn helper(fds: &[(RawFd, RawFd)]) -> ! {
    let top = fds.iter().map(|(_, t)| *t).max().unwrap_or(-1);
    let placed = spawn::place_fds(fds).and_then(|()| spawn::reset_cwd_and_signals());
    // Every other descriptor closes: the zygote's socket and the received copies, below
    // the highest placed number (an unused 4 without a console) and above it.
    for fd in 0..top {
        if !fds.iter().any(|(_, t)| *t == fd) {
            // SAFETY: close on a number that is not one of the placed descriptors.
            unsafe { libc::close(fd) };
        }
    }
    // SAFETY: close_range with integer arguments.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, top + 1, u32::MAX, 0) };
    if placed.is_err() || closed != 0 {
        // The shim sees the helper's channel close without a word and reports it.
        // SAFETY: _exit ends this process without running anything else.
        unsafe { libc::_exit(127) }
    }
    crate::init::main()
}

/// Sends the answer: status, pid or errno, whether born in the cgroup.
fn answer(pid: Result<i32, Errno>, in_cgroup: bool) -> Result<(), Errno> {
    let (status, value) = match pid {
        Ok(pid) => (0u8, pid),
        Err(e) => (1u8, e as i32),
    };
    let mut buf = [status, 0, 0, 0, 0, u8::from(in_cgroup)];
    buf[1..5].copy_from_slice(&value.to_le_bytes());
    let n = nix::unistd::write(
        // SAFETY: the socket stays open for the whole of this process.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(SOCKET_FD) },
        &buf,
    )?;
    if n != buf.len() {
        return Err(Errno::EIO);
    }
    Ok(())
}
