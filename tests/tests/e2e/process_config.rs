//! Issue 2: the process gets what the spec says: environment, working directory, user and
//! groups, hostname, rlimits. Flags where this version's ctr has them, a hand-written spec
//! (`ctr run --config`) everywhere (ctr 1.6 has neither --user nor --hostname).

use mypod_tests::{per_version, Containerd};
use serde_json::json;

/// (c) --env adds to the image's environment (PATH from the image config stays).
fn env_from_flag_and_image(c: &Containerd) {
    let out = c.run(
        "env",
        &["--env", "A=B", "--env", "EMPTY="],
        &["/bin/sh", "-c", "env | sort"],
    );
    assert_eq!(out.exit_code(), 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.contains(&"A=B"),
        "A=B missing from the environment:\n{out}"
    );
    assert!(
        lines.contains(&"EMPTY="),
        "EMPTY= missing from the environment:\n{out}"
    );
    assert!(
        lines.contains(&"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "the image's PATH is missing:\n{out}"
    );
    c.assert_clean("env");
}
per_version!(env_from_flag_and_image);

/// (c) --cwd sets the working directory; the default is /.
fn cwd_flag_and_default(c: &Containerd) {
    let out = c.run("cwd", &["--cwd", "/tmp"], &["/bin/sh", "-c", "pwd"]);
    assert_eq!(
        (out.exit_code(), out.stdout.as_str()),
        (0, "/tmp\n"),
        "{out}"
    );
    let out = c.run("cwd-default", &[], &["/bin/sh", "-c", "pwd"]);
    assert_eq!((out.exit_code(), out.stdout.as_str()), (0, "/\n"), "{out}");
    c.assert_clean("cwd");
}
per_version!(cwd_flag_and_default);

/// (c) Default user: root with only group root.
fn default_user_is_root(c: &Containerd) {
    let out = c.run("root", &[], &["/bin/sh", "-c", "id -u; id -g; id -G"]);
    assert_eq!(
        (out.exit_code(), out.stdout.as_str()),
        (0, "0\n0\n0\n"),
        "{out}"
    );
    c.assert_clean("root");
}
per_version!(default_user_is_root);

/// (c) A hand-written spec's user, supplementary groups, hostname and cwd, on every version.
fn user_groups_hostname_from_spec(c: &Containerd) {
    let mut spec = c.config_spec(
        "spec-user",
        &[
            "/bin/sh",
            "-c",
            "id -u; id -g; id -G; hostname; cat /proc/sys/kernel/hostname; pwd; grep -E '^(Uid|Gid|Groups):' /proc/self/status",
        ],
    );
    spec["process"]["user"] = json!({ "uid": 1000, "gid": 1000, "additionalGids": [2000, 3000] });
    spec["hostname"] = json!("myhost");
    spec["process"]["cwd"] = json!("/home/app");
    let out = c.run_config("spec-user", &[], &spec);
    assert_eq!(out.exit_code(), 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"1000"), "uid:\n{out}");
    assert_eq!(lines.get(1), Some(&"1000"), "gid:\n{out}");
    let mut groups: Vec<&str> = lines
        .get(2)
        .copied()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    groups.sort_unstable();
    // `id -G` lists the primary gid first; the supplementary set is exactly additionalGids.
    assert_eq!(groups, ["1000", "2000", "3000"], "groups:\n{out}");
    assert_eq!(lines.get(3), Some(&"myhost"), "hostname:\n{out}");
    assert_eq!(lines.get(4), Some(&"myhost"), "kernel hostname:\n{out}");
    assert_eq!(lines.get(5), Some(&"/home/app"), "cwd:\n{out}");
    assert!(
        out.stdout.contains("Uid:\t1000\t1000\t1000\t1000"),
        "all four uids must be 1000:\n{out}"
    );
    assert!(
        out.stdout.contains("Gid:\t1000\t1000\t1000\t1000"),
        "all four gids must be 1000:\n{out}"
    );
    let status_groups = lines
        .iter()
        .find(|l| l.starts_with("Groups:"))
        .expect("Groups: line");
    let mut sg: Vec<&str> = status_groups
        .trim_start_matches("Groups:")
        .split_whitespace()
        .collect();
    sg.sort_unstable();
    assert_eq!(
        sg,
        ["2000", "3000"],
        "supplementary groups must be exactly additionalGids:\n{out}"
    );
    c.assert_clean("spec-user");
}
per_version!(user_groups_hostname_from_spec);

