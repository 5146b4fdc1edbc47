//! Issue 16: attach and interactive exec as the kubelet (and crictl) do them: CRI `Attach` and
//! `Exec` answer with a URL on containerd's stream server, and a client talks to the process
//! over a WebSocket (`v4.channel.k8s.io`, see `mypod_tests::cri::stream`). Stdin, stdout,
//! stderr, terminals, resizes and exit statuses cross containerd's stream server, its FIFOs
//! and the pod's one shim. Every session leaves the pod's processes as it found them.

use std::fs;
use std::time::{Duration, Instant};

use mypod_tests::cri::api::ContainerState;
use mypod_tests::cri::stream::V4_PROTOCOL;
use mypod_tests::cri::{describe_status, parse_cri_log, StreamSession};
use mypod_tests::{per_version_cri, ContainerBuilder, Containerd, Pod};

const T: Duration = Duration::from_secs(20);

/// The pod's shim; panics unless the instance has exactly that one shim.
fn the_shim(c: &Containerd, pod: &Pod) -> u32 {
    let shim = c
        .sandbox_shim_pid(&pod.id)
        .unwrap_or_else(|| panic!("no shim found for pod {}", pod.name()));
    assert_eq!(c.shim_pids(), vec![shim], "the pod is served by one shim");
    shim
}

/// The pod's processes (see `Containerd::pod_processes`), checked to include the container's
/// `main` process so that comparing them later means something.
fn processes_with(c: &Containerd, pod: &Pod, shim: u32, main: u32) -> Vec<(u32, String)> {
    let procs = c.pod_processes(pod, shim);
    assert!(
        procs.iter().any(|p| p.0 == main),
        "the pod's processes {procs:?} include the container's process {main}"
    );
    procs
}

/// Asserts the session negotiated the v4 channel protocol.
fn assert_v4(s: &StreamSession) {
    assert_eq!(s.protocol, V4_PROTOCOL, "{}", s.describe());
}

/// Sends `stty size` through a terminal session until it reports `rows cols` (a resize travels
/// separately from stdin, so the first `stty` may run before it lands); panics after `T`.
fn expect_size(s: &mut StreamSession, rows: u16, cols: u16) {
    let want = format!("{rows} {cols}");
    let deadline = Instant::now() + T;
    loop {
        s.send_stdin(b"stty size\n");
        let seen = s.read_until(Duration::from_secs(1), |s| s.stdout_text().contains(&want));
        if seen {
            return;
        }
        assert!(
            Instant::now() < deadline && !s.ended,
            "`stty size` never reported {want:?}: {}",
            s.describe()
        );
    }
}

