//! Differential OCI conformance: the same image and the same spec run once under containerd's
//! runc-v2 shim (the reference) and once under the runtime under test, on the same containerd;
//! a probe in the container prints what the process sees, normalised so that two runs of the
//! same runtime agree, and the two reports are compared section by section. Differences are
//! failures unless an entry of [`ALLOWED`] names them, with its reason.
//!
//! The runtime under test is the instance's `runtime()`: mypod by default, and runc itself with
//! `MYPOD_TEST_RUNTIME=runc`, which then checks the probe and the normalisation (runc against
//! runc must show no difference at all).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::command::Output;
use crate::containerd::{Containerd, RUNC_RUNTIME};
use crate::image::IMAGE;

/// The probe, run as `/bin/sh -c PROBE probe EXTRA PATH...` (busybox in the test image).
/// `EXTRA` is a shell snippet whose output is the section `extra` (a denied syscall, say);
/// each `PATH` is `m:/masked/path` or `r:/read-only/path` and is tried for reading and writing.
/// Every section starts with a line `== NAME`; the Rust side normalises its lines.
pub const PROBE: &str = r#"
extra=$1; shift
echo "== status"
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters|Uid|Gid|Groups):' /proc/self/status
echo "== id"
id
echo "== mountinfo"
cat /proc/self/mountinfo
echo "== limits"
tail -n +2 /proc/self/limits
echo "== uts"
echo "hostname=$(hostname)"
echo "domainname=$(cat /proc/sys/kernel/domainname)"
echo "== process"
echo "cwd=$(pwd)"
echo "umask=$(umask)"
echo "oom_score_adj=$(cat /proc/self/oom_score_adj)"
echo "pid=$$"
echo "ppid=$PPID"
echo "== env"
env | sort
echo "== ns"
for n in /proc/self/ns/*; do echo "${n##*/} $(readlink "$n")"; done
echo "== sysctl"
for k in net/ipv4/ip_forward net/ipv4/ping_group_range net/ipv4/ip_unprivileged_port_start \
         net/core/somaxconn kernel/msgmax kernel/msgmnb kernel/shmmni kernel/shmmax \
         kernel/sem kernel/pid_max fs/mqueue/queues_max vm/overcommit_memory; do
  if [ -r /proc/sys/$k ]; then echo "$k=$(cat /proc/sys/$k 2>&1 | tr '\t' ' ')"; else echo "$k absent"; fi
