//! What mypod's sandbox costs, with gVisor beside it: `ctr run --rm` lifecycle and four
//! throughput loops inside a running container (system calls, files, fork/exec, pipes), for
//! runc-v2, mypod with its defaults (pod user namespace + default seccomp profile), mypod with
//! each half of the sandbox off and with both off, mypod with a filter that allows every
//! system call (what the kernel's seccomp path itself costs), and gVisor's runsc (Debian trixie's
//! `runsc`, `$MYPOD_BENCH_RUNSC` as scripts/bench.sh unpacks it, run by containerd's runc-v2
//! shim as its runtime binary, through a wrapper that adds the flags it needs here:
//! `--platform=systrap --network=none`).
//!
//! Every loop times itself inside the container (busybox `time -p`), so exec overhead is not
//! in the figure; variants alternate per repetition.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::ctr_phases::timed_ctr;
use super::stats::median;
use super::{check_interrupted, ms, Progress};
use crate::containerd::{Containerd, MYPOD_RUNTIME, RUNC_RUNTIME};
use crate::image::IMAGE;

/// One runtime set-up under comparison.
#[derive(Clone, Debug)]
pub struct Variant {
    pub name: String,
    runtime: &'static str,
    flags: Vec<String>,
}

/// The loops: name, what it stresses, the shell script.
pub const LOOPS: [(&str, &str, &str); 4] = [
    (
        "syscalls",
        "1.2 M one-byte read+write pairs (dd bs=1)",
        "dd if=/dev/zero of=/dev/null bs=1 count=1200000 2>/dev/null",
    ),
    (
        "files",
        "3000 small files written, read, removed; 120 MB written and read back in 4 KiB blocks, on the rootfs",
        "mkdir -p /tmp/ft && cd /tmp/ft && i=0; while [ $i -lt 3000 ]; do echo $i > f.$i; i=$((i+1)); done; \
         cat f.* > /dev/null; rm f.*; dd if=/dev/zero of=big bs=4096 count=30000 2>/dev/null; \
         dd if=big of=/dev/null bs=4096 2>/dev/null; rm big",
    ),
    (
        "fork/exec",
        "1000 fork+exec of /bin/true",
        "i=0; while [ $i -lt 1000 ]; do /bin/true; i=$((i+1)); done",
    ),
    (
        "pipes",
        "800 MB through two pipes (dd | cat | cat)",
        "dd if=/dev/zero bs=4096 count=200000 2>/dev/null | cat | cat > /dev/null",
    ),
];

/// Results of the phase.
#[derive(Clone, Debug, Default)]
pub struct SandboxReport {
    pub variants: Vec<String>,
    /// Lifecycle wall times (ms), per variant.
    pub lifecycle: Vec<Vec<f64>>,
    /// Loop times (s), per loop, per variant.
    pub loops: Vec<Vec<Vec<f64>>>,
    /// Why a variant is missing or failed.
    pub notes: Vec<String>,
}

/// The runsc wrapper's path if Debian's runsc is installed.
fn runsc_wrapper(c: &Containerd) -> Option<PathBuf> {
    let from_env = std::env::var_os("MYPOD_BENCH_RUNSC").map(PathBuf::from);
    let runsc = from_env
        .into_iter()
        .chain(["/usr/bin/runsc", "/usr/sbin/runsc"].map(PathBuf::from))
        .find(|p| p.exists())?;
    let w = c.dir().join("runsc-systrap");
    let script = format!(
        "#!/bin/sh\nexec {} --platform=systrap --network=none \"$@\"\n",
        runsc.display()
    );
    std::fs::write(&w, script).ok()?;
    let mut p = std::fs::metadata(&w).ok()?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
    std::fs::set_permissions(&w, p).ok()?;
    Some(w)
}

