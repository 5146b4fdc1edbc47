//! The host-wide pool of user-namespace id ranges: every pod gets 65536 host ids of its
//! own, disjoint from every other live pod's, whichever shim serves it.
//!
//! Slot `i` is the range `start + i * 65536 ..+ 65536`. A shim owns a slot while it holds
//! an exclusive `flock(2)` on the slot's file in the pool directory (named after the
//! range's first host id). The kernel releases the lock when the holder's descriptor is
//! closed — when the pod ends, but also when its shim is SIGKILLed or crashes — so a
//! range is never leaked for good and needs no cleanup after containerd restarts. The
//! files stay (one empty file per slot ever used): removing one while another shim opens
//! it would let two shims lock different inodes under one name.
//!
//! The descriptor is close-on-exec and never placed in a container's helper, so no
//! container can hold (or release) a pod's range.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Ids per pod.
pub const RANGE: u32 = 65536;

/// Errors taking a range.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("user namespace pool {dir}: {what}: {source}")]
    Io {
        dir: PathBuf,
        what: String,
        source: std::io::Error,
    },
    #[error(
        "user namespace pool exhausted: all {slots} ranges of {RANGE} ids from {start} are held \
         by live pods (runtime.toml [sandbox] userns_pool_size)"
    )]
    Exhausted { start: u32, slots: u32 },
    #[error("user namespace pool: {0}")]
    Invalid(String),
}

/// Where the ranges come from: `start` and `size` are multiples of [`RANGE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub dir: PathBuf,
    pub start: u32,
    pub size: u32,
}

/// A range held by this process until dropped.
#[derive(Debug)]
pub struct Lease {
    /// The first host id: container id 0 maps to it.
    pub first: u32,
    lock: File,
    /// Set by [`Lease::mark`]: the drop empties the file. A slot skipped because its last
    /// pod still runs keeps its mark.
    marked: bool,
}

/// A user namespace's identity: the device and inode of its nsfs file.
pub type NsId = (u64, u64);

impl Lease {
    /// Records the namespace mapped to this range, so that after a crash the range is
    /// not handed out while that namespace still has processes.
    pub fn mark(&mut self, ns: NsId) -> std::io::Result<()> {
        self.marked = true;
        self.lock.set_len(0)?;
        self.lock.rewind()?;
        self.lock
            .write_all(format!("{} {}\n", ns.0, ns.1).as_bytes())
    }

    /// The namespace recorded by the range's last holder, if it did not end cleanly.
    fn marked(&mut self) -> Option<NsId> {
        let mut text = String::new();
        self.lock.rewind().ok()?;
        (&self.lock).take(64).read_to_string(&mut text).ok()?;
        let mut it = text.split_whitespace().map(|w| w.parse::<u64>().ok());
        Some((it.next()??, it.next()??))
    }
}

impl Drop for Lease {
    /// The pod ended: nothing of it is left to wait for.
    fn drop(&mut self) {
        if self.marked {
            let _ = self.lock.set_len(0);
        }
    }
}

/// Whether any process is in the user namespace `ns` (a scan of `/proc`).
pub fn userns_in_use(ns: NsId) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return true;
    };
    procs.flatten().any(|e| {
        e.file_name()
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            && std::fs::metadata(e.path().join("ns/user")).is_ok_and(|m| (m.dev(), m.ino()) == ns)
            && !zombie(&e.path())
    })
}

/// A zombie keeps its namespaces until reaped but runs nothing; a pod's last processes
/// are zombies for a moment after they die, while their new parent has not reaped them.
fn zombie(proc_dir: &Path) -> bool {
    std::fs::read_to_string(proc_dir.join("stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state == 'Z' || state == 'X')
    })
}

impl Pool {
    /// Checks the bounds: whole ranges, at least one, all ids within 0..=2^31-1.
    pub fn validate(&self) -> Result<(), PoolError> {
        let bad = |m: String| Err(PoolError::Invalid(m));
        if !self.start.is_multiple_of(RANGE)
            || !self.size.is_multiple_of(RANGE)
            || self.size == 0
            || self.start == 0
        {
            return bad(format!(
                "start {} and size {} must be non-zero multiples of {RANGE} (a start of 0 \
                 would make a pod's root the host's root)",
                self.start, self.size
            ));
        }
        if u64::from(self.start) + u64::from(self.size) > 1 << 31 {
            return bad(format!(
                "start {} + size {} reaches past 2^31: ids above 2147483647 are refused",
                self.start, self.size
            ));
        }
        Ok(())
    }

    /// Takes a free range. `hint` (a pod's id hash, say) spreads concurrent starts over
    /// the slots so that they rarely try the same ones.
    pub fn take(&self, hint: u64) -> Result<Lease, PoolError> {
        self.validate()?;
        let io = |what: String| {
            let dir = self.dir.clone();
            move |source| PoolError::Io { dir, what, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io("create".into()))?;
        let slots = self.size / RANGE;
        let first_try = (hint % u64::from(slots)) as u32;
        for n in 0..slots {
            let slot = (first_try + n) % slots;
            let first = self.start + slot * RANGE;
            let path = self.dir.join(first.to_string());
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io(format!("open {}", path.display())))?;
            match file.try_lock() {
                Ok(()) => {
                    let mut lease = Lease {
                        first,
                        lock: file,
                        marked: false,
                    };
                    match lease.marked() {
                        Some(ns) if userns_in_use(ns) => {
                            log::warn!(
                                "user namespace pool: range from {first} is free but processes \
                                 of its last pod (user namespace {}:{}) still run; skipped",
                                ns.0,
                                ns.1
                            );
                            continue;
                        }
                        _ => return Ok(lease),
                    }
                }
                Err(std::fs::TryLockError::WouldBlock) => continue,
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(io(format!("lock {}", path.display()))(e))
                }
            }
        }
        Err(PoolError::Exhausted {
            start: self.start,
            slots,
        })
    }
}

