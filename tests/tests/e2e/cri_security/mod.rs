//! Issue 5: the CRI security context, as cri-tools' validation suite (critest) checks it:
//! run_as_user / run_as_group / supplemental_groups / run_as_username, readonly_rootfs,
//! capabilities (add, drop, drop ALL), privileged, no_new_privs, seccomp (RuntimeDefault,
//! Unconfined), masked and read-only paths (defaults and overrides), pod sysctls, and the host
//! pid and IPC namespaces. Each property is checked in the container's own process (from the
//! host: /proc/PID/status, or the container's log) and in a process ExecSync starts in it,
//! since a runtime sets both up separately.
//!
//! Not covered: AppArmor (the host has none; CRI runs with `disable_apparmor`) and
//! `runAsNonRoot` (a kubelet check: CRI has no such field). A fully unmasked /proc
//! (`procMount: Unmasked`) cannot be asked for through CRI with containerd: the kubelet sends
//! empty `masked_paths`/`readonly_paths`, which protobuf cannot tell from absent ones, so
//! containerd keeps its defaults; non-empty overrides are checked instead.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use mypod_tests::caps::{self, DEFAULT_MASK};
use mypod_tests::cri::api::{
    self, security_profile::ProfileType, Capability, ContainerState, Int64Value,
    LinuxContainerSecurityContext, NamespaceMode, SecurityProfile,
};
use mypod_tests::cri::{parse_cri_log, verbose_info};
use mypod_tests::cri_instance::{host_ns, stderr_of, stdout_of};
use mypod_tests::{per_version_cri, procfs, ContainerBuilder, Containerd, Pod, PodBuilder};

const T: Duration = Duration::from_secs(20);

/// The masked paths the kubelet sends for `procMount: Default` (k8s.io/kubernetes
/// pkg/securitycontext): containerd's CRI has no defaults of its own, the kubelet's lists are
/// what masks /proc in a Kubernetes pod.
const KUBELET_MASKED: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// The read-only paths the kubelet sends for `procMount: Default`.
const KUBELET_READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Sets the kubelet's default masked and read-only paths, as it does for every container.
fn kubelet_paths(sc: &mut LinuxContainerSecurityContext) {
    sc.masked_paths = KUBELET_MASKED.iter().map(|p| p.to_string()).collect();
    sc.readonly_paths = KUBELET_READONLY.iter().map(|p| p.to_string()).collect();
}

/// linux.maskedPaths and linux.readonlyPaths of the spec containerd made for `id`.
fn spec_paths(c: &Containerd, id: &str) -> String {
    let info = verbose_info(&c.container_status(id).info);
    let linux = &info["runtimeSpec"]["linux"];
    format!(
        "spec maskedPaths {} readonlyPaths {}",
        linux["maskedPaths"], linux["readonlyPaths"]
    )
}

/// RunPodSandbox with `b`'s config changed by `adjust` (the kubelet's pod-level security
/// context); panics unless it worked.
fn run_pod_with(
    c: &Containerd,
    b: PodBuilder,
    adjust: impl FnOnce(&mut api::PodSandboxConfig),
) -> Pod {
    let mut config = b.build();
    adjust(&mut config);
    let handler = c.cri_handler();
    let id = c
        .cri()
        .run_pod_sandbox(&config, handler)
        .unwrap_or_else(|e| panic!("RunPodSandbox {} (handler {handler}): {e}", b.name));
    Pod {
        id,
        builder: b,
        config,
        handler: handler.to_string(),
    }
}

/// The pod-level security context of `config`.
fn pod_sc(config: &mut api::PodSandboxConfig) -> &mut api::LinuxSandboxSecurityContext {
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
}

/// The container config of `b` in `pod`, with its security context changed by `adjust`.
fn container_config(
    pod: &Pod,
    b: &ContainerBuilder,
    adjust: impl FnOnce(&mut LinuxContainerSecurityContext),
) -> api::ContainerConfig {
    let mut config = b.build(&pod.builder);
    adjust(
        config
            .linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default),
    );
    config
}

