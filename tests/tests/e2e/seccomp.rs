//! `linux.seccomp`: containerd's default profile (`ctr run --seccomp`), custom profiles
//! (`--seccomp-profile`) with errno returns and argument conditions, the filter without
//! no_new_privs (loaded while still privileged) and in exec'd processes, and profiles the
//! runtime must refuse. Every test also passes with `MYPOD_TEST_RUNTIME=runc`.

use std::time::Duration;

use mypod_tests::{per_version, procfs, Containerd};
use serde_json::{json, Value};

/// Prints the seccomp and no_new_privs lines of /proc/self/status.
const STATUS: &str = "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status";

fn field<'a>(out: &'a str, name: &str) -> &'a str {
    procfs::status_field(out, name).unwrap_or_else(|| panic!("no {name}: in:\n{out}"))
}

/// Writes `profile` as a file for `--seccomp-profile`; returns its path.
fn profile_file(c: &Containerd, id: &str, profile: &Value) -> String {
    c.write_spec_file(
        &format!("{id}-seccomp"),
        &serde_json::to_string_pretty(profile).expect("profile to JSON"),
    )
}

/// (a) `ctr run --seccomp`: containerd's default profile is in force (one filter, mode 2)
/// and denies a syscall the kernel would otherwise allow: `unshare -U` (a user namespace
/// needs no capability) fails with EPERM under the profile (unshare needs CAP_SYS_ADMIN
/// there) and works without it.
fn default_profile(c: &Containerd) {
    let script = format!("{STATUS}; unshare -U true 2>&1; echo unshare=$?");
    let out = c.run("dflt", &["--seccomp"], &["/bin/sh", "-c", &script]);
    assert_eq!(out.exit_code(), 0, "{out}");
    assert_eq!(field(&out.stdout, "Seccomp"), "2", "{out}");
    assert_eq!(field(&out.stdout, "Seccomp_filters"), "1", "{out}");
    assert_eq!(field(&out.stdout, "NoNewPrivs"), "1", "{out}");
    assert!(
        out.stdout.contains("Operation not permitted") && !out.stdout.contains("unshare=0"),
        "the default profile must deny unshare with EPERM:\n{out}"
    );
    c.assert_clean("dflt");

    let out = c.run("none", &[], &["/bin/sh", "-c", &script]);
    assert_eq!(out.exit_code(), 0, "{out}");
    assert_eq!(field(&out.stdout, "Seccomp"), "0", "{out}");
    assert!(
        out.stdout.contains("unshare=0"),
        "without seccomp, unshare -U works here (so the profile made the difference):\n{out}"
    );
    c.assert_clean("none");
}
/// Without the sandbox defaults: the "none" case needs a container with no filter at all,
/// which mypod's defaults (`[sandbox] seccomp = "default"`) do not give.
fn compat(b: mypod_tests::containerd::Builder) -> mypod_tests::containerd::Builder {
    b.compat(true)
}
per_version!(default_profile with compat);

/// A profile that allows everything except: mkdir/mkdirat → EXDEV (18); chmod/fchmodat
/// with mode 0777 or 0700 (the same argument twice: ORed, as runc does) → ETXTBSY (26);
/// chmod/fchmodat with the setuid bit (SCMP_CMP_MASKED_EQ) → ETXTBSY; a name no kernel
/// has (skipped, not an error).
fn custom_profile() -> Value {
    let mode_rules = |name: &str, index: u32| {
        vec![
            json!({
                "names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": 26,
                "args": [
                    { "index": index, "value": 0o777, "op": "SCMP_CMP_EQ" },
                    { "index": index, "value": 0o700, "op": "SCMP_CMP_EQ" },
                ],
            }),
            json!({
                "names": [name], "action": "SCMP_ACT_ERRNO", "errnoRet": 26,
                "args": [{ "index": index, "value": 0o7000, "valueTwo": 0o4000,
                           "op": "SCMP_CMP_MASKED_EQ" }],
            }),
        ]
    };
    let mut syscalls = vec![
        json!({ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18 }),
        json!({ "names": ["no_such_syscall_mypod"], "action": "SCMP_ACT_KILL" }),
    ];
    syscalls.extend(mode_rules("chmod", 1));
    syscalls.extend(mode_rules("fchmodat", 2));
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls,
    })
}

/// What `custom_profile` does to a shell: each probe prints its error and `NAME=STATUS`.
const PROBES: &str = "mkdir /tmp/d 2>&1; echo mkdir=$?; touch /tmp/f; echo touch=$?; \
                      for m in 777 700 755 4755 2755; do chmod $m /tmp/f 2>&1; echo chmod$m=$?; done";

fn assert_custom_profile_applies(out: &mypod_tests::Output) {
    assert_eq!(out.exit_code(), 0, "{out}");
    let s = &out.stdout;
    assert_eq!(field(s, "Seccomp"), "2", "{out}");
    assert_eq!(field(s, "Seccomp_filters"), "1", "{out}");
    assert!(
        s.contains("Invalid cross-device link") && s.contains("mkdir=1"),
        "mkdir must fail with errnoRet 18 (EXDEV):\n{out}"
    );
    assert!(s.contains("touch=0"), "the default action allows:\n{out}");
    for (mode, denied) in [
        ("777", true),
        ("700", true),
        ("755", false),
        ("4755", true),
        ("2755", false),
    ] {
        let want = if denied { "=1" } else { "=0" };
        assert!(
            s.contains(&format!("chmod{mode}{want}")),
            "chmod {mode} should {} :\n{out}",
            if denied { "fail" } else { "work" }
        );
    }
    assert!(
        s.contains("Text file busy"),
        "a denied chmod fails with errnoRet 26 (ETXTBSY):\n{out}"
    );
}

