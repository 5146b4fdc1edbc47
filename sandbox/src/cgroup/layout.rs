//! The host's cgroup layout: the mounted v1 hierarchies, the cgroup2 tree, or a hybrid
//! host's v1 hierarchies plus its controller-less cgroup2 mount, read from mountinfo.

use std::fs;
use std::path::{Path, PathBuf};

use super::placement::{io, CgroupError};
use super::systemd_path;

/// One mounted hierarchy: its controllers (or name) and mount point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Controllers joined by ',' (`cpu,cpuacct`), `name=systemd`, or "" for cgroup2.
    pub name: String,
    pub mount: PathBuf,
    /// This process's own cgroup in the hierarchy, relative to its root (empty: the root).
    /// A relative cgroupsPath is placed below it, as runc's cgroupfs driver does.
    pub own: PathBuf,
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
    /// This process's own cgroup in the hybrid host's cgroup2 tree (see [`Hierarchy::own`]).
    pub unified_own: PathBuf,
    /// Whether systemd runs here (systemd-form cgroupsPaths are expanded only then).
    pub systemd: bool,
}

impl Layout {
    /// Reads the layout from /proc/self/mountinfo.
    pub fn detect() -> Result<Layout, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(path).map_err(io(path))?;
        let mut layout = Self::parse(&text)?;
        let path = Path::new("/proc/self/cgroup");
        layout.set_own(&fs::read_to_string(path).map_err(io(path))?);
        layout.systemd = systemd_path::systemd_running();
        Ok(layout)
    }

    /// Records this process's own cgroups from /proc/self/cgroup text
    /// (`ID:CONTROLLERS:PATH` lines; `0::PATH` is the cgroup2 one).
    pub fn set_own(&mut self, proc_cgroup: &str) {
        let same = |a: &str, b: &str| {
            let mut x: Vec<&str> = a.split(',').filter(|s| !s.is_empty()).collect();
            let mut y: Vec<&str> = b.split(',').filter(|s| !s.is_empty()).collect();
            x.sort_unstable();
            y.sort_unstable();
            x == y
        };
        for line in proc_cgroup.lines() {
            let mut f = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let own = PathBuf::from(path.trim_start_matches('/'));
            if ctrls.is_empty() {
                if self.v2 {
                    if let Some(h) = self.hierarchies.first_mut() {
                        h.own = own;
                    }
                } else {
                    self.unified_own = own;
                }
            } else if let Some(h) = self.hierarchies.iter_mut().find(|h| same(&h.name, ctrls)) {
                h.own = own;
            }
        }
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
                    let name = name.join(",");
                    // The first mount of a hierarchy is the host's (as runc takes it): a
                    // later one was made into some rootfs and may go away any time.
                    if v1.iter().any(|h: &Hierarchy| h.name == name) {
                        continue;
                    }
                    v1.push(Hierarchy {
                        name,
                        mount: PathBuf::from(mount),
                        own: PathBuf::new(),
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
                unified_own: PathBuf::new(),
                systemd: false,
            });
        }
        match v2 {
            Some(mount) => Ok(Layout {
                hierarchies: vec![Hierarchy {
                    name: String::new(),
                    mount,
                    own: PathBuf::new(),
                }],
                v2: true,
                unified: None,
                unified_own: PathBuf::new(),
                systemd: false,
            }),
            None => Err(CgroupError::NoHierarchy),
        }
    }
}
