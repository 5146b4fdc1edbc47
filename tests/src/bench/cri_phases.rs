//! Measurements through CRI, as the kubelet drives containerd: pod start (RunPodSandbox +
//! CreateContainer + StartContainer per container) and teardown (StopPodSandbox +
//! RemovePodSandbox), the shims' memory and threads at a number of running pods, and density
//! (many pods started concurrently).
//!
//! Pods are the harness' (`Containerd::pod`: log dir and cgroup parent inside the instance);
//! their containers run `sleep 3600` from the busybox image; the RuntimeClass handler picks the
//! runtime (`mypod` or `runc`, both configured on the one instance).

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::ctr_phases::progress_every;
use super::{check_interrupted, interrupted, ms, Progress, Rt, Series};
use crate::containerd::{shim_path, Containerd};
use crate::cri::{api, ContainerBuilder, CriClient};
use crate::procfs;

/// A pod the bench started.
#[derive(Clone, Debug)]
pub struct BenchPod {
    pub id: String,
    pub rt: Rt,
}

/// The CRI calls' wall times of one pod start (ms).
#[derive(Clone, Copy, Debug, Default)]
pub struct StartTimes {
    pub total: f64,
    pub run_sandbox: f64,
    /// Summed over the pod's containers.
    pub create: f64,
    /// Summed over the pod's containers.
    pub start: f64,
}

/// Starts pod `name` with `rt` and `containers` containers (`sleep 3600`) through `client`.
/// On error after RunPodSandbox, the pod is returned with the error so it can be removed.
pub fn start_pod(
    c: &Containerd,
    client: &CriClient,
    rt: Rt,
    name: &str,
    containers: usize,
) -> Result<(BenchPod, StartTimes), (Option<BenchPod>, String)> {
    let b = c.pod(name);
    let config = b.build();
    let t0 = Instant::now();
    let id = client
        .run_pod_sandbox(&config, rt.handler())
        .map_err(|e| (None, format!("pod {name} ({rt}): {e}")))?;
    let pod = BenchPod { id, rt };
    let mut t = StartTimes {
        run_sandbox: ms(t0.elapsed()),
        ..Default::default()
    };
    for k in 0..containers {
        let cb = ContainerBuilder::new(&format!("c{k}"), &["sleep", "3600"]);
        let t1 = Instant::now();
        let cid = client
            .create_container(&pod.id, &cb.build(&b), &config)
            .map_err(|e| (Some(pod.clone()), format!("pod {name} ({rt}): {e}")))?;
        let t2 = Instant::now();
        client
            .start_container(&cid)
            .map_err(|e| (Some(pod.clone()), format!("pod {name} ({rt}): {e}")))?;
        t.create += ms(t2 - t1);
        t.start += ms(t2.elapsed());
    }
    t.total = ms(t0.elapsed());
    Ok((pod, t))
}

/// StopPodSandbox + RemovePodSandbox; their wall times (ms).
pub fn remove_pod(client: &CriClient, pod: &BenchPod) -> Result<(f64, f64), String> {
    let t0 = Instant::now();
    client
        .stop_pod_sandbox(&pod.id)
        .map_err(|e| format!("pod {} ({}): {e}", pod.id, pod.rt))?;
    let t1 = Instant::now();
    client
        .remove_pod_sandbox(&pod.id)
        .map_err(|e| format!("pod {} ({}): {e}", pod.id, pod.rt))?;
    Ok((ms(t1 - t0), ms(t1.elapsed())))
}

/// The pod-start series: the whole start, and each CRI call.
pub struct PodSeries {
    pub start: Series,
    pub teardown: Series,
    pub run_sandbox: Series,
    pub create: Series,
    pub start_ctr: Series,
    pub stop: Series,
    pub remove: Series,
}

