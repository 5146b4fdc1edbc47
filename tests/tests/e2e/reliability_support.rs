//! Issue 18, churn and concurrency: what `reliability_churn` and `reliability_races` share.
//! The scale knob (`MYPOD_SOAK=1` selects the long runs that `scripts/soak.sh` makes), the
//! `FIGURE|` lines the soak script collects, a live `ctr events` stream, and the counts a run
//! is measured by (fds, mounts, cgroup dirs, memory).
//!
//! FIGURE line format: `FIGURE|<test>|<containerd version>|key=value|...`, always with `done=`
//! (what was done to it) and `lost=` (what was lost: must be 0).

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mypod_tests::{procfs, Containerd};

/// True when `MYPOD_SOAK=1`: the long version of each scenario.
pub fn soak() -> bool {
    std::env::var("MYPOD_SOAK").is_ok_and(|v| v == "1")
}

/// `short` for the test suite, `long` under `MYPOD_SOAK=1`.
pub fn scale(short: usize, long: usize) -> usize {
    if soak() {
        long
    } else {
        short
    }
}

/// Prints one `FIGURE|test|version|k=v|...` line (stdout, so `--nocapture` shows it).
pub fn figure(test: &str, c: &Containerd, fields: &[(&str, String)]) {
    let mut line = format!("FIGURE|{test}|{}", c.version());
    for (k, v) in fields {
        line.push_str(&format!("|{k}={v}"));
    }
    println!("{line}");
}

/// "before->after" for a FIGURE field.
pub fn change(before: impl std::fmt::Display, after: impl std::fmt::Display) -> String {
    format!("{before}->{after}")
}

/// Open file descriptors of `pid` (None if it is gone).
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = procfs::status(pid)?;
    procfs::status_field(&s, "VmRSS")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Threads of `pid`.
pub fn threads(pid: u32) -> Option<u64> {
    let s = procfs::status(pid)?;
    procfs::status_field(&s, "Threads")?.parse().ok()
}

/// Instance dirs (`<tmp>/mypodtest-*`) of other tests, other engineers' included: their
/// mounts come and go on a shared machine and are not ours to count.
fn foreign_instance_prefix(own: &Path) -> (String, String) {
    let own = format!("{}/", own.display());
    let parent = own
        .rsplit_once("mypodtest-")
        .map(|(p, _)| format!("{p}mypodtest-"))
        .unwrap_or_default();
    (own, parent)
}

/// Lines of the host's /proc/self/mountinfo, minus those of other test instances (their dirs
/// under the same tmp dir): the host's mount count as far as this instance can change it.
pub fn host_mounts(c: &Containerd) -> usize {
    let (own, others) = foreign_instance_prefix(c.dir());
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(&own) || others.is_empty() || !l.contains(&others))
        .count()
}

/// Mount points under the instance's dir (root, state, netns files, rootfs).
pub fn instance_mounts(c: &Containerd) -> usize {
    mypod_tests::cleanup::mounts_under(c.dir()).len()
}

/// Directories under the instance's top cgroup (`/<namespace>`) in every hierarchy, the tops
/// included.
pub fn cgroup_dirs(c: &Containerd) -> usize {
    let mut n = 0;
    for top in mypod_tests::cleanup::cgroup_dirs(c.namespace()) {
        let mut stack = vec![top];
        while let Some(d) = stack.pop() {
            n += 1;
            if let Ok(rd) = fs::read_dir(&d) {
                stack.extend(
                    rd.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| e.path()),
                );
            }
        }
    }
    n
}

/// Network interfaces in containerd's network namespace (CRI instances: the bridge, veths).
pub fn net_devices(c: &Containerd) -> usize {
    let Some(pid) = c.pid() else { return 0 };
    fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .map(|t| t.lines().skip(2).count())
        .unwrap_or(0)
}

/// Files in the instance's CNI IPAM dir (one per leased IP, plus host-local's bookkeeping).
pub fn ip_leases(c: &Containerd) -> usize {
    let dir = c.dir().join("cni/ipam");
    let mut n = 0;
    let mut stack: Vec<PathBuf> = vec![dir];
    while let Some(d) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                } else {
                    n += 1;
                }
            }
        }
    }
    n
}

