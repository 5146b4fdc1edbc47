//! The pod's socket file, as the server that bound it knows it.
//!
//! A server withdraws its socket when the pod ends and exits some time later (after its
//! events are flushed). Meanwhile `start` may bind a new server's socket at the same path
//! (a container id reused right away). Every removal therefore happens under `start`'s
//! lock and only while the path is still the file this server bound, with its pid in the
//! `.pid` file: an ending server never takes away the next one's socket.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The bound socket's path and the identity (device, inode) of the file bind made.
#[derive(Debug, Clone)]
pub struct BoundSocket {
    path: PathBuf,
    file: Option<(u64, u64)>,
}

impl BoundSocket {
    /// Records the file just bound at `path` (call under `start`'s lock, right after bind).
    pub fn record(path: &Path) -> BoundSocket {
        BoundSocket {
            path: path.to_path_buf(),
            file: identity(path),
        }
    }

    /// Removes the socket and its `.pid` file if they are still this server's (`pid`).
    pub fn withdraw(&self, pid: u32) {
        let _lock = crate::start::lock(&self.path);
        if self.is_ours(pid) {
            let _ = fs::remove_file(&self.path);
            let _ = fs::remove_file(self.path.with_extension("pid"));
        }
    }

    /// The path is the file recorded and the pid file, if any, names `pid`.
    fn is_ours(&self, pid: u32) -> bool {
        let same_file = self.file.is_some() && identity(&self.path) == self.file;
        let pid_file = fs::read_to_string(self.path.with_extension("pid"));
        let our_pid = match &pid_file {
            Ok(text) => text.trim().parse::<u32>().ok() == Some(pid),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        same_file && our_pid
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mypod-sock-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn withdraw_removes_its_own_socket_and_pid_file() {
        let d = dir("own");
        let path = d.join("pod");
        let _l = UnixListener::bind(&path).unwrap();
        fs::write(path.with_extension("pid"), "42").unwrap();
        let b = BoundSocket::record(&path);
        b.withdraw(42);
        assert!(!path.exists() && !path.with_extension("pid").exists());
        fs::remove_dir_all(&d).unwrap();
    }

    /// The next server's socket at the same path survives the old server's withdraw: a
    /// new file, and a pid file naming another process, each keep it.
    #[test]
    fn withdraw_leaves_a_newer_servers_socket() {
        let d = dir("newer");
        let path = d.join("pod");
        let old = UnixListener::bind(&path).unwrap();
        fs::write(path.with_extension("pid"), "42").unwrap();
        let b = BoundSocket::record(&path);
        b.withdraw(42);
        drop(old);
        // The next server binds the same path and writes its pid.
        let _new = UnixListener::bind(&path).unwrap();
        fs::write(path.with_extension("pid"), "43").unwrap();
        b.withdraw(42);
        assert!(path.exists(), "a new file at the path is not ours");
        assert_eq!(
            fs::read_to_string(path.with_extension("pid")).unwrap(),
            "43"
        );
        // Same file, another pid: not ours either.
        let same = BoundSocket::record(&path);
        same.withdraw(42);
        assert!(path.exists(), "the pid file names another server");
        same.withdraw(43);
        assert!(!path.exists());
        fs::remove_dir_all(&d).unwrap();
    }
}
