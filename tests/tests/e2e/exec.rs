//! Issue 4: `ctr task exec` into a running container: namespaces, cgroup, process spec,
//! exit codes, stdin, Pids with exec ids, Kill of one exec and of all, events, and bad input.

use std::time::{Duration, Instant};

use mypod_tests::command::{self, Spawned};
use mypod_tests::{per_version, procfs, Containerd};

/// Starts `sleep 1000` as container `id` and returns its host pid.
fn sleeper(c: &Containerd, id: &str) -> u32 {
    c.run_detached(id, &[], &["sleep", "1000"]);
    c.wait_task_status(id, "RUNNING", Duration::from_secs(10))
        .pid
}

fn exec(
    c: &Containerd,
    id: &str,
    exec_id: &str,
    flags: &[&str],
    cmd: &[&str],
) -> mypod_tests::Output {
    let mut a = vec!["tasks", "exec", "--exec-id", exec_id];
    a.extend_from_slice(flags);
    a.push(id);
    a.extend_from_slice(cmd);
    c.ctr(&a)
}

/// `ctr task exec` with `input` on its stdin; (stdout, exit code).
fn exec_with_stdin(
    c: &Containerd,
    id: &str,
    exec_id: &str,
    input: &[u8],
    cmd: &[&str],
) -> (String, i32) {
    let mut a = vec!["tasks", "exec", "--exec-id", exec_id, id];
    a.extend_from_slice(cmd);
    let out = command::run_with_input(c.ctr_command(&a), input, Duration::from_secs(30));
    assert!(
        !out.timed_out,
        "stdin EOF never reached exec {exec_id}:\n{out}"
    );
    let code = out.exit_code();
    (out.stdout, code)
}

fn namespaces_cgroup_and_exit_code(c: &Containerd) {
    let pid = sleeper(c, "ns");
    let script = "for n in pid mnt net ipc uts cgroup; do readlink /proc/self/ns/$n; done; \
                  cat /proc/self/cgroup; exit 5";
    let out = exec(c, "ns", "e1", &[], &["/bin/sh", "-c", script]);
    assert_eq!(
        out.exit_code(),
        5,
        "the exec's exit status is ctr's:\n{out}"
    );
    let mut want = String::new();
    for n in ["pid", "mnt", "net", "ipc", "uts", "cgroup"] {
        let link = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).expect("ns link");
        want.push_str(&format!("{}\n", link.display()));
    }
    want.push_str(&std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup"));
    assert_eq!(
        out.stdout, want,
        "exec must run in the container's namespaces and cgroup\n{out}"
    );
    c.kill_and_remove("ns");
    c.assert_clean("ns");
}
per_version!(namespaces_cgroup_and_exit_code);

fn process_spec_user_cwd_caps(c: &Containerd) {
    sleeper(c, "ps");
    let out = exec(
        c,
        "ps",
        "e1",
        &["--user", "1000", "--cwd", "/tmp"],
        &[
            "/bin/sh",
            "-c",
            "id -u; pwd; grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status",
        ],
    );
    assert_eq!(out.exit_code(), 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"1000"), "{out}");
    assert_eq!(lines.get(1), Some(&"/tmp"), "{out}");
    assert!(
        out.stdout.contains("CapEff:\t0000000000000000"),
        "a non-root exec has no effective caps:\n{out}"
    );
    assert!(out.stdout.contains("NoNewPrivs:\t1"), "{out}");
    // As root it gets the container's capability set.
    let root = exec(
        c,
        "ps",
        "e2",
        &[],
        &["/bin/sh", "-c", "grep CapEff /proc/self/status"],
    );
    assert!(root.stdout.contains("00000000a80425fb"), "{root}");
    c.kill_and_remove("ps");
    c.assert_clean("ps");
}
per_version!(process_spec_user_cwd_caps);

fn stdin_reaches_exec_and_eof_ends_it(c: &Containerd) {
    sleeper(c, "in");
    for i in 0..3 {
        let (out, code) = exec_with_stdin(c, "in", &format!("s{i}"), b"one\ntwo\n", &["wc", "-l"]);
        assert_eq!((out.trim(), code), ("2", 0), "stdin of exec s{i}");
    }
    c.kill_and_remove("in");
    c.assert_clean("in");
}
per_version!(stdin_reaches_exec_and_eof_ends_it);

fn missing_binary_fails_fast_and_container_lives(c: &Containerd) {
    let pid = sleeper(c, "mb");
    let start = Instant::now();
    let out = exec(c, "mb", "nope", &[], &["/bin/nope"]);
    out.assert_failure();
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "exec of a missing binary took {:?}",
        start.elapsed()
    );
    assert!(
        out.stderr.contains("/bin/nope"),
        "the error names the file:\n{out}"
    );
    assert!(procfs::alive(pid), "the container must be unaffected");
    let ok = exec(c, "mb", "after", &[], &["/bin/true"]);
    assert_eq!(ok.exit_code(), 0, "{ok}");
    c.kill_and_remove("mb");
    c.assert_clean("mb");
}
per_version!(missing_binary_fails_fast_and_container_lives);

