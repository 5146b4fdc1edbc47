//! `[sandbox] user_namespace = "pod"`: every pod gets a user namespace of its own, mapped
//! to a range of host ids from the host-wide pool; the rootfs and bind mounts appear
//! through idmapped mounts, so files keep their owners and nothing on disk is chowned.

use std::os::unix::fs::MetadataExt;

use std::time::{Duration, Instant};

use mypod_tests::{per_version, procfs, Containerd};

/// The pool's defaults (runtime.toml): ranges of 65536 ids from 0x7000_0000.
const POOL_START: u64 = 0x7000_0000;

/// `0 <first> 65536` from a uid_map line, checked to be a pool range.
fn pool_range(uid_map: &str) -> u64 {
    let f: Vec<u64> = uid_map
        .split_whitespace()
        .map(|x| x.parse().expect("uid_map number"))
        .collect();
    assert_eq!(f.len(), 3, "one mapping expected: {uid_map:?}");
    assert_eq!(
        (f[0], f[2]),
        (0, 65536),
        "container 0..65536 mapped: {uid_map:?}"
    );
    assert!(
        f[1] >= POOL_START && (f[1] - POOL_START).is_multiple_of(65536),
        "host range from the pool: {uid_map:?}"
    );
    f[1]
}

/// Waits up to 10 s for `path` to exist.
fn wait_for_file(path: &std::path::Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{what} never came: {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Container root is a pool id outside; the image's files keep their owners; a file
/// container root writes to the rootfs and to a bind-mounted volume is owned by host root
/// on disk; two pods get disjoint ranges.
fn container_root_is_a_pool_id_outside(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let vol = c.dir().join("userns-vol");
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::write(vol.join("host-file"), "x").unwrap();
    std::os::unix::fs::chown(vol.join("host-file"), Some(1000), Some(1000)).unwrap();
    // The container reports into the volume (ctr -d keeps no output).
    let script = "{ echo uid=$(id -u); stat -c 'passwd=%u:%g' /etc/passwd; \
                  stat -c 'vol=%u:%g' /vol/host-file; \
                  echo hi > /rootfs-new && stat -c 'new=%u:%g' /rootfs-new; } > /vol/report; \
                  echo hi > /vol/from-root; sleep 30";
    let mount = format!("type=bind,src={},dst=/vol,options=rbind:rw", vol.display());
    c.run_detached("uns1", &["--mount", &mount], &["/bin/sh", "-c", script]);
    let task = c.wait_task_status("uns1", "RUNNING", std::time::Duration::from_secs(10));
    let pid = task.pid;
    wait_for_file(
        &vol.join("from-root"),
        "the container's write to the volume",
    );
    let report = std::fs::read_to_string(vol.join("report")).unwrap();
    for want in ["uid=0", "passwd=0:0", "vol=1000:1000", "new=0:0"] {
        assert!(report.lines().any(|l| l == want), "{want}:\n{report}");
    }
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    let first = pool_range(uid_map.trim());
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == first.to_string()),
        "container root runs as host id {first}: {uid_line}"
    );
    let meta = std::fs::metadata(vol.join("from-root")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "a volume file of container root is host root's on disk"
    );
    // A second pod (its own shim) gets another range.
    let out2 = c.run("uns2", &[], &["/bin/cat", "/proc/self/uid_map"]);
    out2.assert_success();
    let second = pool_range(out2.stdout.trim());
    assert_ne!(first, second, "two live pods share a range");
    c.kill_and_remove("uns1");
    c.assert_clean("uns1");
    c.assert_clean("uns2");
}
per_version!(container_root_is_a_pool_id_outside);

/// In the pod's user namespace container root has no host privilege: mknod is refused
/// (even with CAP_MKNOD), a host file it cannot name stays closed, and it cannot raise
/// its oom_score_adj protection or load a kernel module.
fn container_root_has_no_host_privilege(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let out = c.run(
        "unspriv",
        &[],
        &[
            "/bin/sh",
            "-c",
            "mknod /tmp/loop b 7 0 && echo mknod=made || echo mknod=refused; \
             echo -1000 > /proc/self/oom_score_adj && echo oom=lowered || echo oom=refused; \
             cat /proc/self/uid_map",
        ],
    );
    out.assert_success();
    for want in ["mknod=refused", "oom=refused"] {
        assert!(out.stdout.lines().any(|l| l == want), "{want}:\n{out}");
    }
    let map = out.stdout.lines().last().unwrap_or_default();
    pool_range(map);
    c.assert_clean("unspriv");
}
per_version!(container_root_has_no_host_privilege);

