//! Issue 2: `<shim> delete` cleans up after a shim that died. containerd notices the lost
//! connection and runs `delete`, which must kill what is left of the container, unmount its
//! rootfs and remove its cgroup — and must not touch a pod whose shim is alive.

use std::time::{Duration, Instant};

use mypod_tests::{per_version, procfs, Containerd};

fn killed_shim_is_cleaned_up_by_delete(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    c.run_detached("victim", &[], &["sleep", "1000"]);
    let pid = c
        .wait_task_status("victim", "RUNNING", Duration::from_secs(10))
        .pid;
    let shim = procfs::ppid(pid).expect("container has a parent");
    assert!(
        procfs::cmdline(shim).is_some_and(|l| l.contains("containerd-shim-mypod-v2")),
        "parent of the container is the shim"
    );
    assert!(procfs::signal(shim, libc::SIGKILL), "kill the shim");
    procfs::wait_gone(shim, Duration::from_secs(45), "the killed shim");
    // containerd runs `containerd-shim-mypod-v2 delete`, which kills the container.
    procfs::wait_gone(
        pid,
        Duration::from_secs(45),
        "the container of the dead shim",
    );
    let start = Instant::now();
    while c.task("victim").is_some_and(|t| t.status == "RUNNING") {
        assert!(
            start.elapsed() < Duration::from_secs(45),
            "containerd still reports victim RUNNING"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    if c.task("victim").is_some() {
        let _ = c.ctr(&["tasks", "rm", "-f", "victim"]);
    }
    c.remove_container("victim");
    c.assert_clean("victim");
}
per_version!(killed_shim_is_cleaned_up_by_delete);
