//! Placing containers in cgroups (v1 hierarchies, or the v2 unified tree), device
//! rules, listing and signalling members, and removal.
//!
//! Hand-written rather than cgroups-rs: placement needs a handful of file writes, and
//! cgroups-rs 0.5 pulls zbus and a large graph into a shim whose memory is a goal.
//! Resource limits are in [`crate::resources`], statistics in [`crate::stats`], freezing in
//! [`crate::freezer`] and OOM notification in [`crate::oom`].

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxDeviceCgroup;

use crate::devices_bpf::{self, DeviceFilterError};
use crate::systemd_path::{self, SystemdPathError};

/// Errors creating, joining or removing a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(transparent)]
    Systemd(#[from] SystemdPathError),
    #[error("cgroupsPath {0:?} escapes the cgroup root")]
    Escapes(String),
    #[error(transparent)]
    DeviceFilter(#[from] DeviceFilterError),
    #[error("no cgroup hierarchy is mounted")]
    NoHierarchy,
    #[error("cgroup {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One mounted hierarchy: its controllers (or name) and mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Controllers joined by ',' (`cpu,cpuacct`), `name=systemd`, or "" for cgroup2.
    pub name: String,
    pub mount: PathBuf,
}

/// The host's cgroup layout.
#[derive(Debug, Clone)]
pub struct Layout {
    /// v1 hierarchies, or the single cgroup2 mount on a unified host.
    pub hierarchies: Vec<Hierarchy>,
    pub v2: bool,
    /// A hybrid host's controller-less cgroup2 mount (`/sys/fs/cgroup/unified`): containers
    /// join it too, as runc puts them there, so `0::` in /proc/PID/cgroup names them.
    pub unified: Option<PathBuf>,
    /// Whether systemd runs here (systemd-form cgroupsPaths are accepted only then).
    pub systemd: bool,
}

impl Layout {
    /// Reads the layout from /proc/self/mountinfo.
    pub fn detect() -> Result<Layout, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(path).map_err(io(path))?;
        let mut layout = Self::parse(&text)?;
        layout.systemd = systemd_path::systemd_running();
        Ok(layout)
    }

    /// Parses mountinfo text; v1 hierarchies win over a hybrid host's empty cgroup2, which
    /// is kept as `unified` (`systemd` is left false).
    pub fn parse(mountinfo: &str) -> Result<Layout, CgroupError> {
        let mut v1 = Vec::new();
        let mut v2 = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount = left.split(' ').nth(4).unwrap_or_default();
            let mut r = right.split(' ');
            let fstype = r.next().unwrap_or_default();
            let super_opts = r.nth(1).unwrap_or_default();
            match fstype {
                "cgroup" => {
                    let name: Vec<&str> = super_opts
                        .split(',')
                        .filter(|o| {
                            !matches!(*o, "rw" | "ro" | "relatime" | "noatime" | "nosuid")
                                && !o.starts_with("release_agent")
                                && *o != "clone_children"
                                && *o != "noprefix"
                                && *o != "xattr"
                        })
                        .collect();
                    v1.push(Hierarchy {
                        name: name.join(","),
                        mount: PathBuf::from(mount),
                    });
                }
                "cgroup2" if v2.is_none() => v2 = Some(PathBuf::from(mount)),
                _ => {}
            }
        }
        if !v1.is_empty() {
            return Ok(Layout {
                hierarchies: v1,
                v2: false,
                unified: v2,
                systemd: false,
            });
        }
        match v2 {
            Some(mount) => Ok(Layout {
                hierarchies: vec![Hierarchy {
                    name: String::new(),
                    mount,
                }],
                v2: true,
                unified: None,
                systemd: false,
            }),
            None => Err(CgroupError::NoHierarchy),
        }
    }
}

