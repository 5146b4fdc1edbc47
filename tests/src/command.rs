//! Running child processes (mostly `ctr`) with a deadline, capturing their output.

use std::fmt;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Default deadline for one `ctr` call: a hung shim fails the test instead of hanging CI.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished (or killed) command did.
#[derive(Clone, Debug)]
pub struct Output {
    pub argv: String,
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
    /// Signal that ended it, if any.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// True if it ran past its deadline and was killed.
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The exit code; panics with the whole output if it did not exit normally.
    pub fn exit_code(&self) -> i32 {
        match self.code {
            Some(c) => c,
            None => panic!("expected an exit code:\n{self}"),
        }
    }

    /// Panics with the whole output unless it exited 0.
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed:\n{self}");
        self
    }

    /// Panics with the whole output unless it exited non-zero (and was not killed by our deadline).
    pub fn assert_failure(&self) -> &Self {
        assert!(!self.timed_out, "command hung:\n{self}");
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "command was expected to fail but did not:\n{self}"
        );
        self
    }

    /// stdout and stderr together, for loose error matching.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match (self.timed_out, self.code, self.signal) {
            (true, _, _) => "TIMED OUT and was killed".to_string(),
            (_, Some(c), _) => format!("exited {c}"),
            (_, _, Some(s)) => format!("killed by signal {s}"),
            _ => "ended in an unknown way".to_string(),
        };
        writeln!(f, "$ {}", self.argv)?;
        writeln!(f, "  {how} after {:.2?}", self.elapsed)?;
        writeln!(f, "  --- stdout ---\n{}", indent(&self.stdout))?;
        write!(f, "  --- stderr ---\n{}", indent(&self.stderr))
    }
}

fn indent(s: &str) -> String {
    if s.is_empty() {
        return "  (empty)".to_string();
    }
    s.lines()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Shell-like rendering of a command line, for messages.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"$;&|".contains(c)) {
            format!("'{}'", a.replace('\'', r"'\''"))
        } else {
            a.into_owned()
        }
    }));
    parts.join(" ")
}

/// A child process whose stdout and stderr are being collected.
pub struct Spawned {
    child: Child,
    argv: String,
    start: Instant,
    out: mpsc::Receiver<Vec<u8>>,
    err: mpsc::Receiver<Vec<u8>>,
    done: bool,
}

impl Spawned {
    /// Starts `cmd` with stdin from /dev/null and stdout/stderr captured.
    pub fn start(mut cmd: Command) -> Spawned {
        cmd.stdin(Stdio::null());
        Spawned::spawn(cmd)
    }

    /// Starts `cmd` with stdin a pipe that stays open, with nothing written to it, until
    /// [`Spawned::close_stdin`] (or the end).
    pub fn start_holding_stdin(mut cmd: Command) -> Spawned {
        cmd.stdin(Stdio::piped());
        Spawned::spawn(cmd)
    }

    /// Closes the child's stdin (EOF), if it is a pipe of ours.
    pub fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Starts `cmd` with stdout/stderr captured and stdin as the caller set it.
    fn spawn(mut cmd: Command) -> Spawned {
        let argv = describe(&cmd);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{argv}`: {e}"));
        let out = reader(child.stdout.take().expect("stdout is piped"));
        let err = reader(child.stderr.take().expect("stderr is piped"));
        Spawned {
            child,
            argv,
            start,
            out,
            err,
            done: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the child has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the child up to `timeout`; past it, kills the child (by its pid) and reports
    /// `timed_out`.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let mut timed_out = false;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if self.start.elapsed() >= timeout => {
                    timed_out = true;
                    let _ = self.child.kill();
                    break self.child.wait().expect("wait for a killed child");
                }
                Ok(None) => thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("waiting for `{}`: {e}", self.argv),
            }
        };
        self.done = true;
        let elapsed = self.start.elapsed();
        // A grandchild could keep the pipes open: do not wait for it forever.
        let grab = |rx: &mpsc::Receiver<Vec<u8>>| {
            let bytes = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| {
                b"<output not collected: pipe still held open by another process>".to_vec()
            });
            String::from_utf8_lossy(&bytes).into_owned()
        };
        Output {
            argv: self.argv.clone(),
            code: status.code(),
            signal: status.signal(),
            stdout: grab(&self.out),
            stderr: grab(&self.err),
            elapsed,
            timed_out,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Runs `cmd` with `input` written to its stdin (then closed), to completion or `timeout`.
pub fn run_with_input(mut cmd: Command, input: &[u8], timeout: Duration) -> Output {
    cmd.stdin(Stdio::piped());
    let mut s = Spawned::spawn(cmd);
    if let Some(mut w) = s.child.stdin.take() {
        let _ = std::io::Write::write_all(&mut w, input);
    }
    s.wait(timeout)
}

/// Runs `cmd` to completion or until `timeout`, whichever comes first.
pub fn run(cmd: Command, timeout: Duration) -> Output {
    Spawned::start(cmd).wait(timeout)
}