/// Every count a churn run is judged by, taken at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counts {
    pub containerd_fds: usize,
    pub host_mounts: usize,
    pub instance_mounts: usize,
    pub cgroup_dirs: usize,
    pub shims: usize,
    pub net_devices: usize,
    pub ip_leases: usize,
}

impl Counts {
    pub fn take(c: &Containerd) -> Counts {
        Counts {
            containerd_fds: c.pid().and_then(fd_count).unwrap_or(0),
            host_mounts: host_mounts(c),
            instance_mounts: instance_mounts(c),
            cgroup_dirs: cgroup_dirs(c),
            shims: c.shim_pids().len(),
            net_devices: net_devices(c),
            ip_leases: ip_leases(c),
        }
    }

    /// What is above `base` (+ `fd_slack` for containerd's fds), named; empty if nothing is.
    pub fn above(&self, base: &Counts, fd_slack: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, now: usize, was: usize, slack: usize| {
            if now > was.saturating_add(slack) {
                out.push(format!("{name}: {was} -> {now} (allowed +{slack})"));
            }
        };
        check(
            "containerd fds",
            self.containerd_fds,
            base.containerd_fds,
            fd_slack,
        );
        check("host mounts", self.host_mounts, base.host_mounts, 0);
        check(
            "mounts under the instance dir",
            self.instance_mounts,
            base.instance_mounts,
            0,
        );
        check("cgroup dirs", self.cgroup_dirs, base.cgroup_dirs, 0);
        check("shims", self.shims, base.shims, 0);
        check("net devices", self.net_devices, base.net_devices, 0);
        check("IPAM files", self.ip_leases, base.ip_leases, 0);
        out
    }

    /// FIGURE fields of the counts while the load ran (showing the counts see it).
    pub fn peak_fields(&self) -> Vec<(&'static str, String)> {
        vec![(
            "while_running",
            format!(
                "mounts:{},cgroup_dirs:{},shims:{},net_devices:{}",
                self.instance_mounts, self.cgroup_dirs, self.shims, self.net_devices
            ),
        )]
    }

    /// True if these counts (while `pods` pods ran) are above `base` where a pod shows: its
    /// rootfs and netns mounts under the instance dir, its cgroup dirs, a shim, a veth.
    pub fn seen_load(&self, base: &Counts, pods: usize) -> bool {
        self.instance_mounts >= base.instance_mounts + pods
            && self.cgroup_dirs > base.cgroup_dirs
            && self.shims > base.shims
            && self.net_devices >= base.net_devices + pods.min(1)
    }

    /// FIGURE fields "before->after" for each count.
    pub fn fields(&self, after: &Counts) -> Vec<(&'static str, String)> {
        vec![
            (
                "containerd_fds",
                change(self.containerd_fds, after.containerd_fds),
            ),
            ("host_mounts", change(self.host_mounts, after.host_mounts)),
            (
                "instance_mounts",
                change(self.instance_mounts, after.instance_mounts),
            ),
            ("cgroup_dirs", change(self.cgroup_dirs, after.cgroup_dirs)),
            ("shims", change(self.shims, after.shims)),
            ("net_devices", change(self.net_devices, after.net_devices)),
            ("ipam_files", change(self.ip_leases, after.ip_leases)),
        ]
    }
}