fn duplicate_id_pids_and_kill_of_one_exec(c: &Containerd) {
    let pid = sleeper(c, "dup");
    exec(c, "dup", "bg", &["--detach"], &["sleep", "1000"]).assert_success();
    let again = exec(c, "dup", "bg", &[], &["/bin/true"]);
    again.assert_failure();
    assert!(
        again.stderr.contains("already exists"),
        "duplicate exec id:\n{again}"
    );
    let ps = c.ctr_ok(&["tasks", "ps", "dup"]);
    let bg_line = ps
        .stdout
        .lines()
        .find(|l| l.contains("bg"))
        .unwrap_or_else(|| panic!("ctr task ps must list the exec with its id:\n{ps}"));
    let bg_pid: u32 = bg_line
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("pid");
    assert!(procfs::alive(bg_pid));
    c.ctr_ok(&["tasks", "kill", "--exec-id", "bg", "-s", "KILL", "dup"]);
    let start = Instant::now();
    while procfs::alive(bg_pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "exec bg survived its kill"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        procfs::alive(pid),
        "killing one exec must not touch the container"
    );
    assert_eq!(c.task("dup").map(|t| t.status), Some("RUNNING".into()));
    c.kill_and_remove("dup");
    c.assert_clean("dup");
}
per_version!(duplicate_id_pids_and_kill_of_one_exec);

/// SIGTERM with --all: the init (`sleep` as pid 1, no handler) ignores it, so only a
/// Kill that really reaches every process ends the exec. (SIGKILL would prove nothing:
/// killing pid 1 tears the pid namespace down anyway.)
fn kill_all_reaches_execs(c: &Containerd) {
    let init = sleeper(c, "ka");
    exec(c, "ka", "bg", &["--detach"], &["sleep", "1000"]).assert_success();
    let ps = c.ctr_ok(&["tasks", "ps", "ka"]);
    let bg: u32 = ps
        .stdout
        .lines()
        .find(|l| l.contains("bg"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("exec bg in ctr task ps:\n{ps}"));
    c.ctr_ok(&["tasks", "kill", "--all", "-s", "TERM", "ka"]);
    let start = Instant::now();
    while procfs::alive(bg) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "kill --all did not reach exec bg ({bg})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        procfs::alive(init),
        "pid 1 ignores SIGTERM and must still run"
    );
    assert_eq!(c.task("ka").map(|t| t.status), Some("RUNNING".into()));
    c.kill_and_remove("ka");
    c.assert_clean("ka");
}
per_version!(kill_all_reaches_execs);

fn exec_into_stopped_or_unknown_container(c: &Containerd) {
    c.run_detached("st", &[], &["/bin/true"]);
    c.wait_task_status("st", "STOPPED", Duration::from_secs(10));
    let out = exec(c, "st", "e", &[], &["/bin/true"]);
    out.assert_failure();
    // mypod: "it is not running"; runc-v2: "cannot exec in a stopped state".
    assert!(
        out.stderr.contains("not running") || out.stderr.contains("stopped state"),
        "{out}"
    );
    let unknown = exec(c, "nosuch", "e", &[], &["/bin/true"]);
    unknown.assert_failure();
    assert!(unknown.stderr.contains("nosuch"), "{unknown}");
    c.kill_and_remove("st");
    c.assert_clean("st");
}
per_version!(exec_into_stopped_or_unknown_container);

fn exec_events_in_order(c: &Containerd) {
    sleeper(c, "ev");
    let events = Spawned::start(c.ctr_command(&["events"]));
    std::thread::sleep(Duration::from_millis(500));
    let out = exec(c, "ev", "x1", &[], &["/bin/sh", "-c", "exit 4"]);
    assert_eq!(out.exit_code(), 4, "{out}");
    std::thread::sleep(Duration::from_millis(700));
    let got = events.wait(Duration::ZERO);
    let topics: Vec<&str> = got
        .stdout
        .lines()
        .filter(|l| l.contains("\"x1\""))
        .filter_map(|l| l.split_whitespace().find(|w| w.starts_with("/tasks/")))
        .collect();
    assert_eq!(
        topics,
        ["/tasks/exec-added", "/tasks/exec-started", "/tasks/exit"],
        "{got}"
    );
    c.kill_and_remove("ev");
    c.assert_clean("ev");
}
per_version!(exec_events_in_order);
