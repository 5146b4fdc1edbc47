//! The process's terminal: a pty from the container's own devpts, its master sent to the
//! shim, its slave made the controlling terminal and stdio (and /dev/console for init).

use std::os::fd::AsRawFd;

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Process;

use super::{Context, InitError};
use crate::console;

/// Opens the pty, sends the master over `console_fd`, and switches stdio to the slave.
pub fn setup(console_fd: i32, process: &Process, bind_console: bool) -> Result<(), InitError> {
    let (master, slave, n) =
        console::open_pty().map_err(|e| InitError::Invalid(format!("process.terminal: {e}")))?;
    if let Some(size) = process.console_size() {
        console::resize(&master, size.width() as u16, size.height() as u16)
            .map_err(|e| InitError::Invalid(format!("process.consoleSize: {e}")))?;
    }
    if bind_console {
        let pts = format!("/dev/pts/{n}");
        if std::fs::symlink_metadata("/dev/console").is_err() {
            std::fs::File::create("/dev/console").ctx(|| "create /dev/console".into())?;
        }
        mount(
            Some(pts.as_str()),
            "/dev/console",
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .ctx(|| format!("bind {pts} to /dev/console"))?;
    }
    console::send_fd(console_fd, master.as_raw_fd())
        .map_err(|e| InitError::Invalid(format!("process.terminal: {e}")))?;
    drop(master);
    // The console socket is no longer needed.
    let _ = nix::unistd::close(console_fd);
    let s = slave.as_raw_fd();
    // SAFETY: TIOCSCTTY takes an int argument; we are a session leader (setsid).
    if unsafe { libc::ioctl(s, libc::TIOCSCTTY, 0) } != 0 {
        return Err(InitError::Sys {
            what: "make the pty the controlling terminal".into(),
            errno: nix::Error::last(),
        });
    }
    for target in 0..3 {
        nix::unistd::dup2(s, target).ctx(|| format!("dup2 pty to fd {target}"))?;
    }
    Ok(())
}