/// CreateContainer + StartContainer of `config`; waits until it runs; returns its id.
fn start_config(c: &Containerd, pod: &Pod, config: &api::ContainerConfig) -> String {
    let name = config.metadata.as_ref().map(|m| m.name.clone());
    let id = c
        .cri()
        .create_container(&pod.id, config, &pod.config)
        .unwrap_or_else(|e| panic!("CreateContainer {name:?}: {e}"));
    c.cri()
        .start_container(&id)
        .unwrap_or_else(|e| panic!("StartContainer {name:?}: {e}"));
    c.note_shim_sockets();
    c.wait_container_state(&id, ContainerState::ContainerRunning, T);
    id
}

/// A `sleep 1000` container named `name` with its security context changed by `adjust`.
fn sleeper(
    c: &Containerd,
    pod: &Pod,
    name: &str,
    adjust: impl FnOnce(&mut LinuxContainerSecurityContext),
) -> String {
    let config = container_config(
        pod,
        &ContainerBuilder::new(name, &["sleep", "1000"]),
        adjust,
    );
    start_config(c, pod, &config)
}

/// `sh -c SCRIPT` through ExecSync: (exit code, stdout + stderr).
fn sh(c: &Containerd, id: &str, script: &str) -> (i32, String) {
    let r = c.exec_ok(id, &["sh", "-c", script]);
    (r.exit_code, format!("{}{}", stdout_of(&r), stderr_of(&r)))
}

/// /proc/self/status of a process ExecSync starts in `id`.
fn exec_status(c: &Containerd, id: &str) -> String {
    let r = c.exec_ok(id, &["cat", "/proc/self/status"]);
    assert_eq!(r.exit_code, 0, "cat /proc/self/status: {}", stderr_of(&r));
    stdout_of(&r)
}

/// /proc/PID/status of the container's own process, read on the host.
/// StartContainer can return before the runtime's init has exec'd the container's program
/// (runc's start returns once init opens its exec fifo), so this waits until the process no
/// longer runs `... init`.
fn init_status(c: &Containerd, id: &str) -> String {
    let pid = c.container_pid(id);
    let start = Instant::now();
    loop {
        let cmd = procfs::cmdline(pid).unwrap_or_default();
        if cmd.split(' ').nth(1) != Some("init") {
            break;
        }
        assert!(start.elapsed() < T, "pid {pid} still runs {cmd:?}");
        thread::sleep(Duration::from_millis(20));
    }
    procfs::status(pid).unwrap_or_else(|| panic!("no /proc/{pid}/status"))
}

/// Field `name` of a status text; panics if it is missing.
fn field<'a>(status: &'a str, name: &str) -> &'a str {
    procfs::status_field(status, name).unwrap_or_else(|| panic!("no {name}: in status:\n{status}"))
}

/// The five capability sets (Inh, Prm, Eff, Bnd, Amb) of a status text.
fn cap_sets(status: &str) -> [u64; 5] {
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"].map(|f| caps::parse_hex(field(status, f)))
}

/// The capability sets of both the container's process and an exec'd one; panics unless they
/// agree (an exec gets the container's capabilities); returns them.
fn caps_of(c: &Containerd, id: &str) -> [u64; 5] {
    let init = cap_sets(&init_status(c, id));
    let exec = cap_sets(&exec_status(c, id));
    assert_eq!(
        exec, init,
        "container {id}: an exec'd process must get the container's capability sets \
         [Inh, Prm, Eff, Bnd, Amb]"
    );
    init
}

