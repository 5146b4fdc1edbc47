//! The `spec` fuzz target's body (`fuzz/fuzz_targets/spec.rs` calls [`spec`]; the unit
//! tests below run it over the committed seed corpus, `fuzz/corpus/spec/`).
//!
//! Bytes go the way a bundle's config.json goes at Create — parsed (with the seccomp
//! and idmap fallbacks), validated — and what validation accepts is translated as far as
//! mypod goes before the helper touches the kernel: the cgroup placement and limits
//! (written to a fake tree in a scratch directory), device rules, mount options, the
//! seccomp program (compiled by libseccomp, never loaded), the default seccomp profile,
//! the hooks' state, and the init request's wire encoding. It panics only when a property
//! fails:
//! - no part panics, whatever the bytes;
//! - a cgroup directory stays inside its hierarchy, and the limits write no file outside
//!   the container's cgroup directories;
//! - a compiled seccomp program and the whole init request round-trip through their
//!   wire forms unchanged;
//! - the default seccomp profile mypod derives for an accepted spec passes mypod's own
//!   profile validation, and compiles.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use oci_spec::runtime::Spec;

use crate::cgroup::{Cgroup, Layout};
use crate::policy::HostAccess;
use crate::seccomp::{Filter, Optimize};
use crate::wire::InitRequest;

/// A hybrid host as this project's CI machine is (v1 controllers, an empty cgroup2).
const V1_MOUNTINFO: &str = "\
25 1 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
28 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
29 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
30 25 0:28 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
31 25 0:29 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
32 25 0:30 / /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio
33 25 0:31 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
34 25 0:32 / /sys/fs/cgroup/hugetlb rw - cgroup cgroup rw,hugetlb
35 25 0:33 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio
36 25 0:34 / /sys/fs/cgroup/rdma rw - cgroup cgroup rw,rdma
";

/// A cgroup2-only host.
const V2_MOUNTINFO: &str = "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";

/// This thread's scratch directory (fake cgroup trees), removed after each input: one per
/// thread, so that tests running side by side do not remove each other's.
fn scratch() -> PathBuf {
    thread_local! {
        static DIR: PathBuf = std::env::temp_dir().join(format!(
            "mypod-fuzz-{}-{}",
            std::process::id(),
            format!("{:?}", std::thread::current().id())
                .trim_start_matches("ThreadId(")
                .trim_end_matches(')')
        ));
    }
    DIR.with(|d| d.clone())
}

/// Runs one input through parsing, validation and translation; panics if a property
/// fails (see the module's documentation).
pub fn spec(data: &[u8]) {
    // The same bytes as a `binary://` log URI's query (Create's stdout/stderr).
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = crate::stdio::parse_binary_uri(&format!("binary:///log?{s}"));
    }
    let Ok((spec, _idmaps)) = crate::spec::parse_with_idmaps(data, PathBuf::from("config.json"))
    else {
        return;
    };
    if let Some(p) = spec.process() {
        // An exec's process is checked alone.
        let _ = crate::spec::validate_process(p);
    }
    let own_ns = crate::sysctl::is_own_namespace;
    let accepted = crate::spec::validate(&spec).is_ok()
        && crate::sysctl::validate(&spec, own_ns).is_ok()
        && crate::host_access::check(&spec, HostAccess::Allow, own_ns).is_ok();
    if !accepted {
        return;
    }
    let _ = crate::host_access::check(&spec, HostAccess::Refuse, own_ns).map_err(|e| e.to_string());
    let state = crate::hooks::State::new(&spec, "fuzz", Path::new("/b"), "creating", 1);
    let _ = serde_json::to_vec(&state);
    default_seccomp(&spec);
    mount_options(&spec);
    cgroups(&spec);
    let seccomp = own_seccomp(&spec);
    init_request(spec, seccomp);
}

/// The default profile a spec without `linux.seccomp` gets (`[sandbox] seccomp =
/// "default"`), which depends on the bounding set: valid, and it compiles (once per
/// distinct bounding set: compiling costs milliseconds).
fn default_seccomp(spec: &Spec) {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let profile = crate::seccomp_default::profile_for_spec(spec);
    if let Err(e) = crate::seccomp::validate(&profile) {
        panic!("mypod's default profile fails its own validation: {e}");
    }
    let key = format!(
        "{:?}",
        spec.process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref())
            .and_then(|c| c.bounding().as_ref())
            .map(|b| {
                let mut v: Vec<String> = b.iter().map(|c| c.to_string()).collect();
                v.sort();
                v
            })
    );
    let seen = SEEN.get_or_init(Default::default);
    if !seen.lock().unwrap_or_else(|p| p.into_inner()).insert(key) {
        return;
    }
    if let Err(e) = Filter::compile_profile(&profile, Optimize::BinaryTree) {
        panic!("mypod's default profile does not compile: {e}");
    }
}

