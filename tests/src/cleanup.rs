//! Finding and removing everything a containerd instance and its shims may leave behind:
//! processes, mounts, cgroups, shim sockets, the instance's temp dir. Nothing here finds a
//! process by its name: every pid comes from a pid file, a cgroup named after the test's unique
//! namespace, or a command line / root directory that mentions the instance's unique temp dir.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::procfs;

/// Where the v2 runtime keeps bundles: STATE/io.containerd.runtime.v2.task/NS/ID.
fn bundles(state: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(namespaces) = fs::read_dir(state.join("io.containerd.runtime.v2.task")) else {
        return out;
    };
    for ns in namespaces.flatten() {
        if let Ok(ids) = fs::read_dir(ns.path()) {
            out.extend(ids.flatten().map(|e| e.path()));
        }
    }
    out
}

/// Pids named by `shim.pid` files in the instance's bundles.
pub fn shim_pids_from_state(state: &Path) -> Vec<u32> {
    bundles(state)
        .iter()
        .filter_map(|b| {
            fs::read_to_string(b.join("shim.pid"))
                .ok()?
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

/// Socket files named by the bundles' `address` files (`unix:///run/containerd/s/HASH`) or, on
/// containerd 2.x, `bootstrap.json` files (`{"version":3,"address":"unix://...",...}`).
pub fn shim_sockets_from_state(state: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for b in bundles(state) {
        let mut addrs = Vec::new();
        if let Ok(a) = fs::read_to_string(b.join("address")) {
            addrs.push(a.trim().to_string());
        }
        if let Ok(j) = fs::read_to_string(b.join("bootstrap.json")) {
            if let Some(a) = serde_json::from_str::<serde_json::Value>(&j)
                .ok()
                .and_then(|v| v["address"].as_str().map(str::to_string))
            {
                addrs.push(a);
            }
        }
        for a in addrs {
            let p = a.trim_start_matches("unix://");
            if p.starts_with('/') && !out.iter().any(|o| o == Path::new(p)) {
                out.push(PathBuf::from(p));
            }
        }
    }
    out
}

/// The debug sockets that shims started with `-debug` by containerd 1.7+ bind beside their
/// main socket: `/run/containerd/s/<sha256(ADDRESS/NS/ID/debug)>`, for each bundle NS/ID (only
/// the first container of a group names the socket, but the others' paths are harmless). A
/// shim that dies by SIGKILL leaves it behind; containerd does not remove it.
pub fn shim_debug_sockets(state: &Path, address: &Path) -> Vec<PathBuf> {
    use sha2::{Digest, Sha256};
    bundles(state)
        .iter()
        .filter_map(|b| {
            let id = b.file_name()?.to_str()?;
            let ns = b.parent()?.file_name()?.to_str()?;
            let key = format!("{}/{ns}/{id}/debug", address.display());
            let hex: String = Sha256::digest(key.as_bytes())
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect();
            Some(PathBuf::from("/run/containerd/s").join(hex))
        })
        .collect()
}

/// Processes (other than this one) whose command line contains `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    procfs::pids()
        .into_iter()
        .filter(|&p| p != me && procfs::alive(p))
        .filter(|&p| procfs::cmdline(p).is_some_and(|c| c.contains(needle)))
        .collect()
}

/// Processes whose root directory lies under `dir` (container processes of this instance).
pub fn pids_rooted_under(dir: &Path) -> Vec<u32> {
    procfs::pids()
        .into_iter()
        .filter(|&p| procfs::alive(p))
        .filter(|&p| procfs::root(p).is_some_and(|r| r.starts_with(dir)))
        .collect()
}

/// Processes executing `file` (the same inode, whatever path or mount they run it from).
pub fn pids_running(file: &Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(want) = fs::metadata(file) else {
        return Vec::new();
    };
    procfs::pids()
        .into_iter()
        .filter(|&p| procfs::alive(p))
        .filter(|&p| {
            fs::metadata(format!("/proc/{p}/exe"))
                .is_ok_and(|m| (m.dev(), m.ino()) == (want.dev(), want.ino()))
        })
        .collect()
}

/// Every cgroup hierarchy root: /sys/fs/cgroup itself (v2) and each mounted /sys/fs/cgroup/*.
fn hierarchies() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        out.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").is_file()),
        );
    }
    out
}

