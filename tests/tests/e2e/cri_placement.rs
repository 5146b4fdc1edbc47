//! Issue 16: where a CRI pod sits on the host. A cgroup parent ending in `.slice` (which
//! containerd's CRI turns into systemd's `slice:cri-containerd:ID` form whatever the runtime),
//! and bidirectional mount propagation (Kubernetes `mountPropagation: Bidirectional`, what CSI
//! node plugins use) next to HostToContainer (`rslave`).

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mypod_tests::cri::api::ContainerState;
use mypod_tests::{cleanup, per_version_cri, procfs, ContainerBuilder, Containerd};

const T: Duration = Duration::from_secs(20);

/// cgroup directories a test made through the runtime, removed (after SIGKILLing what is still
/// in them) when the test ends, also when it fails: they sit below containerd's own cgroup,
/// where the harness's teardown does not look.
struct CgroupDirs(Vec<PathBuf>);

impl Drop for CgroupDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            if !d.exists() {
                continue;
            }
            let pids: Vec<u32> = fs::read_to_string(d.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            for p in &pids {
                procfs::signal(*p, libc::SIGKILL);
            }
            for _ in 0..100 {
                if fs::remove_dir(d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// The mount point of the hierarchy a /proc/PID/cgroup line names (`""`: the cgroup2 one).
fn hierarchy_mount(ctrls: &str) -> PathBuf {
    if ctrls.is_empty() {
        let unified = Path::new("/sys/fs/cgroup/unified");
        if unified.is_dir() {
            return unified.to_path_buf();
        }
        return PathBuf::from("/sys/fs/cgroup");
    }
    Path::new("/sys/fs/cgroup").join(ctrls.trim_start_matches("name="))
}

/// (controllers, path) of each line of /proc/PID/cgroup.
fn cgroups_of(pid: u32) -> Vec<(String, String)> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/cgroup: {e}"))
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            Some((c.to_string(), p.to_string()))
        })
        .collect()
}

/// A pod whose cgroup parent ends in `.slice`, on a host where systemd does not run (this
/// machine): RunPodSandbox works and the pod's containers run. containerd's CRI turns the
/// parent into `NAME.slice:cri-containerd:ID` for the sandbox and each container; without
/// systemd that string is one literal cgroupfs directory below the shim's own cgroup (which is
/// containerd's), as runc-v2's cgroupfs driver places it, in every hierarchy. Where systemd
/// runs, it is expanded to the scope systemd's driver gives it. Everything is removed with the
/// pod. (Passes for runc-v2 too: MYPOD_TEST_RUNTIME=runc.)
fn slice_cgroup_parent(c: &Containerd) {
    let slice = format!("{}.slice", c.namespace().replace('-', "_"));
    let systemd = Path::new("/run/systemd/system").is_dir();
    let containerd = c.pid().expect("containerd runs");
    let own = cgroups_of(containerd);
    let pod = c.run_pod_ok(
        c.pod("slice")
            .cgroup_parent(&format!("/{}/{slice}", c.namespace())),
    );
    let mut guard = CgroupDirs(Vec::new());
    let app = c.start_in_pod(&pod, &ContainerBuilder::new("app", &["sleep", "1000"]));
    c.wait_container_state(&app, ContainerState::ContainerRunning, T);
    let mut fp = c.footprint(&pod, std::slice::from_ref(&app));
    fp.cgroups.clear();
    for (id, pid) in [
        (pod.id.clone(), c.sandbox_pid(&pod.id)),
        (app.clone(), c.container_pid(&app)),
    ] {
        let got = cgroups_of(pid);
        for (ctrls, path) in &got {
            let want = if systemd {
                format!("/{slice}/cri-containerd-{id}.scope")
            } else {
                let base = own
                    .iter()
                    .find(|(o, _)| o == ctrls)
                    .map(|(_, p)| p.trim_end_matches('/').to_string())
                    .unwrap_or_else(|| panic!("containerd has no {ctrls:?} cgroup: {own:?}"));
                format!("{base}/{slice}:cri-containerd:{id}")
            };
            if systemd && (ctrls.starts_with("name=") || path == "/") {
                continue;
            }
            assert_eq!(
                path, &want,
                "{id} (pid {pid}) in {ctrls:?}: /proc/{pid}/cgroup = {got:?}; containerd's: {own:?}"
            );
            let dir = hierarchy_mount(ctrls).join(path.trim_start_matches('/'));
            assert!(dir.is_dir(), "{} should exist", dir.display());
            guard.0.push(dir);
        }
        fp.cgroups.push(format!("{slice}:cri-containerd:{id}"));
    }
    c.stop_and_remove_pod(&pod);
    c.assert_pod_gone(&fp, false, Duration::from_secs(10));
    for d in &guard.0 {
        assert!(!d.exists(), "{} should be gone with the pod", d.display());
    }
}
per_version_cri!(slice_cgroup_parent);