/// Polls until the counts are back to `base` (containerd's fds within `fd_slack`), at most
/// `timeout`; returns the last counts and what is still above.
pub fn settle(
    c: &Containerd,
    base: &Counts,
    fd_slack: usize,
    timeout: Duration,
) -> (Counts, Vec<String>) {
    let start = Instant::now();
    loop {
        let now = Counts::take(c);
        let above = now.above(base, fd_slack);
        if above.is_empty() || start.elapsed() > timeout {
            return (now, above);
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Polls until the instance has no shim left, at most `timeout`; then takes the counts.
pub fn counts_without_shims(c: &Containerd, timeout: Duration) -> Counts {
    let start = Instant::now();
    while !c.shim_pids().is_empty() {
        assert!(
            start.elapsed() < timeout,
            "shims left after every pod was removed: {:?}",
            c.shim_pids()
        );
        thread::sleep(Duration::from_millis(100));
    }
    Counts::take(c)
}

/// One task event seen on `ctr events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub topic: String,
    pub container_id: String,
    /// The process: the exec id, or the container id for the init process (TaskExit); empty
    /// where the event has none.
    pub id: String,
    pub exec_id: String,
    pub exit_status: u32,
}

impl Event {
    /// Parses a `ctr events` line: `DATE TIME ZONE UTC NAMESPACE TOPIC JSON`.
    pub fn parse(line: &str) -> Option<Event> {
        let at = line.find(" /tasks/")?;
        let rest = &line[at + 1..];
        let (topic, json) = rest.split_once(' ')?;
        let v: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
        Some(Event {
            topic: topic.to_string(),
            container_id: s("container_id"),
            id: s("id"),
            exec_id: s("exec_id"),
            exit_status: v["exit_status"]
                .as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .unwrap_or(0),
        })
    }

    /// The process the event is about: the exec id, or "" for the container's init.
    pub fn process(&self) -> &str {
        if self.topic == "/tasks/exit" {
            if self.id == self.container_id {
                ""
            } else {
                &self.id
            }
        } else {
            &self.exec_id
        }
    }
}

/// `ctr events` running for the whole test, its lines collected as they come.
pub struct EventStream {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl EventStream {
    /// Starts `ctr events` and waits until it demonstrably receives: a throw-away container
    /// record's `/containers/create` (needs no task or shim) must arrive.
    pub fn start(c: &Containerd) -> EventStream {
        let mut cmd = c.ctr_command(&["events"]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("start ctr events");
        let out = child.stdout.take().expect("piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(l);
            }
        });
        let s = EventStream { child, lines };
        let probe = "events-ready-probe";
        let start = Instant::now();
        loop {
            let _ = c.ctr(&["containers", "create", mypod_tests::IMAGE, probe]);
            let _ = c.ctr(&["containers", "rm", probe]);
            let seen = s
                .raw()
                .iter()
                .any(|l| l.contains("/containers/create") && l.contains(probe));
            if seen {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "ctr events received nothing within 30 s"
            );
            thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every line so far.
    pub fn raw(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The task events so far.
    pub fn events(&self) -> Vec<Event> {
        self.raw().iter().filter_map(|l| Event::parse(l)).collect()
    }

    /// The task events of container `id`, in order.
    pub fn of(&self, id: &str) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.container_id == id)
            .collect()
    }

    /// Polls until `done(events of id)` holds, at most `timeout`; returns the events of `id`
    /// (whether or not it held).
    pub fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&[Event]) -> bool,
    ) -> Vec<Event> {
        let start = Instant::now();
        loop {
            let ev = self.of(id);
            if done(&ev) || start.elapsed() > timeout {
                return ev;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        // Our own child, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How many events of each (topic, process) `events` holds.
pub fn tally(events: &[Event]) -> HashMap<(String, String), usize> {
    let mut m = HashMap::new();
    for e in events {
        *m.entry((e.topic.clone(), e.process().to_string()))
            .or_insert(0) += 1;
    }
    m
}

/// Short form of events for messages: `topic[process]=status`.
pub fn describe(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            let p = e.process();
            let short = e.topic.trim_start_matches("/tasks/");
            if e.topic == "/tasks/exit" || e.topic == "/tasks/delete" {
                format!("{short}[{p}]={}", e.exit_status)
            } else {
                format!("{short}[{p}]")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn events_are_parsed() {
    let l = "2026-11-22 03:21:16.1 +0000 UTC k8s.io /tasks/exit \
             {\"container_id\":\"a\",\"id\":\"e1\",\"pid\":9,\"exit_status\":3}";
    let e = Event::parse(l).expect("parses");
    assert_eq!(
        (e.topic.as_str(), e.process(), e.exit_status),
        ("/tasks/exit", "e1", 3)
    );
    let init = Event::parse(
        "2026-11-22 03:21:16 +0000 UTC ns /tasks/exit {\"container_id\":\"a\",\"id\":\"a\"}",
    )
    .expect("parses");
    assert_eq!((init.process(), init.exit_status), ("", 0));
    let started = Event::parse(
        "x ns /tasks/exec-started {\"container_id\":\"a\",\"exec_id\":\"e2\",\"pid\":5}",
    )
    .expect("parses");
    assert_eq!(started.process(), "e2");
    assert!(Event::parse("x ns /containers/create {\"id\":\"a\"}").is_none());
}
