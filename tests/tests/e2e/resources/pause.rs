//! Pause and Resume (the freezer), and their events.

use std::time::{Duration, Instant};

use mypod_tests::command::Spawned;
use mypod_tests::ctr::topics_for;
use mypod_tests::Containerd;

use super::{cgroup_file, is_v2, v2_file};

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
pub(super) fn pause_and_resume(c: &Containerd) {
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
