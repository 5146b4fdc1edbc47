//! Issue 2: spec fields no ctr flag reaches, through hand-written specs (`ctr run --config`):
//! umask, oomScoreAdj (and the clear error when this host refuses to lower it), sysctl,
//! domainname, and a new user namespace with uid/gid maps.

use mypod_tests::{per_version, Containerd};
use serde_json::json;

fn umask_oom_sysctl_domainname(c: &Containerd) {
    let mut spec = c.config_spec(
        "fields",
        &[
            "/bin/sh",
            "-c",
            "umask; cat /proc/self/oom_score_adj /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/domainname",
        ],
    );
    spec["process"]["user"]["umask"] = json!(0o027);
    spec["process"]["oomScoreAdj"] = json!(500);
    spec["linux"]["sysctl"] = json!({ "net.ipv4.ip_forward": "1" });
    spec["domainname"] = json!("example.org");
    let out = c.run_config("fields", &[], &spec);
    assert_eq!(out.exit_code(), 0, "{out}");
    // runc 1.1 (Debian bookworm) predates `domainname` support and leaves it unset.
    let domain = if c.is_mypod() {
        "example.org"
    } else {
        "(none)"
    };
    assert_eq!(out.stdout, format!("0027\n500\n1\n{domain}\n"), "{out}");
    c.assert_clean("fields");
}
per_version!(umask_oom_sysctl_domainname);

/// A sysctl of a namespace the container shares with the host would change the host: refused
/// (as runc does), naming the key, and the host's value is left alone.
fn sysctl_of_a_shared_namespace_is_refused(c: &Containerd) {
    let before = std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap_or_default();
    let mut spec = c.config_spec("sysctlhost", &["true"]);
    spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .retain(|n| n["type"] != "ipc");
    spec["linux"]["sysctl"] = json!({ "kernel.shmmni": "1234" });
    let out = c.run_config("sysctlhost", &[], &spec);
    out.assert_failure();
    assert!(
        out.stderr.contains("kernel.shmmni"),
        "the error must name the sysctl:\n{out}"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap_or_default(),
        before,
        "the host's value is unchanged"
    );
    c.assert_clean("sysctlhost");
}
per_version!(sysctl_of_a_shared_namespace_is_refused);

/// Lowering oom_score_adj needs CAP_SYS_RESOURCE, which this VM withholds even from root:
/// the runtime must say so, or (on a host that allows it) apply it.
fn lowering_oom_score_adj(c: &Containerd) {
    let mut spec = c.config_spec("oomlow", &["cat", "/proc/self/oom_score_adj"]);
    spec["process"]["oomScoreAdj"] = json!(-998);
    let out = c.run_config("oomlow", &[], &spec);
    if out.success() {
        assert_eq!(out.stdout, "-998\n", "{out}");
    } else if c.is_mypod() {
        assert!(
            out.stderr.contains("oom") && out.stderr.contains("-998"),
            "the error must name the setting and value:\n{out}"
        );
    } else {
        // runc 1.1 fails here too, with "can't get final child's PID from pipe".
        out.assert_failure();
    }
    c.assert_clean("oomlow");
}
per_version!(lowering_oom_score_adj);

fn new_user_namespace_with_maps(c: &Containerd) {
    let mut spec = c.config_spec(
        "userns",
        &[
            "/bin/sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u; ls -ln /bin/busybox",
        ],
    );
    spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({ "type": "user" }));
    // As with runc, the rootfs must belong to the mapped root: shift it by 100000.
    let root = spec["root"]["path"]
        .as_str()
        .expect("root path")
        .to_string();
    let chown = std::process::Command::new("chown")
        .args(["-R", "-h", "100000:100000", &root])
        .status()
        .expect("chown");
    assert!(chown.success(), "chown the rootfs");
    spec["linux"]["uidMappings"] = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    spec["linux"]["gidMappings"] = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    let out = c.run_config("userns", &[], &spec);
    assert_eq!(out.exit_code(), 0, "{out}");
    let fields: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        fields.first().map(Vec::as_slice),
        Some(&["0", "100000", "65536"][..]),
        "{out}"
    );
    assert_eq!(
        fields.get(1).map(Vec::as_slice),
        Some(&["0", "100000", "65536"][..]),
        "{out}"
    );
    assert_eq!(
        fields.get(2).map(Vec::as_slice),
        Some(&["0"][..]),
        "root inside:\n{out}"
    );
    // Files owned by host uid 100000 are root's inside.
    assert!(
        fields.get(3).is_some_and(|f| f.get(2) == Some(&"0")),
        "the shifted rootfs belongs to root inside:\n{out}"
    );
    c.assert_clean("userns");
}
per_version!(new_user_namespace_with_maps);

