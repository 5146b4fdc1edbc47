//! Issue 6: resource limits in the cgroup files and in effect, Pause/Resume, Update, Stats
//! (`ctr task metrics`) and OOM events, on cgroup v1 (this machine's hybrid layout) and on
//! cgroup v2 (a cgroup2-only host: `scripts/cgroup2-vm.sh --test resources`). Every test has
//! a branch for each; a host that is neither fails.
//!
//! None of the three `ctr` versions has `task update`, so Update is sent to the task's shim
//! as containerd sends it (Task.Update over ttrpc, the resources as OCI JSON in an Any) by a
//! small client below; everything else goes through `ctr`.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mypod_tests::command::Spawned;
use mypod_tests::ctr::topics_for;
use mypod_tests::{per_version, Containerd};
use serde_json::json;

/// `/sys/fs/cgroup/<controller>/<ns>/<id>`: where `ctr run` puts a container (its default
/// cgroupsPath is `/<namespace>/<id>`).
fn cgroup_dir(c: &Containerd, controller: &str, id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(c.ctr_namespace())
        .join(id)
}

fn cgroup_file(c: &Containerd, controller: &str, id: &str, file: &str) -> String {
    let p = cgroup_dir(c, controller, id).join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn is_v1() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

/// A cgroup2-only host: the unified tree at /sys/fs/cgroup. Panics on a host that is
/// neither v1 nor v2, so no test passes by checking nothing.
fn is_v2() -> bool {
    if is_v1() {
        return false;
    }
    assert!(
        Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        "neither cgroup v1 (/sys/fs/cgroup/memory) nor cgroup v2 (/sys/fs/cgroup/cgroup.controllers)"
    );
    true
}

/// `/sys/fs/cgroup/<ns>/<id>/<file>` on cgroup v2 (one tree; ctr's default cgroupsPath is
/// `/<namespace>/<id>`).
fn v2_file(c: &Containerd, id: &str, file: &str) -> String {
    let p = Path::new("/sys/fs/cgroup")
        .join(c.ctr_namespace())
        .join(id)
        .join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Limits given with `ctr run` flags land in the cgroup files (v1, or v2).
fn limits_in_cgroup_files(c: &Containerd) {
    let v2 = is_v2();
    c.run_detached(
        "lim",
        &[
            "--memory-limit",
            "67108864",
            "--cpu-quota",
            "25000",
            "--cpu-period",
            "50000",
            "--cpu-shares",
            "512",
        ],
        &["sleep", "60"],
    );
    if v2 {
        assert_eq!(v2_file(c, "lim", "memory.max"), "67108864");
        assert_eq!(v2_file(c, "lim", "cpu.max"), "25000 50000");
        // runc's conversion: 1 + ((512 - 2) * 9999) / 262142.
        assert_eq!(v2_file(c, "lim", "cpu.weight"), "20");
    } else {
        assert_eq!(
            cgroup_file(c, "memory", "lim", "memory.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(cgroup_file(c, "cpu", "lim", "cpu.cfs_quota_us"), "25000");
        assert_eq!(cgroup_file(c, "cpu", "lim", "cpu.cfs_period_us"), "50000");
        assert_eq!(cgroup_file(c, "cpu", "lim", "cpu.shares"), "512");
    }
    c.kill_and_remove("lim");
    c.assert_clean("lim");

    // --cpus is a quota over the default 100 ms period.
    c.run_detached("cpus", &["--cpus", "0.5"], &["sleep", "60"]);
    if v2 {
        assert_eq!(v2_file(c, "cpus", "cpu.max"), "50000 100000");
    } else {
        assert_eq!(cgroup_file(c, "cpu", "cpus", "cpu.cfs_quota_us"), "50000");
        assert_eq!(cgroup_file(c, "cpu", "cpus", "cpu.cfs_period_us"), "100000");
    }
    c.kill_and_remove("cpus");
    c.assert_clean("cpus");
}
per_version!(limits_in_cgroup_files);

/// The container's processes are in its cgroup in every hierarchy the host has: each v1
/// hierarchy (which the init helper joins through `tasks`) and the cgroup2 tree (the
/// helper is born there with clone3's CLONE_INTO_CGROUP: a hybrid host's unified tree, or
/// a cgroup2-only host's only one). Checked for the init and for an exec.
fn processes_are_in_their_cgroup_everywhere(c: &Containerd) {
    c.run_detached("everywhere", &[], &["sleep", "60"]);
    let pid = c.task("everywhere").expect("task everywhere").pid;
    let want = format!("/{}/everywhere", c.ctr_namespace());
    let init = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("init's cgroup");
    let exec = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e1",
        "everywhere",
        "cat",
        "/proc/1/cgroup",
        "/proc/self/cgroup",
    ]);
    c.kill_and_remove("everywhere");
    c.assert_clean("everywhere");
    let lines: Vec<&str> = init.lines().collect();
    // Inside, the container's cgroup namespace shows paths relative to its own root: the
    // init's view of itself (/proc/1) and the exec's are the same.
    assert!(exec.success(), "exec failed: {exec}");
    let inside: Vec<&str> = exec.stdout.lines().collect();
    assert_eq!(inside.len(), 2 * lines.len(), "{}", exec.stdout);
    assert_eq!(
        inside[..lines.len()],
        inside[lines.len()..],
        "{}",
        exec.stdout
    );
    let mut v2 = false;
    for l in &lines {
        // hierarchy-id:controllers:path; the cgroup2 line is 0::path.
        let path = l.splitn(3, ':').nth(2).unwrap_or_default();
        v2 |= l.starts_with("0::");
        assert_eq!(
            path, want,
            "init {pid} is not in {want} everywhere:\n{init}"
        );
    }
    let has_v2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" - cgroup2 "));
    assert_eq!(v2, has_v2, "the cgroup2 membership is missing:\n{init}");
}
per_version!(processes_are_in_their_cgroup_everywhere);

