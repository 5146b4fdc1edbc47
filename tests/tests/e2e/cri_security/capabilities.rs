//! Capabilities: add, drop, drop ALL, and those of a non-root user.

use mypod_tests::caps::{self, DEFAULT_MASK};
use mypod_tests::cri::api::{Capability, Int64Value};
use mypod_tests::Containerd;

use super::{caps_of, hex, sh, sleeper, stop_pod};

/// Capabilities: by default containerd's 14 (`DEFAULT_MASK`) in the permitted, effective and
/// bounding sets; `add NET_ADMIN, drop CHOWN` changes exactly those two bits and `chown` fails;
/// `drop ALL` leaves nothing (chown fails); `drop ALL, add NET_BIND_SERVICE` leaves just that.
pub(super) fn capabilities_add_and_drop(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("caps"));
    let bit = |n: &str| 1u64 << caps::bit(n).expect("known capability");

    let plain = sleeper(c, &pod, "plain", |_| {});
    let [inh, prm, eff, bnd, amb] = caps_of(c, &plain);
    for (set, got) in [("CapPrm", prm), ("CapEff", eff), ("CapBnd", bnd)] {
        assert_eq!(got, DEFAULT_MASK, "default {set}: {}", hex(got));
    }
    assert_eq!((inh, amb), (0, 0), "no inheritable or ambient capabilities");
    let (code, out) = sh(c, &plain, "touch /f && chown 1000:1000 /f && stat -c %u /f");
    assert_eq!(
        (code, out.as_str()),
        (0, "1000\n"),
        "chown works with CAP_CHOWN"
    );

    let changed = sleeper(c, &pod, "changed", |sc| {
        sc.capabilities = Some(Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            drop_capabilities: vec!["CHOWN".into()],
            ..Default::default()
        })
    });
    let want = (DEFAULT_MASK | bit("CAP_NET_ADMIN")) & !bit("CAP_CHOWN");
    let [_, prm, eff, bnd, _] = caps_of(c, &changed);
    for (set, got) in [("CapPrm", prm), ("CapEff", eff), ("CapBnd", bnd)] {
        assert_eq!(
            got,
            want,
            "{set} with NET_ADMIN added and CHOWN dropped: {} (want {})",
            hex(got),
            hex(want)
        );
    }
    let (code, out) = sh(c, &changed, "touch /f && chown 1000 /f");
    assert_ne!(code, 0, "chown without CAP_CHOWN must fail: {out}");
    assert!(out.contains("Operation not permitted"), "EPERM: {out}");
    // Under mypod's defaults the pod's network namespace (made by CRI, owned by the host's
    // user namespace) is beyond NET_ADMIN in the pod's user namespace: the capability is
    // held, and acts on nothing there (docs/security.md). Without the sandbox defaults
    // (the compat runtime entry) it works, as under runc.
    let (code, out) = sh(c, &plain, "ip addr add 127.0.0.10/8 dev lo");
    assert_ne!(
        code, 0,
        "ip addr add without CAP_NET_ADMIN must fail: {out}"
    );
    let compat = c
        .run_pod_with_handler(c.pod("caps-compat"), c.cri_compat_handler())
        .unwrap_or_else(|e| panic!("RunPodSandbox with the compat handler: {e}"));
    let admin = sleeper(c, &compat, "admin", |sc| {
        sc.capabilities = Some(Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            ..Default::default()
        })
    });
    let (code, out) = sh(
        c,
        &admin,
        "ip addr add 127.0.0.9/8 dev lo && ip addr del 127.0.0.9/8 dev lo",
    );
    assert_eq!(
        code, 0,
        "ip addr add with CAP_NET_ADMIN (compat entry): {out}"
    );
    stop_pod(c, &compat);

    let none = sleeper(c, &pod, "none", |sc| {
        sc.capabilities = Some(Capability {
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        })
    });
    assert_eq!(caps_of(c, &none), [0; 5], "drop ALL leaves no capability");
    let (code, out) = sh(c, &none, "touch /f && chown 1000 /f");
    assert_ne!(code, 0, "chown after drop ALL must fail: {out}");

    let one = sleeper(c, &pod, "one", |sc| {
        sc.capabilities = Some(Capability {
            add_capabilities: vec!["NET_BIND_SERVICE".into()],
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        })
    });
    let want = bit("CAP_NET_BIND_SERVICE");
    let [inh, prm, eff, bnd, amb] = caps_of(c, &one);
    assert_eq!(
        [inh, prm, eff, bnd, amb],
        [0, want, want, want, 0],
        "drop ALL + add NET_BIND_SERVICE: Eff {}",
        hex(eff)
    );
    stop_pod(c, &pod);
}

/// Capabilities of a non-root user (run_as_user 1000, NET_ADMIN added): the bounding set is the
/// default one plus NET_ADMIN, nothing is permitted, effective, inheritable or ambient, in the
/// container's process and in an exec; NET_ADMIN cannot be used.
pub(super) fn capabilities_of_non_root_user(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("caps-user"));
    let user = sleeper(c, &pod, "user", |sc| {
        sc.run_as_user = Some(Int64Value { value: 1000 });
        sc.capabilities = Some(Capability {
            add_capabilities: vec!["NET_ADMIN".into()],
            ..Default::default()
        });
    });
    let [inh, prm, eff, bnd, amb] = caps_of(c, &user);
    let net_admin = 1u64 << caps::bit("CAP_NET_ADMIN").expect("known");
    assert_eq!(
        bnd,
        DEFAULT_MASK | net_admin,
        "the bounding set of a non-root user: {}",
        hex(bnd)
    );
    // execve(2) as a non-root uid without ambient capabilities leaves nothing permitted or
    // effective (as with runc): the added NET_ADMIN is only in the bounding set.
    assert_eq!(
        [inh, prm, eff, amb],
        [0; 4],
        "Inh/Prm/Eff/Amb of a non-root user: Prm {} Eff {}",
        hex(prm),
        hex(eff)
    );
    let (code, out) = sh(c, &user, "ip addr add 127.0.0.11/8 dev lo");
    assert_ne!(code, 0, "uid 1000 cannot use NET_ADMIN: {out}");
    stop_pod(c, &pod);
}
