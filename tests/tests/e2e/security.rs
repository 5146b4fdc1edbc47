//! Issue 2: isolation the default spec asks for: read-only rootfs, capability sets,
//! no_new_privs, masked and read-only paths. Issue 13: the shim's binary is read-only
//! from inside a container.

use std::time::Duration;

use mypod_tests::caps::{self, DEFAULT_MASK};
use mypod_tests::ctr::{host_has, host_status_field};
use mypod_tests::{per_version, procfs, Containerd};

/// (d) --read-only: the rootfs (and /tmp, which the default spec does not mount) refuse writes;
/// the tmpfs mounts of the default spec (/run, /dev/shm) still take them. Without the flag the
/// rootfs is writable.
fn read_only_rootfs(c: &Containerd) {
    let script = "touch /x 2>&1; echo root=$?; touch /tmp/x 2>&1; echo tmp=$?; \
                  touch /run/x && echo run=$?; touch /dev/shm/x && echo shm=$?; \
                  grep ' / / ' /proc/self/mountinfo";
    let out = c.run("ro", &["--read-only"], &["/bin/sh", "-c", script]);
    assert_eq!(out.exit_code(), 0, "{out}");
    assert!(
        out.stdout.contains("Read-only file system"),
        "touch /x should fail with EROFS:\n{out}"
    );
    assert!(out.stdout.contains("root=1"), "touch /x must fail:\n{out}");
    assert!(
        out.stdout.contains("tmp=1"),
        "/tmp is part of the read-only rootfs:\n{out}"
    );
    assert!(
        out.stdout.contains("run=0"),
        "/run is a tmpfs and writable:\n{out}"
    );
    assert!(
        out.stdout.contains("shm=0"),
        "/dev/shm is a tmpfs and writable:\n{out}"
    );
    let root_line = out
        .stdout
        .lines()
        .find(|l| l.contains(" / / "))
        .expect("mountinfo line for /");
    let opts = root_line.split_whitespace().nth(5).unwrap_or("");
    assert!(
        opts.split(',').any(|o| o == "ro"),
        "/ must be mounted ro: {root_line}"
    );

    let out = c.run("rw", &[], &["/bin/sh", "-c", "touch /x && echo ok"]);
    assert_eq!(
        (out.exit_code(), out.stdout.as_str()),
        (0, "ok\n"),
        "a default rootfs is writable:\n{out}"
    );
    c.assert_clean("rw");
}
per_version!(read_only_rootfs);

fn parse_caps(text: &str) -> [u64; 5] {
    let field = |name: &str| {
        let v = procfs::status_field(text, name).unwrap_or_else(|| panic!("no {name} in:\n{text}"));
        caps::parse_hex(v)
    };
    [
        field("CapInh"),
        field("CapPrm"),
        field("CapEff"),
        field("CapBnd"),
        field("CapAmb"),
    ]
}

/// (e) In the container, the default spec's 14 capabilities in the permitted, effective and
/// bounding sets, none inheritable or ambient, and no_new_privs set — as `ctr oci spec` says.
fn default_capabilities(c: &Containerd) {
    let spec = c.default_spec();
    let want_bnd = caps::spec_mask(&spec, "bounding");
    assert_eq!(
        want_bnd,
        DEFAULT_MASK,
        "this version's default spec changed: {:?}",
        caps::names_of(want_bnd)
    );
    let out = c.run("caps", &[], &["/bin/sh", "-c", "cat /proc/self/status"]);
    assert_eq!(out.exit_code(), 0, "{out}");
    let [inh, prm, eff, bnd, amb] = parse_caps(&out.stdout);
    let show = |m: u64| format!("{m:016x} {:?}", caps::names_of(m));
    assert_eq!(
        bnd,
        want_bnd,
        "CapBnd {} vs spec {}",
        show(bnd),
        show(want_bnd)
    );
    assert_eq!(
        prm,
        caps::spec_mask(&spec, "permitted"),
        "CapPrm {}",
        show(prm)
    );
    assert_eq!(
        eff,
        caps::spec_mask(&spec, "effective"),
        "CapEff {}",
        show(eff)
    );
    assert_eq!(
        inh,
        caps::spec_mask(&spec, "inheritable"),
        "CapInh {}",
        show(inh)
    );
    assert_eq!(
        amb,
        caps::spec_mask(&spec, "ambient"),
        "CapAmb {}",
        show(amb)
    );
    assert_eq!(spec["process"]["noNewPrivileges"], true);
    assert_eq!(
        procfs::status_field(&out.stdout, "NoNewPrivs"),
        Some("1"),
        "{out}"
    );
    c.assert_clean("caps");
}
per_version!(default_capabilities);

