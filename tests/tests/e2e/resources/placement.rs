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

/// A cgroupsPath in systemd's `slice:prefix:name` form (containerd's SystemdCgroup = true).
/// Where systemd runs, the container lands in the scope systemd's driver gives it, under the
/// expanded slice; where it does not (this machine and the cgroup2 VM), Create is refused at
/// once with an error that says so, and nothing is left behind.
pub(super) fn systemd_cgroups_path(c: &Containerd) {
    if !c.is_mypod() {
        // runc-v2 without SystemdCgroup takes the string as a cgroupfs path: not comparable.
        return;
    }
    let slice = format!("{}.slice", c.ctr_namespace().replace('-', "_"));
    let path = format!("{slice}:mypod:sdcg");
    if Path::new("/run/systemd/system").is_dir() {
        c.run_detached("sdcg", &["--cgroup", &path], &["sleep", "60"]);
        let pid = c.task("sdcg").expect("task sdcg").pid;
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        c.kill_and_remove("sdcg");
        let want = format!("/{slice}/mypod-sdcg.scope");
        assert!(
            cgroups
                .lines()
                .filter(|l| !l.contains("name=") && !l.ends_with(":/"))
                .count()
                > 0
                && cgroups
                    .lines()
                    .all(|l| l.ends_with(&want) || l.ends_with(":/") || l.contains("name=")),
            "every controller's hierarchy should place the container at {want}:\n{cgroups}"
        );
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(h.path().join(&slice));
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(&slice));
    } else {
        let out = c.run("sdcg", &["--cgroup", &path], &["/bin/true"]);
        out.assert_failure();
        assert!(
            out.stderr.contains(&path) && out.stderr.contains("systemd does not run"),
            "the error should name the path and say systemd does not run here:\n{out}"
        );
        let _ = c.ctr(&["containers", "rm", "sdcg"]);
    }
    c.assert_clean("sdcg");
}
