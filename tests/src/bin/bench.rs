//! `bench`: mypod against containerd's runc-v2 shim on one private containerd (issue 7).
//! Run it through `scripts/bench.sh` (set-up, release builds, then this), as root:
//!
//! ```text
//! bench [--containerd 1.6|1.7|2.1] [--iterations N] [--exec-iterations N]
//!       [--pod-iterations N] [--containers N] [--memory-pods 1,20] [--density N]
//!       [--parallel N] [--only ctr,pods,memory,density,sandbox] [--sandbox-reps N] [--quick]
//!       [--docs DIR] [--no-docs]
//! ```
//!
//! It starts one CRI-enabled containerd of the harness with both shims on its PATH (mypod, and
//! Debian's runc + that version's containerd-shim-runc-v2), imports the busybox and pause
//! images, measures both runtimes alternately, prints a table, and rewrites
//! `docs/benchmarks.md` and `docs/benchmarks.png` (unless `--no-docs`). The samples are kept in
//! `target/bench/samples.json`. Everything it starts is removed when it ends, also on failure
//! or Ctrl-C.

// Test code: a panic (unwrap, expect) is how a test or the harness fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mypod_tests::bench::cri_phases::{self, Density, MemRow};
use mypod_tests::bench::ctr_phases::{self, LifecycleRun};
use mypod_tests::bench::report::{self, Run};
use mypod_tests::bench::sysinfo::{self, Machine};
use mypod_tests::bench::{events, install_signal_handlers, interrupted, Progress, Rt, Series};
use mypod_tests::version::{repo_root, Version};
use mypod_tests::Containerd;

/// Command-line settings.
#[derive(Clone, Debug)]
struct Opts {
    version: Version,
    iterations: usize,
    exec_iterations: usize,
    pod_iterations: usize,
    containers: usize,
    memory_pods: Vec<usize>,
    density: usize,
    parallel: usize,
    sandbox_reps: usize,
    phases: Vec<String>,
    docs: Option<PathBuf>,
}

const PHASES: [&str; 6] = ["ctr", "pods", "memory", "density", "sandbox", "sandboxer"];