/// A host directory bind-mounted on itself and made a shared mount, as Kubernetes requires of
/// a Bidirectional volume's source; unmounted (with whatever is below it) when dropped.
struct SharedDir {
    dir: PathBuf,
}

impl SharedDir {
    fn new(c: &Containerd, name: &str) -> SharedDir {
        let dir = c.dir().join(name);
        fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            let out = std::process::Command::new("mount")
                .args(args)
                .output()
                .expect("mount");
            assert!(
                out.status.success(),
                "mount {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let d = dir.to_str().unwrap();
        let shared = SharedDir { dir: dir.clone() };
        run(&["--bind", d, d]);
        run(&["--make-private", d]);
        run(&["--make-shared", d]);
        shared
    }

    fn path(&self) -> &str {
        self.dir.to_str().unwrap()
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = cleanup::unmount_under(&self.dir);
    }
}

/// Mounts a fresh tmpfs at `point` (created) on the host.
fn host_tmpfs(point: &Path) {
    fs::create_dir_all(point).unwrap();
    let out = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "none"])
        .arg(point)
        .output()
        .expect("mount");
    assert!(
        out.status.success(),
        "mount tmpfs on {}: {}",
        point.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether the host's mount table has a mount at `point`.
fn host_mounted(point: &Path) -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4).map(Path::new) == Some(point))
}

