//! Issue 5, "Pods through CRI": a pod sandbox made through CRI with the RuntimeClass handler
//! `mypod` is served by one shim process; its containers run, exit with their status while
//! their siblings keep running, and StopPodSandbox + RemovePodSandbox leave nothing behind.
//! (MYPOD_TEST_RUNTIME=runc runs the same tests with the handler `runc`: runc-v2 also groups a
//! pod's containers into one shim by the sandbox id.)

use std::time::Duration;

use mypod_tests::cri::api::ContainerState;
use mypod_tests::cri::{describe_status, sandbox_state_name};
use mypod_tests::cri_instance::POD_IP_PREFIX;
use mypod_tests::{per_version_cri, procfs, ContainerBuilder, Containerd};

const T: Duration = Duration::from_secs(20);

/// The one shim process of the instance; panics unless there is exactly one.
fn one_shim(c: &Containerd, when: &str) -> u32 {
    let shims = c.shim_pids();
    let described: Vec<String> = shims
        .iter()
        .map(|&p| format!("{p}: {}", procfs::cmdline(p).unwrap_or_default()))
        .collect();
    assert_eq!(
        shims.len(),
        1,
        "{when}: expected exactly one shim for the pod, found {}:\n  {}",
        shims.len(),
        described.join("\n  ")
    );
    shims[0]
}

/// (a) One pod, one container: one shim, the container RUNNING, the pod READY with an IP from
/// the instance's bridge network; stop + remove leaves no shim, mount, cgroup, netns or lease.
fn one_pod_one_shim(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("web"));
    let st = c.sandbox_status(&pod.id);
    let status = st.status.as_ref().expect("PodSandboxStatus has a status");
    assert_eq!(
        sandbox_state_name(status.state),
        "SANDBOX_READY",
        "{status:?}"
    );
    let ip = status
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    assert!(
        ip.starts_with(POD_IP_PREFIX),
        "the pod's IP {ip:?} should come from the bridge network's subnet ({POD_IP_PREFIX}0/24)"
    );
    let shim = one_shim(c, "after RunPodSandbox");
    assert_eq!(
        c.sandbox_shim_pid(&pod.id),
        Some(shim),
        "the sandbox's shim.pid names the one shim"
    );

    let id = c.start_in_pod(&pod, &ContainerBuilder::new("sleeper", &["sleep", "1000"]));
    let cs = c.wait_container_state(&id, ContainerState::ContainerRunning, T);
    assert_eq!(
        cs.metadata.as_ref().map(|m| m.name.as_str()),
        Some("sleeper")
    );
    assert!(
        cs.started_at > 0,
        "a running container has started_at: {}",
        describe_status(&cs)
    );
    assert_eq!(
        one_shim(c, "after starting the container"),
        shim,
        "the pod keeps its shim"
    );
    let pid = c.container_pid(&id);
    assert_eq!(
        procfs::cmdline(pid).as_deref(),
        Some("sleep 1000"),
        "ContainerStatus' pid {pid} is the container's process"
    );
    let listed = c.cri().list_containers(None).expect("ListContainers");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].pod_sandbox_id, pod.id);
    let pods = c.cri().list_pod_sandbox(None).expect("ListPodSandbox");
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].runtime_handler, c.cri_handler(), "{pods:?}");

    let fp = c.footprint(&pod, std::slice::from_ref(&id));
    assert!(
        fp.netns_path.is_some(),
        "the sandbox's spec names a network namespace"
    );
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
}
per_version_cri!(one_pod_one_shim);

/// (c) A container that exits 3 while its siblings run: EXITED with exit code 3, the siblings
/// stay RUNNING, the pod keeps its one shim; the pod still stops and goes away cleanly.
fn exit_code_while_siblings_run(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("mixed"));
    let shim = one_shim(c, "after RunPodSandbox");
    let a = c.start_in_pod(&pod, &ContainerBuilder::new("a", &["sleep", "1000"]));
    let b = c.start_in_pod(&pod, &ContainerBuilder::new("b", &["sleep", "1000"]));
    c.wait_container_state(&a, ContainerState::ContainerRunning, T);
    c.wait_container_state(&b, ContainerState::ContainerRunning, T);
    let (pa, pb) = (c.container_pid(&a), c.container_pid(&b));
    let fp_running = c.footprint(&pod, &[a.clone(), b.clone()]);

    let bad = c.start_in_pod(
        &pod,
        &ContainerBuilder::new("fails", &["sh", "-c", "exit 3"]),
    );
    let st = c.wait_container_state(&bad, ContainerState::ContainerExited, T);
    assert_eq!(
        st.exit_code,
        3,
        "exit code of `sh -c 'exit 3'`: {}",
        describe_status(&st)
    );
    // (containerd records started_at when StartContainer returns, so a container this quick
    // can show finished_at < started_at, as it does with runc on 1.6.)
    assert!(
        st.finished_at > 0,
        "an exited container has finished_at: {st:?}"
    );
    assert_eq!(
        st.reason,
        "Error",
        "CRI's reason for a non-zero exit: {}",
        describe_status(&st)
    );
    for (id, pid) in [(&a, pa), (&b, pb)] {
        let s = c.container_status(id).status.expect("status");
        assert_eq!(
            s.state,
            ContainerState::ContainerRunning as i32,
            "sibling {}",
            describe_status(&s)
        );
        assert!(procfs::alive(pid), "sibling process {pid} must still run");
    }
    assert_eq!(one_shim(c, "after a container exited"), shim);

    // The exited container can be removed on its own; the others are not disturbed.
    c.cri()
        .remove_container(&bad)
        .expect("RemoveContainer of the exited container");
    assert!(
        c.cri().container_status(&bad, false).is_err(),
        "removed container is gone"
    );
    assert_eq!(one_shim(c, "after removing the exited container"), shim);
    assert!(procfs::alive(pa) && procfs::alive(pb));

    // StopContainer on one sibling: EXITED (by SIGTERM → 143, or SIGKILL → 137), the other runs.
    c.cri().stop_container(&a, 2).expect("StopContainer");
    let sa = c.wait_container_state(&a, ContainerState::ContainerExited, T);
    assert!(
        matches!(sa.exit_code, 137 | 143),
        "a stopped `sleep` exits by signal: {}",
        describe_status(&sa)
    );
    let sb = c.container_status(&b).status.expect("status");
    assert_eq!(
        sb.state,
        ContainerState::ContainerRunning as i32,
        "{}",
        describe_status(&sb)
    );
    assert_eq!(one_shim(c, "after stopping one sibling"), shim);

    let mut fp = fp_running;
    fp.container_ids.push(bad);
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
}
per_version_cri!(exit_code_while_siblings_run);