/// The messages of a CRI log file, once it holds at least `n` lines (or after `T`).
fn log_messages(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + T;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        let lines = parse_cri_log(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if lines.len() >= n || Instant::now() > deadline {
            return lines.into_iter().map(|l| l.message).collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `kubectl run -i` without a TTY: a container with `stdin` and `stdinOnce` answers the lines
/// sent through an attach session on stdout, and they reach its CRI log too; closing the
/// session closes the container's stdin for good, so it ends with exit code 0. The shim stays
/// the same and nothing new runs in the pod.
fn attach_stdin_once_without_tty(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("attach"));
    let id = c.start_in_pod(
        &pod,
        &ContainerBuilder::new(
            "echo",
            &["sh", "-c", "while read l; do echo \"got $l\"; done"],
        )
        .stdin(true, true),
    );
    c.wait_container_state(&id, ContainerState::ContainerRunning, T);
    let shim = the_shim(c, &pod);
    let main_pid = c.container_pid(&id);
    let before = processes_with(c, &pod, shim, main_pid);

    let mut s = c.attach_stream(&id, true, false);
    assert_v4(&s);
    s.send_stdin(b"one\n");
    s.expect_stdout("got one\n", T);
    s.send_stdin(b"two\nthree\n");
    s.expect_stdout("got three\n", T);
    assert_eq!(s.stdout_text(), "got one\ngot two\ngot three\n");
    assert!(s.stderr.is_empty(), "{}", s.describe());
    let log = pod.log_directory().join("echo/0.log");
    assert_eq!(
        log_messages(&log, 3),
        ["got one", "got two", "got three"],
        "the attached lines in {}",
        log.display()
    );
    // Nothing extra runs while attached.
    assert_eq!(c.pod_processes(&pod, shim), before);

    // Ending the session ends stdin (stdinOnce): `read` sees EOF and the loop exits 0.
    s.close(T);
    let st = c.wait_container_state(&id, ContainerState::ContainerExited, T);
    assert_eq!(st.exit_code, 0, "{}", describe_status(&st));
    let expected: Vec<(u32, String)> = before.into_iter().filter(|p| p.0 != main_pid).collect();
    c.wait_pod_processes(&pod, shim, &expected, T);
    assert_eq!(the_shim(c, &pod), shim, "the pod keeps its shim");
    c.stop_and_remove_pod(&pod);
}
per_version_cri!(attach_stdin_once_without_tty);

/// `kubectl run -it`: a container with `tty` and `stdin` running `sh`; an attach session with a
/// terminal runs commands (stderr merged into stdout), a resize reaches the terminal (`stty
/// size`), detaching leaves the shell running, a second attach picks it up, and `exit` ends
/// the container and the session with a Success status.
fn attach_with_tty(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("attachtty"));
    let id = c.start_in_pod(
        &pod,
        &ContainerBuilder::new("shell", &["sh"])
            .tty(true)
            .stdin(true, true),
    );
    c.wait_container_state(&id, ContainerState::ContainerRunning, T);
    let shim = the_shim(c, &pod);
    let before = processes_with(c, &pod, shim, c.container_pid(&id));

    let mut s = c.attach_stream(&id, true, true);
    assert_v4(&s);
    s.send_stdin(b"echo hi-$((6*7))\n");
    // The terminal echoes the input (`hi-$((6*7))`) and the shell prints `hi-42`.
    s.expect_stdout("hi-42", T);
    s.send_stdin(b"echo err-$((1+1)) >&2\n");
    s.expect_stdout("err-2", T);
    assert!(s.stderr.is_empty(), "a TTY has no stderr: {}", s.describe());
    s.resize(77, 33);
    expect_size(&mut s, 33, 77);

    // Detach: the shell keeps running, and nothing else does.
    s.close(T);
    c.wait_pod_processes(&pod, shim, &before, T);
    let st = c.container_status(&id).status.expect("status");
    assert_eq!(
        st.state,
        ContainerState::ContainerRunning as i32,
        "detaching leaves the container running: {}",
        describe_status(&st)
    );

    let mut s = c.attach_stream(&id, true, true);
    s.send_stdin(b"echo again-$((2+3))\n");
    s.expect_stdout("again-5", T);
    s.resize(100, 40);
    expect_size(&mut s, 40, 100);
    s.send_stdin(b"exit\n");
    s.wait_end(T);
    assert_eq!(s.exit_code(), Some(0), "{}", s.describe());
    let st = c.wait_container_state(&id, ContainerState::ContainerExited, T);
    assert_eq!(st.exit_code, 0, "{}", describe_status(&st));
    assert_eq!(the_shim(c, &pod), shim, "the pod keeps its shim");
    c.stop_and_remove_pod(&pod);
}
per_version_cri!(attach_with_tty);

/// `crictl exec -it` / `kubectl exec -it`: CRI Exec of `sh` with a terminal in a running
/// container answers commands, takes a resize, and `exit 3` ends the session with a v4 status
/// `Failure / NonZeroExitCode` whose `ExitCode` cause is 3. The container keeps running, the
/// shim is the same, and the exec leaves no process behind.
fn exec_with_tty(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("exectty"));
    let id = c.start_in_pod(&pod, &ContainerBuilder::new("main", &["sleep", "1000"]));
    c.wait_container_state(&id, ContainerState::ContainerRunning, T);
    let shim = the_shim(c, &pod);
    let main_pid = c.container_pid(&id);
    let before = processes_with(c, &pod, shim, main_pid);

    let mut s = c.exec_stream(&id, &["sh"], true, true);
    assert_v4(&s);
    s.send_stdin(b"echo hi-$((6*7)); tty\n");
    s.expect_stdout("hi-42", T);
    s.expect_stdout("/dev/pts/", T);
    s.resize(77, 33);
    expect_size(&mut s, 33, 77);
    s.send_stdin(b"exit 3\n");
    s.wait_end(T);
    let status = s
        .status_json()
        .unwrap_or_else(|| panic!("{}", s.describe()));
    assert_eq!(
        (status["status"].as_str(), status["reason"].as_str()),
        (Some("Failure"), Some("NonZeroExitCode")),
        "{status}"
    );
    assert_eq!(s.exit_code(), Some(3), "{status}");

    c.wait_pod_processes(&pod, shim, &before, T);
    assert_eq!(
        c.container_pid(&id),
        main_pid,
        "the container keeps running"
    );
    assert_eq!(the_shim(c, &pod), shim, "the pod keeps its shim");
    c.stop_and_remove_pod(&pod);
}
per_version_cri!(exec_with_tty);

