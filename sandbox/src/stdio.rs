//! A process's stdio from the URIs containerd passes: FIFO paths, `file:///path`,
//! `binary:///path?args` (a logging binary, containerd's protocol), or nothing (/dev/null).
//!
//! Without a terminal the process writes to the stdout/stderr FIFOs themselves — no copying
//! in the shim. The shim keeps a read end of them open so a writer never gets SIGPIPE while
//! containerd restarts (as runc-v2 does). stdin is a pipe the shim feeds from the stdin
//! FIFO ([`Stdio::take_stdin_copy`]), so that both the FIFO's EOF and CloseIO (which CRI
//! sends while containerd still holds the FIFO open) reach the process as EOF.
//! With a terminal the process gets the pty, and the shim copies between the FIFOs and the
//! pty master ([`Stdio::take_terminal_ends`]).

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

/// Errors opening stdio.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("open {what} {path:?}: {source}")]
    Open {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("logging binary {uri:?}: {reason}")]
    Binary { uri: String, reason: String },
}

/// The stdio paths of a process as containerd names them ("" = none).
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

/// Who the process is, for a logging binary's environment.
#[derive(Debug, Clone, Default)]
pub struct LogContext {
    pub id: String,
    pub namespace: String,
}

/// Opened stdio: fds for the process and fds the shim holds.
#[derive(Debug, Default)]
pub struct Stdio {
    /// stdin, stdout, stderr of the process, until handed over.
    child: Option<[OwnedFd; 3]>,
    /// Held while the process runs (stdout/stderr read ends).
    holds: Vec<OwnedFd>,
    /// The stdin FIFO's read end and the write end of the process's stdin pipe.
    stdin_copy: Option<(File, File)>,
    /// Terminal mode: the shim's ends (stdin FIFO to read, stdout FIFO to write).
    term_in: Option<File>,
    term_out: Option<File>,
    /// After [`Stdio::release`]: output FIFOs with no reader yet, for [`Stdio::take_linger`].
    lingering: Vec<File>,
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

/// Opens the stdin FIFO's read end without waiting for a writer (containerd's writer is
/// already counted: it opens its end before Create).
fn stdin_fifo(p: &str) -> Result<File, StdioError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)
        .map_err(open_err("stdin", p))
}

/// Opens an output FIFO: a held O_RDWR end (never blocks, keeps a reader) and a write end.
fn output_fifo(what: &'static str, path: &str) -> Result<(OwnedFd, File), StdioError> {
    let p = path.strip_prefix("fifo://").unwrap_or(path);
    if !Path::new(p).exists() {
        return Err(open_err(what, path)(std::io::ErrorKind::NotFound.into()));
    }
    let hold = OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .map_err(open_err(what, path))?;
    let w = OpenOptions::new()
        .write(true)
        .open(p)
        .map_err(open_err(what, path))?;
    Ok((hold.into(), w))
}

