//! The container's stdio from the paths containerd passes: FIFOs, `file://` URIs,
//! or nothing (/dev/null).
//!
//! The process gets the FIFOs themselves — no copy threads in the shim. The shim keeps
//! a read end of stdout/stderr open so a writer never gets SIGPIPE while containerd
//! restarts (as runc-v2 does), and a write end of stdin so the process does not see
//! EOF before containerd connects; [`Stdio::close_stdin`] (CloseIO) lets EOF through.

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Errors opening stdio.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("open {what} {path:?}: {source}")]
    Open {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} {path:?}: the binary:// log driver is not supported yet")]
    Binary { what: &'static str, path: String },
}

/// The stdio paths of a process as containerd names them ("" = none).
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

/// Opened stdio: fds for the process and fds the shim holds.
#[derive(Debug)]
pub struct Stdio {
    /// stdin, stdout, stderr of the process, until handed over.
    child: Option<[OwnedFd; 3]>,
    /// Held while the process runs (stdout/stderr read ends).
    holds: Vec<OwnedFd>,
    /// The stdin write end held until CloseIO.
    stdin_hold: Option<OwnedFd>,
}

fn open_err<'a>(
    what: &'static str,
    path: &'a str,
) -> impl FnOnce(std::io::Error) -> StdioError + 'a {
    move |source| StdioError::Open {
        what,
        path: path.to_string(),
        source,
    }
}

fn dev_null(write: bool) -> Result<OwnedFd, StdioError> {
    Ok(OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map_err(open_err("/dev/null", "/dev/null"))?
        .into())
}

impl Stdio {
    /// Opens the three streams.
    pub fn open(paths: &StdioPaths) -> Result<Stdio, StdioError> {
        let mut holds = Vec::new();
        let (stdin, stdin_hold) = if paths.stdin.is_empty() {
            (dev_null(false)?, None)
        } else {
            let p = &paths.stdin;
            // Open the read end without waiting for a writer, then hold a write end
            // so the process does not read EOF before containerd starts writing.
            let r = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(p)
                .map_err(open_err("stdin", p))?;
            let w = OpenOptions::new()
                .write(true)
                .open(p)
                .map_err(open_err("stdin", p))?;
            clear_nonblock(&r);
            (r.into(), Some(w.into()))
        };
        let stdout = Self::output("stdout", &paths.stdout, &mut holds)?;
        let stderr = Self::output("stderr", &paths.stderr, &mut holds)?;
        Ok(Stdio {
            child: Some([stdin, stdout, stderr]),
            holds,
            stdin_hold,
        })
    }

    fn output(
        what: &'static str,
        path: &str,
        holds: &mut Vec<OwnedFd>,
    ) -> Result<OwnedFd, StdioError> {
        if path.is_empty() {
            return dev_null(true);
        }
        if let Some(file) = path.strip_prefix("file://") {
            return Ok(OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(file)
                .map_err(open_err(what, path))?
                .into());
        }
        if path.starts_with("binary://") {
            return Err(StdioError::Binary {
                what,
                path: path.to_string(),
            });
        }
        let p = path.strip_prefix("fifo://").unwrap_or(path);
        if !Path::new(p).exists() {
            return Err(open_err(what, path)(std::io::ErrorKind::NotFound.into()));
        }
        // O_RDWR never blocks on a FIFO and keeps a reader alive; the process
        // then gets a plain write end, which opens at once because a reader exists.
        let hold = OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .map_err(open_err(what, path))?;
        let w = OpenOptions::new()
            .write(true)
            .open(p)
            .map_err(open_err(what, path))?;
        holds.push(hold.into());
        Ok(w.into())
    }

    /// Hands the process's ends over (once): the shim must not keep them, or
    /// readers would never see EOF.
    pub fn take_child(&mut self) -> Option<[OwnedFd; 3]> {
        self.child.take()
    }

    /// CloseIO: drop the held stdin write end so the process can read EOF.
    pub fn close_stdin(&mut self) {
        self.stdin_hold = None;
    }

    /// The process has exited: let readers see EOF.
    pub fn release(&mut self) {
        self.holds.clear();
        self.stdin_hold = None;
    }

    /// Whether stdin is still held open.
    pub fn stdin_open(&self) -> bool {
        self.stdin_hold.is_some()
    }
}

fn clear_nonblock(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let fd = f.as_raw_fd();
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn fifo(dir: &Path, name: &str) -> String {
        let p = dir.join(name);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        p.to_string_lossy().into_owned()
    }

    #[test]
    fn fifo_output_reaches_reader_and_ends_after_release() {
        let dir = std::env::temp_dir().join(format!("mypod-stdio-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = fifo(&dir, "out");
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&out)
            .unwrap();
        clear_nonblock(&reader);
        let mut s = Stdio::open(&StdioPaths {
            stdout: out.clone(),
            ..Default::default()
        })
        .unwrap();
        let [_, stdout, _] = s.take_child().unwrap();
        let mut w = std::fs::File::from(stdout);
        w.write_all(b"hello").unwrap();
        drop(w);
        s.holds.clear();
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn binary_uri_is_refused_clearly() {
        let e = Stdio::open(&StdioPaths {
            stdout: "binary:///bin/logger?x=1".into(),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("binary://"), "{e}");
    }
}