done
echo "== cgroup"
cat /proc/self/cgroup
echo "== devices.list"
if [ -r /sys/fs/cgroup/devices/devices.list ]; then cat /sys/fs/cgroup/devices/devices.list; else echo "no devices.list"; fi
echo "== dev"
find /dev -exec stat -c '%N %F %a %u:%g %t:%T' {} + 2>&1
echo "== paths"
for arg in "$@"; do
  kind=${arg%%:*}; p=${arg#*:}
  if [ ! -e "$p" ] && [ ! -L "$p" ]; then echo "$kind $p absent"; continue; fi
  if [ -d "$p" ]; then
    n=$(ls -A "$p" 2>/dev/null | wc -l)
    touch "$p/.mypod-probe" 2>/dev/null; w=$?
    rm -f "$p/.mypod-probe" 2>/dev/null
    echo "$kind $p dir entries=$n create=$w"
  else
    r=$(head -c 16 "$p" 2>/dev/null | wc -c)
    ( : >> "$p" ) 2>/dev/null; w=$?
    echo "$kind $p $(stat -c %F "$p") readbytes=$r openwrite=$w"
  fi
done
echo "== denied"
mount -t tmpfs none /root 2>&1; r=$?; echo "mount-tmpfs=$r"; [ $r = 0 ] && umount /root
chroot / true 2>&1; echo "chroot=$?"
renice -n -1 -p $$ >/dev/null 2>&1; echo "renice=$?"
if mknod /dev/.mypod-probe b 7 0 2>/dev/null; then
  head -c 1 /dev/.mypod-probe >/dev/null 2>&1; echo "mknod-b7:0=ok open=$?"; rm -f /dev/.mypod-probe
else echo "mknod-b7:0=refused"; fi
echo "== extra"
eval "$extra" 2>&1
echo "== end"
"#;

/// Differences that are not conformance failures: (case, section, substring of the line,
/// reason). An entry applies to a line of either report in case `case` ("" = every case) and
/// section `section` that contains the substring.
pub const ALLOWED: &[(&str, &str, &str, &str)] = &[
    (
        "",
        "uts",
        "domainname=",
        "Debian's runc 1.1.5 predates `domainname` (added in runc 1.2) and leaves it unset",
    ),
    (
        "dev",
        "mountinfo",
        "/sys/fs/cgroup root=/ type=tmpfs ",
        "a read-only cgroup v1 mount: runc 1.1.5 leaves the tmpfs holding the hierarchies \
         writable, mypod remounts it read-only too (stricter)",
    ),
    (
        "userns",
        "dev",
        "/dev/mqueue directory 1777 0:",
        "runc 1.1 mounts mqueue in a new user namespace before its setgid(0), so the mount's \
         root shows the overflow gid 65534; mypod mounts it as the mapped root (0:0)",
    ),
];

/// Changes a spec; gets the spec and its rootfs path.
pub type EditSpec<'a> = dyn Fn(&mut Value, &str) + 'a;

/// How one variant is run: `ctr run` flags on the test image, or a hand-written spec.
pub enum Setup<'a> {
    /// `ctr run --rm --runtime R FLAGS IMAGE ID /bin/sh -c PROBE ...`.
    Flags(Vec<String>),
    /// `ctr run --rm --runtime R --config SPEC ID`: `Containerd::config_spec` (a private copy of
    /// the image's rootfs) with the probe as args, changed by the function (which also gets the
    /// rootfs path, e.g. to chown it for a user namespace).
    Config(Box<EditSpec<'a>>),
}

impl Setup<'_> {
    pub fn flags(flags: &[&str]) -> Setup<'static> {
        Setup::Flags(flags.iter().map(|s| s.to_string()).collect())
    }

    pub fn config<'a>(f: impl Fn(&mut Value, &str) + 'a) -> Setup<'a> {
        Setup::Config(Box::new(f))
    }
}

/// One variant: a name (container ids are `NAME-r` and `NAME-m`), how it is set up, and an
/// extra probe snippet (output in section `extra`).
pub struct Case<'a> {
    pub name: &'a str,
    pub setup: Setup<'a>,
    pub extra: &'a str,
}

/// What the probe printed under one runtime, normalised: section → lines.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub runtime: String,
    pub id: String,
    pub sections: BTreeMap<String, Vec<String>>,
    /// The whole `ctr run` output, for failure messages.
    pub output: String,
}

/// A difference between the reference's and the candidate's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub section: String,
    /// `-` only in the reference (runc), `+` only in the runtime under test.
    pub side: char,
    pub line: String,
    /// The reason from `ALLOWED`, if listed there.
    pub allowed: Option<&'static str>,
}

/// The comparison of one case.
pub struct Comparison {
    pub reference: Report,
    pub candidate: Report,
    pub differences: Vec<Difference>,
}

impl Comparison {
    /// Differences `ALLOWED` does not list.
    pub fn failures(&self) -> Vec<&Difference> {
        self.differences
            .iter()
            .filter(|d| d.allowed.is_none())
            .collect()
    }

    /// A readable account: every difference (allowed ones with their reason), then both
    /// reports' lines of each differing section.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "--- {} ({}) vs +++ {} ({})",
            self.reference.runtime, self.reference.id, self.candidate.runtime, self.candidate.id
        );
        let mut sections: Vec<&str> = Vec::new();
        for d in &self.differences {
            let _ = match d.allowed {
                Some(r) => writeln!(
                    s,
                    "  [{}] {} {}   (allowed: {r})",
                    d.section, d.side, d.line
                ),
                None => writeln!(s, "  [{}] {} {}", d.section, d.side, d.line),
            };
            if d.allowed.is_none() && !sections.contains(&d.section.as_str()) {
                sections.push(&d.section);
            }
        }
        for sec in sections {
            for r in [&self.reference, &self.candidate] {
                let _ = writeln!(s, "  {} [{sec}]:", r.runtime);
                for l in r.sections.get(sec).into_iter().flatten() {
                    let _ = writeln!(s, "      {l}");
                }
            }
        }
        s
    }
}

