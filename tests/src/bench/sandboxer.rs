//! Issue 17's figures (containerd 2.x only): a pod whose sandbox is mypod's shim itself
//! (`sandboxer = "shim"`, handler `mypod-shim`) against mypod and runc-v2 with a pause
//! container, in one run, handlers alternating: pod start (RunPodSandbox + the containers'
//! CreateContainer + StartContainer) and teardown (StopPodSandbox + RemovePodSandbox) through
//! CRI, and what a running pod costs besides its containers (PSS of its shim plus its pause
//! process or holder). Written to `docs/benchmarks-sandboxer.md`.

use std::time::Instant;

use super::stats::median;
use super::{check_interrupted, ms, Progress};
use crate::containerd::Containerd;
use crate::cri::{verbose_info, ContainerBuilder};
use crate::cri_instance::SHIM_SANDBOXER;
use crate::procfs;

/// The handlers compared, the shim sandboxer first.
const HANDLERS: [&str; 3] = [SHIM_SANDBOXER, "mypod", "runc"];

/// One handler's samples.
#[derive(Debug, Default, Clone)]
struct Samples {
    start: Vec<f64>,
    /// RunPodSandbox alone, the first part of `start`.
    sandbox: Vec<f64>,
    teardown: Vec<f64>,
    /// PSS (KiB) of the pod's shim plus its pause process or holder.
    pss: Vec<f64>,
}

/// The pod's processes that are not its containers' (its shim's other children: the pause
/// process or the holder) plus the shim itself, found from a container's host pid.
fn pod_overhead_pss(container_pids: &[u32]) -> Option<f64> {
    let shim = procfs::ppid(*container_pids.first()?)?;
    let mut pss = super::cri_phases::pss_rss_kib(shim)?.0;
    for p in procfs::pids() {
        if procfs::ppid(p) == Some(shim) && !container_pids.contains(&p) {
            pss += super::cri_phases::pss_rss_kib(p).map_or(0, |x| x.0);
        }
    }
    Some(pss as f64)
}

/// Runs `n` pods of `containers` containers per handler; returns the markdown section.
pub fn measure(
    c: &Containerd,
    n: usize,
    containers: usize,
    p: &Progress,
) -> Result<String, String> {
    let client = c.cri();
    let mut all: Vec<Samples> = vec![Samples::default(); HANDLERS.len()];
    for i in 0..n {
        for k in 0..HANDLERS.len() {
            check_interrupted()?;
            let h = (i + k) % HANDLERS.len();
            let handler = HANDLERS[h];
            let b = c.pod(&format!("sbx-{i}-{h}"));
            let config = b.build();
            let t0 = Instant::now();
            let id = client
                .run_pod_sandbox(&config, handler)
                .map_err(|e| format!("pod ({handler}): {e}"))?;
            let sandbox = ms(t0.elapsed());
            let mut pids = Vec::new();
            let mut res = Ok(());
            for j in 0..containers {
                let cb = ContainerBuilder::new(&format!("c{j}"), &["sleep", "3600"]);
                let r = client
                    .create_container(&id, &cb.build(&b), &config)
                    .and_then(|cid| client.start_container(&cid).map(|()| cid));
                match r {
                    Ok(cid) => pids.push(cid),
                    Err(e) => {
                        res = Err(format!("pod ({handler}): {e}"));
                        break;
                    }
                }
            }
            let start = ms(t0.elapsed());
            c.note_shim_sockets();
            let host_pids: Vec<u32> = pids
                .iter()
                .filter_map(|cid| {
                    let st = client.container_status(cid, true).ok()?;
                    verbose_info(&st.info)["pid"].as_u64().map(|p| p as u32)
                })
                .collect();
            let pss = pod_overhead_pss(&host_pids);
            let t1 = Instant::now();
            let down = client
                .stop_pod_sandbox(&id)
                .and_then(|()| client.remove_pod_sandbox(&id))
                .map_err(|e| format!("pod ({handler}) teardown: {e}"));
            let teardown = ms(t1.elapsed());
            res?;
            down?;
            all[h].start.push(start);
            all[h].sandbox.push(sandbox);
            all[h].teardown.push(teardown);
            if let Some(x) = pss {
                all[h].pss.push(x);
            }
        }
        if (i + 1) % 5 == 0 || i + 1 == n {
            p.line(&format!("sandboxer: {}/{n} rounds", i + 1));
        }
    }
    Ok(markdown(&all, n, containers))
}

