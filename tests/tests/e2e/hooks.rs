//! OCI hooks (issue 3): every hook kind runs where, when and with what runc runs it, checked
//! side by side with runc on the same containerd; and a failing or hanging hook fails its
//! step with an error naming it, leaving nothing behind.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mypod_tests::containerd::RUNC_RUNTIME;
use mypod_tests::{per_version, Containerd};
use serde_json::{json, Value};

/// A host hook: appends what it sees to the log named by its second argument.
const HOST_HOOK: &str = r#"#!/bin/sh
state=$(cat)
pid=$(echo "$state" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
{
  echo "== $1"
  echo "state $state"
  echo "argv0 $0"
  echo "mnt $([ "$(readlink /proc/self/ns/mnt)" = "$HOST_MNT" ] && echo host || echo other)"
  echo "pidns $([ "$(readlink /proc/self/ns/pid)" = "$HOST_PID" ] && echo host || echo other)"
  echo "cwd-has-config $([ -f config.json ] && echo yes || echo no)"
  echo "cwd-has-busybox $([ -x bin/busybox ] && echo yes || echo no)"
  echo "env $(env | grep -vE '^(PWD|SHLVL|_|OLDPWD)=' | sort | tr '\n' ' ')"
  echo "uid $(id -u)"
  if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -e "/proc/$pid" ]; then
    echo "pid alive, its mnt $([ "$(readlink /proc/$pid/ns/mnt)" = "$HOST_MNT" ] && echo host || echo other)"
  else
    echo "pid gone"
  fi
} >> "$2"
"#;

/// The startContainer hook runs in the container, after pivot_root: busybox's sh.
const IN_CONTAINER_HOOK: &str = r#"{ echo "== startContainer"; echo "state $(cat)"; echo "argv0 $0"; echo "uid $(id -u)"; echo "env $(env | grep -vE '^(PWD|SHLVL|_|OLDPWD)=' | sort | tr '\n' ' ')"; } >> /hooks.log"#;

fn readlink(p: &str) -> String {
    fs::read_link(p)
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn write_host_hook(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).expect("hook dir");
    let hook = dir.join("hook.sh");
    fs::write(&hook, HOST_HOOK).expect("write hook");
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).expect("chmod hook");
    hook
}

fn host_hook(hook: &Path, name: &str, log: &Path) -> Value {
    json!({
        "path": hook,
        "args": [format!("{name}-argv0"), name, log],
        "env": [
            format!("HOST_MNT={}", readlink("/proc/self/ns/mnt")),
            format!("HOST_PID={}", readlink("/proc/self/ns/pid")),
            format!("HOOK={name}"),
        ],
        "timeout": 20,
    })
}

/// Every hook kind, host hooks logging to `log`, startContainer to the rootfs's /hooks.log.
fn all_hooks(hook: &Path, log: &Path) -> Value {
    json!({
        "prestart": [host_hook(hook, "prestart", log)],
        "createRuntime": [host_hook(hook, "createRuntime", log)],
        "createContainer": [host_hook(hook, "createContainer", log)],
        "startContainer": [{
            "path": "/bin/sh",
            "args": ["sh", "-c", IN_CONTAINER_HOOK],
            "env": ["IN=container"],
        }],
        "poststart": [host_hook(hook, "poststart", log)],
        "poststop": [host_hook(hook, "poststop", log)],
    })
}

/// Runs a container with every hook under `runtime`; the hook records, normalised, by hook.
fn hook_records(c: &Containerd, runtime: &str, id: &str) -> BTreeMap<String, Vec<String>> {
    let dir = c.dir().join("hooks").join(id);
    let hook = write_host_hook(&dir);
    let log = dir.join("log");
    // Alive long enough for poststart to see it (runc runs poststart before it starts;
    // mypod after, and in the slow cgroup2 test VM a hook's shell took over a second).
    let mut spec = c.config_spec(id, &["/bin/sh", "-c", "sleep 3; echo main ran"]);
    let root = PathBuf::from(spec["root"]["path"].as_str().expect("root.path"));
    spec["hooks"] = all_hooks(&hook, &log);
    spec["annotations"] = json!({ "org.example.hooks": "yes" });
    let file = c.write_spec_file(id, &serde_json::to_string_pretty(&spec).expect("JSON"));
    let out = c.ctr(&["run", "--rm", "--runtime", runtime, "--config", &file, id]);
    out.assert_success();
    assert!(out.stdout.contains("main ran"), "{out}");
    let mut text = fs::read_to_string(&log).unwrap_or_default();
    text.push_str(&fs::read_to_string(root.join("hooks.log")).unwrap_or_default());
    let mut records: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            current = name.to_string();
            records.entry(current.clone()).or_default();
            continue;
        }
        let line = match line.strip_prefix("state ") {
            Some(json) => normalise_state(json, id),
            None => line.replace(id, "ID"),
        };
        records.entry(current.clone()).or_default().push(line);
    }
    records
}

