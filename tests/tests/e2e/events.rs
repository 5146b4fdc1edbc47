//! Issue 2: task events reach containerd (ttrpc Forward on TTRPC_ADDRESS) in order:
//! TaskCreate → TaskStart → TaskExit → TaskDelete.

use std::time::Duration;

use mypod_tests::command::Spawned;
use mypod_tests::ctr::topics_for;
use mypod_tests::{per_version, Containerd};

fn lifecycle_events_in_order(c: &Containerd) {
    let events = Spawned::start(c.ctr_command(&["events"]));
    // Let the subscription settle before anything happens.
    std::thread::sleep(Duration::from_millis(500));
    let out = c.run("ev", &[], &["/bin/sh", "-c", "exit 3"]);
    assert_eq!(out.exit_code(), 3, "{out}");
    let wanted = [
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ];
    let start = std::time::Instant::now();
    // `ctr events` streams; give the last event a moment, then stop it (by pid).
    std::thread::sleep(Duration::from_millis(700));
    let got = events.wait(Duration::ZERO);
    let topics = topics_for(&got.stdout, "ev");
    assert_eq!(
        topics,
        wanted,
        "task events for ev, in order (after {:?}):\n{got}\ncontainerd log:\n{}",
        start.elapsed(),
        c.log_tail(40)
    );
    let exit_line = got
        .stdout
        .lines()
        .find(|l| l.contains("/tasks/exit") && l.contains("\"ev\""))
        .unwrap_or_default();
    assert!(
        exit_line.contains("\"exit_status\":3"),
        "TaskExit should carry status 3: {exit_line}"
    );
    c.assert_clean("ev");
}
per_version!(lifecycle_events_in_order);

#[test]
fn topics_are_extracted_in_order() {
    let s = "2026-11-22 03:21:15 +0000 UTC ns /tasks/create {\"container_id\":\"ev\"}\n\
             2026-11-22 03:21:15 +0000 UTC ns /tasks/create {\"container_id\":\"other\"}\n\
             2026-11-22 03:21:16 +0000 UTC ns /tasks/exit {\"container_id\":\"ev\",\"exit_status\":3}\n";
    assert_eq!(topics_for(s, "ev"), ["/tasks/create", "/tasks/exit"]);
}
