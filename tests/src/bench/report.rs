//! The bench's output: a table in the terminal, docs/benchmarks.md, the samples as JSON, and
//! the plot (docs/benchmarks.png, drawn by matplotlib from the JSON).

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use super::cri_phases::{Density, MemRow};
use super::events::{Breakdown, ExecShare, SEGMENTS};
use super::stats::{self, summarize};
use super::sysinfo::Machine;
use super::{Rt, Series};

/// Everything one run measured.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub machine: Machine,
    /// The command line and iteration counts, as text.
    pub settings: Vec<String>,
    pub series: Vec<Series>,
    /// `ctr version` wall times (ms).
    pub floor: Vec<f64>,
    pub breakdown: Option<Breakdown>,
    /// mypod's exec time split into the shim's RPCs and the rest.
    pub exec_share: Option<ExecShare>,
    pub memory: Vec<MemRow>,
    pub density: Vec<Density>,
    pub load_before: String,
    pub load_after: String,
    pub duration_s: f64,
    /// Phases that failed or were skipped, with why.
    pub problems: Vec<String>,
    /// The memory level whose PSS ratio has a target (20 pods).
    pub pss_target_pods: usize,
    /// The sandbox phase: defaults on/off and runsc.
    pub sandbox: Option<super::sandbox::SandboxReport>,
}

/// One target of the issue: what, the value, and whether it is met (None: not measured).
pub struct Target {
    pub what: String,
    pub value: String,
    pub met: Option<bool>,
}

fn fmt_ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn cell(s: &[f64]) -> String {
    match summarize(s) {
        Some(x) => format!("{} ({}–{})", fmt_ms(x.median), fmt_ms(x.p10), fmt_ms(x.p90)),
        None => "–".to_string(),
    }
}

impl Run {
    /// The memory row of `rt` at `pods` pods.
    pub fn mem(&self, rt: Rt, pods: usize) -> Option<&MemRow> {
        self.memory.iter().find(|m| m.rt == rt && m.pods == pods)
    }

