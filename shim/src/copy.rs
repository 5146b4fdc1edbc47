//! The copying the shim does, on its one thread (non-blocking fds registered with tokio):
//! stdin FIFO → the process's stdin pipe, and for terminals stdin FIFO → pty master →
//! stdout FIFO. stdin ends at the FIFO's EOF or at CloseIO (the returned [`StdinCloser`]);
//! on a terminal that becomes ^D. Terminal output ends when the pty has no slave left (EIO),
//! which closes the stdout FIFO.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use mypod_sandbox::stdio::{Draining, Linger};
use mypod_sandbox::ExitStatus;
use tokio::io::unix::AsyncFd;
use tokio::sync::{oneshot, watch};

/// CloseIO for a copy: sending (or dropping) ends the stdin copy.
pub type StdinCloser = oneshot::Sender<()>;

/// The pty master shared by the copy tasks and ResizePty.
pub type Master = Arc<AsyncFd<File>>;

fn set_nonblock(fd: i32) {
    // SAFETY: fcntl with integer arguments on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

fn async_fd(f: File) -> std::io::Result<AsyncFd<File>> {
    set_nonblock(f.as_raw_fd());
    // SAFETY: the File owns its fd, which stays open and unchanged until the AsyncFd
    // (which owns the File) is dropped.
    unsafe { AsyncFd::register(f) }.map_err(std::io::Error::from)
}

/// Starts copying the stdin FIFO into the process's stdin pipe.
pub fn stdin(fifo: File, pipe: File) -> std::io::Result<StdinCloser> {
    let (tx, rx) = oneshot::channel();
    let fifo = async_fd(fifo)?;
    let pipe = Arc::new(async_fd(pipe)?);
    tokio::spawn(copy_in(fifo, pipe, rx, None));
    Ok(tx)
}

/// Starts the terminal copy tasks; returns the master for resizing and the stdin closer.
pub fn terminal(
    master: OwnedFd,
    stdin: Option<File>,
    stdout: Option<File>,
) -> std::io::Result<(Master, Option<StdinCloser>)> {
    let master: Master = Arc::new(async_fd(File::from(master))?);
    if let Some(out) = stdout {
        let out = async_fd(out)?;
        tokio::spawn(copy_out(master.clone(), out));
    }
    let mut closer = None;
    if let Some(input) = stdin {
        let (tx, rx) = oneshot::channel();
        let input = async_fd(input)?;
        tokio::spawn(copy_in(input, master.clone(), rx, Some(4)));
        closer = Some(tx);
    }
    Ok((master, closer))
}

async fn read_some(src: &AsyncFd<File>, buf: &mut [u8]) -> std::io::Result<usize> {
    // Read before waiting: a FIFO whose writer left before we opened it never signals
    // readiness (no EPOLLHUP), but read(2) says EOF at once.
    match src.get_ref().read(buf) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        r => return r,
    }
    loop {
        let mut guard = src.readable().await?;
        match guard.try_io(|f| f.get_ref().read(buf)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn write_all(dst: &AsyncFd<File>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut guard = dst.writable().await?;
        match guard.try_io(|f| f.get_ref().write(data)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

async fn copy_out(master: Master, out: AsyncFd<File>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match read_some(&master, &mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                if let Err(e) = write_all(&out, &buf[..n]).await {
                    log::warn!("terminal output: {e}");
                    break;
                }
            }
            // EIO: every slave is closed (the process and its children are gone).
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => {
                log::warn!("terminal read: {e}");
                break;
            }
        }
    }
}

/// Copies until EOF or `close`; then writes `eof` (^D for a terminal) or just drops `dst`,
/// which the process reads as EOF.
async fn copy_in(
    input: AsyncFd<File>,
    dst: Arc<AsyncFd<File>>,
    mut close: oneshot::Receiver<()>,
    eof: Option<u8>,
) {
    let mut buf = vec![0u8; 8 * 1024];
    let mut closing = false;
    loop {
        let n = if closing {
            // CloseIO: pass on what is already in the FIFO, then stop.
            match input.get_ref().read(&mut buf) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                r => r,
            }
        } else {
            tokio::select! {
                r = read_some(&input, &mut buf) => r,
                _ = &mut close => {
                    closing = true;
                    continue;
                }
            }
        };
        match n {
            Ok(0) => break,
            Ok(n) => {
                if write_all(&dst, &buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                log::debug!("stdin copy: {e}");
                break;
            }
        }
    }
    if let Some(c) = eof {
        let _ = write_all(&dst, &[c]).await;
    }
}

/// Keeps an exited process's unread output FIFOs open until their readers have opened
/// them (checked with backoff), or until the process is deleted (`gone` closes).
pub fn linger(mut l: Linger, mut gone: watch::Receiver<Option<ExitStatus>>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        let mut wait = std::time::Duration::from_millis(2);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                r = gone.changed() => if r.is_err() { return },
            }
            if l.settle() {
                return;
            }
            wait = (wait * 2).min(std::time::Duration::from_millis(500));
        }
    });
}

/// Waits until an exited process's output has been read from its FIFOs (checked every
/// 1–16 ms), for at most `max`; true when it was.
pub async fn drained(mut d: Draining, max: std::time::Duration) -> bool {
    let until = tokio::time::Instant::now() + max;
    let mut wait = std::time::Duration::from_millis(1);
    while !d.settle() {
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_millis(16));
    }
    true
}
