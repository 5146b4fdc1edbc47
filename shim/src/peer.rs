//! Who may talk to the pod's shim: every connection to its socket is checked by the
//! kernel-reported credentials of the connecting process (`SO_PEERCRED`, taken at
//! `connect`), before ttrpc reads anything from it. Allowed are root and containerd's
//! uid (the uid `start` ran as); anyone else is refused and logged.
//!
//! The check is a ttrpc [`AcceptHook`] (ttrpc's `security_extension` feature): ttrpc calls
//! it on a blocking thread for each accepted connection, with the connection's fd, and
//! closes the connection without reading from it when the hook returns an error.

use std::os::fd::{BorrowedFd, RawFd};

use nix::sys::socket::{getsockopt, sockopt};
use ttrpc::{AcceptHook, ConnectionData, HookError, HookOutput};

/// A peer's credentials as the kernel reports them for a unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ucred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// Whether a peer with these credentials may use the shim's API.
pub fn allowed(peer: Ucred, containerd_uid: u32) -> bool {
    peer.uid == 0 || peer.uid == containerd_uid
}

/// The peer credentials of the connected unix socket `fd`.
pub fn peer_cred(fd: BorrowedFd<'_>) -> std::io::Result<Ucred> {
    let c = getsockopt(&fd, sockopt::PeerCredentials)?;
    Ok(Ucred {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}

/// The accept hook the pod's ttrpc server runs on every connection.
#[derive(Debug, Clone, Copy)]
pub struct PeerCheck {
    /// containerd's uid, recorded by `start`.
    pub containerd_uid: u32,
}

impl PeerCheck {
    /// Checks the peer of the connected socket `fd`: `Ok` with its credentials if it is
    /// allowed; otherwise logs it and says why.
    pub fn check(&self, fd: BorrowedFd<'_>) -> Result<Ucred, HookError> {
        let peer = peer_cred(fd).map_err(|e| {
            log::warn!("refused a connection to the shim's socket: SO_PEERCRED: {e}");
            HookError::Io(e)
        })?;
        if allowed(peer, self.containerd_uid) {
            return Ok(peer);
        }
        log::warn!(
            "refused a connection to the shim's socket from pid {} uid {} gid {} \
             (only uid 0 and containerd's uid {} may connect)",
            peer.pid,
            peer.uid,
            peer.gid,
            self.containerd_uid
        );
        Err(HookError::Rejected(format!(
            "peer pid {} uid {} gid {} not allowed",
            peer.pid, peer.uid, peer.gid
        )))
    }
}

impl AcceptHook for PeerCheck {
    fn on_accept(&self, fd: RawFd) -> Result<HookOutput, HookError> {
        // SAFETY: ttrpc passes a descriptor it owns (its own dup of the accepted socket)
        // and keeps open until this call returns; it is only borrowed for the call.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        self.check(fd)?;
        Ok(HookOutput {
            data: ConnectionData::new(),
            payload_transform: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::fd::{AsFd, AsRawFd};
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::net::UnixListener;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU32, Ordering};

    const NOBODY: u32 = 65534;

    fn cred(uid: u32) -> Ucred {
        Ucred {
            pid: 1234,
            uid,
            gid: uid,
        }
    }

    #[test]
    fn root_and_containerd_only() {
        // containerd as root (normal operation): only root.
        assert!(allowed(cred(0), 0));
        assert!(!allowed(cred(1000), 0));
        assert!(!allowed(cred(NOBODY), 0));
        // containerd as another user (rootless): that user and root.
        assert!(allowed(cred(1000), 1000));
        assert!(allowed(cred(0), 1000));
        assert!(!allowed(cred(1001), 1000));
        assert!(!allowed(cred(NOBODY), 1000));
        // The gid plays no part.
        let root_uid_other_gid = Ucred {
            pid: 1,
            uid: 0,
            gid: 100,
        };
        assert!(allowed(root_uid_other_gid, 0));
        let other_uid_root_gid = Ucred {
            pid: 1,
            uid: 1000,
            gid: 0,
        };
        assert!(!allowed(other_uid_root_gid, 0));
    }

    /// A directory everyone may enter, with a socket anyone may connect to (so the
    /// refusal is the peer check's, not the file permissions').
    fn socket_dir() -> (PathBuf, PathBuf) {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mypod-peer-t-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sock = dir.join("s");
        (dir, sock)
    }

    fn open_to_all(sock: &Path) {
        std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    }

    /// The child's exit codes.
    const CLOSED: i32 = 10; // the server closed the connection without a reply
    const REPLIED: i32 = 11; // the server sent something back
    const NO_SETUID: i32 = 64;
    const NO_CONNECT: i32 = 65;
    const NO_WRITE: i32 = 66;
    const READ_ERROR: i32 = 67;

    /// Forks a child that (with `uid`, drops to it: all of real, effective and saved)
    /// connects to `sock`, writes `send`, and reads until the server replies or closes.
    /// Returns its exit code (see the constants above); a child stuck for 10 s is killed
    /// by SIGALRM, which fails the test.
    fn client_child(sock: &Path, uid: Option<u32>, send: &[u8]) -> i32 {
        let path = CString::new(sock.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: an all-zero sockaddr_un is a valid value.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        let bytes = path.as_bytes_with_nul();
        assert!(bytes.len() <= addr.sun_path.len());
        for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
            *d = *s as libc::c_char;
        }
        let addr_len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: the child makes raw system calls only, on memory prepared before the
        // fork, and ends with _exit: nothing it does needs the parent's other threads.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                libc::alarm(10);
                if let Some(uid) = uid {
                    if libc::setresgid(uid, uid, uid) != 0 || libc::setresuid(uid, uid, uid) != 0 {
                        libc::_exit(NO_SETUID);
                    }
                }
                let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
                let a = &addr as *const libc::sockaddr_un as *const libc::sockaddr;
                if s < 0 || libc::connect(s, a, addr_len) != 0 {
                    libc::_exit(NO_CONNECT);
                }
                if !send.is_empty()
                    && libc::write(s, send.as_ptr().cast(), send.len()) != send.len() as isize
                {
                    libc::_exit(NO_WRITE);
                }
                let mut buf = [0u8; 64];
                let n = libc::read(s, buf.as_mut_ptr().cast(), buf.len());
                if n > 0 {
                    libc::_exit(REPLIED);
                }
                // Closing a socket with unread data resets the connection.
                let closed = n == 0 || *libc::__errno_location() == libc::ECONNRESET;
                libc::_exit(if closed { CLOSED } else { READ_ERROR })
            }
        }
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        match status {
            nix::sys::wait::WaitStatus::Exited(_, code) => code,
            other => panic!("client child: {other:?}"),
        }
    }

    /// Accepts one connection from a child client as `uid` and runs the hook on it.
    fn hook_on_child_connection(uid: Option<u32>) -> Result<Ucred, HookError> {
        let (dir, sock) = socket_dir();
        let listener = UnixListener::bind(&sock).unwrap();
        open_to_all(&sock);
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let hook = PeerCheck { containerd_uid: 0 };
            // What ttrpc does: hand the hook the accepted socket's fd.
            let verdict = hook.on_accept(conn.as_raw_fd()).map(|_| ());
            let peer = peer_cred(conn.as_fd()).unwrap();
            drop(conn);
            verdict.map(|()| peer)
        });
        let code = client_child(&sock, uid, b"");
        let verdict = server.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(code, CLOSED, "client child exit code");
        verdict
    }

    fn require_root() {
        assert_eq!(
            nix::unistd::geteuid().as_raw(),
            0,
            "these tests drop to uid {NOBODY}: run them as root"
        );
    }

    #[test]
    fn hook_accepts_root_over_a_real_socket() {
        require_root();
        let peer = hook_on_child_connection(None).unwrap();
        assert_eq!(peer.uid, 0);
        assert_ne!(peer.pid, std::process::id() as i32, "the child's pid");
    }

    #[test]
    fn hook_refuses_another_uid_over_a_real_socket() {
        require_root();
        match hook_on_child_connection(Some(NOBODY)) {
            Err(HookError::Rejected(msg)) => assert!(msg.contains("uid 65534"), "{msg}"),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    /// The smallest ttrpc request: a 10-byte header (length 0, stream 1, type REQUEST,
    /// no flags) and an empty `Request`. A server that reads it replies with an error
    /// status ("service does not exist").
    const EMPTY_REQUEST: [u8; 10] = [0, 0, 0, 0, 0, 0, 0, 1, 1, 0];

    /// Through ttrpc itself, as serve.rs sets it up (`add_unix_listener` + the hook): a
    /// client as `uid` sends a request; returns the child's exit code.
    fn request_through_server(uid: Option<u32>) -> i32 {
        let (dir, sock) = socket_dir();
        let listener = UnixListener::bind(&sock).unwrap();
        open_to_all(&sock);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let code = rt.block_on(async {
            let fd = std::os::fd::IntoRawFd::into_raw_fd(listener);
            // SAFETY: `fd` is the listener just bound, released to the server.
            let server = unsafe { ttrpc::asynchronous::Server::new().add_unix_listener(fd) };
            let mut server = server
                .unwrap()
                .set_accept_hook(PeerCheck { containerd_uid: 0 });
            server.start().await.unwrap();
            let sock = sock.clone();
            let code =
                tokio::task::spawn_blocking(move || client_child(&sock, uid, &EMPTY_REQUEST))
                    .await
                    .unwrap();
            server.shutdown().await.unwrap();
            code
        });
        std::fs::remove_dir_all(&dir).unwrap();
        code
    }

    #[test]
    fn server_serves_root() {
        require_root();
        assert_eq!(request_through_server(None), REPLIED);
    }

    #[test]
    fn server_closes_another_uids_connection_unread() {
        require_root();
        assert_eq!(request_through_server(Some(NOBODY)), CLOSED);
    }
}
