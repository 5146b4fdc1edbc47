//! Starting the init helper: fork with clone3, born in its cgroup2 directory.
//!
//! Moving a process into a cgroup by writing its pid to `cgroup.procs` takes the kernel's
//! global `cgroup_threadgroup_rwsem` for writing, and the first writer after a quiet
//! spell waits a whole RCU grace period for it (13 ms on the 2-core VM, a third of a
//! container's start). `clone3(CLONE_INTO_CGROUP)` places the child in a cgroup2
//! directory at birth and takes that lock only for reading. (Cgroup v1 hierarchies
//! have no such flag: the single-threaded helper moves itself by writing `0` to each
//! `tasks` file, which the kernel does without the global lock; see
//! [`crate::cgroup::Join`].)
//!
//! The child runs only async-signal-safe system calls (fcntl, dup2, chdir,
//! sigprocmask, sigaction, execve, write, _exit) before exec, as the caller may be
//! multi-threaded. It reports a failure before or at exec on a close-on-exec pipe.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

/// Errors starting a child.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{0:?} contains a NUL byte")]
    Nul(PathBuf),
    #[error("at most {MAX_FDS} descriptors can be passed, not {0}")]
    TooManyFds(usize),
    #[error("open cgroup {path}: {errno}")]
    OpenCgroup { path: PathBuf, errno: Errno },
    #[error("start a process in cgroup {path}: {errno}")]
    IntoCgroup { path: PathBuf, errno: Errno },
    #[error("{what}: {errno}")]
    Sys { what: &'static str, errno: Errno },
    #[error("{what} in the new process: {errno}")]
    Child { what: &'static str, errno: Errno },
}

/// At most this many descriptors are placed in the child.
pub const MAX_FDS: usize = 40;
/// Sources are first duplicated to this number and above, past every target.
const HIGH_FD: RawFd = 64;

/// What to start: `exe` with `args` (argv[0] is `exe`), an empty environment, cwd `/`,
/// default signal mask and SIGPIPE handling, and `fds` as (source in the caller, number
/// in the child); the caller's other descriptors must be close-on-exec.
#[derive(Debug)]
pub struct Spawn<'a> {
    /// The program's path: argv[0], and what is exec'd unless `exe_fd` is given.
    pub exe: &'a Path,
    /// The program as a descriptor (see [`crate::exe`]): exec'd with execveat(2).
    pub exe_fd: Option<RawFd>,
    pub args: &'a [&'a str],
    pub fds: &'a [(RawFd, RawFd)],
    /// A cgroup2 directory to start the child in.
    pub cgroup: Option<&'a Path>,
}

/// A started child (not reaped here: it is the caller's child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spawned {
    pub pid: i32,
    /// False when the kernel cannot start a child in a cgroup (clone3 or
    /// CLONE_INTO_CGROUP missing, before Linux 5.7): the child must join it itself.
    pub in_cgroup: bool,
}

/// Why the child failed before its exec: the step, sent with the errno.
const CHILD_STEPS: [&str; 5] = [
    "duplicate a descriptor",
    "place a descriptor",
    "chdir /",
    "reset signals",
    "exec",
];

