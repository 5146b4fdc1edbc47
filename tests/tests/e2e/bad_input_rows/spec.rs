//! Malformed and hostile specs, each sent with `ctr run --config` into a pod whose sibling
//! runs: refused in time, with an error naming the field or the value, the sibling
//! unharmed, nothing of the refused container left.

use std::path::Path;
use std::time::Duration;

use mypod_tests::{per_version, Containerd};
use serde_json::{json, Value};

use super::{ctr_error, row, says, Sibling};

type Edit = Box<dyn Fn(&mut Value, &Containerd)>;

/// One row: what is sent, how the spec is made bad, and what the error must say.
struct Case {
    id: &'static str,
    sent: &'static str,
    edit: Edit,
    needles: &'static [&'static str],
}

fn case(
    id: &'static str,
    sent: &'static str,
    needles: &'static [&'static str],
    edit: impl Fn(&mut Value, &Containerd) + 'static,
) -> Case {
    Case {
        id,
        sent,
        edit: Box::new(edit),
        needles,
    }
}

fn linux_resources(s: &mut Value) -> &mut Value {
    if s["linux"]["resources"].is_null() {
        s["linux"]["resources"] = json!({});
    }
    &mut s["linux"]["resources"]
}

fn push(s: &mut Value, key: &str, v: Value) {
    if !s[key].is_array() {
        s[key] = json!([]);
    }
    s[key].as_array_mut().unwrap().push(v);
}

fn set_ns_path(s: &mut Value, typ: &str, path: &str) {
    let list = s["linux"]["namespaces"].as_array_mut().unwrap();
    list.retain(|n| n["type"] != typ);
    list.push(json!({ "type": typ, "path": path }));
}

