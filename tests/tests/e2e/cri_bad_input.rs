//! Issue 5: what goes wrong through CRI fails with a clear error, within the deadline, and
//! leaves nothing behind: an unknown RuntimeClass handler, a sandbox whose pause process
//! cannot start, a missing executable in a pod, a container created after its pod's shim died,
//! pods whose settings conflict with a running pod or with the node.

use std::fs;
use std::time::{Duration, Instant};

use mypod_tests::containerd::Builder;
use mypod_tests::cri::api::ContainerState;
use mypod_tests::cri::describe_status;
use mypod_tests::cri_instance::CRI_NAMESPACE;
use mypod_tests::{
    cleanup, per_version_cri, procfs, ContainerBuilder, Containerd, SandboxImage, Version,
};

const T: Duration = Duration::from_secs(20);

/// Whatever of any pod is on the host for this instance (it runs no pod at this point).
fn instance_leftovers(c: &Containerd) -> Vec<String> {
    let mut left = Vec::new();
    match c.cri().list_pod_sandbox(None) {
        Ok(p) if p.is_empty() => {}
        Ok(p) => left.push(format!("pod sandboxes: {p:?}")),
        Err(e) => left.push(e.to_string()),
    }
    match c.cri().list_containers(None) {
        Ok(l) if l.is_empty() => {}
        Ok(l) => left.push(format!("containers: {l:?}")),
        Err(e) => left.push(e.to_string()),
    }
    for t in c.tasks() {
        left.push(format!("task {t:?}"));
    }
    for id in c.containers() {
        left.push(format!("containerd container {id}"));
    }
    for p in c.shim_pids() {
        left.push(format!(
            "shim {p}: {}",
            procfs::cmdline(p).unwrap_or_default()
        ));
    }
    for p in cleanup::pids_rooted_under(c.dir()) {
        left.push(format!(
            "process {p}: {}",
            procfs::cmdline(p).unwrap_or_default()
        ));
    }
    for m in cleanup::mounts_under(c.dir()) {
        left.push(format!("mount {}", m.display()));
    }
    let netns_dir = c.state_dir().join("io.containerd.grpc.v1.cri/netns");
    if let Ok(rd) = fs::read_dir(&netns_dir) {
        for e in rd.flatten() {
            left.push(format!("pod netns file {}", e.path().display()));
        }
    }
    let bundles = c
        .state_dir()
        .join("io.containerd.runtime.v2.task")
        .join(CRI_NAMESPACE);
    if let Ok(rd) = fs::read_dir(&bundles) {
        for e in rd.flatten() {
            left.push(format!("bundle {}", e.path().display()));
        }
    }
    // Pod cgroups: /<instance>/<pod>/<id>; the pod level itself is the kubelet's to remove.
    for top in cleanup::cgroup_dirs(c.namespace()) {
        for pod in fs::read_dir(&top).into_iter().flatten().flatten() {
            for id in fs::read_dir(pod.path()).into_iter().flatten().flatten() {
                if id.path().join("cgroup.procs").is_file() {
                    left.push(format!("cgroup {}", id.path().display()));
                }
            }
        }
    }
    let ipam = c.dir().join("cni/ipam");
    for net in fs::read_dir(&ipam).into_iter().flatten().flatten() {
        for f in fs::read_dir(net.path()).into_iter().flatten().flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            if name != "lock" && !name.starts_with("last_reserved_ip") {
                left.push(format!("IP lease {}", f.path().display()));
            }
        }
    }
    left
}

fn assert_nothing_left(c: &Containerd, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = instance_leftovers(c);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} left behind:\n  {}",
            left.join("\n  ")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A pod that works, to show that the instance is not poisoned by what failed before.
fn a_pod_still_works(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("afterwards"));
    let id = c.start_in_pod(&pod, &ContainerBuilder::new("ok", &["sleep", "1000"]));
    c.wait_container_state(&id, ContainerState::ContainerRunning, T);
    c.stop_and_remove_pod(&pod);
    assert_nothing_left(c, "the pod after the failure");
}

/// (f) An unknown RuntimeClass handler: RunPodSandbox fails at once naming it; nothing is made.
fn unknown_runtime_handler(c: &Containerd) {
    let start = Instant::now();
    let res = c.run_pod_with_handler(c.pod("nohandler"), "no-such-handler");
    let took = start.elapsed();
    let err = match res {
        Ok(p) => panic!(
            "RunPodSandbox with handler no-such-handler made pod {}",
            p.id
        ),
        Err(e) => e,
    };
    assert!(
        !err.timed_out && took < Duration::from_secs(10),
        "fails fast: {err}"
    );
    assert!(
        err.message.contains("no-such-handler"),
        "the error should name the handler: {err}"
    );
    assert_nothing_left(c, "RunPodSandbox with an unknown handler");
    a_pod_still_works(c);
}
per_version_cri!(unknown_runtime_handler);