/// `ctr run -d --config FILE ID` with `spec` as FILE.
fn run_config_detached(c: &Containerd, id: &str, spec: &serde_json::Value) {
    let file = c.write_spec_file(id, &spec.to_string());
    c.ctr_ok(&["run", "-d", "--runtime", c.runtime(), "--config", &file, id]);
}

/// A spec's pids limit, cpuset, memory reservation and swappiness (v1; on v2: swap, which
/// becomes memory.swap.max, and the blkio weight as io.weight) are applied; the pids limit
/// stops a fork bomb.
fn pids_limit_stops_a_fork_bomb(c: &Containerd) {
    let mut spec = c.config_spec("lims", &["sleep", "60"]);
    spec["linux"]["resources"]["pids"] = json!({ "limit": 12 });
    spec["linux"]["resources"]["cpu"] = json!({ "cpus": "0", "mems": "0" });
    if is_v2() {
        // memory+swap 192 MiB over a 128 MiB limit: 64 MiB of swap.
        spec["linux"]["resources"]["memory"] =
            json!({ "limit": 134217728, "reservation": 67108864, "swap": 201326592 });
        spec["linux"]["resources"]["blockIO"] = json!({ "weight": 500 });
        run_config_detached(c, "lims", &spec);
        assert_eq!(v2_file(c, "lims", "pids.max"), "12");
        assert_eq!(v2_file(c, "lims", "cpuset.cpus"), "0");
        assert_eq!(v2_file(c, "lims", "cpuset.mems"), "0");
        assert_eq!(v2_file(c, "lims", "memory.max"), "134217728");
        assert_eq!(v2_file(c, "lims", "memory.low"), "67108864");
        assert_eq!(v2_file(c, "lims", "memory.swap.max"), "67108864");
        // BFQ takes the blkio weight as it is; otherwise io.weight gets it converted
        // (10..1000 → 1..10000), as runc does.
        let bfq = Path::new("/sys/fs/cgroup")
            .join(c.ctr_namespace())
            .join("lims/io.bfq.weight");
        if bfq.exists() {
            assert_eq!(v2_file(c, "lims", "io.bfq.weight"), "default 500");
        } else {
            assert_eq!(v2_file(c, "lims", "io.weight"), "default 4950");
        }
        c.kill_and_remove("lims");
        c.assert_clean("lims");
        fork_bomb(c);
        return;
    }
    spec["linux"]["resources"]["memory"] =
        json!({ "limit": 134217728, "reservation": 67108864, "swappiness": 20 });
    run_config_detached(c, "lims", &spec);
    assert_eq!(cgroup_file(c, "pids", "lims", "pids.max"), "12");
    assert_eq!(cgroup_file(c, "cpuset", "lims", "cpuset.cpus"), "0");
    assert_eq!(cgroup_file(c, "cpuset", "lims", "cpuset.mems"), "0");
    assert_eq!(
        cgroup_file(c, "memory", "lims", "memory.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(
        cgroup_file(c, "memory", "lims", "memory.soft_limit_in_bytes"),
        "67108864"
    );
    assert_eq!(cgroup_file(c, "memory", "lims", "memory.swappiness"), "20");
    c.kill_and_remove("lims");
    c.assert_clean("lims");
    fork_bomb(c);
}
per_version!(pids_limit_stops_a_fork_bomb);

/// A pids limit of 12 stops a shell's fork loop.
fn fork_bomb(c: &Containerd) {
    let script = "i=0; while [ $i -lt 60 ]; do sleep 3 & i=$((i+1)); echo forked $i; done";
    let mut spec = c.config_spec("bomb", &["/bin/sh", "-c", script]);
    spec["linux"]["resources"]["pids"] = json!({ "limit": 12 });
    let out = c.run_config("bomb", &[], &spec);
    let forked = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("forked "))
        .count();
    assert!(
        (1..12).contains(&forked),
        "the pids limit must stop the loop before 12 tasks (forked {forked}):\n{out}"
    );
    assert!(
        out.stderr.contains("can't fork"),
        "the shell should report that it cannot fork:\n{out}"
    );
    c.assert_clean("bomb");
}