/// Asserts status field `name` is `want` both in the container's process and in an exec.
fn assert_field_both(c: &Containerd, id: &str, name: &str, want: &str, what: &str) {
    let init = init_status(c, id);
    assert_eq!(
        field(&init, name),
        want,
        "{what}: {name} of the container's process"
    );
    let exec = exec_status(c, id);
    assert_eq!(
        field(&exec, name),
        want,
        "{what}: {name} of an exec'd process"
    );
}

/// The host's (this test process') capability mask of set `name`.
fn host_caps(name: &str) -> u64 {
    let st = procfs::status(std::process::id()).expect("own status");
    caps::parse_hex(field(&st, name))
}

fn hex(m: u64) -> String {
    format!("{m:016x} {:?}", caps::names_of(m))
}

/// Waits until the container's log holds a line with `needle`; returns the messages.
fn log_lines_until(pod: &Pod, name: &str, needle: &str) -> Vec<String> {
    let path = pod.log_directory().join(name).join("0.log");
    let start = Instant::now();
    loop {
        let text = fs::read_to_string(&path).unwrap_or_default();
        let lines = parse_cri_log(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let msgs: Vec<String> = lines.into_iter().map(|l| l.message).collect();
        if msgs.iter().any(|m| m.contains(needle)) {
            return msgs;
        }
        assert!(
            start.elapsed() < T,
            "{} has no line with {needle:?} after {T:?}: {msgs:?}",
            path.display()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn stop_pod(c: &Containerd, pod: &Pod) {
    c.stop_and_remove_pod(pod);
}

/// `Groups:` of a status text as a set.
fn groups(status: &str) -> BTreeSet<u32> {
    field(status, "Groups")
        .split_whitespace()
        .map(|g| g.parse().expect("gid"))
        .collect()
}

/// run_as_user / run_as_group / supplemental_groups: the container's process (its own output
/// in the CRI log, and its status from the host) and ExecSync's `id` all run as uid 1001,
/// gid 2002, with the supplemental groups 3003 and 4004 (and no others but the primary).
fn run_as_user_group_and_supplemental_groups(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("runas"));
    let script = "grep -E '^(Uid|Gid|Groups):' /proc/self/status; echo id: $(id); exec sleep 1000";
    let config = container_config(
        &pod,
        &ContainerBuilder::new("runas", &["sh", "-c", script]),
        |sc| {
            sc.run_as_user = Some(Int64Value { value: 1001 });
            sc.run_as_group = Some(Int64Value { value: 2002 });
            sc.supplemental_groups = vec![3003, 4004];
        },
    );
    let id = start_config(c, &pod, &config);
    let msgs = log_lines_until(&pod, "runas", "id:");
    let own = msgs.join("\n");
    for want in [
        "Uid:\t1001\t1001\t1001\t1001",
        "Gid:\t2002\t2002\t2002\t2002",
    ] {
        assert!(
            msgs.iter().any(|m| m == want),
            "the container's own output lacks {want:?}:\n{own}"
        );
    }
    let own_groups: BTreeSet<u32> = msgs
        .iter()
        .find_map(|m| m.strip_prefix("Groups:"))
        .unwrap_or_else(|| panic!("no Groups: line in the container's output:\n{own}"))
        .split_whitespace()
        .map(|g| g.parse().expect("gid"))
        .collect();
    let want_groups = BTreeSet::from([2002, 3003, 4004]);
    let only_extra = BTreeSet::from([3003, 4004]);
    assert!(
        own_groups == want_groups || own_groups == only_extra,
        "supplemental groups of the container's process: {own_groups:?}"
    );

    let init = init_status(c, &id);
    assert_eq!(field(&init, "Uid"), "1001\t1001\t1001\t1001", "host view");
    assert_eq!(field(&init, "Gid"), "2002\t2002\t2002\t2002", "host view");
    assert_eq!(groups(&init), own_groups, "host view of Groups");

    let exec = exec_status(c, &id);
    assert_eq!(field(&exec, "Uid"), "1001\t1001\t1001\t1001", "exec");
    assert_eq!(field(&exec, "Gid"), "2002\t2002\t2002\t2002", "exec");
    assert_eq!(
        groups(&exec),
        own_groups,
        "an exec gets the container's groups"
    );
    for (flag, want) in [("-u", "1001"), ("-g", "2002")] {
        let r = c.exec_ok(&id, &["id", flag]);
        assert_eq!(stdout_of(&r).trim(), want, "id {flag}: {}", stderr_of(&r));
    }
    let r = c.exec_ok(&id, &["id", "-G"]);
    let id_groups: BTreeSet<u32> = stdout_of(&r)
        .split_whitespace()
        .map(|g| g.parse().expect("gid"))
        .collect();
    assert_eq!(id_groups, want_groups, "`id -G` (primary + supplemental)");
    stop_pod(c, &pod);
}
per_version_cri!(run_as_user_group_and_supplemental_groups);

/// run_as_username resolved in the image's /etc/passwd and /etc/group: `app` is uid 1000,
/// gid 1000, and a member of `extra` (2000); `nobody` is 65534. An unknown name fails
/// CreateContainer. run_as_user 1000 alone takes gid 1000 from the image too.
fn run_as_username(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("username"));
    let app = sleeper(c, &pod, "app", |sc| sc.run_as_username = "app".into());
    for st in [init_status(c, &app), exec_status(c, &app)] {
        assert_eq!(field(&st, "Uid"), "1000\t1000\t1000\t1000", "user app");
        assert_eq!(field(&st, "Gid"), "1000\t1000\t1000\t1000", "user app");
        assert!(
            groups(&st).contains(&2000),
            "app is a member of group extra (2000) in the image's /etc/group: {:?}",
            groups(&st)
        );
    }
    let r = c.exec_ok(&app, &["id"]);
    let out = stdout_of(&r);
    assert!(
        out.starts_with("uid=1000(app) gid=1000(app)") && out.contains("2000(extra)"),
        "id as app: {out:?} {}",
        stderr_of(&r)
    );

    let nobody = sleeper(c, &pod, "nobody", |sc| sc.run_as_username = "nobody".into());
    assert_field_both(c, &nobody, "Uid", "65534\t65534\t65534\t65534", "nobody");

    let by_uid = sleeper(c, &pod, "uid1000", |sc| {
        sc.run_as_user = Some(Int64Value { value: 1000 })
    });
    assert_field_both(c, &by_uid, "Gid", "1000\t1000\t1000\t1000", "uid 1000");

    let config = container_config(
        &pod,
        &ContainerBuilder::new("ghost", &["sleep", "1000"]),
        |sc| sc.run_as_username = "ghost".into(),
    );
    let res = c.cri().create_container(&pod.id, &config, &pod.config);
    assert!(
        res.is_err(),
        "a user the image's /etc/passwd lacks must fail CreateContainer: {res:?}"
    );
    stop_pod(c, &pod);
}
per_version_cri!(run_as_username);

/// readonly_rootfs: writing to / fails with EROFS in the container's process and in an exec,
/// the root mount is `ro`; a host directory mounted read-write (an emptyDir) still takes
/// writes, which reach the host. Without it, / is writable.
fn readonly_rootfs(c: &Containerd) {
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
per_version_cri!(readonly_rootfs);

/// Capabilities: by default containerd's 14 (`DEFAULT_MASK`) in the permitted, effective and
/// bounding sets; `add NET_ADMIN, drop CHOWN` changes exactly those two bits and `chown` fails;
/// `drop ALL` leaves nothing (chown fails); `drop ALL, add NET_BIND_SERVICE` leaves just that.
fn capabilities_add_and_drop(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("caps"));
    let bit = |n: &str| 1u64 << caps::bit(n).expect("known capability");

    let plain = sleeper(c, &pod, "plain", |_| {});
    let [inh, prm, eff, bnd, amb] = caps_of(c, &plain);
    for (set, got) in [("CapPrm", prm), ("CapEff", eff), ("CapBnd", bnd)] {
        assert_eq!(got, DEFAULT_MASK, "default {set}: {}", hex(got));
    }
    assert_eq!((inh, amb), (0, 0), "no inheritable or ambient capabilities");
    let (code, out) = sh(c, &plain, "touch /f && chown 1000:1000 /f && stat -c %u /f");
    assert_eq!(
        (code, out.as_str()),
        (0, "1000\n"),
        "chown works with CAP_CHOWN"
    );

    let changed = sleeper(c, &pod, "changed", |sc| {
        sc.capabilities = Some(Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["CHOWN".into()],
            ..Default::default()
        })
    });
    let want = (DEFAULT_MASK | bit("CAP_NET_ADMIN")) & !bit("CAP_CHOWN");
    let [_, prm, eff, bnd, _] = caps_of(c, &changed);
    for (set, got) in [("CapPrm", prm), ("CapEff", eff), ("CapBnd", bnd)] {
        assert_eq!(
            got,
            want,
            "{set} with NET_ADMIN added and CHOWN dropped: {} (want {})",
            hex(got),
            hex(want)
        );
    }
    let (code, out) = sh(c, &changed, "touch /f && chown 1000 /f");
    assert_ne!(code, 0, "chown without CAP_CHOWN must fail: {out}");
    assert!(out.contains("Operation not permitted"), "EPERM: {out}");
    // NET_ADMIN works: an address can be added in the pod's network namespace.
    let (code, out) = sh(
        c,
        &changed,
        "ip addr add 127.0.0.9/8 dev lo && ip addr del 127.0.0.9/8 dev lo",
    );
    assert_eq!(code, 0, "ip addr add with CAP_NET_ADMIN: {out}");
    let (code, out) = sh(c, &plain, "ip addr add 127.0.0.10/8 dev lo");
    assert_ne!(
        code, 0,
        "ip addr add without CAP_NET_ADMIN must fail: {out}"
    );

    let none = sleeper(c, &pod, "none", |sc| {
        sc.capabilities = Some(Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        })
    });
    assert_eq!(caps_of(c, &none), [0; 5], "drop ALL leaves no capability");
    let (code, out) = sh(c, &none, "touch /f && chown 1000 /f");
    assert_ne!(code, 0, "chown after drop ALL must fail: {out}");

    let one = sleeper(c, &pod, "one", |sc| {
        sc.capabilities = Some(Capability {
            add_capabilities: vec!["NET_BIND_SERVICE".into()],
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        })
    });
    let want = bit("CAP_NET_BIND_SERVICE");
    let [inh, prm, eff, bnd, amb] = caps_of(c, &one);
    assert_eq!(
        [inh, prm, eff, bnd, amb],
        [0, want, want, want, 0],
        "drop ALL + add NET_BIND_SERVICE: Eff {}",
        hex(eff)
    );
    stop_pod(c, &pod);
}
per_version_cri!(capabilities_add_and_drop);

