//! The pod's namespaces as the security context sets them: pod sysctls, host pid and IPC.

use std::fs;

use mypod_tests::cri::api::{self, NamespaceMode};
use mypod_tests::cri_instance::{host_ns, stderr_of, stdout_of};
use mypod_tests::Containerd;

use super::{pod_sc, refused_under_defaults, sh, sleeper, stop_pod, try_run_pod_with};

/// Pod sysctls: net.ipv4.ip_unprivileged_port_start (network namespace) and
/// kernel.shm_rmid_forced (IPC namespace) are set in the pod's namespaces, where its
/// containers read them; the host's values are untouched.
pub(super) fn pod_sysctls(c: &Containerd) {
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

/// Host PID and IPC namespaces (namespace_options pid/ipc = NODE): refused under mypod's
/// defaults, naming both and host_access. Under the compat entry: the container is in the
/// host's pid and IPC namespaces (those of the test process), sees the host's pid 1 and its
/// own host pid; its network namespace stays the pod's.
pub(super) fn host_pid_and_ipc(c: &Containerd) {
    let node = NamespaceMode::Node as i32;
    let host_ns_pod = |cfg: &mut api::PodSandboxConfig| {
        let ns = pod_sc(cfg)
            .namespace_options
            .get_or_insert_with(Default::default);
        ns.pid = node;
        ns.ipc = node;
    };
    refused_under_defaults(
        c,
        "hostns-dflt",
        host_ns_pod,
        |sc| {
            let ns = sc.namespace_options.get_or_insert_with(Default::default);
            ns.pid = node;
            ns.ipc = node;
        },
        &["pid namespace", "ipc namespace"],
    );
    // What runc does, under the compat runtime entry.
    let pod = try_run_pod_with(c, c.pod("hostns"), c.cri_compat_handler(), host_ns_pod)
        .unwrap_or_else(|e| panic!("{e}"));
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
