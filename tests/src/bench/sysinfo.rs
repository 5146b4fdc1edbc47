//! The machine and the versions a run was measured with.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::containerd::shim_path;
use crate::version::Version;

/// What docs/benchmarks.md says about where and with what a run was made.
#[derive(Clone, Debug, Default)]
pub struct Machine {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub memory: String,
    pub containerd: String,
    pub runc: String,
    pub runc_shim: String,
    pub mypod: String,
    pub cgroups: String,
}

/// First line of `PROGRAM ARGS` (stdout, else stderr), or "?".
fn first_line(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let out = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&out)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".to_string())
}

/// The runc binary containerd's PATH gets (as the harness picks it).
pub fn runc_binary() -> Option<&'static Path> {
    [
        "/usr/sbin/runc",
        "/usr/bin/runc",
        "/usr/local/sbin/runc",
        "/usr/local/bin/runc",
    ]
    .iter()
    .map(Path::new)
    .find(|p| p.is_file())
}

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

impl Machine {
    /// Gathers the machine's description and the versions of `v`'s binaries.
    pub fn gather(v: Version) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|s| s.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "?".to_string());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|s| s.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
            .unwrap_or_else(|| "?".to_string());
        let bins = v.binaries();
        let cgroups = if Path::new("/sys/fs/cgroup/cgroup.controllers").is_file() {
            "v2 (unified)"
        } else if Path::new("/sys/fs/cgroup/unified").is_dir() {
            "v1 (hybrid)"
        } else {
            "v1"
        };
        Machine {
            date: first_line(Path::new("date"), &["-u", "+%Y-%m-%d %H:%M UTC"]),
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".to_string()),
            memory,
            containerd: first_line(&bins.containerd, &["--version"]),
            runc: runc_binary()
                .map(|r| first_line(r, &["--version"]))
                .unwrap_or_else(|| "missing".to_string()),
            runc_shim: first_line(&bins.runc_shim, &["-v"]),
            mypod: first_line(&shim_path(), &["-v"]),
            cgroups: cgroups.to_string(),
        }
    }
}
