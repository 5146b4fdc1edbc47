use serde_json::{json, Value};

use super::*;

fn base() -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {"args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0},
                    "env": ["PATH=/bin", "EMPTY="],
                    "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}]},
        "root": {"path": "rootfs"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "mode=755", "size=65536k"]},
            {"destination": "/etc/hosts", "type": "bind", "source": "/etc/hosts",
             "options": ["rbind", "rprivate", "ro", "nosuid", "rro"]},
            {"destination": "/mnt/idm", "type": "bind", "source": "/srv",
             "options": ["rbind", "idmap"]},
            {"destination": "/mnt/plain", "source": "/srv", "options": ["bind"]}
        ],
        "linux": {
            "namespaces": [{"type": "mount"}, {"type": "pid"}],
            "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}],
            "resources": {"devices": [{"allow": false, "access": "rwm"},
                                      {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}
        }
    })
}

fn check(v: &Value) -> Result<(), CheckError> {
    let s: Spec = serde_json::from_value(v.clone()).unwrap();
    process(s.process().as_ref().unwrap())?;
    spec(&s)
}

#[test]
fn a_plain_spec_passes() {
    check(&base()).unwrap();
}

type Edit = fn(&mut Value);

/// Each edit is refused, naming the field.
#[test]
fn refused_values_name_their_field() {
    let cases: &[(&str, Edit)] = &[
        ("process.cwd", |s| s["process"]["cwd"] = json!("")),
        ("process.cwd", |s| s["process"]["cwd"] = json!("tmp")),
        ("process.cwd", |s| {
            s["process"]["cwd"] = json!("/tmp/../etc")
        }),
        ("process.env[1]", |s| s["process"]["env"][1] = json!("FOO")),
        ("process.env[1]", |s| s["process"]["env"][1] = json!("=x")),
        ("process.env[1]", |s| {
            s["process"]["env"][1] = json!("A=b\u{0}c")
        }),
        ("process.rlimits[0]", |s| {
            s["process"]["rlimits"][0]["soft"] = json!(8192)
        }),
        ("process.rlimits[1]", |s| {
            s["process"]["rlimits"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}))
        }),
        ("process.user.umask", |s| {
            s["process"]["user"]["umask"] = json!(0o10022)
        }),
        ("process.oomScoreAdj", |s| {
            s["process"]["oomScoreAdj"] = json!(1001)
        }),
        ("process.oomScoreAdj", |s| {
            s["process"]["oomScoreAdj"] = json!(-1001)
        }),
        ("process.consoleSize.width", |s| {
            s["process"]["consoleSize"] = json!({"height": 24, "width": 65536})
        }),
        ("root", |s| {
            s.as_object_mut().unwrap().remove("root");
        }),
        ("linux.namespaces", |s| {
            s["linux"]["namespaces"] = json!([{"type": "pid"}])
        }),
        ("linux.namespaces", |s| {
            s.as_object_mut().unwrap().remove("linux");
        }),
        ("linux.namespaces[1].path", |s| {
            s["linux"]["namespaces"][1]["path"] = json!("proc/1/ns/pid")
        }),
        ("mounts[0].destination", |s| {
            s["mounts"][0]["destination"] = json!("proc")
        }),
        ("mounts[0].destination", |s| {
            s["mounts"][0]["destination"] = json!("")
        }),
        ("mounts[0].destination", |s| {
            s["mounts"][0]["destination"] = json!("/../proc")
        }),
        ("mounts[0].destination", |s| {
            s["mounts"][0]["destination"] = json!("/pr\u{0}oc")
        }),
        ("mounts[0].source", |s| {
            s["mounts"][0]["source"] = json!("pr\u{0}oc")
        }),
        ("mounts[0].type", |s| {
            s["mounts"][0]["type"] = json!("pr\u{0}oc")
        }),
        ("mounts[2].options", |s| {
            s["mounts"][2]["options"] = json!(["ro"])
        }),
        ("mounts[2].options", |s| {
            s["mounts"][2]["options"] = json!(["rbind", "size=10"])
        }),
        ("linux.maskedPaths[0]", |s| {
            s["linux"]["maskedPaths"][0] = json!("proc/kcore")
        }),
        ("linux.readonlyPaths[0]", |s| {
            s["linux"]["readonlyPaths"][0] = json!("/proc/../sys")
        }),
        ("linux.uidMappings", |s| {
            s["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}])
        }),
        ("linux.gidMappings", |s| {
            s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}])
        }),
        ("linux.devices[0].path", |s| {
            s["linux"]["devices"][0]["path"] = json!("dev/fuse")
        }),
        ("linux.devices[0].path", |s| {
            s["linux"]["devices"][0]["path"] = json!("/dev/../fuse")
        }),
        ("linux.resources.devices[1].access", |s| {
            s["linux"]["resources"]["devices"][1]["access"] = json!("")
        }),
        ("linux.resources.devices[0].access", |s| {
            s["linux"]["resources"]["devices"][0]
                .as_object_mut()
                .unwrap()
                .remove("access");
        }),
        ("linux.resources.devices[1].access", |s| {
            s["linux"]["resources"]["devices"][1]["access"] = json!("rwz")
        }),
    ];
    for (i, (field, edit)) in cases.iter().enumerate() {
        let mut s = base();
        edit(&mut s);
        match check(&s) {
            Err(CheckError::Invalid { field: f, reason }) => {
                assert_eq!(&f, field, "case {i}: {reason}")
            }
            Ok(()) => panic!("case {i} ({field}) was accepted"),
        }
    }
}

#[test]
fn a_user_namespace_takes_mappings_and_a_joined_mount_namespace_counts() {
    let mut s = base();
    s["linux"]["namespaces"] =
        json!([{"type": "mount", "path": "/proc/1/ns/mnt"}, {"type": "user"}]);
    s["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    check(&s).unwrap();
}

#[test]
fn an_exec_process_alone_is_checked() {
    let p: Process = serde_json::from_value(json!({
        "args": ["/bin/true"], "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["A"]
    }))
    .unwrap();
    let e = process(&p).unwrap_err().to_string();
    assert!(e.starts_with("process.env[0]: "), "{e}");
}

#[test]
fn a_terminal_must_agree_with_the_request() {
    terminal(true, true).unwrap();
    terminal(false, false).unwrap();
    for (wanted, requested) in [(true, false), (false, true)] {
        let e = terminal(wanted, requested).unwrap_err().to_string();
        assert!(e.starts_with("process.terminal: "), "{e}");
    }
}