/// Every mount's options as the helper splits them.
fn mount_options(spec: &Spec) {
    for m in spec.mounts().iter().flatten() {
        let opts = m.options().as_deref().unwrap_or_default();
        let _ = crate::mount::parse_options(opts);
        for o in opts {
            let _ = crate::mount::recursive_attr(o);
            let _ = crate::mount::propagation_flag(o);
        }
    }
    if let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_ref())
    {
        let _ = crate::mount::propagation_flag(p);
    }
}

/// The cgroup on a hybrid and on a cgroup2 host, under a fake tree: placement, limits,
/// device rules (v1 files; v2's rules are parsed as for the eBPF filter, never loaded).
fn cgroups(spec: &Spec) {
    let path = crate::container::cgroups_path(spec, "fuzz");
    let resources = spec.linux().as_ref().and_then(|l| l.resources().clone());
    let devices = resources
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    for r in &devices {
        let _ = crate::cgroup::devices::bpf::Rule::parse(
            r.allow(),
            &crate::cgroup::devices::device_rule(r),
        );
    }
    for (v2, mountinfo) in [(false, V1_MOUNTINFO), (true, V2_MOUNTINFO)] {
        let root = scratch().join(if v2 { "v2" } else { "v1" });
        let mount = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        let Ok(mut layout) = Layout::parse(mountinfo) else {
            panic!("the fake mountinfo does not parse");
        };
        layout.set_own("0::/user.slice/fuzz\n4:memory:/ci/job\n");
        for h in &mut layout.hierarchies {
            h.mount = mount(&h.mount);
        }
        layout.unified = layout.unified.as_deref().map(mount);
        let Ok(cg) = Cgroup::new(&layout, &path) else {
            continue;
        };
        for ((_, dir), h) in cg.dirs.iter().zip(&layout.hierarchies) {
            assert!(
                dir.starts_with(&h.mount) && dir != &h.mount,
                "cgroupsPath {path:?} puts the container at {dir:?}, not below {:?}",
                h.mount
            );
        }
        let Some(r) = &resources else { continue };
        let _ = crate::cgroup::resources::validate(r, v2);
        limits_in_fake_tree(&root, &cg, r, &devices);
        let _ = std::fs::remove_dir_all(&root);
    }
    // Nothing of this input stays behind (the next one makes what it needs again).
    let _ = std::fs::remove_dir(scratch());
}

/// Applies the limits (and on v1 the device rules) to empty directories under `root` and
/// checks that every file written is in one of the container's directories.
fn limits_in_fake_tree(
    root: &Path,
    cg: &Cgroup,
    r: &oci_spec::runtime::LinuxResources,
    devices: &[oci_spec::runtime::LinuxDeviceCgroup],
) {
    for (_, dir) in &cg.dirs {
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        for f in ["memory.current", "memory.limit_in_bytes", "cpu.shares"] {
            let _ = std::fs::write(dir.join(f), "0");
        }
    }
    let _ = crate::cgroup::resources::apply(cg, r);
    let _ = crate::cgroup::resources::unapplied(cg, r);
    if !cg.v2 {
        let _ = cg.apply_devices(devices);
    }
    let dirs: Vec<&Path> = cg.dirs.iter().map(|(_, d)| d.as_path()).collect();
    for file in files_under(root) {
        assert!(
            dirs.iter().any(|d| file.parent() == Some(d)),
            "linux.resources wrote {file:?}, outside the container's cgroup"
        );
    }
}

/// Every non-directory below `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                _ => out.push(e.path()),
            }
        }
    }
    out
}

/// The spec's own profile compiled as the shim compiles it for the request; the program
/// round-trips through its wire form.
fn own_seccomp(spec: &Spec) -> Option<crate::seccomp::cache::WireFilter> {
    let filter = Filter::compile(spec).ok()??;
    let wire = filter.to_wire();
    match Filter::from_wire(&wire) {
        Ok(back) => assert_eq!(back.to_wire(), wire, "the seccomp wire form changed"),
        Err(e) => panic!("a compiled filter's wire form is refused: {e}"),
    }
    Some(wire)
}