/// Starts `s` and returns once the child has exec'd (or reported why it could not).
pub fn spawn(s: &Spawn) -> Result<Spawned, SpawnError> {
    if s.fds.len() > MAX_FDS {
        return Err(SpawnError::TooManyFds(s.fds.len()));
    }
    let cstr = |p: &OsStr| CString::new(p.as_bytes()).map_err(|_| SpawnError::Nul(p.into()));
    let exe = cstr(s.exe.as_os_str())?;
    let args = s
        .args
        .iter()
        .map(|a| cstr(OsStr::new(a)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut argv: Vec<*const libc::c_char> = vec![exe.as_ptr()];
    argv.extend(args.iter().map(|a| a.as_ptr()));
    argv.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let cgroup = s.cgroup.map(open_cgroup).transpose()?;
    let (report_rd, report_wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|errno| SpawnError::Sys {
            what: "pipe2",
            errno,
        })?;
    let child = Child {
        exe: exe.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        exe_fd: s.exe_fd,
        fds: s.fds,
        report: report_wr.as_raw_fd(),
    };

    // Held until the child has exec'd: see crate::forks.
    let _forking = crate::forks::spawning();
    let cg_fd = cgroup.as_ref().map(|fd| fd.as_raw_fd());
    let (pid, in_cgroup) = match fork(cg_fd) {
        Ok(pid) => (pid, cg_fd.is_some()),
        Err(Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL) if cg_fd.is_some() => {
            // A kernel without clone3 or CLONE_INTO_CGROUP: the child joins itself.
            let pid = fork(None).map_err(|errno| SpawnError::Sys {
                what: "fork",
                errno,
            })?;
            (pid, false)
        }
        Err(errno) => {
            return Err(match s.cgroup {
                Some(path) => SpawnError::IntoCgroup {
                    path: path.to_path_buf(),
                    errno,
                },
                None => SpawnError::Sys {
                    what: "fork",
                    errno,
                },
            })
        }
    };
    if pid == 0 {
        child.run();
    }
    drop(report_wr);
    let mut buf = [0u8; 5];
    let n = read_full(report_rd.as_raw_fd(), &mut buf);
    if n == 0 {
        return Ok(Spawned { pid, in_cgroup });
    }
    // The child failed and exits: reap it unless a reaper of the caller's was faster.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    let what = CHILD_STEPS.get(buf[0] as usize).copied().unwrap_or("setup");
    let errno = if n == buf.len() {
        Errno::from_raw(i32::from_ne_bytes([buf[1], buf[2], buf[3], buf[4]]))
    } else {
        Errno::UnknownErrno
    };
    Err(SpawnError::Child { what, errno })
}

pub(crate) fn open_cgroup(path: &Path) -> Result<OwnedFd, SpawnError> {
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    // SAFETY: open just returned this fd; nothing else owns it.
    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    .map_err(|errno| SpawnError::OpenCgroup {
        path: path.to_path_buf(),
        errno,
    })
}

/// clone3's argument (linux/sched.h, CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// The size of clone_args before `cgroup` and `set_tid` (CLONE_ARGS_SIZE_VER0), which
/// every kernel with clone3 accepts.
const CLONE_ARGS_SIZE_VER0: usize = 64;

/// Forks like fork(2), into `cgroup` (a cgroup2 directory fd) if given: 0 in the
/// child, the child's pid in the parent. glibc's fork wrapper is bypassed, so the child
/// must only make async-signal-safe system calls and exec.
fn fork(cgroup: Option<RawFd>) -> Result<i32, Errno> {
    clone_into(0, cgroup)
}

/// [`fork`] with clone flags `flags` added (`CLONE_PARENT`: the child is our parent's,
/// and then takes our exit signal, so none is asked for).
pub(crate) fn clone_into(flags: u64, cgroup: Option<RawFd>) -> Result<i32, Errno> {
    let parent = flags & libc::CLONE_PARENT as u64 != 0;
    let mut args = CloneArgs {
        flags,
        exit_signal: if parent { 0 } else { libc::SIGCHLD as u64 },
        ..Default::default()
    };
    let mut size = CLONE_ARGS_SIZE_VER0;
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
        size = std::mem::size_of::<CloneArgs>();
    }
    // SAFETY: clone3 reads `size` bytes of `args`, which lives until the call returns;
    // with no stack given, the child continues on a copy of this stack, as after fork.
    let r = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, size) };
    if r >= 0 {
        return Ok(r as i32);
    }
    match Errno::last() {
        Errno::ENOSYS if cgroup.is_none() => {
            let flags = flags as libc::c_ulong
                | if parent {
                    0
                } else {
                    libc::SIGCHLD as libc::c_ulong
                };
            // SAFETY: clone with SIGCHLD (or CLONE_PARENT) is fork(2) without glibc's
            // bookkeeping; the child continues on a copy of this stack.
            let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) };
            Errno::result(r).map(|pid| pid as i32)
        }
        errno => Err(errno),
    }
}

/// Everything the child needs, prepared before the fork: it allocates nothing.
struct Child<'a> {
    exe: *const libc::c_char,
    exe_fd: Option<RawFd>,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    fds: &'a [(RawFd, RawFd)],
    report: RawFd,
}

