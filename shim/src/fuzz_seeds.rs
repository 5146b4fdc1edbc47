//! The `task` target's seed corpus (`fuzz/corpus/task/`), made from real requests, and
//! the unit test that runs it, confined as the fuzzer is, in a fresh process.

use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::types::mount::Mount;

use super::{fixture_bundles, record, Harness};

fn any(type_url: &str, json: &str) -> MessageField<Any> {
    let mut a = Any::new();
    a.type_url = type_url.into();
    a.value = json.as_bytes().to_vec();
    MessageField::some(a)
}

fn create(id: &str, bundle: &str) -> CreateTaskRequest {
    let mut r = CreateTaskRequest::new();
    r.id = id.into();
    r.bundle = bundle.into();
    r.stdout = "/run/containerd/fifo/1/c-stdout".into();
    r.stderr = "file:///var/log/c.log".into();
    let mut m = Mount::new();
    m.type_ = "overlay".into();
    m.source = "overlay".into();
    m.options = vec![
        "lowerdir=/l1:/l2".into(),
        "upperdir=/u".into(),
        "workdir=/w".into(),
    ];
    r.rootfs.push(m);
    r
}

macro_rules! req {
    ($t:ident { $($f:ident: $v:expr),* $(,)? }) => {{
        let mut r = $t::new();
        $( r.$f = $v.into(); )*
        r
    }};
}

/// The seeds: (file name, input).
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let process = r#"{"args":["/bin/sh","-c","echo hi"],"cwd":"/","user":{"uid":0,"gid":0},"env":["PATH=/bin"],"terminal":true}"#;
    let resources = r#"{"memory":{"limit":67108864},"cpu":{"shares":512,"quota":20000,"period":100000},"pids":{"limit":50}}"#;
    let mut out = Vec::new();
    for (i, b) in fixture_bundles().iter().enumerate() {
        let c = create("c1", &b.display().to_string());
        out.push((format!("create-{i}"), record("Create", &c)));
    }
    let mut terminal = create("c2", "/bundle/host");
    terminal.terminal = true;
    terminal.stdin = "/run/containerd/fifo/2/c-stdin".into();
    let mut exec = req!(ExecProcessRequest {
        id: "c1",
        exec_id: "e1",
        stdout: "/fifo/out"
    });
    exec.spec = any(
        "types.containerd.io/opencontainers/runtime-spec/1/Process",
        process,
    );
    let mut update = req!(UpdateTaskRequest { id: "c1" });
    update.resources = any(
        "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
        resources,
    );
    let mut kill_all = req!(KillRequest {
        id: "c1",
        signal: 9u32
    });
    kill_all.all = true;
    let lifecycle: Vec<(&str, Box<dyn containerd_shim_protos::protobuf::MessageDyn>)> = vec![
        ("Create", Box::new(create("c1", "/bundle/host"))),
        ("Start", Box::new(req!(StartRequest { id: "c1" }))),
        ("State", Box::new(req!(StateRequest { id: "c1" }))),
        ("Exec", Box::new(exec)),
        (
            "Start",
            Box::new(req!(StartRequest {
                id: "c1",
                exec_id: "e1"
            })),
        ),
        (
            "ResizePty",
            Box::new(req!(ResizePtyRequest {
                id: "c1",
                exec_id: "e1",
                width: 80u32,
                height: 24u32
            })),
        ),
        (
            "CloseIO",
            Box::new(req!(CloseIORequest {
                id: "c1",
                exec_id: "e1",
                stdin: true
            })),
        ),
        ("Pids", Box::new(req!(PidsRequest { id: "c1" }))),
        ("Stats", Box::new(req!(StatsRequest { id: "c1" }))),
        ("Update", Box::new(update)),
        ("Pause", Box::new(req!(PauseRequest { id: "c1" }))),
        ("Resume", Box::new(req!(ResumeRequest { id: "c1" }))),
        (
            "Kill",
            Box::new(req!(KillRequest {
                id: "c1",
                exec_id: "e1",
                signal: 15u32
            })),
        ),
        ("Kill", Box::new(kill_all)),
        ("Wait", Box::new(req!(WaitRequest { id: "c1" }))),
        (
            "Delete",
            Box::new(req!(DeleteRequest {
                id: "c1",
                exec_id: "e1"
            })),
        ),
        ("Delete", Box::new(req!(DeleteRequest { id: "c1" }))),
        (
            "Checkpoint",
            Box::new(req!(CheckpointTaskRequest {
                id: "c1",
                path: "/tmp/cp"
            })),
        ),
        ("Connect", Box::new(req!(ConnectRequest { id: "c1" }))),
        ("Shutdown", Box::new(req!(ShutdownRequest { id: "c1" }))),
    ];
    let mut all = Vec::new();
    for (i, (method, msg)) in lifecycle.iter().enumerate() {
        let r = record(method, msg.as_ref());
        out.push((format!("{i:02}-{}", method.to_lowercase()), r.clone()));
        all.extend(r);
    }
    out.push(("lifecycle".into(), all));
    out.push(("create-terminal".into(), record("Create", &terminal)));
    // The same request under the v2 service name (top bit of the method byte).
    let mut v2 = record("State", &req!(StateRequest { id: "c1" }));
    v2[0] |= 0x80;
    out.push(("state-v2-name".into(), v2));
    out.push(("not-protobuf".into(), vec![1, 4, 0, 0xff, 0xff, 0xff, 0xff]));
    out
}