/// Capabilities of a non-root user (run_as_user 1000, NET_ADMIN added): the bounding set is the
/// default one plus NET_ADMIN, nothing is permitted, effective, inheritable or ambient, in the
/// container's process and in an exec; NET_ADMIN cannot be used.
fn capabilities_of_non_root_user(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("caps-user"));
    let user = sleeper(c, &pod, "user", |sc| {
        sc.run_as_user = Some(Int64Value { value: 1000 });
        sc.capabilities = Some(Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            ..Default::default()
        });
    });
    let [inh, prm, eff, bnd, amb] = caps_of(c, &user);
    let net_admin = 1u64 << caps::bit("CAP_NET_ADMIN").expect("known");
    assert_eq!(
        bnd,
        DEFAULT_MASK | net_admin,
        "the bounding set of a non-root user: {}",
        hex(bnd)
    );
    // execve(2) as a non-root uid without ambient capabilities leaves nothing permitted or
    // effective (as with runc): the added NET_ADMIN is only in the bounding set.
    assert_eq!(
        [inh, prm, eff, amb],
        [0; 4],
        "Inh/Prm/Eff/Amb of a non-root user: Prm {} Eff {}",
        hex(prm),
        hex(eff)
    );
    let (code, out) = sh(c, &user, "ip addr add 127.0.0.11/8 dev lo");
    assert_ne!(code, 0, "uid 1000 cannot use NET_ADMIN: {out}");
    stop_pod(c, &pod);
}
per_version_cri!(capabilities_of_non_root_user);

