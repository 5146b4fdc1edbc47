//! Mount options as OCI and containerd write them, and the container's rootfs mounts.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Errors mounting or unmounting a root filesystem.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("mount {typ} {source_path:?} on {target}: {errno}")]
    Mount {
        typ: String,
        source_path: String,
        target: PathBuf,
        errno: nix::Error,
    },
    #[error("unmount {target}: {errno}")]
    Unmount { target: PathBuf, errno: nix::Error },
    #[error("create mount point {target}: {source}")]
    Mkdir {
        target: PathBuf,
        source: std::io::Error,
    },
}

/// One mount as containerd describes a snapshot (`CreateTaskRequest.rootfs`).
#[derive(Debug, Clone, Default)]
pub struct MountSpec {
    pub typ: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Mount options split into what mount(2) takes.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// Flags to set.
    pub flags: MsFlags,
    /// Propagation changes to apply after the mount, in order.
    pub propagation: Vec<MsFlags>,
    /// Filesystem-specific data (`size=65536k,mode=755`).
    pub data: String,
    /// `bind` or `rbind` was given.
    pub bind: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            bind: false,
        }
    }
}

/// Maps a propagation keyword to its flags.
pub fn propagation_flag(opt: &str) -> Option<MsFlags> {
    Some(match opt {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Parses OCI/containerd mount options.
pub fn parse_options(opts: &[String]) -> Options {
    let mut o = Options::default();
    let mut data = Vec::new();
    for opt in opts {
        let (set, clear) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => {
                o.bind = true;
                (MsFlags::MS_BIND, MsFlags::empty())
            }
            "rbind" => {
                o.bind = true;
                (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty())
            }
            other => {
                if let Some(p) = propagation_flag(other) {
                    o.propagation.push(p);
                } else {
                    data.push(other);
                }
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
    }
    o.data = data.join(",");
    o
}

/// Mounts containerd's snapshot mounts on `target` (normally `<bundle>/rootfs`).
pub fn mount_rootfs(mounts: &[MountSpec], target: &Path) -> Result<(), MountError> {
    std::fs::create_dir_all(target).map_err(|source| MountError::Mkdir {
        target: target.to_path_buf(),
        source,
    })?;
    for m in mounts {
        let o = parse_options(&m.options);
        let typ = if o.bind { None } else { Some(m.typ.as_str()) };
        let data = (!o.data.is_empty()).then_some(o.data.as_str());
        let err = |errno| MountError::Mount {
            typ: m.typ.clone(),
            source_path: m.source.clone(),
            target: target.to_path_buf(),
            errno,
        };
        mount(Some(m.source.as_str()), target, typ, o.flags, data).map_err(err)?;
        if o.bind && o.flags.contains(MsFlags::MS_RDONLY) {
            // A bind mount ignores MS_RDONLY until it is remounted.
            let flags = o.flags | MsFlags::MS_REMOUNT;
            mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(err)?;
        }
        for p in &o.propagation {
            mount(None::<&str>, target, None::<&str>, *p, None::<&str>).map_err(err)?;
        }
    }
    Ok(())
}

/// Unmounts everything stacked on `target`; a target that is not a mount point is fine.
pub fn unmount_all(target: &Path) -> Result<(), MountError> {
    for _ in 0..64 {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(errno) => {
                return Err(MountError::Unmount {
                    target: target.to_path_buf(),
                    errno,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Options {
        parse_options(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_data_and_propagation_are_split() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k", "rslave"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert!(!o.bind);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let o = opts(&["ro", "rw", "rbind"]);
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(o.bind);
    }
}