/// `mountPropagation: Bidirectional` (CRI PROPAGATION_BIDIRECTIONAL, which containerd turns
/// into an `rshared` bind and `rootfsPropagation: rshared`; Kubernetes allows it only in
/// privileged containers, so mypod refuses it under its defaults and serves it under the
/// compat entry): a tmpfs mounted on the host below the volume appears in the container, and
/// one the container mounts below the volume appears on the host, as with runc-v2; the
/// container's own mounts (/proc, /dev, ...) do not leak to the host. HostToContainer
/// (`rslave`), under mypod's defaults: the host's mount appears in the container, the
/// container cannot mount there (no privilege), and nothing flows back. Under mypod's
/// defaults a Bidirectional volume is refused with an error that names it and host_access
/// (the pod's user namespace could not propagate a mount to the host).
fn mount_propagation(c: &Containerd) {
    use mypod_tests::cri::api::{self, MountPropagation};
    let vol = SharedDir::new(c, "bidi");
    if c.is_mypod() {
        let pod = c.run_pod_ok(c.pod("bidi-dflt"));
        let mut cfg = ContainerBuilder::new("csi", &["sleep", "1000"])
            .mount(vol.path(), "/vol")
            .build(&pod.builder);
        cfg.mounts[0].propagation = MountPropagation::PropagationBidirectional as i32;
        let res = c
            .cri()
            .create_container(&pod.id, &cfg, &pod.config)
            .and_then(|id| c.cri().start_container(&id));
        let err = res
            .expect_err("a Bidirectional volume under mypod's defaults should be refused")
            .to_string();
        for w in ["propagate back to the host", "/vol", "host_access"] {
            assert!(err.contains(w), "the error should name {w:?}: {err}");
        }
        c.stop_and_remove_pod(&pod);
    }
    let handler = c.cri_compat_handler();
    let pod = c
        .run_pod_with_handler(c.pod("bidi").privileged(true), handler)
        .unwrap_or_else(|e| panic!("RunPodSandbox bidi ({handler}): {e}"));
    let mut cfg = ContainerBuilder::new("csi", &["sleep", "1000"])
        .mount(vol.path(), "/vol")
        .privileged(true)
        .build(&pod.builder);
    cfg.mounts[0].propagation = MountPropagation::PropagationBidirectional as i32;
    let csi = c
        .cri()
        .create_container(&pod.id, &cfg, &pod.config)
        .unwrap_or_else(|e| panic!("CreateContainer csi: {e}"));
    c.cri()
        .start_container(&csi)
        .unwrap_or_else(|e| panic!("StartContainer csi: {e}"));
    c.note_shim_sockets();
    c.wait_container_state(&csi, ContainerState::ContainerRunning, T);
    let sh = |id: &str, script: &str| -> (i32, String) {
        let r = c.exec_ok(id, &["sh", "-c", script]);
        (
            r.exit_code,
            format!(
                "{}{}",
                String::from_utf8_lossy(&r.stdout),
                String::from_utf8_lossy(&r.stderr)
            ),
        )
    };

    // Host → container.
    let from_host = vol.dir.join("from-host");
    host_tmpfs(&from_host);
    fs::write(from_host.join("marker"), "host-side").unwrap();
    let (code, out) = sh(&csi, "cat /vol/from-host/marker");
    assert_eq!(
        (code, out.trim()),
        (0, "host-side"),
        "Bidirectional: the host's new mount should appear in the container"
    );

    // Container → host.
    let (code, out) = sh(
        &csi,
        "mkdir -p /vol/from-ctr && mount -t tmpfs none /vol/from-ctr && echo ctr-side > /vol/from-ctr/marker",
    );
    assert_eq!(code, 0, "mount in the privileged container: {out}");
    let from_ctr = vol.dir.join("from-ctr");
    assert!(
        host_mounted(&from_ctr),
        "Bidirectional: the container's mount should appear on the host at {}",
        from_ctr.display()
    );
    assert_eq!(
        fs::read_to_string(from_ctr.join("marker"))
            .unwrap_or_default()
            .trim(),
        "ctr-side"
    );
    // The container's setup mounts stayed inside: nothing of it is mounted below its bundle's
    // rootfs on the host except the rootfs itself.
    let rootfs_leaks: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| p.contains(&csi) && p.contains("/rootfs/"))
        .collect();
    assert!(
        rootfs_leaks.is_empty(),
        "the container's own mounts propagated to the host: {rootfs_leaks:?}"
    );

    // HostToContainer under mypod's defaults (and runc's): the host's mounts flow in only.
    let slave_vol = SharedDir::new(c, "h2c");
    let pod2 = c.run_pod_ok(c.pod("h2c"));
    let mut cfg = ContainerBuilder::new("reader", &["sleep", "1000"])
        .mount(slave_vol.path(), "/vol")
        .build(&pod2.builder);
    cfg.mounts[0].propagation = api::MountPropagation::PropagationHostToContainer as i32;
    let reader = c
        .cri()
        .create_container(&pod2.id, &cfg, &pod2.config)
        .unwrap_or_else(|e| panic!("CreateContainer reader: {e}"));
    c.cri()
        .start_container(&reader)
        .unwrap_or_else(|e| panic!("StartContainer reader: {e}"));
    c.note_shim_sockets();
    c.wait_container_state(&reader, ContainerState::ContainerRunning, T);
    let late = slave_vol.dir.join("late");
    host_tmpfs(&late);
    fs::write(late.join("marker"), "late").unwrap();
    let (code, out) = sh(&reader, "cat /vol/late/marker");
    assert_eq!(
        (code, out.trim()),
        (0, "late"),
        "HostToContainer: the host's new mount should appear in the container"
    );
    let (code, _) = sh(&reader, "mkdir -p /vol/x && mount -t tmpfs none /vol/x");
    assert_ne!(code, 0, "an unprivileged container cannot mount");
    assert!(!host_mounted(&slave_vol.dir.join("x")));

    let fp = c.footprint(&pod, std::slice::from_ref(&csi));
    let fp2 = c.footprint(&pod2, std::slice::from_ref(&reader));
    c.stop_and_remove_pod(&pod);
    c.stop_and_remove_pod(&pod2);
    c.assert_pod_gone(&fp, true, Duration::from_secs(10));
    c.assert_pod_gone(&fp2, false, Duration::from_secs(10));
}
per_version_cri!(mount_propagation);
