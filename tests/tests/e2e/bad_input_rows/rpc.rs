//! Task requests sent straight to the pod shim's socket (the address containerd dials, from
//! the bundle's `address` file), as containerd would send them but with ids that do not
//! exist or are gone, ids containerd would never send, repeated or out-of-order requests
//! and absurd values. Each is answered in time with the right ttrpc code and a message that
//! names the id or the field; the sibling is unharmed.

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim::shim_ttrpc_async::TaskClient;
use mypod_tests::{per_version, task_rpc, Containerd};
use serde_json::json;
use ttrpc::Code;

use super::{assert_says, row, Sibling, GROUP, GROUP_KEY};

type Answer = Result<(), (Code, String)>;

/// Sends one request to the shim at `sock` ([`task_rpc::call`]), keeping only whether it was
/// accepted.
fn call<F, Fut, T>(sock: &Path, f: F) -> (Answer, Duration)
where
    F: FnOnce(TaskClient, ttrpc::context::Context) -> Fut,
    Fut: Future<Output = ttrpc::Result<T>>,
{
    let (answer, took) = task_rpc::call(sock, f);
    (answer.map(|_| ()), took)
}

/// Asserts a refusal with `code` whose message says `needles`, records the row and checks
/// the sibling.
fn refused(sib: &Sibling, sent: &str, got: (Answer, Duration), code: Code, needles: &[&str]) {
    let (answer, took) = got;
    let (got_code, msg) = match answer {
        Ok(()) => panic!("{sent}: accepted, expected {code:?}"),
        Err(e) => e,
    };
    let shown = format!("{got_code:?}: {msg}");
    row("rpc", sent, &shown, took);
    assert_eq!(got_code, code, "{sent}: {msg}");
    assert_says(sent, &msg, took, needles);
    sib.assert_unharmed(None);
}

fn any(type_url: &str, value: Vec<u8>) -> MessageField<Any> {
    let mut a = Any::new();
    a.type_url = type_url.to_string();
    a.value = value;
    MessageField::some(a)
}

const RESOURCES: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
const PROCESS: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

fn exec_req(id: &str, exec_id: &str, process: Vec<u8>) -> ExecProcessRequest {
    let mut r = ExecProcessRequest::new();
    r.id = id.to_string();
    r.exec_id = exec_id.to_string();
    r.spec = any(PROCESS, process);
    r
}

fn echo_process() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "args": ["echo", "hi"], "cwd": "/", "user": {"uid": 0, "gid": 0},
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
    }))
    .unwrap()
}

fn create_req(id: &str, bundle: &Path) -> CreateTaskRequest {
    let mut r = CreateTaskRequest::new();
    r.id = id.to_string();
    r.bundle = bundle.display().to_string();
    r
}

/// A bundle dir (not containerd's) holding `config` as config.json.
fn raw_bundle(c: &Containerd, name: &str, config: &[u8]) -> PathBuf {
    let dir = c.dir().join("rawbundles").join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("config.json"), config).unwrap();
    dir
}

