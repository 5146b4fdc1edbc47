//! OOM-kill notification for a container's cgroup, as a pollable file descriptor.
//!
//! v1: an eventfd registered for `memory.oom_control` through `cgroup.event_control`
//! (the kernel signals it when the cgroup hits its limit, and when the cgroup is removed).
//! v2: inotify on `memory.events`, whose `oom_kill` counter is compared with the last value
//! seen. The caller polls [`OomWatcher`]'s fd for readability (it is non-blocking) and then
//! calls [`OomWatcher::check`].

use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::placement::Cgroup;

/// Errors setting up OOM notification.
#[derive(Debug, thiserror::Error)]
pub enum OomError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> OomError + 'a {
    move |source| OomError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// What [`OomWatcher::check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomCheck {
    /// Processes were OOM-killed (v2: how many; v1: at least one OOM event).
    Oom(u64),
    /// Woken for nothing of interest.
    Nothing,
    /// The cgroup is gone: stop watching.
    Gone,
}

enum Kind {
    V1 { control: PathBuf },
    V2 { events: PathBuf, last: u64 },
}

/// A pollable OOM watch on one cgroup.
pub struct OomWatcher {
    fd: OwnedFd,
    kind: Kind,
}

impl std::fmt::Debug for OomWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OomWatcher")
            .field("fd", &self.fd.as_raw_fd())
            .finish()
    }
}

impl AsRawFd for OomWatcher {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The `oom_kill` counter of v2 `memory.events` (or v1 `memory.oom_control`) text.
pub fn oom_kill_count(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

impl OomWatcher {
    /// Starts watching `cg`; `None` when it has no memory controller.
    pub fn new(cg: &Cgroup) -> Result<Option<OomWatcher>, OomError> {
        let Some(dir) = cg.controller_dir("memory") else {
            return Ok(None);
        };
        if cg.v2 {
            Self::new_v2(dir).map(Some)
        } else {
            Self::new_v1(dir).map(Some)
        }
    }

    fn new_v1(dir: &Path) -> Result<OomWatcher, OomError> {
        let control = dir.join("memory.oom_control");
        let oc = fs::File::open(&control).map_err(io_err("open", &control))?;
        // SAFETY: eventfd(2) takes no pointers; the result is checked before use.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if efd < 0 {
            return Err(io_err("eventfd for", &control)(
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: efd is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(efd) };
        let ec = dir.join("cgroup.event_control");
        fs::write(&ec, format!("{} {}", fd.as_raw_fd(), oc.as_raw_fd()))
            .map_err(io_err("register OOM event in", &ec))?;
        Ok(OomWatcher {
            fd,
            kind: Kind::V1 { control },
        })
    }

    fn new_v2(dir: &Path) -> Result<OomWatcher, OomError> {
        let events = dir.join("memory.events");
        let last = oom_kill_count(&fs::read_to_string(&events).map_err(io_err("read", &events))?);
        // SAFETY: inotify_init1(2) takes no pointers; the result is checked before use.
        let ifd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if ifd < 0 {
            return Err(io_err("inotify for", &events)(
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: ifd is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(ifd) };
        let mut cpath = events.as_os_str().as_bytes().to_vec();
        cpath.push(0);
        // SAFETY: cpath is NUL-terminated and outlives the call.
        let wd = unsafe {
            libc::inotify_add_watch(
                fd.as_raw_fd(),
                cpath.as_ptr().cast(),
                libc::IN_MODIFY | libc::IN_DELETE_SELF,
            )
        };
        if wd < 0 {
            return Err(io_err("watch", &events)(std::io::Error::last_os_error()));
        }
        Ok(OomWatcher {
            fd,
            kind: Kind::V2 { events, last },
        })
    }

    /// Drains the fd and says what happened. Never blocks.
    pub fn check(&mut self) -> OomCheck {
        let mut buf = [0u8; 4096];
        let mut woken = false;
        let mut ignored = false;
        loop {
            // SAFETY: buf is valid for buf.len() bytes; the fd is ours and non-blocking.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            woken = true;
            if let Kind::V2 { .. } = self.kind {
                ignored |= inotify_ignored(&buf[..n as usize]);
            } else {
                break;
            }
        }
        match &mut self.kind {
            Kind::V1 { control } => {
                if !woken {
                    return OomCheck::Nothing;
                }
                // The eventfd also fires when the cgroup is removed.
                if !control.exists() {
                    return OomCheck::Gone;
                }
                OomCheck::Oom(1)
            }
            Kind::V2 { events, last } => match fs::read_to_string(&*events) {
                Ok(text) => {
                    let now = oom_kill_count(&text);
                    if now > *last {
                        let n = now - *last;
                        *last = now;
                        OomCheck::Oom(n)
                    } else if ignored {
                        OomCheck::Gone
                    } else {
                        OomCheck::Nothing
                    }
                }
                Err(e) if e.kind() == ErrorKind::NotFound => OomCheck::Gone,
                Err(_) if ignored => OomCheck::Gone,
                Err(_) => OomCheck::Nothing,
            },
        }
    }
}

/// True if an inotify event buffer holds IN_IGNORED or IN_DELETE_SELF (the watch is gone).
fn inotify_ignored(buf: &[u8]) -> bool {
    let head = std::mem::size_of::<libc::inotify_event>();
    let mut off = 0;
    while off + head <= buf.len() {
        // SAFETY: at least `head` bytes remain at `off`; read_unaligned copes with the
        // byte buffer's alignment.
        let ev: libc::inotify_event =
            unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
        if ev.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF) != 0 {
            return true;
        }
        off += head + ev.len as usize;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters() {
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n"),
            2
        );
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 7\n"),
            7
        );
        assert_eq!(oom_kill_count(""), 0);
    }

    #[test]
    fn v2_counter_over_fake_files() {
        let dir = std::env::temp_dir().join(format!("mypod-oom-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("memory.events"), "oom 0\noom_kill 0\n").unwrap();
        let cg = Cgroup {
            dirs: vec![(String::new(), dir.clone())],
            v2: true,
            unified: None,
        };
        let mut w = OomWatcher::new(&cg).unwrap().unwrap();
        assert_eq!(w.check(), OomCheck::Nothing);
        fs::write(dir.join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
        assert_eq!(w.check(), OomCheck::Oom(1));
        assert_eq!(w.check(), OomCheck::Nothing);
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(w.check(), OomCheck::Gone);
    }
}
