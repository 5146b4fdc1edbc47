//! Issue 6 through CRI, as the kubelet uses it: ContainerStats / ListContainerStats /
//! PodSandboxStats show real numbers (memory working set = usage - inactive_file, cpu time that
//! grows under load), a container over its memory limit is OOM-killed and reported as
//! `OOMKilled` (exit code 137), UpdateContainerResources changes a running container's cgroup
//! files (and an impossible update fails clearly and changes nothing), and a pod's sandbox and
//! containers live under the pod's cgroup parent.
//!
//! The numbers are checked against the container's cgroup files, read from the host just before
//! and just after the CRI call. Pods get the cgroup parent `/<instance>/<pod>` from the harness,
//! so a container's cgroup is `/sys/fs/cgroup/<controller>/<instance>/<pod>/<id>` (cgroup v1) or
//! `/sys/fs/cgroup/<instance>/<pod>/<id>` (v2).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use mypod_tests::cri::api::{self, ContainerState};
use mypod_tests::cri::describe_status;
use mypod_tests::{per_version_cri, ContainerBuilder, Containerd, Pod, Version};

const T: Duration = Duration::from_secs(20);
const MIB: i64 = 1 << 20;

fn is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The cgroup dir of the sandbox or container `id` of `pod` for `controller` (v1), or its
/// unified dir (v2: `controller` is ignored).
fn cg_dir(pod: &Pod, controller: &str, id: &str) -> PathBuf {
    let base = Path::new("/sys/fs/cgroup");
    let base = if is_v2() {
        base.to_path_buf()
    } else {
        base.join(controller)
    };
    base.join(pod.cgroup_of(id))
}

