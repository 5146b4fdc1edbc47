//! Small readers for /proc: processes, their parents, roots, status fields, and mounts.

use std::fs;
use std::path::PathBuf;

/// Every pid currently in /proc.
pub fn pids() -> Vec<u32> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// The command line with NULs turned into spaces (None if the process is gone).
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim_end()
            .to_string(),
    )
}

/// Fields of /proc/PID/stat after the command name: index 0 is the state, 1 the ppid.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

pub fn ppid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// A pod shim's zygote (mypod's fork server for setup helpers): a `<shim> init` child of
/// the shim that stays in the shim's own cgroups, where a helper, the pod holder and the
/// containers live in theirs.
pub fn is_zygote(pid: u32) -> bool {
    let Some(parent) = ppid(pid) else {
        return false;
    };
    let cgroups = |p: u32| fs::read_to_string(format!("/proc/{p}/cgroup")).ok();
    cmdline(pid).is_some_and(|c| c.split_whitespace().last() == Some("init"))
        && cgroups(pid).is_some()
        && cgroups(pid) == cgroups(parent)
}

/// The children of `pid`, but for a shim's zygote ([`is_zygote`]).
pub fn children_but_zygote(pid: u32) -> Vec<u32> {
    pids()
        .into_iter()
        .filter(|&p| ppid(p) == Some(pid) && !is_zygote(p))
        .collect()
}

/// Alive and not a zombie.
pub fn alive(pid: u32) -> bool {
    matches!(stat_fields(pid), Some(f) if f.first().map(String::as_str) != Some("Z"))
}

/// Waits until `pid` is gone (or a zombie), up to `timeout`; panics naming `what` after.
pub fn wait_gone(pid: u32, timeout: std::time::Duration, what: &str) {
    let start = std::time::Instant::now();
    while alive(pid) {
        assert!(start.elapsed() < timeout, "{what} (pid {pid}) still alive");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Where the process's root directory is, as seen from here.
pub fn root(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/root")).ok()
}

pub fn status(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

/// The value of `Name:` in a /proc/*/status text, trimmed.
pub fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

/// Mount points of this mount namespace, deepest-last as listed, with octal escapes decoded.
pub fn mount_points() -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_octal(m)))
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let esc = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match esc {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `sig` to `pid`; true if it was delivered.
pub fn signal(pid: u32, sig: i32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill(2) with a specific positive pid has no memory-safety requirements.
    unsafe { libc::kill(p, sig) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape_octal(r"/a\040b"), "/a b");
        assert_eq!(unescape_octal(r"/plain"), "/plain");
        assert_eq!(unescape_octal(r"/end\"), r"/end\");
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tsh\nCapBnd:\t00000000a80425fb\n";
        assert_eq!(status_field(s, "CapBnd"), Some("00000000a80425fb"));
        assert_eq!(status_field(s, "CapAmb"), None);
    }

    #[test]
    fn own_process() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(ppid(me).is_some());
        assert!(cmdline(me).is_some());
    }
}