impl Child<'_> {
    /// Places the descriptors, resets cwd and signals, and execs; never returns.
    fn run(&self) -> ! {
        // The program's descriptor moves above every target first, so that no
        // placement below overwrites it.
        let exe_fd = match self.exe_fd {
            // SAFETY: fcntl on an fd number; async-signal-safe.
            Some(fd) => match unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, HIGH_FD) } {
                h if h < 0 => self.fail(0),
                h => Some(h),
            },
            None => None,
        };
        if let Err(step) = place_fds(self.fds).and_then(|()| reset_cwd_and_signals()) {
            self.fail(step);
        }
        // SAFETY: the pointers were made from CStrings and NULL-terminated arrays that
        // the parent keeps alive (this is its copied memory); execve is async-signal-safe.
        unsafe {
            match exe_fd {
                // An ELF binary runs from a close-on-exec descriptor: the kernel has
                // opened it before it closes the descriptors.
                Some(fd) => libc::syscall(
                    libc::SYS_execveat,
                    fd,
                    c"".as_ptr(),
                    self.argv,
                    self.envp,
                    libc::AT_EMPTY_PATH,
                ),
                None => libc::execve(self.exe, self.argv, self.envp) as libc::c_long,
            }
        };
        self.fail(4)
    }

    /// Reports `step` and errno on the pipe and exits.
    fn fail(&self, step: u8) -> ! {
        let e = Errno::last_raw().to_ne_bytes();
        let buf = [step, e[0], e[1], e[2], e[3]];
        // SAFETY: write and _exit are async-signal-safe; buf lives on this stack.
        unsafe {
            libc::write(self.report, buf.as_ptr().cast(), buf.len());
            libc::_exit(127)
        }
    }
}

/// In a new child: places `fds` (source, number in the child, every number below
/// [`HIGH_FD`]), each without close-on-exec. Only fcntl and dup2: async-signal-safe. On
/// failure, the step of [`CHILD_STEPS`] that failed (errno tells why).
pub(crate) fn place_fds(fds: &[(RawFd, RawFd)]) -> Result<(), u8> {
    if fds.len() > MAX_FDS {
        return Err(1);
    }
    let mut high = [-1 as RawFd; MAX_FDS];
    for (i, (src, _)) in fds.iter().enumerate() {
        // SAFETY: fcntl on an fd number; async-signal-safe.
        let h = unsafe { libc::fcntl(*src, libc::F_DUPFD_CLOEXEC, HIGH_FD) };
        if h < 0 {
            return Err(0);
        }
        high[i] = h;
    }
    for (i, (_, dst)) in fds.iter().enumerate() {
        // SAFETY: dup2 on fd numbers; async-signal-safe. Every source is at HIGH_FD or
        // above and every target below, so no placement overwrites a source.
        if unsafe { libc::dup2(high[i], *dst) } < 0 {
            return Err(1);
        }
    }
    Ok(())
}

/// In a new child: cwd `/`, no blocked signal and SIGPIPE's default action (the caller
/// may block signals or ignore SIGPIPE, as Rust's runtime does), as std::process::Command
/// starts a child. Async-signal-safe; on failure the step of [`CHILD_STEPS`].
pub(crate) fn reset_cwd_and_signals() -> Result<(), u8> {
    // SAFETY: chdir with a NUL-terminated literal; async-signal-safe.
    if unsafe { libc::chdir(c"/".as_ptr()) } < 0 {
        return Err(2);
    }
    // SAFETY: sigprocmask and sigaction with stack values; both async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) < 0
            || libc::sigaction(libc::SIGPIPE, &dfl, std::ptr::null_mut()) < 0
        {
            return Err(3);
        }
    }
    Ok(())
}

