//! The escape suite: what root in a container would try, run side by side against mypod
//! with its defaults and against containerd's runc-v2 shim with its defaults, through ctr
//! and CRI. Every attack must be denied under mypod (the test fails if one works); runc's
//! results are printed (docs/security.md has the table). The probe only opens for writing
//! where a write would harm (an empty open proves it), so an attack that works does nothing.
//!
//! Also in the suite, with their own tests: overwriting the shim's binary through
//! /proc/PID/exe (`security::shim_binary_is_read_only_through_proc_exe`), connecting to the
//! shim's socket as another uid (`shim/src/peer.rs`), mknod and oom_score_adj
//! (`pod_userns::container_root_has_no_host_privilege`).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use mypod_tests::cri_instance::{stderr_of, stdout_of};
use mypod_tests::{per_version, per_version_cri, procfs, ContainerBuilder, Containerd};

/// The attacks. Arguments: the host's root disk (major, minor), the attacker's shim pid, a
/// process of another pod, the number N of its command line `sleep N.5`, a host directory the
/// container must not reach. Prints `A <attack> denied` or `A <attack> OPEN <detail>`.
const PROBE: &str = r#"
MAJ=$1 MIN=$2 SHIM=$3 OTHER=$4 MARK=$5 HOSTDIR=$6
r() { if [ "$2" = 0 ]; then echo "A $1 OPEN $3"; else echo "A $1 denied"; fi; }
wr() { (echo -n > "$1") 2>/dev/null; }
mkdir -p /tmp/esc
mount -t tmpfs t /tmp/esc 2>/dev/null; r mount $?
{ mknod /dev/esc-disk b "$MAJ" "$MIN" && head -c 512 /dev/esc-disk > /dev/null; } 2>/dev/null; r host-disk $?
echo junk > /tmp/m.ko
out=$(insmod /tmp/m.ko 2>&1)
case "$out" in *"not permitted"*) echo "A kernel-module denied";; *) echo "A kernel-module OPEN $out";; esac
wr /proc/sys/kernel/printk_ratelimit; r proc-sys $?
wr /proc/sysrq-trigger; r sysrq-trigger $?
ra=denied
for f in /sys/fs/cgroup/*/release_agent /sys/fs/cgroup/release_agent; do
  [ -e "$f" ] && wr "$f" && ra="OPEN $f"
done
mkdir -p /tmp/cg
if mount -t cgroup -o memory cgroup /tmp/cg 2>/dev/null; then
  wr /tmp/cg/release_agent && ra="OPEN mounted"
  umount /tmp/cg
fi
echo "A release-agent $ra"
unshare -U true 2>/dev/null; r nested-userns $?
unshare -Urm sh -c 'mount -t tmpfs t /tmp/esc' 2>/dev/null; r nested-userns-mount $?
# Patterns built at run time, so that the probe's own command line does not match them.
CD=contain; CD=${CD}erd; SHIMPAT=$CD-shim; PAT="sleep $MARK.5"
kill -0 "$SHIM" 2>/dev/null; r signal-shim $?
grep -q "$SHIMPAT" "/proc/$SHIM/cmdline" 2>/dev/null; r see-shim $?
kill -0 "$OTHER" 2>/dev/null; r signal-other-pod $?
seen=""
for d in /proc/[0-9]*; do seen="$seen|$(tr '\0' ' ' < $d/cmdline 2>/dev/null)"; done
case "$seen" in *"$PAT"*|*"$CD"*) echo "A see-other-processes OPEN";; *) echo "A see-other-processes denied";; esac
{ grep -q "$CD" /proc/net/unix || [ -e "/run/$CD" ]; } 2>/dev/null; r shim-socket $?
# Descriptors the container's processes got from the runtime: its first process (pid 1,
# unless that is this shell, whose own descriptors are close-on-exec) and a child of this
# shell (what it passes on); /dev/null is busybox's own.
sleep 1000 & bg=$!
leaked=""
pids=$bg; [ $$ != 1 ] && pids="1 $bg"
for p in $pids; do
  for f in /proc/$p/fd/*; do
    n=${f##*/}; t=$(readlink "$f")
    [ "$n" -gt 2 ] 2>/dev/null && [ "$t" != /dev/null ] && leaked="$leaked $p/$n:$t"
  done
done
kill $bg
[ -n "$leaked" ]; r leaked-fds $? "$leaked"
up=../../../../../../../../../..
[ -d "$up$HOSTDIR" ]; r host-dir-from-cwd $?
echo "A end"
"#;

/// The attacks' results, by name.
type Results = BTreeMap<String, String>;

