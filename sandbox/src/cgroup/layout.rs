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