/// The host file a mount destination that climbs out of the rootfs would reach.
fn escape_target(c: &Containerd) -> String {
    format!("/tmp/mypod-escape-{}", c.namespace())
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "args-string",
            "process.args a string, not a list",
            &["args"],
            |s, _| s["process"]["args"] = json!("/bin/true"),
        ),
        case(
            "uid-string",
            "process.user.uid a string (\"zero\")",
            &["uid"],
            |s, _| s["process"]["user"]["uid"] = json!("zero"),
        ),
        case(
            "mem-neg",
            "memory.limit -5",
            &["memory.limit", "-5"],
            |s, _| linux_resources(s)["memory"] = json!({ "limit": -5 }),
        ),
        case(
            "shares-huge",
            "cpu.shares 2^40",
            &["cpu.shares", "1099511627776"],
            |s, _| linux_resources(s)["cpu"] = json!({ "shares": 1u64 << 40 }),
        ),
        case("quota-neg", "cpu.quota -5", &["cpu.quota", "-5"], |s, _| {
            linux_resources(s)["cpu"] = json!({ "quota": -5, "period": 100000 })
        }),
        case(
            "pids-neg",
            "pids.limit -5",
            &["pids.limit", "-5"],
            |s, _| linux_resources(s)["pids"] = json!({ "limit": -5 }),
        ),
        case(
            "cpuset-huge",
            "cpu.cpus \"0-99999\" (CPUs the host lacks)",
            &["cpu"],
            |s, _| linux_resources(s)["cpu"] = json!({ "cpus": "0-99999" }),
        ),
        case(
            "blkio-weight",
            "blockIO.weight 5000",
            &["blockIO.weight", "5000"],
            |s, _| linux_resources(s)["blockIO"] = json!({ "weight": 5000 }),
        ),
        case(
            "dev-rule-type",
            "resources.devices type \"q\"",
            &["q"],
            |s, _| {
                linux_resources(s)["devices"] =
                    json!([{ "allow": true, "type": "q", "major": 1, "minor": 3, "access": "rwm" }])
            },
        ),
        case(
            "cg-climb",
            "cgroupsPath \"/../../../mypod-escape\"",
            &["cgroupsPath", "escapes"],
            |s, _| s["linux"]["cgroupsPath"] = json!("/../../../mypod-escape"),
        ),
        case(
            "cg-climb-inner",
            "cgroupsPath \"/NS/x/../../../../escape\"",
            &["cgroupsPath", "escapes"],
            |s, c| {
                s["linux"]["cgroupsPath"] =
                    json!(format!("/{}/x/../../../../escape", c.namespace()))
            },
        ),
        case(
            "mount-nosrc",
            "bind mount source /nonexistent-mypod-source",
            &["/nonexistent-mypod-source"],
            |s, _| {
                push(
                    s,
                    "mounts",
                    json!({ "destination": "/x", "type": "bind",
                    "source": "/nonexistent-mypod-source", "options": ["rbind", "ro"] }),
                );
            },
        ),
        case(
            "mount-type",
            "mount type \"nosuchfs\"",
            &["nosuchfs"],
            |s, _| {
                push(
                    s,
                    "mounts",
                    json!({ "destination": "/x", "type": "nosuchfs", "source": "none" }),
                );
            },
        ),
        case(
            "hook-relative",
            "hooks.createRuntime[0].path \"bin/hook\" (relative)",
            &["hooks.createRuntime[0].path", "bin/hook"],
            |s, _| s["hooks"] = json!({ "createRuntime": [{ "path": "bin/hook" }] }),
        ),
        case(
            "ns-type",
            "linux.namespaces type \"bogus\"",
            &["bogus"],
            |s, _| push(&mut s["linux"], "namespaces", json!({ "type": "bogus" })),
        ),
        case(
            "ns-twice",
            "linux.namespaces lists network twice",
            &["linux.namespaces", "net listed twice"],
            |s, _| push(&mut s["linux"], "namespaces", json!({ "type": "network" })),
        ),
        case(
            "ns-not-ns",
            "network namespace path /etc/passwd (not a namespace)",
            &["/etc/passwd"],
            |s, _| set_ns_path(s, "network", "/etc/passwd"),
        ),
        case(
            "ns-missing",
            "network namespace path /proc/999999999/ns/net",
            &["/proc/999999999/ns/net"],
            |s, _| set_ns_path(s, "network", "/proc/999999999/ns/net"),
        ),
        case(
            "sysctl-host",
            "linux.sysctl kernel.pid_max (not namespaced)",
            &["kernel.pid_max"],
            |s, _| s["linux"]["sysctl"] = json!({ "kernel.pid_max": "4194304" }),
        ),
        case(
            "sysctl-climb",
            "linux.sysctl \"net/../../../etc/x\"",
            &["net/../../../etc/x"],
            |s, _| s["linux"]["sysctl"] = json!({ "net/../../../etc/x": "1" }),
        ),
        case(
            "sysctl-climb-net",
            "linux.sysctl \"net.ipv4/../../../../etc/mypod-sysctl\"",
            &["net.ipv4/../../../../etc/mypod-sysctl"],
            |s, _| s["linux"]["sysctl"] = json!({ "net.ipv4/../../../../etc/mypod-sysctl": "1" }),
        ),
        case(
            "hostname-long",
            "hostname of 300 characters",
            &["hostname"],
            |s, _| s["hostname"] = json!("h".repeat(300)),
        ),
        case(
            "seccomp-action",
            "seccomp defaultAction \"SCMP_ACT_BOGUS\"",
            &["SCMP_ACT_BOGUS"],
            |s, _| s["linux"]["seccomp"] = json!({ "defaultAction": "SCMP_ACT_BOGUS" }),
        ),
        case(
            "root-missing",
            "root.path /nonexistent-mypod-rootfs",
            &["/nonexistent-mypod-rootfs"],
            |s, _| s["root"]["path"] = json!("/nonexistent-mypod-rootfs"),
        ),
        case(
            "propagation",
            "linux.rootfsPropagation \"sideways\"",
            &["rootfsPropagation", "sideways"],
            |s, _| s["linux"]["rootfsPropagation"] = json!("sideways"),
        ),
        case(
            "device-climb",
            "linux.devices path \"/dev/../../tmp/mypod-dev\"",
            &["linux.devices OR /dev/../../tmp/mypod-dev"],
            |s, _| {
                push(
                    &mut s["linux"],
                    "devices",
                    json!({ "path": "/dev/../../tmp/mypod-dev",
                    "type": "c", "major": 1, "minor": 3 }),
                );
            },
        ),
        case(
            "personality",
            "linux.personality domain \"LINUX_BOGUS\"",
            &["LINUX_BOGUS OR personality"],
            |s, _| s["linux"]["personality"] = json!({ "domain": "LINUX_BOGUS" }),
        ),
        case(
            "empty-args",
            "process.args [] (empty)",
            &["args"],
            |s, _| s["process"]["args"] = json!([]),
        ),
        case(
            "args-huge",
            "process.args with 300000 entries (4.2 MB)",
            &["args OR argument list too long OR E2BIG"],
            |s, _| s["process"]["args"] = json!(vec!["/bin/true"; 300_000]),
        ),
        case(
            "rlimit-inverted",
            "RLIMIT_NOFILE soft 4096 > hard 1024",
            &["RLIMIT_NOFILE"],
            |s, _| {
                s["process"]["rlimits"] =
                    json!([{ "type": "RLIMIT_NOFILE", "soft": 4096, "hard": 1024 }])
            },
        ),
        case(
            "oom-score",
            "process.oomScoreAdj 5000",
            &["oomScoreAdj OR oom_score_adj"],
            |s, _| s["process"]["oomScoreAdj"] = json!(5000),
        ),
    ]
}