impl Stdio {
    /// Opens the three streams for a process without a terminal.
    pub fn open(paths: &StdioPaths, ctx: &LogContext) -> Result<Stdio, StdioError> {
        let mut s = Stdio::default();
        let stdin = if paths.stdin.is_empty() {
            dev_null(false)?
        } else {
            let fifo = stdin_fifo(&paths.stdin)?;
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| open_err("stdin pipe", &paths.stdin)(e.into()))?;
            s.stdin_copy = Some((fifo, File::from(w)));
            r
        };
        let (stdout, stderr) = if paths.stdout.starts_with("binary://") {
            binary_logger(&paths.stdout, ctx)?
        } else {
            let out = s.output("stdout", &paths.stdout)?;
            let err = s.output("stderr", &paths.stderr)?;
            (out, err)
        };
        s.child = Some([stdin, stdout, stderr]);
        Ok(s)
    }

    /// Opens the shim's ends for a process on a terminal; the process's own stdio is
    /// /dev/null until it switches to the pty.
    pub fn open_terminal(paths: &StdioPaths) -> Result<Stdio, StdioError> {
        let mut s = Stdio {
            child: Some([dev_null(false)?, dev_null(true)?, dev_null(true)?]),
            ..Default::default()
        };
        if !paths.stdin.is_empty() {
            s.term_in = Some(stdin_fifo(&paths.stdin)?);
        }
        if paths.stdout.starts_with("binary://") {
            return Err(StdioError::Binary {
                uri: paths.stdout.clone(),
                reason: "a logging binary cannot serve a terminal".into(),
            });
        }
        if !paths.stdout.is_empty() {
            let w = if let Some(file) = paths.stdout.strip_prefix("file://") {
                append_file("stdout", &paths.stdout, file)?
            } else {
                let (hold, w) = output_fifo("stdout", &paths.stdout)?;
                s.holds.push(hold);
                w
            };
            s.term_out = Some(w);
        }
        Ok(s)
    }

    fn output(&mut self, what: &'static str, path: &str) -> Result<OwnedFd, StdioError> {
        if path.is_empty() {
            return dev_null(true);
        }
        if let Some(file) = path.strip_prefix("file://") {
            return Ok(append_file(what, path, file)?.into());
        }
        let (hold, w) = output_fifo(what, path)?;
        self.holds.push(hold);
        Ok(w.into())
    }

    /// Hands the process's ends over (once): the shim must not keep them, or
    /// readers would never see EOF.
    pub fn take_child(&mut self) -> Option<[OwnedFd; 3]> {
        self.child.take()
    }

    /// Terminal mode: the stdin FIFO read end and the stdout write end, for copying.
    pub fn take_terminal_ends(&mut self) -> (Option<File>, Option<File>) {
        (self.term_in.take(), self.term_out.take())
    }

    /// The stdin FIFO (non-blocking read end) and the process's stdin pipe (write end),
    /// for the caller to copy; dropping the pipe end is EOF for the process (once).
    pub fn take_stdin_copy(&mut self) -> Option<(File, File)> {
        self.stdin_copy.take()
    }

    /// The process has exited: let readers see EOF (once; later calls find nothing).
    ///
    /// An output FIFO that no reader has opened yet is kept for [`Stdio::take_linger`]:
    /// closing it now would drop what the process wrote and leave a reader that is still
    /// opening blocked forever in open(2), waiting for a writer. A FIFO whose reader has
    /// not read everything yet comes back as [`Draining`]: its reader may still be getting
    /// ready (containerd's reader is opened by a goroutine that may not have run yet), and
    /// the exit should not be reported before it has read the output — containerd gives up
    /// on a reader that is not ready when it handles the exit, and what is in the pipe is
    /// lost.
    pub fn release(&mut self) -> Option<Draining> {
        let mut draining = Vec::new();
        // No fork of ours may hold a copy of a read end while we look for readers.
        let _quiet = crate::forks::quiet();
        for hold in self.holds.drain(..) {
            // Reopen the same FIFO as a writer through our read end (no path lookup), so
            // the buffered output survives our read end going away.
            let w = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(format!("/proc/self/fd/{}", hold.as_raw_fd()));
            drop(hold);
            if let Ok(w) = w {
                if !has_reader(&w) {
                    self.lingering.push(w);
                } else if unread(&w) > 0 {
                    draining.push(w);
                }
            }
        }
        self.stdin_copy = None;
        self.term_in = None;
        (!draining.is_empty()).then_some(Draining(draining))
    }

    /// The output FIFOs [`Stdio::release`] found without a reader (once).
    pub fn take_linger(&mut self) -> Option<Linger> {
        let keep = std::mem::take(&mut self.lingering);
        (!keep.is_empty()).then_some(Linger(keep))
    }
}

/// Write ends of output FIFOs whose process has exited before a reader opened them;
/// the caller keeps it until [`Linger::settle`] says every FIFO got a reader (which
/// then reads the output and EOF), or until the process is deleted.
#[derive(Debug)]
pub struct Linger(Vec<File>);

impl Linger {
    /// Closes the ends whose FIFO has a reader now; true when none is left.
    pub fn settle(&mut self) -> bool {
        self.0.retain(|w| !has_reader(w));
        self.0.is_empty()
    }
}

