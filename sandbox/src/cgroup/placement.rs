//! Placing a container in its cgroup: one directory per v1 hierarchy or one in the v2
//! tree, created with delegated controllers; how a process joins it ([`Join`]); removal.
//! Its members are [`super::members`]'.
//!
//! Hand-written rather than cgroups-rs: placement needs a handful of file writes, and
//! cgroups-rs 0.5 pulls zbus and a large graph into a shim whose memory is a goal.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::devices::bpf::DeviceFilterError;
use super::layout::Layout;
use super::systemd_path::{self, SystemdPathError};

/// Errors creating, joining or removing a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(transparent)]
    Systemd(#[from] SystemdPathError),
    #[error("cgroupsPath {0:?} escapes the cgroup root")]
    Escapes(String),
    #[error(
        "cgroupsPath {0:?} names a cgroup that already has processes (the host's, or another \
         container's): a container gets a cgroup of its own"
    )]
    InUse(String),
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

pub(super) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
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

/// Where a cgroupsPath puts a container: below the hierarchy roots, or below this
/// process's own cgroup in each hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// An absolute path, or a systemd-form path expanded where systemd runs.
    Root(PathBuf),
    /// A relative path, and a systemd-form path where systemd does not run, taken literally
    /// (`test.slice:cri-containerd:ID` is one directory): what runc's cgroupfs driver does.
    Own(PathBuf),
}

/// Checks a cgroupsPath and says where it puts the container. The systemd
/// `slice:prefix:name` form is expanded where systemd runs, as runc's systemd driver does;
/// elsewhere it is a relative path, as runc's cgroupfs driver takes it.
pub fn relative_path(cgroups_path: &str, systemd: bool) -> Result<Place, CgroupError> {
    if systemd && systemd_path::is_systemd_form(cgroups_path) {
        let expanded = systemd_path::expand(cgroups_path)?;
        // `x:y:-.slice` expands to nothing: the root cgroup.
        let rel = clean(&expanded.to_string_lossy())
            .ok_or_else(|| CgroupError::Escapes(cgroups_path.to_string()))?;
        return Ok(Place::Root(rel));
    }
    let rel = clean(cgroups_path).ok_or_else(|| CgroupError::Escapes(cgroups_path.to_string()))?;
    if cgroups_path.starts_with('/') {
        Ok(Place::Root(rel))
    } else {
        Ok(Place::Own(rel))
    }
}

/// The path's normal components; `None` if it climbs (`..`) or names nothing.
fn clean(path: &str) -> Option<PathBuf> {
    let mut rel = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            std::path::Component::Normal(p) => rel.push(p),
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => return None,
        }
    }
    (!rel.as_os_str().is_empty()).then_some(rel)
}

/// `place` below a hierarchy mounted at `mount` where this process sits at `own`.
fn under(mount: &Path, own: &Path, place: &Place, original: &str) -> Result<PathBuf, CgroupError> {
    match place {
        Place::Root(rel) => Ok(mount.join(rel)),
        Place::Own(rel) => {
            let own = if own.as_os_str().is_empty() {
                PathBuf::new()
            } else {
                clean(&own.to_string_lossy())
                    .ok_or_else(|| CgroupError::Escapes(original.to_string()))?
            };
            Ok(mount.join(own).join(rel))
        }
    }
}