fn read_cg(pod: &Pod, controller: &str, id: &str, file: &str) -> String {
    let p = cg_dir(pod, controller, id).join(file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// A key of a flat-keyed cgroup file (`memory.stat`, `cpu.stat`).
fn stat_key(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Host view of a container's memory: (usage, inactive_file), as containerd computes the
/// working set from them (v1: `memory.usage_in_bytes`, `total_inactive_file`; v2:
/// `memory.current`, `inactive_file`).
fn host_memory(pod: &Pod, id: &str) -> (u64, u64) {
    let stat = read_cg(pod, "memory", id, "memory.stat");
    if is_v2() {
        let usage = read_cg(pod, "memory", id, "memory.current");
        (
            usage.parse().expect("memory.current"),
            stat_key(&stat, "inactive_file").expect("inactive_file in memory.stat"),
        )
    } else {
        let usage = read_cg(pod, "memory", id, "memory.usage_in_bytes");
        (
            usage.parse().expect("memory.usage_in_bytes"),
            stat_key(&stat, "total_inactive_file").expect("total_inactive_file in memory.stat"),
        )
    }
}

/// Host view of a container's cpu time in ns (v1 `cpuacct.usage`; v2 `cpu.stat` usage_usec).
fn host_cpu_ns(pod: &Pod, id: &str) -> u64 {
    if is_v2() {
        let stat = read_cg(pod, "cpu", id, "cpu.stat");
        stat_key(&stat, "usage_usec").expect("usage_usec in cpu.stat") * 1000
    } else {
        read_cg(pod, "cpuacct", id, "cpuacct.usage")
            .parse()
            .expect("cpuacct.usage")
    }
}

fn u64v(v: &Option<api::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

/// ContainerStats of `id`; panics unless CRI answered with stats.
fn stats_of(c: &Containerd, id: &str) -> api::ContainerStats {
    c.cri()
        .container_stats(id)
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("ContainerStats of {id}: no stats in the answer"))
}

fn memory_of(s: &api::ContainerStats) -> (u64, u64) {
    let m = s
        .memory
        .as_ref()
        .unwrap_or_else(|| panic!("no memory in the stats: {s:?}"));
    let ws = u64v(&m.working_set_bytes)
        .unwrap_or_else(|| panic!("no working_set_bytes in the stats: {s:?}"));
    let usage =
        u64v(&m.usage_bytes).unwrap_or_else(|| panic!("no usage_bytes in the stats: {s:?}"));
    (ws, usage)
}

fn cpu_ns_of(s: &api::ContainerStats) -> u64 {
    s.cpu
        .as_ref()
        .and_then(|c| u64v(&c.usage_core_nano_seconds))
        .unwrap_or_else(|| panic!("no cpu usage_core_nano_seconds in the stats: {s:?}"))
}

/// Polls the container's CRI log until a line says `word`.
fn wait_for_log(pod: &Pod, container: &str, word: &str) {
    let log = pod.log_directory().join(container).join("0.log");
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.lines().any(|l| l.ends_with(&format!(" {word}"))) {
            return;
        }
        assert!(
            start.elapsed() < T,
            "{} does not say {word:?} within {T:?}: {text:?}",
            log.display()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Pod stats `stats` (from `call`) are `pod`'s: its id and name, a non-zero working set, cpu
/// time at least `min_cpu` ns (a busy container's), and exactly `containers`' stats inside.
fn check_pod_stats(
    call: &str,
    stats: &api::PodSandboxStats,
    pod: &Pod,
    containers: &BTreeSet<String>,
    min_cpu: u64,
) {
    let attrs = stats
        .attributes
        .as_ref()
        .unwrap_or_else(|| panic!("{call}: no attributes: {stats:?}"));
    assert_eq!(attrs.id, pod.id, "{call}: {stats:?}");
    assert_eq!(
        attrs.metadata.as_ref().map(|m| m.name.as_str()),
        Some(pod.name()),
        "{call}: {stats:?}"
    );
    let linux = stats
        .linux
        .as_ref()
        .unwrap_or_else(|| panic!("{call}: no linux pod stats: {stats:?}"));
    let mem = linux
        .memory
        .as_ref()
        .unwrap_or_else(|| panic!("{call}: no pod memory: {stats:?}"));
    let pod_ws = u64v(&mem.working_set_bytes).unwrap_or(0);
    let pod_cpu = linux
        .cpu
        .as_ref()
        .and_then(|c| u64v(&c.usage_core_nano_seconds))
        .unwrap_or(0);
    eprintln!(
        "{call}: working set {pod_ws}, cpu {pod_cpu} ns, {} containers",
        linux.containers.len()
    );
    assert!(pod_ws > 0, "{call}: pod working set: {stats:?}");
    assert!(
        pod_cpu >= min_cpu,
        "{call}: the pod's cpu time ({pod_cpu}) includes the busy container's ({min_cpu})"
    );
    let ids: BTreeSet<String> = linux
        .containers
        .iter()
        .filter_map(|s| s.attributes.as_ref().map(|a| a.id.clone()))
        .collect();
    assert_eq!(&ids, containers, "{call}: containers: {stats:?}");
    for s in &linux.containers {
        let (ws, _) = memory_of(s);
        assert!(ws > 0 && cpu_ns_of(s) > 0, "{call}: {s:?}");
    }
}

/// (1) ContainerStats and ListContainerStats of a mypod container carry the cgroup's numbers:
/// memory usage as the host reads it, working set = usage - inactive_file (16 MiB of page cache
/// written by the container make the difference visible), cpu time that grows under a busy
/// loop and lies between two host readings. PodSandboxStats and ListPodSandboxStats (the pod,
/// its containers, non-zero memory and cpu) where containerd implements them (not 1.6).
fn stats_show_real_numbers(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("stats"));
    // The file lands in the container's writable layer: page cache charged to its cgroup, on
    // the inactive list until it is read again.
    let cache = c.start_in_pod(
        &pod,
        &ContainerBuilder::new(
            "cache",
            &[
                "sh",
                "-c",
                "head -c 16777216 /dev/zero > /cachefile && echo written && exec sleep 1000",
            ],
        ),
    );
    let busy = c.start_in_pod(
        &pod,
        &ContainerBuilder::new("busy", &["sh", "-c", "while :; do :; done"]),
    );
    c.wait_container_state(&cache, ContainerState::ContainerRunning, T);
    c.wait_container_state(&busy, ContainerState::ContainerRunning, T);
    wait_for_log(&pod, "cache", "written");

    // Memory: usage and working set match the cgroup's files (sampled before and after).
    let (usage_before, inactive_before) = host_memory(&pod, &cache);
    let s = stats_of(c, &cache);
    let (usage_after, inactive_after) = host_memory(&pod, &cache);
    let attrs = s.attributes.as_ref().expect("stats have attributes");
    assert_eq!(attrs.id, cache, "{s:?}");
    assert_eq!(
        attrs.metadata.as_ref().map(|m| m.name.as_str()),
        Some("cache"),
        "{s:?}"
    );
    let (ws, usage) = memory_of(&s);
    eprintln!(
        "cache: CRI usage {usage} working set {ws}; host usage {usage_before}..{usage_after}, inactive_file {inactive_before}..{inactive_after}"
    );
    assert!(ws > 0, "working set of a running container: {s:?}");
    let slack = 2 * MIB as u64;
    let (lo, hi) = (usage_before.min(usage_after), usage_before.max(usage_after));
    assert!(
        usage + slack >= lo && usage <= hi + slack,
        "CRI memory usage {usage} is not the cgroup's ({usage_before}..{usage_after})"
    );
    assert!(
        inactive_before >= 8 * MIB as u64,
        "the 16 MiB the container wrote should be inactive page cache in its cgroup; \
         inactive_file is {inactive_before}"
    );
    assert!(ws < usage, "working set {ws} must be below usage {usage}");
    let subtracted = usage - ws;
    let (ilo, ihi) = (
        inactive_before.min(inactive_after),
        inactive_before.max(inactive_after),
    );
    assert!(
        subtracted + slack >= ilo && subtracted <= ihi + slack,
        "usage - working set = {subtracted}, but the cgroup's inactive_file is \
         {inactive_before}..{inactive_after}: the working set must be usage - inactive_file"
    );
    if let Some(wl) = &s.writable_layer {
        eprintln!("cache: writable layer {wl:?}");
    } else {
        eprintln!("cache: no writable layer stats (allowed)");
    }

    // CPU: a busy loop's cpu time grows, and CRI's number lies between two host readings.
    let h1 = host_cpu_ns(&pod, &busy);
    let s1 = stats_of(c, &busy);
    let h2 = host_cpu_ns(&pod, &busy);
    let cpu1 = cpu_ns_of(&s1);
    assert!(
        cpu1 > 0 && cpu1 + 1000 >= h1 && cpu1 <= h2 + 1000,
        "CRI cpu usage {cpu1} ns is not the cgroup's ({h1}..{h2} ns)"
    );
    thread::sleep(Duration::from_secs(2));
    let h3 = host_cpu_ns(&pod, &busy);
    let s2 = stats_of(c, &busy);
    let h4 = host_cpu_ns(&pod, &busy);
    let cpu2 = cpu_ns_of(&s2);
    eprintln!("busy: cpu {cpu1} ns, 2 s later {cpu2} ns");
    // Other tests may share the cpus: a tenth of one is enough to tell a loop from a counter
    // that does not move.
    assert!(
        cpu2 >= cpu1 + 200_000_000,
        "a busy loop should use ≥ 0.2 s of cpu in 2 s: {cpu1} -> {cpu2} ns"
    );
    assert!(
        cpu2 + 1000 >= h3 && cpu2 <= h4 + 1000,
        "CRI cpu usage {cpu2} ns is not the cgroup's ({h3}..{h4} ns)"
    );
    let (t1, t2) = (
        s1.cpu.as_ref().map_or(0, |c| c.timestamp),
        s2.cpu.as_ref().map_or(0, |c| c.timestamp),
    );
    assert!(t1 > 0 && t2 > t1, "cpu timestamps {t1} -> {t2}");
    let (bws, _) = memory_of(&s2);
    assert!(bws > 0, "working set of the busy container: {s2:?}");

    // ListContainerStats: by pod, both containers (the sandbox is no container); by id, one.
    let by_pod = c
        .cri()
        .list_container_stats(Some(api::ContainerStatsFilter {
            pod_sandbox_id: pod.id.clone(),
            ..Default::default()
        }))
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: BTreeSet<String> = by_pod
        .iter()
        .filter_map(|s| s.attributes.as_ref().map(|a| a.id.clone()))
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([cache.clone(), busy.clone()]),
        "ListContainerStats of the pod: {by_pod:?}"
    );
    for s in &by_pod {
        let (ws, usage) = memory_of(s);
        assert!(ws > 0 && ws <= usage, "{s:?}");
        assert!(cpu_ns_of(s) > 0, "{s:?}");
    }
    let by_id = c
        .cri()
        .list_container_stats(Some(api::ContainerStatsFilter {
            id: busy.clone(),
            ..Default::default()
        }))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_id.len(), 1, "{by_id:?}");
    assert!(
        cpu_ns_of(&by_id[0]) >= cpu2,
        "cpu time never goes back: {by_id:?}"
    );
    let all = c
        .cri()
        .list_container_stats(None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(all.len(), 2, "ListContainerStats without a filter: {all:?}");

    // PodSandboxStats and ListPodSandboxStats (what the kubelet's CRI stats provider calls):
    // the pod's cgroup, which holds both containers.
    let containers = BTreeSet::from([cache.clone(), busy.clone()]);
    match c.cri().pod_sandbox_stats(&pod.id) {
        Ok(stats) => {
            let stats = stats.expect("PodSandboxStats has stats");
            check_pod_stats("PodSandboxStats", &stats, &pod, &containers, cpu2);
            let all = c
                .cri()
                .list_pod_sandbox_stats(None)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(all.len(), 1, "ListPodSandboxStats: the one pod: {all:?}");
            check_pod_stats("ListPodSandboxStats", &all[0], &pod, &containers, cpu2);
            let by_id = c
                .cri()
                .list_pod_sandbox_stats(Some(api::PodSandboxStatsFilter {
                    id: pod.id.clone(),
                    ..Default::default()
                }))
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(by_id.len(), 1, "ListPodSandboxStats by id: {by_id:?}");
            check_pod_stats(
                "ListPodSandboxStats by id",
                &by_id[0],
                &pod,
                &containers,
                cpu2,
            );
        }
        Err(e) => {
            eprintln!("{}: PodSandboxStats: {e}", c.version());
            assert_eq!(
                e.code,
                tonic::Code::Unimplemented,
                "PodSandboxStats failed otherwise than Unimplemented: {e}"
            );
            assert_eq!(
                c.version(),
                Version::V1_6,
                "only containerd 1.6 may lack PodSandboxStats: {e}"
            );
            let list = c.cri().list_pod_sandbox_stats(None);
            assert!(
                list.as_ref()
                    .is_err_and(|e| e.code == tonic::Code::Unimplemented),
                "containerd 1.6 lacks ListPodSandboxStats like PodSandboxStats: {list:?}"
            );
        }
    }

    let fp = c.footprint(&pod, &[cache, busy]);
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
}
per_version_cri!(stats_show_real_numbers);

/// (2) A container limited to 32 MiB that allocates without bound is OOM-killed: EXITED with
/// exit code 137 and reason OOMKilled (containerd sets it from the TaskOOM event).
fn memory_hog_is_oom_killed(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("oom"));
    // `tail /dev/zero` looks for a newline that never comes, buffering everything it reads.
    let hog = c.start_in_pod(
        &pod,
        &ContainerBuilder::new("hog", &["tail", "/dev/zero"]).memory_limit(32 * MIB),
    );
    let st = c.wait_container_state(
        &hog,
        ContainerState::ContainerExited,
        Duration::from_secs(60),
    );
    assert_eq!(st.exit_code, 137, "{}", describe_status(&st));
    assert_eq!(st.reason, "OOMKilled", "{}", describe_status(&st));
    // A sibling without a limit is untouched.
    let ok = c.start_in_pod(&pod, &ContainerBuilder::new("ok", &["sleep", "1000"]));
    c.wait_container_state(&ok, ContainerState::ContainerRunning, T);
    let fp = c.footprint(&pod, &[hog, ok]);
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
}
per_version_cri!(memory_hog_is_oom_killed);

/// (memory limit, cpu quota, cpu period) of a container, from its cgroup files.
fn limits(pod: &Pod, id: &str) -> (String, String, String) {
    if is_v2() {
        let max = read_cg(pod, "cpu", id, "cpu.max");
        let (q, p) = max.split_once(' ').expect("cpu.max is QUOTA PERIOD");
        (
            read_cg(pod, "memory", id, "memory.max"),
            q.to_string(),
            p.to_string(),
        )
    } else {
        (
            read_cg(pod, "memory", id, "memory.limit_in_bytes"),
            read_cg(pod, "cpu", id, "cpu.cfs_quota_us"),
            read_cg(pod, "cpu", id, "cpu.cfs_period_us"),
        )
    }
}

fn expect_limits(mem: i64, quota: i64, period: i64) -> (String, String, String) {
    (mem.to_string(), quota.to_string(), period.to_string())
}

/// (3) UpdateContainerResources changes a running container's memory limit and cpu quota in
/// its cgroup files; an update the host cannot apply (cpuset 999) fails with an error that
/// names the problem and leaves every limit as it was; the container keeps running.
fn update_container_resources(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("upd"));
    let id = c.start_in_pod(
        &pod,
        &ContainerBuilder::new("c", &["sleep", "1000"])
            .memory_limit(64 * MIB)
            .cpu_quota(50_000, 100_000)
            .cpu_shares(512),
    );
    c.wait_container_state(&id, ContainerState::ContainerRunning, T);
    assert_eq!(
        limits(&pod, &id),
        expect_limits(64 * MIB, 50_000, 100_000),
        "limits from CreateContainer"
    );
    if !is_v2() {
        assert_eq!(read_cg(&pod, "cpu", &id, "cpu.shares"), "512");
    }

    let updated = api::LinuxContainerResources {
        memory_limit_in_bytes: 128 * MIB,
        cpu_quota: 20_000,
        cpu_period: 100_000,
        cpu_shares: 256,
        ..Default::default()
    };
    c.cri()
        .update_container_resources(&id, &updated)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        limits(&pod, &id),
        expect_limits(128 * MIB, 20_000, 100_000),
        "limits after UpdateContainerResources"
    );
    if !is_v2() {
        assert_eq!(read_cg(&pod, "cpu", &id, "cpu.shares"), "256");
    }
    if let Some(r) = c
        .container_status(&id)
        .status
        .and_then(|s| s.resources)
        .and_then(|r| r.linux)
    {
        assert_eq!(r.memory_limit_in_bytes, 128 * MIB, "ContainerStatus: {r:?}");
        assert_eq!(r.cpu_quota, 20_000, "ContainerStatus: {r:?}");
    }

    // A cpuset this host lacks, together with new memory and cpu limits.
    let cpuset_before = read_cg(&pod, "cpuset", &id, "cpuset.cpus");
    let bad = api::LinuxContainerResources {
        memory_limit_in_bytes: 256 * MIB,
        cpu_quota: 30_000,
        cpu_period: 100_000,
        cpu_shares: 256,
        cpuset_cpus: "999".to_string(),
        ..Default::default()
    };
    let err = c
        .cri()
        .update_container_resources(&id, &bad)
        .expect_err("an update with cpuset_cpus 999 must fail");
    eprintln!("{}: bad update: {err}", c.version());
    assert!(
        err.message.contains("cpuset") || err.message.contains("999"),
        "the error should name the cpuset: {err}"
    );
    assert_eq!(
        limits(&pod, &id),
        expect_limits(128 * MIB, 20_000, 100_000),
        "a failed update must leave the limits as they were ({err})"
    );
    assert_eq!(
        read_cg(&pod, "cpuset", &id, "cpuset.cpus"),
        cpuset_before,
        "a failed update must leave the cpuset as it was"
    );
    let st = c.wait_container_state(&id, ContainerState::ContainerRunning, T);
    assert!(st.exit_code == 0, "{}", describe_status(&st));
    assert_eq!(
        c.exec_ok(&id, &["true"]).exit_code,
        0,
        "the container still works"
    );

    // And a good update still works afterwards.
    let again = api::LinuxContainerResources {
        memory_limit_in_bytes: 96 * MIB,
        cpu_quota: 40_000,
        cpu_period: 100_000,
        cpu_shares: 256,
        ..Default::default()
    };
    c.cri()
        .update_container_resources(&id, &again)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        limits(&pod, &id),
        expect_limits(96 * MIB, 40_000, 100_000),
        "limits after a second UpdateContainerResources"
    );

    let fp = c.footprint(&pod, std::slice::from_ref(&id));
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
}
per_version_cri!(update_container_resources);

