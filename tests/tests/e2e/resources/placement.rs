//! Where a container's processes land: its cgroup in every hierarchy, and systemd's
//! `slice:prefix:name` cgroupsPath.

use std::path::Path;

use mypod_tests::Containerd;

/// The container's processes are in its cgroup in every hierarchy the host has: each v1
/// hierarchy (which the init helper joins through `tasks`) and the cgroup2 tree (the
/// helper is born there with clone3's CLONE_INTO_CGROUP: a hybrid host's unified tree, or
/// a cgroup2-only host's only one). Checked for the init and for an exec.
pub(super) fn processes_are_in_their_cgroup_everywhere(c: &Containerd) {
    c.run_detached("everywhere", &[], &["sleep", "60"]);
    let pid = c.task("everywhere").expect("task everywhere").pid;
    let want = format!("/{}/everywhere", c.ctr_namespace());
    let init = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("init's cgroup");
    let exec = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "e1",
        "everywhere",
        "cat",
        "/proc/1/cgroup",
        "/proc/self/cgroup",
    ]);
    c.kill_and_remove("everywhere");
    c.assert_clean("everywhere");
    let lines: Vec<&str> = init.lines().collect();
    // Inside, the container's cgroup namespace shows paths relative to its own root: the
    // init's view of itself (/proc/1) and the exec's are the same.
    assert!(exec.success(), "exec failed: {exec}");
    let inside: Vec<&str> = exec.stdout.lines().collect();
    assert_eq!(inside.len(), 2 * lines.len(), "{}", exec.stdout);
    assert_eq!(
        inside[..lines.len()],
        inside[lines.len()..],
        "{}",
        exec.stdout
    );
    let mut v2 = false;
    for l in &lines {
        // hierarchy-id:controllers:path; the cgroup2 line is 0::path.
        let path = l.splitn(3, ':').nth(2).unwrap_or_default();
        v2 |= l.starts_with("0::");
        assert_eq!(
            path, want,
            "init {pid} is not in {want} everywhere:\n{init}"
        );
    }
    let has_v2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" - cgroup2 "));
    assert_eq!(v2, has_v2, "the cgroup2 membership is missing:\n{init}");
}

/// A cgroupsPath in systemd's `slice:prefix:name` form (containerd's SystemdCgroup = true,
/// and what containerd's CRI makes of any cgroup parent ending in `.slice`). Where systemd
/// runs, mypod puts the container in the scope systemd's driver gives it, under the expanded
/// slice. Where it does not (this machine and the cgroup2 VM), the string is one relative
/// cgroupfs path, as runc's cgroupfs driver takes it: in every hierarchy the container lands
/// at `<the shim's own cgroup>/<slice>:<prefix>:<name>`, and its directories go with it.
/// (The shim sits in containerd's cgroup.) The same for runc-v2 there.
pub(super) fn systemd_cgroups_path(c: &Containerd) {
    let slice = format!("{}.slice", c.ctr_namespace().replace('-', "_"));
    let path = format!("{slice}:mypod:sdcg");
    let systemd = Path::new("/run/systemd/system").is_dir();
    if systemd && !c.is_mypod() {
        // runc-v2 without SystemdCgroup takes the string as a cgroupfs path: not comparable.
        return;
    }
    c.run_detached("sdcg", &["--cgroup", &path], &["sleep", "60"]);
    let pid = c.task("sdcg").expect("task sdcg").pid;
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let containerd = c.pid().expect("containerd runs");
    let own = std::fs::read_to_string(format!("/proc/{containerd}/cgroup")).unwrap();
    // The container's directories, to see them go.
    let mut dirs = Vec::new();
    for l in cgroups.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, got) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let want = if systemd {
            format!("/{slice}/mypod-sdcg.scope")
        } else {
            let base = own
                .lines()
                .find_map(|o| {
                    let mut g = o.splitn(3, ':');
                    (g.nth(1) == Some(ctrls)).then(|| g.next().unwrap_or("").to_string())
                })
                .unwrap_or_else(|| panic!("containerd has no cgroup for {ctrls:?}:\n{own}"));
            format!("{}/{path}", base.trim_end_matches('/'))
        };
        if systemd && (ctrls.contains("name=") || got == "/") {
            continue;
        }
        assert_eq!(
            got, want,
            "hierarchy {ctrls:?}: the container should be at {want}:\n{cgroups}\n\
             containerd's cgroups:\n{own}"
        );
        let mount = if ctrls.is_empty() {
            if Path::new("/sys/fs/cgroup/unified").is_dir() {
                "/sys/fs/cgroup/unified".to_string()
            } else {
                "/sys/fs/cgroup".to_string()
            }
        } else {
            format!("/sys/fs/cgroup/{}", ctrls.trim_start_matches("name="))
        };
        dirs.push(format!("{mount}{got}"));
    }
    assert!(!dirs.is_empty(), "no cgroup lines:\n{cgroups}");
    for d in &dirs {
        assert!(Path::new(d).is_dir(), "{d} should exist while it runs");
    }
    c.kill_and_remove("sdcg");
    for d in &dirs {
        assert!(
            !Path::new(d).exists(),
            "{d} should be gone with the container"
        );
    }
    if systemd {
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(h.path().join(&slice));
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&slice));
    }
    c.assert_clean("sdcg");
}
