//! Issue 17: the shim is the pod (containerd 2.x, runtime entry with `sandboxer = "shim"`):
//! CRI calls mypod's Sandbox service instead of running a pause container.

use std::time::Duration;

use mypod_tests::cri::api::ContainerState;
use mypod_tests::cri_instance::SHIM_SANDBOXER;
use mypod_tests::{per_version_cri, procfs, ContainerBuilder, Containerd};

const T: Duration = Duration::from_secs(20);

/// A first look: a pod through the shim sandboxer runs a container.
fn shim_sandbox_pod(c: &Containerd) {
    let pod = c
        .run_pod_with_handler(c.pod("sb"), SHIM_SANDBOXER)
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}\n{}", c.log_tail(80)));
    let id = c.start_in_pod(&pod, &ContainerBuilder::new("app", &["sleep", "1000"]));
    c.wait_container_state(&id, ContainerState::ContainerRunning, T);
    let pid = c.container_pid(&id);
    eprintln!("container pid {pid}: {:?}", procfs::cmdline(pid));
    let r = c.exec_ok(&id, &["sh", "-c", "hostname; cat /etc/resolv.conf; ls -la /dev/shm; cat /proc/1/cmdline"]);
    eprintln!("{}", String::from_utf8_lossy(&r.stdout));
    c.stop_and_remove_pod(&pod);
}
per_version_cri!(shim_sandbox_pod: v2_1);
