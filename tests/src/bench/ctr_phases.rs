//! Measurements through `ctr`, as a user runs containers without CRI: the whole lifecycle
//! (`ctr run --rm`), create+start (`ctr run -d`) and delete (`ctr task rm -f` + `ctr c rm`),
//! exec (`ctr task exec`), and ctr's own floor (`ctr version`: process start-up and one RPC).
//!
//! Every wall time is that of the `ctr` process, measured here with a blocking wait (no polling),
//! so it includes ctr's start-up for both runtimes alike.

use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use super::{check_interrupted, ms, Progress, Rt, Series};
use crate::command::{describe, CTR_TIMEOUT};
use crate::containerd::Containerd;
use crate::image::IMAGE;
use crate::procfs;

/// One timed ctr call: wall time, and when it began and ended by the system clock (to match
/// containerd's log timestamps).
#[derive(Clone, Copy, Debug)]
pub struct Timed {
    pub elapsed: Duration,
    pub began: SystemTime,
    pub ended: SystemTime,
}

/// Runs `ctr ARGS` against the instance and times it; Err (with its output) unless it exited 0.
/// A watchdog kills it after the harness' ctr deadline.
pub fn timed_ctr(c: &Containerd, args: &[&str]) -> Result<Timed, String> {
    check_interrupted()?;
    let mut cmd = c.ctr_command(args);
    let argv = describe(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let began = SystemTime::now();
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `{argv}`: {e}"))?;
    let pid = child.id();
    let (done, wait_done) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = wait_done.recv_timeout(CTR_TIMEOUT) {
            // The child is not reaped yet (the waiter holds it), so the pid is still ours.
            procfs::signal(pid, libc::SIGKILL);
        }
    });
    let out = child.wait_with_output();
    let elapsed = start.elapsed();
    let ended = SystemTime::now();
    let _ = done.send(());
    let _ = watchdog.join();
    let out = out.map_err(|e| format!("waiting for `{argv}`: {e}"))?;
    if !out.status.success() {
        check_interrupted()?;
        return Err(format!(
            "`{argv}` failed ({}) after {elapsed:.2?}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(Timed {
        elapsed,
        began,
        ended,
    })
}

/// The `ctr run` flags for `rt` and container `id`: the runtime, a cgroup under the instance's
/// own cgroup (so the harness' purge finds it), and for runc a runc root inside the instance dir.
fn run_flags(c: &Containerd, rt: Rt, id: &str) -> Vec<String> {
    let mut f = vec![
        "--runtime".to_string(),
        rt.runtime_type().to_string(),
        "--cgroup".to_string(),
        format!("/{}/{id}", c.namespace()),
    ];
    if rt == Rt::Runc {
        f.push("--runc-root".to_string());
        f.push(c.dir().join("runc").display().to_string());
    }
    f
}

/// `ctr run MODE FLAGS IMAGE ID CMD...`
fn run_args(c: &Containerd, rt: Rt, mode: &str, id: &str, cmd: &[&str]) -> Vec<String> {
    let mut a = vec!["run".to_string(), mode.to_string()];
    a.extend(run_flags(c, rt, id));
    a.push(IMAGE.to_string());
    a.push(id.to_string());
    a.extend(cmd.iter().map(|s| s.to_string()));
    a
}

fn timed_owned(c: &Containerd, args: &[String]) -> Result<Timed, String> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    timed_ctr(c, &a)
}

/// Starts a long-running container `id` with `rt` (`ctr run -d ... sleep 3600`).
pub fn start_sleeper(c: &Containerd, rt: Rt, id: &str) -> Result<Timed, String> {
    timed_owned(c, &run_args(c, rt, "-d", id, &["/bin/sleep", "3600"]))
}

/// Kills and deletes task `id` (`ctr task rm -f`) and removes the container (`ctr c rm`);
/// returns the wall time of both calls.
pub fn remove(c: &Containerd, id: &str) -> Result<Duration, String> {
    let a = timed_ctr(c, &["tasks", "rm", "-f", id])?;
    let b = timed_ctr(c, &["containers", "rm", id])?;
    Ok(a.elapsed + b.elapsed)
}

/// One `ctr run --rm` of each runtime, so that page cache and lazy set-up are warm.
pub fn warm_up(c: &Containerd, p: &Progress) -> Result<(), String> {
    for rt in Rt::BOTH {
        let id = format!("warm-{rt}");
        timed_owned(c, &run_args(c, rt, "--rm", &id, &["/bin/true"]))?;
        start_sleeper(c, rt, &id)?;
        timed_ctr(c, &["tasks", "exec", "--exec-id", "warm", &id, "/bin/true"])?;
        remove(c, &id)?;
    }
    timed_ctr(c, &["version"])?;
    p.line("warm-up done (one run, exec and delete of each runtime)");
    Ok(())
}