/// The init request carrying the spec: encoded as the shim sends it, decoded as the
/// helper reads it, unchanged.
fn init_request(spec: Spec, seccomp: Option<crate::seccomp::cache::WireFilter>) {
    let req = InitRequest {
        id: "fuzz".into(),
        bundle: PathBuf::from("/b"),
        rootfs: crate::container::rootfs_path(&spec, Path::new("/b")),
        spec,
        cgroup_tasks: vec![PathBuf::from("/sys/fs/cgroup/memory/fuzz/tasks")],
        cgroup_procs: Vec::new(),
        cgroup_binds: vec![("memory".into(), PathBuf::from("/sys/fs/cgroup/memory/fuzz"))],
        cgroup_v2: false,
        join_pid: None,
        join_start_time: None,
        console_fd: None,
        idmapped: vec![(0, 5)],
        userns_fd: None,
        rootfs_tree: false,
        seccomp,
        holder: false,
    };
    let mut buf = Vec::new();
    if let Err(e) = crate::wire::send(&mut buf, &req) {
        // Only a request above the frame limit may be refused.
        assert!(
            matches!(e, crate::wire::WireError::TooLarge(_)),
            "init request not encoded: {e}"
        );
        return;
    }
    let back: InitRequest = match crate::wire::recv(&mut &buf[..]) {
        Ok(Some(r)) => r,
        Ok(None) => panic!("init request: empty frame"),
        Err(e) => panic!("init request does not decode: {e}"),
    };
    // The spec compares as a value (its capability sets have no order); the rest as JSON.
    assert!(req.spec == back.spec, "the spec changed on the wire");
    let rest = |r: &InitRequest| {
        let mut v = serde_json::to_value(r).ok();
        if let Some(m) = v.as_mut().and_then(|v| v.as_object_mut()) {
            m.remove("spec");
        }
        v
    };
    let (a, b) = (rest(&req), rest(&back));
    assert!(a.is_some(), "init request not serializable");
    assert_eq!(a, b, "init request changed on the wire");
}

/// Corpus files of a target (`fuzz/corpus/<target>/`), for the unit tests.
#[cfg(test)]
pub(crate) fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_corpus_passes_and_mostly_validates() {
        let files = corpus("spec");
        assert!(files.len() >= 10, "seed corpus too small: {}", files.len());
        let mut accepted = 0;
        for (name, data) in &files {
            spec(data);
            let ok = crate::spec::parse_with_idmaps(data, PathBuf::from(name))
                .is_ok_and(|(s, _)| crate::spec::validate(&s).is_ok());
            accepted += usize::from(ok);
        }
        assert!(
            accepted * 2 >= files.len(),
            "only {accepted} of {} seeds are valid specs: the seeds should reach translation",
            files.len()
        );
    }

    /// The short fuzzing run of the test suite (the coverage-guided runs are
    /// `scripts/fuzz.sh`): mutations of the seeds — bit flips, byte changes, cuts, splices
    /// of two seeds, JSON tokens dropped in — through the same body and properties.
    /// `MYPOD_FUZZ_MUTATIONS` sets how many (default 15000); the seed of the run is printed,
    /// `MYPOD_FUZZ_SEED` repeats one.
    #[test]
    fn mutated_seeds_keep_the_properties() {
        let files = corpus("spec");
        let n: usize = std::env::var("MYPOD_FUZZ_MUTATIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(15000);
        let seed: u64 = std::env::var("MYPOD_FUZZ_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    | 1
            });
        eprintln!("mutated_seeds_keep_the_properties: MYPOD_FUZZ_SEED={seed}, {n} mutations");
        let mut x = seed;
        let mut next = move || {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        const TOKENS: [&[u8]; 8] = [
            b"null",
            b"-1",
            b"\"..\"",
            b"4294967295",
            b"[]",
            b"{}",
            b"\"/../x\"",
            b"1e309",
        ];
        for _ in 0..n {
            let (_, a) = &files[next() as usize % files.len()];
            let mut d = a.clone();
            for _ in 0..1 + next() % 4 {
                if d.is_empty() {
                    break;
                }
                let i = next() as usize % d.len();
                match next() % 5 {
                    0 => d[i] ^= 1 << (next() % 8),
                    1 => d[i] = next() as u8,
                    2 => d.truncate(i),
                    3 => {
                        let (_, b) = &files[next() as usize % files.len()];
                        let j = next() as usize % b.len().max(1);
                        d.truncate(i);
                        d.extend_from_slice(b.get(j..).unwrap_or_default());
                    }
                    _ => {
                        let t = TOKENS[next() as usize % TOKENS.len()];
                        d.splice(i..i, t.iter().copied());
                    }
                }
            }
            spec(&d);
        }
    }

    #[test]
    fn a_climbing_cgroups_path_is_caught_by_the_property() {
        // The property check itself: a directory outside the cgroup is reported.
        let root = scratch().join("prop");
        let cg = Cgroup {
            dirs: vec![("memory".into(), root.join("memory/c"))],
            v2: false,
            unified: None,
        };
        std::fs::create_dir_all(root.join("memory/c")).unwrap();
        std::fs::write(root.join("memory/escaped"), "").unwrap();
        let r = serde_json::from_str("{}").unwrap();
        let caught = std::panic::catch_unwind(|| limits_in_fake_tree(&root, &cg, &r, &[]));
        std::fs::remove_dir_all(&root).unwrap();
        let _ = std::fs::remove_dir(scratch());
        assert!(caught.is_err());
    }
}