fn parse(out: &str) -> Results {
    let r: Results = out
        .lines()
        .filter_map(|l| l.strip_prefix("A "))
        .filter_map(|l| l.split_once(' ').or(Some((l, ""))))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(
        r.contains_key("end"),
        "the probe did not run to its end:\n{out}"
    );
    r
}

/// The host's root disk (major, minor).
fn host_disk() -> (u64, u64) {
    let dev = std::fs::metadata("/").expect("stat /").dev();
    (libc::major(dev) as u64, libc::minor(dev) as u64)
}

fn args(c: &Containerd, shim: u32, other: u32, mark: &str) -> Vec<String> {
    let (maj, min) = host_disk();
    vec![
        maj.to_string(),
        min.to_string(),
        shim.to_string(),
        other.to_string(),
        mark.to_string(),
        c.dir().display().to_string(),
    ]
}

/// Asserts every attack is denied under mypod; prints the other runtime's results.
fn judge(what: &str, runtime: &str, mypod: bool, r: &Results) {
    let open: Vec<String> = r
        .iter()
        .filter(|(_, v)| v.starts_with("OPEN"))
        .map(|(k, v)| format!("{k} ({v})"))
        .collect();
    eprintln!("escape {what} under {runtime}: open: {open:?}; all: {r:?}");
    if mypod {
        assert!(
            open.is_empty(),
            "{what}: attacks that work under mypod's defaults: {open:?}"
        );
        assert!(r.len() >= 16, "{what}: every attack was tried: {r:?}");
    }
}

/// Through ctr: the probe as an exec in a running container and as a container's own
/// process, with a container of another pod running; then a process cwd of
/// `/proc/self/fd/N` (the CVE-2024-21626 class) for N = 3..9.
fn escape_through_ctr(c: &Containerd) {
    for runtime in [c.runtime().to_string(), "io.containerd.runc.v2".to_string()] {
        let mypod = runtime == "io.containerd.mypod.v2";
        let tag = if mypod { "m" } else { "r" };
        let run_d = |id: &str, cmd: &[&str]| {
            let mut a = vec!["run", "-d", "--runtime", &runtime, mypod_tests::IMAGE, id];
            a.extend_from_slice(cmd);
            c.ctr_ok(&a);
            c.wait_task_status(id, "RUNNING", Duration::from_secs(10))
                .pid
        };
        let victim = format!("victim-{tag}");
        let attacker = format!("attacker-{tag}");
        let mark = "4242";
        let other = run_d(&victim, &["sleep", "4242.5"]);
        let pid = run_d(&attacker, &["sleep", "600"]);
        let shim = procfs::ppid(pid).expect("the attacker's shim");
        let a = args(c, shim, other, mark);
        let mut exec: Vec<&str> = vec!["tasks", "exec", "--exec-id", "probe", &attacker];
        exec.extend(["/bin/sh", "-c", PROBE, "probe"]);
        exec.extend(a.iter().map(String::as_str));
        let out = c.ctr(&exec);
        judge("ctr exec", &runtime, mypod, &parse(&out.stdout));

        let mut run = vec!["run", "--rm", "--runtime", &runtime, mypod_tests::IMAGE];
        let init = format!("init-{tag}");
        run.push(&init);
        run.extend(["/bin/sh", "-c", PROBE, "probe"]);
        run.extend(a.iter().map(String::as_str));
        let out = c.ctr(&run);
        judge("ctr run", &runtime, mypod, &parse(&out.stdout));
        c.assert_clean(&init);

        let mut cwd_open = Vec::new();
        for n in 3..10 {
            let id = format!("cwd{n}-{tag}");
            let cwd = format!("--cwd=/proc/self/fd/{n}");
            let script = format!(
                "[ -d ../../../../../../../../..{} ] && echo A cwd OPEN || echo A cwd denied",
                c.dir().display()
            );
            let out = c.ctr(&[
                "run",
                "--rm",
                "--runtime",
                &runtime,
                &cwd,
                mypod_tests::IMAGE,
                &id,
                "/bin/sh",
                "-c",
                &script,
            ]);
            if out.stdout.contains("A cwd OPEN") {
                cwd_open.push(n);
            }
            c.assert_clean(&id);
        }
        eprintln!(
            "escape ctr cwd=/proc/self/fd/N under {runtime}: host reached for N in {cwd_open:?}"
        );
        if mypod {
            assert!(
                cwd_open.is_empty(),
                "a cwd of /proc/self/fd/N reaches the host under mypod: {cwd_open:?}"
            );
        }
        c.kill_and_remove(&attacker);
        c.kill_and_remove(&victim);
        c.assert_clean(&attacker);
        c.assert_clean(&victim);
    }
}