/// Write ends of output FIFOs whose reader has not yet read all the exited process
/// wrote; the caller reports the exit once [`Draining::settle`] says they are read.
#[derive(Debug)]
pub struct Draining(Vec<File>);

impl Draining {
    /// Closes the ends whose FIFO is empty now (or has lost its reader); true when none
    /// is left.
    pub fn settle(&mut self) -> bool {
        self.0.retain(|w| has_reader(w) && unread(w) > 0);
        self.0.is_empty()
    }
}

/// Bytes in a pipe not read yet (FIONREAD works on either end); 0 on error.
fn unread(w: &File) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which points at `n`.
    let r = unsafe { libc::ioctl(w.as_raw_fd(), libc::FIONREAD, &mut n) };
    if r < 0 {
        0
    } else {
        usize::try_from(n).unwrap_or(0)
    }
}

/// Whether a FIFO has a reader, seen from a write end: Linux's poll reports POLLERR on a
/// pipe writer without readers. An error counts as "yes", so nothing lingers forever on it.
fn has_reader(w: &File) -> bool {
    let mut p = libc::pollfd {
        fd: w.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll(2) on one pollfd that lives on the stack, with a zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n < 0 || p.revents & libc::POLLERR == 0
}

fn append_file(what: &'static str, uri: &str, file: &str) -> Result<File, StdioError> {
    if let Some(dir) = Path::new(file).parent() {
        std::fs::create_dir_all(dir).map_err(open_err(what, uri))?;
    }
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(file)
        .map_err(open_err(what, uri))
}

/// Decodes %XX escapes of a URI component.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Bytes, not `&s[..]`: a `%` before a multi-byte character must not split it.
        if b[i] == b'%' {
            if let (Some(hi), Some(lo)) = (hex_digit(b.get(i + 1)), hex_digit(b.get(i + 2))) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(c: Option<&u8>) -> Option<u8> {
    char::from(*c?)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// `binary:///path?k=v&k2` → (path, [k, v, k2, ""]) as containerd builds the argv.
pub fn parse_binary_uri(uri: &str) -> Option<(String, Vec<String>)> {
    let rest = uri.strip_prefix("binary://")?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !path.starts_with('/') {
        return None;
    }
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        args.push(percent_decode(k));
        args.push(percent_decode(v));
    }
    Some((percent_decode(path), args))
}

/// Starts a logging binary (containerd's protocol: stdout pipe on fd 3, stderr pipe on
/// fd 4, a ready pipe on fd 5 that it closes when ready; CONTAINER_ID and
/// CONTAINER_NAMESPACE in its env) and returns the process's stdout and stderr.
fn binary_logger(uri: &str, ctx: &LogContext) -> Result<(OwnedFd, OwnedFd), StdioError> {
    let bad = |reason: String| StdioError::Binary {
        uri: uri.to_string(),
        reason,
    };
    let (path, args) =
        parse_binary_uri(uri).ok_or_else(|| bad("not binary:///absolute/path".into()))?;
    let pipe =
        || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| bad(format!("pipe: {e}")));
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let fds = [out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()];
    let mut cmd = std::process::Command::new(&path);
    cmd.args(&args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("CONTAINER_ID", &ctx.id)
        .env("CONTAINER_NAMESPACE", &ctx.namespace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: between fork and exec only dup2 (async-signal-safe). The sources are
    // close-on-exec and numbered above 5 is not guaranteed, so move them up first.
    unsafe {
        cmd.pre_exec(move || {
            let mut high = [0; 3];
            for (i, fd) in fds.iter().enumerate() {
                high[i] = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 10);
                if high[i] < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for (i, fd) in high.iter().enumerate() {
                if libc::dup2(*fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    {
        let _forking = crate::forks::spawning();
        cmd.spawn().map_err(|e| bad(format!("start {path}: {e}")))?;
    }
    drop(cmd);
    drop(out_r);
    drop(err_r);
    drop(ready_w);
    // Wait until it closes (or writes to) the ready pipe.
    let mut pfd = libc::pollfd {
        fd: ready_r.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads one pollfd that lives across the call.
    let n = unsafe { libc::poll(&mut pfd, 1, Duration::from_secs(10).as_millis() as i32) };
    if n == 0 {
        return Err(bad("not ready within 10s".into()));
    }
    Ok((out_w, err_w))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn clear_nonblock(fd: i32) {
        // SAFETY: fcntl on an fd we own, with integer arguments only.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            if fl >= 0 {
                libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
            }
        }
    }

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
        clear_nonblock(reader.as_raw_fd());
        let paths = StdioPaths {
            stdout: out.clone(),
            ..Default::default()
        };
        let mut s = Stdio::open(&paths, &LogContext::default()).unwrap();
        let [_, stdout, _] = s.take_child().unwrap();
        let mut w = File::from(stdout);
        w.write_all(b"hello").unwrap();
        drop(w);
        let mut draining = s.release().expect("the reader has not read it yet");
        assert!(
            s.take_linger().is_none(),
            "a FIFO with a reader does not linger"
        );
        assert!(s.release().is_none(), "released once");
        assert!(!draining.settle(), "nothing read yet");
        let mut got = [0u8; 5];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        assert!(draining.settle(), "read: the write end goes");
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "", "then EOF");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn output_waits_for_a_reader_that_opens_after_exit() {
        let dir = std::env::temp_dir().join(format!("mypod-linger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = fifo(&dir, "out");
        let paths = StdioPaths {
            stdout: out.clone(),
            ..Default::default()
        };
        let mut s = Stdio::open(&paths, &LogContext::default()).unwrap();
        let [_, stdout, _] = s.take_child().unwrap();
        File::from(stdout).write_all(b"early").unwrap();
        // The process is gone before anyone opened the FIFO for reading.
        assert!(s.release().is_none(), "no reader: nothing to wait for");
        let mut linger = s.take_linger().expect("no reader yet: the output lingers");
        assert!(!linger.settle(), "still no reader");
        // A blocking open for reading succeeds only because a writer is still there.
        let mut reader = File::open(&out).unwrap();
        assert!(linger.settle(), "the reader is seen");
        let mut got = String::new();
        reader.read_to_string(&mut got).unwrap();
        assert_eq!(
            got, "early",
            "the output written before the reader came, then EOF"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn binary_uris_become_containerd_argv() {
        let (p, a) = parse_binary_uri("binary:///usr/bin/logger?file=%2Ftmp%2Fx&verbose").unwrap();
        assert_eq!(p, "/usr/bin/logger");
        assert_eq!(a, ["file", "/tmp/x", "verbose", ""]);
        assert!(parse_binary_uri("binary://relative").is_none());
    }

    #[test]
    fn a_percent_before_a_multibyte_character_is_kept_not_a_panic() {
        // `&s[i + 1..i + 3]` cut inside the `€` here and panicked the shim.
        let (_, a) = parse_binary_uri("binary:///l?tag=%a\u{20ac}&b=%\u{20ac}&c=%4").unwrap();
        assert_eq!(a, ["tag", "%a\u{20ac}", "b", "%\u{20ac}", "c", "%4"]);
        let (_, a) = parse_binary_uri("binary:///l?x=%41%2f+y").unwrap();
        assert_eq!(a, ["x", "A/ y"]);
    }

    #[test]
    fn logging_binary_receives_output() {
        let dir = std::env::temp_dir().join(format!("mypod-logbin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("logger.sh");
        let out = dir.join("out");
        std::fs::write(&script, "#!/bin/sh\nexec 5>&-\ncat <&3 > \"$2\"\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let uri = format!("binary://{}?out={}", script.display(), out.display());
        let paths = StdioPaths {
            stdout: uri.clone(),
            stderr: uri,
            ..Default::default()
        };
        let mut s = Stdio::open(&paths, &LogContext::default()).unwrap();
        let [_, stdout, _] = s.take_child().unwrap();
        File::from(stdout).write_all(b"logged\n").unwrap();
        let start = std::time::Instant::now();
        while std::fs::read_to_string(&out).unwrap_or_default() != "logged\n" {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "logger got nothing"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
