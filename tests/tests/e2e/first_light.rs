//! Issue 2, "First light": a container runs, prints, exits with its status, can be killed, and
//! its states and parent are what `ctr` and /proc say they should be.

use std::time::Duration;

use mypod_tests::{per_version, procfs, Containerd};

/// Waits until host pid `pid` has a child process.
fn wait_for_child_of(pid: u32, timeout: Duration) {
    let start = std::time::Instant::now();
    while !procfs::pids()
        .into_iter()
        .any(|p| procfs::ppid(p) == Some(pid))
    {
        assert!(
            start.elapsed() < timeout,
            "pid {pid} forked no child within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (a) stdout reaches ctr and the exit status is ctr's.
fn hello_exit_code(c: &Containerd) {
    let out = c.run("hello", &[], &["/bin/sh", "-c", "echo hello; exit 7"]);
    assert_eq!(out.stdout, "hello\n", "stdout of the container:\n{out}");
    assert_eq!(
        out.exit_code(),
        7,
        "ctr should exit with the container's status:\n{out}"
    );
    c.assert_clean("hello");
}
per_version!(hello_exit_code);

/// (a) stderr is separate from stdout, and a zero status is zero.
fn stdout_stderr_and_success(c: &Containerd) {
    let out = c.run(
        "streams",
        &[],
        &["/bin/sh", "-c", "echo to-out; echo to-err >&2"],
    );
    assert_eq!(out.exit_code(), 0, "{out}");
    assert_eq!(out.stdout, "to-out\n", "{out}");
    assert!(
        out.stderr.contains("to-err"),
        "stderr should carry the container's stderr:\n{out}"
    );
    assert!(!out.stdout.contains("to-err"), "{out}");
    c.assert_clean("streams");
}
per_version!(stdout_stderr_and_success);

/// (b) The container's process is pid 1 of its pid namespace: it cannot kill itself with a
/// signal it has no handler for, so `kill -9 $$` is ignored and the shell goes on.
fn pid1_ignores_its_own_sigkill(c: &Containerd) {
    let out = c.run(
        "pid1",
        &[],
        &["/bin/sh", "-c", "echo pid=$$; kill -9 $$; echo survived"],
    );
    assert_eq!(out.stdout, "pid=1\nsurvived\n", "{out}");
    assert_eq!(out.exit_code(), 0, "{out}");
    c.assert_clean("pid1");
}
per_version!(pid1_ignores_its_own_sigkill);

/// (b) SIGKILL from outside ends a foreground `ctr run`, which exits 128+9.
fn sigkill_from_outside_exits_137(c: &Containerd) {
    let running = c.spawn_run("victim", &[], &["sleep", "1000"]);
    let task = c.wait_task_status("victim", "RUNNING", Duration::from_secs(20));
    assert!(task.pid > 0, "{task:?}");
    c.kill_task("victim", Some("SIGKILL"));
    let out = running.wait(Duration::from_secs(20));
    assert_eq!(out.exit_code(), 137, "ctr run of a SIGKILLed task:\n{out}");
    c.assert_clean("victim");
}
per_version!(sigkill_from_outside_exits_137);

/// (b, h) SIGTERM (ctr task kill's default) reaches a detached task that handles it; the task
/// shows STOPPED and `ctr task delete` reports its status 143.
fn sigterm_with_handler_exits_143(c: &Containerd) {
    c.run_detached(
        "term",
        &[],
        &["/bin/sh", "-c", "trap 'exit 143' TERM; sleep 1000 & wait"],
    );
    let t = c.wait_task_status("term", "RUNNING", Duration::from_secs(20));
    // Once the shell has forked `sleep`, its trap is installed.
    wait_for_child_of(t.pid, Duration::from_secs(20));
    c.kill_task("term", None);
    let t = c.wait_task_status("term", "STOPPED", Duration::from_secs(20));
    assert_eq!(t.id, "term");
    let del = c.delete_task("term");
    assert!(
        del.stderr.contains("exit code 143"),
        "ctr task delete should report exit code 143:\n{del}"
    );
    c.remove_container("term");
    c.assert_clean("term");
}
per_version!(sigterm_with_handler_exits_143);

/// (b, h) pid 1 without a handler ignores SIGTERM (it stays RUNNING); SIGKILL always works and
/// is reported as 137.
fn sigterm_ignored_by_pid1_then_sigkill(c: &Containerd) {
    c.run_detached("sleeper", &[], &["sleep", "1000"]);
    c.wait_task_status("sleeper", "RUNNING", Duration::from_secs(20));
    c.kill_task("sleeper", Some("SIGTERM"));
    std::thread::sleep(Duration::from_secs(1));
    let t = c.task("sleeper").expect("task sleeper is listed");
    assert_eq!(
        t.status, "RUNNING",
        "pid 1 without a SIGTERM handler must survive SIGTERM: {t:?}"
    );
    c.kill_task("sleeper", Some("SIGKILL"));
    c.wait_task_status("sleeper", "STOPPED", Duration::from_secs(20));
    let del = c.delete_task("sleeper");
    assert!(
        del.stderr.contains("exit code 137"),
        "ctr task delete should report exit code 137:\n{del}"
    );
    c.remove_container("sleeper");
    c.assert_clean("sleeper");
}
per_version!(sigterm_ignored_by_pid1_then_sigkill);

/// (h) A task that exits by itself goes RUNNING → STOPPED and keeps its status until deleted.
fn task_states_follow_the_process(c: &Containerd) {
    c.run_detached("states", &[], &["/bin/sh", "-c", "sleep 2; exit 3"]);
    let running = c
        .task("states")
        .expect("task states is listed right after ctr run -d");
    assert_eq!(running.status, "RUNNING", "{running:?}");
    assert!(running.pid > 0, "{running:?}");
    let stopped = c.wait_task_status("states", "STOPPED", Duration::from_secs(20));
    assert_eq!(stopped.id, "states");
    let del = c.delete_task("states");
    assert!(
        del.stderr.contains("exit code 3"),
        "ctr task delete should report exit code 3:\n{del}"
    );
    assert!(
        c.task("states").is_none(),
        "task still listed after delete: {:?}",
        c.tasks()
    );
    c.remove_container("states");
    c.assert_clean("states");
}
per_version!(task_states_follow_the_process);

/// (i) The container process's parent is the shim of the runtime it was run with, and it is pid 1
/// in its own pid namespace.
fn parent_is_the_shim(c: &Containerd) {
    c.run_detached("child", &[], &["sleep", "1000"]);
    let t = c.wait_task_status("child", "RUNNING", Duration::from_secs(20));
    let ppid =
        procfs::ppid(t.pid).unwrap_or_else(|| panic!("task pid {} has no /proc entry", t.pid));
    let parent = procfs::cmdline(ppid).unwrap_or_default();
    assert!(
        parent.contains(&c.shim_name()),
        "parent {ppid} of task pid {} is {parent:?}, not {}",
        t.pid,
        c.shim_name()
    );
    if c.shim_name().contains("mypod") {
        // The server is forked from `start`, not exec'd, and renames its action.
        assert!(
            parent.ends_with(" serve"),
            "the serving shim shows as {parent:?}"
        );
    }
    let nspid = mypod_tests::ctr::host_status_field(t.pid, "NSpid");
    assert_eq!(
        nspid.split_whitespace().last(),
        Some("1"),
        "NSpid of the task: {nspid}"
    );
    c.kill_and_remove("child");
    c.assert_clean("child");
}
per_version!(parent_is_the_shim);