/// privileged (the pod must be privileged too): every capability containerd has (the host's
/// bounding set) in all but the inheritable and ambient sets, no seccomp, /sys and /proc/sys
/// writable mounts, the kubelet's masked paths ignored (/proc/timer_list not masked), the
/// host's devices (here /dev/kmsg and loop devices) visible. A non-privileged sibling with the
/// same (kubelet) config has none of that.
fn privileged(c: &Containerd) {
    let pod = run_pod_with(c, c.pod("priv"), |cfg| pod_sc(cfg).privileged = true);
    let host_bnd = host_caps("CapBnd");
    let p = sleeper(c, &pod, "priv", |sc| {
        kubelet_paths(sc);
        sc.privileged = true;
    });
    let [inh, prm, eff, bnd, amb] = caps_of(c, &p);
    for (set, got) in [("CapPrm", prm), ("CapEff", eff), ("CapBnd", bnd)] {
        assert_eq!(
            got,
            host_bnd,
            "privileged {set} = the host's bounding set: {} (host {})",
            hex(got),
            hex(host_bnd)
        );
    }
    assert_eq!((inh, amb), (0, 0));
    assert_field_both(c, &p, "Seccomp", "0", "privileged");

    let mount_opts = |id: &str, point: &str| -> Option<String> {
        let (_, mi) = sh(c, id, "cat /proc/self/mountinfo");
        mi.lines()
            .find(|l| l.split_whitespace().nth(4) == Some(point))
            .and_then(|l| l.split_whitespace().nth(5).map(str::to_string))
    };
    let ro = |opts: &Option<String>| {
        opts.as_deref()
            .is_some_and(|o| o.split(',').any(|x| x == "ro"))
    };
    let sys = mount_opts(&p, "/sys");
    assert!(
        sys.is_some() && !ro(&sys),
        "privileged: /sys is mounted read-write: {sys:?}"
    );
    let proc_sys = mount_opts(&p, "/proc/sys");
    assert!(
        !ro(&proc_sys),
        "privileged: /proc/sys is not read-only: {proc_sys:?}"
    );
    let (_, masked) = sh(c, &p, "stat -c %F /proc/timer_list");
    assert!(
        masked.starts_with("regular"),
        "privileged: /proc/timer_list is not masked: {masked:?} ({})",
        spec_paths(c, &p)
    );
    let host_devs: Vec<&str> = ["kmsg", "loop0", "loop-control", "fuse"]
        .into_iter()
        .filter(|d| Path::new("/dev").join(d).exists())
        .collect();
    assert!(
        !host_devs.is_empty(),
        "the host has none of the probe devices"
    );
    for d in &host_devs {
        let (code, out) = sh(c, &p, &format!("test -c /dev/{d} || test -b /dev/{d}"));
        assert_eq!(code, 0, "privileged: the host's /dev/{d} is visible: {out}");
    }

    let u = sleeper(c, &pod, "unpriv", kubelet_paths);
    let sys = mount_opts(&u, "/sys");
    assert!(ro(&sys), "not privileged: /sys is read-only: {sys:?}");
    let proc_sys = mount_opts(&u, "/proc/sys");
    assert!(
        ro(&proc_sys),
        "not privileged: /proc/sys is read-only: {proc_sys:?}"
    );
    let (_, masked) = sh(c, &u, "stat -c %F /proc/timer_list");
    assert_eq!(masked.trim(), "character special file", "not privileged");
    for d in &host_devs {
        let (code, _) = sh(c, &u, &format!("test -e /dev/{d}"));
        assert_ne!(code, 0, "not privileged: /dev/{d} must not be visible");
    }
    assert_eq!(caps_of(c, &u)[2], DEFAULT_MASK);

    // A privileged container needs a privileged pod.
    let plain_pod = c.run_pod_ok(c.pod("unpriv-pod"));
    let config = container_config(
        &plain_pod,
        &ContainerBuilder::new("priv", &["sleep", "1000"]),
        |sc| sc.privileged = true,
    );
    let res = c
        .cri()
        .create_container(&plain_pod.id, &config, &plain_pod.config);
    assert!(
        res.is_err(),
        "a privileged container in a non-privileged pod must be refused: {res:?}"
    );
    stop_pod(c, &plain_pod);
    stop_pod(c, &pod);
}
per_version_cri!(privileged);

