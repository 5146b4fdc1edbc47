//! What a user does with `ctr` against an instance: run containers, list and kill tasks, read
//! specs, and check that nothing of a container is left.

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cleanup;
use crate::command::{Output, Spawned, CTR_TIMEOUT};
use crate::containerd::{shim_binary_name, Containerd};
use crate::image::{self, IMAGE, IMAGE_PATH_ENV};
use crate::procfs;

/// One line of `ctr task ls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub pid: u32,
    pub status: String,
}

/// Parses `ctr task ls` output (header `TASK PID STATUS`).
pub fn parse_tasks(stdout: &str) -> Vec<Task> {
    stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("TASK"))
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(Task {
                id: f.next()?.to_string(),
                pid: f.next()?.parse().ok()?,
                status: f.next()?.to_string(),
            })
        })
        .collect()
}

impl Containerd {
    /// `ctr run --rm --runtime RUNTIME [flags] busybox ID cmd...`, waited for.
    pub fn run(&self, id: &str, flags: &[&str], cmd: &[&str]) -> Output {
        self.ctr(&self.run_args(id, &["--rm"], flags, cmd))
    }

    /// The same as `run` but returns while it runs (for killing it from outside).
    pub fn spawn_run(&self, id: &str, flags: &[&str], cmd: &[&str]) -> Spawned {
        Spawned::start(self.ctr_command(&self.run_args(id, &["--rm"], flags, cmd)))
    }

    /// `ctr run -d --runtime RUNTIME [flags] busybox ID cmd...`; panics unless it started.
    pub fn run_detached(&self, id: &str, flags: &[&str], cmd: &[&str]) -> Output {
        self.ctr_ok(&self.run_args(id, &["-d"], flags, cmd))
    }

    fn run_args<'a>(
        &'a self,
        id: &'a str,
        mode: &[&'a str],
        flags: &[&'a str],
        cmd: &[&'a str],
    ) -> Vec<&'a str> {
        let mut a = vec!["run"];
        a.extend_from_slice(mode);
        a.extend_from_slice(&["--runtime", self.runtime()]);
        a.extend_from_slice(flags);
        a.extend_from_slice(&[IMAGE, id]);
        a.extend_from_slice(cmd);
        a
    }

    /// `ctr oci spec`: this version's default spec.
    pub fn default_spec(&self) -> Value {
        let out = self.ctr_ok(&["oci", "spec"]);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("ctr oci spec is not JSON: {e}\n{out}"))
    }

    /// A full hand-written spec for `ctr run --config`: this version's default spec with a
    /// private copy of the image's rootfs, the image's PATH, `args`, and cgroupsPath /NS/ID.
    pub fn config_spec(&self, id: &str, args: &[&str]) -> Value {
        let rootfs = self.dir().join("rootfs").join(id);
        // A second run of the same case (diff::run_probe runs a probe again whose output
        // lost its tail) starts from a fresh copy.
        if rootfs.exists() {
            std::fs::remove_dir_all(&rootfs)
                .unwrap_or_else(|e| panic!("remove {}: {e}", rootfs.display()));
        }
        image::unpack_rootfs(&rootfs, &self.dir().join("scratch"));
        let mut spec = self.default_spec();
        spec["root"] = serde_json::json!({ "path": rootfs, "readonly": false });
        spec["process"]["args"] = serde_json::json!(args);
        spec["process"]["env"] = serde_json::json!([IMAGE_PATH_ENV]);
        spec["linux"]["cgroupsPath"] = Value::String(format!("/{}/{}", self.namespace(), id));
        spec
    }

    /// Writes `spec` (or raw text) to a file in the instance dir; returns its path.
    pub fn write_spec_file(&self, id: &str, contents: &str) -> String {
        let p = self.dir().join("specs").join(format!("{id}.json"));
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p.to_string_lossy().into_owned()
    }

    /// Writes `toml` as runtime configuration `name` in the instance dir; returns the ctr
    /// flag that passes it to the shim (`--runtime-config-path=FILE`).
    pub fn runtime_config_flag(&self, name: &str, toml: &str) -> String {
        let p = self.dir().join(name);
        fs::write(&p, toml).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        format!("--runtime-config-path={}", p.display())
    }

