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

/// Mounts a tmpfs of `size` over `dir` (with the daemon stopped, so containerd starts on it).
fn mount_tmpfs(dir: &Path, size: &str) {
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let target = c(dir.to_str().unwrap());
    let opts = c(&format!("size={size},mode=0711"));
    // SAFETY: valid NUL-terminated strings that live across the call; mount(2) keeps none.
    let rc = unsafe {
        libc::mount(
            c("tmpfs").as_ptr(),
            target.as_ptr(),
            c("tmpfs").as_ptr(),
            0,
            opts.as_ptr().cast(),
        )
    };
    assert_eq!(
        rc,
        0,
        "mount tmpfs on {}: {}",
        dir.display(),
        std::io::Error::last_os_error()
    );
}

/// Fills the filesystem of `file`'s directory: writes until ENOSPC; returns the size.
fn fill(file: &Path) -> u64 {
    let mut f = fs::File::create(file).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut len = 0u64;
    loop {
        match std::io::Write::write(&mut f, &chunk) {
            Ok(n) => len += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("fill {}: {e}", file.display()),
        }
    }
    len
}

/// containerd's state directory (bundles: config.json, the shim's files, rootfs mount points)
/// on a small tmpfs that is full but for 0, 1, 2, 4, ... pages while containers of a pod
/// and of new pods start. Each start either works (and the container runs) or fails within
/// bounds with an error that says the disk is full; nothing of a failed one is left once
/// removed; the pod's running sibling is untouched; with space again, a start works.
fn full_state_disk(c: &mut Containerd) {
    let headrooms: Vec<u64> = if super::reliability_faults::soak() {
        (0..=24).collect()
    } else {
        vec![0, 1, 2, 4, 8]
    };
    let state = c.state_dir();
    assert!(
        c.stop_daemon(libc::SIGTERM, T).is_some(),
        "containerd stops"
    );
    mount_tmpfs(&state, "16m");
    c.start_daemon();
    let sib = sibling(c, "sib", "fullpod");
    let filler = state.join("filler");
    let (mut started, mut refused, mut attempts) = (0, 0, 0);
    for (n, pages) in headrooms.iter().enumerate() {
        for same_pod in [true, false] {
            attempts += 1;
            // Full again (a file shrunk and grown again is sparse), then `pages` freed.
            let full = fill(&filler);
            let file = fs::OpenOptions::new().write(true).open(&filler).unwrap();
            file.set_len(full.saturating_sub(pages * 4096)).unwrap();
            let id = format!("full{n}{}", if same_pod { "p" } else { "n" });
            let group = format!("--annotation={GROUP_KEY}=fullpod");
            let flags: Vec<&str> = if same_pod { vec![&group] } else { vec![] };
            let mut args = vec!["run", "-d", "--runtime", c.runtime()];
            args.extend(flags);
            args.extend([mypod_tests::IMAGE, &id, "sleep", "100000"]);
            let out = c.ctr_timeout(&args, T);
            assert!(!out.timed_out, "a start on a full disk hung:\n{out}");
            if out.success() {
                started += 1;
                c.wait_task_status(&id, "RUNNING", T);
                c.kill_and_remove(&id);
            } else {
                refused += 1;
                let msg = out.combined();
                assert!(
                    msg.to_lowercase().contains("no space left on device"),
                    "{pages} free pages: the error says the disk is full:\n{out}"
                );
                eprintln!("{pages} free pages, {id}: {}", msg.trim());
                file.set_len(0).unwrap();
                remove_and_assert_clean(c, &id);
            }
            file.set_len(0).unwrap();
            assert_untouched(c, &sib, &format!("{id} on a full disk"));
        }
    }
    fs::remove_file(&filler).unwrap();
    // A server whose start containerd 2.x failed after it forked (bootstrap.json) ends
    // itself 30 s later (shim/src/serve.rs): none may be left.
    let deadline = Instant::now() + Duration::from_secs(45);
    while c.shim_pids().len() > 1 {
        assert!(
            Instant::now() < deadline,
            "shims left after the failed starts: {:?}",
            c.shim_pids()
                .iter()
                .map(|&p| procfs::cmdline(p).unwrap_or_default())
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    c.run_detached("roomy", &[], &["sleep", "100000"]);
    c.wait_task_status("roomy", "RUNNING", T);
    c.kill_and_remove("roomy");
    figure(
        "full_state_disk",
        c,
        &format!(
            "{attempts} container starts (in a running pod and in new pods) with containerd's \
             state dir on a full tmpfs, 0..{} pages free",
            headrooms.last().copied().unwrap_or(0)
        ),
        &format!(
            "started {started}, refused with \"no space left on device\" {refused}, unclear 0, \
             hung 0, leftovers 0, sibling disturbed 0"
        ),
        0,
    );
    c.kill_and_remove("sib");
    c.assert_clean("sib");
}
/// `per_version!` for a test that restarts its (plain, non-CRI) containerd.
macro_rules! per_version_mut {
    ($name:ident) => {
        mod $name {
            #[test]
            fn v1_6() {
                super::$name(&mut mypod_tests::Containerd::start("v1_6"));
            }
            #[test]
            fn v1_7() {
                super::$name(&mut mypod_tests::Containerd::start("v1_7"));
            }
            #[test]
            fn v2_1() {
                super::$name(&mut mypod_tests::Containerd::start("v2_1"));
            }
        }
    };
}
per_version_mut!(full_state_disk);