/// A pool of one range (its own start per containerd version, so parallel tests do not
/// meet): a second live pod fails with the pool's error naming the key; after the first
/// pod's shim is SIGKILLed and containerd's `delete` has ended its container, the range
/// is handed out again.
fn exhausted_pool_errors_and_a_killed_shim_gives_its_range_back(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let start = 0x7f00_0000u64 + 65536 * c.version() as u64;
    let flag = c.runtime_config_flag(
        "one-range.toml",
        &format!("[sandbox]\nuserns_pool_start = {start}\nuserns_pool_size = 65536\n"),
    );
    c.run_detached("onerange", &[&flag], &["sleep", "1000"]);
    let pid = c
        .wait_task_status("onerange", "RUNNING", Duration::from_secs(10))
        .pid;
    let map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(pool_range(map.trim()), start, "the pool's only range");

    let out = c.run("norange", &[&flag], &["/bin/true"]);
    out.assert_failure();
    assert!(
        out.stderr.contains("exhausted") && out.stderr.contains("userns_pool_size"),
        "the error names the pool and its key:\n{out}"
    );
    c.assert_clean("norange");

    let shim = procfs::ppid(pid).expect("container has a parent");
    assert!(
        procfs::cmdline(shim).is_some_and(|l| l.contains("containerd-shim-mypod-v2")),
        "parent of the container is the shim"
    );
    assert!(procfs::signal(shim, libc::SIGKILL), "kill the shim");
    procfs::wait_gone(
        pid,
        Duration::from_secs(45),
        "the container of the killed shim",
    );
    let out = c.run("again", &[&flag], &["/bin/cat", "/proc/self/uid_map"]);
    out.assert_success();
    assert_eq!(pool_range(out.stdout.trim()), start, "the range came back");
    c.assert_clean("again");
    if c.task("onerange").is_some() {
        let _ = c.ctr(&["tasks", "rm", "-f", "onerange"]);
    }
    c.remove_container("onerange");
    c.assert_clean("onerange");
}
per_version!(exhausted_pool_errors_and_a_killed_shim_gives_its_range_back);

/// Through CRI with the default handler: the sandbox and both containers of a pod, and an
/// exec into one of them, are in one user namespace mapped to one pool range; another pod's
/// namespace and range differ; a volume (emptyDir-like host dir) file written by container
/// root is host root's on disk.
fn cri_pod_shares_one_range_and_execs_join_it(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    use mypod_tests::cri_instance::{host_ns, stdout_of};
    use mypod_tests::ContainerBuilder;
    let vol = c.dir().join("cri-userns-vol");
    std::fs::create_dir_all(&vol).unwrap();
    let pod = c.run_pod_ok(c.pod("uns-a"));
    let a = c.start_in_pod(
        &pod,
        &ContainerBuilder::new("a", &["sh", "-c", "echo hi > /vol/by-root; sleep 1000"])
            .mount(&vol.display().to_string(), "/vol"),
    );
    let b = c.start_in_pod(&pod, &ContainerBuilder::new("b", &["sleep", "1000"]));
    let pids = [
        c.sandbox_pid(&pod.id),
        c.container_pid(&a),
        c.container_pid(&b),
    ];
    let ns = host_ns(pids[0], "user");
    let map = std::fs::read_to_string(format!("/proc/{}/uid_map", pids[0])).unwrap();
    let first = pool_range(map.trim());
    for pid in pids {
        assert_eq!(
            host_ns(pid, "user"),
            ns,
            "pid {pid}: the pod's user namespace"
        );
    }
    let r = c.exec_ok(
        &b,
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/user; cat /proc/self/uid_map; id -u",
        ],
    );
    let out = stdout_of(&r);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], ns, "the exec joins the pod's user namespace");
    assert_eq!(pool_range(lines[1]), first, "the exec's range is the pod's");
    assert_eq!(lines[2], "0", "root inside");
    wait_for_file(&vol.join("by-root"), "container a's write to the volume");
    let meta = std::fs::metadata(vol.join("by-root")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (0, 0),
        "container root's volume file is host root's"
    );

    let other = c.run_pod_ok(c.pod("uns-b"));
    let o = c.start_in_pod(&other, &ContainerBuilder::new("o", &["sleep", "1000"]));
    let opid = c.container_pid(&o);
    assert_ne!(
        host_ns(opid, "user"),
        ns,
        "another pod, another user namespace"
    );
    let omap = std::fs::read_to_string(format!("/proc/{opid}/uid_map")).unwrap();
    assert_ne!(pool_range(omap.trim()), first, "another pod, another range");
    c.stop_and_remove_pod(&other);
    c.stop_and_remove_pod(&pod);
}
mypod_tests::per_version_cri!(cri_pod_shares_one_range_and_execs_join_it);

/// A process id the pod's user namespace cannot map (uid 70000, as `runAsUser: 70000`) fails
/// Create with an error naming the field and the key; nothing is left behind.
fn ids_outside_the_pod_range_are_refused(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let mut spec = c.config_spec("bigid", &["/bin/true"]);
    spec["process"]["user"]["uid"] = serde_json::json!(70000);
    let out = c.run_config("bigid", &[], &spec);
    out.assert_failure();
    assert!(
        out.stderr
            .contains("process.user.uid 70000 is outside the pod's user namespace")
            && out.stderr.contains("user_namespace"),
        "{out}"
    );
    c.assert_clean("bigid");
}
per_version!(ids_outside_the_pod_range_are_refused);
