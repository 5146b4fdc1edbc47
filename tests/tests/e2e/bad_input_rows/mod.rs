//! Issue 18, "Bad input": malformed specs and requests, each a row of docs/reliability.md.
//! Every row sends one bad thing into a pod that already runs a healthy sibling container,
//! measures how long the error took (never a hang), asserts the error names the field or
//! the id, and then that the sibling still runs (same pid), still answers an exec, is
//! still served by the same shim process, and that nothing of the bad container is left
//! (task, container record, bundle, process, mount, cgroup).
//!
//! Rows are printed as `ROW|<area>|<what was sent>|<error seen>|<ms>` (run with
//! `--nocapture` to collect them). Areas: `spec` (through `ctr run --config`), `exec`
//! (`ctr task exec`), `rpc` (raw ttrpc to the pod shim's socket, as containerd sends
//! them), `cri` (the CRI API, as the kubelet sends it).

mod cri;
mod exec;
mod rpc;
mod spec;

use std::cell::Cell;
use std::fs;
use std::time::{Duration, Instant};

use mypod_tests::{cleanup, procfs, Containerd, Output};

/// The group annotation that puts a `ctr` container into the rows' pod (one shim).
pub const GROUP_KEY: &str = "io.containerd.runc.v2.group";
pub const GROUP: &str = "rows";

/// No bad input may take longer than this to be answered.
pub const NEVER_A_HANG: Duration = Duration::from_secs(30);

/// Prints one row of the table.
pub fn row(area: &str, sent: &str, error: &str, took: Duration) {
    let error = error.trim().replace('\n', " ").replace('|', "/");
    println!(
        "ROW|{area}|{}|{}|{}",
        sent.replace('|', "/"),
        error,
        took.as_millis()
    );
}

/// The last line of ctr's stderr that says something (its error), for the table.
pub fn ctr_error(out: &Output) -> String {
    out.stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A healthy container in the pod, and what must not change while bad input arrives.
pub struct Sibling<'a> {
    pub c: &'a Containerd,
    pub id: String,
    pub pid: u32,
    pub shim: u32,
    /// Processes rooted under the instance dir once the sibling ran (its own).
    baseline: Vec<u32>,
    checks: Cell<u32>,
}

impl<'a> Sibling<'a> {
    /// Starts `sleep` as container `id` in the rows' pod and records its pid and shim.
    pub fn start(c: &'a Containerd, id: &str) -> Sibling<'a> {
        let group = format!("--annotation={GROUP_KEY}={GROUP}");
        c.run_detached(id, &[&group], &["sleep", "100000"]);
        let pid = c
            .wait_task_status(id, "RUNNING", Duration::from_secs(20))
            .pid;
        let shims = c.shim_pids();
        assert_eq!(shims.len(), 1, "one shim for the pod: {shims:?}");
        let shim = shims[0];
        if c.is_mypod() {
            assert_eq!(
                procfs::ppid(pid),
                Some(shim),
                "the sibling's parent is the shim"
            );
        }
        Sibling {
            c,
            id: id.to_string(),
            pid,
            shim,
            baseline: cleanup::pids_rooted_under(c.dir()),
            checks: Cell::new(0),
        }
    }

    /// A full spec for `ctr run --config` that puts container `id` into the pod.
    pub fn spec(&self, id: &str, args: &[&str]) -> serde_json::Value {
        let mut s = self.c.config_spec(id, args);
        s["annotations"] = serde_json::json!({ GROUP_KEY: GROUP });
        s
    }

    /// After a bad input: the sibling runs with the same pid, answers an exec, the pod has
    /// the same one shim, and nothing of container `bad` (if one was named) is left.
    pub fn assert_unharmed(&self, bad: Option<&str>) {
        let c = self.c;
        let t = c.task(&self.id);
        assert_eq!(
            t.as_ref().map(|t| (t.pid, t.status.as_str())),
            Some((self.pid, "RUNNING")),
            "the sibling must keep running with pid {}: {t:?}",
            self.pid
        );
        assert!(
            procfs::alive(self.pid),
            "the sibling's process {} died",
            self.pid
        );
        let n = self.checks.get() + 1;
        self.checks.set(n);
        let exec_id = format!("alive{n}");
        let out = c.ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            &exec_id,
            &self.id,
            "echo",
            "alive",
        ]);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (Some(0), "alive\n"),
            "the sibling must still answer an exec:\n{out}"
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let shims = c.shim_pids();
            let left = bad.map(|b| self.leftovers(b)).unwrap_or_default();
            if shims == [self.shim] && left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after bad input: shims {shims:?} (want only the pod's {}), left of {bad:?}:\n  {}",
                self.shim,
                left.join("\n  ")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What is left of container `id` (which never ran or was refused).
    pub fn leftovers(&self, id: &str) -> Vec<String> {
        let c = self.c;
        let mut left = Vec::new();
        if let Some(t) = c.task(id) {
            left.push(format!("task {t:?}"));
        }
        if c.containers().iter().any(|x| x == id) {
            left.push(format!("container record {id}"));
        }
        let bundle = c
            .state_dir()
            .join("io.containerd.runtime.v2.task")
            .join(c.ctr_namespace())
            .join(id);
        if bundle.exists() {
            left.push(format!("bundle {}", bundle.display()));
        }
        for p in cleanup::pids_rooted_under(c.dir()) {
            if !self.baseline.contains(&p) && procfs::alive(p) {
                left.push(format!(
                    "process {p}: {}",
                    procfs::cmdline(p).unwrap_or_default()
                ));
            }
        }
        for m in cleanup::mounts_under(c.dir()) {
            if m.components().any(|x| x.as_os_str() == id) {
                left.push(format!("mount {}", m.display()));
            }
        }
        for d in cleanup::cgroup_dirs(&format!("{}/{id}", c.namespace())) {
            left.push(format!("cgroup {}", d.display()));
        }
        left
    }

    /// Kills and removes the sibling; nothing of the pod is left.
    pub fn finish(self) {
        self.c.kill_and_remove(&self.id);
        self.c.assert_clean(&self.id);
    }
}

/// Whether a refusal came in time and says what `needles` say (each needle may list
/// alternatives separated by ` OR `); the reason if not.
pub fn says(what: &str, text: &str, took: Duration, needles: &[&str]) -> Result<(), String> {
    if took >= NEVER_A_HANG {
        return Err(format!(
            "{what}: took {took:?}, more than {NEVER_A_HANG:?}: {text}"
        ));
    }
    match needles
        .iter()
        .find(|n| !n.split(" OR ").any(|alt| text.contains(alt)))
    {
        Some(n) => Err(format!("{what}: the error should say {n:?}: {text}")),
        None => Ok(()),
    }
}

/// Panics unless a refusal came in time and says what `needles` say.
pub fn assert_says(what: &str, text: &str, took: Duration, needles: &[&str]) {
    if let Err(e) = says(what, text, took, needles) {
        panic!("{e}");
    }
}

/// Removes a file or dir tree if it is there (test scratch).
pub fn remove_all(p: &std::path::Path) {
    let _ = fs::remove_dir_all(p);
    let _ = fs::remove_file(p);
}
