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

use std::fs::{self, File};
use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use containerd_shim_protos::shim::shim::{
    CreateTaskRequest, DeleteRequest, StartRequest, StateRequest, WaitRequest,
};
use containerd_shim_protos::shim::shim_ttrpc_async::TaskClient;
use mypod_tests::{per_version, procfs, Containerd};

const GROUP_KEY: &str = "io.containerd.runc.v2.group";
const LINES: usize = 20_000;

/// One request on a fresh connection to the shim at `sock`, answered within 20 s (or a
/// panic: a hang is a failure).
fn call<F, Fut, T>(sock: &Path, f: F) -> Result<T, (ttrpc::Code, String)>
where
    F: FnOnce(TaskClient, ttrpc::context::Context) -> Fut,
    Fut: Future<Output = ttrpc::Result<T>>,
{
    let address = format!("unix://{}", sock.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let res = rt.block_on(async {
        let client = ttrpc::asynchronous::Client::connect(&address)
            .await
            .unwrap_or_else(|e| panic!("connect {address}: {e}"));
        let ctx = ttrpc::context::with_timeout(Duration::from_secs(15).as_nanos() as i64);
        tokio::time::timeout(Duration::from_secs(20), f(TaskClient::new(client), ctx)).await
    });
    match res.unwrap_or_else(|_| panic!("the shim at {address} did not answer in 20 s")) {
        Ok(v) => Ok(v),
        Err(ttrpc::Error::RpcStatus(s)) => Err((s.code(), s.message.clone())),
        Err(e) => panic!("request to {address}: {e}"),
    }
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
