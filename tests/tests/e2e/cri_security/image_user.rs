//! The user an image's config names (`User`): by name (resolved in the image's /etc/passwd)
//! and by number (`UID:GID`, `UID` alone with its group from /etc/passwd), with the
//! supplementary groups the image's /etc/group gives that user plus the pod's
//! `supplemental_groups`; and ImageStatus' `uid` / `username`, which is what the kubelet's
//! `runAsNonRoot` check reads (CRI has no runAsNonRoot field: the kubelet refuses an image whose
//! user is 0, or a name it cannot check).
//!
//! Two ways to ask, both checked: as the kubelet does (it copies ImageStatus' uid into
//! run_as_user, or its username into run_as_username, when the pod sets no user: so an image's
//! `UID:GID` loses its GID and the group comes from /etc/passwd, kubernetes#61967), and bare
//! CRI without a user (containerd applies the image's `User` itself; it looks the supplementary
//! groups up for that user only since containerd#8136, which 1.6.20 lacks: there the spec's
//! additionalGids are what the runtime must apply).
//!
//! The images are variants of the test image made here (`image::variant_tar`): a second layer
//! replaces /etc/passwd and /etc/group, and the config sets `User`.

use std::collections::BTreeSet;

use mypod_tests::cri::api::{self, Int64Value, LinuxContainerSecurityContext};
use mypod_tests::cri::verbose_info;
use mypod_tests::cri_instance::{stderr_of, stdout_of};
use mypod_tests::image::{variant_tar, Variant};
use mypod_tests::{ContainerBuilder, Containerd, Version, IMAGE};

use super::users::groups;
use super::{
    container_config, exec_status, field, init_status, pod_sc, start_config, stop_pod,
    try_run_pod_with,
};

/// The variants' /etc/passwd: the base image's users and `num` (1234, primary group 4321).
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
num:x:1234:4321:num:/tmp:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";

/// The variants' /etc/group: `app` is in `extra` (2000); `num` in `extra` and `more` (3000).
const GROUP: &str = "root:x:0:
app:x:1000:
extra:x:2000:app,num
more:x:3000:num
numgrp:x:4321:
nogroup:x:65534:
";

/// The pod's `securityContext.supplementalGroups`.
const POD_GROUP: u32 = 7001;

/// One image variant and what a container of it must run as.
struct Case {
    tag: &'static str,
    user: &'static str,
    uid: u32,
    /// The gid containerd gives the image's `User` (its `:GID`, else the user's in /etc/passwd).
    gid: u32,
    /// The gid under the kubelet, which passes the uid alone: the user's in /etc/passwd.
    kubelet_gid: u32,
    /// The user's groups in the image's /etc/group (besides its primary group).
    image_groups: &'static [u32],
    /// ImageStatus: `uid` (a numeric user) or `username` (a name).
    status_uid: Option<i64>,
    status_username: &'static str,
}

const CASES: [Case; 4] = [
    Case {
        tag: "user-app",
        user: "app",
        uid: 1000,
        gid: 1000,
        kubelet_gid: 1000,
        image_groups: &[2000],
        status_uid: None,
        status_username: "app",
    },
    Case {
        tag: "user-uid-gid",
        user: "1234:5678",
        uid: 1234,
        gid: 5678,
        kubelet_gid: 4321,
        image_groups: &[2000, 3000],
        status_uid: Some(1234),
        status_username: "",
    },
    Case {
        tag: "user-uid",
        user: "1234",
        uid: 1234,
        gid: 4321,
        kubelet_gid: 4321,
        image_groups: &[2000, 3000],
        status_uid: Some(1234),
        status_username: "",
    },
    Case {
        tag: "user-root",
        user: "0",
        uid: 0,
        gid: 0,
        kubelet_gid: 0,
        image_groups: &[],
        status_uid: Some(0),
        status_username: "",
    },
];

fn image_name(tag: &str) -> String {
    format!("docker.io/library/busybox:{tag}")
}

/// The kubelet's determineEffectiveSecurityContext for a pod without a user: the image's
/// user from ImageStatus, as run_as_user if numeric, else as run_as_username.
fn kubelet_user(img: &api::Image, sc: &mut LinuxContainerSecurityContext) {
    if let Some(uid) = &img.uid {
        sc.run_as_user = Some(Int64Value { value: uid.value });
    } else if !img.username.is_empty() {
        sc.run_as_username = img.username.clone();
    }
}

/// The spec's process.user.additionalGids of container `id`.
fn spec_groups(c: &Containerd, id: &str) -> BTreeSet<u32> {
    let info = verbose_info(&c.container_status(id).info);
    let gids = &info["runtimeSpec"]["process"]["user"]["additionalGids"];
    gids.as_array()
        .unwrap_or_else(|| panic!("no additionalGids in the spec: {gids}"))
        .iter()
        .map(|g| g.as_u64().expect("gid") as u32)
        .collect()
}