/// A lifecycle sample with its clock times (for the containerd-share breakdown).
#[derive(Clone, Debug)]
pub struct LifecycleRun {
    pub rt: Rt,
    pub timed: Timed,
}

/// `ctr run --rm IMAGE ID /bin/true`, `n` times per runtime, alternating.
pub fn lifecycle(
    c: &Containerd,
    n: usize,
    p: &Progress,
) -> Result<(Series, Vec<LifecycleRun>), String> {
    let mut s = Series::new("lifecycle", "lifecycle: ctr run --rm /bin/true", Some(0.5));
    let mut runs = Vec::new();
    for i in 0..n {
        for rt in Rt::order(i) {
            let id = format!("lc-{rt}-{i}");
            let t = timed_owned(c, &run_args(c, rt, "--rm", &id, &["/bin/true"]))?;
            s.push(rt, ms(t.elapsed));
            runs.push(LifecycleRun { rt, timed: t });
        }
        progress_every(p, "lifecycle", i, n);
    }
    Ok((s, runs))
}

/// `ctr run -d ... sleep` (create+start) and then `ctr task rm -f` + `ctr c rm` (delete),
/// `n` times per runtime, alternating.
pub fn create_delete(c: &Containerd, n: usize, p: &Progress) -> Result<(Series, Series), String> {
    let mut create = Series::new("create_start", "create+start: ctr run -d", None);
    let mut delete = Series::new("delete", "delete: ctr task rm -f + ctr c rm", None);
    for i in 0..n {
        for rt in Rt::order(i) {
            let id = format!("cd-{rt}-{i}");
            let t = start_sleeper(c, rt, &id)?;
            create.push(rt, ms(t.elapsed));
        }
        for rt in Rt::order(i + 1) {
            let id = format!("cd-{rt}-{i}");
            let d = remove(c, &id)?;
            delete.push(rt, ms(d));
        }
        progress_every(p, "create+start / delete", i, n);
    }
    Ok((create, delete))
}

/// `ctr task exec --exec-id eN ID /bin/true` into one running container per runtime, `n` times
/// each, alternating. Also returns mypod's runs as (container id, exec id, wall ms), to find
/// the shim's own share of each in its log ([`super::events::exec_share`]).
pub fn exec(c: &Containerd, n: usize, p: &Progress) -> Result<(Series, Vec<ExecRun>), String> {
    let mut s = Series::new("exec", "exec: ctr task exec /bin/true", Some(0.25));
    let mut runs = Vec::new();
    for rt in Rt::BOTH {
        start_sleeper(c, rt, &format!("exec-{rt}"))?;
    }
    let result = (|| {
        for i in 0..n {
            for rt in Rt::order(i) {
                let id = format!("exec-{rt}");
                let exec_id = format!("e{i}");
                let t = timed_ctr(
                    c,
                    &["tasks", "exec", "--exec-id", &exec_id, &id, "/bin/true"],
                )?;
                s.push(rt, ms(t.elapsed));
                if rt == Rt::Mypod {
                    runs.push(ExecRun {
                        id,
                        exec_id,
                        wall_ms: ms(t.elapsed),
                    });
                }
            }
            progress_every(p, "exec", i, n);
        }
        Ok::<(), String>(())
    })();
    for rt in Rt::BOTH {
        let _ = remove(c, &format!("exec-{rt}"));
    }
    result.map(|()| (s, runs))
}

/// One timed `ctr task exec` under mypod.
#[derive(Clone, Debug)]
pub struct ExecRun {
    pub id: String,
    pub exec_id: String,
    pub wall_ms: f64,
}

/// `ctr version`, `n` times: ctr's start-up plus one trivial RPC, which every ctr measurement
/// pays once per ctr process (twice for delete). Not a runtime comparison.
pub fn ctr_floor(c: &Containerd, n: usize) -> Result<Vec<f64>, String> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(ms(timed_ctr(c, &["version"])?.elapsed));
    }
    Ok(v)
}

/// A progress line about every tenth of a phase.
pub fn progress_every(p: &Progress, what: &str, i: usize, n: usize) {
    let step = (n / 5).max(1);
    if (i + 1).checked_rem(step) == Some(0) || i + 1 == n {
        p.line(&format!("{what}: {}/{n}", i + 1));
    }
}