/// Pod start (RunPodSandbox + `containers` × (CreateContainer + StartContainer)) and teardown
/// (StopPodSandbox + RemovePodSandbox), `n` pods per runtime, alternating, one at a time.
pub fn pod_start(
    c: &Containerd,
    n: usize,
    containers: usize,
    p: &Progress,
) -> Result<PodSeries, String> {
    let mut s = PodSeries {
        start: Series::new(
            "pod_start",
            &format!("pod start (CRI): sandbox + {containers} containers"),
            Some(0.5),
        ),
        teardown: Series::new("pod_teardown", "pod teardown (CRI): stop + remove", None),
        run_sandbox: Series::new("run_sandbox", "  RunPodSandbox", None),
        create: Series::new(
            "create_container",
            &format!("  CreateContainer ×{containers} (no shim call)"),
            None,
        ),
        start_ctr: Series::new(
            "start_container",
            &format!("  StartContainer ×{containers}"),
            None,
        ),
        stop: Series::new("stop_pod", "  StopPodSandbox", None),
        remove: Series::new("remove_pod", "  RemovePodSandbox", None),
    };
    let client = c.cri();
    for i in 0..n {
        for rt in Rt::order(i) {
            check_interrupted()?;
            let name = format!("p-{rt}-{i}");
            let (pod, t) = match start_pod(c, client, rt, &name, containers) {
                Ok(x) => x,
                Err((pod, e)) => {
                    if let Some(pod) = pod {
                        let _ = remove_pod(client, &pod);
                    }
                    return Err(e);
                }
            };
            s.start.push(rt, t.total);
            s.run_sandbox.push(rt, t.run_sandbox);
            s.create.push(rt, t.create);
            s.start_ctr.push(rt, t.start);
            let (stop, remove) = remove_pod(client, &pod)?;
            s.teardown.push(rt, stop + remove);
            s.stop.push(rt, stop);
            s.remove.push(rt, remove);
        }
        progress_every(p, "pod start/teardown", i, n);
    }
    Ok(s)
}

/// The shims of one runtime at a number of running pods.
#[derive(Clone, Debug)]
pub struct MemRow {
    pub rt: Rt,
    pub pods: usize,
    pub shims: usize,
    /// Sum of the shims' PSS / pods, KiB.
    pub pss_per_pod_kib: f64,
    /// Sum of the shims' RSS / pods, KiB.
    pub rss_per_pod_kib: f64,
    pub threads_max: u64,
    pub threads_mean: f64,
}

/// The instance's shim processes of `rt` (mypod: the shim binary; runc: containerd-shim-runc-v2).
pub fn shim_pids_of(c: &Containerd, rt: Rt) -> Vec<u32> {
    let mypod = fs::canonicalize(shim_path()).ok();
    c.shim_pids()
        .into_iter()
        .filter(|&p| {
            let exe = fs::read_link(format!("/proc/{p}/exe")).ok();
            let is_mypod = exe.is_some() && exe == mypod;
            let is_runc = exe.as_ref().is_some_and(|e| {
                e.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("containerd-shim-runc-v2"))
            });
            match rt {
                Rt::Mypod => is_mypod,
                Rt::Runc => is_runc,
            }
        })
        .collect()
}

/// `Pss` and `Rss` (KiB) of a process from /proc/PID/smaps_rollup.
pub fn pss_rss_kib(pid: u32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let get = |k: &str| {
        text.lines().find_map(|l| {
            let v = l.strip_prefix(k)?.trim().strip_suffix("kB")?;
            v.trim().parse::<u64>().ok()
        })
    };
    Some((get("Pss:")?, get("Rss:")?))
}

