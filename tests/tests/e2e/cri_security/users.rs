//! The user and groups a container runs as: run_as_user, run_as_group, supplemental_groups,
//! run_as_username.

use std::collections::BTreeSet;

use mypod_tests::cri::api::Int64Value;
use mypod_tests::cri_instance::{stderr_of, stdout_of};
use mypod_tests::{ContainerBuilder, Containerd};

use super::{
    assert_field_both, container_config, exec_status, field, init_status, log_lines_until, sleeper,
    start_config, stop_pod,
};

/// `Groups:` of a status text as a set.
pub(super) fn groups(status: &str) -> BTreeSet<u32> {
    field(status, "Groups")
        .split_whitespace()
        .map(|g| g.parse().expect("gid"))
        .collect()
}

/// run_as_user / run_as_group / supplemental_groups: the container's process (its own output
/// in the CRI log, and its status from the host) and ExecSync's `id` all run as uid 1001,
/// gid 2002, with the supplemental groups 3003 and 4004 (and no others but the primary).
pub(super) fn run_as_user_group_and_supplemental_groups(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("runas"));
    let script = "grep -E '^(Uid|Gid|Groups):' /proc/self/status; echo id: $(id); exec sleep 1000";
    let config = container_config(
        &pod,
        &ContainerBuilder::new("runas", &["sh", "-c", script]),
        |sc| {
            sc.run_as_user = Some(Int64Value { value: 1001 });
            sc.run_as_group = Some(Int64Value { value: 2002 });
            sc.supplemental_groups = vec![3003, 4004];
        },
    );
    let id = start_config(c, &pod, &config);
    let msgs = log_lines_until(&pod, "runas", "id:");
    let own = msgs.join("\n");
    for want in [
        "Uid:\t1001\t1001\t1001\t1001",
        "Gid:\t2002\t2002\t2002\t2002",
    ] {
        assert!(
            msgs.iter().any(|m| m == want),
            "the container's own output lacks {want:?}:\n{own}"
        );
    }
    let own_groups: BTreeSet<u32> = msgs
        .iter()
        .find_map(|m| m.strip_prefix("Groups:"))
        .unwrap_or_else(|| panic!("no Groups: line in the container's output:\n{own}"))
        .split_whitespace()
        .map(|g| g.parse().expect("gid"))
        .collect();
    let want_groups = BTreeSet::from([2002, 3003, 4004]);
    let only_extra = BTreeSet::from([3003, 4004]);
    assert!(
        own_groups == want_groups || own_groups == only_extra,
        "supplemental groups of the container's process: {own_groups:?}"
    );

    let init = init_status(c, &id);
    assert_eq!(field(&init, "Uid"), "1001\t1001\t1001\t1001", "host view");
    assert_eq!(field(&init, "Gid"), "2002\t2002\t2002\t2002", "host view");
    assert_eq!(groups(&init), own_groups, "host view of Groups");

    let exec = exec_status(c, &id);
    assert_eq!(field(&exec, "Uid"), "1001\t1001\t1001\t1001", "exec");
    assert_eq!(field(&exec, "Gid"), "2002\t2002\t2002\t2002", "exec");
    assert_eq!(
        groups(&exec),
        own_groups,
        "an exec gets the container's groups"
    );
    for (flag, want) in [("-u", "1001"), ("-g", "2002")] {
        let r = c.exec_ok(&id, &["id", flag]);
        assert_eq!(stdout_of(&r).trim(), want, "id {flag}: {}", stderr_of(&r));
    }
    let r = c.exec_ok(&id, &["id", "-G"]);
    let id_groups: BTreeSet<u32> = stdout_of(&r)
        .split_whitespace()
        .map(|g| g.parse().expect("gid"))
        .collect();
    assert_eq!(id_groups, want_groups, "`id -G` (primary + supplemental)");
    stop_pod(c, &pod);
}

/// run_as_username resolved in the image's /etc/passwd and /etc/group: `app` is uid 1000,
/// gid 1000, and a member of `extra` (2000); `nobody` is 65534. An unknown name fails
/// CreateContainer. run_as_user 1000 alone takes gid 1000 from the image too.
pub(super) fn run_as_username(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("username"));
    let app = sleeper(c, &pod, "app", |sc| sc.run_as_username = "app".into());
    for st in [init_status(c, &app), exec_status(c, &app)] {
        assert_eq!(field(&st, "Uid"), "1000\t1000\t1000\t1000", "user app");
        assert_eq!(field(&st, "Gid"), "1000\t1000\t1000\t1000", "user app");
        assert!(
            groups(&st).contains(&2000),
            "app is a member of group extra (2000) in the image's /etc/group: {:?}",
            groups(&st)
        );
    }
    let r = c.exec_ok(&app, &["id"]);
    let out = stdout_of(&r);
    assert!(
        out.starts_with("uid=1000(app) gid=1000(app)") && out.contains("2000(extra)"),
        "id as app: {out:?} {}",
        stderr_of(&r)
    );

    let nobody = sleeper(c, &pod, "nobody", |sc| sc.run_as_username = "nobody".into());
    assert_field_both(c, &nobody, "Uid", "65534\t65534\t65534\t65534", "nobody");

    let by_uid = sleeper(c, &pod, "uid1000", |sc| {
        sc.run_as_user = Some(Int64Value { value: 1000 })
    });
    assert_field_both(c, &by_uid, "Gid", "1000\t1000\t1000\t1000", "uid 1000");

    let config = container_config(
        &pod,
        &ContainerBuilder::new("ghost", &["sleep", "1000"]),
        |sc| sc.run_as_username = "ghost".into(),
    );
    let res = c.cri().create_container(&pod.id, &config, &pod.config);
    assert!(
        res.is_err(),
        "a user the image's /etc/passwd lacks must fail CreateContainer: {res:?}"
    );
    stop_pod(c, &pod);
}