/// The state JSON with the id, the bundle and host pids made comparable.
fn normalise_state(json: &str, id: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(json) else {
        return format!("state (not JSON) {json}");
    };
    if let Some(pid) = v["pid"].as_i64() {
        if pid > 1 {
            v["pid"] = json!("HOST-PID");
        }
    }
    let bundle = v["bundle"].as_str().unwrap_or_default().to_string();
    v["bundle"] = json!(
        if bundle.ends_with(id) && Path::new(&bundle).is_absolute() {
            "BUNDLE/ID".to_string()
        } else {
            format!("unexpected bundle {bundle}")
        }
    );
    format!("state {}", v.to_string().replace(id, "ID"))
}

/// Hooks under mypod report what they report under runc: the same kinds, in the same
/// namespaces, with the same state, argv, env and working directory.
fn same_as_runc(c: &Containerd) {
    let runc = hook_records(c, RUNC_RUNTIME, "hooks-r");
    let mypod = hook_records(c, c.runtime(), "hooks-m");
    assert_eq!(
        runc.keys().collect::<Vec<_>>(),
        [
            "createContainer",
            "createRuntime",
            "poststart",
            "poststop",
            "prestart",
            "startContainer"
        ],
        "every hook ran under runc: {runc:#?}"
    );
    let mut differences = Vec::new();
    for (kind, want) in &runc {
        let got = mypod.get(kind).cloned().unwrap_or_default();
        for (w, g) in want.iter().zip(got.iter()) {
            if w != g && !allowed(kind, w, g) {
                differences.push(format!("{kind}:\n  runc:  {w}\n  mypod: {g}"));
            }
        }
        if want.len() != got.len() {
            differences.push(format!("{kind}: runc {want:#?}\nmypod {got:#?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "hooks differ from runc:\n{}\nmypod: {mypod:#?}",
        differences.join("\n")
    );
}

/// The allow-list:
/// - runc 1.1 runs the poststart hooks at the end of `runc create`, before the process has
///   started (state "created"); the runtime spec, and mypod, run them after the user's
///   process has started ("running").
/// - The state's ociVersion is the runtime-spec version the runtime implements: runc 1.1
///   says 1.0.2-dev, mypod 1.2.0 (the version of the oci-spec crate it is built on).
fn allowed(kind: &str, runc: &str, mypod: &str) -> bool {
    let runc = runc.replace(r#""ociVersion":"1.0.2-dev""#, r#""ociVersion":"1.2.0""#);
    if kind == "poststart" {
        return runc.replace(r#""status":"created""#, r#""status":"running""#) == mypod;
    }
    runc == mypod
}

fn same_as_runc_per_version(v: &str) {
    // runc's behaviour is the comparison: mypod without the sandbox defaults.
    let c = Containerd::builder(v).with_runc(true).compat(true).start();
    same_as_runc(&c);
}

mod same_as_runc {
    #[test]
    fn v1_6() {
        super::same_as_runc_per_version("v1_6");
    }
    #[test]
    fn v1_7() {
        super::same_as_runc_per_version("v1_7");
    }
    #[test]
    fn v2_1() {
        super::same_as_runc_per_version("v2_1");
    }
}

/// A spec with one failing or hanging hook of `kind`; the process would print "main ran".
fn one_hook(c: &Containerd, id: &str, kind: &str, hook: Value) -> Value {
    let mut spec = c.config_spec(id, &["/bin/sh", "-c", "echo main ran"]);
    spec["hooks"] = json!({ kind: [hook] });
    spec
}

fn failing(script: &str) -> Value {
    json!({ "path": "/bin/sh", "args": ["sh", "-c", script] })
}

/// Each failing hook fails its step, the error names the hook and shows its output, the
/// user's process never runs, and nothing is left behind.
fn failures_name_the_hook(c: &Containerd) {
    for (id, kind, hook, want) in [
        (
            "h-cr",
            "createRuntime",
            failing("echo no-network-for-you >&2; exit 3"),
            "createRuntime hook #0 (/bin/sh) failed: exit status 3: no-network-for-you",
        ),
        (
            "h-pre",
            "prestart",
            json!({ "path": "/bin/sh", "args": ["sh", "-c", "echo slow; sleep 60"], "timeout": 1 }),
            "prestart hook #0 (/bin/sh) timed out after 1s and was killed: slow",
        ),
        (
            "h-cc",
            "createContainer",
            failing("exit 4"),
            "createContainer hook #0 (/bin/sh) failed: exit status 4",
        ),
        (
            "h-sc",
            "startContainer",
            failing("echo not-today >&2; exit 5"),
            "startContainer hook #0 (/bin/sh) failed: exit status 5: not-today",
        ),
        (
            "h-ps",
            "poststart",
            failing("exit 6"),
            "poststart hook #0 (/bin/sh) failed: exit status 6",
        ),
        (
            "h-path",
            "createRuntime",
            json!({ "path": "/no/such/hook" }),
            "createRuntime hook #0 (/no/such/hook): start: No such file or directory",
        ),
    ] {
        let spec = one_hook(c, id, kind, hook);
        let out = c.run_config(id, &[], &spec);
        out.assert_failure();
        assert!(
            out.stderr.contains(want),
            "{kind}: the error should say {want:?}:\n{out}"
        );
        assert!(
            out.elapsed < Duration::from_secs(15),
            "{kind}: fails at once"
        );
        if kind != "poststart" {
            assert!(
                !out.stdout.contains("main ran"),
                "{kind}: the process must not run:\n{out}"
            );
        }
        c.assert_clean(id);
    }
    // A relative hook path is refused at Create, naming the field.
    let spec = one_hook(c, "h-rel", "poststop", json!({ "path": "hook.sh" }));
    let out = c.run_config("h-rel", &[], &spec);
    out.assert_failure();
    assert!(
        out.stderr
            .contains(r#"config.json: hooks.poststop[0].path: "hook.sh" is not an absolute path"#),
        "{out}"
    );
    c.assert_clean("h-rel");
}
per_version!(failures_name_the_hook);

/// A failing poststop hook is warned about (runtime spec), the delete still succeeds and the
/// next poststop hook still runs.
fn failing_poststop_only_warns(c: &Containerd) {
    let id = "h-stop";
    let marker = c.dir().join("poststop-ran");
    let mut spec = c.config_spec(id, &["/bin/sh", "-c", "echo main ran"]);
    spec["hooks"] = json!({ "poststop": [
        failing("echo stop-failed >&2; exit 7"),
        { "path": "/bin/sh", "args": ["sh", "-c", format!("touch {}", marker.display())] },
    ] });
    let out = c.run_config(id, &[], &spec);
    out.assert_success();
    assert!(out.stdout.contains("main ran"), "{out}");
    assert!(marker.exists(), "the second poststop hook ran");
    c.assert_clean(id);
    let log = c.log_tail(400);
    assert!(
        log.contains("poststop hook #0 (/bin/sh) failed: exit status 7: stop-failed"),
        "the shim log warns about the failed hook:\n{log}"
    );
}
per_version!(failing_poststop_only_warns);

/// A poststop hook that takes its time holds up only its own container's Delete: the
/// pod's shim keeps serving the pod's other containers meanwhile (an exec into a sibling
/// completes while the hook is known to be still running, because it waits for a file
/// that the test creates only afterwards).
fn slow_poststop_holds_only_its_own_delete(c: &Containerd) {
    if !c.is_mypod() {
        return; // runc-v2 runs a shim per container here: nothing shared to hold up.
    }
    let group = "io.containerd.runc.v2.group";
    c.run_detached(
        "sib",
        &["--annotation", &format!("{group}=hookpod")],
        &["sleep", "1000"],
    );
    c.wait_task_status("sib", "RUNNING", Duration::from_secs(20));
    let shims = c.shim_pids();

    let started = c.dir().join("poststop-started");
    let release = c.dir().join("poststop-release");
    let id = "h-slow";
    let mut spec = c.config_spec(id, &["/bin/sh", "-c", "exit 0"]);
    spec["annotations"] = json!({ group: "hookpod" });
    let wait = format!(
        "touch {}; while [ ! -e {} ]; do sleep 0.05; done",
        started.display(),
        release.display()
    );
    spec["hooks"] = json!({ "poststop": [
        { "path": "/bin/sh", "args": ["sh", "-c", wait], "timeout": 120 },
    ] });
    let file = c.write_spec_file(id, &spec.to_string());
    c.ctr_ok(&["run", "-d", "--runtime", c.runtime(), "--config", &file, id]);
    c.wait_task_status(id, "STOPPED", Duration::from_secs(20));
    assert_eq!(c.shim_pids(), shims, "one shim serves the pod");

    let deleting = {
        let mut cmd = c.ctr_command(&["tasks", "delete", id]);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.spawn().expect("ctr tasks delete")
    };
    struct Release<'a>(&'a Path, std::process::Child);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            let _ = fs::write(self.0, "");
            let _ = self.1.wait();
        }
    }
    let mut deleting = Release(&release, deleting);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the poststop hook never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let exec = c.ctr_timeout(
        &["tasks", "exec", "--exec-id", "e1", "sib", "echo", "served"],
        Duration::from_secs(20),
    );
    assert_eq!(exec.stdout.trim(), "served", "{exec}");
    assert_eq!(c.task("sib").map(|t| t.status), Some("RUNNING".into()));
    assert!(
        !release.exists() && deleting.1.try_wait().ok().flatten().is_none(),
        "the delete was still waiting for its hook while the sibling was served"
    );
    fs::write(&release, "").expect("release the hook");
    let status = deleting.1.wait().expect("ctr tasks delete");
    assert!(status.success(), "the delete completes once its hook does");
    drop(deleting);
    c.remove_container(id);
    c.kill_and_remove("sib");
    c.assert_clean(id);
    c.assert_clean("sib");
}
per_version!(slow_poststop_holds_only_its_own_delete);