/// Measures the shims of `rt` serving `pods` pods.
pub fn measure_shims(c: &Containerd, rt: Rt, pods: usize) -> MemRow {
    let pids = shim_pids_of(c, rt);
    let (mut pss, mut rss, mut tmax, mut tsum) = (0u64, 0u64, 0u64, 0u64);
    let mut counted = 0usize;
    for &p in &pids {
        let Some((mut ps, mut rs)) = pss_rss_kib(p) else {
            continue;
        };
        // A mypod shim's zygote (the fork server of its setup helpers) is part of the shim.
        for z in procfs::pids()
            .into_iter()
            .filter(|&z| procfs::ppid(z) == Some(p) && procfs::is_zygote(z))
        {
            if let Some((zp, zr)) = pss_rss_kib(z) {
                ps += zp;
                rs += zr;
            }
        }
        let threads = procfs::status(p)
            .and_then(|s| procfs::status_field(&s, "Threads").and_then(|t| t.parse().ok()))
            .unwrap_or(0u64);
        pss += ps;
        rss += rs;
        tmax = tmax.max(threads);
        tsum += threads;
        counted += 1;
    }
    let per = pods.max(1) as f64;
    MemRow {
        rt,
        pods,
        shims: counted,
        pss_per_pod_kib: pss as f64 / per,
        rss_per_pod_kib: rss as f64 / per,
        threads_max: tmax,
        threads_mean: if counted > 0 {
            tsum as f64 / counted as f64
        } else {
            0.0
        },
    }
}

/// Grows the number of running pods (each with `containers` containers) of both runtimes to
/// each of `levels` in turn (alternating runtimes), and measures the shims at each level after
/// `settle`. Removes the pods again.
pub fn memory(
    c: &Containerd,
    levels: &[usize],
    containers: usize,
    settle: Duration,
    p: &Progress,
) -> Result<Vec<MemRow>, String> {
    let client = c.cri();
    let mut pods: Vec<BenchPod> = Vec::new();
    let mut rows = Vec::new();
    let result = (|| {
        let mut have = 0;
        for &level in levels {
            for i in have..level {
                for rt in Rt::order(i) {
                    check_interrupted()?;
                    match start_pod(c, client, rt, &format!("m-{rt}-{i}"), containers) {
                        Ok((pod, _)) => pods.push(pod),
                        Err((pod, e)) => {
                            pods.extend(pod);
                            return Err(e);
                        }
                    }
                }
            }
            have = have.max(level);
            thread::sleep(settle);
            for rt in Rt::BOTH {
                let row = measure_shims(c, rt, level);
                p.line(&format!(
                    "memory at {level} pods: {rt}: {} shims, PSS {:.0} KiB/pod, RSS {:.0} KiB/pod, threads ≤ {}",
                    row.shims, row.pss_per_pod_kib, row.rss_per_pod_kib, row.threads_max
                ));
                rows.push(row);
            }
        }
        Ok::<(), String>(())
    })();
    p.line(&format!("memory: removing {} pods", pods.len()));
    for pod in &pods {
        if interrupted() {
            break;
        }
        if let Err(e) = remove_pod(client, pod) {
            p.line(&format!("memory: teardown: {e}"));
        }
    }
    result.map(|()| rows)
}

/// What a density run did.
#[derive(Clone, Debug)]
pub struct Density {
    pub rt: Rt,
    pub pods: usize,
    pub containers_per_pod: usize,
    pub parallel: usize,
    /// Wall time until every pod start returned (s).
    pub start_s: f64,
    /// Pods CRI lists as READY, and containers as RUNNING, after the start.
    pub ready_pods: usize,
    pub running_containers: usize,
    /// Wall time of the concurrent teardown (s).
    pub teardown_s: f64,
    /// Errors of pod starts (at most a few kept, with the count).
    pub errors: Vec<String>,
    pub error_count: usize,
}

impl Density {
    /// True if every pod and container ran.
    pub fn all_ran(&self) -> bool {
        self.error_count == 0
            && self.ready_pods == self.pods
            && self.running_containers == self.pods * self.containers_per_pod
    }
}