/// Reads until `buf` is full or EOF; returns the bytes read.
pub(crate) fn read_full(fd: RawFd, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        // SAFETY: reads into the unfilled tail of `buf`, which we own.
        let r = unsafe { libc::read(fd, buf[n..].as_mut_ptr().cast(), buf.len() - n) };
        if r > 0 {
            n += r as usize;
        } else if r == 0 || Errno::last() != Errno::EINTR {
            break;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    fn wait(pid: i32) -> i32 {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn child_gets_its_fds_an_empty_env_root_cwd_and_default_signals() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let script = "printf '%s %s\\n' \"$(pwd)\" \"$(env | wc -l)\" >&3; \
                      grep -E '^Sig(Blk|Ign)' /proc/self/status >&3";
        // The test thread blocks SIGUSR1 and (as every Rust program) ignores SIGPIPE:
        // the child must get neither.
        let mut usr1 = nix::sys::signal::SigSet::empty();
        usr1.add(nix::sys::signal::Signal::SIGUSR1);
        usr1.thread_block().unwrap();
        let s = Spawn {
            exe: Path::new("/bin/sh"),
            exe_fd: None,
            args: &["-c", script],
            fds: &[(theirs.as_raw_fd(), 3)],
            cgroup: None,
        };
        let child = spawn(&s);
        usr1.thread_unblock().unwrap();
        let child = child.unwrap();
        drop(theirs);
        assert!(!child.in_cgroup);
        let mut out = String::new();
        ours.read_to_string(&mut out).unwrap();
        assert_eq!(wait(child.pid), 0);
        let mut lines = out.lines();
        let mut first = lines.next().unwrap().split_whitespace();
        assert_eq!(first.next(), Some("/"), "{out}");
        // sh itself sets PWD, SHLVL (and _): nothing of ours comes through.
        let env: usize = first.next().unwrap().parse().unwrap();
        assert!(env <= 3, "{out}");
        let mask = |name: &str| -> u64 {
            let l = out.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(mask("SigBlk:"), 0, "{out}");
        assert_eq!(mask("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0, "{out}");
    }

    /// A program given as a descriptor runs from it, even when the descriptor's number
    /// is one of the places the child's descriptors go to.
    #[test]
    fn program_runs_from_its_descriptor() {
        let prog = std::fs::File::open("/bin/echo").unwrap();
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let n = prog.as_raw_fd();
        // The channel lands on the program's own number: it must have moved away first.
        let s = Spawn {
            exe: Path::new("/nonexistent/echo"),
            exe_fd: Some(n),
            args: &["from-fd"],
            fds: &[(theirs.as_raw_fd(), 1), (theirs.as_raw_fd(), n)],
            cgroup: None,
        };
        let child = spawn(&s).unwrap();
        drop(theirs);
        let mut out = String::new();
        ours.read_to_string(&mut out).unwrap();
        assert_eq!(wait(child.pid), 0);
        assert_eq!(out, "from-fd\n");
    }

    /// Where the host has a writable cgroup2 tree (CI's hybrid VM, as root), a child
    /// is born in the cgroup it is given.
    #[test]
    fn child_is_born_in_its_cgroup() {
        let Some(root) = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .find(|l| l.contains(" - cgroup2 "))
            .and_then(|l| l.split_whitespace().nth(4).map(PathBuf::from))
        else {
            eprintln!("no cgroup2 mount: nothing to test");
            return;
        };
        let name = format!("mypod-spawn-test-{}", std::process::id());
        let dir = root.join(&name);
        if let Err(e) = std::fs::create_dir(&dir) {
            eprintln!("cannot create {}: {e}: nothing to test", dir.display());
            return;
        }
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let s = Spawn {
            exe: Path::new("/bin/cat"),
            exe_fd: None,
            args: &["/proc/self/cgroup"],
            fds: &[(theirs.as_raw_fd(), 1)],
            cgroup: Some(&dir),
        };
        let child = spawn(&s);
        drop(theirs);
        let mut out = String::new();
        if let Ok(c) = &child {
            ours.read_to_string(&mut out).unwrap();
            wait(c.pid);
        }
        std::fs::remove_dir(&dir).unwrap();
        let child = child.unwrap();
        assert!(child.in_cgroup);
        assert!(out.lines().any(|l| l == format!("0::/{name}")), "{out}");
    }

    #[test]
    fn a_missing_program_is_reported_with_its_errno() {
        let s = Spawn {
            exe: Path::new("/nonexistent/helper"),
            exe_fd: None,
            args: &[],
            fds: &[],
            cgroup: None,
        };
        let e = spawn(&s).unwrap_err();
        assert!(
            matches!(
                e,
                SpawnError::Child {
                    what: "exec",
                    errno: Errno::ENOENT
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_bad_source_fd_is_reported() {
        let s = Spawn {
            exe: Path::new("/bin/true"),
            exe_fd: None,
            args: &[],
            fds: &[(1000, 3)],
            cgroup: None,
        };
        let e = spawn(&s).unwrap_err();
        assert!(
            matches!(
                e,
                SpawnError::Child {
                    errno: Errno::EBADF,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_missing_cgroup_is_named() {
        let s = Spawn {
            exe: Path::new("/bin/true"),
            exe_fd: None,
            args: &[],
            fds: &[],
            cgroup: Some(Path::new("/nonexistent/cgroup")),
        };
        let e = spawn(&s).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/cgroup"), "{e}");
    }
}