/// CRI Exec without a terminal: stdin reaches the command and its stdout and stderr come back
/// on their own channels with its exit code (`sh -c 'read; ... exit 7'`); `cat` echoes what is
/// sent and ends when the client closes the session (v4 has no stdin half-close: closing the
/// connection is the EOF); `head -n 1` ends by itself with a Success status. None of them
/// leaves a process behind.
fn exec_stdin_without_tty(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("execstdin"));
    let id = c.start_in_pod(&pod, &ContainerBuilder::new("main", &["sleep", "1000"]));
    c.wait_container_state(&id, ContainerState::ContainerRunning, T);
    let shim = the_shim(c, &pod);
    let main_pid = c.container_pid(&id);
    let before = processes_with(c, &pod, shim, main_pid);

    let script = "read l; echo \"out $l\"; echo \"err $l\" >&2; exit 7";
    let mut s = c.exec_stream(&id, &["sh", "-c", script], true, false);
    assert_v4(&s);
    s.send_stdin(b"x\n");
    s.wait_end(T);
    assert_eq!(
        (s.stdout_text().as_str(), s.stderr.as_slice()),
        ("out x\n", b"err x\n".as_slice()),
        "{}",
        s.describe()
    );
    assert_eq!(s.exit_code(), Some(7), "{}", s.describe());
    c.wait_pod_processes(&pod, shim, &before, T);

    let mut s = c.exec_stream(&id, &["cat"], true, false);
    s.send_stdin(b"ping\n");
    s.expect_stdout("ping\n", T);
    s.send_stdin(b"pong\n");
    s.expect_stdout("ping\npong\n", T);
    // While it runs, the pod has one process more: the exec.
    let during = c.pod_processes(&pod, shim);
    assert!(
        during.iter().any(|p| p.1 == "cat" && !before.contains(p)),
        "the exec's `cat` runs in the pod: {during:?}"
    );
    s.close(T);
    c.wait_pod_processes(&pod, shim, &before, T);

    let mut s = c.exec_stream(&id, &["head", "-n", "1"], true, false);
    s.send_stdin(b"first\nsecond\n");
    s.wait_end(T);
    assert_eq!(s.stdout_text(), "first\n", "{}", s.describe());
    assert_eq!(s.exit_code(), Some(0), "{}", s.describe());
    c.wait_pod_processes(&pod, shim, &before, T);

    assert_eq!(
        c.container_pid(&id),
        main_pid,
        "the container keeps running"
    );
    assert_eq!(the_shim(c, &pod), shim, "the pod keeps its shim");
    c.stop_and_remove_pod(&pod);
}
per_version_cri!(exec_stdin_without_tty);