/// Bad limits fail Create with an error naming the field or the file, and leave nothing.
fn bad_limits_fail_clearly(c: &Containerd) {
    // The same on v1 and v2: the files are named cpuset.cpus in both.
    let _ = is_v2();
    let mut spec = c.config_spec("negmem", &["/bin/true"]);
    spec["linux"]["resources"]["memory"] = json!({ "limit": -5 });
    let out = c.run_config("negmem", &[], &spec);
    out.assert_failure();
    if c.is_mypod() {
        assert!(
            out.stderr.contains("memory.limit = -5"),
            "the error should name the field and value:\n{out}"
        );
    }
    let _ = c.ctr(&["containers", "rm", "negmem"]);
    c.assert_clean("negmem");

    let cpus = format!(
        "{}",
        64 + std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut spec = c.config_spec("nocpu", &["/bin/true"]);
    spec["linux"]["resources"]["cpu"] = json!({ "cpus": cpus });
    let out = c.run_config("nocpu", &[], &spec);
    out.assert_failure();
    assert!(
        out.stderr.contains("cpuset.cpus"),
        "the error should name cpuset.cpus:\n{out}"
    );
    if c.is_mypod() {
        assert!(
            out.stderr.contains(&format!("cpuset.cpus = {cpus}: ")),
            "the error should name the value:\n{out}"
        );
    }
    let _ = c.ctr(&["containers", "rm", "nocpu"]);
    c.assert_clean("nocpu");
}
per_version!(bad_limits_fail_clearly);

/// A cgroupsPath in systemd's `slice:prefix:name` form (containerd's SystemdCgroup = true).
/// Where systemd runs, the container lands in the scope systemd's driver gives it, under the
/// expanded slice; where it does not (this machine and the cgroup2 VM), Create is refused at
/// once with an error that says so, and nothing is left behind.
fn systemd_cgroups_path(c: &Containerd) {
    if !c.is_mypod() {
        // runc-v2 without SystemdCgroup takes the string as a cgroupfs path: not comparable.
        return;
    }
    let slice = format!("{}.slice", c.ctr_namespace().replace('-', "_"));
    let path = format!("{slice}:mypod:sdcg");
    if Path::new("/run/systemd/system").is_dir() {
        c.run_detached("sdcg", &["--cgroup", &path], &["sleep", "60"]);
        let pid = c.task("sdcg").expect("task sdcg").pid;
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        c.kill_and_remove("sdcg");
        let want = format!("/{slice}/mypod-sdcg.scope");
        assert!(
            cgroups
                .lines()
                .filter(|l| !l.contains("name=") && !l.ends_with(":/"))
                .count()
                > 0
                && cgroups
                    .lines()
                    .all(|l| l.ends_with(&want) || l.ends_with(":/") || l.contains("name=")),
            "every controller's hierarchy should place the container at {want}:\n{cgroups}"
        );
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(h.path().join(&slice));
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&slice));
    } else {
        let out = c.run("sdcg", &["--cgroup", &path], &["/bin/true"]);
        out.assert_failure();
        assert!(
            out.stderr.contains(&path) && out.stderr.contains("systemd does not run"),
            "the error should name the path and say systemd does not run here:\n{out}"
        );
        let _ = c.ctr(&["containers", "rm", "sdcg"]);
    }
    c.assert_clean("sdcg");
}
per_version!(systemd_cgroups_path);

