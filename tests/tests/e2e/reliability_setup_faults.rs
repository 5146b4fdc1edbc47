//! Issue 18, faults while containers are set up: the container's setup process killed in the
//! middle of its setup, the disk under containerd's state directory full, containerd's
//! FIFOs without a reader. Each must end in a clear error (or a container that works), and
//! the pod's other containers must not notice. Scale knob and `FIGURE|` lines: see
//! `reliability_faults`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use mypod_tests::command::Spawned;
use mypod_tests::{cleanup, per_version, procfs, Containerd};
use serde_json::json;

use super::reliability_faults::{figure, scale};

/// Generous bound for anything to happen on a loaded 2-core machine.
const T: Duration = Duration::from_secs(60);

/// The annotation that puts `ctr run` containers into one pod (one shim).
const GROUP_KEY: &str = "io.containerd.runc.v2.group";

/// A long-lived container of the pod under test, which the faults must not touch.
struct Sibling {
    id: String,
    pid: u32,
    shim: u32,
}

/// Starts `id` in pod `group`, sleeping.
fn sibling(c: &Containerd, id: &str, group: &str) -> Sibling {
    let flag = format!("--annotation={GROUP_KEY}={group}");
    c.run_detached(id, &[&flag], &["sleep", "100000"]);
    let pid = c.wait_task_status(id, "RUNNING", T).pid;
    let shim = procfs::ppid(pid).expect("the sibling has a parent");
    Sibling {
        id: id.to_string(),
        pid,
        shim,
    }
}

/// Panics unless the sibling still runs, the same process under the same shim, and execs.
fn assert_untouched(c: &Containerd, s: &Sibling, after: &str) {
    let task = c.task(&s.id);
    assert!(
        task.as_ref()
            .is_some_and(|t| t.status == "RUNNING" && t.pid == s.pid),
        "after {after}: sibling {} is {task:?}, was pid {}",
        s.id,
        s.pid
    );
    assert_eq!(
        procfs::ppid(s.pid),
        Some(s.shim),
        "after {after}: the sibling is served by the same shim"
    );
    let exec_id = format!("probe{}", Instant::now().elapsed().as_nanos() % 1_000_000);
    let out = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        &exec_id,
        &s.id,
        "echo",
        "fine",
    ]);
    assert_eq!(
        out.stdout, "fine\n",
        "after {after}: exec in the sibling: {out}"
    );
}

/// Removes whatever containerd still has of `id` (a failed start may leave a task or a
/// container record, as with runc), then panics unless nothing of it is left.
fn remove_and_assert_clean(c: &Containerd, id: &str) {
    if c.task(id).is_some() {
        c.ctr(&["tasks", "rm", "-f", id]);
    }
    if c.containers().iter().any(|x| x == id) {
        c.remove_container(id);
    }
    c.assert_clean_within(id, T);
}

/// A create hook that marks that it runs (`$1.running`), then waits for the test's go
/// (`$1.go`, at most 60 s).
const WAITING_HOOK: &str = "#!/bin/sh\ntouch \"$1.running\"\ni=0\n\
    while [ ! -e \"$1.go\" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n";

/// Waits up to `T` for `path` to exist.
fn wait_for(path: &Path, what: &str) {
    let deadline = Instant::now() + T;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{what}: {} never came",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The container's setup process (`<shim> init`, not exec'd yet) in its cgroup.
fn setup_process(c: &Containerd, id: &str) -> u32 {
    let pids: Vec<u32> = cleanup::cgroup_pids(&format!("{}/{id}", c.namespace()))
        .into_iter()
        .filter(|&p| {
            procfs::cmdline(p).is_some_and(|l| l.split_whitespace().last() == Some("init"))
        })
        .collect();
    assert_eq!(pids.len(), 1, "one setup process of {id}: {pids:?}");
    pids[0]
}

/// The container's setup process SIGKILLed while it is in the middle of its setup: while
/// the shim runs its createRuntime hook (the process waits for the hooks' end, its
/// namespaces made, its rootfs mounted) and while it runs its own createContainer hook
/// (before pivot_root). Each time the start fails with an error that says what happened,
/// within bounds; nothing of the container is left once removed; a sibling in the same pod
/// keeps running under the same shim and still execs.
fn setup_killed_midway(c: &Containerd) {
    if !c.is_mypod() {
        return; // The setup process and its command line are mypod's.
    }
    let rounds = scale(1, 10);
    let sib = sibling(c, "sib", "midpod");
    let dir = c.dir().join("faults");
    fs::create_dir_all(&dir).unwrap();
    // The createContainer hook runs as the pod's root, an unprivileged host id.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
    let hook = dir.join("hook.sh");
    fs::write(&hook, WAITING_HOOK).unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    let mut errors = Vec::new();
    for round in 0..rounds {
        for point in ["createRuntime", "createContainer"] {
            let id = format!("mid{round}{}", &point[6..7].to_lowercase());
            let marker = dir.join(&id);
            let mut spec = c.config_spec(&id, &["sleep", "100000"]);
            spec["hooks"] =
                json!({ point: [{ "path": hook, "args": ["hook", marker], "timeout": 120 }] });
            spec["annotations"] = json!({ GROUP_KEY: "midpod" });
            let file = c.write_spec_file(&id, &spec.to_string());
            let args = [
                "run",
                "-d",
                "--runtime",
                c.runtime(),
                "--config",
                &file,
                &id,
            ];
            let run = Spawned::start(c.ctr_command(&args));
            wait_for(&marker.with_extension("running"), "the waiting hook");
            let pid = setup_process(c, &id);
            assert!(procfs::signal(pid, libc::SIGKILL), "kill -9 {pid}");
            procfs::wait_gone(pid, T, "the killed setup process");
            fs::write(marker.with_extension("go"), "").unwrap();
            let out = run.wait(T);
            out.assert_failure();
            let msg = out.stderr.clone();
            assert!(
                msg.contains("killed") && msg.contains("SIGKILL"),
                "{point}: the error says the setup process was killed:\n{out}"
            );
            errors.push(format!("{point}: {}", msg.trim()));
            remove_and_assert_clean(c, &id);
            assert_untouched(c, &sib, &format!("{id}'s setup was killed"));
        }
    }
    eprintln!("errors seen:\n  {}", errors.join("\n  "));
    figure(
        "setup_killed_midway",
        c,
        &format!(
            "setup process SIGKILLed {} times (in the createRuntime and the createContainer \
             hook) beside a running container of the same pod",
            errors.len()
        ),
        &format!(
            "starts failed with a clear error {}/{}, hung 0, leftovers 0, sibling disturbed 0",
            errors.len(),
            errors.len()
        ),
        0,
    );
    c.kill_and_remove("sib");
    c.assert_clean("sib");
}
per_version!(setup_killed_midway);
