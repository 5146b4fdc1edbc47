//! Terminals: the container process opens a pty in its own devpts and sends the master to
//! the shim over a console socket (SCM_RIGHTS), as runc's console socket does.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Errors passing or resizing a terminal.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{what}: {errno}")]
    Sys {
        what: &'static str,
        errno: nix::Error,
    },
    #[error("no terminal fd received from the container")]
    NoFd,
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> ConsoleError {
    move |errno| ConsoleError::Sys { what, errno }
}

/// Sends `fd` over the unix socket `sock`.
pub fn send_fd(sock: RawFd, fd: RawFd) -> Result<(), ConsoleError> {
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(b"t")];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::empty(), None).map_err(sys("send terminal"))?;
    Ok(())
}

/// Receives one fd from the unix socket `sock`.
pub fn recv_fd(sock: RawFd) -> Result<OwnedFd, ConsoleError> {
    let mut buf = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(sys("receive terminal"))?;
    for c in msg.cmsgs().map_err(sys("receive terminal"))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the kernel installed this fd in our table for us alone.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(ConsoleError::NoFd)
}

/// Sets a terminal's window size (ResizePty).
pub fn resize(master: &impl AsRawFd, width: u16, height: u16) -> Result<(), ConsoleError> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives across the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(ConsoleError::Sys {
            what: "resize terminal",
            errno: nix::Error::last(),
        });
    }
    Ok(())
}

/// A new pty: (master, slave, pts number). Opened through `/dev/ptmx` of the caller's
/// mount namespace, so inside a container it belongs to the container's devpts.
pub fn open_pty() -> Result<(OwnedFd, OwnedFd, u32), ConsoleError> {
    // SAFETY: open(2) of a constant path; the fd is owned right after.
    let m = unsafe {
        libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if m < 0 {
        return Err(ConsoleError::Sys {
            what: "open /dev/ptmx",
            errno: nix::Error::last(),
        });
    }
    // SAFETY: `m` was just returned by open and is owned here only.
    let master = unsafe { OwnedFd::from_raw_fd(m) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; TIOCGPTN writes one; both outlive the calls.
    unsafe {
        if libc::ioctl(m, libc::TIOCSPTLCK, &unlock) != 0 {
            return Err(ConsoleError::Sys {
                what: "unlock pty",
                errno: nix::Error::last(),
            });
        }
    }
    let mut n: libc::c_uint = 0;
    // SAFETY: see above.
    if unsafe { libc::ioctl(m, libc::TIOCGPTN, &mut n) } != 0 {
        return Err(ConsoleError::Sys {
            what: "pty number",
            errno: nix::Error::last(),
        });
    }
    // TIOCGPTPEER opens the peer without a path lookup, so no race on /dev/pts/N.
    // SAFETY: the ioctl returns a new fd or -1.
    let s = unsafe { libc::ioctl(m, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY) };
    if s < 0 {
        return Err(ConsoleError::Sys {
            what: "open pty peer",
            errno: nix::Error::last(),
        });
    }
    // SAFETY: `s` was just returned by the kernel and is owned here only.
    let slave = unsafe { OwnedFd::from_raw_fd(s) };
    Ok((master, slave, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn pty_master_passes_over_a_socket_and_carries_data() {
        let (master, slave, _) = open_pty().unwrap();
        resize(&master, 100, 40).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        send_fd(a.as_raw_fd(), master.as_raw_fd()).unwrap();
        drop(master);
        let got = recv_fd(b.as_raw_fd()).unwrap();
        // SAFETY: winsize is plain integers: all zeroes is a valid value.
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        assert_eq!(
            // SAFETY: TIOCGWINSZ writes one winsize into `ws`, which lives across the call.
            unsafe { libc::ioctl(got.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) },
            0
        );
        assert_eq!((ws.ws_col, ws.ws_row), (100, 40));
        let mut s = std::fs::File::from(slave);
        s.write_all(b"hi\n").unwrap();
        let mut m = std::fs::File::from(got);
        let mut buf = [0u8; 8];
        let n = m.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"hi"), "{:?}", &buf[..n]);
    }
}