/// A container's cgroup: one directory per hierarchy.
#[derive(Debug, Clone)]
pub struct Cgroup {
    /// (hierarchy name, directory).
    pub dirs: Vec<(String, PathBuf)>,
    pub v2: bool,
    /// The directory in a hybrid host's cgroup2 tree (membership only: no controllers).
    pub unified: Option<PathBuf>,
}

/// How a process enters a cgroup without the kernel's global cgroup lock.
///
/// Writing a pid to `cgroup.procs` write-locks `cgroup_threadgroup_rwsem`, whose first
/// writer waits an RCU grace period (13 ms here). The kernel skips that lock when a
/// thread moves itself through a v1 `tasks` file (it writes `0`), which moves a
/// single-threaded process whole; a cgroup2 directory is entered at birth with
/// `clone3(CLONE_INTO_CGROUP)` ([`crate::spawn`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Join {
    /// The `tasks` file of every v1 hierarchy.
    pub tasks: Vec<PathBuf>,
    /// The cgroup2 directory: a cgroup2 host's cgroup, or a hybrid host's membership-only
    /// directory in its cgroup2 tree.
    pub v2_dir: Option<PathBuf>,
}

/// Checks a cgroupsPath and returns it relative to the hierarchy roots. The systemd
/// `slice:prefix:name` form is expanded where systemd runs and refused elsewhere.
pub fn relative_path(cgroups_path: &str, systemd: bool) -> Result<PathBuf, CgroupError> {
    if systemd_path::is_systemd_form(cgroups_path) {
        if !systemd {
            return Err(SystemdPathError::NoSystemd(cgroups_path.to_string()).into());
        }
        return Ok(systemd_path::expand(cgroups_path)?);
    }
    let mut rel = PathBuf::new();
    for c in Path::new(cgroups_path).components() {
        match c {
            std::path::Component::Normal(p) => rel.push(p),
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => return Err(CgroupError::Escapes(cgroups_path.to_string())),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(CgroupError::Escapes(cgroups_path.to_string()));
    }
    Ok(rel)
}

impl Cgroup {
    /// The cgroup at `cgroups_path` (not created yet).
    pub fn new(layout: &Layout, cgroups_path: &str) -> Result<Cgroup, CgroupError> {
        let rel = relative_path(cgroups_path, layout.systemd)?;
        Ok(Cgroup {
            dirs: layout
                .hierarchies
                .iter()
                .map(|h| (h.name.clone(), h.mount.join(&rel)))
                .collect(),
            v2: layout.v2,
            unified: layout.unified.as_ref().map(|u| u.join(&rel)),
        })
    }

    /// Creates the directories (cpuset ones inherit their parent's cpus and mems; on v2 the
    /// controllers of every ancestor are delegated down to the new cgroup, as runc does).
    pub fn create(&self) -> Result<(), CgroupError> {
        for (name, dir) in &self.dirs {
            if self.v2 {
                create_v2(name, dir)?;
            } else if name.split(',').any(|c| c == "cpuset") {
                create_cpuset(dir)?;
            } else {
                fs::create_dir_all(dir).map_err(io(dir))?;
            }
        }
        if let Some(dir) = &self.unified {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        Ok(())
    }

    /// The directory holding `controller`'s files: the one v2 directory, or the v1
    /// hierarchy that has the controller (`None` if no hierarchy has it).
    pub fn controller_dir(&self, controller: &str) -> Option<&Path> {
        if self.v2 {
            return self.dirs.first().map(|(_, d)| d.as_path());
        }
        self.dirs
            .iter()
            .find(|(n, _)| n.split(',').any(|c| c == controller))
            .map(|(_, d)| d.as_path())
    }

    /// How a new process enters this cgroup (see [`Join`]).
    pub fn join(&self) -> Join {
        if self.v2 {
            return Join {
                tasks: Vec::new(),
                v2_dir: self.dirs.first().map(|(_, d)| d.clone()),
            };
        }
        Join {
            tasks: self.dirs.iter().map(|(_, d)| d.join("tasks")).collect(),
            v2_dir: self.unified.clone(),
        }
    }

    /// Hierarchies to show inside the container: (name, host directory).
    pub fn binds(&self) -> Vec<(String, PathBuf)> {
        self.dirs.clone()
    }

    /// Pids of every process in the cgroup.
    pub fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let Some((_, dir)) = self
            .dirs
            .iter()
            .find(|(n, _)| n.split(',').any(|c| c == "pids" || c == "memory"))
            .or(self.dirs.first())
        else {
            return Ok(Vec::new());
        };
        let path = dir.join("cgroup.procs");
        match fs::read_to_string(&path) {
            Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Sends `sig` to every process in the cgroup; returns how many were signalled.
    pub fn signal_all(&self, sig: i32) -> Result<usize, CgroupError> {
        let pids = self.pids()?;
        for pid in &pids {
            // SAFETY: kill(2) has no memory effects; a stale pid yields ESRCH.
            unsafe { libc::kill(*pid, sig) };
        }
        Ok(pids.len())
    }

    /// SIGKILLs everything in the cgroup until it is empty (bounded wait).
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        for _ in 0..200 {
            if self.signal_all(libc::SIGKILL)? == 0 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Removes the directories; processes that are still exiting get a moment.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for dir in self
            .dirs
            .iter()
            .map(|(_, d)| d)
            .chain(self.unified.as_ref())
        {
            let mut tries = 0;
            loop {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 100 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(io(dir)(e)),
                }
            }
        }
        Ok(())
    }

    /// Applies device rules (v1 devices controller, or on v2 an eBPF device filter): the
    /// spec's rules in order, then the defaults every container gets, as runc does.
    pub fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
        if self.v2 {
            if rules.is_empty() {
                return Ok(());
            }
            let Some((_, dir)) = self.dirs.first() else {
                return Ok(());
            };
            let mut list = Vec::with_capacity(rules.len() + DEFAULT_ALLOWED.len());
            for r in rules {
                list.push(devices_bpf::Rule::parse(r.allow(), &device_rule(r))?);
            }
            for rule in DEFAULT_ALLOWED {
                list.push(devices_bpf::Rule::parse(true, rule)?);
            }
            return Ok(devices_bpf::apply(dir, &list)?);
        }
        let Some((_, dir)) = self
            .dirs
            .iter()
            .find(|(n, _)| n.split(',').any(|c| c == "devices"))
        else {
            if !rules.is_empty() {
                log::warn!("device cgroup rules not applied: no v1 devices hierarchy");
            }
            return Ok(());
        };
        for r in rules {
            write_rule(dir, r.allow(), &device_rule(r))?;
        }
        if rules.is_empty() {
            return Ok(());
        }
        for rule in DEFAULT_ALLOWED {
            write_rule(dir, true, rule)?;
        }
        Ok(())
    }
}

/// Device rules every container is allowed, whatever its spec denies (runc's list).
const DEFAULT_ALLOWED: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:8 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:5 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
];