    /// `ctr run --rm --runtime RUNTIME [flags] --config FILE ID` with `spec` as FILE.
    pub fn run_config(&self, id: &str, flags: &[&str], spec: &Value) -> Output {
        let file = self.write_spec_file(
            id,
            &serde_json::to_string_pretty(spec).expect("spec to JSON"),
        );
        let mut a = vec!["run", "--rm", "--runtime", self.runtime()];
        a.extend_from_slice(flags);
        a.extend_from_slice(&["--config", &file, id]);
        self.ctr(&a)
    }

    /// True if this version's `ctr run` has `--FLAG`.
    pub fn ctr_run_has_flag(&self, flag: &str) -> bool {
        let help = self.ctr(&["run", "--help"]);
        help.combined()
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("--{flag} ")))
            || help
                .combined()
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("--{flag},")))
    }

    pub fn tasks(&self) -> Vec<Task> {
        parse_tasks(&self.ctr_ok(&["tasks", "ls"]).stdout)
    }

    pub(crate) fn tasks_with_timeout(&self, t: Duration) -> Vec<Task> {
        parse_tasks(&self.ctr_timeout(&["tasks", "ls"], t).stdout)
    }

    pub fn task(&self, id: &str) -> Option<Task> {
        self.tasks().into_iter().find(|t| t.id == id)
    }

    /// Polls `ctr task ls` until task `id` shows `status`; panics after `timeout`.
    pub fn wait_task_status(&self, id: &str, status: &str, timeout: Duration) -> Task {
        let start = Instant::now();
        loop {
            let out = self.ctr_ok(&["tasks", "ls"]);
            if let Some(t) = parse_tasks(&out.stdout)
                .into_iter()
                .find(|t| t.id == id && t.status == status)
            {
                return t;
            }
            assert!(
                start.elapsed() < timeout,
                "task {id} did not reach {status} within {timeout:?}; last listing:\n{out}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ctr task kill [-s SIGNAL] ID`; panics unless ctr succeeded.
    pub fn kill_task(&self, id: &str, signal: Option<&str>) -> Output {
        match signal {
            Some(s) => self.ctr_ok(&["tasks", "kill", "-s", s, id]),
            None => self.ctr_ok(&["tasks", "kill", id]),
        }
    }

    /// `ctr task delete ID` (ctr reports a non-zero exit status as a warning on stderr).
    pub fn delete_task(&self, id: &str) -> Output {
        self.ctr(&["tasks", "delete", id])
    }

    /// `ctr containers rm ID`; panics unless it succeeded.
    pub fn remove_container(&self, id: &str) -> Output {
        self.ctr_ok(&["containers", "rm", id])
    }

    /// Stops (SIGKILL), deletes and removes container `id`; panics if any step fails.
    pub fn kill_and_remove(&self, id: &str) {
        if self.task(id).is_some_and(|t| t.status != "STOPPED") {
            self.kill_task(id, Some("SIGKILL"));
            self.wait_task_status(id, "STOPPED", Duration::from_secs(20));
        }
        if self.task(id).is_some() {
            self.delete_task(id).assert_success();
        }
        self.remove_container(id);
    }

    /// The spec containerd stored for container `id` (`ctr containers info --spec`).
    pub fn container_spec(&self, id: &str) -> Value {
        let out = self.ctr_ok(&["containers", "info", "--spec", id]);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|e| panic!("spec of {id} is not JSON: {e}\n{out}"))
    }

    /// The container IDs in the namespace.
    pub fn containers(&self) -> Vec<String> {
        self.ctr_ok(&["containers", "ls", "-q"])
            .stdout
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Processes that are shims of this instance (their command line names its socket, and
    /// their program is a `containerd-shim-*` or the MYPOD_SHIM binary, whatever its name).
    pub fn shim_pids(&self) -> Vec<u32> {
        let needle = format!("{}/", self.dir().display());
        let mypod = std::fs::canonicalize(crate::containerd::shim_path()).ok();
        cleanup::pids_mentioning(&needle)
            .into_iter()
            .filter(|&p| {
                procfs::cmdline(p).is_some_and(|c| c.contains("containerd-shim"))
                    || (mypod.is_some()
                        && std::fs::read_link(format!("/proc/{p}/exe")).ok() == mypod)
            })
            .collect()
    }

    /// Name of the shim binary for this instance's runtime.
    pub fn shim_name(&self) -> String {
        shim_binary_name(self.runtime())
    }

    /// What is still there of container `id` (and of any shim of this instance, which must be
    /// gone once it serves no container): empty when clean.
    pub fn leftovers(&self, id: &str) -> Vec<String> {
        let mut left = Vec::new();
        if let Some(t) = self
            .tasks_with_timeout(CTR_TIMEOUT)
            .into_iter()
            .find(|t| t.id == id)
        {
            left.push(format!("task {t:?}"));
        }
        let containers = self.containers();
        if containers.iter().any(|c| c == id) {
            left.push(format!("container {id}"));
        }
        if containers.is_empty() {
            for p in self.shim_pids() {
                left.push(format!(
                    "shim pid {p}: {}",
                    procfs::cmdline(p).unwrap_or_default()
                ));
            }
        }
        for p in cleanup::pids_rooted_under(self.dir()) {
            left.push(format!(
                "container process pid {p}: {}",
                procfs::cmdline(p).unwrap_or_default()
            ));
        }
        for m in cleanup::mounts_under(self.dir()) {
            if m.components().any(|c| c.as_os_str() == id) {
                left.push(format!("mount {}", m.display()));
            }
        }
        for d in cleanup::cgroup_dirs(&format!("{}/{id}", self.namespace())) {
            left.push(format!("cgroup {}", d.display()));
        }
        left
    }

    /// Panics unless nothing of container `id` remains within `timeout` (shims may take a
    /// moment to exit after their last container is deleted).
    pub fn assert_clean_within(&self, id: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let left = self.leftovers(id);
            if left.is_empty() {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "container {id} left behind after {timeout:?}:\n  {}",
                left.join("\n  ")
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn assert_clean(&self, id: &str) {
        self.assert_clean_within(id, Duration::from_secs(10));
    }
}

/// Reads a /proc status field of a host pid, panicking with context if it is not there.
pub fn host_status_field(pid: u32, field: &str) -> String {
    let status =
        procfs::status(pid).unwrap_or_else(|| panic!("pid {pid} has no /proc/{pid}/status"));
    procfs::status_field(&status, field)
        .unwrap_or_else(|| panic!("/proc/{pid}/status has no {field}:\n{status}"))
        .to_string()
}

/// True if `p` exists on this host (masked paths that do not exist are not masked).
pub fn host_has(p: &str) -> bool {
    Path::new(p).exists()
}

/// Topics of `ctr events` lines that mention container `id`, in arrival order.
pub fn topics_for(events: &str, id: &str) -> Vec<String> {
    let needle = format!("\"{id}\"");
    events
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
        .map(str::to_string)
        .collect()
}

impl Containerd {
    /// The socket path of the shim serving container `id`: the bundle's `address` file, or
    /// (containerd 2.x's runc shim, which writes none) `bootstrap.json`'s address.
    pub fn shim_socket(&self, id: &str) -> std::path::PathBuf {
        let bundle = self
            .state_dir()
            .join("io.containerd.runtime.v2.task")
            .join(self.ctr_namespace())
            .join(id);
        let a = match fs::read_to_string(bundle.join("address")) {
            Ok(a) => a,
            Err(_) => {
                let f = bundle.join("bootstrap.json");
                let text = fs::read_to_string(&f)
                    .unwrap_or_else(|e| panic!("no address file, and {}: {e}", f.display()));
                let v: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}\n{text}", f.display()));
                v["address"].as_str().unwrap_or_default().to_string()
            }
        };
        std::path::PathBuf::from(a.trim().trim_start_matches("unix://"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_listing() {
        let out = "TASK    PID     STATUS    \nk2      8333    RUNNING\nk3      0    STOPPED\n";
        assert_eq!(
            parse_tasks(out),
            vec![
                Task {
                    id: "k2".into(),
                    pid: 8333,
                    status: "RUNNING".into()
                },
                Task {
                    id: "k3".into(),
                    pid: 0,
                    status: "STOPPED".into()
                },
            ]
        );
        assert!(parse_tasks("TASK PID STATUS\n").is_empty());
    }
}