/// The control: the probe must see the attacks work where the container is given the host
/// (mypod's compat configuration, privileged, in the host's pid and network namespaces), so
/// that its "denied" above means denied, not a probe that cannot tell. The leaked-descriptor
/// and cwd checks have no such control: no runtime setting leaks host descriptors; nor has
/// host-disk (see below).
fn the_probe_sees_attacks_that_work(c: &Containerd) {
    if !c.is_mypod() {
        return;
    }
    let compat = format!(
        "--runtime-config-path={}",
        mypod_tests::version::repo_root()
            .join("runtime-compat.toml")
            .display()
    );
    let pid = {
        c.run_detached("ctl-victim", &[], &["sleep", "4444.5"]);
        c.wait_task_status("ctl-victim", "RUNNING", Duration::from_secs(10))
            .pid
    };
    let shim = procfs::ppid(pid).expect("the victim's shim");
    let a = args(c, shim, pid, "4444");
    let mut cmd: Vec<&str> = vec!["/bin/sh", "-c", PROBE, "probe"];
    cmd.extend(a.iter().map(String::as_str));
    // pid 1's namespace links are not readable on this host; the test's are the host's.
    let host_pid_ns = format!("pid:/proc/{}/ns/pid", std::process::id());
    let out = c.run(
        "ctl",
        &[
            &compat,
            "--privileged",
            "--net-host",
            "--with-ns",
            &host_pid_ns,
        ],
        &cmd,
    );
    assert!(
        out.stdout.contains("A end"),
        "control: the probe did not run:\n{out}"
    );
    let r = parse(&out.stdout);
    // Not "sysrq-trigger": this host's kernel has no /proc/sysrq-trigger (the probe still
    // tries it, for kernels that do). Not "host-disk": the privileged control's read of the disk node is refused too (not
    // understood yet), so its "denied" rests on mknod being refused in the pod's user
    // namespace, which `pod_userns::container_root_has_no_host_privilege` asserts directly.
    for attack in [
        "mount",
        "proc-sys",
        "release-agent",
        "signal-shim",
        "see-shim",
        "signal-other-pod",
        "see-other-processes",
        "shim-socket",
    ] {
        assert!(
            r.get(attack).is_some_and(|v| v.starts_with("OPEN")),
            "control: {attack} should work for a privileged container in the host's namespaces: {r:?}\n{out}"
        );
    }
    c.assert_clean("ctl");
    c.kill_and_remove("ctl-victim");
    c.assert_clean("ctl-victim");
}
per_version!(the_probe_sees_attacks_that_work);

fn with_runc(b: mypod_tests::containerd::Builder) -> mypod_tests::containerd::Builder {
    b.with_runc(true)
}
per_version!(escape_through_ctr with with_runc);

/// Through CRI: the probe by ExecSync in a pod of the mypod handler (defaults) and of the
/// runc handler, each with a container of another pod of the same handler running.
fn escape_through_cri(c: &Containerd) {
    for handler in [c.cri_handler(), "runc"] {
        let mypod = handler == "mypod";
        let victim_pod = c
            .run_pod_with_handler(c.pod(&format!("victim-{handler}")), handler)
            .unwrap_or_else(|e| panic!("RunPodSandbox victim ({handler}): {e}"));
        let mark = "4343";
        let victim = c.start_in_pod(
            &victim_pod,
            &ContainerBuilder::new("victim", &["sleep", "4343.5"]),
        );
        let pod = c
            .run_pod_with_handler(c.pod(&format!("attacker-{handler}")), handler)
            .unwrap_or_else(|e| panic!("RunPodSandbox attacker ({handler}): {e}"));
        let attacker = c.start_in_pod(&pod, &ContainerBuilder::new("attacker", &["sleep", "600"]));
        let shim = c
            .sandbox_shim_pid(&pod.id)
            .expect("the attacker pod's shim");
        let a = args(c, shim, c.container_pid(&victim), mark);
        let mut cmd: Vec<&str> = vec!["/bin/sh", "-c", PROBE, "probe"];
        cmd.extend(a.iter().map(String::as_str));
        let r = c.exec_ok(&attacker, &cmd);
        let out = stdout_of(&r);
        let results = parse(&out);
        judge("CRI exec", handler, mypod, &results);
        assert!(
            !mypod || r.exit_code == 0,
            "the probe ran: {}",
            stderr_of(&r)
        );
        c.stop_and_remove_pod(&pod);
        c.stop_and_remove_pod(&victim_pod);
    }
}

fn cri_with_runc(b: mypod_tests::containerd::Builder) -> mypod_tests::containerd::Builder {
    b.with_runc(true)
}
per_version_cri!(escape_through_cri with cri_with_runc);
