//! runtime.toml reaches the shim through containerd's runtime options (ctr's
//! `--runtime-config-path`, CRI's ConfigPath); a bad file fails the start naming the key.

use mypod_tests::{per_version, Containerd};

fn shipped_config_is_accepted(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime.toml");
    let flag = c.runtime_config_flag(
        "runtime.toml",
        &std::fs::read_to_string(shipped).expect("runtime.toml"),
    );
    let out = c.run("cfg", &[&flag], &["/bin/sh", "-c", "echo configured"]);
    assert_eq!(out.stdout, "configured\n", "{out}");
    assert_eq!(out.exit_code(), 0, "{out}");
    c.assert_clean("cfg");
}
per_version!(shipped_config_is_accepted);

fn bad_config_names_the_key(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let flag = c.runtime_config_flag("bad.toml", "[container]\nsetup_timout = 5\n");
    let out = c.run("badcfg", &[&flag], &["/bin/true"]);
    out.assert_failure();
    assert!(
        out.stderr.contains("setup_timout") && out.stderr.contains("bad.toml"),
        "the error should name the key and the file:\n{out}"
    );
    c.assert_clean("badcfg");
    // The instance still runs containers afterwards.
    let ok = c.run("aftercfg", &[], &["/bin/true"]);
    assert_eq!(ok.exit_code(), 0, "{ok}");
}
per_version!(bad_config_names_the_key);

/// The server `start` forks gets the configuration `start` read: with `setup_timeout = 1`
/// a container whose setup takes 4 s (a createContainer hook, which runs before the
/// process reports Ready) fails after about a second; the default (120 s) would let it
/// start.
fn setup_timeout_reaches_the_server(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let flag = c.runtime_config_flag("short.toml", "[container]\nsetup_timeout = 1\n");
    let mut spec = c.config_spec("slowsetup", &["/bin/true"]);
    spec["hooks"] = serde_json::json!({
        "createContainer": [{ "path": "/bin/sleep", "args": ["sleep", "4"] }]
    });
    let began = std::time::Instant::now();
    let out = c.run_config("slowsetup", &[&flag], &spec);
    let took = began.elapsed();
    out.assert_failure();
    assert!(
        took < std::time::Duration::from_millis(3500),
        "setup_timeout = 1 was not applied: the failure took {took:?}\n{out}"
    );
    c.assert_clean("slowsetup");
}
per_version!(setup_timeout_reaches_the_server);

/// `debug = true` turns the shim's debug log on although containerd (at level info here)
/// does not pass `-debug`: the shim's per-RPC debug lines reach containerd's log only then.
fn debug_key_turns_on_the_debug_log(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let log = || std::fs::read_to_string(c.dir().join("containerd.log")).unwrap_or_default();
    // The shim's lines reach containerd's log through a FIFO, a moment after the fact.
    let logged = |needle: &str| {
        (0..100).any(|_| {
            log().contains(needle) || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                false
            }
        })
    };
    let out = c.run("quiet", &[], &["/bin/true"]);
    assert_eq!(out.exit_code(), 0, "{out}");
    c.assert_clean("quiet");
    // Start's info line comes after every debug line Create would have logged.
    assert!(
        logged("started container quiet"),
        "the shim's info lines must reach the log:\n{}",
        c.log_tail(30)
    );
    assert!(
        !log().contains("create id=quiet"),
        "without debug = true the shim must not log at debug level:\n{}",
        c.log_tail(30)
    );
    let flag = c.runtime_config_flag("debug.toml", "debug = true\n");
    let out = c.run("loud", &[&flag], &["/bin/true"]);
    assert_eq!(out.exit_code(), 0, "{out}");
    c.assert_clean("loud");
    assert!(
        logged("create id=loud"),
        "debug = true must turn on the shim's debug lines:\n{}",
        c.log_tail(30)
    );
}
per_version!(debug_key_turns_on_the_debug_log with info_level);

