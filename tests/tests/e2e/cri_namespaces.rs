//! Issue 5: the containers of a pod share its network, IPC and UTS namespaces (and with
//! `namespace_options.pid = POD` its pid namespace; an ephemeral container with `pid = TARGET`
//! joins its target's), while one shim serves them all. Checked twice, independently: from the
//! host (`/proc/PID/ns/*` of the host pids CRI reports) and from inside the containers
//! (ExecSync `readlink /proc/self/ns/*`, which needs the shim's Exec).

use std::collections::BTreeSet;
use std::time::Duration;

use mypod_tests::cri::api::{ContainerState, NamespaceMode};
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

/// `kubectl debug --target=app`: the kubelet creates the ephemeral container with
/// `namespace_options.pid = TARGET` and `target_id` = app's container id. It joins app's pid
/// namespace (host view of /proc/PID/ns/pid, and its own readlink), not the sandbox's; inside,
/// app's `sleep` is pid 1 and `ps` lists it beside the debugger's own process (and app sees the
/// debugger's); both processes are children of the pod's one shim, which serves the debugger
/// too (no new shim).
fn ephemeral_container_targets_app(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("debug"));
    let shim = the_shim(c);
    let app = c.start_in_pod(&pod, &ContainerBuilder::new("app", &["sleep", "1000"]));
    c.wait_container_state(&app, ContainerState::ContainerRunning, T);

    let mut config = ContainerBuilder::new("debugger", &["sleep", "2000"]).build(&pod.builder);
    let ns = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|sc| sc.namespace_options.as_mut())
        .expect("the builder sets namespace options");
    ns.pid = NamespaceMode::Target as i32;
    ns.target_id = app.clone();
    let dbg = c
        .cri()
        .create_container(&pod.id, &config, &pod.config)
        .unwrap_or_else(|e| panic!("CreateContainer of the ephemeral container: {e}"));
    c.cri()
        .start_container(&dbg)
        .unwrap_or_else(|e| panic!("StartContainer of the ephemeral container: {e}"));
    c.note_shim_sockets();
    c.wait_container_state(&dbg, ContainerState::ContainerRunning, T);

    let (app_pid, dbg_pid) = (c.container_pid(&app), c.container_pid(&dbg));
    assert_eq!(
        procfs::cmdline(dbg_pid).as_deref(),
        Some("sleep 2000"),
        "pid {dbg_pid}"
    );
    let app_ns = host_ns(app_pid, "pid");
    assert_eq!(
        host_ns(dbg_pid, "pid"),
        app_ns,
        "the debugger (pid {dbg_pid}) is in app's (pid {app_pid}) pid namespace"
    );
    assert_ne!(
        app_ns,
        host_ns(c.sandbox_pid(&pod.id), "pid"),
        "app has its own pid namespace (pid = CONTAINER), not the sandbox's"
    );
    for kind in SHARED {
        assert_eq!(host_ns(dbg_pid, kind), host_ns(app_pid, kind), "{kind}");
    }
    let r = c.exec_ok(&dbg, &["readlink", "/proc/self/ns/pid"]);
    assert_eq!(stdout_of(&r).trim(), app_ns, "{:?}", stderr_of(&r));

    let r = c.exec_ok(&dbg, &["cat", "/proc/1/cmdline"]);
    assert_eq!(
        stdout_of(&r),
        "sleep\u{0}1000\u{0}",
        "app's process is pid 1 of the namespace the debugger sees: {:?}",
        stderr_of(&r)
    );
    for id in [&dbg, &app] {
        let r = c.exec_ok(id, &["ps", "-o", "pid,args"]);
        let ps = stdout_of(&r);
        for want in ["sleep 1000", "sleep 2000"] {
            let n = ps.lines().filter(|l| l.ends_with(want)).count();
            assert_eq!(n, 1, "`ps` in {id} lists {want:?} once:\n{ps}");
        }
        assert!(!ps.contains("/pause"), "the sandbox is not in sight:\n{ps}");
    }

    assert_eq!(c.shim_pids(), vec![shim], "the debugger adds no shim");
    assert_eq!(c.sandbox_shim_pid(&pod.id), Some(shim), "the pod's shim");
    for p in [app_pid, dbg_pid] {
        assert_eq!(procfs::ppid(p), Some(shim), "pid {p}'s parent is the shim");
    }
    let fp = c.footprint(&pod, &[app, dbg]);
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
}
per_version_cri!(ephemeral_container_targets_app);
