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
//!
//! Layout, by topic: `users`, `image_user` (the image config's User), `filesystem`, `capabilities`, `privilege` (privileged,
//! no_new_privs, seccomp), `namespaces`; the helpers they share are here. The tests are made
//! here too (`per_version_cri!` below, not next to each function), so that their paths stay
//! `cri_security::NAME::v1_6`, ... as docs/oci-conformance.md names them.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use mypod_tests::caps;
use mypod_tests::cri::api::{self, ContainerState, LinuxContainerSecurityContext};
use mypod_tests::cri::{parse_cri_log, verbose_info};
use mypod_tests::cri_instance::{stderr_of, stdout_of};
use mypod_tests::{per_version_cri, procfs, ContainerBuilder, Containerd, Pod, PodBuilder};

mod capabilities;
mod filesystem;
mod image_user;
mod namespaces;
mod privilege;
mod users;

// The tests, by topic.
use users::{run_as_user_group_and_supplemental_groups, run_as_username};
per_version_cri!(run_as_user_group_and_supplemental_groups);
per_version_cri!(run_as_username);
use image_user::image_config_user;
per_version_cri!(image_config_user);

use filesystem::{masked_and_readonly_paths, readonly_rootfs};
per_version_cri!(readonly_rootfs);
per_version_cri!(masked_and_readonly_paths);

use capabilities::{capabilities_add_and_drop, capabilities_of_non_root_user};
per_version_cri!(capabilities_add_and_drop);
per_version_cri!(capabilities_of_non_root_user);

use privilege::{no_new_privs, privileged, seccomp_profiles};
per_version_cri!(privileged);
per_version_cri!(no_new_privs);
per_version_cri!(seccomp_profiles);

use namespaces::{host_pid_and_ipc, pod_sysctls};
per_version_cri!(pod_sysctls);
per_version_cri!(host_pid_and_ipc);

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
/// context), under runtime handler `handler`.
fn try_run_pod_with(
    c: &Containerd,
    b: PodBuilder,
    handler: &str,
    adjust: impl FnOnce(&mut api::PodSandboxConfig),
) -> Result<Pod, String> {
    let mut config = b.build();
    adjust(&mut config);
    let id = c
        .cri()
        .run_pod_sandbox(&config, handler)
        .map_err(|e| format!("RunPodSandbox {} (handler {handler}): {e}", b.name))?;
    Ok(Pod {
        id,
        builder: b,
        config,
        handler: handler.to_string(),
    })
}

/// Under mypod's defaults (`host_access = "refuse"`): a pod set up by `pod_adjust` with one
/// container set up by `adjust` fails to start, with an error that names `what` and the key.
/// Nothing is checked for runc (MYPOD_TEST_RUNTIME=runc), which has no such default.
fn refused_under_defaults(
    c: &Containerd,
    name: &str,
    pod_adjust: impl FnOnce(&mut api::PodSandboxConfig),
    adjust: impl FnOnce(&mut LinuxContainerSecurityContext),
    what: &[&str],
) {
    if !c.is_mypod() {
        return;
    }
    let err = match try_run_pod_with(c, c.pod(name), c.cri_handler(), pod_adjust) {
        Err(e) => e,
        Ok(pod) => {
            let config = container_config(
                &pod,
                &ContainerBuilder::new(name, &["sleep", "1000"]),
                adjust,
            );
            let res = c
                .cri()
                .create_container(&pod.id, &config, &pod.config)
                .and_then(|id| c.cri().start_container(&id));
            stop_pod(c, &pod);
            match res {
                Err(e) => e.to_string(),
                Ok(()) => {
                    panic!("{name}: started under mypod's defaults (host_access = \"refuse\")")
                }
            }
        }
    };
    for w in what.iter().chain(&["host_access"]) {
        assert!(
            err.contains(w),
            "{name}: the error should name {w:?}: {err}"
        );
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
    let status = procfs::status(pid).unwrap_or_else(|| panic!("no /proc/{pid}/status"));
    in_own_ids(pid, &status)
}

/// A host-read status with its Uid, Gid and Groups lines translated through the process's
/// own uid_map and gid_map (the pod's user namespace under mypod's defaults: host id
/// first+N is N there; an identity map changes nothing). An id without a mapping panics.
fn in_own_ids(pid: u32, status: &str) -> String {
    let read_map = |f: &str| -> Vec<(u64, u64, u64)> {
        fs::read_to_string(format!("/proc/{pid}/{f}"))
            .unwrap_or_else(|e| panic!("/proc/{pid}/{f}: {e}"))
            .lines()
            .map(|l| {
                let v: Vec<u64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
                (v[0], v[1], v[2])
            })
            .collect()
    };
    let (uids, gids) = (read_map("uid_map"), read_map("gid_map"));
    let inside = |map: &[(u64, u64, u64)], host: &str| -> String {
        let h: u64 = host.parse().expect("id");
        map.iter()
            .find(|(_, first, n)| h >= *first && h < first + n)
            .map(|(inner, first, _)| (inner + h - first).to_string())
            .unwrap_or_else(|| panic!("host id {h} has no mapping in {map:?}"))
    };
    status
        .lines()
        .map(|l| {
            let map = match l.split(':').next() {
                Some("Uid") => &uids,
                Some("Gid") | Some("Groups") => &gids,
                _ => return l.to_string(),
            };
            let (name, rest) = l.split_once(':').unwrap_or((l, ""));
            let ids: Vec<String> = rest.split_whitespace().map(|h| inside(map, h)).collect();
            let sep = if name == "Groups" { " " } else { "\t" };
            format!("{name}:\t{}", ids.join(sep))
        })
        .collect::<Vec<_>>()
        .join("\n")
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