/// Requests for ids that do not exist ("ghost") or are gone ("gone": ran in the pod and was
/// deleted), requests repeated or out of order, absurd values.
fn raw_task_requests(c: &Containerd) {
    if !c.is_mypod() {
        return; // mypod's answers: runc-v2 on 1.6/1.7 does not even serve the v3 names.
    }
    let sib = Sibling::start(c, "sibling");
    let sock = c.shim_socket("sibling");
    let s = sock.as_path();
    let group = format!("--annotation={GROUP_KEY}={GROUP}");
    c.run("gone", &[&group], &["/bin/true"]).assert_success();
    sib.assert_unharmed(Some("gone"));

    let nf = Code::NOT_FOUND;
    refused(
        &sib,
        "State of a container that never existed",
        call(s, |t, x| async move {
            let mut r = StateRequest::new();
            r.id = "ghost".into();
            t.state(x, &r).await
        }),
        nf,
        &["ghost"],
    );
    refused(
        &sib,
        "State of a container already deleted",
        call(s, |t, x| async move {
            let mut r = StateRequest::new();
            r.id = "gone".into();
            t.state(x, &r).await
        }),
        nf,
        &["gone"],
    );
    refused(
        &sib,
        "Kill (SIGKILL) of a container that never existed",
        call(s, |t, x| async move {
            let mut r = KillRequest::new();
            r.id = "ghost".into();
            r.signal = 9;
            t.kill(x, &r).await
        }),
        nf,
        &["ghost"],
    );
    refused(
        &sib,
        "Delete of a container already deleted",
        call(s, |t, x| async move {
            let mut r = DeleteRequest::new();
            r.id = "gone".into();
            t.delete(x, &r).await
        }),
        nf,
        &["gone"],
    );
    refused(
        &sib,
        "Start of a container that never existed",
        call(s, |t, x| async move {
            let mut r = StartRequest::new();
            r.id = "ghost".into();
            t.start(x, &r).await
        }),
        nf,
        &["ghost"],
    );
    refused(
        &sib,
        "Pids of a container already deleted",
        call(s, |t, x| async move {
            let mut r = PidsRequest::new();
            r.id = "gone".into();
            t.pids(x, &r).await
        }),
        nf,
        &["gone"],
    );
    refused(
        &sib,
        "Stats of a container that never existed",
        call(s, |t, x| async move {
            let mut r = StatsRequest::new();
            r.id = "ghost".into();
            t.stats(x, &r).await
        }),
        nf,
        &["ghost"],
    );
    refused(
        &sib,
        "Wait for a container already deleted",
        call(s, |t, x| async move {
            let mut r = WaitRequest::new();
            r.id = "gone".into();
            t.wait(x, &r).await
        }),
        nf,
        &["gone"],
    );
    refused(
        &sib,
        "Wait for an exec id the sibling never had",
        call(s, |t, x| async move {
            let mut r = WaitRequest::new();
            r.id = "sibling".into();
            r.exec_id = "nosuch".into();
            t.wait(x, &r).await
        }),
        nf,
        &["nosuch"],
    );
    refused(
        &sib,
        "Kill of an exec id the sibling never had",
        call(s, |t, x| async move {
            let mut r = KillRequest::new();
            r.id = "sibling".into();
            r.exec_id = "nosuch".into();
            r.signal = 9;
            t.kill(x, &r).await
        }),
        nf,
        &["nosuch"],
    );
    refused(
        &sib,
        "CloseIO of a container that never existed",
        call(s, |t, x| async move {
            let mut r = CloseIORequest::new();
            r.id = "ghost".into();
            r.stdin = true;
            t.close_io(x, &r).await
        }),
        nf,
        &["ghost"],
    );
    refused(
        &sib,
        "ResizePty of a container already deleted",
        call(s, |t, x| async move {
            let mut r = ResizePtyRequest::new();
            r.id = "gone".into();
            r.width = 80;
            r.height = 24;
            t.resize_pty(x, &r).await
        }),
        nf,
        &["gone"],
    );
    refused(
        &sib,
        "Pause of a container that never existed",
        call(s, |t, x| async move {
            let mut r = PauseRequest::new();
            r.id = "ghost".into();
            t.pause(x, &r).await
        }),
        nf,
        &["ghost"],
    );
    refused(
        &sib,
        "Update (memory 64 MiB) of a container already deleted",
        call(s, |t, x| async move {
            let mut r = UpdateTaskRequest::new();
            r.id = "gone".into();
            r.resources = any(RESOURCES, br#"{"memory":{"limit":67108864}}"#.to_vec());
            t.update(x, &r).await
        }),
        nf,
        &["gone"],
    );
    refused(
        &sib,
        "Exec into a container that never existed",
        call(s, |t, x| async move {
            t.exec(x, &exec_req("ghost", "e1", echo_process())).await
        }),
        nf,
        &["ghost"],
    );

    // Requests for the running sibling that must not touch it.
    refused(
        &sib,
        "Start of the running sibling again",
        call(s, |t, x| async move {
            let mut r = StartRequest::new();
            r.id = "sibling".into();
            t.start(x, &r).await
        }),
        Code::FAILED_PRECONDITION,
        &["sibling", "created state"],
    );
    refused(
        &sib,
        "Delete of the running sibling",
        call(s, |t, x| async move {
            let mut r = DeleteRequest::new();
            r.id = "sibling".into();
            t.delete(x, &r).await
        }),
        Code::FAILED_PRECONDITION,
        &["sibling"],
    );
    let bundle = c
        .state_dir()
        .join("io.containerd.runtime.v2.task")
        .join(c.ctr_namespace())
        .join("sibling");
    refused(
        &sib,
        "Create with the running sibling's id and bundle",
        call(s, |t, x| {
            let r = create_req("sibling", &bundle);
            async move { t.create(x, &r).await }
        }),
        Code::ALREADY_EXISTS,
        &["sibling"],
    );
    refused(
        &sib,
        "Kill of the sibling with signal 999",
        call(s, |t, x| async move {
            let mut r = KillRequest::new();
            r.id = "sibling".into();
            r.signal = 999;
            t.kill(x, &r).await
        }),
        Code::INVALID_ARGUMENT,
        &["999"],
    );
    refused(
        &sib,
        "Checkpoint of the sibling",
        call(s, |t, x| async move {
            let mut r = CheckpointTaskRequest::new();
            r.id = "sibling".into();
            r.path = "/tmp/nowhere".into();
            t.checkpoint(x, &r).await
        }),
        Code::UNIMPLEMENTED,
        &["Checkpoint"],
    );
    refused(
        &sib,
        "Update of the sibling: memory.limit -5",
        call(s, |t, x| async move {
            let mut r = UpdateTaskRequest::new();
            r.id = "sibling".into();
            r.resources = any(RESOURCES, br#"{"memory":{"limit":-5}}"#.to_vec());
            t.update(x, &r).await
        }),
        Code::INVALID_ARGUMENT,
        &["memory.limit", "-5"],
    );
    refused(
        &sib,
        "Update of the sibling: cpu.shares 2^40",
        call(s, |t, x| async move {
            let mut r = UpdateTaskRequest::new();
            r.id = "sibling".into();
            r.resources = any(RESOURCES, br#"{"cpu":{"shares":1099511627776}}"#.to_vec());
            t.update(x, &r).await
        }),
        Code::INVALID_ARGUMENT,
        &["cpu.shares"],
    );
    refused(
        &sib,
        "Update of the sibling: resources that are not JSON",
        call(s, |t, x| async move {
            let mut r = UpdateTaskRequest::new();
            r.id = "sibling".into();
            r.resources = any(RESOURCES, b"\x08\x96\x01 not json".to_vec());
            t.update(x, &r).await
        }),
        Code::INVALID_ARGUMENT,
        &["sibling", "LinuxResources"],
    );
    refused(
        &sib,
        "Exec into the sibling: process spec that is not JSON",
        call(s, |t, x| async move {
            t.exec(
                x,
                &exec_req("sibling", "bad-json", b"{\"args\": [".to_vec()),
            )
            .await
        }),
        Code::INVALID_ARGUMENT,
        &["bad-json", "process spec"],
    );
    refused(
        &sib,
        "Exec into the sibling: process.args a number",
        call(s, |t, x| async move {
            t.exec(
                x,
                &exec_req(
                    "sibling",
                    "bad-type",
                    br#"{"args": 7, "cwd": "/", "user": {"uid": 0, "gid": 0}}"#.to_vec(),
                ),
            )
            .await
        }),
        Code::INVALID_ARGUMENT,
        &["bad-type", "process spec", "expected a sequence"],
    );

    // An exec id given twice: the second Exec is refused, the first stays usable.
    let (first, _) = call(s, |t, x| async move {
        t.exec(x, &exec_req("sibling", "twice", echo_process()))
            .await
    });
    assert_eq!(first, Ok(()), "the first Exec of 'twice'");
    refused(
        &sib,
        "Exec with an exec id already in use",
        call(s, |t, x| async move {
            t.exec(x, &exec_req("sibling", "twice", echo_process()))
                .await
        }),
        Code::ALREADY_EXISTS,
        &["twice"],
    );
    let (del, _) = call(s, |t, x| async move {
        let mut r = DeleteRequest::new();
        r.id = "sibling".into();
        r.exec_id = "twice".into();
        t.delete(x, &r).await
    });
    assert_eq!(del, Ok(()), "the pending exec 'twice' is deleted");

    // Create with bundles containerd would never hand over.
    let rb = raw_bundle(c, "notjson", b"{\"ociVersion\": \"1.0.2\", \"process\": {");
    refused(
        &sib,
        "Create whose config.json is not JSON",
        call(s, |t, x| {
            let r = create_req("rawnotjson", &rb);
            async move { t.create(x, &r).await }
        }),
        Code::INVALID_ARGUMENT,
        &["config.json"],
    );
    let rb = raw_bundle(c, "wrongtype", br#"{"ociVersion": "1.0.2", "process": {"args": "true", "cwd": "/", "user": {"uid": 0, "gid": 0}}, "root": {"path": "rootfs"}}"#);
    refused(
        &sib,
        "Create whose config.json has process.args a string",
        call(s, |t, x| {
            let r = create_req("rawwrongtype", &rb);
            async move { t.create(x, &r).await }
        }),
        Code::INVALID_ARGUMENT,
        &["config.json"],
    );
    let missing = c.dir().join("rawbundles/does-not-exist");
    refused(
        &sib,
        "Create with a bundle dir that does not exist",
        call(s, |t, x| {
            let r = create_req("rawnobundle", &missing);
            async move { t.create(x, &r).await }
        }),
        Code::INVALID_ARGUMENT,
        &["does-not-exist/config.json"],
    );
    for d in ["rawnotjson", "rawwrongtype", "rawnobundle"] {
        sib.assert_unharmed(Some(d));
    }
    super::remove_all(&c.dir().join("rawbundles"));
    sib.finish();
}
per_version!(raw_task_requests);