fn broken_pause(b: Builder) -> Builder {
    b.sandbox_image(SandboxImage::Broken)
}

/// (f) The sandbox image's entrypoint /pause does not exist: RunPodSandbox fails with an error
/// naming it, and the failed sandbox leaves no shim, task, mount, netns, cgroup or IP lease.
fn sandbox_fails_to_start(c: &Containerd) {
    let start = Instant::now();
    let res = c.run_pod(c.pod("nopause"));
    let took = start.elapsed();
    let err = match res {
        Ok(p) => panic!(
            "RunPodSandbox with a pause image without /pause made pod {}",
            p.id
        ),
        Err(e) => e,
    };
    assert!(
        !err.timed_out && took < Duration::from_secs(30),
        "fails in time: {err}"
    );
    assert!(
        err.message.contains("/pause"),
        "the error should name /pause: {err}"
    );
    assert_nothing_left(c, "the sandbox that failed to start");
}
per_version_cri!(sandbox_fails_to_start with broken_pause);

/// (f) A container whose executable is missing: StartContainer fails naming it; the pod and its
/// other container are not disturbed, the pod keeps its one shim.
fn missing_executable_in_pod(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("nobin"));
    let ok = c.start_in_pod(&pod, &ContainerBuilder::new("ok", &["sleep", "1000"]));
    c.wait_container_state(&ok, ContainerState::ContainerRunning, T);
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "{shims:?}");
    let bad = c
        .create_container(&pod, &ContainerBuilder::new("bad", &["/bin/nope"]))
        .unwrap_or_else(|e| panic!("CreateContainer does not run anything yet: {e}"));
    let start = Instant::now();
    let err = c
        .cri()
        .start_container(&bad)
        .expect_err("StartContainer of /bin/nope must fail");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "fails fast: {err}"
    );
    assert!(
        err.message.contains("/bin/nope"),
        "the error should name /bin/nope: {err}"
    );
    let st = c.container_status(&bad).status.expect("status");
    assert_ne!(
        st.state,
        ContainerState::ContainerRunning as i32,
        "{}",
        describe_status(&st)
    );
    let st = c.container_status(&ok).status.expect("status");
    assert_eq!(
        st.state,
        ContainerState::ContainerRunning as i32,
        "{}",
        describe_status(&st)
    );
    assert_eq!(
        c.shim_pids(),
        shims,
        "a failed start must not take the pod's shim down"
    );
    c.cri()
        .remove_container(&bad)
        .expect("RemoveContainer of the failed container");
    c.stop_and_remove_pod(&pod);
    assert_nothing_left(c, "the pod with a failed container");
}
per_version_cri!(missing_executable_in_pod);