/// The variants this host can run.
pub fn variants(c: &Containerd, notes: &mut Vec<String>) -> Vec<Variant> {
    let config =
        |name: &str, text: &str| c.runtime_config_flag(&format!("bench-{name}.toml"), text);
    let runc_root = |sub: &str| {
        vec![
            "--runc-root".to_string(),
            c.dir().join(sub).display().to_string(),
        ]
    };
    let mut v = vec![
        Variant {
            name: "runc-v2".into(),
            runtime: RUNC_RUNTIME,
            flags: runc_root("runc"),
        },
        // runc-v2 with containerd's default seccomp profile (`ctr run --seccomp`, what CRI's
        // RuntimeDefault gives): what a filter costs runc-v2's containers, beside mypod's.
        Variant {
            name: "runc-v2, default profile".into(),
            runtime: RUNC_RUNTIME,
            flags: [runc_root("runc"), vec!["--seccomp".to_string()]].concat(),
        },
        Variant {
            name: "mypod".into(),
            runtime: MYPOD_RUNTIME,
            flags: vec![],
        },
        Variant {
            name: "mypod, userns off".into(),
            runtime: MYPOD_RUNTIME,
            flags: vec![config(
                "userns-off",
                "[sandbox]\nuser_namespace = \"off\"\n",
            )],
        },
        Variant {
            name: "mypod, seccomp off".into(),
            runtime: MYPOD_RUNTIME,
            flags: vec![config("seccomp-off", "[sandbox]\nseccomp = \"off\"\n")],
        },
        Variant {
            name: "mypod, sandbox off".into(),
            runtime: MYPOD_RUNTIME,
            flags: vec![config(
                "sandbox-off",
                "[sandbox]\nuser_namespace = \"off\"\nseccomp = \"off\"\n",
            )],
        },
    ];
    // What any filter costs: the same as "mypod" but with a spec profile that allows every
    // system call (so the kernel's seccomp path runs, and no rule can matter).
    let allow_all = c.dir().join("bench-allow-all.json");
    if std::fs::write(
        &allow_all,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["kexec_load"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .is_ok()
    {
        v.push(Variant {
            name: "mypod, allow-all filter".into(),
            runtime: MYPOD_RUNTIME,
            flags: vec![
                "--seccomp".into(),
                "--seccomp-profile".into(),
                allow_all.display().to_string(),
            ],
        });
    }
    match runsc_wrapper(c) {
        Some(w) => {
            let mut flags = runc_root("runsc");
            flags.push("--runc-binary".into());
            flags.push(w.display().to_string());
            v.push(Variant {
                name: "runsc".into(),
                runtime: RUNC_RUNTIME,
                flags,
            });
        }
        None => notes.push("no runsc found: gVisor not measured".into()),
    }
    v
}

fn run_args(c: &Containerd, v: &Variant, mode: &str, id: &str, cmd: &[&str]) -> Vec<String> {
    let mut a = vec![
        "run".to_string(),
        mode.to_string(),
        "--runtime".into(),
        v.runtime.into(),
        "--cgroup".into(),
        format!("/{}/{id}", c.namespace()),
    ];
    a.extend(v.flags.iter().cloned());
    a.push(IMAGE.into());
    a.push(id.into());
    a.extend(cmd.iter().map(|s| s.to_string()));
    a
}

fn ctr_owned(c: &Containerd, a: &[String]) -> Result<crate::command::Output, String> {
    check_interrupted()?;
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let out = c.ctr(&a);
    if out.code == Some(0) {
        Ok(out)
    } else {
        Err(format!("{out}"))
    }
}

/// Seconds from busybox `time -p`'s "real S" line.
fn real_seconds(stderr: &str) -> Option<f64> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("real "))
        .and_then(|s| s.trim().parse().ok())
}

