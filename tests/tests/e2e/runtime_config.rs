//! runtime.toml reaches the shim through containerd's runtime options (ctr's
//! `--runtime-config-path`, CRI's ConfigPath); a bad file fails the start naming the key.

use mypod_tests::{per_version, Containerd};

fn write(c: &Containerd, name: &str, text: &str) -> String {
    let p = c.dir().join(name);
    std::fs::write(&p, text).expect("write config");
    p.to_string_lossy().into_owned()
}

fn shipped_config_is_accepted(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../runtime.toml");
    let path = write(
        c,
        "runtime.toml",
        &std::fs::read_to_string(shipped).expect("runtime.toml"),
    );
    let flag = format!("--runtime-config-path={path}");
    let out = c.run("cfg", &[&flag], &["/bin/sh", "-c", "echo configured"]);
    assert_eq!(out.stdout, "configured\n", "{out}");
    assert_eq!(out.exit_code(), 0, "{out}");
    c.assert_clean("cfg");
}
per_version!(shipped_config_is_accepted);

fn bad_config_names_the_key(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let path = write(c, "bad.toml", "[container]\nsetup_timout = 5\n");
    let flag = format!("--runtime-config-path={path}");
    let out = c.run("badcfg", &[&flag], &["/bin/true"]);
    out.assert_failure();
    assert!(
        out.stderr.contains("setup_timout") && out.stderr.contains("bad.toml"),
        "the error should name the key and the file:\n{out}"
    );
    c.assert_clean("badcfg");
    // The instance still runs containers afterwards.
    let ok = c.run("aftercfg", &[], &["/bin/true"]);
    assert_eq!(ok.exit_code(), 0, "{ok}");
}
per_version!(bad_config_names_the_key);

/// The server `start` forks gets the configuration `start` read: with `setup_timeout = 1`
/// a container whose setup takes 4 s (a createContainer hook, which runs before the
/// process reports Ready) fails after about a second; the default (120 s) would let it
/// start.
fn setup_timeout_reaches_the_server(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let path = write(c, "short.toml", "[container]\nsetup_timeout = 1\n");
    let flag = format!("--runtime-config-path={path}");
    let mut spec = c.config_spec("slowsetup", &["/bin/true"]);
    spec["hooks"] = serde_json::json!({
        "createContainer": [{ "path": "/bin/sleep", "args": ["sleep", "4"] }]
    });
    let began = std::time::Instant::now();
    let out = c.run_config("slowsetup", &[&flag], &spec);
    let took = began.elapsed();
    out.assert_failure();
    assert!(
        took < std::time::Duration::from_millis(3500),
        "setup_timeout = 1 was not applied: the failure took {took:?}\n{out}"
    );
    c.assert_clean("slowsetup");
}
per_version!(setup_timeout_reaches_the_server);
