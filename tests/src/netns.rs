//! A private network namespace for a CRI-enabled containerd instance, so that nothing of pod
//! networking (bridge, veths, routes, the CRI stream server's port) touches the host's.
//!
//! The namespace is made by a short-lived thread (`unshare(CLONE_NEWNET)` affects only the
//! calling thread), which brings its `lo` up and hands back an fd to it. Nothing is mounted:
//! no `/run/netns` entry, no bind mount. containerd joins it with `setns` between fork and exec
//! (`Command::pre_exec`), so it keeps the host's mount namespace (unlike `ip netns exec`, whose
//! private mount namespace would hide containerd's mounts from the harness and its cleanup).
//! Shims and CNI plugins inherit it from containerd; pods get their own namespaces from CRI.
//! The namespace disappears by itself once the fd is closed and no process is left in it, so a
//! test process that is killed outright leaves nothing that the next sweep cannot find (every
//! process in it is also a process of the instance: see `pids_in`).

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use crate::procfs;

/// An unnamed network namespace held open by an fd.
pub struct NetNs {
    fd: OwnedFd,
    ino: u64,
}

impl NetNs {
    /// Creates a new network namespace with `lo` up.
    pub fn new() -> io::Result<NetNs> {
        std::thread::spawn(|| -> io::Result<NetNs> {
            // SAFETY: unshare(2) with CLONE_NEWNET only moves this (fresh, soon ending) thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let file = File::open("/proc/thread-self/ns/net")?;
            let ino = file.metadata()?.ino();
            lo_up()?;
            Ok(NetNs {
                fd: file.into(),
                ino,
            })
        })
        .join()
        .map_err(|_| io::Error::other("netns thread panicked"))?
    }

    /// The namespace's inode number (what `readlink /proc/PID/ns/net` shows as `net:[INO]`).
    pub fn inode(&self) -> u64 {
        self.ino
    }

    /// `net:[INO]`, as `readlink /proc/PID/ns/net` prints it.
    pub fn link_text(&self) -> String {
        format!("net:[{}]", self.ino)
    }

    /// Makes `cmd` join this namespace between fork and exec.
    pub fn enter_on_spawn(&self, cmd: &mut Command) {
        let fd = self.fd.as_raw_fd();
        // SAFETY: the closure only calls setns(2), which is async-signal-safe; `fd` stays open
        // (and is inherited across fork) for as long as `self` lives, which outlives the spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }

    /// A TCP connection to `addr` made from inside this namespace (a socket belongs to the
    /// namespace it was created in, so a short-lived thread joins the namespace, connects and
    /// hands the socket back; it works from any thread afterwards). For servers that listen on
    /// the namespace's loopback, such as CRI's stream server.
    pub fn connect_tcp(&self, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let fd = self.fd.as_raw_fd();
        std::thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: setns(2) on an fd that `self` keeps open for the scope's duration;
                // it moves only this thread, which ends right after connecting.
                if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                TcpStream::connect_timeout(&addr, timeout)
            })
            .join()
            .map_err(|_| io::Error::other("netns connect thread panicked"))?
        })
    }

    /// A network sysctl's value in this namespace (`net.ipv4.ip_forward` → its file).
    pub fn sysctl(&self, key: &str) -> String {
        let mut cmd = Command::new("cat");
        cmd.arg(format!("/proc/sys/{}", key.replace('.', "/")));
        self.enter_on_spawn(&mut cmd);
        match cmd.output() {
            Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            Err(e) => format!("cat {key}: {e}"),
        }
    }

    /// Processes whose network namespace is this one.
    pub fn pids_in(&self) -> Vec<u32> {
        pids_in_netns(self.ino)
    }

    /// `ip ARGS...` run inside the namespace (for checks and reports); `ip` is iproute2's.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("ip");
        cmd.args(args);
        self.enter_on_spawn(&mut cmd);
        match cmd.output() {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("ip {args:?}: {e}"),
        }
    }
}

/// Processes (alive) whose /proc/PID/ns/net is `net:[ino]`.
pub fn pids_in_netns(ino: u64) -> Vec<u32> {
    let want = format!("net:[{ino}]");
    procfs::pids()
        .into_iter()
        .filter(|&p| procfs::alive(p))
        .filter(|&p| {
            std::fs::read_link(format!("/proc/{p}/ns/net"))
                .is_ok_and(|l| l.to_string_lossy() == want)
        })
        .collect()
}

/// Sets IFF_UP on `lo` of the calling thread's network namespace.
fn lo_up() -> io::Result<()> {
    // SAFETY: plain socket/ioctl/close calls on a zeroed, NUL-terminated ifreq that lives on
    // this stack frame for the duration of the calls.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr);
        if rc == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        }
        let err = io::Error::last_os_error();
        libc::close(s);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_namespace_with_lo_up() {
        // SAFETY: geteuid(2) takes nothing and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return; // needs CAP_SYS_ADMIN
        }
        let ns = NetNs::new().expect("new netns");
        let host = std::fs::read_link("/proc/self/ns/net").expect("own netns");
        assert_ne!(host.to_string_lossy(), ns.link_text());
        let mut cmd = Command::new("readlink");
        cmd.arg("/proc/self/ns/net");
        ns.enter_on_spawn(&mut cmd);
        let out = cmd.output().expect("readlink");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ns.link_text());
        let links = ns.ip(&["-o", "link", "show", "lo"]);
        assert!(links.contains("UP"), "lo should be up: {links}");
    }
}
