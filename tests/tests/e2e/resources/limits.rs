//! Limits in the cgroup files and in effect: memory, cpu, pids, cpuset, blkio; bad limits; an
//! OOM kill.

use std::path::Path;
use std::time::Duration;

use mypod_tests::command::Spawned;
use mypod_tests::ctr::topics_for;
use mypod_tests::Containerd;
use serde_json::json;

use super::{cgroup_file, is_v2, v2_file};

/// Limits given with `ctr run` flags land in the cgroup files (v1, or v2).
pub(super) fn limits_in_cgroup_files(c: &Containerd) {
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

/// `ctr run -d --config FILE ID` with `spec` as FILE.
fn run_config_detached(c: &Containerd, id: &str, spec: &serde_json::Value) {
    let file = c.write_spec_file(id, &spec.to_string());
    c.ctr_ok(&["run", "-d", "--runtime", c.runtime(), "--config", &file, id]);
}

/// A spec's pids limit, cpuset, memory reservation and swappiness (v1; on v2: swap, which
/// becomes memory.swap.max, and the blkio weight as io.weight) are applied; the pids limit
/// stops a fork bomb.
pub(super) fn pids_limit_stops_a_fork_bomb(c: &Containerd) {
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
pub(super) fn bad_limits_fail_clearly(c: &Containerd) {
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

/// A memory hog over its limit is OOM-killed (137) and /tasks/oom arrives.
pub(super) fn memory_hog_is_oom_killed(c: &Containerd) {
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