    fn series(&self, key: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.key == key)
    }

    /// The targets and whether this run met them.
    pub fn targets(&self) -> Vec<Target> {
        let mut t = Vec::new();
        for (key, what) in [
            ("lifecycle", "lifecycle median ratio ≤ 0.5"),
            ("exec", "exec median ratio ≤ 0.25"),
            ("pod_start", "pod start median ratio ≤ 0.5"),
        ] {
            let s = self.series(key);
            let r = s.and_then(Series::ratio);
            let limit = s.and_then(|s| s.target).unwrap_or(f64::NAN);
            t.push(Target {
                what: what.to_string(),
                value: r.map_or("not measured".into(), |r| format!("{r:.2}")),
                met: r.map(|r| r <= limit),
            });
        }
        if let Some(sb) = &self.sandbox {
            for (l, (name, _, _)) in super::sandbox::LOOPS.iter().enumerate() {
                let r = sb.throughput(l, "mypod");
                t.push(Target {
                    what: format!(
                        "throughput in a container, {name} loop, mypod defaults ≥ 0.95× runc-v2"
                    ),
                    value: r.map_or("not measured".into(), |r| format!("{r:.2}")),
                    met: r.map(|r| r >= 0.95),
                });
            }
        }
        let n = self.pss_target_pods;
        let pss = match (self.mem(Rt::Mypod, n), self.mem(Rt::Runc, n)) {
            (Some(m), Some(r)) if r.pss_per_pod_kib > 0.0 => {
                Some(m.pss_per_pod_kib / r.pss_per_pod_kib)
            }
            _ => None,
        };
        t.push(Target {
            what: format!("shim PSS per pod at {n} pods, ratio ≤ 0.2"),
            value: pss.map_or("not measured".into(), |r| format!("{r:.3}")),
            met: pss.map(|r| r <= 0.2),
        });
        let threads = self
            .memory
            .iter()
            .filter(|m| m.rt == Rt::Mypod && m.shims > 0)
            .map(|m| m.threads_max)
            .max();
        t.push(Target {
            what: "≤ 4 threads per mypod shim".to_string(),
            value: threads.map_or("not measured".into(), |x| format!("max {x}")),
            met: threads.map(|x| x <= 4),
        });
        let d = self.density.iter().find(|d| d.rt == Rt::Mypod);
        t.push(Target {
            what: "all density pods start (mypod)".to_string(),
            value: d.map_or("not measured".into(), |d| {
                format!(
                    "{}/{} pods ready, {}/{} containers running",
                    d.ready_pods,
                    d.pods,
                    d.running_containers,
                    d.pods * d.containers_per_pod
                )
            }),
            met: d.map(Density::all_ran),
        });
        t
    }

    /// The latency table (markdown; also readable in a terminal).
    pub fn latency_table(&self) -> String {
        let mut s = String::new();
        s.push_str("| measurement | mypod ms: median (p10–p90) | runc-v2 ms: median (p10–p90) | mypod/runc | target |\n");
        s.push_str("|---|---|---|---|---|\n");
        for x in &self.series {
            let ratio = x.ratio().map_or("–".into(), |r| format!("{r:.2}"));
            let target = match (x.target, x.ratio()) {
                (Some(t), Some(r)) => {
                    format!("≤ {t} {}", if r <= t { "**met**" } else { "**missed**" })
                }
                (Some(t), None) => format!("≤ {t}"),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {ratio} | {target} |",
                x.title,
                cell(&x.mypod),
                cell(&x.runc)
            );
        }
        if !self.floor.is_empty() {
            let _ = writeln!(
                s,
                "| floor: `ctr version` (ctr start-up + 1 RPC, no shim) | {} | (same) | – | |",
                cell(&self.floor)
            );
        }
        s
    }

    /// The memory/threads table.
    pub fn memory_table(&self) -> String {
        let mut s = String::new();
        s.push_str("| running pods | runtime | shims | PSS per pod | RSS per pod | threads per shim (mean / max) | PSS ratio mypod/runc |\n");
        s.push_str("|---|---|---|---|---|---|---|\n");
        for m in &self.memory {
            let ratio = match (m.rt, self.mem(Rt::Runc, m.pods)) {
                (Rt::Mypod, Some(r)) if r.pss_per_pod_kib > 0.0 => {
                    format!("{:.3}", m.pss_per_pod_kib / r.pss_per_pod_kib)
                }
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} MiB | {:.2} MiB | {:.1} / {} | {ratio} |",
                m.pods,
                m.rt,
                m.shims,
                m.pss_per_pod_kib / 1024.0,
                m.rss_per_pod_kib / 1024.0,
                m.threads_mean,
                m.threads_max
            );
        }
        s
    }

    /// The density table.
    pub fn density_table(&self) -> String {
        let mut s = String::new();
        s.push_str("| runtime | pods × containers | parallel CRI clients | start, all pods | pods ready | containers running | all ran | teardown |\n");
        s.push_str("|---|---|---|---|---|---|---|---|\n");
        for d in &self.density {
            let _ = writeln!(
                s,
                "| {} | {} × {} | {} | {:.1} s | {} | {} | {} | {:.1} s |",
                d.rt,
                d.pods,
                d.containers_per_pod,
                d.parallel,
                d.start_s,
                d.ready_pods,
                d.running_containers,
                if d.all_ran() { "yes" } else { "**no**" },
                d.teardown_s
            );
            for e in &d.errors {
                let _ = writeln!(
                    s,
                    "|  | error ({} in all): {e} | | | | | | |",
                    d.error_count
                );
            }
        }
        s
    }

    /// mypod's `ctr task exec` split into the shim's own RPC time and everything else, and the
    /// ratio a shim that took no time at all would reach against this run's runc.
    pub fn exec_share_table(&self) -> String {
        let Some(x) = &self.exec_share else {
            return String::new();
        };
        let runc = self
            .series
            .iter()
            .find(|s| s.key == "exec")
            .and_then(|s| stats::median(s.samples(Rt::Runc)));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| mypod `ctr task exec /bin/true` | ms (median of {} runs) |\n|---|---|",
            x.runs
        );
        let _ = writeln!(s, "| whole command | {} |", fmt_ms(x.wall));
        let _ = writeln!(
            s,
            "| in the shim: its Exec, Start and Delete RPCs (the shim's own timing) | {} |",
            fmt_ms(x.shim)
        );
        let _ = writeln!(
            s,
            "| everything else: ctr, containerd, events, /bin/true itself | {} |",
            fmt_ms(x.rest)
        );
        if let Some(r) = runc.filter(|r| *r > 0.0) {
            let _ = writeln!(
                s,
                "| ratio a shim taking no time at all would reach (everything else / runc-v2's median {}) | **{:.2}** |",
                fmt_ms(r),
                x.rest / r
            );
        }
        s
    }

    /// The lifecycle breakdown from containerd's log.
    pub fn breakdown_table(&self) -> String {
        let Some(b) = &self.breakdown else {
            return String::new();
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "| `ctr run --rm` segment (between containerd's log events) | mypod ms | runc-v2 ms |\n|---|---|---|"
        );
        let mut sums = [[0.0f64; 2]; 2];
        for (i, (what, shim)) in SEGMENTS.iter().enumerate() {
            let m = b.of(Rt::Mypod).get(i).copied().unwrap_or(f64::NAN);
            let r = b.of(Rt::Runc).get(i).copied().unwrap_or(f64::NAN);
            let k = usize::from(*shim);
            sums[k][0] += m;
            sums[k][1] += r;
            let _ = writeln!(s, "| {what} | {} | {} |", fmt_ms(m), fmt_ms(r));
        }
        let _ = writeln!(
            s,
            "| **sum of the containerd/ctr segments (the floor)** | **{}** | **{}** |",
            fmt_ms(sums[0][0]),
            fmt_ms(sums[0][1])
        );
        let _ = writeln!(
            s,
            "| **sum of the segments with shim RPCs** | **{}** | **{}** |",
            fmt_ms(sums[1][0]),
            fmt_ms(sums[1][1])
        );
        let _ = writeln!(
            s,
            "\n(medians of each segment over {} mypod and {} runc runs whose events were all found; \
             medians of parts do not add up exactly to the median of the whole)",
            b.runs_mypod, b.runs_runc
        );
        s
    }

    /// The targets as a table.
    pub fn targets_table(&self) -> String {
        let mut s = String::from("| target | this run | met |\n|---|---|---|\n");
        for t in self.targets() {
            let met = match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            };
            let _ = writeln!(s, "| {} | {} | {met} |", t.what, t.value);
        }
        s
    }

    /// What the terminal shows at the end.
    pub fn terminal(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "\n== mypod vs runc-v2 on {} ({} cores, kernel {}), {}; {}; {} ==\n",
            m.cpu, m.cores, m.kernel, m.containerd, m.runc, m.date
        );
        s.push_str(&self.latency_table());
        s.push('\n');
        s.push_str(&self.breakdown_table());
        s.push('\n');
        s.push_str(&self.exec_share_table());
        s.push('\n');
        s.push_str(&self.memory_table());
        s.push('\n');
        s.push_str(&self.density_table());
        s.push('\n');
        if let Some(sb) = &self.sandbox {
            s.push_str(&sb.table());
            s.push('\n');
        }
        s.push_str(&self.targets_table());
        for p in &self.problems {
            let _ = writeln!(s, "PROBLEM: {p}");
        }
        let _ = writeln!(
            s,
            "load average before/after: {} / {}; run took {:.0} s",
            self.load_before, self.load_after, self.duration_s
        );
        s
    }

    /// docs/benchmarks.md.
    pub fn markdown(&self, notes: &str) -> String {
        let m = &self.machine;
        let mut s = String::new();
        s.push_str("# Benchmarks: mypod vs containerd's runc-v2 shim\n\n");
        s.push_str("Written by `scripts/bench.sh` (binary `bench` of the tests crate, `tests/src/bin/bench.rs` and\n`tests/src/bench/`); every run rewrites this file and `docs/benchmarks.png`.\n\n");
        let _ = writeln!(s, "- date: {}", m.date);
        let _ = writeln!(
            s,
            "- machine: {}, {} cores, {} memory, kernel {}, cgroups {}",
            m.cpu, m.cores, m.memory, m.kernel, m.cgroups
        );
        let _ = writeln!(s, "- containerd: {}", m.containerd);
        let _ = writeln!(s, "- runc: {}; runc shim: {}", m.runc, m.runc_shim);
        let _ = writeln!(s, "- mypod: {}", m.mypod);
        for line in &self.settings {
            let _ = writeln!(s, "- {line}");
        }
        let _ = writeln!(
            s,
            "- load average (1/5/15 min) before / after: {} / {}; the run took {:.0} s",
            self.load_before, self.load_after, self.duration_s
        );
        s.push_str("\n## Targets\n\n");
        s.push_str(&self.targets_table());
        s.push_str("\n## Latency\n\nBoth runtimes on one containerd, alternating per iteration (which runtime goes first alternates too). Wall times of the whole `ctr` process or CRI call, as a user or the kubelet sees them.\n\n");
        s.push_str(&self.latency_table());
        s.push_str("\n![latency distributions](benchmarks.png)\n");
        if self.breakdown.is_some() {
            s.push_str("\n## Where a `ctr run --rm` spends its time\n\nFrom containerd's own debug log: the times it logged the events of each run (`/containers/create`, then the shim's `/tasks/create`, `/tasks/start`, `/tasks/exit`, `/tasks/delete`), between ctr's start and end as the bench saw them (same clock). The first and last segments involve no shim RPC: they are the floor no shim can go below.\n\n");
            s.push_str(&self.breakdown_table());
        }
        if self.exec_share.is_some() {
            s.push_str("\n## Where a `ctr task exec` spends its time\n\nmypod's shim logs (debug) how long each RPC took; an exec is three: Exec (records the process), Start (starts the init helper, joins the container, execs /bin/true) and Delete. The rest of the command's time is ctr's and containerd's, and no shim can go below it.\n\n");
            s.push_str(&self.exec_share_table());
        }
        if let Some(sb) = &self.sandbox {
            s.push_str("\n## What the sandbox costs, and gVisor\n\nmypod's defaults (`[sandbox] user_namespace = \"pod\"`, `seccomp = \"default\"`) against the same with each half off and with both off, and with a spec profile that allows every system call (what any seccomp filter costs in the kernel, whatever its rules), runc-v2 (no seccomp profile: ctr's default spec has none) and runc-v2 with containerd's default profile (`ctr run --seccomp`, what CRI's RuntimeDefault gives: any filter makes every system call take the kernel's seccomp entry path, so the syscall loop's price is the filter's, runc-v2's as much as mypod's), and gVisor (Debian trixie's `runsc` 2024-07; bookworm's has no systrap platform; run by the runc-v2 shim as its runtime binary through a wrapper adding `--platform=systrap --network=none`; the kvm platform hangs on this host and ptrace is far slower). Lifecycle: `ctr run --rm /bin/true`, variants alternating. Loops: run by `ctr task exec` in one running container per variant and timed inside it (`time -p`), so only the work is measured; runsc runs each loop twice (it takes many times longer).\n\n");
            s.push_str(&sb.table());
        }
        s.push_str("\n## Shim memory and threads\n\nPSS and RSS from `/proc/PID/smaps_rollup` of every shim process of the runtime (with mypod's zygote, if it still runs), summed and divided by the number of running pods (each pod: sandbox + 2 containers), 12 s after the last pod started: the steady state, once each mypod zygote (the fork server of a pod's setup helpers, about 0.15 MiB of PSS per pod at 20 pods while it runs) has ended for want of setups; threads from `/proc/PID/status`.\n\n");
        s.push_str(&self.memory_table());
        s.push_str("\n## Density\n\n");
        s.push_str(&self.density_table());
        if !self.problems.is_empty() {
            s.push_str("\n## Problems in this run\n\n");
            for p in &self.problems {
                let _ = writeln!(s, "- {p}");
            }
        }
        s.push_str("\n## Notes\n\n");
        s.push_str(notes);
        s
    }

    /// The samples as JSON (for the plot and for later comparison).
    pub fn json(&self, caption: &str) -> serde_json::Value {
        let series: Vec<serde_json::Value> = self
            .series
            .iter()
            .map(|x| {
                serde_json::json!({
                    "key": x.key,
                    "title": x.title,
                    "mypod": x.mypod,
                    "runc": x.runc,
                    "ratio": x.ratio(),
                    "target": x.target,
                })
            })
            .collect();
        serde_json::json!({
            "caption": caption,
            "series": series,
            "floor": self.floor,
            "median_floor": stats::median(&self.floor),
        })
    }
}

/// Draws the plot with `/usr/bin/python3` + matplotlib (Debian's python3-matplotlib, which
/// scripts/bench.sh installs) from the samples JSON.
pub fn plot(json: &Path, png: &Path) -> Result<(), String> {
    if let Some(d) = png.parent() {
        fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    let python = ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| !p.starts_with('/') || Path::new(p).is_file())
        .unwrap_or("python3");
    let mut child = Command::new(python)
        .arg("-")
        .arg(json)
        .arg(png)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{python}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(include_str!("plot.py").as_bytes())
            .map_err(|e| format!("{python} stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{python}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{python} (matplotlib) could not draw {}: {}",
            png.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// Writes `text` to `path`, creating its directory.
pub fn write_file(path: &Path, text: &str) -> Result<(), String> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).map_err(|e| format!("mkdir {}: {e}", d.display()))?;
    }
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}