/// Runs `id` detached with `flags`, compares the task's capability sets (read on the host) to
/// the spec containerd stored for it, restricted to what the host's bounding set allows.
fn caps_match_stored_spec(c: &Containerd, id: &str, flags: &[&str]) -> [u64; 5] {
    c.run_detached(id, flags, &["sleep", "1000"]);
    let t = c.wait_task_status(id, "RUNNING", Duration::from_secs(20));
    let spec = c.container_spec(id);
    let host_bnd = caps::parse_hex(&host_status_field(std::process::id(), "CapBnd"));
    let status = procfs::status(t.pid).expect("task status");
    let got = parse_caps(&status);
    let sets = [
        "inheritable",
        "permitted",
        "effective",
        "bounding",
        "ambient",
    ];
    for (i, set) in sets.iter().enumerate() {
        let want = caps::spec_mask(&spec, set) & host_bnd;
        assert_eq!(
            got[i],
            want,
            "{set}: task has {:?}, spec (within the host's bounding set) says {:?}",
            caps::names_of(got[i]),
            caps::names_of(want)
        );
    }
    let nnp = if spec["process"]["noNewPrivileges"] == true {
        "1"
    } else {
        "0"
    };
    assert_eq!(
        procfs::status_field(&status, "NoNewPrivs"),
        Some(nnp),
        "NoNewPrivs vs spec"
    );
    c.kill_and_remove(id);
    c.assert_clean(id);
    got
}

/// (e) --cap-add / --cap-drop change exactly those bits.
fn cap_add_and_drop(c: &Containerd) {
    let got = caps_match_stored_spec(
        c,
        "capx",
        &["--cap-add", "CAP_NET_ADMIN", "--cap-drop", "CAP_CHOWN"],
    );
    let want = (DEFAULT_MASK | 1 << caps::bit("CAP_NET_ADMIN").expect("known")) & !1;
    assert_eq!(got[3], want, "CapBnd {:?}", caps::names_of(got[3]));
    assert_eq!(got[2], want, "CapEff {:?}", caps::names_of(got[2]));
}
per_version!(cap_add_and_drop);

/// (e) --privileged: every capability the host allows; --allow-new-privs clears no_new_privs.
fn privileged_and_new_privs(c: &Containerd) {
    let got = caps_match_stored_spec(c, "priv", &["--privileged", "--allow-new-privs"]);
    let host_bnd = caps::parse_hex(&host_status_field(std::process::id(), "CapBnd"));
    assert_eq!(
        got[3],
        host_bnd,
        "privileged CapBnd should be the host's {:?}",
        caps::names_of(host_bnd)
    );
    assert!(got[3] & (1 << caps::bit("CAP_SYS_ADMIN").expect("known")) != 0);
    let out = c.run(
        "nnp",
        &["--allow-new-privs"],
        &["/bin/sh", "-c", "grep NoNewPrivs /proc/self/status"],
    );
    assert_eq!(out.exit_code(), 0, "{out}");
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["NoNewPrivs:", "0"],
        "{out}"
    );
    c.assert_clean("nnp");
}
per_version!(privileged_and_new_privs with compat);

