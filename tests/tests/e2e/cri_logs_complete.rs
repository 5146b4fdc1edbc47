//! Issue 16: the logs of short-lived containers are complete. A container that prints and
//! exits at once races its output against its exit: whatever it wrote must be in its CRI log
//! file, every time (under load: `reliability_output`).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use mypod_tests::cri::api::ContainerState;
use mypod_tests::cri::{describe_status, parse_cri_log};
use mypod_tests::{per_version_cri, ContainerBuilder, Containerd};

const T: Duration = Duration::from_secs(20);
/// Lines each container prints.
pub const LINES: u32 = 100;

/// How many containers `short_lived_container_logs_are_complete` runs: env MYPOD_LOG_RUNS,
/// default 200.
fn runs() -> u32 {
    std::env::var("MYPOD_LOG_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(200)
}

/// The messages of the stdout lines of a CRI log, partial (`P`) lines joined to the line they
/// continue.
pub fn stdout_messages(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines = parse_cri_log(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut partial = String::new();
    for l in lines.iter().filter(|l| l.stream == "stdout") {
        partial.push_str(&l.message);
        if l.tag == "F" {
            out.push(std::mem::take(&mut partial));
        }
    }
    if !partial.is_empty() {
        out.push(partial);
    }
    out
}

/// MYPOD_LOG_RUNS (default 200) containers of one pod, one after the other, each printing the
/// numbers 1 to 100 (`seq 1 100`) and exiting at once, as the kubelet restarts a container
/// (same name, attempt n, log `seq/n.log`): each is created, started, waited for until EXITED
/// with exit code 0, and its log must then (no grace period: CRI reports EXITED only after the
/// output reached EOF and was written) hold exactly the lines 1..100 in order on stdout; then
/// it is removed. The total time is printed.
fn short_lived_container_logs_are_complete(c: &Containerd) {
    let pod = c.run_pod_ok(c.pod("shortlogs"));
    let logs = pod.log_directory();
    let want: Vec<String> = (1..=LINES).map(|n| n.to_string()).collect();
    let n = runs();
    let start = Instant::now();
    for attempt in 0..n {
        let b = ContainerBuilder::new("seq", &["seq", "1", &LINES.to_string()]).attempt(attempt);
        let id = c
            .create_container(&pod, &b)
            .unwrap_or_else(|e| panic!("run {attempt}: {e}"));
        c.cri()
            .start_container(&id)
            .unwrap_or_else(|e| panic!("run {attempt}: {e}"));
        let st = c.wait_container_state(&id, ContainerState::ContainerExited, T);
        assert_eq!(st.exit_code, 0, "run {attempt}: {}", describe_status(&st));
        // CRI marks a container EXITED only after its task's Delete has waited for the
        // container's output to reach EOF and be written: the log is complete by then.
        let path = logs.join(b.relative_log_path());
        let got = stdout_messages(&path);
        assert!(
            got == want,
            "run {attempt}: once the container is EXITED, {} should hold the lines \
             1..{LINES} in order; it has {} lines: first {:?}, last {:?}, missing {:?}",
            path.display(),
            got.len(),
            got.first(),
            got.last(),
            want.iter()
                .filter(|w| !got.contains(w))
                .take(10)
                .collect::<Vec<_>>()
        );
        c.cri()
            .remove_container(&id)
            .unwrap_or_else(|e| panic!("run {attempt}: {e}"));
    }
    let took = start.elapsed();
    eprintln!(
        "{n} short-lived containers with complete logs on containerd {} ({}): {took:.1?}, \
         {:.0?} per run",
        c.version(),
        c.cri_handler(),
        took / n
    );
    c.stop_and_remove_pod(&pod);
}
per_version_cri!(short_lived_container_logs_are_complete);