fn write_rule(dir: &Path, allow: bool, rule: &str) -> Result<(), CgroupError> {
    let file = dir.join(if allow {
        "devices.allow"
    } else {
        "devices.deny"
    });
    fs::write(&file, rule).map_err(io(&file))
}

/// Formats a device rule as the v1 devices controller reads it.
pub fn device_rule(r: &LinuxDeviceCgroup) -> String {
    let typ = r
        .typ()
        .map(|t| t.as_str().to_string())
        .unwrap_or("a".into());
    if typ == "a" {
        return "a".into();
    }
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    let access = r.access().clone().unwrap_or_else(|| "rwm".into());
    format!("{typ} {}:{} {access}", num(r.major()), num(r.minor()))
}

/// Creates a v2 cgroup below `root`'s mount, enabling in each ancestor's
/// `cgroup.subtree_control` every controller that ancestor has. A controller that cannot be
/// enabled (for example a threaded or populated ancestor) is logged, not fatal: resource
/// writes that need it fail later with an error naming the file.
fn create_v2(_name: &str, dir: &Path) -> Result<(), CgroupError> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for new in missing.iter().rev() {
        if let Some(parent) = new.parent() {
            enable_controllers(parent);
        }
        match fs::create_dir(new) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(new)(e)),
        }
    }
    Ok(())
}

