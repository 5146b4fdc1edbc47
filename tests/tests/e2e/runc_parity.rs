//! Issue 18: the specs runc refuses are refused by mypod too, each through ctr with an error
//! that names the field, before any container process runs, leaving nothing behind; and the
//! specs whose meaning would silently change (mypod stricter than runc) are refused as well.
//! Each parity row also runs the same spec under runc (containerd's runc-v2 shim, Debian's
//! runc, on the same containerd), so the claim "runc refuses it" is checked, not remembered.
//! The table with runc's messages is docs/spec-validation.md.

use std::path::PathBuf;
use std::time::Duration;

use mypod_tests::containerd::RUNC_RUNTIME;
use mypod_tests::{per_version, Containerd};
use serde_json::{json, Value};

/// A spec edit, the field mypod's error must name, and whether runc refuses it too.
struct Case {
    id: &'static str,
    field: &'static str,
    runc_refuses: bool,
    edit: fn(&mut Value),
}

fn ns_drop(s: &mut Value, t: &str) {
    s["linux"]["namespaces"]
        .as_array_mut()
        .expect("linux.namespaces")
        .retain(|n| n["type"] != t);
}

fn first_mount(s: &mut Value, m: Value) {
    s["mounts"].as_array_mut().expect("mounts").insert(0, m);
}