fn corpus_dir() -> std::path::PathBuf {
    let shim = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    shim.parent().unwrap_or(shim).join("fuzz/corpus/task")
}

/// Rewrites the committed seed corpus: `cargo test -p containerd-shim-mypod-v2 -- --ignored
/// write_task_seeds`.
#[test]
#[ignore]
fn write_task_seeds() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in seeds() {
        std::fs::write(dir.join(name), data).unwrap();
    }
}

/// Which check a re-executed test binary runs confined (see [`run_confined`]).
const CHILD_ENV: &str = "MYPOD_FUZZ_CONFINED_CHECK";

/// Runs check `name` of [`confined_check`] in a fresh process (this test binary again,
/// running only [`confined_child`]), confined as the fuzzer is; its exit code (0: passed).
/// A fresh process, not a fork: a fork of the multi-threaded test harness may copy a lock
/// (the allocator's) held by another test's thread, and the child would hang on it.
fn run_confined(name: &str) -> (i32, String) {
    let exe = std::env::current_exe().unwrap();
    let child = std::process::Command::new(exe)
        .args([
            "--exact",
            "fuzz::seeds::confined_child",
            "--ignored",
            "--test-threads=1",
            "--quiet",
        ])
        .env(CHILD_ENV, name)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    // The confinement's root dir (its tmpfs went with the child's mount namespace).
    let _ = std::fs::remove_dir(std::env::temp_dir().join(format!("mypod-fuzz-root-{pid}")));
    // The child's own report, for the assertion message only (its "test result" lines
    // must not reach the outer test log as if they were this run's).
    let text = String::from_utf8_lossy(&out.stdout).replace("test result", "child result")
        + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// The checks [`run_confined`] runs.
fn confined_check(name: &str, h: &Harness) {
    match name {
        "seeds" => {
            let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(corpus_dir())
                .unwrap()
                .map(|e| std::fs::read(e.unwrap().path()).unwrap())
                .collect();
            assert!(
                inputs.len() >= 20,
                "seed corpus too small: {}",
                inputs.len()
            );
            inputs.extend(seeds().into_iter().map(|(_, d)| d));
            inputs.iter().for_each(|i| h.run(i));
        }
        "fixtures" => {
            // The confinement's premise: no Create can get past the checks.
            let want = [
                ttrpc::Code::PERMISSION_DENIED,
                ttrpc::Code::INVALID_ARGUMENT,
                ttrpc::Code::INVALID_ARGUMENT,
                ttrpc::Code::INVALID_ARGUMENT,
            ];
            for (b, want) in fixture_bundles().iter().zip(want) {
                let c = create("c1", &b.display().to_string());
                let body = containerd_shim_protos::protobuf::Message::write_to_bytes(&c).unwrap();
                assert_eq!(h.answer("Create", body), Some(want), "{}", b.display());
            }
            // Outside the confinement this bundle would exist; inside, nothing does.
            let c = create("c1", env!("CARGO_MANIFEST_DIR"));
            let body = containerd_shim_protos::protobuf::Message::write_to_bytes(&c).unwrap();
            assert_eq!(
                h.answer("Create", body),
                Some(ttrpc::Code::INVALID_ARGUMENT)
            );
            h.run(&record("State", &req!(StateRequest { id: "x" })));
        }
        _ => panic!("a failed property ({name})"),
    }
}

/// The confined side of [`run_confined`]: runs only when re-executed with its variable.
#[test]
#[ignore]
fn confined_child() {
    let Ok(name) = std::env::var(CHILD_ENV) else {
        return;
    };
    let exe = super::confine(&[corpus_dir()]).unwrap();
    confined_check(&name, &Harness::new(exe).unwrap());
}

#[test]
fn the_seed_corpus_is_answered_in_confinement() {
    let (code, out) = run_confined("seeds");
    assert_eq!(code, 0, "{out}");
}

#[test]
fn every_fixture_bundle_is_refused_before_anything_is_made() {
    let (code, out) = run_confined("fixtures");
    assert_eq!(code, 0, "{out}");
    // A failed check in the child shows in its exit code.
    let (code, out) = run_confined("fail");
    assert_ne!(code, 0, "{out}");
}
