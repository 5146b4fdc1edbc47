//! Stats: `ctr task metrics` on cgroup v1 and v2.

use mypod_tests::Containerd;

use super::is_v2;

/// `ctr task metrics` (table form: `METRIC VALUE` lines) as a map.
fn metrics(c: &Containerd, id: &str) -> std::collections::HashMap<String, String> {
    let out = c.ctr_ok(&["tasks", "metrics", id]);
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with("METRIC"))
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.collect::<Vec<_>>().join(" ")))
        })
        .collect()
}

fn metric(m: &std::collections::HashMap<String, String>, k: &str) -> u64 {
    m.get(k)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {k} missing or not a number: {m:?}"))
}

/// `ctr task metrics` shows real numbers that move with load.
pub(super) fn metrics_move_with_load(c: &Containerd) {
    c.run_detached("met", &["--memory-limit", "268435456"], &["sleep", "60"]);
    if is_v2() {
        metrics_move_with_load_v2(c);
        return;
    }
    let before = metrics(c, "met");
    assert!(metric(&before, "memory.usage_in_bytes") > 0, "{before:?}");
    assert_eq!(
        metric(&before, "memory.limit_in_bytes"),
        268435456,
        "{before:?}"
    );
    assert!(metric(&before, "pids.current") >= 1, "{before:?}");
    let cpu_before = metric(&before, "cpuacct.usage");
    load(c, "met");
    let after = metrics(c, "met");
    assert!(
        metric(&after, "cpuacct.usage") > cpu_before + 10_000_000,
        "cpu usage should grow by more than 10 ms: {cpu_before} → {after:?}"
    );
    assert!(
        metric(&after, "memory.usage_in_bytes") >= 40 << 20,
        "memory usage should include the 40 MiB file: {after:?}"
    );
    c.kill_and_remove("met");
    c.assert_clean("met");
}

/// A busy loop and 40 MiB in a tmpfs file (charged to the container), exec'd in `id`.
fn load(c: &Containerd, id: &str) {
    let out = c.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "load",
        id,
        "/bin/sh",
        "-c",
        "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; \
         dd if=/dev/zero of=/dev/shm/x bs=1M count=40 2>/dev/null; echo done",
    ]);
    assert_eq!(out.stdout.trim(), "done", "{out}");
}

/// The v2 half of `metrics_move_with_load`: `ctr task metrics` prints the v2 Metrics'
/// table (pids.*, cpu.*_usec, memory.usage/usage_limit/swap_*).
fn metrics_move_with_load_v2(c: &Containerd) {
    let before = metrics(c, "met");
    assert!(metric(&before, "memory.usage") > 0, "{before:?}");
    assert_eq!(
        metric(&before, "memory.usage_limit"),
        268435456,
        "{before:?}"
    );
    assert!(metric(&before, "pids.current") >= 1, "{before:?}");
    let cpu_before = metric(&before, "cpu.usage_usec");
    load(c, "met");
    let after = metrics(c, "met");
    assert!(
        metric(&after, "cpu.usage_usec") > cpu_before + 10_000,
        "cpu usage should grow by more than 10 ms: {cpu_before} → {after:?}"
    );
    assert!(
        metric(&after, "memory.usage") >= 40 << 20,
        "memory usage should include the 40 MiB file: {after:?}"
    );
    c.kill_and_remove("met");
    c.assert_clean("met");
}
