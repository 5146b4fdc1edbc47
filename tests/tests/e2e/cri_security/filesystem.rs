//! What a container may write and read of its filesystem: readonly_rootfs, masked and
//! read-only paths.

use std::fs;
use std::path::Path;

use mypod_tests::cri::api::{self, ContainerState};
use mypod_tests::{ContainerBuilder, Containerd};

use super::{
    container_config, kubelet_paths, log_lines_until, sh, sleeper, spec_paths, start_config,
    stop_pod, T,
};

/// readonly_rootfs: writing to / fails with EROFS in the container's process and in an exec,
/// the root mount is `ro`; a host directory mounted read-write (an emptyDir) still takes
/// writes, which reach the host. Without it, / is writable.
pub(super) fn readonly_rootfs(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("rofs"));
    let empty_dir = c.dir().join("emptydir");
    fs::create_dir_all(&empty_dir).expect("mkdir emptydir");
    let script = "touch /own 2>&1; echo own-root=$?; echo x > /data/own && echo own-data=$?; \
                  exec sleep 1000";
    let mut config = container_config(
        &pod,
        &ContainerBuilder::new("ro", &["sh", "-c", script]),
        |sc| sc.readonly_rootfs = true,
    );
    config.mounts.push(api::Mount {
        container_path: "/data".into(),
        host_path: empty_dir.to_string_lossy().into_owned(),
        ..Default::default()
    });
    let ro = start_config(c, &pod, &config);
    let msgs = log_lines_until(&pod, "ro", "own-root=").join("\n");
    assert!(
        msgs.contains("own-root=1") && msgs.contains("Read-only file system"),
        "the container's own write to / must fail with EROFS:\n{msgs}"
    );
    log_lines_until(&pod, "ro", "own-data=0");
    assert!(
        empty_dir.join("own").is_file(),
        "the write reached the host"
    );

    let (code, out) = sh(c, &ro, "touch /x");
    assert_ne!(code, 0, "touch /x in an exec must fail: {out}");
    assert!(out.contains("Read-only file system"), "EROFS: {out}");
    let (code, out) = sh(c, &ro, "echo y > /data/exec && cat /data/exec");
    assert_eq!((code, out.as_str()), (0, "y\n"), "the emptyDir is writable");
    assert!(empty_dir.join("exec").is_file());
    let (_, mi) = sh(c, &ro, "grep ' / / ' /proc/self/mountinfo");
    let opts = mi.split_whitespace().nth(5).unwrap_or("");
    assert!(
        opts.split(',').any(|o| o == "ro"),
        "the root mount's options must hold ro: {mi}"
    );

    let rw = sleeper(c, &pod, "rw", |_| {});
    let (code, out) = sh(c, &rw, "touch /x");
    assert_eq!(code, 0, "without readonly_rootfs / is writable: {out}");
    stop_pod(c, &pod);
}