fn info_level(b: mypod_tests::containerd::Builder) -> mypod_tests::containerd::Builder {
    b.log_level("info")
}

/// `[sandbox] seccomp = "default"`: a spec without linux.seccomp runs under mypod's profile
/// (filter mode 2; a new user namespace and a mount are refused), and so do its execs, while
/// ordinary work goes on. The key's absence is the same (the built-in default); with
/// `seccomp = "off"` there is no filter.
fn default_seccomp_profile_applies_to_specs_without_one(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let script = "grep '^Seccomp:' /proc/self/status; \
                  unshare -U true 2>/dev/null && echo userns=yes || echo userns=no; \
                  mount -t tmpfs t /mnt 2>/dev/null && echo mount=yes || echo mount=no; \
                  echo work | sed s/work/done/";
    let flag = c.runtime_config_flag("seccomp.toml", "[sandbox]\nseccomp = \"default\"\n");
    let out = c.run("sc", &[&flag], &["/bin/sh", "-c", script]);
    assert_eq!(out.exit_code(), 0, "{out}");
    for want in ["Seccomp:\t2", "userns=no", "mount=no", "done"] {
        assert!(out.stdout.contains(want), "want {want:?}:\n{out}");
    }
    c.assert_clean("sc");

    c.run_detached("scx", &[&flag], &["sleep", "600"]);
    let out = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e",
        "scx",
        "grep",
        "^Seccomp:",
        "/proc/self/status",
    ]);
    assert!(
        out.stdout.contains("Seccomp:\t2"),
        "an exec runs under the container's profile:\n{out}"
    );
    c.kill_and_remove("scx");
    c.assert_clean("scx");

    let out = c.run("dfltsc", &[], &["/bin/sh", "-c", script]);
    assert_eq!(out.exit_code(), 0, "{out}");
    for want in ["Seccomp:\t2", "userns=no", "mount=no", "done"] {
        assert!(
            out.stdout.contains(want),
            "without the key: want {want:?}:\n{out}"
        );
    }
    c.assert_clean("dfltsc");

    let flag = c.runtime_config_flag("nosc.toml", "[sandbox]\nseccomp = \"off\"\n");
    let out = c.run("nosc", &[&flag], &["/bin/sh", "-c", script]);
    assert_eq!(out.exit_code(), 0, "{out}");
    assert!(
        out.stdout.contains("Seccomp:\t0") && out.stdout.contains("mount=no"),
        "seccomp = \"off\": no filter (mount still fails: no CAP_SYS_ADMIN):\n{out}"
    );
    c.assert_clean("nosc");
}
per_version!(default_seccomp_profile_applies_to_specs_without_one);

/// `[sandbox] host_access = "refuse"` (the built-in default, so no configuration is passed):
/// a privileged container and one that shares the host's network namespace fail at Create
/// with an error naming what was asked and the key; an ordinary container runs. With
/// "allow" the privileged one runs.
fn host_access_refuse_names_what_was_asked(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    for (id, extra, what) in [
        ("priv", "--privileged", "privileged"),
        ("hostnet", "--net-host", "network namespace"),
    ] {
        let out = c.run(id, &[extra], &["/bin/true"]);
        out.assert_failure();
        assert!(
            out.stderr.contains(what) && out.stderr.contains("host_access"),
            "{id}: the error should name {what:?} and host_access:\n{out}"
        );
        c.assert_clean(id);
    }
    let out = c.run("plain", &[], &["/bin/sh", "-c", "echo fine"]);
    assert_eq!(
        (out.exit_code(), out.stdout.as_str()),
        (0, "fine\n"),
        "{out}"
    );
    c.assert_clean("plain");
    let flag = c.runtime_config_flag("allow.toml", "[sandbox]\nhost_access = \"allow\"\n");
    let out = c.run("privok", &[&flag, "--privileged"], &["/bin/true"]);
    assert_eq!(out.exit_code(), 0, "{out}");
    c.assert_clean("privok");
}
per_version!(host_access_refuse_names_what_was_asked);