/// Runs `f(client, i)` for i in 0..n on `parallel` threads, each with its own CRI client.
fn fan_out<F>(c: &Containerd, n: usize, parallel: usize, f: F) -> Result<(), String>
where
    F: Fn(&CriClient, usize) + Sync,
{
    let next = AtomicUsize::new(0);
    let errors = Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..parallel.max(1) {
            s.spawn(|| {
                let client = match CriClient::connect(&c.address()) {
                    Ok(cl) => cl,
                    Err(e) => {
                        errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= n || interrupted() {
                        break;
                    }
                    f(&client, i);
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    match errors.first() {
        Some(e) => Err(format!("CRI client: {e}")),
        None => Ok(()),
    }
}

/// Starts `n` pods × `containers` containers of `rt` with `parallel` concurrent CRI clients,
/// checks what runs, measures the shims, and removes the pods concurrently (timed).
pub fn density(
    c: &Containerd,
    rt: Rt,
    n: usize,
    containers: usize,
    parallel: usize,
    settle: Duration,
    p: &Progress,
) -> Result<(Density, MemRow), String> {
    let pods: Mutex<Vec<BenchPod>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let done = AtomicUsize::new(0);
    let t0 = Instant::now();
    let started = fan_out(c, n, parallel, |client, i| {
        let res = start_pod(c, client, rt, &format!("d-{rt}-{i}"), containers);
        let lock = |m: &Mutex<Vec<_>>| m.lock().unwrap_or_else(|e| e.into_inner()).len();
        match res {
            Ok((pod, _)) => pods.lock().unwrap_or_else(|e| e.into_inner()).push(pod),
            Err((pod, e)) => {
                if let Some(pod) = pod {
                    pods.lock().unwrap_or_else(|e| e.into_inner()).push(pod);
                }
                errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
            }
        }
        let d = done.fetch_add(1, Ordering::SeqCst) + 1;
        if d.checked_rem(20) == Some(0) || d == n {
            p.line(&format!(
                "density {rt}: {d}/{n} pod starts returned ({} failed)",
                lock(&errors)
            ));
        }
    });
    let start_s = t0.elapsed().as_secs_f64();
    let pods = pods.into_inner().unwrap_or_else(|e| e.into_inner());
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    let ids: Vec<&str> = pods.iter().map(|p| p.id.as_str()).collect();
    let client = c.cri();
    let ready_pods = client
        .list_pod_sandbox(None)
        .map(|l| {
            l.iter()
                .filter(|s| {
                    ids.contains(&s.id.as_str())
                        && s.state == api::PodSandboxState::SandboxReady as i32
                })
                .count()
        })
        .unwrap_or(0);
    let running_containers = client
        .list_containers(None)
        .map(|l| {
            l.iter()
                .filter(|x| {
                    ids.contains(&x.pod_sandbox_id.as_str())
                        && x.state == api::ContainerState::ContainerRunning as i32
                })
                .count()
        })
        .unwrap_or(0);
    thread::sleep(settle);
    let mem = measure_shims(c, rt, pods.len());
    p.line(&format!(
        "density {rt}: {n} pods in {start_s:.1} s; {ready_pods} ready, {running_containers} containers running; \
         shims {}: PSS {:.0} KiB/pod, threads ≤ {}; removing",
        mem.shims, mem.pss_per_pod_kib, mem.threads_max
    ));
    let t1 = Instant::now();
    let teardown_errors = Mutex::new(Vec::new());
    let removed = fan_out(c, pods.len(), parallel, |client, i| {
        if let Err(e) = remove_pod(client, &pods[i]) {
            teardown_errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(e);
        }
    });
    let teardown_s = t1.elapsed().as_secs_f64();
    let teardown_errors = teardown_errors
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(e) = teardown_errors.first() {
        p.line(&format!(
            "density {rt}: {} teardown errors, first: {e}",
            teardown_errors.len()
        ));
    }
    started?;
    removed?;
    check_interrupted()?;
    Ok((
        Density {
            rt,
            pods: n,
            containers_per_pod: containers,
            parallel,
            start_s,
            ready_pods,
            running_containers,
            teardown_s,
            error_count: errors.len(),
            errors: errors.into_iter().take(3).collect(),
        },
        mem,
    ))
}