/// Masked and read-only paths. With the kubelet's lists: /proc/timer_list reads as /dev/null
/// (char 1:3, empty), /proc/acpi (a directory) is an empty read-only tmpfs... or absent,
/// /proc/sys is a read-only mount that refuses writes. With masked_paths = [/proc/cpuinfo] and
/// readonly_paths = [/bin] instead: /proc/cpuinfo is masked, /proc/timer_list is not, /bin
/// refuses writes while the rest of the rootfs takes them, /proc/sys is no separate mount.
/// With neither (no kubelet), containerd masks nothing: /proc/timer_list is the real file.
pub(super) fn masked_and_readonly_paths(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("masked"));
    let kube = sleeper(c, &pod, "kubelet", kubelet_paths);
    let (_, out) = sh(
        c,
        &kube,
        "stat -c '%F %t:%T' /proc/timer_list; wc -c < /proc/timer_list",
    );
    assert_eq!(
        out,
        "character special file 1:3\n0\n",
        "/proc/timer_list is masked by /dev/null ({})",
        spec_paths(c, &kube)
    );
    if Path::new("/proc/acpi").is_dir() {
        let (_, out) = sh(
            c,
            &kube,
            "echo $(stat -f -c %T /proc/acpi) $(ls -A /proc/acpi | wc -l); touch /proc/acpi/x",
        );
        assert!(
            out.starts_with("tmpfs 0\n") && out.contains("Read-only file system"),
            "/proc/acpi is masked by an empty read-only tmpfs: {out:?}"
        );
    }
    let (_, out) = sh(c, &kube, "grep ' /proc/sys ' /proc/self/mountinfo");
    let opts = out.split_whitespace().nth(5).unwrap_or("");
    assert!(
        opts.split(',').any(|o| o == "ro"),
        "/proc/sys is a read-only mount: {out:?}"
    );
    let (code, out) = sh(c, &kube, "echo 1 > /proc/sys/kernel/shm_rmid_forced");
    assert_ne!(code, 0, "/proc/sys refuses writes: {out}");
    assert!(out.contains("Read-only file system"), "EROFS: {out}");
    let (code, out) = sh(c, &kube, "wc -c < /proc/cpuinfo");
    assert!(
        code == 0 && out.trim().parse::<u64>().unwrap_or(0) > 0,
        "/proc/cpuinfo is not masked by default: {out}"
    );

    // /bin read-only must stay executable: runc's readonlyPath keeps only the nosuid, nodev
    // and noexec flags the mount already has.
    let config = container_config(
        &pod,
        &ContainerBuilder::new("custom", &["sleep", "1000"]),
        |sc| {
            sc.masked_paths = vec!["/proc/cpuinfo".into()];
            sc.readonly_paths = vec!["/bin".into()];
        },
    );
    let custom = c
        .cri()
        .create_container(&pod.id, &config, &pod.config)
        .unwrap_or_else(|e| panic!("CreateContainer custom: {e}"));
    if let Err(e) = c.cri().start_container(&custom) {
        panic!(
            "readonly_paths = [/bin]: /bin must become read-only, not noexec (runc adds no \
             nosuid/nodev/noexec the mount lacks), so /bin/sleep must start: {e}"
        );
    }
    c.wait_container_state(&custom, ContainerState::ContainerRunning, T);
    let (_, mi) = sh(c, &custom, "grep ' /bin ' /proc/self/mountinfo");
    let opts = mi.split_whitespace().nth(5).unwrap_or("");
    assert!(
        opts.split(',').any(|o| o == "ro") && !opts.split(',').any(|o| o == "noexec"),
        "readonly_paths: /bin is a ro mount without noexec: {mi:?}"
    );
    let (_, out) = sh(
        c,
        &custom,
        "stat -c '%F %t:%T' /proc/cpuinfo; wc -c < /proc/cpuinfo",
    );
    assert_eq!(
        out,
        "character special file 1:3\n0\n",
        "masked_paths: /proc/cpuinfo is masked ({})",
        spec_paths(c, &custom)
    );
    let (_, out) = sh(c, &custom, "stat -c %F /proc/timer_list");
    assert!(
        out.starts_with("regular"),
        "masked_paths replaces the defaults: /proc/timer_list is not masked: {out:?}"
    );
    let (code, out) = sh(c, &custom, "touch /bin/x");
    assert_ne!(code, 0, "readonly_paths: /bin refuses writes: {out}");
    assert!(out.contains("Read-only file system"), "EROFS: {out}");
    let (code, out) = sh(c, &custom, "touch /x");
    assert_eq!(code, 0, "the rest of the rootfs stays writable: {out}");
    let (_, out) = sh(c, &custom, "grep -c ' /proc/sys ' /proc/self/mountinfo");
    assert_eq!(
        out.trim(),
        "0",
        "readonly_paths replaces the defaults: no /proc/sys mount"
    );

    let bare = sleeper(c, &pod, "bare", |_| {});
    let (_, out) = sh(c, &bare, "stat -c %F /proc/timer_list");
    assert!(
        out.starts_with("regular"),
        "without the kubelet's lists nothing is masked: {out:?} ({})",
        spec_paths(c, &bare)
    );
    stop_pod(c, &pod);
}
