//! CRI requests, as the kubelet sends them, for ids that do not exist, and with absurd
//! values for a running container: each answered in time with an error naming the id or
//! the field; the pod's running container is unharmed (same pid, answers ExecSync, same
//! shim).

use std::time::Duration;

use mypod_tests::cri::api::{ContainerState, LinuxContainerResources};
use mypod_tests::cri::CriResult;
use mypod_tests::{per_version_cri, ContainerBuilder, Containerd, Pod, Version};

use super::{assert_says, row, NEVER_A_HANG};

const GHOST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct CriSibling<'a> {
    c: &'a Containerd,
    pod: Pod,
    id: String,
    pid: u32,
    shim: u32,
}

impl CriSibling<'_> {
    fn assert_unharmed(&self) {
        let c = self.c;
        assert_eq!(
            c.container_pid(&self.id),
            self.pid,
            "the sibling's pid changed"
        );
        let st = c.container_status(&self.id).status.expect("status");
        assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{st:?}");
        let out = c.exec_ok(&self.id, &["echo", "alive"]);
        assert_eq!(mypod_tests::cri_instance::stdout_of(&out), "alive\n");
        assert_eq!(
            c.sandbox_shim_pid(&self.pod.id),
            Some(self.shim),
            "the pod's shim"
        );
        assert!(
            mypod_tests::procfs::alive(self.shim),
            "the pod's shim {} died",
            self.shim
        );
    }
}

fn refused<T: std::fmt::Debug>(s: &CriSibling, sent: &str, res: CriResult<T>, needles: &[&str]) {
    let err = match res {
        Ok(v) => panic!("{sent}: accepted: {v:?}"),
        Err(e) => e,
    };
    row(
        "cri",
        sent,
        &format!("{:?}: {}", err.code, err.message),
        err.elapsed,
    );
    assert!(
        !err.timed_out && err.elapsed < NEVER_A_HANG,
        "{sent}: {err}"
    );
    assert_says(sent, &err.message, err.elapsed, needles);
    s.assert_unharmed();
}

fn unknown_ids_and_absurd_updates(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("rows"));
    let id = c.start_in_pod(&pod, &ContainerBuilder::new("app", &["sleep", "100000"]));
    c.wait_container_state(
        &id,
        ContainerState::ContainerRunning,
        Duration::from_secs(30),
    );
    let shim = c.sandbox_shim_pid(&pod.id).expect("the pod's shim");
    let s = CriSibling {
        c,
        pid: c.container_pid(&id),
        pod,
        id: id.clone(),
        shim,
    };
    let cri = c.cri();

    refused(
        &s,
        "ContainerStatus of an unknown container id",
        cri.container_status(GHOST, false),
        &[GHOST],
    );
    refused(
        &s,
        "StartContainer of an unknown container id",
        cri.start_container(GHOST),
        &[GHOST],
    );
    // CRI asks StopContainer to be idempotent: containerd 1.7 and later answer OK for an id
    // it does not know; 1.6 says NotFound.
    let stop = cri.stop_container(GHOST, 10);
    if c.version() == Version::V1_6 {
        refused(
            &s,
            "StopContainer of an unknown container id",
            stop,
            &[GHOST],
        );
    } else {
        assert!(
            stop.is_ok(),
            "StopContainer of an unknown id on 1.7+: {stop:?}"
        );
        s.assert_unharmed();
    }
    refused(
        &s,
        "ExecSync in an unknown container id",
        cri.exec_sync(GHOST, &["true"], 10),
        &[GHOST],
    );
    refused(
        &s,
        "PodSandboxStatus of an unknown pod id",
        cri.pod_sandbox_status(GHOST, false),
        &["sandbox", "not found"],
    );
    refused(
        &s,
        "StartContainer of the running container again",
        cri.start_container(&id),
        &[&id],
    );
    let mut r = LinuxContainerResources {
        memory_limit_in_bytes: -5,
        ..Default::default()
    };
    refused(
        &s,
        "UpdateContainerResources memory_limit_in_bytes -5",
        cri.update_container_resources(&id, &r),
        &["memory.limit", "-5"],
    );
    r.memory_limit_in_bytes = 0;
    r.cpu_shares = 1 << 40;
    refused(
        &s,
        "UpdateContainerResources cpu_shares 2^40",
        cri.update_container_resources(&id, &r),
        &["cpu.shares"],
    );
    r.cpu_shares = 0;
    r.cpuset_cpus = "0-99999".into();
    refused(
        &s,
        "UpdateContainerResources cpuset_cpus \"0-99999\"",
        cri.update_container_resources(&id, &r),
        &["cpuset.cpus"],
    );
    r.cpuset_cpus = String::new();
    refused(
        &s,
        "UpdateContainerResources of an unknown container id",
        cri.update_container_resources(GHOST, &r),
        &["container", "not found"],
    );

    c.stop_and_remove_pod(&s.pod);
}
per_version_cri!(unknown_ids_and_absurd_updates);