/// (f) Masked paths of the default spec: files read as /dev/null (char 1:3, empty), directories
/// are empty read-only tmpfs. Only paths this kernel has can be checked; at least two must be.
fn masked_paths(c: &Containerd) {
    let spec = c.default_spec();
    let masked: Vec<String> = spec["linux"]["maskedPaths"]
        .as_array()
        .expect("default spec has maskedPaths")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .filter(|p| host_has(p))
        .collect();
    assert!(
        masked.len() >= 2,
        "too few masked paths exist on this host to test: {masked:?}"
    );
    let mut script = String::new();
    for p in &masked {
        if std::path::Path::new(p).is_dir() {
            script += &format!("echo \"{p} dir $(stat -f -c %T {p}) $(ls -A {p} | wc -l)\"; ");
            script += &format!("touch {p}/x 2>/dev/null && echo \"{p} WRITABLE\"; ");
        } else {
            script += &format!("echo \"{p} file $(stat -c %F:%t:%T {p}) $(cat {p} | wc -c)\"; ");
        }
    }
    script += "exit 0";
    let out = c.run("masked", &[], &["/bin/sh", "-c", &script]);
    assert_eq!(out.exit_code(), 0, "{out}");
    assert!(
        !out.stdout.contains("WRITABLE"),
        "a masked directory is writable:\n{out}"
    );
    for p in &masked {
        let line = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{p} ")))
            .unwrap_or_else(|| panic!("no line for {p}:\n{out}"));
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.get(1) {
            Some(&"dir") => assert_eq!(
                &f[2..],
                ["tmpfs", "0"],
                "{p} should be an empty tmpfs: {line}"
            ),
            _ => assert_eq!(
                &f[2..],
                ["character", "special", "file:1:3", "0"],
                "{p} should be /dev/null: {line}"
            ),
        }
    }
    c.assert_clean("masked");
}
per_version!(masked_paths);

/// (f) Read-only paths of the default spec: /proc/sys and friends refuse writes.
fn readonly_paths(c: &Containerd) {
    let spec = c.default_spec();
    let ro: Vec<&str> = spec["linux"]["readonlyPaths"]
        .as_array()
        .expect("readonlyPaths")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        ro.contains(&"/proc/sys"),
        "default spec should make /proc/sys read-only: {ro:?}"
    );
    let script = "echo x > /proc/sys/kernel/domainname; echo rc=$?; \
                  grep ' /proc/sys ' /proc/self/mountinfo";
    let out = c.run("ro-paths", &[], &["/bin/sh", "-c", script]);
    assert_eq!(out.exit_code(), 0, "{out}");
    assert!(
        out.stderr.contains("Read-only file system"),
        "writing /proc/sys must fail with EROFS:\n{out}"
    );
    assert!(out.stdout.contains("rc=1"), "{out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(" /proc/sys "))
        .unwrap_or_else(|| panic!("/proc/sys is not a mount:\n{out}"));
    let opts = line.split_whitespace().nth(5).unwrap_or("");
    assert!(
        opts.split(',').any(|o| o == "ro"),
        "/proc/sys must be mounted ro: {line}"
    );
    c.assert_clean("ro-paths");
}
per_version!(readonly_paths);

/// The device rules hold: a container may mknod a block device (CAP_MKNOD, rule `b *:* m`)
/// but not open it (the spec's deny-all), on cgroup v1 (devices controller) and v2 (mypod's
/// eBPF device filter). Without the rules the open would reach the device (or fail ENXIO).
/// Without the pod user namespace (runtime-compat.toml): in it, mknod itself is refused
/// (`pod_userns::container_root_has_no_host_privilege`).
fn device_nodes_outside_the_rules_cannot_be_opened(c: &Containerd) {
    let probe = format!("{MKNOD_AND_OPEN}; echo x > /dev/null && echo null-ok");
    let out = c.run("devdeny", &[], &["/bin/sh", "-c", &probe]);
    assert_eq!(out.exit_code(), 0, "{out}");
    assert!(
        out.stdout.contains("null-ok"),
        "/dev/null (allowed by default) should work:\n{out}"
    );
    assert_made_not_opened("devdeny", &out);
    c.assert_clean("devdeny");
}

