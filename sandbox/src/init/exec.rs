//! Resolving the executable (before start, so a missing binary fails Create at once)
//! and exec.

use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::InitError;

/// Finds args[0] the way runc does: a path with '/' as is, otherwise along $PATH from
/// the process's env. Errors name the file.
pub fn lookup(args: &[String], env: &[String]) -> Result<PathBuf, InitError> {
    let name = args
        .first()
        .ok_or_else(|| InitError::Invalid("process.args is empty".into()))?;
    if name.contains('/') {
        check(Path::new(name)).map_err(|e| InitError::Invalid(format!("exec: {name:?}: {e}")))?;
        return Ok(PathBuf::from(name));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let cand = Path::new(dir).join(name);
        if check(&cand).is_ok() {
            return Ok(cand);
        }
    }
    Err(InitError::Invalid(format!(
        "exec: {name:?}: executable file not found in $PATH"
    )))
}

fn check(p: &Path) -> Result<(), String> {
    let m = std::fs::metadata(p).map_err(|e| format!("stat {}: {e}", p.display()))?;
    if m.is_dir() {
        return Err(format!("{} is a directory", p.display()));
    }
    if m.permissions().mode() & 0o111 == 0 {
        return Err(format!("{}: permission denied", p.display()));
    }
    Ok(())
}

/// Adds HOME when the process's env lacks it, as runc does: the home directory of `uid`
/// in the container's /etc/passwd, or "/" when it has no entry (or no readable file).
pub fn add_home(env: &mut Vec<String>, uid: u32) {
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    env.push(format!("HOME={}", home_in(&passwd, uid)));
}

/// The home directory of `uid` in passwd(5) text, "/" if it is not there or empty.
fn home_in(passwd: &str, uid: u32) -> &str {
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid))
        .map(|f| f[5])
        .filter(|h| !h.is_empty())
        .unwrap_or("/")
}

/// Marks every fd above stderr close-on-exec, so the process inherits only stdio.
pub fn close_other_fds() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on our own fds.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// Replaces this process with the container's program; returns only on failure.
pub fn exec(exe: &Path, args: &[String], env: &[String]) -> InitError {
    let cstr =
        |s: &str| CString::new(s).map_err(|_| InitError::Invalid(format!("{s:?} contains NUL")));
    let run = || -> Result<std::convert::Infallible, InitError> {
        let path = cstr(&exe.to_string_lossy())?;
        let argv = args
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let envp = env.iter().map(|e| cstr(e)).collect::<Result<Vec<_>, _>>()?;
        nix::unistd::execve(&path, &argv, &envp).map_err(|errno| InitError::Sys {
            what: format!("exec {:?}", exe.display()),
            errno,
        })
    };
    match run() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_uses_the_process_path_and_names_missing_files() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(lookup(&["sh".into()], &env).unwrap().ends_with("sh"));
        let e = lookup(&["/bin/nope".into()], &env).unwrap_err().to_string();
        assert!(e.contains("/bin/nope") && e.contains("No such file"), "{e}");
        let e = lookup(&["nope-xyz".into()], &env).unwrap_err().to_string();
        assert!(e.contains("nope-xyz") && e.contains("not found"), "{e}");
        assert!(lookup(&["/tmp".into()], &env).is_err());
    }

    #[test]
    fn home_comes_from_passwd_or_is_root_dir() {
        let passwd =
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nnohome:x:7:7:::\n";
        assert_eq!(home_in(passwd, 0), "/root");
        assert_eq!(home_in(passwd, 1000), "/home/app");
        assert_eq!(home_in(passwd, 7), "/");
        assert_eq!(home_in(passwd, 4242), "/");
        let mut env = vec!["HOME=/x".to_string()];
        add_home(&mut env, 0);
        assert_eq!(env, ["HOME=/x"]);
    }
}
