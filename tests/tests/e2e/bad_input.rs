//! Issue 2: bad input fails fast with an error that names the problem, through ctr, and leaves
//! no task, container, shim, process, mount or cgroup behind.

use std::path::Path;
use std::time::Duration;

use mypod_tests::{per_version, Containerd};
use serde_json::json;

/// (j) A missing executable fails at once and the error names it.
fn missing_executable(c: &Containerd) {
    let out = c.run("nope", &[], &["/bin/nope"]);
    out.assert_failure();
    assert!(
        out.elapsed < Duration::from_secs(10),
        "a missing executable must fail fast:\n{out}"
    );
    assert!(
        out.stderr.contains("/bin/nope"),
        "the error should name /bin/nope:\n{out}"
    );
    c.assert_clean("nope");
}
per_version!(missing_executable);

/// (j) A relative command that is not on the image's PATH fails and names the command.
fn command_not_on_path(c: &Containerd) {
    let out = c.run("nocmd", &[], &["no-such-command"]);
    out.assert_failure();
    assert!(
        out.stderr.contains("no-such-command"),
        "the error should name the command:\n{out}"
    );
    c.assert_clean("nocmd");
}
per_version!(command_not_on_path);

/// (j) A spec file that is not valid JSON, or has a string where a number belongs, is refused
/// by ctr itself before any container exists.
fn broken_spec_file_is_refused(c: &Containerd) {
    let file = c.write_spec_file("broken", "{\"ociVersion\": \"1.0.2\", \"process\": {");
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        c.runtime(),
        "--config",
        &file,
        "broken",
    ]);
    out.assert_failure();
    assert!(
        out.stderr.contains("JSON"),
        "ctr should say the JSON is broken:\n{out}"
    );

    let mut spec = c.config_spec("typed", &["/bin/true"]);
    spec["process"]["user"]["uid"] = json!("zero");
    let out = c.run_config("typed", &[], &spec);
    out.assert_failure();
    assert!(
        out.stderr.contains("uid"),
        "ctr should name the bad field:\n{out}"
    );
    assert!(
        c.containers().is_empty(),
        "no container may exist: {:?}",
        c.containers()
    );
    c.assert_clean("broken");
    c.assert_clean("typed");
}
per_version!(broken_spec_file_is_refused);

/// (j) A spec that ctr and containerd accept but the runtime cannot use (an rlimit type that
/// does not exist) is refused by the runtime, with an error naming the bad value.
fn unknown_rlimit_in_spec(c: &Containerd) {
    let mut spec = c.config_spec("rlimit", &["/bin/true"]);
    spec["process"]["rlimits"] = json!([{ "type": "RLIMIT_BOGUS", "soft": 1, "hard": 1 }]);
    let out = c.run_config("rlimit", &[], &spec);
    out.assert_failure();
    assert!(
        out.stderr.contains("RLIMIT_BOGUS"),
        "the error should name RLIMIT_BOGUS:\n{out}"
    );
    c.assert_clean("rlimit");
}
per_version!(unknown_rlimit_in_spec);

/// (j) Joining a namespace whose path does not exist (no pid can be 999999999: pid_max is at
/// most 2^22).
fn missing_namespace_path(c: &Containerd) {
    let ns = "/proc/999999999/ns/net";
    assert!(!Path::new(ns).exists());
    let out = c.run(
        "nons",
        &["--with-ns", &format!("network:{ns}")],
        &["/bin/true"],
    );
    out.assert_failure();
    assert!(
        out.stderr.contains(ns),
        "the error should name {ns}:\n{out}"
    );
    c.assert_clean("nons");
}
per_version!(missing_namespace_path);

/// (j) A bind mount whose source does not exist.
fn missing_bind_source(c: &Containerd) {
    let src = "/nonexistent-mypod-test-source";
    assert!(!Path::new(src).exists());
    let mount = format!("type=bind,src={src},dst=/x,options=rbind:ro");
    let out = c.run("nosrc", &["--mount", &mount], &["/bin/true"]);
    out.assert_failure();
    assert!(
        out.stderr.contains(src),
        "the error should name {src}:\n{out}"
    );
    c.assert_clean("nosrc");
}
per_version!(missing_bind_source);

/// (j) A cwd that does not exist is created, as runc does (Kubernetes workingDir relies on it);
/// a cwd that cannot be created is a clear error (`cwd_is_a_file`).
fn missing_cwd(c: &Containerd) {
    let out = c.run(
        "nocwd",
        &["--cwd", "/does/not/exist"],
        &["/bin/sh", "-c", "pwd"],
    );
    out.assert_success();
    assert_eq!(out.stdout, "/does/not/exist\n", "{out}");
    c.assert_clean("nocwd");
}
per_version!(missing_cwd);

/// (j) A cwd that is a regular file cannot be made a directory: a clear error.
fn cwd_is_a_file(c: &Containerd) {
    let out = c.run(
        "filecwd",
        &["--cwd", "/etc/passwd"],
        &["/bin/sh", "-c", "pwd"],
    );
    out.assert_failure();
    assert!(
        out.stderr.contains("/etc/passwd"),
        "the error should name the cwd:\n{out}"
    );
    c.assert_clean("filecwd");
}
per_version!(cwd_is_a_file);