/// Specs runc refuses (`runc_refuses`), then specs mypod refuses where runc 1.1 runs them.
const CASES: &[Case] = &[
    Case {
        id: "env-no-eq",
        field: "process.env[1]",
        runc_refuses: true,
        edit: |s| s["process"]["env"] = json!(["PATH=/bin", "FOO"]),
    },
    Case {
        id: "env-no-name",
        field: "process.env[1]",
        runc_refuses: true,
        edit: |s| s["process"]["env"] = json!(["PATH=/bin", "=x"]),
    },
    Case {
        id: "env-nul",
        field: "process.env[1]",
        runc_refuses: true,
        edit: |s| s["process"]["env"] = json!(["PATH=/bin", "A=b\u{0}c"]),
    },
    Case {
        id: "cwd-relative",
        field: "process.cwd",
        runc_refuses: true,
        edit: |s| s["process"]["cwd"] = json!("tmp"),
    },
    Case {
        id: "cwd-empty",
        field: "process.cwd",
        runc_refuses: true,
        edit: |s| s["process"]["cwd"] = json!(""),
    },
    Case {
        id: "mnt-nul",
        field: "mounts[0].destination",
        runc_refuses: true,
        edit: |s| {
            first_mount(
                s,
                json!({"destination": "/m\u{0}t", "type": "tmpfs", "source": "tmpfs"}),
            )
        },
    },
    Case {
        id: "mnt-bind-type",
        field: "mounts[0].options",
        runc_refuses: true,
        edit: |s| {
            first_mount(
                s,
                json!({"destination": "/mnt", "type": "bind", "source": "/tmp"}),
            )
        },
    },
    Case {
        id: "rlimit-soft",
        field: "process.rlimits[0]",
        runc_refuses: true,
        edit: |s| {
            s["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 2048, "hard": 1024}])
        },
    },
    Case {
        id: "oom-range",
        field: "process.oomScoreAdj",
        runc_refuses: true,
        edit: |s| s["process"]["oomScoreAdj"] = json!(1001),
    },
    Case {
        id: "no-mntns",
        field: "linux.namespaces",
        runc_refuses: true,
        edit: |s| ns_drop(s, "mount"),
    },
    Case {
        id: "hostname-no-uts",
        field: "hostname",
        runc_refuses: true,
        edit: |s| {
            ns_drop(s, "uts");
            s["hostname"] = json!("h");
        },
    },
    Case {
        id: "ns-twice",
        field: "linux.namespaces",
        runc_refuses: true,
        edit: |s| {
            s["linux"]["namespaces"]
                .as_array_mut()
                .expect("namespaces")
                .push(json!({"type": "ipc"}))
        },
    },
    Case {
        id: "dev-access",
        field: "linux.resources.devices[0].access",
        runc_refuses: true,
        edit: |s| s["linux"]["resources"]["devices"] = json!([{"allow": false, "access": ""}]),
    },
    Case {
        id: "no-root",
        field: "root",
        runc_refuses: true,
        edit: |s| {
            s.as_object_mut().expect("spec").remove("root");
        },
    },
    Case {
        id: "terminal",
        field: "process.terminal",
        runc_refuses: true,
        edit: |s| s["process"]["terminal"] = json!(true),
    },
    // Stricter than runc 1.1 (which runs these).
    Case {
        id: "cwd-dotdot",
        field: "process.cwd",
        runc_refuses: false,
        edit: |s| s["process"]["cwd"] = json!("/tmp/../etc"),
    },
    Case {
        id: "mnt-relative",
        field: "mounts[0].destination",
        runc_refuses: false,
        edit: |s| {
            first_mount(
                s,
                json!({"destination": "mnt", "type": "tmpfs", "source": "tmpfs"}),
            )
        },
    },
    Case {
        id: "mnt-dotdot",
        field: "mounts[0].destination",
        runc_refuses: false,
        edit: |s| {
            first_mount(
                s,
                json!({"destination": "/../mnt", "type": "tmpfs", "source": "tmpfs"}),
            )
        },
    },
    Case {
        id: "mnt-bind-data",
        field: "mounts[0].options",
        runc_refuses: false,
        edit: |s| {
            first_mount(
                s,
                json!({"destination": "/mnt", "type": "bind", "source": "/tmp",
                       "options": ["rbind", "size=10"]}),
            )
        },
    },
    Case {
        id: "rlimit-twice",
        field: "process.rlimits[1]",
        runc_refuses: false,
        edit: |s| {
            s["process"]["rlimits"] = json!([
                {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024},
                {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 512}])
        },
    },
    Case {
        id: "masked-relative",
        field: "linux.maskedPaths[0]",
        runc_refuses: false,
        edit: |s| s["linux"]["maskedPaths"] = json!(["proc/kcore"]),
    },
    Case {
        id: "maps-no-userns",
        field: "linux.uidMappings",
        runc_refuses: false,
        edit: |s| {
            let m = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            s["linux"]["uidMappings"] = m.clone();
            s["linux"]["gidMappings"] = m;
        },
    },
    Case {
        id: "dev-relative",
        field: "linux.devices[0].path",
        runc_refuses: false,
        edit: |s| {
            s["linux"]["devices"] =
                json!([{"path": "dev/null2", "type": "c", "major": 1, "minor": 3}])
        },
    },
    Case {
        id: "dev-access-z",
        field: "linux.resources.devices[0].access",
        runc_refuses: false,
        edit: |s| s["linux"]["resources"]["devices"] = json!([{"allow": false, "access": "rwz"}]),
    },
    Case {
        id: "umask",
        field: "process.user.umask",
        runc_refuses: false,
        edit: |s| s["process"]["user"]["umask"] = json!(0o10022),
    },
];

/// Where a process of container `id` that ran would leave its mark: in its own rootfs, or
/// in the host's root when it had none (the no-mount-namespace case).
fn marks(c: &Containerd, id: &str) -> [PathBuf; 2] {
    let name = format!("runc-parity-ran-{id}");
    [
        c.dir().join("rootfs").join(id).join(&name),
        PathBuf::from("/").join(name),
    ]
}

/// Runs `spec` as container `id` under `runtime`; returns ctr's output and whether the
/// container's process ran (removing any mark it left).
fn run(
    c: &Containerd,
    runtime: &str,
    id: &str,
    spec: &Value,
) -> (mypod_tests::command::Output, bool) {
    let file = c.write_spec_file(id, &serde_json::to_string_pretty(spec).expect("spec"));
    let out = c.ctr(&["run", "--rm", "--runtime", runtime, "--config", &file, id]);
    let mut ran = out.stdout.contains("RAN");
    for m in marks(c, id) {
        if m.exists() {
            ran = true;
            let _ = std::fs::remove_file(&m);
        }
    }
    (out, ran)
}

fn spec_for(c: &Containerd, id: &str, case: &Case) -> Value {
    let mark = format!("/runc-parity-ran-{id}");
    let script = format!("echo RAN; touch {mark}");
    let mut spec = c.config_spec(id, &["/bin/sh", "-c", &script]);
    (case.edit)(&mut spec);
    spec
}

/// Every row: mypod refuses it through ctr, naming the field, within a bound, with no
/// process run and nothing left; runc refuses the parity rows the same way (and runs the
/// others, so a row marked stricter is stricter). With `MYPOD_TEST_RUNTIME=runc` the
/// runtime under test is runc, held to the parity rows only.
fn specs_runc_refuses_are_refused(c: &Containerd) {
    let mut failures = Vec::new();
    for case in CASES.iter().filter(|k| c.is_mypod() || k.runc_refuses) {
        let id = format!("m-{}", case.id);
        let (out, ran) = run(c, c.runtime(), &id, &spec_for(c, &id, case));
        if out.success() || ran {
            failures.push(format!("{}: ran under {}:\n{out}", case.id, c.runtime()));
        } else if c.is_mypod() && !out.stderr.contains(case.field) {
            failures.push(format!(
                "{}: the error does not name {}:\n{out}",
                case.id, case.field
            ));
        }
        if out.elapsed > Duration::from_secs(30) {
            failures.push(format!("{}: took {:?}", case.id, out.elapsed));
        }
        c.assert_clean(&id);

        let rid = format!("r-{}", case.id);
        let (rout, rran) = run(c, RUNC_RUNTIME, &rid, &spec_for(c, &rid, case));
        let refused = !rout.success() && !rran;
        if refused != case.runc_refuses {
            failures.push(format!(
                "{}: runc {} this spec; the table says it {}:\n{rout}",
                case.id,
                if refused { "refuses" } else { "runs" },
                if case.runc_refuses { "refuses" } else { "runs" },
            ));
        }
        let _ = c.ctr(&["tasks", "delete", "-f", &rid]);
        let _ = c.ctr(&["containers", "delete", &rid]);
        c.assert_clean(&rid);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
per_version!(specs_runc_refuses_are_refused with mypod_tests::beside_runc);

/// An exec's process gets the same checks (runc's `runc exec` refuses a relative cwd), and
/// a refused exec leaves its container running and answering execs.
fn exec_process_is_checked(c: &Containerd) {
    for runtime in [c.runtime(), RUNC_RUNTIME] {
        let id = if runtime == RUNC_RUNTIME {
            "r-host"
        } else {
            "m-host"
        };
        let file = c.write_spec_file(
            id,
            &serde_json::to_string_pretty(&c.config_spec(id, &["sleep", "600"])).expect("spec"),
        );
        c.ctr_ok(&["run", "-d", "--runtime", runtime, "--config", &file, id]);
        let out = c.ctr(&[
            "tasks",
            "exec",
            "--exec-id",
            "bad",
            "--cwd",
            "tmp",
            id,
            "true",
        ]);
        out.assert_failure();
        if runtime == c.runtime() && c.is_mypod() {
            assert!(out.stderr.contains("process.cwd"), "{id}: {out}");
        }
        let ok = c.ctr(&["tasks", "exec", "--exec-id", "ok", id, "echo", "still"]);
        assert_eq!(
            (ok.exit_code(), ok.stdout.as_str()),
            (0, "still\n"),
            "{id}: {ok}"
        );
        c.kill_and_remove(id);
        c.assert_clean(id);
    }
}
per_version!(exec_process_is_checked with mypod_tests::beside_runc);
