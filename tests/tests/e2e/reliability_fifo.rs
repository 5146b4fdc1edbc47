//! Issue 18, faults: containerd's FIFOs missing a reader. A container of a running pod is
//! created straight on the pod's shim socket (as containerd sends Create) with output FIFOs
//! that nobody has opened for reading, and with one that does not exist at all:
//!
//! - FIFOs without a reader: Create and Start answer at once (nothing waits for a reader),
//!   the process writes until the pipe is full and then blocks — it neither dies of SIGPIPE
//!   nor loses anything: a reader that comes later gets every line, in order, then EOF, and
//!   Wait reports the process's own exit code;
//! - a FIFO path that does not exist: Create fails at once naming the path, leaving nothing;
//! - meanwhile a sibling of the same pod keeps running, answers exec and keeps its shim.
//!
//! And a process (init or exec) that exits while its reader has not read what it wrote
//! (containerd cancels its readers that are not ready yet when it handles an exit, losing
//! what is in the pipe): the exit is reported (Wait, State, TaskExit) only once the output
//! is read, and after 2 s at the latest; a reader that does not read loses nothing either.

use std::fs::{self, File};
use std::future::Future;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim::shim::{
    CreateTaskRequest, DeleteRequest, ExecProcessRequest, StartRequest, StateRequest, WaitRequest,
};
use containerd_shim_protos::shim::shim_ttrpc_async::TaskClient;
use mypod_tests::{per_version, procfs, task_rpc, Containerd};

const GROUP_KEY: &str = "io.containerd.runc.v2.group";
const LINES: usize = 20_000;

/// One request to the shim at `sock` ([`task_rpc::call`]).
fn call<F, Fut, T>(sock: &Path, f: F) -> task_rpc::Answer<T>
where
    F: FnOnce(TaskClient, ttrpc::context::Context) -> Fut,
    Fut: Future<Output = ttrpc::Result<T>>,
{
    task_rpc::call(sock, f).0
}

/// A bundle of our own holding a config.json for the pod, running `script`.
fn bundle(c: &Containerd, id: &str, script: &str) -> PathBuf {
    let dir = c.dir().join("fifobundles").join(id);
    fs::create_dir_all(&dir).expect("bundle dir");
    let mut spec = c.config_spec(id, &["/bin/sh", "-c", script]);
    spec["annotations"] = serde_json::json!({ GROUP_KEY: "fifopod" });
    fs::write(dir.join("config.json"), spec.to_string()).expect("config.json");
    dir
}

fn create_req(id: &str, bundle: &Path, stdout: &Path) -> CreateTaskRequest {
    let mut r = CreateTaskRequest::new();
    r.id = id.to_string();
    r.bundle = bundle.display().to_string();
    r.stdout = stdout.display().to_string();
    r
}

/// The sibling is running with its pid, answers an exec, and the pod keeps its one shim.
fn assert_sibling(c: &Containerd, pid: u32, shims: &[u32], n: usize) {
    assert_eq!(
        c.task("sib").map(|t| (t.pid, t.status)),
        Some((pid, "RUNNING".to_string()))
    );
    let out = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        &format!("alive{n}"),
        "sib",
        "echo",
        "alive",
    ]);
    assert_eq!(out.stdout, "alive\n", "{out}");
    assert_eq!(c.shim_pids(), shims, "the pod keeps its one shim");
}