/// (b) `ctr run --seccomp --seccomp-profile FILE`: a custom profile with an errnoRet, argument
/// conditions (EQ twice on one argument = OR; MASKED_EQ) and an unknown syscall name.
fn custom_profile_via_ctr(c: &Containerd) {
    let file = profile_file(c, "cust", &custom_profile());
    let script = format!("{STATUS}; {PROBES}");
    let out = c.run(
        "cust",
        &["--seccomp", "--seccomp-profile", &file],
        &["/bin/sh", "-c", &script],
    );
    assert_custom_profile_applies(&out);
    assert_eq!(field(&out.stdout, "NoNewPrivs"), "1", "{out}");
    c.assert_clean("cust");
}
per_version!(custom_profile_via_ctr);

/// Without process.noNewPrivileges the filter is loaded while the process is still
/// privileged (before the user switch and the capability drop), and applies all the same,
/// also to a non-root user.
fn profile_without_no_new_privs(c: &Containerd) {
    let script = format!("{STATUS}; {PROBES}");
    for (id, user) in [("nnp0", 0), ("nnp1000", 1000)] {
        let mut spec = c.config_spec(id, &["/bin/sh", "-c", &script]);
        spec["process"]["noNewPrivileges"] = json!(false);
        spec["process"]["user"] = json!({ "uid": user, "gid": user });
        spec["linux"]["seccomp"] = custom_profile();
        let out = c.run_config(id, &[], &spec);
        if user == 0 {
            assert_custom_profile_applies(&out);
        } else {
            // Not root: chmod of its own file still goes through the filter; mkdir too.
            assert_eq!(out.exit_code(), 0, "{out}");
            assert_eq!(field(&out.stdout, "Seccomp"), "2", "{out}");
            assert!(
                out.stdout.contains("Invalid cross-device link"),
                "mkdir must fail with EXDEV for uid {user} too:\n{out}"
            );
        }
        assert_eq!(field(&out.stdout, "NoNewPrivs"), "0", "{out}");
        c.assert_clean(id);
    }
}
per_version!(profile_without_no_new_privs);

/// A process exec'd into a container with a profile gets the same filter.
fn exec_gets_the_filter(c: &Containerd) {
    let file = profile_file(c, "ex", &custom_profile());
    c.run_detached(
        "ex",
        &["--seccomp", "--seccomp-profile", &file],
        &["sleep", "1000"],
    );
    c.wait_task_status("ex", "RUNNING", Duration::from_secs(20));
    let script = format!("{STATUS}; mkdir /tmp/e 2>&1; echo mkdir=$?");
    let out = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "probe",
        "ex",
        "/bin/sh",
        "-c",
        &script,
    ]);
    assert_eq!(out.exit_code(), 0, "{out}");
    assert_eq!(field(&out.stdout, "Seccomp"), "2", "{out}");
    assert_eq!(field(&out.stdout, "Seccomp_filters"), "1", "{out}");
    assert!(
        out.stdout.contains("Invalid cross-device link") && out.stdout.contains("mkdir=1"),
        "the exec'd process must be filtered:\n{out}"
    );
    c.kill_and_remove("ex");
    c.assert_clean("ex");
}
per_version!(exec_gets_the_filter);

/// (c) Profiles the runtime refuses, with an error naming what is wrong, leaving nothing
/// behind: an unknown action, and SCMP_ACT_NOTIFY with a listenerPath (mypod has no
/// seccomp-agent support; runc fails to reach the agent).
fn bad_profiles_are_refused(c: &Containerd) {
    let bogus = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_BOGUS" }],
    });
    let file = profile_file(c, "bogus", &bogus);
    let out = c.run(
        "bogus",
        &["--seccomp", "--seccomp-profile", &file],
        &["/bin/true"],
    );
    out.assert_failure();
    assert!(
        out.stderr.contains("SCMP_ACT_BOGUS"),
        "the error should name the action:\n{out}"
    );
    if c.is_mypod() {
        assert!(
            out.stderr.contains("linux.seccomp.syscalls[0].action"),
            "the error should name the field:\n{out}"
        );
    }
    c.assert_clean("bogus");

    let socket = c.dir().join("no-agent.sock");
    let notify = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket,
        "syscalls": [{ "names": ["mkdir"], "action": "SCMP_ACT_NOTIFY" }],
    });
    let file = profile_file(c, "notify", &notify);
    let out = c.run(
        "notify",
        &["--seccomp", "--seccomp-profile", &file],
        &["/bin/true"],
    );
    out.assert_failure();
    let want = if c.is_mypod() {
        "linux.seccomp.listenerPath is not supported".to_string()
    } else {
        socket.display().to_string()
    };
    assert!(
        out.stderr.contains(&want),
        "the error should name {want}:\n{out}"
    );
    c.assert_clean("notify");
}
per_version!(bad_profiles_are_refused);