/// (j) A failed start does not poison the instance: the next container runs.
fn works_after_failures(c: &Containerd) {
    c.run("f1", &[], &["/bin/nope"]).assert_failure();
    c.run("f2", &["--cwd", "/etc/passwd"], &["/bin/true"])
        .assert_failure();
    let out = c.run("ok", &[], &["/bin/sh", "-c", "echo fine"]);
    assert_eq!(
        (out.exit_code(), out.stdout.as_str()),
        (0, "fine\n"),
        "{out}"
    );
    for id in ["f1", "f2", "ok"] {
        c.assert_clean(id);
    }
}
per_version!(works_after_failures);

/// Issue 13: an id that set*id(2) would read as "unchanged" ((uid_t)-1 = 4294967295) or any
/// id above 2^31-1 is refused, naming the field, wherever it would reach the kernel: the
/// process's uid, gid and additional gids, the user namespace's maps, an idmapped mount's
/// maps, and an exec's user. Before the fix uid 4294967295 ran the container as root.
fn out_of_range_ids_are_refused(c: &Containerd) {
    let minus_one = json!(4294967295u32);
    let userns = |spec: &mut serde_json::Value, uid_host: serde_json::Value| {
        spec["linux"]["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "user"}));
        spec["linux"]["uidMappings"] =
            json!([{"containerID": 0, "hostID": uid_host, "size": 65536}]);
        spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    };
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, &str, Edit)> = vec![
        ("uid", "process.user.uid", {
            let v = minus_one.clone();
            Box::new(move |s| s["process"]["user"]["uid"] = v.clone())
        }),
        ("gid", "process.user.gid", {
            let v = minus_one.clone();
            Box::new(move |s| s["process"]["user"]["gid"] = v.clone())
        }),
        ("uid-2-31", "process.user.uid", {
            Box::new(|s| s["process"]["user"]["uid"] = json!(2147483648u32))
        }),
        ("groups", "process.user.additionalGids[1]", {
            let v = minus_one.clone();
            Box::new(move |s| s["process"]["user"]["additionalGids"] = json!([10, v.clone()]))
        }),
        ("userns", "linux.uidMappings[0].hostID", {
            Box::new(move |s| userns(s, json!(4294901760u32)))
        }),
        ("idmap", "mounts[", {
            Box::new(|s| {
                s["mounts"].as_array_mut().unwrap().push(json!({
                    "destination": "/idm", "type": "bind", "source": "/tmp",
                    "options": ["rbind", "idmap"],
                    "uidMappings": [{"containerID": 0, "hostID": 4294967295u32, "size": 1}],
                    "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                }))
            })
        }),
    ];
    for (id, field, edit) in &cases {
        let mut spec = c.config_spec(id, &["/bin/sh", "-c", "id -u; id -G"]);
        edit(&mut spec);
        let out = c.run_config(id, &[], &spec);
        out.assert_failure();
        assert!(
            out.stderr.contains(field) && out.stderr.contains("0-2147483647"),
            "{id}: the error should name {field} and the valid range:\n{out}"
        );
        c.assert_clean(id);
    }

    // An exec's user, the way an image's USER reaches it: a name that the container's
    // /etc/passwd maps to 4294967295 (ctr resolves it there).
    let passwd = "echo 'evil:x:4294967295:0::/:/bin/sh' >> /etc/passwd && exec sleep 600";
    c.run_detached("host", &[], &["/bin/sh", "-c", passwd]);
    let written = (0..50).any(|i| {
        let e = format!("check{i}");
        let grep = [
            "tasks",
            "exec",
            "--exec-id",
            &e,
            "host",
            "grep",
            "-q",
            "evil",
            "/etc/passwd",
        ];
        c.ctr(&grep).success() || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(written, "the container never wrote its /etc/passwd");
    let out = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "root",
        "--user",
        "evil",
        "host",
        "id",
        "-u",
    ]);
    out.assert_failure();
    assert!(
        out.stderr.contains("process.user.uid") && out.stderr.contains("0-2147483647"),
        "the exec's error should name process.user.uid:\n{out}"
    );
    assert!(!out.stdout.contains('0'), "the exec ran:\n{out}");
    // The container is untouched and still serves execs.
    let out = c.ctr(&["tasks", "exec", "--exec-id", "ok", "host", "id", "-u"]);
    assert_eq!((out.exit_code(), out.stdout.as_str()), (0, "0\n"), "{out}");
    c.kill_and_remove("host");
    c.assert_clean("host");
}
per_version!(out_of_range_ids_are_refused);

/// A spec whose cgroupsPath names another container's cgroup is refused, and that container
/// lives on: the refused create used to take the cgroup as its own, and a failed create or
/// a delete kills everything in its cgroup (the host's `containerd.service`, say).
fn a_cgroup_in_use_is_refused_and_left_alone(c: &Containerd) {
    c.run_detached("owner", &[], &["sleep", "600"]);
    c.wait_task_status("owner", "RUNNING", Duration::from_secs(10));
    let mut spec = c.config_spec("squatter", &["/bin/true"]);
    spec["linux"]["cgroupsPath"] = json!(format!("/{}/owner", c.namespace()));
    let out = c.run_config("squatter", &[], &spec);
    out.assert_failure();
    assert!(
        out.stderr.contains("already has processes"),
        "ctr should say the cgroup is in use:\n{out}"
    );
    let owner = c.task("owner").map(|t| t.status);
    assert_eq!(
        owner.as_deref(),
        Some("RUNNING"),
        "the cgroup's owner was hurt"
    );
    c.kill_and_remove("owner");
    c.assert_clean("owner");
    c.assert_clean("squatter");
}
per_version!(a_cgroup_in_use_is_refused_and_left_alone);