/// Writes `+c` for each of `dir`'s controllers into its `cgroup.subtree_control`.
fn enable_controllers(dir: &Path) {
    let Ok(available) = fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    let file = dir.join("cgroup.subtree_control");
    let enabled = fs::read_to_string(&file).unwrap_or_default();
    for c in available.split_whitespace() {
        if enabled.split_whitespace().any(|e| e == c) {
            continue;
        }
        if let Err(e) = fs::write(&file, format!("+{c}")) {
            log::warn!("enable controller {c} in {}: {e}", file.display());
        }
    }
}

fn create_cpuset(dir: &Path) -> Result<(), CgroupError> {
    if dir.exists() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_cpuset(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(io(dir)(e)),
    }
    let parent = dir.parent().unwrap_or(dir);
    for f in ["cpuset.cpus", "cpuset.mems"] {
        let mine = dir.join(f);
        if fs::read_to_string(&mine)
            .map_err(io(&mine))?
            .trim()
            .is_empty()
        {
            let p = parent.join(f);
            let v = fs::read_to_string(&p).map_err(io(&p))?;
            fs::write(&mine, v.trim()).map_err(io(&mine))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
28 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
29 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_host_uses_v1_hierarchies() {
        let l = Layout::parse(HYBRID).unwrap();
        assert!(!l.v2);
        let names: Vec<_> = l.hierarchies.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["name=systemd", "cpu,cpuacct", "memory"]);
        assert_eq!(
            l.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        let cg = Cgroup::new(&l, "/ns/c1").unwrap();
        let join = cg.join();
        assert_eq!(
            join.tasks,
            [
                "/sys/fs/cgroup/systemd/ns/c1/tasks",
                "/sys/fs/cgroup/cpu,cpuacct/ns/c1/tasks",
                "/sys/fs/cgroup/memory/ns/c1/tasks"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            join.v2_dir.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified/ns/c1"))
        );
        assert_eq!(cg.binds().len(), 3, "the unified tree is not shown inside");
    }

    #[test]
    fn unified_host_uses_cgroup2() {
        let l = Layout::parse("30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n").unwrap();
        assert!(l.v2);
        assert_eq!(l.hierarchies[0].mount, Path::new("/sys/fs/cgroup"));
        assert!(l.unified.is_none());
        let join = Cgroup::new(&l, "/ns/c1").unwrap().join();
        assert!(join.tasks.is_empty());
        assert_eq!(
            join.v2_dir.as_deref(),
            Some(Path::new("/sys/fs/cgroup/ns/c1"))
        );
    }

    #[test]
    fn paths_are_checked() {
        assert_eq!(
            relative_path("/default/c1", false).unwrap(),
            Path::new("default/c1")
        );
        let e = relative_path("system.slice:cri:abc", false).unwrap_err();
        assert!(e.to_string().contains("systemd does not run"), "{e}");
        assert_eq!(
            relative_path("system.slice:cri:abc", true).unwrap(),
            Path::new("system.slice/cri-abc.scope")
        );
        assert!(matches!(
            relative_path("/a/../../x", false),
            Err(CgroupError::Escapes(_))
        ));
        assert!(matches!(
            relative_path("/", false),
            Err(CgroupError::Escapes(_))
        ));
    }

    #[test]
    fn device_rules_format() {
        let r: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":false,"access":"rwm"}"#).unwrap();
        assert_eq!(device_rule(&r), "a");
        let r: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":true,"type":"c","major":1,"access":"rw"}"#).unwrap();
        assert_eq!(device_rule(&r), "c 1:* rw");
    }
}
