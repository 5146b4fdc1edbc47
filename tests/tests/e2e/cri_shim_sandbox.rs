//! Issue 17: the shim is the pod (containerd 2.x, runtime entry with `sandboxer = "shim"`):
//! CRI calls mypod's Sandbox service instead of running a pause container. The instance's
//! sandbox image is a broken one, so a pod that needed a pause container could not start.

use std::fs;
use std::path::Path;
use std::time::Duration;

use mypod_tests::cri::api::{ContainerState, DnsConfig};
use mypod_tests::cri::sandbox_state_name;
use mypod_tests::cri_instance::{SandboxImage, SHIM_SANDBOXER};
use mypod_tests::{per_version_cri, procfs, ContainerBuilder, Containerd, Pod, PodBuilder};

const T: Duration = Duration::from_secs(20);

fn no_pause_image(b: mypod_tests::containerd::Builder) -> mypod_tests::containerd::Builder {
    b.sandbox_image(SandboxImage::Broken)
}

/// RunPodSandbox of `b` (with a DNS config) under the shim sandboxer.
fn run_pod(c: &Containerd, b: PodBuilder) -> Result<Pod, String> {
    let mut config = b.build();
    config.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["ns1.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    let id = c
        .cri()
        .run_pod_sandbox(&config, SHIM_SANDBOXER)
        .map_err(|e| format!("RunPodSandbox {}: {e}", b.name))?;
    c.note_shim_sockets();
    Ok(Pod {
        id,
        builder: b,
        config,
        handler: SHIM_SANDBOXER.to_string(),
    })
}

/// `sh -c SCRIPT` in `id`: stdout, panicking unless it exits 0.
fn sh(c: &Containerd, id: &str, script: &str) -> String {
    let r = c.exec_ok(id, &["sh", "-c", script]);
    let out = String::from_utf8_lossy(&r.stdout).into_owned();
    assert_eq!(
        r.exit_code,
        0,
        "{script}: {out}{}",
        String::from_utf8_lossy(&r.stderr)
    );
    out
}

/// The pod holder: the shim's child that is none of `containers`' processes (nor the
/// shim's zygote).
fn holder_of(shim: u32, containers: &[u32]) -> u32 {
    let kids: Vec<u32> = procfs::children_but_zygote(shim)
        .into_iter()
        .filter(|p| !containers.contains(p))
        .collect();
    assert_eq!(kids.len(), 1, "one pod holder under shim {shim}: {kids:?}");
    kids[0]
}

fn ns(pid: u32, which: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{which}"))
        .map(|l| l.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{which}: {e}"))
}

/// Mount points on the host that mention `id`.
fn mounts_of(id: &str) -> Vec<String> {
    procfs::mount_points()
        .into_iter()
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.contains(id))
        .collect()
}

/// A pod of two containers under the shim sandboxer, with no pause image available: the
/// pod is READY with the holder's pid, one shim serves it and no pause process runs; both
/// containers share net, ipc and uts with the holder, see the pod's hostname, its DNS config
/// in resolv.conf and one /dev/shm, and the pod's sysctls (and CRI's defaults for pause
/// pods); exec, logs and stats work; StopPodSandbox makes it NOTREADY (WaitSandbox
/// returned); RemovePodSandbox leaves no shim, holder, mount, bundle or cgroup.
fn pod_without_pause(c: &Containerd) {
    let pod = run_pod(
        c,
        c.pod("sb")
            .hostname("web-0")
            .sysctl("kernel.shm_rmid_forced", "1"),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", c.log_tail(40)));
    let st = c.sandbox_status(&pod.id);
    let status = st.status.clone().expect("status");
    assert_eq!(sandbox_state_name(status.state), "SANDBOX_READY");
    assert!(status.created_at > 0, "created_at is set: {status:?}");
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "one shim for the pod: {shims:?}");
    let shim = shims[0];

    let a = c.start_in_pod(
        &pod,
        &ContainerBuilder::new("a", &["sh", "-c", "echo hello-from-a; exec sleep 1000"]),
    );
    let b = c.start_in_pod(&pod, &ContainerBuilder::new("b", &["sleep", "1000"]));
    c.wait_container_state(&a, ContainerState::ContainerRunning, T);
    c.wait_container_state(&b, ContainerState::ContainerRunning, T);
    let (pa, pb) = (c.container_pid(&a), c.container_pid(&b));
    // The sandbox's `start` answered shim API version 3, so containerd created the
    // containers on its socket without running `start` for them: their bundles have the
    // bootstrap.json containerd wrote (version 3), no `address` (which `start` writes), and
    // the `shim.pid` Create writes (for `delete`) naming the pod's shim.
    for id in [&a, &b] {
        let bundle = c
            .state_dir()
            .join("io.containerd.runtime.v2.task/k8s.io")
            .join(id);
        let boot = fs::read_to_string(bundle.join("bootstrap.json"))
            .unwrap_or_else(|e| panic!("{id}: bootstrap.json: {e}"));
        let v: serde_json::Value = serde_json::from_str(&boot).expect("bootstrap.json");
        assert_eq!(v["version"], 3, "{id}: {boot}");
        assert!(
            !bundle.join("address").exists(),
            "{id}: containerd ran `start` for a container of a version-3 sandbox"
        );
        let owner = fs::read_to_string(bundle.join("shim.pid")).unwrap_or_default();
        assert_eq!(owner.trim(), shim.to_string(), "{id}: shim.pid");
    }
    assert_eq!(
        c.shim_pids(),
        vec![shim],
        "the containers are served by the pod's shim"
    );
    let holder = holder_of(shim, &[pa, pb]);
    // (Other tests' pods may run pause processes: only this instance's shim's are looked at.)
    for p in procfs::pids()
        .into_iter()
        .filter(|&p| procfs::ppid(p) == Some(shim))
    {
        let cmd = procfs::cmdline(p).unwrap_or_default();
        assert!(!cmd.contains("/pause"), "no pause process: {p} {cmd}");
    }
    for which in ["net", "ipc", "uts"] {
        assert_eq!(
            ns(pa, which),
            ns(holder, which),
            "a shares {which} with the holder"
        );
        assert_eq!(
            ns(pb, which),
            ns(holder, which),
            "b shares {which} with the holder"
        );
    }
    assert_ne!(
        ns(pa, "net"),
        ns(std::process::id(), "net"),
        "not the host's network"
    );

    assert_eq!(sh(c, &a, "hostname").trim(), "web-0");
    assert_eq!(sh(c, &b, "cat /etc/hostname").trim(), "web-0");
    assert_eq!(
        sh(c, &a, "cat /etc/resolv.conf"),
        "search ns1.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    sh(c, &a, "echo shared > /dev/shm/probe");
    assert_eq!(
        sh(c, &b, "cat /dev/shm/probe").trim(),
        "shared",
        "one /dev/shm"
    );
    assert_eq!(
        sh(c, &b, "cat /proc/sys/kernel/shm_rmid_forced").trim(),
        "1",
        "the pod's sysctl"
    );
    assert_eq!(
        sh(c, &b, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start").trim(),
        "0",
        "CRI's default sysctl for a pod"
    );
    // Logs and stats.
    let log = pod.log_directory().join("a/0.log");
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("hello-from-a"), "{}: {text:?}", log.display());
    let stats = c
        .cri()
        .list_container_stats(None)
        .expect("ListContainerStats");
    assert_eq!(stats.len(), 2, "{stats:?}");
    for s in &stats {
        let mem = s
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map_or(0, |v| v.value);
        assert!(mem > 0, "memory figures for {s:?}");
    }

    // Stop: the holder goes, the pod is NOTREADY once WaitSandbox has returned.
    let bundle = c
        .state_dir()
        .join("io.containerd.sandbox.controller.v1.shim/k8s.io")
        .join(&pod.id);
    assert!(bundle.is_dir(), "{}", bundle.display());
    assert!(
        !mounts_of(&pod.id).is_empty(),
        "the pod's /dev/shm is mounted"
    );
    c.cri().stop_pod_sandbox(&pod.id).expect("StopPodSandbox");
    procfs::wait_gone(holder, T, "the pod holder after StopPodSandbox");
    let start = std::time::Instant::now();
    loop {
        let s = c.sandbox_status(&pod.id).status.expect("status");
        if sandbox_state_name(s.state) == "SANDBOX_NOTREADY" {
            break;
        }
        assert!(start.elapsed() < T, "still {}", sandbox_state_name(s.state));
        std::thread::sleep(Duration::from_millis(50));
    }
    c.cri()
        .remove_pod_sandbox(&pod.id)
        .expect("RemovePodSandbox");
    procfs::wait_gone(shim, T, "the pod's shim after RemovePodSandbox");
    assert!(c.shim_pids().is_empty());
    assert_eq!(mounts_of(&pod.id), Vec::<String>::new(), "no mount left");
    assert!(!bundle.exists(), "{} is removed", bundle.display());
    for h in ["memory", "pids", "cpu"] {
        let d = Path::new("/sys/fs/cgroup")
            .join(h)
            .join(pod.cgroup_of(&pod.id).trim_start_matches('/'));
        assert!(!d.exists(), "{} is removed", d.display());
    }
}
per_version_cri!(pod_without_pause with no_pause_image: v2_1);

/// shareProcessNamespace under the shim sandboxer: the holder is pid 1 of the pod's pid
/// namespace and the containers see each other's processes.
fn shared_pid_namespace(c: &Containerd) {
    let pod = run_pod(c, c.pod("pidns").share_pid(true)).unwrap_or_else(|e| panic!("{e}"));
    let shim = c.shim_pids()[0];
    let a = c.start_in_pod(&pod, &ContainerBuilder::new("a", &["sleep", "1001"]));
    let b = c.start_in_pod(&pod, &ContainerBuilder::new("b", &["sleep", "1002"]));
    c.wait_container_state(&a, ContainerState::ContainerRunning, T);
    c.wait_container_state(&b, ContainerState::ContainerRunning, T);
    let holder = holder_of(shim, &[c.container_pid(&a), c.container_pid(&b)]);
    let nspid = procfs::status(holder)
        .and_then(|s| procfs::status_field(&s, "NSpid").map(str::to_string))
        .unwrap_or_default();
    assert_eq!(
        nspid.split_whitespace().last(),
        Some("1"),
        "the holder is pid 1 in the pod: NSpid {nspid}"
    );
    assert_eq!(ns(c.container_pid(&a), "pid"), ns(holder, "pid"));
    let ps = sh(c, &a, "ps -o args");
    assert!(ps.contains("sleep 1002"), "a sees b's process: {ps}");
    c.stop_and_remove_pod(&pod);
}
per_version_cri!(shared_pid_namespace with no_pause_image: v2_1);

/// A CreateSandbox that fails (a DNS server value that would add lines to resolv.conf) is
/// a clear RunPodSandbox error, and leaves no shim, mount or bundle.
fn failed_create_leaves_nothing(c: &Containerd) {
    let b = c.pod("bad");
    let mut config = b.build();
    config.dns_config = Some(DnsConfig {
        servers: vec!["10.0.0.1\nnameserver 6.6.6.6".into()],
        ..Default::default()
    });
    let err = c
        .cri()
        .run_pod_sandbox(&config, SHIM_SANDBOXER)
        .expect_err("a hostile DNS server must be refused")
        .to_string();
    assert!(err.contains("dns server"), "a clear error: {err}");
    let start = std::time::Instant::now();
    while !c.shim_pids().is_empty() {
        assert!(
            start.elapsed() < T,
            "the shim outlived the failed pod: {:?}",
            c.shim_pids()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let dir = c
        .state_dir()
        .join("io.containerd.sandbox.controller.v1.shim/k8s.io");
    let left: Vec<_> = fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "bundles left: {left:?}");
    // This instance's sandbox bundles only: other tests' pods may run meanwhile.
    let ours = mounts_of(&dir.to_string_lossy());
    assert!(ours.is_empty(), "mounts left: {ours:?}");
}
per_version_cri!(failed_create_leaves_nothing with no_pause_image: v2_1);

/// containerd SIGKILLed and restarted: the pod stays READY, its container keeps running and
/// answering, and a new container still joins it through the same shim.
fn survives_containerd_restart(c: &mut Containerd) {
    let pod = run_pod(c, c.pod("rs")).unwrap_or_else(|e| panic!("{e}"));
    let shim = c.shim_pids()[0];
    let a = c.start_in_pod(&pod, &ContainerBuilder::new("a", &["sleep", "1000"]));
    c.wait_container_state(&a, ContainerState::ContainerRunning, T);
    let pa = c.container_pid(&a);
    c.restart(Duration::from_secs(1));
    let s = c.sandbox_status(&pod.id).status.expect("status");
    assert_eq!(sandbox_state_name(s.state), "SANDBOX_READY");
    assert_eq!(sh(c, &a, "echo alive").trim(), "alive");
    assert_eq!(c.container_pid(&a), pa);
    let b = c.start_in_pod(&pod, &ContainerBuilder::new("b", &["sleep", "1000"]));
    c.wait_container_state(&b, ContainerState::ContainerRunning, T);
    assert_eq!(c.shim_pids(), vec![shim], "still the one shim");
    c.stop_and_remove_pod(&pod);
    procfs::wait_gone(shim, T, "the pod's shim");
}
per_version_cri!(survives_containerd_restart with no_pause_image: v2_1);