/// (f) The pod's shim is killed (SIGKILL, by its pid): creating and starting a container in
/// that pod then fails with a clear error, without hanging; the pod still stops and is removed,
/// and its processes (which lost their shim) are gone with it.
fn container_after_shim_killed(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("orphaned"));
    let first = c.start_in_pod(&pod, &ContainerBuilder::new("first", &["sleep", "1000"]));
    c.wait_container_state(&first, ContainerState::ContainerRunning, T);
    let fp = c.footprint(&pod, std::slice::from_ref(&first));
    let first_pid = c.container_pid(&first);
    let shim = c
        .sandbox_shim_pid(&pod.id)
        .unwrap_or_else(|| panic!("no shim pid for pod {}: shims {:?}", pod.id, c.shim_pids()));
    assert!(
        c.shim_pids().contains(&shim),
        "pid {shim} is a shim of the instance: {:?}",
        procfs::cmdline(shim)
    );
    assert!(procfs::signal(shim, libc::SIGKILL), "kill -9 {shim}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while procfs::alive(shim) {
        assert!(
            Instant::now() < deadline,
            "the shim {shim} survived SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let start = Instant::now();
    let late = ContainerBuilder::new("late", &["sleep", "1000"]);
    let outcome = match c.create_container(&pod, &late) {
        Err(e) => Err(e),
        Ok(id) => c.cri().start_container(&id).map(|()| id),
    };
    let took = start.elapsed();
    let err = match outcome {
        Ok(id) => panic!(
            "a container started in pod {} after its shim was killed: {}",
            pod.id,
            describe_status(&c.container_status(&id).status.expect("status"))
        ),
        Err(e) => e,
    };
    assert!(!err.timed_out, "the call hung until the deadline: {err}");
    assert!(
        took < Duration::from_secs(30),
        "fails in reasonable time: {took:?}: {err}"
    );
    assert!(
        !err.message.trim().is_empty(),
        "the error says something: {err}"
    );
    eprintln!("container after shim killed: {err}");

    let retries = c.stop_and_remove_pod_retrying(&pod, Duration::from_secs(30));
    if !retries.is_empty() {
        eprintln!(
            "removing the pod took {} retries; first error: {}",
            retries.len(),
            retries[0]
        );
    }
    let mut fp = fp;
    fp.container_ids.extend(
        c.cri()
            .list_containers(None)
            .unwrap_or_default()
            .into_iter()
            .map(|x| x.id),
    );
    // Reference behaviour of runc on containerd 2.1: after the grouped shim is killed,
    // containerd cleans up (runs `shim delete` for) the sandbox only, so the first container's
    // process stays behind, in its cgroup, after the pod is removed (1.6 and 1.7 clean it up).
    // That leak, and only that one, is tolerated for runc on 2.1; mypod must not leak it.
    let tolerated = |l: &str| {
        !c.is_mypod()
            && c.version() == Version::V2_1
            && (l.contains(&format!("process {first_pid} "))
                || l.contains(&format!("pid {first_pid}:"))
                || (l.starts_with("cgroup ") && l.ends_with(&first)))
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (ok, left): (Vec<String>, Vec<String>) = c
            .pod_leftovers(&fp, false)
            .into_iter()
            .partition(|l| tolerated(l));
        if left.is_empty() {
            if !ok.is_empty() {
                eprintln!("runc on containerd 2.1 left (known, tolerated): {ok:?}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod {} left behind after its shim was killed:\n  {}",
            pod.id,
            left.join("\n  ")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!procfs::alive(shim), "the killed shim is gone");
}
per_version_cri!(container_after_shim_killed);

/// (f) Pods whose settings conflict with a running pod or with the node: the same pod name
/// again, and a host-network pod that asks for a network sysctl (which would change the
/// node's value for everyone). Each fails with an error naming the conflict; the running pod
/// keeps its shim and container, the node's sysctl is unchanged, and nothing else is left.
fn conflicting_pods(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("first"));
    let ctr = c.start_in_pod(&pod, &ContainerBuilder::new("app", &["sleep", "1000"]));
    c.wait_container_state(&ctr, ContainerState::ContainerRunning, T);
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "one pod, one shim: {shims:?}");

    // The same metadata as the running pod: CRI refuses the reserved name.
    let err = match c.run_pod(c.pod("first")) {
        Ok(p) => panic!("a second pod named 'first' was made: {}", p.id),
        Err(e) => e,
    };
    assert!(
        !err.timed_out && err.message.contains("reserved"),
        "the error should say the name is reserved: {err}"
    );

    // hostNetwork + a net.* sysctl: refused before anything runs (runc refuses it as well).
    let before = c.netns().sysctl("net.ipv4.ip_forward");
    let flipped = if before == "1" { "0" } else { "1" };
    let res = c.run_pod(
        c.pod("hostnet")
            .host_network(true)
            // As the kubelet: a host-network pod has the node's UTS namespace, no hostname.
            .hostname("")
            .sysctl("net.ipv4.ip_forward", flipped),
    );
    let err = match res {
        Ok(p) => panic!(
            "a host-network pod set net.ipv4.ip_forward={flipped}: pod {}; the node's value is now {}",
            p.id,
            c.netns().sysctl("net.ipv4.ip_forward")
        ),
        Err(e) => e,
    };
    assert!(
        !err.timed_out && err.message.contains("net.ipv4.ip_forward"),
        "the error should name the sysctl: {err}"
    );
    assert_eq!(
        c.netns().sysctl("net.ipv4.ip_forward"),
        before,
        "the node's (the instance's network namespace's) value must not change"
    );

    let st = c.container_status(&ctr).status.expect("status");
    assert_eq!(
        st.state,
        ContainerState::ContainerRunning as i32,
        "the running pod is untouched: {}",
        describe_status(&st)
    );
    // The refused pod's shim exits on its own once containerd deleted its one container.
    let deadline = Instant::now() + Duration::from_secs(5);
    while c.shim_pids() != shims && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.shim_pids(), shims, "the running pod keeps its one shim");
    let out = c.exec_ok(&ctr, &["echo", "still here"]);
    assert_eq!(mypod_tests::cri_instance::stdout_of(&out), "still here\n");
    c.stop_and_remove_pod(&pod);
    assert_nothing_left(c, "the pods with conflicting settings");
}
per_version_cri!(conflicting_pods);