/// Container `id` runs as `uid`/`gid` with supplementary groups `want` (and maybe its primary
/// gid, which containerd ≥ 1.6.18 lists too: CVE-2023-25173): its own process (read on the
/// host through the pod's id maps), an exec'd one, and `id` inside.
fn assert_runs_as(c: &Containerd, id: &str, uid: u32, gid: u32, want: &BTreeSet<u32>, what: &str) {
    let ids = |n: u32| format!("{n}\t{n}\t{n}\t{n}");
    let mut with_primary = want.clone();
    with_primary.insert(gid);
    for (view, st) in [
        ("its process", init_status(c, id)),
        ("an exec", exec_status(c, id)),
    ] {
        assert_eq!(field(&st, "Uid"), ids(uid), "{what}: Uid of {view}");
        assert_eq!(field(&st, "Gid"), ids(gid), "{what}: Gid of {view}");
        let g = groups(&st);
        assert!(
            &g == want || g == with_primary,
            "{what}: Groups of {view} are {g:?}, want {want:?} (+ primary {gid})"
        );
    }
    for (flag, n) in [("-u", uid), ("-g", gid)] {
        let r = c.exec_ok(id, &["id", flag]);
        assert_eq!(
            stdout_of(&r).trim(),
            n.to_string(),
            "{what}: id {flag}: {}",
            stderr_of(&r)
        );
    }
    let r = c.exec_ok(id, &["id", "-G"]);
    let g: BTreeSet<u32> = stdout_of(&r)
        .split_whitespace()
        .map(|g| g.parse().expect("gid"))
        .collect();
    assert_eq!(g, with_primary, "{what}: `id -G` (primary + supplementary)");
}

/// Image USER by name and by number: ImageStatus reports it as the kubelet reads it (a number
/// in `uid`, a name in `username`, neither for the base image), and a container of each image
/// runs as it, with the image's /etc/group memberships and the pod's supplemental group —
/// asked for as the kubelet asks (user from ImageStatus) and through bare CRI (no user).
pub(super) fn image_config_user(c: &Containerd) {
    let dir = c.dir().join("images");
    let files = [("etc/passwd", PASSWD), ("etc/group", GROUP)];
    for case in &CASES {
        let name = image_name(case.tag);
        let v = Variant {
            name: &name,
            user: Some(case.user),
            files: &files,
        };
        c.cri_import_image(&variant_tar(&v, &dir), &name);
    }

    // What the kubelet's runAsNonRoot check reads.
    let base = c.cri().image_status(IMAGE).unwrap().expect("base image");
    assert_eq!(
        (base.uid, base.username.as_str()),
        (None, ""),
        "the base image names no user"
    );
    let mut images = Vec::new();
    for case in &CASES {
        let name = image_name(case.tag);
        let img = c.cri().image_status(&name).unwrap().expect("variant");
        assert_eq!(
            img.uid.as_ref().map(|u| u.value),
            case.status_uid,
            "ImageStatus uid of {name} (User {:?})",
            case.user
        );
        assert_eq!(
            img.username, case.status_username,
            "ImageStatus username of {name} (User {:?})",
            case.user
        );
        images.push(img);
    }

    let pod = try_run_pod_with(c, c.pod("imageuser"), c.cri_handler(), |config| {
        pod_sc(config).supplemental_groups = vec![POD_GROUP.into()]
    })
    .unwrap_or_else(|e| panic!("{e}"));
    for (case, img) in CASES.iter().zip(&images) {
        let want: BTreeSet<u32> = case
            .image_groups
            .iter()
            .copied()
            .chain([POD_GROUP])
            .collect();
        for kubelet in [true, false] {
            let name = format!("{}-{}", case.tag, if kubelet { "k" } else { "bare" });
            let b = ContainerBuilder::new(&name, &["sleep", "1000"]).image(&image_name(case.tag));
            let config = container_config(&pod, &b, |sc| {
                // The kubelet copies the pod's supplemental groups into each container's.
                sc.supplemental_groups = vec![POD_GROUP.into()];
                if kubelet {
                    kubelet_user(img, sc);
                }
            });
            let id = start_config(c, &pod, &config);
            let spec = spec_groups(c, &id);
            let what = format!(
                "image User {:?} ({})",
                case.user,
                if kubelet {
                    "as the kubelet asks"
                } else {
                    "bare CRI"
                }
            );
            eprintln!("{what}: spec additionalGids {spec:?}");
            let gid = if kubelet { case.kubelet_gid } else { case.gid };
            let want = if kubelet || c.version() != Version::V1_6 {
                want.clone()
            } else {
                // containerd 1.6.20 looks the groups up for uid 0 (before containerd#8136):
                // the runtime must apply what the spec says.
                let w: BTreeSet<u32> = spec.iter().copied().filter(|&g| g != gid).collect();
                assert!(w.contains(&POD_GROUP), "{what}: spec {spec:?}");
                w
            };
            assert!(
                spec.is_superset(&want),
                "{what}: the spec's additionalGids {spec:?} lack some of {want:?}"
            );
            assert_runs_as(c, &id, case.uid, gid, &want, &what);
        }
    }
    stop_pod(c, &pod);
}