fn fifo_without_reader(c: &Containerd) {
    if !c.is_mypod() {
        return; // mypod's shim protocol in a pod; runc-v2 serves one container per shim.
    }
    let group = format!("{GROUP_KEY}=fifopod");
    c.run_detached("sib", &["--annotation", &group], &["sleep", "1000"]);
    let sib = c.wait_task_status("sib", "RUNNING", Duration::from_secs(20));
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "{shims:?}");
    let sock = c.shim_socket("sib");

    // A FIFO path that does not exist: a clear, immediate error naming it.
    let b = bundle(c, "nofifo", "echo never");
    let missing = b.join("no-such-fifo");
    let t0 = Instant::now();
    let r = call(&sock, |t, x| {
        let req = create_req("nofifo", &b, &missing);
        async move { t.create(x, &req).await }
    });
    let (_, msg) = r.expect_err("Create with a FIFO path that does not exist");
    assert!(
        msg.contains("no-such-fifo"),
        "the error names the FIFO: {msg}"
    );
    eprintln!(
        "FIGURE|fifo_without_reader|{}|missing FIFO refused in {} ms: {msg}|lost=0",
        c.version(),
        t0.elapsed().as_millis()
    );
    assert_sibling(c, sib.pid, &shims, 1);

    // FIFOs nobody reads yet.
    let script = format!("i=0; while [ $i -lt {LINES} ]; do echo line$i; i=$((i+1)); done; exit 5");
    let b = bundle(c, "noreader", &script);
    let out = b.join("stdout");
    let status = std::process::Command::new("mkfifo")
        .arg(&out)
        .status()
        .expect("mkfifo");
    assert!(status.success(), "mkfifo {}", out.display());
    let t0 = Instant::now();
    let pid = call(&sock, |t, x| {
        let req = create_req("noreader", &b, &out);
        async move { t.create(x, &req).await }
    })
    .unwrap_or_else(|e| panic!("Create with a FIFO nobody reads: {e:?}"))
    .pid;
    call(&sock, |t, x| {
        let mut req = StartRequest::new();
        req.id = "noreader".into();
        async move { t.start(x, &req).await }
    })
    .unwrap_or_else(|e| panic!("Start with a FIFO nobody reads: {e:?}"));
    let answered = t0.elapsed();
    // The writer fills the pipe and blocks: alive, not killed by SIGPIPE.
    std::thread::sleep(Duration::from_millis(500));
    assert!(procfs::alive(pid), "the writer died without a reader");
    let st = call(&sock, |t, x| {
        let mut req = StateRequest::new();
        req.id = "noreader".into();
        async move { t.state(x, &req).await }
    })
    .expect("State");
    assert_eq!(st.pid, pid);
    assert_sibling(c, sib.pid, &shims, 2);

    // A reader comes: every line, in order, then EOF.
    let reader = {
        let out = out.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            File::open(&out)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map(|_| text)
        })
    };
    let waited = call(&sock, |t, x| {
        let mut req = WaitRequest::new();
        req.id = "noreader".into();
        async move { t.wait(x, &req).await }
    })
    .expect("Wait");
    assert_eq!(waited.exit_status, 5, "Wait reports the process's own code");
    let text = reader
        .join()
        .expect("reader thread")
        .expect("read the FIFO");
    let got: Vec<&str> = text.lines().collect();
    let want: Vec<String> = (0..LINES).map(|i| format!("line{i}")).collect();
    let lost = LINES.saturating_sub(got.len());
    assert!(
        got.len() == LINES && got.iter().zip(&want).all(|(a, b)| a == b),
        "{} of {LINES} lines arrived, in order: {}",
        got.len(),
        got.iter().zip(&want).all(|(a, b)| a == b)
    );
    call(&sock, |t, x| {
        let mut req = DeleteRequest::new();
        req.id = "noreader".into();
        async move { t.delete(x, &req).await }
    })
    .expect("Delete");
    eprintln!(
        "FIGURE|fifo_without_reader|{}|Create+Start answered in {} ms with no reader; writer blocked, \
         alive; late reader got {}/{LINES} lines in order then EOF; exit 5|lost={lost}",
        c.version(),
        answered.as_millis(),
        got.len()
    );
    assert!(!procfs::alive(pid), "the process is gone after Delete");
    assert_sibling(c, sib.pid, &shims, 3);
    let _ = fs::remove_dir_all(c.dir().join("fifobundles"));
    c.kill_and_remove("sib");
    c.assert_clean("sib");
}
per_version!(fifo_without_reader);

/// Lines a process writes before it exits: well under a pipe's 64 KiB, so it exits with
/// all of them still in the FIFO.
const SHORT: usize = 2_000;

fn lines_script(n: usize, code: i32) -> String {
    format!("i=0; while [ $i -lt {n} ]; do echo line$i; i=$((i+1)); done; exit {code}")
}

/// A FIFO at `path` with a reader that has opened it but does not read yet.
fn fifo_with_idle_reader(path: &Path) -> File {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .expect("open the FIFO for reading");
    // Blocking from here on: a read waits for data or EOF.
    // SAFETY: fcntl with integer arguments on the fd `f` owns.
    unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_SETFL, 0) };
    f
}

/// Reads to EOF; how many of the `n` lines came, in order from line0.
fn read_lines(mut f: File, n: usize) -> usize {
    let mut text = String::new();
    f.read_to_string(&mut text).expect("read the FIFO");
    let got: Vec<&str> = text.lines().collect();
    for (i, l) in got.iter().enumerate() {
        assert_eq!(*l, format!("line{i}"), "line {i} of {} received", got.len());
    }
    assert!(got.len() <= n, "{} lines, more than {n} sent", got.len());
    got.len()
}

/// Wait for process (`id`, `exec_id`) on its own thread: its exit code and when it came.
fn wait_in_background(
    sock: &Path,
    id: &str,
    exec_id: &str,
) -> std::sync::mpsc::Receiver<(u32, Instant)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (sock, id, exec_id) = (sock.to_path_buf(), id.to_string(), exec_id.to_string());
    std::thread::spawn(move || {
        let code = call(&sock, |t, x| {
            let mut req = WaitRequest::new();
            req.id = id;
            req.exec_id = exec_id;
            async move { t.wait(x, &req).await }
        })
        .map(|w| w.exit_status);
        if let Ok(code) = code {
            let _ = tx.send((code, Instant::now()));
        }
    });
    rx
}

fn create(sock: &Path, id: &str, bundle: &Path, stdout: &Path) {
    call(sock, |t, x| {
        let req = create_req(id, bundle, stdout);
        async move { t.create(x, &req).await }
    })
    .unwrap_or_else(|e| panic!("Create {id}: {e:?}"));
}

