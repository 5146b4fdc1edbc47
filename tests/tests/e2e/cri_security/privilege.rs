//! How much a container may do beyond its capabilities: privileged, no_new_privs, seccomp
//! profiles.

use std::path::Path;

use mypod_tests::caps::{self, DEFAULT_MASK};
use mypod_tests::cri::api::{security_profile::ProfileType, SecurityProfile};
use mypod_tests::{procfs, ContainerBuilder, Containerd, Pod};

use super::{
    assert_field_both, caps_of, container_config, field, hex, kubelet_paths, pod_sc,
    refused_under_defaults, sh, sleeper, spec_paths, stop_pod, try_run_pod_with,
};

/// The host's (this test process') capability mask of set `name`.
fn host_caps(name: &str) -> u64 {
    let st = procfs::status(std::process::id()).expect("own status");
    caps::parse_hex(field(&st, name))
}

/// privileged: refused under mypod's defaults, with an error naming it and host_access.
/// Under the compat entry (the pod must be privileged too): every capability containerd has (the host's
/// bounding set) in all but the inheritable and ambient sets, no seccomp, /sys and /proc/sys
/// writable mounts, the kubelet's masked paths ignored (/proc/timer_list not masked), the
/// host's devices (here /dev/kmsg and loop devices) visible. A non-privileged sibling with the
/// same (kubelet) config has none of that.
pub(super) fn privileged(c: &Containerd) {
    refused_under_defaults(
        c,
        "priv-dflt",
        |cfg| pod_sc(cfg).privileged = true,
        |sc| {
            kubelet_paths(sc);
            sc.privileged = true;
        },
        &["privileged"],
    );
    // What runc does, under the compat runtime entry.
    let compat = c.cri_compat_handler();
    let pod = try_run_pod_with(c, c.pod("priv"), compat, |cfg| {
        pod_sc(cfg).privileged = true
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let host_bnd = host_caps("CapBnd");
    let p = sleeper(c, &pod, "priv", |sc| {
        kubelet_paths(sc);
        sc.privileged = true;
    });
    let [inh, prm, eff, bnd, amb] = caps_of(c, &p);
    for (set, got) in [("CapPrm", prm), ("CapEff", eff), ("CapBnd", bnd)] {
        assert_eq!(
            got,
            host_bnd,
            "privileged {set} = the host's bounding set: {} (host {})",
            hex(got),
            hex(host_bnd)
        );
    }
    assert_eq!((inh, amb), (0, 0));
    assert_field_both(c, &p, "Seccomp", "0", "privileged");

    let mount_opts = |id: &str, point: &str| -> Option<String> {
        let (_, mi) = sh(c, id, "cat /proc/self/mountinfo");
        mi.lines()
            .find(|l| l.split_whitespace().nth(4) == Some(point))
            .and_then(|l| l.split_whitespace().nth(5).map(str::to_string))
    };
    let ro = |opts: &Option<String>| {
        opts.as_deref()
            .is_some_and(|o| o.split(',').any(|x| x == "ro"))
    };
    let sys = mount_opts(&p, "/sys");
    assert!(
        sys.is_some() && !ro(&sys),
        "privileged: /sys is mounted read-write: {sys:?}"
    );
    let proc_sys = mount_opts(&p, "/proc/sys");
    assert!(
        !ro(&proc_sys),
        "privileged: /proc/sys is not read-only: {proc_sys:?}"
    );
    let (_, masked) = sh(c, &p, "stat -c %F /proc/timer_list");
    assert!(
        masked.starts_with("regular"),
        "privileged: /proc/timer_list is not masked: {masked:?} ({})",
        spec_paths(c, &p)
    );
    let host_devs: Vec<&str> = ["kmsg", "loop0", "loop-control", "fuse"]
        .into_iter()
        .filter(|d| Path::new("/dev").join(d).exists())
        .collect();
    assert!(
        !host_devs.is_empty(),
        "the host has none of the probe devices"
    );
    for d in &host_devs {
        let (code, out) = sh(c, &p, &format!("test -c /dev/{d} || test -b /dev/{d}"));
        assert_eq!(code, 0, "privileged: the host's /dev/{d} is visible: {out}");
    }

    let u = sleeper(c, &pod, "unpriv", kubelet_paths);
    let sys = mount_opts(&u, "/sys");
    assert!(ro(&sys), "not privileged: /sys is read-only: {sys:?}");
    let proc_sys = mount_opts(&u, "/proc/sys");
    assert!(
        ro(&proc_sys),
        "not privileged: /proc/sys is read-only: {proc_sys:?}"
    );
    let (_, masked) = sh(c, &u, "stat -c %F /proc/timer_list");
    assert_eq!(masked.trim(), "character special file", "not privileged");
    for d in &host_devs {
        let (code, _) = sh(c, &u, &format!("test -e /dev/{d}"));
        assert_ne!(code, 0, "not privileged: /dev/{d} must not be visible");
    }
    assert_eq!(caps_of(c, &u)[2], DEFAULT_MASK);

    // A privileged container needs a privileged pod.
    let plain_pod = c
        .run_pod_with_handler(c.pod("unpriv-pod"), compat)
        .unwrap_or_else(|e| panic!("RunPodSandbox unpriv-pod: {e}"));
    let config = container_config(
        &plain_pod,
        &ContainerBuilder::new("priv", &["sleep", "1000"]),
        |sc| sc.privileged = true,
    );
    let res = c
        .cri()
        .create_container(&plain_pod.id, &config, &plain_pod.config);
    assert!(
        res.is_err(),
        "a privileged container in a non-privileged pod must be refused: {res:?}"
    );
    stop_pod(c, &plain_pod);
    stop_pod(c, &pod);
}

/// no_new_privs: NoNewPrivs 1 with it, 0 without (CRI's default), in the container's process
/// and in an exec.
pub(super) fn no_new_privs(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("nnp"));
    let on = sleeper(c, &pod, "on", |sc| sc.no_new_privs = true);
    assert_field_both(c, &on, "NoNewPrivs", "1", "no_new_privs = true");
    let off = sleeper(c, &pod, "off", |_| {});
    assert_field_both(c, &off, "NoNewPrivs", "0", "no_new_privs unset");
    stop_pod(c, &pod);
}

fn profile(t: ProfileType) -> Option<SecurityProfile> {
    Some(SecurityProfile {
        profile_type: t as i32,
        localhost_ref: String::new(),
    })
}

/// seccomp: RuntimeDefault puts one filter in place (Seccomp: 2) that denies `unshare -U`
/// (allowed by the kernel without any capability). Unconfined and the CRI default (no
/// profile) both reach the runtime as a spec without `linux.seccomp`: under mypod's defaults
/// that gets mypod's profile (Seccomp: 2, `unshare -U` denied); under runc, and under mypod's
/// compat entry, seccomp stays off (Seccomp: 0) and `unshare -U` works.
pub(super) fn seccomp_profiles(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("seccomp"));
    let rd = sleeper(c, &pod, "default", |sc| {
        sc.seccomp = profile(ProfileType::RuntimeDefault)
    });
    assert_field_both(c, &rd, "Seccomp", "2", "RuntimeDefault");
    assert_field_both(c, &rd, "Seccomp_filters", "1", "RuntimeDefault");
    let (code, out) = sh(c, &rd, "unshare -U true");
    assert_ne!(
        code, 0,
        "RuntimeDefault denies unshare(CLONE_NEWUSER): {out}"
    );
    assert!(out.contains("Operation not permitted"), "EPERM: {out}");

    let unconfined_and_unset = |pod: &Pod, filtered: bool, entry: &str| {
        let unconfined = sleeper(c, pod, "unconfined", |sc| {
            sc.seccomp = profile(ProfileType::Unconfined)
        });
        let unset = sleeper(c, pod, "unset", |_| {});
        for (id, what) in [(&unconfined, "Unconfined"), (&unset, "no profile")] {
            let what = format!("{what} ({entry})");
            let (code, out) = sh(c, id, "unshare -U true");
            if filtered {
                assert_field_both(c, id, "Seccomp", "2", &what);
                assert_ne!(code, 0, "{what}: mypod's profile denies unshare -U: {out}");
                assert!(out.contains("Operation not permitted"), "EPERM: {out}");
            } else {
                assert_field_both(c, id, "Seccomp", "0", &what);
                assert_eq!(code, 0, "{what}: unshare -U works: {out}");
            }
        }
    };
    unconfined_and_unset(&pod, c.is_mypod(), "default entry");
    stop_pod(c, &pod);
    if c.is_mypod() {
        let compat = c
            .run_pod_with_handler(c.pod("seccomp-compat"), c.cri_compat_handler())
            .unwrap_or_else(|e| panic!("RunPodSandbox seccomp-compat: {e}"));
        unconfined_and_unset(&compat, false, "compat entry");
        stop_pod(c, &compat);
    }
}