/// no_new_privs: NoNewPrivs 1 with it, 0 without (CRI's default), in the container's process
/// and in an exec.
fn no_new_privs(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("nnp"));
    let on = sleeper(c, &pod, "on", |sc| sc.no_new_privs = true);
    assert_field_both(c, &on, "NoNewPrivs", "1", "no_new_privs = true");
    let off = sleeper(c, &pod, "off", |_| {});
    assert_field_both(c, &off, "NoNewPrivs", "0", "no_new_privs unset");
    stop_pod(c, &pod);
}
per_version_cri!(no_new_privs);

fn profile(t: ProfileType) -> Option<SecurityProfile> {
    Some(SecurityProfile {
        profile_type: t as i32,
        localhost_ref: String::new(),
    })
}

/// seccomp: RuntimeDefault puts one filter in place (Seccomp: 2) that denies `unshare -U`
/// (allowed by the kernel without any capability); Unconfined and the CRI default (no
/// profile) leave seccomp off (Seccomp: 0) and `unshare -U` works.
fn seccomp_profiles(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("seccomp"));
    let rd = sleeper(c, &pod, "default", |sc| {
        sc.seccomp = profile(ProfileType::RuntimeDefault)
    });
    assert_field_both(c, &rd, "Seccomp", "2", "RuntimeDefault");
    assert_field_both(c, &rd, "Seccomp_filters", "1", "RuntimeDefault");
    let (code, out) = sh(c, &rd, "unshare -U true");
    assert_ne!(
        code, 0,
        "RuntimeDefault denies unshare(CLONE_NEWUSER): {out}"
    );
    assert!(out.contains("Operation not permitted"), "EPERM: {out}");

    let unconfined = sleeper(c, &pod, "unconfined", |sc| {
        sc.seccomp = profile(ProfileType::Unconfined)
    });
    let unset = sleeper(c, &pod, "unset", |_| {});
    for (id, what) in [(&unconfined, "Unconfined"), (&unset, "no profile")] {
        assert_field_both(c, id, "Seccomp", "0", what);
        let (code, out) = sh(c, id, "unshare -U true");
        assert_eq!(code, 0, "{what}: unshare -U works: {out}");
    }
    stop_pod(c, &pod);
}
per_version_cri!(seccomp_profiles);