/// A memory hog over its limit is OOM-killed (137) and /tasks/oom arrives.
fn memory_hog_is_oom_killed(c: &Containerd) {
    let events = Spawned::start(c.ctr_command(&["events"]));
    std::thread::sleep(Duration::from_millis(500));
    // dd's 256 MiB buffer is filled from /dev/zero: far over a 32 MiB limit (no swap here;
    // with swap, memory+swap is unlimited and the hog would page out instead).
    let out = c.run(
        "hog",
        &["--memory-limit", "33554432"],
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=4"],
    );
    assert_eq!(out.exit_code(), 137, "the hog must be SIGKILLed:\n{out}");
    std::thread::sleep(Duration::from_millis(700));
    let got = events.wait(Duration::ZERO);
    let topics = topics_for(&got.stdout, "hog");
    assert!(
        topics.iter().any(|t| t == "/tasks/oom"),
        "no /tasks/oom event for hog: {topics:?}\n{got}\ncontainerd log:\n{}",
        c.log_tail(40)
    );
    c.assert_clean("hog");
}
per_version!(memory_hog_is_oom_killed);

/// The counter a paused container's loop writes, read from the host through /proc.
fn counter(pid: u32) -> u64 {
    let p = format!("/proc/{pid}/root/tmp/count");
    std::fs::read_to_string(&p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Pause freezes the container (PAUSED, freezer FROZEN, no progress); Resume thaws it;
/// both events arrive; a paused container can still be killed.
fn pause_and_resume(c: &Containerd) {
    let events = Spawned::start(c.ctr_command(&["events"]));
    std::thread::sleep(Duration::from_millis(500));
    let script = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; \
                  mv /tmp/count.new /tmp/count; sleep 0.05; done";
    c.run_detached("pz", &[], &["/bin/sh", "-c", script]);
    let pid = c
        .wait_task_status("pz", "RUNNING", Duration::from_secs(10))
        .pid;
    let start = Instant::now();
    while counter(pid) < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the loop never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.ctr_ok(&["tasks", "pause", "pz"]);
    c.wait_task_status("pz", "PAUSED", Duration::from_secs(5));
    if is_v2() {
        assert_eq!(v2_file(c, "pz", "cgroup.freeze"), "1");
        let events = v2_file(c, "pz", "cgroup.events");
        assert!(
            events.lines().any(|l| l == "frozen 1"),
            "cgroup.events should say frozen 1:\n{events}"
        );
    } else {
        assert_eq!(cgroup_file(c, "freezer", "pz", "freezer.state"), "FROZEN");
    }
    let frozen = counter(pid);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(counter(pid), frozen, "a paused container made progress");
    c.ctr_ok(&["tasks", "resume", "pz"]);
    c.wait_task_status("pz", "RUNNING", Duration::from_secs(5));
    if is_v2() {
        assert_eq!(v2_file(c, "pz", "cgroup.freeze"), "0");
    }
    let start = Instant::now();
    while counter(pid) <= frozen {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "no progress after resume"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Pausing twice is refused; a paused container dies of SIGKILL.
    c.ctr_ok(&["tasks", "pause", "pz"]);
    c.ctr(&["tasks", "pause", "pz"]).assert_failure();
    c.kill_and_remove("pz");
    std::thread::sleep(Duration::from_millis(500));
    let got = events.wait(Duration::ZERO);
    let topics = topics_for(&got.stdout, "pz");
    for want in ["/tasks/paused", "/tasks/resumed"] {
        assert!(
            topics.iter().any(|t| t == want),
            "no {want} event: {topics:?}\n{got}"
        );
    }
    c.assert_clean("pz");
}
per_version!(pause_and_resume);

/// `ctr task metrics` (table form: `METRIC VALUE` lines) as a map.
fn metrics(c: &Containerd, id: &str) -> std::collections::HashMap<String, String> {
    let out = c.ctr_ok(&["tasks", "metrics", id]);
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with("METRIC"))
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

fn metric(m: &std::collections::HashMap<String, String>, k: &str) -> u64 {
    m.get(k)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {k} missing or not a number: {m:?}"))
}

/// `ctr task metrics` shows real numbers that move with load.
fn metrics_move_with_load(c: &Containerd) {
    c.run_detached("met", &["--memory-limit", "268435456"], &["sleep", "60"]);
    if is_v2() {
        metrics_move_with_load_v2(c);
        return;
    }
    let before = metrics(c, "met");
    assert!(metric(&before, "memory.usage_in_bytes") > 0, "{before:?}");
    assert_eq!(
        metric(&before, "memory.limit_in_bytes"),
        268435456,
        "{before:?}"
    );
    assert!(metric(&before, "pids.current") >= 1, "{before:?}");
    let cpu_before = metric(&before, "cpuacct.usage");
    load(c, "met");
    let after = metrics(c, "met");
    assert!(
        metric(&after, "cpuacct.usage") > cpu_before + 10_000_000,
        "cpu usage should grow by more than 10 ms: {cpu_before} → {after:?}"
    );
    assert!(
        metric(&after, "memory.usage_in_bytes") >= 40 << 20,
        "memory usage should include the 40 MiB file: {after:?}"
    );
    c.kill_and_remove("met");
    c.assert_clean("met");
}
per_version!(metrics_move_with_load);

/// A busy loop and 40 MiB in a tmpfs file (charged to the container), exec'd in `id`.
fn load(c: &Containerd, id: &str) {
    let out = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "load",
        id,
        "/bin/sh",
        "-c",
        "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; \
         dd if=/dev/zero of=/dev/shm/x bs=1M count=40 2>/dev/null; echo done",
    ]);
    assert_eq!(out.stdout.trim(), "done", "{out}");
}

/// The v2 half of `metrics_move_with_load`: `ctr task metrics` prints the v2 Metrics'
/// table (pids.*, cpu.*_usec, memory.usage/usage_limit/swap_*).
fn metrics_move_with_load_v2(c: &Containerd) {
    let before = metrics(c, "met");
    assert!(metric(&before, "memory.usage") > 0, "{before:?}");
    assert_eq!(
        metric(&before, "memory.usage_limit"),
        268435456,
        "{before:?}"
    );
    assert!(metric(&before, "pids.current") >= 1, "{before:?}");
    let cpu_before = metric(&before, "cpu.usage_usec");
    load(c, "met");
    let after = metrics(c, "met");
    assert!(
        metric(&after, "cpu.usage_usec") > cpu_before + 10_000,
        "cpu usage should grow by more than 10 ms: {cpu_before} → {after:?}"
    );
    assert!(
        metric(&after, "memory.usage") >= 40 << 20,
        "memory usage should include the 40 MiB file: {after:?}"
    );
    c.kill_and_remove("met");
    c.assert_clean("met");
}

// ---- Task.Update over ttrpc, as containerd sends it ----

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A length-delimited protobuf field.
fn field(num: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(num << 3 | 2), out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Reads a protobuf message's fields: (number, varint value or bytes).
fn fields(mut b: &[u8]) -> Vec<(u32, Result<u64, Vec<u8>>)> {
    fn uvarint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&x, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(x & 0x7f) << shift;
            if x & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while let Some(key) = uvarint(&mut b) {
        let num = (key >> 3) as u32;
        match key & 7 {
            0 => match uvarint(&mut b) {
                Some(v) => out.push((num, Ok(v))),
                None => break,
            },
            2 => {
                let Some(len) = uvarint(&mut b) else { break };
                let len = len as usize;
                if len > b.len() {
                    break;
                }
                out.push((num, Err(b[..len].to_vec())));
                b = &b[len..];
            }
            _ => break,
        }
    }
    out
}

/// One ttrpc unary call; returns (status code, message, payload).
fn ttrpc_call(sock: &Path, service: &str, method: &str, payload: &[u8]) -> (u64, String, Vec<u8>) {
    let mut req = Vec::new();
    field(1, service.as_bytes(), &mut req);
    field(2, method.as_bytes(), &mut req);
    field(3, payload, &mut req);
    varint(4 << 3, &mut req);
    varint(10_000_000_000, &mut req);
    let mut s = UnixStream::connect(sock).unwrap_or_else(|e| panic!("{}: {e}", sock.display()));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut msg = Vec::new();
    msg.extend_from_slice(&(req.len() as u32).to_be_bytes());
    msg.extend_from_slice(&1u32.to_be_bytes()); // stream id
    msg.extend_from_slice(&[1, 0]); // request, no flags
    msg.extend_from_slice(&req);
    s.write_all(&msg).expect("send ttrpc request");
    let mut head = [0u8; 10];
    s.read_exact(&mut head).expect("ttrpc response header");
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("ttrpc response body");
    let (mut code, mut message, mut payload) = (0, String::new(), Vec::new());
    for (n, v) in fields(&body) {
        match (n, v) {
            (1, Err(status)) => {
                for (sn, sv) in fields(&status) {
                    match (sn, sv) {
                        (1, Ok(c)) => code = c,
                        (2, Err(m)) => message = String::from_utf8_lossy(&m).into_owned(),
                        _ => {}
                    }
                }
            }
            (2, Err(p)) => payload = p,
            _ => {}
        }
    }
    (code, message, payload)
}

/// Task.Update{id, resources: Any(LinuxResources JSON)} to the shim of `id`, as Task v2 or,
/// if the shim does not serve it (containerd 2.x's runc shim), v3.
fn update_task(c: &Containerd, id: &str, resources: &serde_json::Value) -> (u64, String) {
    let mut any = Vec::new();
    field(
        1,
        b"types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
        &mut any,
    );
    field(2, resources.to_string().as_bytes(), &mut any);
    let mut req = Vec::new();
    field(1, id.as_bytes(), &mut req);
    field(2, &any, &mut req);
    let sock = c.shim_socket(id);
    let mut last = (0, String::new());
    for svc in ["containerd.task.v2.Task", "containerd.task.v3.Task"] {
        let (code, msg, _) = ttrpc_call(&sock, svc, "Update", &req);
        // 12 UNIMPLEMENTED / 5 NOT_FOUND: the service is not served under that name.
        if (code == 12 || code == 5) && msg.contains("service") {
            last = (code, msg);
            continue;
        }
        return (code, msg);
    }
    last
}

/// Update changes the limits of a running container; bad values are refused and change
/// nothing; an Update of a stopped container fails clearly.
fn update_running_and_stopped(c: &Containerd) {
    let v2 = is_v2();
    // The memory limit as its file says it: memory.max (v2) or memory.limit_in_bytes (v1).
    let mem = |id: &str| {
        if v2 {
            v2_file(c, id, "memory.max")
        } else {
            cgroup_file(c, "memory", id, "memory.limit_in_bytes")
        }
    };
    c.run_detached("upd", &["--memory-limit", "67108864"], &["sleep", "60"]);
    if v2 {
        assert_eq!(mem("upd"), "67108864");
        assert_eq!(v2_file(c, "upd", "cpu.max"), "max 100000");
    }
    let (code, msg) = update_task(
        c,
        "upd",
        &json!({ "memory": { "limit": 100663296 }, "cpu": { "quota": 20000, "period": 100000 } }),
    );
    assert_eq!((code, msg.as_str()), (0, ""), "Update should succeed");
    assert_eq!(mem("upd"), "100663296");
    if v2 {
        assert_eq!(v2_file(c, "upd", "cpu.max"), "20000 100000");
    } else {
        assert_eq!(cgroup_file(c, "cpu", "upd", "cpu.cfs_quota_us"), "20000");
    }
    if c.is_mypod() {
        let (code, msg) = update_task(c, "upd", &json!({ "memory": { "limit": -5 } }));
        assert_eq!(code, 3, "INVALID_ARGUMENT expected: {msg}");
        assert!(msg.contains("memory.limit = -5"), "{msg}");
        assert_eq!(mem("upd"), "100663296");
    }
    c.kill_and_remove("upd");
    c.assert_clean("upd");

    c.run_detached("upd2", &[], &["/bin/true"]);
    c.wait_task_status("upd2", "STOPPED", Duration::from_secs(10));
    let (code, msg) = update_task(c, "upd2", &json!({ "memory": { "limit": 100663296 } }));
    assert_ne!(code, 0, "Update of a stopped container must fail");
    assert!(
        msg.contains("stopped"),
        "the error should say it stopped: {msg}"
    );
    if c.is_mypod() {
        assert_eq!(code, 9, "FAILED_PRECONDITION expected: {msg}");
    }
    c.kill_and_remove("upd2");
    c.assert_clean("upd2");
}
per_version!(update_running_and_stopped);