const USAGE: &str = "usage: bench [--containerd 1.6|1.7|2.1] [--iterations N] [--exec-iterations N]
             [--pod-iterations N] [--containers N] [--memory-pods 1,20] [--density N]
             [--parallel N] [--only ctr,pods,memory,density,sandbox] [--sandbox-reps N] [--quick]
             [--docs DIR] [--no-docs]

  --containerd V       containerd to run (default 1.6: Debian's; 1.7 and 2.1 from .cache/)
  --iterations N       ctr run --rm, and ctr run -d + delete, per runtime (default 100)
  --exec-iterations N  ctr task exec per runtime (default 200)
  --pod-iterations N   CRI pod start + teardown per runtime (default 30)
  --containers N       containers per pod in the pod-start measurement (default 3)
  --memory-pods LIST   running pods (per runtime) at which shim memory is measured (default
                       1,20; the density phase adds its own count)
  --density N          pods (2 containers each) per runtime in the density phase (default 100)
  --parallel N         concurrent CRI clients in the density phase (default 8)
  --only LIST          run only these phases (ctr, pods, memory, density, sandbox,
                       sandboxer: containerd 2.x only, writes benchmarks-sandboxer.md)
  --sandbox-reps N     runs of each throughput loop per variant in the sandbox phase
                       (default 9; runsc at most 2); its lifecycle uses --iterations / 4
  --quick              a smoke run: 5 / 10 / 3 iterations, memory at 1,3 pods, density 10
  --docs DIR           write benchmarks.md and benchmarks.png there (default <repo>/docs)
  --no-docs            do not write them (the table still goes to the terminal)";

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        version: Version::V1_6,
        iterations: 100,
        exec_iterations: 200,
        pod_iterations: 30,
        containers: 3,
        memory_pods: vec![1, 20],
        density: 100,
        parallel: 8,
        sandbox_reps: 9,
        phases: PHASES.iter().map(|s| s.to_string()).collect(),
        docs: Some(repo_root().join("docs")),
    };
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, name: &str| -> Result<usize, String> {
        v.as_deref()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{name} wants a number\n{USAGE}"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--containerd" => {
                let v = args.next().unwrap_or_default();
                o.version = match v.trim_start_matches('v').replace('_', ".").as_str() {
                    "1.6" => Version::V1_6,
                    "1.7" => Version::V1_7,
                    "2.1" => Version::V2_1,
                    _ => return Err(format!("--containerd {v:?}: want 1.6, 1.7 or 2.1")),
                };
            }
            "--iterations" => o.iterations = num(args.next(), &a)?,
            "--exec-iterations" => o.exec_iterations = num(args.next(), &a)?,
            "--pod-iterations" => o.pod_iterations = num(args.next(), &a)?,
            "--containers" => o.containers = num(args.next(), &a)?,
            "--density" => o.density = num(args.next(), &a)?,
            "--parallel" => o.parallel = num(args.next(), &a)?.max(1),
            "--sandbox-reps" => o.sandbox_reps = num(args.next(), &a)?.max(1),
            "--memory-pods" => {
                let v = args.next().unwrap_or_default();
                let mut l = Vec::new();
                for x in v.split(',').filter(|x| !x.is_empty()) {
                    l.push(
                        x.parse::<usize>()
                            .map_err(|_| format!("--memory-pods {v:?}: want numbers like 1,20"))?,
                    );
                }
                l.sort_unstable();
                l.dedup();
                o.memory_pods = l;
            }
            "--only" => {
                let v = args.next().unwrap_or_default();
                o.phases = v.split(',').map(str::to_string).collect();
                if let Some(bad) = o.phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
                    return Err(format!("--only: unknown phase {bad:?} (want {PHASES:?})"));
                }
            }
            "--quick" => {
                o.iterations = 5;
                o.exec_iterations = 10;
                o.pod_iterations = 3;
                o.memory_pods = vec![1, 3];
                o.density = 10;
                o.sandbox_reps = 1;
            }
            "--docs" => o.docs = Some(PathBuf::from(args.next().unwrap_or_default())),
            "--no-docs" => o.docs = None,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(o)
}

/// The fixed notes of docs/benchmarks.md (method and caveats).
fn notes(o: &Opts, run: &Run) -> String {
    let floor = mypod_tests::bench::stats::median(&run.floor)
        .map_or("?".to_string(), |f| format!("{f:.0} ms"));
    format!(
        "- **Noise.** This is a 2-core VM that other people use at the same time (see the load \
         averages above): absolute numbers under load are noisy, and so are the ratios. Both \
         runtimes are measured alternately in the same run to share whatever load there is; \
         compare runs only by their ratios, and rerun on a quiet machine for final numbers.\n\
         - **ctr's floor.** Every `ctr` measurement includes a fresh `ctr` process (Go start-up, \
         connect, namespace/image look-ups): `ctr version` alone takes {floor} here, and delete \
         is two ctr processes (`ctr task rm -f` + `ctr c rm`). No shim can make a `ctr` call faster \
         than that; the breakdown above shows how much of a lifecycle is containerd's own.\n\
         - **CRI.** CreateContainer makes only containerd's records (no shim call), so it is \
         containerd's own share of a pod start; RunPodSandbox includes CNI (bridge + host-local) \
         and StartContainer is where the shim creates and starts the container. Containers run \
         `sleep 3600` (busybox); the sandbox is the harness' static pause image.\n\
         - **Memory.** One shim process per pod for both runtimes (runc-v2 groups by sandbox id \
         too). PSS divides shared pages among the processes that map them, so it is the fair \
         per-pod figure; RSS counts the shim binary's shared pages once per shim.\n\
         - **Density.** {} concurrent CRI clients, each starting whole pods (RunPodSandbox, then \
         CreateContainer + StartContainer per container), as the kubelet's pod workers do; one \
         runtime after the other.\n\
         - Run it yourself: `scripts/bench.sh` (options: `scripts/bench.sh --help`; e.g. \
         `--containerd 2.1`, `--quick`).\n",
        o.parallel
    )
}

