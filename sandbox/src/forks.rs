//! One lock between forking and asking "does this FIFO have a reader?".
//!
//! A forked child holds copies of all of the parent's descriptors, close-on-exec ones
//! included, until it execs (or exits). While it does, a FIFO read end that the shim is
//! about to close still counts as a reader, so [`crate::stdio::Stdio::release`] would
//! close the write end of output nobody has read yet, and lose it when the child execs.
//! Every fork of this library takes [`spawning`] (shared: forks may run together); the
//! reader check takes [`quiet`] (exclusive), so it never sees a half-started child.
//! `Command::spawn` and [`crate::spawn::spawn`] return only after the child has exec'd,
//! so the shared guard covers the whole window.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static FORKS: RwLock<()> = RwLock::new(());

/// Held while a child is forked and until it has exec'd or exited.
pub(crate) fn spawning() -> RwLockReadGuard<'static, ()> {
    // A panic while the lock was held poisons it but leaves nothing inconsistent: the
    // lock guards no data.
    FORKS.read().unwrap_or_else(|e| e.into_inner())
}

/// Held while checking for readers: no child of ours holds a copy of our descriptors.
pub(crate) fn quiet() -> RwLockWriteGuard<'static, ()> {
    FORKS.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::{Read, Write};
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::sync::mpsc;
    use std::time::Duration;

    use crate::stdio::{LogContext, Stdio, StdioPaths};

    /// The hazard this lock exists for, forced into its worst order: a child forked (and
    /// holding copies of every descriptor, the FIFO's read end among them) but not yet
    /// exec'd while the process's output FIFO is released. Without the lock the release
    /// would count the child's copy as a reader, close the write end and lose the
    /// output; with it, the release waits for the exec and keeps the output lingering.
    /// The order is made by pipes, not by timing: the child reports that it forked, then
    /// blocks before exec until the test lets it go, which it does only once the release
    /// has either finished (the bug) or been seen to wait (the lock).
    #[test]
    fn release_waits_for_a_forked_child_to_exec() {
        let dir = std::env::temp_dir().join(format!("mypod-forks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        nix::unistd::mkfifo(&out, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let paths = StdioPaths {
            stdout: out.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let mut stdio = Stdio::open(&paths, &LogContext::default()).unwrap();
        let [_, stdout, _] = stdio.take_child().unwrap();
        File::from(stdout).write_all(b"kept").unwrap();

        let (forked_r, forked_w) = nix::unistd::pipe().unwrap();
        let (go_r, go_w) = nix::unistd::pipe().unwrap();
        let (fr, gr) = (
            std::os::fd::AsRawFd::as_raw_fd(&forked_w),
            std::os::fd::AsRawFd::as_raw_fd(&go_r),
        );
        let spawner = std::thread::spawn(move || {
            let _forking = super::spawning();
            let mut cmd = std::process::Command::new("true");
            // SAFETY: write(2) and read(2) only, between fork and exec: async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    let mut b = [0u8; 1];
                    libc::write(fr, b"f".as_ptr().cast(), 1);
                    libc::read(gr, b.as_mut_ptr().cast(), 1);
                    Ok(())
                });
            }
            cmd.status().unwrap();
        });
        // The child exists and holds its copies until it is let go.
        let mut b = [0u8; 1];
        File::from(forked_r).read_exact(&mut b).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let releaser = std::thread::spawn(move || {
            let draining = stdio.release();
            done_tx.send(()).unwrap();
            assert!(draining.is_none(), "no reader: nothing to wait for");
            stdio.take_linger()
        });
        let released_early = done_rx.recv_timeout(Duration::from_millis(300)).is_ok();
        File::from(go_w).write_all(b"g").unwrap();
        spawner.join().unwrap();
        let linger = releaser.join().unwrap();
        assert!(
            !released_early,
            "release ran while a forked child held copies of our descriptors"
        );
        let mut linger = linger.expect("no reader: the output lingers");
        let mut reader = File::open(Path::new(&out)).unwrap();
        assert!(linger.settle());
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "kept", "nothing the process wrote was lost");
        drop((go_r, forked_w));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