/// The files of the slots held right now by any process (for checks and tests): a slot
/// whose file cannot be locked is held.
pub fn held(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = entries
        .flatten()
        .filter_map(|e| {
            let first: u32 = e.file_name().to_str()?.parse().ok()?;
            let f = File::open(e.path()).ok()?;
            match f.try_lock() {
                Ok(()) => None,
                Err(std::fs::TryLockError::WouldBlock) => Some(first),
                Err(std::fs::TryLockError::Error(e)) if e.kind() == ErrorKind::NotFound => None,
                Err(_) => None,
            }
        })
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, slots: u32) -> Pool {
        let dir = std::env::temp_dir().join(format!("mypod-pool-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Pool {
            dir,
            start: 0x7000_0000,
            size: slots * RANGE,
        }
    }

    #[test]
    fn ranges_are_disjoint_returned_on_drop_and_exhaustion_is_an_error() {
        let p = pool("basic", 3);
        let a = p.take(0).unwrap();
        let b = p.take(0).unwrap();
        let c = p.take(7).unwrap();
        let mut firsts = vec![a.first, b.first, c.first];
        firsts.sort_unstable();
        assert_eq!(firsts, [0x7000_0000, 0x7001_0000, 0x7002_0000]);
        assert_eq!(held(&p.dir), firsts);
        let e = p.take(0).unwrap_err().to_string();
        assert!(
            e.contains("exhausted") && e.contains("userns_pool_size"),
            "{e}"
        );
        let freed = b.first;
        drop(b);
        assert_eq!(p.take(0).unwrap().first, freed);
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    /// A holder that dies without any cleanup (SIGKILL) gives its range back.
    #[test]
    fn a_killed_holder_frees_its_range() {
        use std::os::fd::AsRawFd;
        let p = pool("killed", 1);
        std::fs::create_dir_all(&p.dir).unwrap();
        let path = p.dir.join(p.start.to_string());
        let file = File::create(&path).unwrap();
        let fd = file.as_raw_fd();
        // SAFETY: the child makes raw system calls only (flock, pause) and is killed; the
        // parent closes its copy of the descriptor so that the child's is the only one.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                if libc::flock(fd, libc::LOCK_EX) != 0 {
                    libc::_exit(1);
                }
                loop {
                    libc::pause();
                }
            }
        }
        drop(file);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while held(&p.dir).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never took it"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(p.take(0).is_err(), "the range is held by another process");
        let child = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL).unwrap();
        nix::sys::wait::waitpid(child, None).unwrap();
        let lease = p.take(0).unwrap();
        assert_eq!(lease.first, p.start);
        drop(lease);
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    /// A free slot still marked with a namespace that has processes (ours) is skipped;
    /// one marked with a namespace nobody is in is taken; a clean drop unmarks.
    #[test]
    fn a_range_whose_pod_still_runs_is_not_handed_out() {
        let own = std::fs::metadata("/proc/self/ns/user").unwrap();
        // As a SIGKILLed holder leaves it: unlocked, still marked.
        let p = pool("marked", 2);
        std::fs::create_dir_all(&p.dir).unwrap();
        std::fs::write(
            p.dir.join(p.start.to_string()),
            format!("{} {}\n", own.dev(), own.ino()),
        )
        .unwrap();
        let b = p.take(0).unwrap();
        assert_eq!(b.first, p.start + RANGE, "the marked slot is skipped");
        drop(b);
        assert!(
            p.take(0).is_ok_and(|l| l.first == p.start + RANGE),
            "a skipped slot keeps its mark"
        );
        std::fs::write(p.dir.join(p.start.to_string()), "1 1\n").unwrap();
        let mut c = p.take(0).unwrap();
        assert_eq!(c.first, p.start, "a namespace nobody is in does not block");
        c.mark((own.dev(), own.ino())).unwrap();
        drop(c);
        let after = std::fs::read(p.dir.join(p.start.to_string())).unwrap();
        assert!(after.is_empty(), "a clean drop unmarks");
        std::fs::remove_dir_all(&p.dir).unwrap();
    }

    #[test]
    fn bounds_are_checked() {
        let mut p = pool("bounds", 1);
        p.start = 100;
        assert!(p.validate().is_err());
        p.start = 0x7FFF_0000;
        p.size = 2 * RANGE;
        let e = p.validate().unwrap_err().to_string();
        assert!(e.contains("2147483647"), "{e}");
        p.size = 0;
        assert!(p.validate().is_err());
        p.start = 0x7FFF_0000;
        p.size = RANGE;
        p.validate().unwrap();
    }
}