fn main() {
    let code = match real_main() {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("bench: {e}");
            2
        }
    };
    std::process::exit(code);
}

/// Runs the phases; Ok(false) if a phase failed or the run was interrupted.
fn real_main() -> Result<bool, String> {
    let o = parse_args()?;
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (containers, mounts, cgroups): run scripts/bench.sh".into());
    }
    install_signal_handlers();
    let p = Progress::new();
    let t_run = Instant::now();
    let want = |ph: &str| o.phases.iter().any(|x| x == ph);
    let mut run = Run {
        machine: Machine::gather(o.version),
        load_before: sysinfo::loadavg(),
        pss_target_pods: 20,
        settings: vec![format!(
            "iterations per runtime: lifecycle and create/delete {}, exec {}, pod start {} \
                 (sandbox + {} containers); memory at {:?} pods; density {} pods × 2 containers \
                 with {} parallel CRI clients; phases {}",
            o.iterations,
            o.exec_iterations,
            o.pod_iterations,
            o.containers,
            o.memory_pods,
            o.density,
            o.parallel,
            o.phases.join(",")
        )],
        ..Default::default()
    };
    p.line(&format!(
        "starting containerd {} (CRI, mypod + runc-v2 shims) and importing the images; load {}",
        o.version, run.load_before
    ));
    let c = Containerd::builder(o.version.as_str())
        .cri(true)
        .with_runc(true)
        .start();
    p.line(&format!("instance {} ready", c.dir().display()));

    let mut ok = true;
    let mut fail = |run: &mut Run, phase: &str, e: String| {
        p.line(&format!("{phase} FAILED: {e}"));
        run.problems.push(format!("{phase}: {e}"));
        ok = false;
    };

    let mut lifecycle_runs: Vec<LifecycleRun> = Vec::new();
    let mut exec_runs = Vec::new();
    if want("ctr") && !interrupted() {
        let r = (|| {
            ctr_phases::warm_up(&c, &p)?;
            let (lc, runs) = ctr_phases::lifecycle(&c, o.iterations, &p)?;
            run.series.push(lc);
            lifecycle_runs = runs;
            let (cs, del) = ctr_phases::create_delete(&c, o.iterations, &p)?;
            run.series.push(cs);
            run.series.push(del);
            let (ex, runs) = ctr_phases::exec(&c, o.exec_iterations, &p)?;
            run.series.push(ex);
            exec_runs = runs;
            run.floor = ctr_phases::ctr_floor(&c, o.iterations.max(10))?;
            Ok::<(), String>(())
        })();
        if let Err(e) = r {
            fail(&mut run, "ctr measurements", e);
        }
        if !lifecycle_runs.is_empty() {
            let log = std::fs::read_to_string(c.dir().join("containerd.log")).unwrap_or_default();
            run.breakdown = Some(events::breakdown(&lifecycle_runs, &log));
        }
        if !exec_runs.is_empty() {
            let log = std::fs::read_to_string(c.dir().join("containerd.log")).unwrap_or_default();
            run.exec_share = Some(events::exec_share(&exec_runs, &log));
        }
    }
    if want("pods") && !interrupted() {
        match cri_phases::pod_start(&c, o.pod_iterations, o.containers, &p) {
            Ok(s) => run.series.extend([
                s.start,
                s.run_sandbox,
                s.create,
                s.start_ctr,
                s.teardown,
                s.stop,
                s.remove,
            ]),
            Err(e) => fail(&mut run, "pod start", e),
        }
    }
    if want("sandbox") && !interrupted() {
        match mypod_tests::bench::sandbox::measure(
            &c,
            (o.iterations / 4).max(3),
            o.sandbox_reps,
            &p,
        ) {
            Ok(sb) => run.sandbox = Some(sb),
            Err(e) => fail(&mut run, "sandbox", e),
        }
    }
    let mut sandboxer_md = None;
    if want("sandboxer") && !interrupted() && o.version == Version::V2_1 {
        match mypod_tests::bench::sandboxer::measure(&c, o.pod_iterations, o.containers, &p) {
            Ok(md) => {
                print!("{md}");
                sandboxer_md = Some(md);
            }
            Err(e) => fail(&mut run, "sandboxer", e),
        }
    }
    let settle = Duration::from_secs(2);
    // Memory is measured in the steady state: past a pod's start, once mypod's zygote (the
    // fork server of its setup helpers) has ended for want of setups (after 10 s idle).
    let steady = Duration::from_secs(12);
    if want("memory") && !interrupted() && !o.memory_pods.is_empty() {
        match cri_phases::memory(&c, &o.memory_pods, 2, steady, &p) {
            Ok(rows) => run.memory.extend(rows),
            Err(e) => fail(&mut run, "memory", e),
        }
    }
    if want("density") && !interrupted() && o.density > 0 {
        for rt in Rt::BOTH {
            if interrupted() {
                break;
            }
            p.line(&format!(
                "density {rt}: starting {} pods × 2 containers, {} at a time",
                o.density, o.parallel
            ));
            match cri_phases::density(&c, rt, o.density, 2, o.parallel, settle, &p) {
                Ok((d, m)) => {
                    run.density.push(d);
                    run.memory.push(m);
                }
                Err(e) => fail(&mut run, &format!("density {rt}"), e),
            }
        }
    }
    run.memory
        .sort_by_key(|m: &MemRow| (m.pods, m.rt != Rt::Mypod));
    run.density.sort_by_key(|d: &Density| d.rt != Rt::Mypod);
    if interrupted() {
        run.problems.push("interrupted by a signal".to_string());
        ok = false;
    } else if !ok {
        eprintln!("---- containerd log (tail) ----\n{}", c.log_tail(30));
    }
    // containerd's log (with the shims' logs) outlives the instance, for looking into failures.
    let kept_log = repo_root().join("target/bench/containerd.log");
    if let Some(d) = kept_log.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    if std::fs::copy(c.dir().join("containerd.log"), &kept_log).is_ok() {
        p.line(&format!("containerd's log kept at {}", kept_log.display()));
    }
    p.line("removing the instance (pods, containers, shims, mounts, cgroups, dirs)");
    drop(c);
    run.load_after = sysinfo::loadavg();
    run.duration_s = t_run.elapsed().as_secs_f64();
    print!("{}", run.terminal());

    let json_path = repo_root().join("target/bench/samples.json");
    let caption = format!(
        "mypod vs runc-v2, {}, {} ({} cores), {}",
        run.machine.containerd, run.machine.cpu, run.machine.cores, run.machine.date
    );
    report::write_file(
        &json_path,
        &serde_json::to_string_pretty(&run.json(&caption)).unwrap_or_default(),
    )?;
    p.line(&format!("samples: {}", json_path.display()));
    if interrupted() {
        p.line("interrupted: docs not rewritten");
        return Ok(false);
    }
    if let (Some(docs), Some(md)) = (&o.docs, &sandboxer_md) {
        let f = docs.join("benchmarks-sandboxer.md");
        report::write_file(&f, md)?;
        p.line(&format!("report: {}", f.display()));
    }
    if o.phases.iter().all(|ph| ph == "sandboxer") {
        // Only the sandboxer figures were asked for: benchmarks.md keeps the full run's.
        return Ok(ok);
    }
    if let Some(docs) = &o.docs {
        let png = docs.join("benchmarks.png");
        let has_latency = run.series.iter().any(|s: &Series| !s.mypod.is_empty());
        if has_latency {
            if let Err(e) = report::plot(&json_path, &png) {
                run.problems.push(format!("plot: {e}"));
                p.line(&format!("plot: {e}"));
            } else {
                p.line(&format!("plot: {}", png.display()));
            }
        }
        let md = docs.join("benchmarks.md");
        report::write_file(&md, &run.markdown(&notes(&o, &run)))?;
        p.line(&format!("report: {}", md.display()));
    }
    Ok(ok)
}