/// Existing cgroup directories named `rel` (e.g. "NS" or "NS/ID") in any hierarchy.
pub fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|h| h.join(rel))
        .filter(|p| p.is_dir())
        .collect()
}

/// All directories below (and including) `top`, deepest first.
fn walk_deepest_first(top: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![top.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            stack.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        out.push(d);
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out
}

/// Pids in any cgroup under the namespace's cgroup directories.
pub fn cgroup_pids(ns: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for top in cgroup_dirs(ns) {
        for d in walk_deepest_first(&top) {
            if let Ok(text) = fs::read_to_string(d.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Waits up to `grace` for `pids` to exit on their own, then SIGKILLs the rest. Returns what it
/// had to kill, described.
pub fn kill_pids(pids: &[u32], grace: Duration, why: &str) -> Vec<String> {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|&p| procfs::alive(p)) {
        thread::sleep(Duration::from_millis(50));
    }
    let mut killed = Vec::new();
    for &p in pids {
        if !procfs::alive(p) {
            continue;
        }
        let cmd = procfs::cmdline(p).unwrap_or_default();
        if procfs::signal(p, libc::SIGKILL) {
            killed.push(format!("SIGKILLed {why} pid {p} ({cmd})"));
        }
    }
    killed
}

/// Mount points under `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut m: Vec<PathBuf> = procfs::mount_points()
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    m.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    m.dedup();
    m
}

/// Lazily unmounts everything under `dir`, deepest first; returns what it did.
pub fn unmount_under(dir: &Path) -> Vec<String> {
    let mut done = Vec::new();
    for _ in 0..5 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            break;
        }
        for m in mounts {
            let Ok(c) = std::ffi::CString::new(m.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: c is a valid NUL-terminated path; umount2 does not keep the pointer.
            let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            let res = if rc == 0 {
                "ok".to_string()
            } else {
                io::Error::last_os_error().to_string()
            };
            done.push(format!("umount -l {}: {res}", m.display()));
        }
    }
    done
}

/// Removes the cgroup directories named `ns` (and everything below them) in every hierarchy,
/// deepest first, once they hold no process; retries for up to `patience`.
pub fn remove_cgroups(ns: &str, patience: Duration) -> Vec<String> {
    let deadline = Instant::now() + patience;
    let mut problems = Vec::new();
    loop {
        problems.clear();
        for top in cgroup_dirs(ns) {
            for d in walk_deepest_first(&top) {
                let busy =
                    fs::read_to_string(d.join("cgroup.procs")).is_ok_and(|t| !t.trim().is_empty());
                if busy {
                    problems.push(format!("cgroup {} still has processes", d.display()));
                } else if let Err(e) = fs::remove_dir(&d) {
                    if e.kind() != io::ErrorKind::NotFound {
                        problems.push(format!("rmdir {}: {e}", d.display()));
                    }
                }
            }
        }
        if problems.is_empty() || Instant::now() >= deadline {
            return problems;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Removes shim socket files left behind (only sockets, only absolute paths under
/// /run/containerd/s/ or under `dir`).
pub fn remove_sockets(sockets: &[PathBuf], dir: &Path) -> Vec<String> {
    use std::os::unix::fs::FileTypeExt;
    let mut done = Vec::new();
    for s in sockets {
        let allowed = s.starts_with("/run/containerd/s/") || s.starts_with(dir);
        let is_socket = fs::symlink_metadata(s).is_ok_and(|m| m.file_type().is_socket());
        if allowed && is_socket && fs::remove_file(s).is_ok() {
            done.push(format!("removed leftover shim socket {}", s.display()));
        }
        // A shim's pid file beside its socket (`<socket>.pid`), once that pid is gone.
        let pid_file = PathBuf::from(format!("{}.pid", s.display()));
        let dead = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .is_some_and(|p| !procfs::alive(p));
        if allowed && dead && fs::remove_file(&pid_file).is_ok() {
            done.push(format!(
                "removed leftover shim pid file {}",
                pid_file.display()
            ));
        }
    }
    done
}

/// Where libcni (in containerd's CRI) caches CNI results; containerd does not let it be moved.
const CNI_CACHE: &str = "/var/lib/cni/results";

/// Removes libcni's cached results that belong to the instance in `dir` (their netns path
/// lies under it). Returns what it did.
pub fn remove_cni_cache(dir: &Path) -> Vec<String> {
    let needle = format!("{}/", dir.display());
    let mut done = Vec::new();
    let Ok(rd) = fs::read_dir(CNI_CACHE) else {
        return done;
    };
    for e in rd.flatten() {
        let p = e.path();
        let ours = fs::read_to_string(&p).is_ok_and(|t| t.contains(&needle));
        if ours {
            match fs::remove_file(&p) {
                Ok(()) => done.push(format!("removed CNI cache file {}", p.display())),
                Err(e) => done.push(format!("rm {}: {e}", p.display())),
            }
        }
    }
    done
}

/// Removes `dir` unless something is still mounted under it (removing through a live mount could
/// delete what the mount shows).
pub fn remove_dir(dir: &Path) -> Result<(), String> {
    let left = mounts_under(dir);
    if !left.is_empty() {
        return Err(format!(
            "kept {}: still mounted below it: {left:?}",
            dir.display()
        ));
    }
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("rm -r {}: {e}", dir.display())),
    }
}

/// Everything left of the instance whose temp dir is `dir` and namespace `ns`, after its
/// containerd is gone: processes, mounts, cgroups, sockets, the dir. Returns what it did.
pub fn purge(dir: &Path, ns: &str, known_shims: &[u32], sockets: &[PathBuf]) -> Vec<String> {
    let mut report = Vec::new();
    // With the trailing slash, "/tmp/x-1-4/" cannot match a sibling "/tmp/x-1-45".
    let needle = format!("{}/", dir.display());
    for round in 0..3 {
        let mut pids: Vec<u32> = known_shims
            .iter()
            .copied()
            .filter(|&p| procfs::cmdline(p).is_some_and(|c| c.contains("containerd-shim")))
            .collect();
        pids.extend(pids_mentioning(&needle));
        pids.extend(pids_rooted_under(dir));
        pids.extend(cgroup_pids(ns));
        pids.retain(|&p| procfs::alive(p));
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            break;
        }
        let grace = if round == 0 {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        };
        report.extend(kill_pids(&pids, grace, "leftover"));
        thread::sleep(Duration::from_millis(100));
    }
    report.extend(unmount_under(dir));
    report.extend(remove_cgroups(ns, Duration::from_secs(5)));
    report.extend(remove_sockets(sockets, dir));
    report.extend(remove_cni_cache(dir));
    // runc-v2's default runc root for the namespace (runs with MYPOD_TEST_RUNTIME=runc): empty
    // once its containers are deleted; remove_dir keeps it if it is not.
    let runc_root = Path::new("/run/containerd/runc").join(ns);
    if fs::remove_dir(&runc_root).is_ok() {
        report.push(format!("rmdir {}: ok", runc_root.display()));
    }
    if let Err(e) = remove_dir(dir) {
        report.push(e);
    }
    report
}

/// Cleans up after earlier test processes that died without running their destructors:
/// instance dirs `<tmp>/<prefix><pid>-<n>` whose pid is no longer alive.
pub fn sweep_stale(tmp: &Path, prefix: &str) {
    let Ok(rd) = fs::read_dir(tmp) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if procfs::alive(pid) {
            continue; // a live test process owns it (or its pid was reused: leave it be)
        }
        let dir = e.path();
        let sockets = shim_sockets_from_state(&dir.join("state"));
        let shims = shim_pids_from_state(&dir.join("state"));
        let report = purge(&dir, &name, &shims, &sockets);
        eprintln!(
            "mypod-tests: swept stale instance {}: {report:?}",
            dir.display()
        );
    }
}