/// Makes a block device node (loop0) and reads from it.
const MKNOD_AND_OPEN: &str = "mknod /tmp/loop b 7 0 && echo made; head -c1 /tmp/loop >/dev/null";

/// The node was made (CAP_MKNOD, rule `b *:* m`) but the device rules refused the open.
fn assert_made_not_opened(id: &str, out: &mypod_tests::command::Output) {
    assert!(
        out.stdout.contains("made"),
        "{id}: mknod should work:\n{out}"
    );
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{id}: opening the block device must be refused by the device rules:\n{out}"
    );
}
fn compat(b: mypod_tests::containerd::Builder) -> mypod_tests::containerd::Builder {
    b.compat(true)
}
per_version!(device_nodes_outside_the_rules_cannot_be_opened with compat);

/// The same with a spec that has no device rules at all, and with one that only allows
/// /dev/null: the container gets "deny all" first, as with runc. Mypod used to leave the
/// parent cgroup's rules (on v1 usually every device) and the open reached the device.
fn device_nodes_stay_denied_without_a_deny_rule(c: &Containerd) {
    let probe = ["/bin/sh", "-c", MKNOD_AND_OPEN];
    let only_null = serde_json::json!([
        { "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm" }
    ]);
    for (id, rules) in [("nodevrules", None), ("allowonly", Some(only_null))] {
        let mut spec = c.config_spec(id, &probe);
        match rules {
            Some(r) => spec["linux"]["resources"]["devices"] = r,
            None => {
                // The default spec's rules (a deny-all first) must really be gone.
                let removed = spec["linux"]["resources"]
                    .as_object_mut()
                    .and_then(|r| r.remove("devices"));
                assert!(removed.is_some(), "the default spec has device rules");
            }
        }
        let out = c.run_config(id, &[], &spec);
        assert_made_not_opened(id, &out);
        c.assert_clean(id);
    }
}
per_version!(device_nodes_stay_denied_without_a_deny_rule with compat);