fn delete(sock: &Path, id: &str) {
    call(sock, |t, x| {
        let mut req = DeleteRequest::new();
        req.id = id.into();
        async move { t.delete(x, &req).await }
    })
    .unwrap_or_else(|e| panic!("Delete {id}: {e:?}"));
}

fn start(sock: &Path, id: &str, exec_id: &str) {
    call(sock, |t, x| {
        let mut req = StartRequest::new();
        req.id = id.into();
        req.exec_id = exec_id.into();
        async move { t.start(x, &req).await }
    })
    .unwrap_or_else(|e| panic!("Start {id} {exec_id}: {e:?}"));
}

/// The exit of a process whose output sits unread is held back until the reader reads it;
/// reported `code`; prints the figure.
fn held_until_read(c: &Containerd, sock: &Path, who: (&str, &str), reader: File, code: u32) {
    let (id, exec_id) = who;
    let waited = wait_in_background(sock, id, exec_id);
    std::thread::sleep(Duration::from_millis(50));
    start(sock, id, exec_id);
    let held = Duration::from_millis(600);
    assert!(
        waited.recv_timeout(held).is_err(),
        "{id} {exec_id}: the exit was reported while its output was unread"
    );
    let read_at = Instant::now();
    let got = read_lines(reader, SHORT);
    let (exit, at) = waited
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("{id} {exec_id}: no exit after its output was read"));
    let after = at.saturating_duration_since(read_at);
    eprintln!(
        "FIGURE|exit_waits_for_its_output|{}|{} exited with {SHORT} lines unread: exit held \
         back while unread (checked {} ms), reported {} ms after the reader started reading; \
         reader got {got}/{SHORT} lines then EOF|lost={}",
        c.version(),
        if exec_id.is_empty() { "init" } else { "exec" },
        held.as_millis(),
        after.as_millis(),
        SHORT - got
    );
    assert_eq!(exit, code, "{id} {exec_id}: its own exit code");
    assert_eq!(got, SHORT, "{id} {exec_id}: every line, then EOF");
}

fn exit_waits_for_its_output(c: &Containerd) {
    if !c.is_mypod() {
        return; // requests straight to a pod shim's socket: mypod's protocol.
    }
    let group = format!("{GROUP_KEY}=fifopod");
    c.run_detached("sib", &["--annotation", &group], &["sleep", "1000"]);
    let sib = c.wait_task_status("sib", "RUNNING", Duration::from_secs(20));
    let shims = c.shim_pids();
    let sock = c.shim_socket("sib");

    // An init whose reader is open but has not read yet.
    let b = bundle(c, "held", &lines_script(SHORT, 3));
    let out = b.join("stdout");
    let reader = fifo_with_idle_reader(&out);
    create(&sock, "held", &b, &out);
    held_until_read(c, &sock, ("held", ""), reader, 3);
    delete(&sock, "held");

    // The same for an exec.
    let exec_out = b.join("exec-stdout");
    let reader = fifo_with_idle_reader(&exec_out);
    let process = serde_json::to_vec(&serde_json::json!({
        "args": ["/bin/sh", "-c", lines_script(SHORT, 4)], "cwd": "/",
        "user": {"uid": 0, "gid": 0}, "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
    }))
    .expect("process json");
    call(&sock, |t, x| {
        let mut req = ExecProcessRequest::new();
        req.id = "sib".into();
        req.exec_id = "chatty".into();
        req.stdout = exec_out.display().to_string();
        let mut spec = Any::new();
        spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
        spec.value = process;
        req.spec = MessageField::some(spec);
        async move { t.exec(x, &req).await }
    })
    .expect("Exec");
    held_until_read(c, &sock, ("sib", "chatty"), reader, 4);

    // A reader that never reads holds the exit back 2 s at most, and loses nothing.
    let b = bundle(c, "idle", &lines_script(SHORT, 0));
    let out = b.join("stdout");
    let reader = fifo_with_idle_reader(&out);
    create(&sock, "idle", &b, &out);
    let waited = wait_in_background(&sock, "idle", "");
    std::thread::sleep(Duration::from_millis(50));
    let t0 = Instant::now();
    start(&sock, "idle", "");
    let (exit, at) = waited
        .recv_timeout(Duration::from_secs(10))
        .expect("the exit is reported although nobody reads");
    let took = at.saturating_duration_since(t0);
    assert_eq!(exit, 0);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "an unread output holds the exit back about 2 s: {took:?}"
    );
    assert_eq!(read_lines(reader, SHORT), SHORT, "read late: nothing lost");
    delete(&sock, "idle");

    assert_sibling(c, sib.pid, &shims, 1);
    let _ = fs::remove_dir_all(c.dir().join("fifobundles"));
    c.kill_and_remove("sib");
    c.assert_clean("sib");
}
per_version!(exit_waits_for_its_output);