/// process.scheduler, process.ioPriority and linux.personality reach the process (runc 1.1.5,
/// Debian's, predates scheduler and ioPriority: mypod only); a bad value fails Create naming
/// the field. containerd 1.6's spec types (runtime-spec 1.0.2) drop scheduler and ioPriority
/// from `ctr run --config` before they reach any runtime, so 1.7 and 2.1 only.
fn scheduler_io_priority_personality(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let mut spec = c.config_spec(
        "sched",
        &[
            "/bin/sh",
            "-c",
            "cut -d' ' -f19,41 /proc/$$/stat; ionice -p $$; cat /proc/$$/personality",
        ],
    );
    spec["process"]["scheduler"] = json!({ "policy": "SCHED_BATCH", "nice": 5 });
    spec["process"]["ioPriority"] = json!({ "class": "IOPRIO_CLASS_IDLE", "priority": 0 });
    spec["linux"]["personality"] = json!({ "domain": "LINUX32" });
    let out = c.run_config("sched", &[], &spec);
    assert_eq!(out.exit_code(), 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&"5 3"),
        "nice 5, policy 3 (SCHED_BATCH):\n{out}"
    );
    assert!(
        lines.get(1).is_some_and(|l| l.starts_with("idle")),
        "ionice should report the idle class:\n{out}"
    );
    assert_eq!(lines.get(2), Some(&"00000008"), "PER_LINUX32:\n{out}");
    c.assert_clean("sched");

    let mut spec = c.config_spec("badsched", &["/bin/true"]);
    spec["process"]["scheduler"] = json!({ "policy": "SCHED_OTHER", "nice": 42 });
    let out = c.run_config("badsched", &[], &spec);
    out.assert_failure();
    assert!(
        out.stderr.contains("process.scheduler.nice") && out.stderr.contains("42"),
        "the error should name the field and value:\n{out}"
    );
    let _ = c.ctr(&["containers", "rm", "badsched"]);
    c.assert_clean("badsched");
}
per_version!(scheduler_io_priority_personality: v1_7, v2_1);

/// An idmapped bind mount (`uidMappings`/`gidMappings`, option `idmap`): files the host owns
/// as 1000:1000 appear as root's in the container, and what the container's root creates
/// there belongs to 1000:1000 on the host. (Debian's runc 1.1.5 has no idmapped mounts, so
/// this is not in the differential suite.) A mapping on a non-bind mount is refused, naming
/// the mount.
fn idmapped_bind_mount(c: &Containerd) {
    use std::os::unix::fs::MetadataExt;
    let dir = c.dir().join("idmapped");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("f"), "x").expect("write");
    std::fs::write(dir.join("rootfile"), "x").expect("write");
    for p in [dir.clone(), dir.join("f")] {
        std::os::unix::fs::chown(&p, Some(1000), Some(1000)).expect("chown");
    }
    // As a user namespace's map, which is what the kernel makes of it: the on-disk id
    // (containerID) 1000 is seen through the mount as id 0 (hostID).
    let map = json!([{ "containerID": 1000, "hostID": 0, "size": 1 }]);
    let mut spec = c.config_spec(
        "idm",
        &[
            "/bin/sh",
            "-c",
            "stat -c 'f=%u:%g' /mnt/idm/f; stat -c 'rootfile=%u:%g' /mnt/idm/rootfile; \
             touch /mnt/idm/new; echo touch=$?; stat -c 'new=%u:%g' /mnt/idm/new",
        ],
    );
    spec["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/mnt/idm", "type": "bind", "source": dir,
        "options": ["bind", "idmap"], "uidMappings": map, "gidMappings": map,
    }));
    let out = c.run_config("idm", &[], &spec);
    out.assert_success();
    for want in ["f=0:0", "rootfile=65534:65534", "touch=0", "new=0:0"] {
        assert!(out.stdout.lines().any(|l| l == want), "{want}:\n{out}");
    }
    let meta = std::fs::metadata(dir.join("new")).expect("the container's file");
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000), "owner on the host");
    c.assert_clean("idm");

    // With a user namespace (container root = host 100000): the mount maps the on-disk
    // 1000 to 100000, so the container's root owns the file and writes as 1000 on disk.
    let mut spec = c.config_spec(
        "idm-userns",
        &[
            "/bin/sh",
            "-c",
            "stat -c 'f=%u:%g' /mnt/idm/f; touch /mnt/idm/userns-new; echo touch=$?",
        ],
    );
    let root = spec["root"]["path"].as_str().expect("root").to_string();
    let chown = std::process::Command::new("chown")
        .args(["-R", "-h", "100000:100000", &root])
        .status()
        .expect("chown");
    assert!(chown.success(), "chown the rootfs");
    spec["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .push(json!({ "type": "user" }));
    let userns = json!([{ "containerID": 0, "hostID": 100000, "size": 65536 }]);
    spec["linux"]["uidMappings"] = userns.clone();
    spec["linux"]["gidMappings"] = userns;
    let to_root = json!([{ "containerID": 1000, "hostID": 100000, "size": 1 }]);
    spec["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/mnt/idm", "type": "bind", "source": dir,
        "options": ["rbind", "idmap"], "uidMappings": to_root, "gidMappings": to_root,
    }));
    let out = c.run_config("idm-userns", &[], &spec);
    out.assert_success();
    for want in ["f=0:0", "touch=0"] {
        assert!(out.stdout.lines().any(|l| l == want), "{want}:\n{out}");
    }
    let meta = std::fs::metadata(dir.join("userns-new")).expect("the container's file");
    assert_eq!((meta.uid(), meta.gid()), (1000, 1000), "owner on the host");
    c.assert_clean("idm-userns");

    let mut spec = c.config_spec("idm-bad", &["/bin/true"]);
    spec["mounts"].as_array_mut().expect("mounts").push(json!({
        "destination": "/mnt/t", "type": "tmpfs", "source": "tmpfs",
        "options": ["idmap"], "uidMappings": map, "gidMappings": map,
    }));
    let n = spec["mounts"].as_array().map(Vec::len).unwrap_or(0) - 1;
    let out = c.run_config("idm-bad", &[], &spec);
    out.assert_failure();
    let want = format!("config.json: mounts[{n}]: only bind mounts can be idmapped");
    assert!(out.stderr.contains(&want), "{want}:\n{out}");
    c.assert_clean("idm-bad");
}
/// The spec's own idmappings, as runc reads them: without the pod user namespace.
fn compat(b: mypod_tests::containerd::Builder) -> mypod_tests::containerd::Builder {
    b.compat(true)
}
per_version!(idmapped_bind_mount with compat);