/// Runs `case` under runc and under `c.runtime()`, checks that both containers are cleaned up,
/// and compares the reports.
pub fn compare(c: &Containerd, case: &Case) -> Comparison {
    let reference = run_probe(c, RUNC_RUNTIME, &format!("{}-r", case.name), case);
    let candidate = run_probe(c, c.runtime(), &format!("{}-m", case.name), case);
    let differences = diff(case.name, &reference, &candidate);
    Comparison {
        reference,
        candidate,
        differences,
    }
}

/// `compare`, then panics (printing the differing sections) unless every difference is allowed.
pub fn assert_same(c: &Containerd, case: &Case) -> Comparison {
    let cmp = compare(c, case);
    let mut left = Vec::new();
    for r in [&cmp.reference, &cmp.candidate] {
        if let Err(e) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.assert_clean(&r.id)))
        {
            left.push(panic_text(&e));
        }
    }
    // Two runtimes that both refuse a spec would compare equal: the reference must have
    // run the probe to its end, or the case shows nothing.
    assert!(
        cmp.reference.output.contains("== end") && cmp.candidate.output.contains("== end"),
        "case {}: the probe did not run to its end under both runtimes\n==== reference output:\n{}\n==== candidate output:\n{}",
        case.name,
        cmp.reference.output,
        cmp.candidate.output
    );
    let failures = cmp.failures();
    assert!(
        failures.is_empty() && left.is_empty(),
        "case {}: {} difference(s) not in the allow-list{}\n{}\n{}",
        case.name,
        failures.len(),
        if left.is_empty() {
            String::new()
        } else {
            format!("; leftovers: {}", left.join("; "))
        },
        cmp.describe(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(
                "==== reference output:\n{}\n==== candidate output:\n{}",
                cmp.reference.output, cmp.candidate.output
            )
        }
    );
    if !cmp.differences.is_empty() {
        eprintln!(
            "case {} (allowed differences):\n{}",
            case.name,
            cmp.describe()
        );
    }
    cmp
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// The masked and read-only paths of a spec, as probe arguments (`m:PATH`, `r:PATH`).
pub fn path_args(spec: &Value) -> Vec<String> {
    let mut v = Vec::new();
    for (key, kind) in [("maskedPaths", "m"), ("readonlyPaths", "r")] {
        for p in spec["linux"][key].as_array().into_iter().flatten() {
            if let Some(p) = p.as_str() {
                v.push(format!("{kind}:{p}"));
            }
        }
    }
    v
}

/// Runs the probe for `case` as container `id` under `runtime`, and returns its normalised
/// report.
pub fn run_probe(c: &Containerd, runtime: &str, id: &str, case: &Case) -> Report {
    let mut out = probe_once(c, runtime, id, case);
    // `ctr run` can lose the tail of a quick container's output (its copy of the FIFO races
    // the exit event, with either runtime): an exit 0 without the probe's closing line is
    // run again once rather than compared.
    if out.code == Some(0) && !out.stdout.contains("== end") {
        eprintln!("{runtime} {id}: output without its end line, running the probe again:\n{out}");
        out = probe_once(c, runtime, id, case);
    }
    let ctx = Context::new(c, id);
    let mut sections = parse(&out.stdout, &ctx);
    // A runtime that refuses the spec is compared by that fact alone (messages differ).
    sections.insert(
        "run".into(),
        vec![match out.code {
            Some(0) => "exit=0".to_string(),
            Some(code) if !out.stdout.contains("== end") => format!("failed exit={code}"),
            Some(code) => format!("exit={code}"),
            None => "no exit code".to_string(),
        }],
    );
    Report {
        runtime: runtime.to_string(),
        id: id.to_string(),
        sections,
        output: out.to_string(),
    }
}