/// Every malformed spec of [`cases`], and a config file that is not JSON.
fn malformed_specs(c: &Containerd) {
    let sib = Sibling::start(c, "sibling");
    let mut wrong = Vec::new();

    // A config file that is not JSON at all.
    let file = c.write_spec_file("notjson", "{\"ociVersion\": \"1.0.2\", \"process\": {");
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        c.runtime(),
        "--config",
        &file,
        "notjson",
    ]);
    out.assert_failure();
    let err = ctr_error(&out);
    row(
        "spec",
        "config file that is not JSON (cut off)",
        &err,
        out.elapsed,
    );
    check(&mut wrong, "notjson", &err, out.elapsed, &["JSON OR json"]);
    sib.assert_unharmed(Some("notjson"));

    for k in cases() {
        let mut spec = sib.spec(k.id, &["/bin/true"]);
        (k.edit)(&mut spec, c);
        let out = c.run_config(k.id, &[], &spec);
        let err = ctr_error(&out);
        row("spec", k.sent, &err, out.elapsed);
        if out.timed_out || out.success() {
            wrong.push(format!("{}: not refused:\n{out}", k.id));
            if c.containers().iter().any(|x| x == k.id) {
                c.kill_and_remove(k.id);
            }
        } else {
            check(&mut wrong, k.id, &out.stderr, out.elapsed, k.needles);
        }
        sib.assert_unharmed(Some(k.id));
    }
    mount_destination_climbing_out(&sib);
    super::remove_all(Path::new("/tmp/mypod-dev"));
    sib.finish();
    assert!(wrong.is_empty(), "rows that failed:\n{}", wrong.join("\n"));
}
per_version!(malformed_specs);

/// A mount destination that climbs out with `..` is refused, naming the mount (runc
/// resolves it inside the rootfs with securejoin and runs the container; mypod is stricter,
/// docs/spec-validation.md): nothing runs and nothing appears on the host.
fn mount_destination_climbing_out(sib: &Sibling) {
    let c = sib.c;
    let escaped = escape_target(c);
    let id = "mount-climb";
    let mut spec = sib.spec(id, &["/bin/sh", "-c", "cut -d' ' -f2 /proc/mounts"]);
    let dst = format!("/../../../..{escaped}");
    push(
        &mut spec,
        "mounts",
        json!({ "destination": dst, "type": "tmpfs", "source": "tmpfs" }),
    );
    let out = c.run_config(id, &[], &spec);
    let on_host = Path::new(&escaped).exists();
    super::remove_all(Path::new(&escaped));
    row(
        "spec",
        "mount destination \"/../../../../tmp/mypod-escape-NS\"",
        "config.json: mounts[N].destination: \"/../../../../tmp/…\" contains a '..' component",
        out.elapsed,
    );
    assert!(
        !on_host,
        "a mount destination climbed out of the rootfs: {escaped}"
    );
    assert_ne!(out.code, Some(0), "{out}");
    assert!(
        out.stderr.contains(".destination") && out.stderr.contains("'..' component"),
        "the error names the mount's destination:\n{out}"
    );
    sib.assert_unharmed(Some(id));
}

fn check(wrong: &mut Vec<String>, id: &str, text: &str, took: Duration, needles: &[&str]) {
    if let Err(e) = says(id, text, took, needles) {
        wrong.push(e);
    }
}