/// (c, j) A uid with no passwd entry is used as a number (spec route, every version).
fn unknown_uid_from_spec(c: &Containerd) {
    let mut spec = c.config_spec("spec-4242", &["/bin/sh", "-c", "id -u; id -g"]);
    spec["process"]["user"] = json!({ "uid": 4242, "gid": 4343 });
    let out = c.run_config("spec-4242", &[], &spec);
    assert_eq!(
        (out.exit_code(), out.stdout.as_str()),
        (0, "4242\n4343\n"),
        "{out}"
    );
    c.assert_clean("spec-4242");
}
per_version!(unknown_uid_from_spec);

/// (c, j) `--user` (ctr 1.7+): uid:gid, uid alone (groups from the image's /etc/group), a uid
/// without a passwd entry.
fn user_flag(c: &Containerd) {
    assert!(
        c.ctr_run_has_flag("user"),
        "ctr {} run has no --user",
        c.version()
    );
    let show = ["/bin/sh", "-c", "id -u; id -g; id -G"];
    let out = c.run("u1", &["--user", "1000:1000"], &show);
    assert_eq!(
        (out.exit_code(), out.stdout.as_str()),
        (0, "1000\n1000\n1000\n"),
        "--user 1000:1000\n{out}"
    );
    let out = c.run("u2", &["--user", "1000"], &show);
    assert_eq!(
        (out.exit_code(), out.stdout.as_str()),
        (0, "1000\n1000\n1000 2000\n"),
        "--user 1000 (app is in group extra 2000):\n{out}"
    );
    let out = c.run("u3", &["--user", "4242"], &["/bin/sh", "-c", "id -u"]);
    assert_eq!(
        (out.exit_code(), out.stdout.as_str()),
        (0, "4242\n"),
        "--user 4242:\n{out}"
    );
    c.assert_clean("u3");
}
per_version!(user_flag: v1_7, v2_1);

/// (c) `--hostname` (ctr 1.7+).
fn hostname_flag(c: &Containerd) {
    assert!(
        c.ctr_run_has_flag("hostname"),
        "ctr {} run has no --hostname",
        c.version()
    );
    let out = c.run(
        "hn",
        &["--hostname", "flaghost"],
        &["/bin/sh", "-c", "hostname"],
    );
    assert_eq!(
        (out.exit_code(), out.stdout.as_str()),
        (0, "flaghost\n"),
        "{out}"
    );
    c.assert_clean("hn");
}
per_version!(hostname_flag: v1_7, v2_1);

/// ctr 1.6 really lacks --user and --hostname (so the spec route above is what covers 1.6).
fn ctr_1_6_lacks_user_and_hostname(c: &Containerd) {
    assert!(!c.ctr_run_has_flag("user"));
    assert!(!c.ctr_run_has_flag("hostname"));
    assert!(
        c.ctr_run_has_flag("config"),
        "ctr 1.6 run should have --config"
    );
}
per_version!(ctr_1_6_lacks_user_and_hostname: v1_6);

/// (g) The default spec's RLIMIT_NOFILE 1024/1024.
fn default_nofile_rlimit(c: &Containerd) {
    let spec = c.default_spec();
    let nofile = spec["process"]["rlimits"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["type"] == "RLIMIT_NOFILE"))
        .unwrap_or_else(|| panic!("default spec has no RLIMIT_NOFILE: {spec}"));
    assert_eq!(
        (nofile["soft"].as_u64(), nofile["hard"].as_u64()),
        (Some(1024), Some(1024))
    );
    let out = c.run("nofile", &[], &["/bin/sh", "-c", "ulimit -n; ulimit -Hn"]);
    assert_eq!(
        (out.exit_code(), out.stdout.as_str()),
        (0, "1024\n1024\n"),
        "{out}"
    );
    c.assert_clean("nofile");
}
per_version!(default_nofile_rlimit);

/// (g) Rlimits from a hand-written spec, soft below hard.
fn rlimits_from_spec(c: &Containerd) {
    let mut spec = c.config_spec("rl", &["/bin/sh", "-c", "ulimit -n; ulimit -Hn; ulimit -s"]);
    spec["process"]["rlimits"] = json!([
        { "type": "RLIMIT_NOFILE", "soft": 512, "hard": 768 },
        { "type": "RLIMIT_STACK", "soft": 4194304, "hard": 8388608 }
    ]);
    let out = c.run_config("rl", &[], &spec);
    assert_eq!(
        (out.exit_code(), out.stdout.as_str()),
        (0, "512\n768\n4096\n"),
        "{out}"
    );
    c.assert_clean("rl");
}
per_version!(rlimits_from_spec);