/// One `ctr run` of the probe.
fn probe_once(c: &Containerd, runtime: &str, id: &str, case: &Case) -> Output {
    match &case.setup {
        Setup::Flags(flags) => {
            let paths = path_args(&c.default_spec());
            let mut a: Vec<&str> = vec!["run", "--rm", "--runtime", runtime];
            a.extend(flags.iter().map(String::as_str));
            a.extend([IMAGE, id, "/bin/sh", "-c", PROBE, "probe", case.extra]);
            a.extend(paths.iter().map(String::as_str));
            c.ctr(&a)
        }
        Setup::Config(edit) => {
            let mut spec = c.config_spec(id, &["/bin/true"]);
            let root = spec["root"]["path"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            edit(&mut spec, &root);
            let mut args = vec![
                "/bin/sh".to_string(),
                "-c".into(),
                PROBE.into(),
                "probe".into(),
                case.extra.into(),
            ];
            args.extend(path_args(&spec));
            spec["process"]["args"] = serde_json::json!(args);
            let file = c.write_spec_file(
                id,
                &serde_json::to_string_pretty(&spec).expect("spec to JSON"),
            );
            c.ctr(&["run", "--rm", "--runtime", runtime, "--config", &file, id])
        }
    }
}

/// What normalisation needs to know: strings to replace, and the host's namespaces.
pub struct Context {
    replace: Vec<(String, String)>,
    host_ns: BTreeMap<String, String>,
}

impl Context {
    pub fn new(c: &Containerd, id: &str) -> Context {
        Context::with(
            vec![
                (c.dir().display().to_string(), "<DIR>".into()),
                (c.namespace().to_string(), "<NS>".into()),
                (id.to_string(), "<ID>".into()),
            ],
            host_namespaces(),
        )
    }

    pub fn with(replace: Vec<(String, String)>, host_ns: BTreeMap<String, String>) -> Context {
        Context { replace, host_ns }
    }

    fn subst(&self, line: &str) -> String {
        let mut s = line.to_string();
        for (from, to) in &self.replace {
            if !from.is_empty() {
                s = s.replace(from.as_str(), to);
            }
        }
        s
    }
}

/// The test process's namespaces (`/proc/self/ns/*` → link), i.e. the host's.
pub fn host_namespaces() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/ns") {
        for e in rd.flatten() {
            if let Ok(l) = std::fs::read_link(e.path()) {
                m.insert(
                    e.file_name().to_string_lossy().into_owned(),
                    l.display().to_string(),
                );
            }
        }
    }
    m
}

/// Splits probe output into sections and normalises each line.
pub fn parse(stdout: &str, ctx: &Context) -> BTreeMap<String, Vec<String>> {
    let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("== ") {
            current = (name != "end").then(|| name.to_string());
            if let Some(n) = &current {
                sections.entry(n.clone()).or_default();
            }
            continue;
        }
        let Some(sec) = &current else { continue };
        if let Some(l) = normalise(sec, line, ctx) {
            sections.get_mut(sec).expect("section exists").push(l);
        }
    }
    sections
}

/// One line of a section, normalised (`None` drops it).
fn normalise(section: &str, line: &str, ctx: &Context) -> Option<String> {
    let line = ctx.subst(line.trim_end());
    match section {
        "mountinfo" => Some(mountinfo_line(&line)),
        "ns" => {
            let (name, link) = line.split_once(' ')?;
            let host = ctx.host_ns.get(name);
            Some(match host {
                Some(h) if h == link => format!("{name} host"),
                Some(_) => format!("{name} new"),
                None => format!("{name} (host has none)"),
            })
        }
        // Values that differ per run for reasons no runtime controls.
        "limits" => Some(line.split_whitespace().collect::<Vec<_>>().join(" ")),
        _ => Some(line),
    }
}

/// `/proc/self/mountinfo` → `MOUNTPOINT root=R type=T source=S opts=O super=S prop=P`: mount
/// and parent ids and device numbers dropped, peer group numbers dropped from the propagation
/// (`shared`, `master`, `private`), overlay's per-snapshot directories dropped.
pub fn mountinfo_line(line: &str) -> String {
    let f: Vec<&str> = line.split(' ').collect();
    let Some(sep) = f.iter().position(|x| *x == "-") else {
        return line.to_string();
    };
    if sep < 6 || f.len() < sep + 4 {
        return line.to_string();
    }
    let mut prop: Vec<String> = f[6..sep]
        .iter()
        .map(|o| o.split(':').next().unwrap_or(o).to_string())
        .collect();
    if prop.is_empty() {
        prop.push("private".into());
    }
    let fstype = f[sep + 1];
    let source = f[sep + 2];
    let sup: Vec<&str> = f[sep + 3]
        .split(',')
        .filter(|o| {
            !(o.starts_with("lowerdir=") || o.starts_with("upperdir=") || o.starts_with("workdir="))
        })
        .collect();
    format!(
        "{} root={} type={fstype} source={source} opts={} super={} prop={}",
        f[4],
        f[3],
        f[5],
        sup.join(","),
        prop.join(",")
    )
}