/// The cgroup path of `pid` for each v1 resource controller (or `""` for the v2 line).
fn proc_cgroups(pid: u32) -> Vec<(String, String)> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
}

/// (4) The sandbox and every container of a pod live under the pod's cgroup parent: each
/// process' cgroup is `<parent>/<its id>` in every resource controller, and the parent's
/// directory holds exactly the sandbox's and the containers' cgroups.
fn containers_under_pod_cgroup_parent(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("parent"));
    let a = c.start_in_pod(&pod, &ContainerBuilder::new("a", &["sleep", "1000"]));
    let b = c.start_in_pod(
        &pod,
        &ContainerBuilder::new("b", &["sleep", "1000"]).memory_limit(48 * MIB),
    );
    c.wait_container_state(&a, ContainerState::ContainerRunning, T);
    c.wait_container_state(&b, ContainerState::ContainerRunning, T);
    let parent = pod
        .builder
        .cgroup_parent
        .clone()
        .expect("the harness gives pods a cgroup parent");
    assert_eq!(parent, format!("/{}/parent", c.namespace()));

    let controllers = [
        "memory", "cpu", "cpuacct", "cpuset", "pids", "blkio", "devices", "freezer",
    ];
    let members = [
        (pod.id.clone(), c.sandbox_pid(&pod.id)),
        (a.clone(), c.container_pid(&a)),
        (b.clone(), c.container_pid(&b)),
    ];
    for (id, pid) in &members {
        let want = format!("{parent}/{id}");
        let cgs = proc_cgroups(*pid);
        let mut checked = 0;
        for (ctrls, path) in &cgs {
            let relevant = if is_v2() {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| controllers.contains(&c))
            };
            if relevant {
                assert_eq!(
                    path, &want,
                    "pid {pid} ({id}) in controller(s) {ctrls:?}: /proc/{pid}/cgroup = {cgs:?}"
                );
                checked += 1;
            }
        }
        assert!(
            checked >= if is_v2() { 1 } else { controllers.len() },
            "pid {pid} ({id}) is not in every resource controller: {cgs:?}"
        );
    }

    // The parent dir holds exactly the pod's cgroups, in each hierarchy.
    let want: BTreeSet<String> = members.iter().map(|(id, _)| id.clone()).collect();
    let hierarchies: Vec<&str> = if is_v2() {
        vec![""]
    } else {
        controllers.to_vec()
    };
    for h in hierarchies {
        let dir = Path::new("/sys/fs/cgroup")
            .join(h)
            .join(parent.trim_start_matches('/'));
        let children: BTreeSet<String> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(children, want, "cgroups under {}", dir.display());
    }
    // The container's limit is on its own cgroup, below the parent.
    let lim = if is_v2() {
        read_cg(&pod, "memory", &b, "memory.max")
    } else {
        read_cg(&pod, "memory", &b, "memory.limit_in_bytes")
    };
    assert_eq!(lim, (48 * MIB).to_string());

    let fp = c.footprint(&pod, &[a, b]);
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
}
per_version_cri!(containers_under_pod_cgroup_parent);