/// Issue 13 (the runc CVE-2019-5736 class): a container gets the setup helper to exec a
/// script whose interpreter is `/proc/self/exe`, so the kernel runs the shim's binary again
/// inside the container; the container opens `/proc/PID/exe` of that process and holds the
/// handle. It must find the binary read-only: no write through the handle while the shim
/// runs, nor once no shim runs from the file any more (when ETXTBSY no longer protects it) —
/// tried by a survivor holding the very handle the container got, as any process the
/// container passed it to could. Runs against a copy of the shim, never the built one.
fn shim_binary_is_read_only_through_proc_exe(c: &Containerd) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    if !c.is_mypod() {
        eprintln!("skipped: the attack targets mypod's own binary");
        return;
    }
    let copy = c.shim_copy_path();
    let before = std::fs::read(&copy).expect("read the shim copy");
    let report = c.dir().join("scratch").join("attack");
    std::fs::create_dir_all(&report).unwrap();
    // The shim is dynamically linked: the container needs the host's loader and libraries
    // (read-only) for the kernel to run it, as an image with glibc would provide.
    let libs = std::fs::canonicalize("/lib/x86_64-linux-gnu").unwrap();
    let loader = std::fs::canonicalize("/lib64").unwrap();
    let mounts = [
        format!(
            "type=bind,src={},dst=/lib/x86_64-linux-gnu,options=rbind:ro",
            libs.display()
        ),
        format!(
            "type=bind,src={},dst=/lib64,options=rbind:ro",
            loader.display()
        ),
        format!(
            "type=bind,src={},dst=/report,options=rbind:rw",
            report.display()
        ),
    ];
    // `-info` copies stdin to the end (held open by the exec below): the re-exec'd shim
    // stays up while the attacker looks for it.
    let attacker = "printf '#!/proc/self/exe -info\\n' > /evil && chmod +x /evil || exit 1
        : > /report/ready
        p=; i=0
        while [ -z \"$p\" ] && [ $i -lt 400 ]; do
          for d in /proc/[0-9]*; do
            case \"$(tr '\\0' ' ' < $d/cmdline 2>/dev/null)\" in
              '/proc/self/exe -info /evil '*) p=${d#/proc/} ;;
            esac
          done
          i=$((i+1)); usleep 50000
        done
        [ -n \"$p\" ] || { echo 'no re-exec of the shim seen' > /report/result; exec sleep 600; }
        exec 3< /proc/$p/exe || { echo 'cannot open /proc/PID/exe' > /report/result; exec sleep 600; }
        if printf MYPOD-WAS-HERE 2>/report/err >> /proc/self/fd/3; then
          echo 'write: OPENED' > /report/result
        else
          echo \"write: $(cat /report/err)\" > /report/result
        fi
        while :; do sleep 1; done";
    let mut flags: Vec<&str> = Vec::new();
    for m in &mounts {
        flags.extend(["--mount", m]);
    }
    c.run_detached("victim", &flags, &["/bin/sh", "-c", attacker]);
    // Waits for the attacker's file `name`; with `line`, until it holds a whole line (the
    // shell creates the file before `echo` writes into it: seen read empty once).
    let wait_for = |name: &str, line: bool| {
        let path = report.join(name);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&path);
            let done = match &text {
                Ok(t) => !line || t.ends_with('\n'),
                Err(_) => false,
            };
            if done || std::time::Instant::now() >= deadline {
                break text
                    .unwrap_or_else(|e| panic!("{}: {e}\n{}", path.display(), c.log_tail(40)));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for("ready", false);
    let mut evil = mypod_tests::command::Spawned::start_holding_stdin(c.ctr_command(&[
        "tasks",
        "exec",
        "--exec-id",
        "evil",
        "victim",
        "/evil",
    ]));
    let result = wait_for("result", true);
    // The survivor: the container's own handle, taken over while the container holds it.
    let holder = c.task("victim").expect("victim task").pid;
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(format!("/proc/{holder}/fd/3"))
        .unwrap_or_else(|e| panic!("the attacker holds no handle ({e}); it said: {result}"));
    let (h, f) = (
        handle.metadata().unwrap(),
        std::fs::metadata(&copy).unwrap(),
    );
    assert_eq!(
        (h.dev(), h.ino()),
        (f.dev(), f.ino()),
        "the container's handle must be the shim's binary for this test to mean anything; the attacker said: {result}"
    );
    // While a shim runs from the file the kernel answers ETXTBSY before it looks at the
    // mount (EROFS), and in the pod's user namespace EACCES before both; whichever, the
    // open must fail.
    assert!(
        result.contains("Read-only file system")
            || result.contains("Text file busy")
            // In the pod's user namespace: the file's owner (host root) has no id there.
            || result.contains("Permission denied"),
        "inside the container, opening the shim's binary for writing must fail: {result}"
    );
    evil.close_stdin();
    let out = evil.wait(Duration::from_secs(30));
    assert!(
        !out.timed_out,
        "the re-exec'd shim did not end on EOF:\n{out}"
    );
    c.kill_and_remove("victim");
    c.assert_clean_within("victim", Duration::from_secs(10));
    // No process runs the copy any more (the pod's shim is gone): ETXTBSY no longer guards it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !mypod_tests::cleanup::pids_running(&copy).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "a process still runs the copy"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let reopened = std::fs::OpenOptions::new()
        .append(true)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()));
    match reopened {
        Ok(mut f) => {
            use std::io::Write;
            let _ = f.write_all(b"MYPOD-WAS-HERE");
            panic!("the container's handle to the shim's binary opened for writing");
        }
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}"),
    }
    assert!(
        std::fs::read(&copy).unwrap() == before,
        "the shim's binary changed"
    );
}
per_version!(shim_binary_is_read_only_through_proc_exe with copy_the_shim);

fn copy_the_shim(b: mypod_tests::containerd::Builder) -> mypod_tests::containerd::Builder {
    b.shim_copy(true)
}