impl Cgroup {
    /// The cgroup at `cgroups_path` (not created yet).
    pub fn new(layout: &Layout, cgroups_path: &str) -> Result<Cgroup, CgroupError> {
        let place = relative_path(cgroups_path, layout.systemd)?;
        let dirs = layout
            .hierarchies
            .iter()
            .map(|h| {
                Ok((
                    h.name.clone(),
                    under(&h.mount, &h.own, &place, cgroups_path)?,
                ))
            })
            .collect::<Result<_, CgroupError>>()?;
        let unified = match &layout.unified {
            Some(u) => Some(under(u, &layout.unified_own, &place, cgroups_path)?),
            None => None,
        };
        Ok(Cgroup {
            dirs,
            v2: layout.v2,
            unified,
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
    fn later_mounts_of_a_hierarchy_are_not_its_root() {
        let more = format!(
            "{HYBRID}\
40 30 0:26 / /tmp/probe/rootfs/sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu,cpuacct
41 30 0:27 /ns/c1 /tmp/other/rootfs/sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
42 30 0:28 /x /tmp/other/unified rw - cgroup2 cgroup2 rw
"
        );
        let l = Layout::parse(&more).unwrap();
        let mounts: Vec<_> = l.hierarchies.iter().map(|h| h.mount.clone()).collect();
        assert_eq!(
            mounts,
            ["systemd", "cpu,cpuacct", "memory"].map(|n| Path::new("/sys/fs/cgroup").join(n))
        );
        assert_eq!(
            l.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
    }

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
    fn relative_paths_go_below_the_own_cgroup() {
        let mut l = Layout::parse(HYBRID).unwrap();
        l.set_own("4:memory:/ci/job7\n2:cpuacct,cpu:/\n1:name=systemd:/init.scope\n0::/u\n");
        let cg = Cgroup::new(&l, "test.slice:cri-containerd:c1").unwrap();
        let dirs: Vec<_> = cg.dirs.iter().map(|(_, d)| d.clone()).collect();
        assert_eq!(
            dirs,
            [
                "/sys/fs/cgroup/systemd/init.scope/test.slice:cri-containerd:c1",
                "/sys/fs/cgroup/cpu,cpuacct/test.slice:cri-containerd:c1",
                "/sys/fs/cgroup/memory/ci/job7/test.slice:cri-containerd:c1"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(
            cg.unified.as_deref(),
            Some(Path::new(
                "/sys/fs/cgroup/unified/u/test.slice:cri-containerd:c1"
            ))
        );
        // Absolute paths ignore the own cgroup.
        let cg = Cgroup::new(&l, "/ns/c1").unwrap();
        assert_eq!(cg.dirs[2].1, Path::new("/sys/fs/cgroup/memory/ns/c1"));
        // An own cgroup outside the cgroup namespace's root cannot anchor a relative path.
        l.set_own("4:memory:/../x\n");
        assert!(matches!(
            Cgroup::new(&l, "a/b"),
            Err(CgroupError::Escapes(_))
        ));
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
            Place::Root("default/c1".into())
        );
        assert_eq!(
            relative_path("system.slice:cri:abc", false).unwrap(),
            Place::Own("system.slice:cri:abc".into())
        );
        assert_eq!(
            relative_path("system.slice:cri:abc", true).unwrap(),
            Place::Root("system.slice/cri-abc.scope".into())
        );
        assert_eq!(
            relative_path("kubepods/pod1/c1", true).unwrap(),
            Place::Own("kubepods/pod1/c1".into())
        );
        assert!(matches!(
            relative_path("x.slice:cri:../../y", false),
            Err(CgroupError::Escapes(_))
        ));
        assert!(matches!(
            relative_path("/a/../../x", false),
            Err(CgroupError::Escapes(_))
        ));
        assert!(matches!(
            relative_path("/", false),
            Err(CgroupError::Escapes(_))
        ));
    }

    /// The systemd branch for real, on this host's cgroup hierarchies: a `slice:prefix:name`
    /// path, with systemd taken as running (this machine's init is not systemd, so no
    /// container ever takes the branch here), lands in `<slice>/<prefix>-<name>.scope` in
    /// every hierarchy, a process joins it there, and kill and remove leave nothing.
    /// Needs root; skipped otherwise.
    #[test]
    fn systemd_form_places_a_process_in_its_scope_on_the_real_hierarchies() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        /// Kills the child and removes the scopes and slices, also when the test fails.
        struct Cleanup(Cgroup, std::process::Child);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = self.1.kill();
                let _ = self.1.wait();
                let _ = self.0.remove();
                for dir in self
                    .0
                    .dirs
                    .iter()
                    .map(|(_, d)| d)
                    .chain(self.0.unified.iter())
                {
                    let _ = fs::remove_dir(dir.parent().unwrap_or(dir));
                }
            }
        }
        let mut layout = Layout::detect().unwrap();
        layout.systemd = true;
        let slice = format!("mypodunit{}.slice", std::process::id());
        let cg = Cgroup::new(&layout, &format!("{slice}:cri:c1")).unwrap();
        let scope = Path::new(&slice).join("cri-c1.scope");
        assert!(!cg.dirs.is_empty());
        for (name, dir) in cg.dirs.iter() {
            assert!(dir.ends_with(&scope), "{name}: {}", dir.display());
        }
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let guard = Cleanup(cg, child);
        let cg = &guard.0;
        cg.create().unwrap();
        let join = cg.join();
        for tasks in join.tasks.iter() {
            fs::write(tasks, pid.to_string()).unwrap();
        }
        if let Some(v2) = &join.v2_dir {
            fs::write(v2.join("cgroup.procs"), pid.to_string()).unwrap();
        }
        let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let want = format!("/{}", scope.display());
        let lines: Vec<&str> = own.lines().collect();
        assert!(
            lines
                .iter()
                .filter(|l| !l.is_empty())
                .all(|l| l.ends_with(&want)),
            "{own}"
        );
        assert_eq!(cg.pids().unwrap(), [pid]);
        cg.kill_all().unwrap();
        cg.remove().unwrap();
        let dirs: Vec<PathBuf> = cg
            .dirs
            .iter()
            .map(|(_, d)| d.clone())
            .chain(cg.unified.clone())
            .collect();
        drop(guard);
        for dir in dirs {
            assert!(!dir.exists(), "{} is left", dir.display());
            assert!(!dir.parent().unwrap().exists(), "{} is left", dir.display());
        }
    }
}