/// Masked and read-only paths. With the kubelet's lists: /proc/timer_list reads as /dev/null
/// (char 1:3, empty), /proc/acpi (a directory) is an empty read-only tmpfs... or absent,
/// /proc/sys is a read-only mount that refuses writes. With masked_paths = [/proc/cpuinfo] and
/// readonly_paths = [/bin] instead: /proc/cpuinfo is masked, /proc/timer_list is not, /bin
/// refuses writes while the rest of the rootfs takes them, /proc/sys is no separate mount.
/// With neither (no kubelet), containerd masks nothing: /proc/timer_list is the real file.
fn masked_and_readonly_paths(c: &Containerd) {
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
per_version_cri!(masked_and_readonly_paths);

/// Pod sysctls: net.ipv4.ip_unprivileged_port_start (network namespace) and
/// kernel.shm_rmid_forced (IPC namespace) are set in the pod's namespaces, where its
/// containers read them; the host's values are untouched.
fn pod_sysctls(c: &Containerd) {
    let read_host = |p: &str| fs::read_to_string(p).expect("host sysctl");
    let port = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    let shm = "/proc/sys/kernel/shm_rmid_forced";
    let (host_port, host_shm) = (read_host(port), read_host(shm));
    let b = c
        .pod("sysctls")
        .sysctl("net.ipv4.ip_unprivileged_port_start", "555")
        .sysctl("kernel.shm_rmid_forced", "1");
    let pod = c.run_pod_ok(b);
    let id = sleeper(c, &pod, "reader", |_| {});
    let (code, out) = sh(c, &id, &format!("cat {port} {shm}"));
    assert_eq!(
        (code, out.as_str()),
        (0, "555\n1\n"),
        "the pod's sysctls in a container"
    );
    assert_eq!(read_host(port), host_port, "the host's value is unchanged");
    assert_eq!(read_host(shm), host_shm, "the host's value is unchanged");
    stop_pod(c, &pod);
}
per_version_cri!(pod_sysctls);

/// Host PID and IPC namespaces (namespace_options pid/ipc = NODE): the container is in the
/// host's pid and IPC namespaces (those of the test process), sees the host's pid 1 and its
/// own host pid; its network namespace stays the pod's.
fn host_pid_and_ipc(c: &Containerd) {
    let b = c.pod("hostns");
    let node = NamespaceMode::Node as i32;
    let pod = run_pod_with(c, b, |cfg| {
        let ns = pod_sc(cfg)
            .namespace_options
            .get_or_insert_with(Default::default);
        ns.pid = node;
        ns.ipc = node;
    });
    let id = sleeper(c, &pod, "hostns", |sc| {
        let ns = sc.namespace_options.get_or_insert_with(Default::default);
        ns.pid = node;
        ns.ipc = node;
    });
    let pid = c.container_pid(&id);
    // The test process is in the host's pid and IPC namespaces (containerd only has its own
    // network namespace); pid 1's namespace links are not readable here.
    let me = std::process::id();
    for kind in ["pid", "ipc"] {
        assert_eq!(host_ns(pid, kind), host_ns(me, kind), "host view: {kind}");
        let r = c.exec_ok(&id, &["readlink", &format!("/proc/self/ns/{kind}")]);
        assert_eq!(
            stdout_of(&r).trim(),
            host_ns(me, kind),
            "exec: {kind} namespace is the host's: {}",
            stderr_of(&r)
        );
    }
    assert_eq!(
        host_ns(c.sandbox_pid(&pod.id), "pid"),
        host_ns(me, "pid"),
        "the sandbox is in the host's pid namespace"
    );
    assert_ne!(
        host_ns(pid, "net"),
        host_ns(me, "net"),
        "the network namespace stays the pod's"
    );
    let host_init = fs::read("/proc/1/cmdline").expect("host pid 1");
    let r = c.exec_ok(&id, &["cat", "/proc/1/cmdline"]);
    assert_eq!(
        r.stdout,
        host_init,
        "the container sees the host's pid 1: {}",
        stderr_of(&r)
    );
    let r = c.exec_ok(&id, &["cat", &format!("/proc/{pid}/cmdline")]);
    assert_eq!(
        String::from_utf8_lossy(&r.stdout),
        "sleep\u{0}1000\u{0}",
        "the container sees its own process by its host pid {pid}"
    );
    stop_pod(c, &pod);
}
per_version_cri!(host_pid_and_ipc);