/// The phase: `iterations` lifecycles and `reps` runs of each loop per variant (runsc, whose
/// loops take many times longer, gets at most 2).
pub fn measure(
    c: &Containerd,
    iterations: usize,
    reps: usize,
    p: &Progress,
) -> Result<SandboxReport, String> {
    let mut rep = SandboxReport::default();
    let vs = variants(c, &mut rep.notes);
    rep.variants = vs.iter().map(|v| v.name.clone()).collect();
    rep.lifecycle = vec![Vec::new(); vs.len()];
    rep.loops = vec![vec![Vec::new(); vs.len()]; LOOPS.len()];
    let mut alive = vec![true; vs.len()];
    // Warm-up, and a variant that cannot run at all is noted and left out.
    for (i, v) in vs.iter().enumerate() {
        let id = format!("sbw-{i}");
        if let Err(e) = ctr_owned(c, &run_args(c, v, "--rm", &id, &["/bin/true"])) {
            rep.notes.push(format!("{}: cannot run: {e}", v.name));
            alive[i] = false;
        }
    }
    p.line(&format!(
        "sandbox: lifecycle × {iterations} for {}",
        rep.variants.join(", ")
    ));
    for it in 0..iterations {
        for k in 0..vs.len() {
            let i = (it + k) % vs.len();
            if !alive[i] {
                continue;
            }
            let id = format!("sbl-{i}-{it}");
            let a = run_args(c, &vs[i], "--rm", &id, &["/bin/true"]);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let t = timed_ctr(c, &a)?;
            rep.lifecycle[i].push(ms(t.elapsed));
        }
    }
    // One running container per variant for the loops.
    let ids: Vec<String> = (0..vs.len()).map(|i| format!("sbt-{i}")).collect();
    for (i, v) in vs.iter().enumerate() {
        if alive[i] {
            ctr_owned(c, &run_args(c, v, "-d", &ids[i], &["/bin/sleep", "3600"]))?;
        }
    }
    let result = (|| {
        for (l, (name, _, script)) in LOOPS.iter().enumerate() {
            p.line(&format!("sandbox: loop {name} × {reps}"));
            for r in 0..reps {
                for k in 0..vs.len() {
                    let i = (r + k) % vs.len();
                    if !alive[i] || (vs[i].name == "runsc" && r >= 2) {
                        continue;
                    }
                    let exec = [
                        "tasks",
                        "exec",
                        "--exec-id",
                        &format!("l{l}r{r}"),
                        &ids[i],
                        "/bin/time",
                        "-p",
                        "/bin/sh",
                        "-c",
                        script,
                    ]
                    .map(str::to_string);
                    let out = ctr_owned(c, &exec)?;
                    let s = real_seconds(&out.stderr)
                        .ok_or_else(|| format!("no time in the loop's output: {out}"))?;
                    rep.loops[l][i].push(s);
                }
            }
        }
        Ok::<(), String>(())
    })();
    for (i, id) in ids.iter().enumerate() {
        if alive[i] {
            let _ = super::ctr_phases::remove(c, id);
        }
    }
    result?;
    Ok(rep)
}

impl SandboxReport {
    fn col(&self, name: &str) -> Option<usize> {
        self.variants.iter().position(|v| v == name)
    }

    /// Median ratio of loop `l`'s time: runc-v2 / variant (throughput relative to runc-v2).
    pub fn throughput(&self, l: usize, variant: &str) -> Option<f64> {
        let r = median(&self.loops[l][self.col("runc-v2")?])?;
        let v = median(&self.loops[l][self.col(variant)?])?;
        (v > 0.0).then(|| r / v)
    }

    /// Median lifecycle ratio variant / runc-v2.
    pub fn lifecycle_ratio(&self, variant: &str) -> Option<f64> {
        let r = median(&self.lifecycle[self.col("runc-v2")?])?;
        let v = median(&self.lifecycle[self.col(variant)?])?;
        (r > 0.0).then(|| v / r)
    }

    /// The table (markdown).
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "| | ");
        let _ = writeln!(s, "{} |", self.variants.join(" | "));
        let _ = writeln!(s, "|---|{}", "---|".repeat(self.variants.len()));
        let cell = |samples: &[f64], ratio: Option<f64>, unit: &str| match median(samples) {
            Some(m) => match ratio {
                Some(r) => format!("{m:.2} {unit} ({r:.2}×)"),
                None => format!("{m:.2} {unit}"),
            },
            None => "–".into(),
        };
        let _ = write!(s, "| `ctr run --rm` lifecycle, median (ratio to runc-v2) |");
        for (i, v) in self.variants.iter().enumerate() {
            let _ = write!(
                s,
                " {} |",
                cell(&self.lifecycle[i], self.lifecycle_ratio(v), "ms")
            );
        }
        s.push('\n');
        for (l, (name, what, _)) in LOOPS.iter().enumerate() {
            let _ = write!(s, "| {name}: {what}; median time (throughput vs runc-v2) |");
            for (i, v) in self.variants.iter().enumerate() {
                let _ = write!(
                    s,
                    " {} |",
                    cell(&self.loops[l][i], self.throughput(l, v), "s")
                );
            }
            s.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(s, "\nNote: {n}");
        }
        s
    }
}
