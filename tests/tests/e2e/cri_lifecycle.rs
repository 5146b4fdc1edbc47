//! Issue 16, "Kubernetes pods end to end": what the kubelet does with a pod's containers over
//! their lives, through CRI. Init containers run one after the other to completion before the
//! app container; an exited container is re-created with the next attempt in the same pod (and
//! the same shim); StopContainer's timeout separates SIGTERM from SIGKILL; CheckpointContainer
//! is refused with a clear error and leaves the container running.
//! (ExecSync timeouts: cri_exec_logs.rs; complete logs of short-lived containers:
//! cri_logs_complete.rs.)

use std::fs;
use std::time::{Duration, Instant};

use mypod_tests::cri::api::{ContainerState, ContainerStatus};
use mypod_tests::cri::describe_status;
use mypod_tests::cri_instance::stdout_of;
use mypod_tests::{per_version_cri, procfs, ContainerBuilder, Containerd, Pod};

const T: Duration = Duration::from_secs(20);

/// Creates and starts `b` in `pod` and waits for it to exit 0, as the kubelet runs an init
/// container; returns its id and final status.
fn run_to_completion(c: &Containerd, pod: &Pod, b: &ContainerBuilder) -> (String, ContainerStatus) {
    let id = c.start_in_pod(pod, b);
    let st = c.wait_container_state(&id, ContainerState::ContainerExited, T);
    assert_eq!(
        st.exit_code,
        0,
        "init container {} must complete: {}",
        b.name,
        describe_status(&st)
    );
    assert!(st.finished_at > 0, "{} has finished_at: {st:?}", b.name);
    (id, st)
}

/// Asserts that container `id` is RUNNING and answers an ExecSync.
fn assert_running_and_answering(c: &Containerd, id: &str, what: &str) {
    let st = c.container_status(id).status.expect("status");
    assert_eq!(
        st.state,
        ContainerState::ContainerRunning as i32,
        "{what}: {}",
        describe_status(&st)
    );
    let r = c.exec_ok(id, &["echo", "alive"]);
    assert_eq!(
        (r.exit_code, stdout_of(&r).as_str()),
        (0, "alive\n"),
        "{what}: ExecSync"
    );
}