/// The lines each report has and the other lacks (as multisets), section by section, with
/// their allow-list reasons (entries for `case` or for every case).
pub fn diff(case: &str, reference: &Report, candidate: &Report) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut names: Vec<&String> = reference
        .sections
        .keys()
        .chain(candidate.sections.keys())
        .collect();
    names.sort();
    names.dedup();
    let empty = Vec::new();
    for sec in names {
        let a = reference.sections.get(sec).unwrap_or(&empty);
        let b = candidate.sections.get(sec).unwrap_or(&empty);
        if !reference.sections.contains_key(sec) || !candidate.sections.contains_key(sec) {
            let side = if reference.sections.contains_key(sec) {
                '-'
            } else {
                '+'
            };
            out.push(difference(
                case,
                sec,
                side,
                "(section missing on the other side)",
            ));
        }
        for (side, x, y) in [('-', a, b), ('+', b, a)] {
            let mut rest: Vec<&String> = y.iter().collect();
            for l in x {
                match rest.iter().position(|r| *r == l) {
                    Some(i) => {
                        rest.remove(i);
                    }
                    None => out.push(difference(case, sec, side, l)),
                }
            }
        }
    }
    out
}

fn difference(case: &str, section: &str, side: char, line: &str) -> Difference {
    let allowed = ALLOWED
        .iter()
        .find(|(c, s, pat, _)| (c.is_empty() || *c == case) && *s == section && line.contains(pat))
        .map(|(_, _, _, r)| *r);
    Difference {
        section: section.to_string(),
        side,
        line: line.to_string(),
        allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context::with(
            vec![
                ("/tmp/mypodtest-1-2".into(), "<DIR>".into()),
                ("mypodtest-1-2".into(), "<NS>".into()),
                ("x-m".into(), "<ID>".into()),
            ],
            [
                ("net".to_string(), "net:[1]".to_string()),
                ("uts".to_string(), "uts:[2]".to_string()),
            ]
            .into(),
        )
    }

    #[test]
    fn mountinfo_is_normalised() {
        let l = "1234 1200 0:99 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/a/1/fs,upperdir=/a/2/fs,workdir=/a/2/work";
        assert_eq!(
            mountinfo_line(l),
            "/ root=/ type=overlay source=overlay opts=rw,relatime super=rw prop=master"
        );
        let l = "5 4 0:5 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755";
        assert_eq!(
            mountinfo_line(l),
            "/dev root=/ type=tmpfs source=tmpfs opts=rw,nosuid super=rw,size=65536k,mode=755 prop=private"
        );
    }

    #[test]
    fn sections_and_differences() {
        let text = "junk\n== ns\nnet net:[1]\nuts uts:[9]\n== uts\ndomainname=(none)\n\
                    == cgroup\n3:cpu:/mypodtest-1-2/x-m\n== end\n";
        let a = Report {
            runtime: "runc".into(),
            sections: parse(text, &ctx()),
            ..Report::default()
        };
        assert_eq!(a.sections["ns"], ["net host", "uts new"]);
        assert_eq!(a.sections["cgroup"], ["3:cpu:/<NS>/<ID>"]);
        let mut b = a.clone();
        b.sections.insert("uts".into(), vec!["domainname=x".into()]);
        b.sections.get_mut("ns").unwrap().push("ipc new".into());
        let d = diff("x", &a, &b);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].line == "ipc new" && d[0].side == '+' && d[0].allowed.is_none());
        assert!(d[1].side == '-' && d[1].allowed.is_some());
        assert!(d[2].side == '+' && d[2].allowed.is_some());
    }
}