fn markdown(all: &[Samples], n: usize, containers: usize) -> String {
    let med = |v: &[f64]| median(v).unwrap_or(f64::NAN);
    let runc = &all[HANDLERS.len() - 1];
    let (rs, rt, rp) = (med(&runc.start), med(&runc.teardown), med(&runc.pss));
    let rsb = med(&runc.sandbox);
    let mut s = format!(
        "# mypod as the pod's sandbox (containerd 2.1, `sandboxer = \"shim\"`)\n\n\
         Written by `scripts/bench.sh --containerd 2.1 --only sandboxer` (tests/src/bench/sandboxer.rs). \
         {n} pods per handler, {containers} `sleep` containers each, handlers alternating on one \
         containerd 2.1 instance; medians. `mypod-shim`: the shim is the pod's sandbox (no pause \
         container, no pause image: the holder is forked by the shim); `mypod` and `runc`: \
         containerd's pause-container sandbox. Memory: PSS of the pod's shim plus its pause \
         process or holder (the containers themselves excluded).\n\n\
         | handler | pod start ms | × runc-v2 | of which RunPodSandbox ms | × runc-v2 | teardown ms | × runc-v2 | shim + pause/holder PSS KiB | × runc-v2 |\n\
         |---|---|---|---|---|---|---|---|---|\n"
    );
    for (h, x) in HANDLERS.iter().zip(all) {
        let (a, b, m) = (med(&x.start), med(&x.teardown), med(&x.pss));
        let sb = med(&x.sandbox);
        s.push_str(&format!(
            "| {h} | {a:.1} | {:.2} | {sb:.1} | {:.2} | {b:.1} | {:.2} | {m:.0} | {:.2} |\n",
            a / rs,
            sb / rsb,
            b / rt,
            m / rp
        ));
    }
    s.push_str("\nTarget (issue 17): pod start ≤ 0.3× runc-v2's with no pause image pulled.\n");
    s.push_str(WHERE_TIME_GOES);
    s
}

/// A one-off breakdown from debug logs (not measured by this run), kept with the report.
const WHERE_TIME_GOES: &str = "
## Where a pod start's time goes

Measured 2026-12-06 (after this session's changes) from containerd's and the shim's debug logs
of a run of this bench and a throwaway timing probe in the shim and its helpers; one
`mypod-shim` pod of 3 `sleep` containers on containerd 2.1, medians:

| step | ms | whose |
|---|---|---|
| RunPodSandbox: CRI before CNI, then CNI (bridge, host-local, portmap) | 2 + 18 to 28 | containerd, CNI |
| shim `start`: containerd execs the binary, which seals itself, binds and forks the pod's server | 3.8 | containerd and shim |
| CreateSandbox: pod files, the pod user namespace (0.5, a cloned child), cgroups (0.8), the holder set up by a helper the zygote forks | 5 | shim |
| StartSandbox, then CRI's own bookkeeping | 0.5 + 2 | shim, containerd |
| each container: CreateContainer (spec, snapshot) | 6.5 | containerd |
| each container: StartContainer, 11 in all: before Create (FIFOs, bootstrap.json, a connection; no `start` run since the sandbox answers shim API version 3) 1.5, Create 5.8, Start 0.5, CRI's bookkeeping around them 3.3 | 11 | shim 6.3, containerd 4.8 |
| of the shim's Create: spec and cgroup directories 1.0, helper forked by the zygote 0.35, request sent 0.3, rootfs mount and limits 0.8 while the helper joins the pod's namespaces, then the helper's mounts 1.0, devices 0.35, pivot_root 0.13, seccomp and user 0.35 | 5.8 | shim |

The shim's part is about 12 ms of RunPodSandbox and 6.3 ms per container, about 31 ms of a pod
start of 3 containers; containerd's and CNI's part is about 60 ms.

Measured again at the end of that day (the seccomp filters kept in the shim's memory, the
request smaller), a pod start of 81.4 ms split as: RunPodSandbox until CNI is done 20.1,
the shim's `start` 3.7, CreateSandbox 5.3, the three containers in the shim 15.5 (5.2 each),
containerd's own work on the rest 32.7. containerd and CNI alone are then about 53 ms, 0.22×
of runc-v2's 234-245 ms pod start, so 0.3× (70-74 ms) would leave the shim 17-21 ms for a
sandbox and three containers where it spends 24.5, most of it serial kernel work (per
container: the helper's mounts 1.0, device nodes 0.2, seccomp load 0.25, pivot_root 0.12,
the fork 0.16; cgroup directories on v1's hierarchies 0.8). What is left to try adds up to
about 3 ms. The ratio moved between 0.33 and 0.38 across runs of this bench on one day from
this VM's noise alone; the target is not met here.
";
