//! Issue 5: the containers of a pod share its network, IPC and UTS namespaces (and with
//! `namespace_options.pid = POD` its pid namespace), while one shim serves them all. Checked
//! twice, independently: from the host (`/proc/PID/ns/*` of the host pids CRI reports) and
//! from inside the containers (ExecSync `readlink /proc/self/ns/*`, which needs the shim's Exec).

use std::collections::BTreeSet;
use std::time::Duration;

use mypod_tests::cri::api::ContainerState;
use mypod_tests::cri_instance::{host_ns, stderr_of, stdout_of};
use mypod_tests::{per_version_cri, procfs, ContainerBuilder, Containerd, Pod};

const T: Duration = Duration::from_secs(20);
const SHARED: [&str; 3] = ["net", "ipc", "uts"];

/// Starts `n` containers `c0..` running `sleep 1000` in `pod`, checking after each that the
/// instance still has exactly the one shim `shim`. Returns their ids.
fn start_sleepers(c: &Containerd, pod: &Pod, n: usize, shim: u32) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = c.start_in_pod(
            pod,
            &ContainerBuilder::new(&format!("c{i}"), &["sleep", "1000"]),
        );
        c.wait_container_state(&id, ContainerState::ContainerRunning, T);
        let shims = c.shim_pids();
        assert_eq!(
            shims,
            vec![shim],
            "after starting container {} of {n}, the pod must still have its one shim",
            i + 1
        );
        ids.push(id);
    }
    ids
}

fn the_shim(c: &Containerd) -> u32 {
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "one shim after RunPodSandbox: {shims:?}");
    shims[0]
}

/// (b) Five containers, seen from the host: net, ipc and uts are the sandbox's; pid and mnt
/// are each container's own; the pod's network namespace is neither the host's nor the
/// instance's.
fn pod_namespaces_host_view(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("shared"));
    let shim = the_shim(c);
    let ids = start_sleepers(c, &pod, 5, shim);
    let sandbox = c.sandbox_pid(&pod.id);
    let pids: Vec<u32> = ids.iter().map(|id| c.container_pid(id)).collect();
    for &p in &pids {
        assert_eq!(procfs::cmdline(p).as_deref(), Some("sleep 1000"), "pid {p}");
    }
    for kind in SHARED {
        let want = host_ns(sandbox, kind);
        for (id, &p) in ids.iter().zip(&pids) {
            assert_eq!(
                host_ns(p, kind),
                want,
                "container {id} (pid {p}) must share the sandbox's {kind} namespace"
            );
        }
    }
    for kind in ["pid", "mnt"] {
        let mut seen = BTreeSet::from([host_ns(sandbox, kind)]);
        for &p in &pids {
            assert!(
                seen.insert(host_ns(p, kind)),
                "with pid=CONTAINER each container has its own {kind} namespace (pid {p})"
            );
        }
    }
    let pod_net = host_ns(sandbox, "net");
    assert_ne!(
        pod_net,
        c.netns().link_text(),
        "the pod has its own netns, not containerd's"
    );
    assert_ne!(
        pod_net,
        host_ns(std::process::id(), "net"),
        "the pod's netns is not the host's"
    );
    let fp = c.footprint(&pod, &ids);
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
}
per_version_cri!(pod_namespaces_host_view);

/// (b) The same pod seen from inside through ExecSync: every container reads the sandbox's
/// net/ipc/uts namespace links, its own pid namespace, and the pod's hostname.
fn pod_namespaces_exec_view(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("shared-exec").hostname("shared-exec"));
    let shim = the_shim(c);
    let ids = start_sleepers(c, &pod, 5, shim);
    let sandbox = c.sandbox_pid(&pod.id);
    let mut pid_namespaces = BTreeSet::new();
    for id in &ids {
        for kind in SHARED {
            let path = format!("/proc/self/ns/{kind}");
            let r = c.exec_ok(id, &["readlink", &path]);
            assert_eq!(
                r.exit_code,
                0,
                "readlink {path} in {id}: stderr {:?}",
                stderr_of(&r)
            );
            assert_eq!(
                stdout_of(&r).trim(),
                host_ns(sandbox, kind),
                "container {id} sees {path} as the sandbox's"
            );
        }
        let r = c.exec_ok(id, &["readlink", "/proc/self/ns/pid"]);
        assert_eq!(r.exit_code, 0, "{:?}", stderr_of(&r));
        let pid_ns = stdout_of(&r).trim().to_string();
        assert_eq!(
            pid_ns,
            host_ns(c.container_pid(id), "pid"),
            "exec joins the container's pid ns"
        );
        assert!(
            pid_namespaces.insert(pid_ns),
            "pid namespaces are per container"
        );
        let r = c.exec_ok(id, &["hostname"]);
        assert_eq!(stdout_of(&r), "shared-exec\n", "the pod's hostname in {id}");
    }
    assert_eq!(c.shim_pids(), vec![shim], "execs do not add shims");
    let fp = c.footprint(&pod, &ids);
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
}
per_version_cri!(pod_namespaces_exec_view);

/// (b) `namespace_options.pid = POD`: the containers join the sandbox's pid namespace (host
/// view); the pause process is its pid 1.
fn shared_pid_namespace_host_view(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("pidshare").share_pid(true));
    let shim = the_shim(c);
    let ids = start_sleepers(c, &pod, 2, shim);
    let sandbox = c.sandbox_pid(&pod.id);
    let want = host_ns(sandbox, "pid");
    for id in &ids {
        let p = c.container_pid(id);
        for kind in ["pid", "net", "ipc", "uts"] {
            assert_eq!(
                host_ns(p, kind),
                host_ns(sandbox, kind),
                "container {id} {kind}"
            );
        }
        assert_eq!(host_ns(p, "pid"), want);
    }
    let status = procfs::status(sandbox).expect("sandbox status");
    assert_eq!(
        procfs::status_field(&status, "NSpid").and_then(|s| s.split_whitespace().last()),
        Some("1"),
        "the pause process is pid 1 of the shared pid namespace"
    );
    let fp = c.footprint(&pod, &ids);
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
}
per_version_cri!(shared_pid_namespace_host_view);

/// (b) The shared pid namespace from inside: a container sees pause as pid 1 and its sibling's
/// process.
fn shared_pid_namespace_exec_view(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("pidshare-exec").share_pid(true));
    let shim = the_shim(c);
    let ids = start_sleepers(c, &pod, 2, shim);
    let r = c.exec_ok(&ids[0], &["cat", "/proc/1/cmdline"]);
    assert_eq!(r.exit_code, 0, "{:?}", stderr_of(&r));
    assert_eq!(
        stdout_of(&r).trim_end_matches('\0'),
        "/pause",
        "pid 1 is the pause process"
    );
    let r = c.exec_ok(&ids[0], &["ps", "-o", "pid,args"]);
    let ps = stdout_of(&r);
    let sleeps = ps.lines().filter(|l| l.ends_with("sleep 1000")).count();
    assert_eq!(sleeps, 2, "both containers' processes are visible:\n{ps}");
    let fp = c.footprint(&pod, &ids);
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
}
per_version_cri!(shared_pid_namespace_exec_view);