/// A pod with two init containers and an app container, run as the kubelet runs them: init 1
/// is created, started and waited for until it exits 0, then init 2, then the app. Each init
/// appends its number to a shared volume (a host dir, as an emptyDir, mounted in all three),
/// and the app starts only if it finds `1` then `2` there: it runs, the volume holds `1 2 app`
/// in that order, and the init containers stay EXITED with exit code 0.
fn init_containers_run_in_order(c: &Containerd) {
    let vol = c.dir().join("init-vol");
    fs::create_dir_all(&vol).unwrap();
    let vol_s = vol.display().to_string();
    let pod = c.run_pod_ok(c.pod("initpod"));
    let init = |n: u32| {
        ContainerBuilder::new(
            &format!("init-{n}"),
            &["sh", "-c", &format!("echo {n} >> /work/order")],
        )
        .mount(&vol_s, "/work")
    };
    let (i1, _) = run_to_completion(c, &pod, &init(1));
    assert_eq!(
        fs::read_to_string(vol.join("order")).unwrap_or_default(),
        "1\n",
        "init-1's line is on the volume once it has exited"
    );
    let (i2, _) = run_to_completion(c, &pod, &init(2));
    // The app refuses to run (exit 7) unless both init containers wrote, in order.
    let app = c.start_in_pod(
        &pod,
        &ContainerBuilder::new(
            "app",
            &[
                "sh",
                "-c",
                "[ \"$(cat /work/order | tr '\\n' ' ')\" = '1 2 ' ] || exit 7; \
                 echo app >> /work/order; exec sleep 1000",
            ],
        )
        .mount(&vol_s, "/work"),
    );
    c.wait_container_state(&app, ContainerState::ContainerRunning, T);
    let deadline = Instant::now() + T;
    loop {
        let order = fs::read_to_string(vol.join("order")).unwrap_or_default();
        if order == "1\n2\napp\n" {
            break;
        }
        let st = c.container_status(&app).status.expect("status");
        assert!(
            Instant::now() < deadline && st.state == ContainerState::ContainerRunning as i32,
            "the app should find init-1's then init-2's line and append its own: volume has \
             {order:?}, app {}",
            describe_status(&st)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_running_and_answering(c, &app, "the app container");
    for id in [&i1, &i2] {
        let st = c.container_status(id).status.expect("status");
        assert_eq!(
            (st.state, st.exit_code),
            (ContainerState::ContainerExited as i32, 0),
            "an init container stays EXITED 0 while the app runs: {}",
            describe_status(&st)
        );
    }
    c.stop_and_remove_pod(&pod);
}
per_version_cri!(init_containers_run_in_order);

/// The kubelet's restart of an exited container: a container that exits 1 is re-created in the
/// same pod with the same name and metadata attempt 1 (a new CreateContainer, its own log file
/// `NAME/1.log`), while its siblings keep running. The pod keeps its one shim (same pid before
/// and after), which is the parent of the new attempt's process; the siblings stay RUNNING and
/// answer ExecSync; both attempts are listed with their attempt numbers and logs; the pod then
/// goes away leaving nothing.
fn exited_container_restarts_with_next_attempt(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("restarts"));
    let shim = c.sandbox_shim_pid(&pod.id).expect("the pod's shim");
    let a = c.start_in_pod(&pod, &ContainerBuilder::new("a", &["sleep", "1000"]));
    let b = c.start_in_pod(&pod, &ContainerBuilder::new("b", &["sleep", "1000"]));
    // Attempt 0 says so and exits 1; attempt 1 says so and keeps running.
    let crasher = |attempt: u32| {
        ContainerBuilder::new(
            "crasher",
            &[
                "sh",
                "-c",
                "echo \"attempt $ATTEMPT\"; [ \"$ATTEMPT\" = 1 ] && exec sleep 1000; exit 1",
            ],
        )
        .env("ATTEMPT", &attempt.to_string())
        .attempt(attempt)
    };
    let first = c.start_in_pod(&pod, &crasher(0));
    let st0 = c.wait_container_state(&first, ContainerState::ContainerExited, T);
    assert_eq!(st0.exit_code, 1, "{}", describe_status(&st0));
    let (pa, pb) = (c.container_pid(&a), c.container_pid(&b));

    let second = c.start_in_pod(&pod, &crasher(1));
    assert_ne!(second, first, "a restart is a new container");
    let st1 = c.wait_container_state(&second, ContainerState::ContainerRunning, T);
    assert_eq!(
        st1.metadata.as_ref().map(|m| (m.name.as_str(), m.attempt)),
        Some(("crasher", 1)),
        "{st1:?}"
    );
    let logs = pod.log_directory();
    assert_eq!(st1.log_path, logs.join("crasher/1.log").to_string_lossy());
    assert_eq!(
        c.sandbox_shim_pid(&pod.id),
        Some(shim),
        "the pod keeps its shim across the restart"
    );
    assert!(procfs::alive(shim), "the pod's shim {shim} runs");
    let p1 = c.container_pid(&second);
    assert_eq!(
        procfs::ppid(p1),
        Some(shim),
        "the new attempt's process {p1} ({:?}) is a child of the pod's shim",
        procfs::cmdline(p1)
    );
    if c.is_mypod() {
        assert_eq!(c.shim_pids(), vec![shim], "one shim for the whole pod");
    }
    for (id, pid, name) in [(&a, pa, "a"), (&b, pb, "b")] {
        assert_running_and_answering(c, id, &format!("sibling {name} after the restart"));
        assert_eq!(c.container_pid(id), pid, "sibling {name} was not restarted");
    }
    assert_running_and_answering(c, &second, "attempt 1");

    // Both attempts are listed; the first stays EXITED with its exit code.
    let listed = c.cri().list_containers(None).expect("ListContainers");
    let mut attempts: Vec<(u32, i32)> = listed
        .iter()
        .filter(|l| l.metadata.as_ref().is_some_and(|m| m.name == "crasher"))
        .map(|l| (l.metadata.as_ref().unwrap().attempt, l.state))
        .collect();
    attempts.sort_unstable();
    assert_eq!(
        attempts,
        [
            (0, ContainerState::ContainerExited as i32),
            (1, ContainerState::ContainerRunning as i32)
        ],
        "ListContainers: {listed:?}"
    );
    // Each attempt wrote its own log file.
    for (n, file) in [(0, "crasher/0.log"), (1, "crasher/1.log")] {
        let path = logs.join(file);
        let deadline = Instant::now() + T;
        loop {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let lines = mypod_tests::cri::parse_cri_log(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let msgs: Vec<&str> = lines.iter().map(|l| l.message.as_str()).collect();
            if msgs == [format!("attempt {n}")] {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} should hold `attempt {n}` only: {msgs:?}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let fp = c.footprint(&pod, &[a, b, first, second]);
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
}
per_version_cri!(exited_container_restarts_with_next_attempt);

/// Whether `pid` ignores SIGTERM (bit 15 of SigIgn in /proc/PID/status).
fn ignores_sigterm(pid: u32) -> bool {
    let status = procfs::status(pid).unwrap_or_default();
    procfs::status_field(&status, "SigIgn")
        .and_then(|m| u64::from_str_radix(m, 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

/// StopContainer sends SIGTERM, then SIGKILL when its timeout has passed. In a pod sharing its
/// pid namespace (so no container process is a pid-namespace init, which the kernel shields
/// from signals it has no handler for): (a) a shell that ignores SIGTERM (`trap '' TERM`,
/// checked in /proc) survives it and is SIGKILLed: StopContainer(timeout=2) returns after at
/// least 2 s, the container EXITED with 137 and finished_at; (b) `sleep`, which dies of
/// SIGTERM, ends well before a 30 s timeout with 143. The sibling keeps running.
fn stop_container_timeout_term_then_kill(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("stopping").share_pid(true));
    let stubborn = c.start_in_pod(
        &pod,
        &ContainerBuilder::new(
            "stubborn",
            &["sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
        ),
    );
    let polite = c.start_in_pod(&pod, &ContainerBuilder::new("polite", &["sleep", "1000"]));
    let bystander = c.start_in_pod(&pod, &ContainerBuilder::new("bystander", &["sleep", "999"]));
    for id in [&stubborn, &polite, &bystander] {
        c.wait_container_state(id, ContainerState::ContainerRunning, T);
    }
    let sp = c.container_pid(&stubborn);
    let deadline = Instant::now() + T;
    while !ignores_sigterm(sp) {
        assert!(
            Instant::now() < deadline,
            "the shell {sp} ({:?}) should ignore SIGTERM after `trap '' TERM`: {:?}",
            procfs::cmdline(sp),
            procfs::status(sp)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // (a) SIGTERM is ignored: SIGKILL after the 2 s timeout.
    let start = Instant::now();
    c.cri()
        .stop_container(&stubborn, 2)
        .expect("StopContainer of the SIGTERM-ignoring container");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(30),
        "StopContainer(timeout=2) of a container that ignores SIGTERM returns once SIGKILL \
         has ended it, after the 2 s: took {took:?}"
    );
    eprintln!("StopContainer(timeout=2) of the SIGTERM-ignoring container: {took:?}");
    let st = c.wait_container_state(&stubborn, ContainerState::ContainerExited, T);
    assert_eq!(
        st.exit_code,
        137,
        "killed by SIGKILL: {}",
        describe_status(&st)
    );
    assert!(st.finished_at > 0, "finished_at is set: {st:?}");
    procfs::wait_gone(sp, T, "the SIGKILLed shell");

    // (b) SIGTERM ends `sleep` at once: no wait for the 30 s timeout.
    let pp = c.container_pid(&polite);
    let start = Instant::now();
    c.cri()
        .stop_container(&polite, 30)
        .expect("StopContainer of the container that exits on SIGTERM");
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "a container that dies of SIGTERM stops well before the 30 s timeout: took {took:?}"
    );
    eprintln!("StopContainer(timeout=30) of `sleep`: {took:?}");
    let st = c.wait_container_state(&polite, ContainerState::ContainerExited, T);
    assert_eq!(
        st.exit_code,
        143,
        "killed by SIGTERM: {}",
        describe_status(&st)
    );
    assert!(st.finished_at > 0, "finished_at is set: {st:?}");
    assert!(!procfs::alive(pp), "the stopped `sleep` {pp} is gone");

    assert_running_and_answering(c, &bystander, "the sibling of the stopped containers");
    c.stop_and_remove_pod(&pod);
}
per_version_cri!(stop_container_timeout_term_then_kill);

/// containerd with the host's CRIU on its PATH (see `checkpoint_is_refused_clearly`).
fn with_criu(b: mypod_tests::containerd::Builder) -> mypod_tests::containerd::Builder {
    b.with_criu(true)
}

/// CheckpointContainer (what `kubectl checkpoint` and the kubelet's checkpoint API send) is
/// refused with an error that says checkpointing is not supported, and the container keeps
/// running (same process) and answers ExecSync; no archive is written. containerd 1.6 and 1.7
/// answer Unimplemented themselves; 2.1 (given CRIU, which it checks for first) pauses the
/// task, calls the shim's Task.Checkpoint, which must answer UNIMPLEMENTED naming checkpoint and
/// mypod, and resumes the task (a container left frozen would not answer ExecSync).
fn checkpoint_is_refused_clearly(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("ckpt"));
    let id = c.start_in_pod(&pod, &ContainerBuilder::new("main", &["sleep", "1000"]));
    c.wait_container_state(&id, ContainerState::ContainerRunning, T);
    let pid = c.container_pid(&id);
    let archive = c.dir().join("checkpoint-ckpt-main.tar");

    let res = c
        .cri()
        .checkpoint_container(&id, &archive.display().to_string(), 0);
    eprintln!("CheckpointContainer on containerd {}: {res:?}", c.version());
    let err = match res {
        Err(e) => e,
        Ok(()) if !c.is_mypod() => {
            // runc with CRIU can checkpoint (leaving the container running).
            assert_running_and_answering(c, &id, "after a checkpoint");
            c.stop_and_remove_pod(&pod);
            return;
        }
        Ok(()) => panic!("CheckpointContainer should be refused by mypod, it succeeded"),
    };
    let shim_reached = c.version() == mypod_tests::Version::V2_1;
    let criu = c.dir().join("bin/criu").exists();
    if c.is_mypod() && shim_reached && !criu {
        // containerd 2.x refuses before asking the runtime when it finds no CRIU.
        eprintln!("no criu installed (apt-get install criu): mypod's Checkpoint not reached");
        assert!(err.message.contains("CRIU"), "{err}");
    } else if c.is_mypod() {
        let msg = err.message.to_lowercase();
        assert!(
            msg.contains("checkpoint")
                && (err.code == tonic::Code::Unimplemented
                    || msg.contains("not supported")
                    || msg.contains("not implemented")),
            "the error should say that checkpointing is not supported: {err}"
        );
        if shim_reached {
            // Passed on by CRI with the shim's code: "checkpointing container ID failed:
            // Checkpoint is not supported by mypod".
            assert!(
                err.code == tonic::Code::Unimplemented && msg.contains("mypod"),
                "the shim's answer should be UNIMPLEMENTED and name mypod: {err}"
            );
        }
    }
    if c.is_mypod() {
        assert!(
            !archive.exists(),
            "a refused checkpoint leaves no archive at {}",
            archive.display()
        );
    }
    assert!(
        err.elapsed < Duration::from_secs(30),
        "the refusal is prompt: {err}"
    );
    assert_running_and_answering(c, &id, "after the refused checkpoint");
    assert_eq!(c.container_pid(&id), pid, "the same process runs on");
    c.stop_and_remove_pod(&pod);
}
per_version_cri!(checkpoint_is_refused_clearly with with_criu);
