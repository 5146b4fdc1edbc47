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
    /// Recursive attributes (`rro`, `rnosuid`…) to set and clear with mount_setattr(2),
    /// as `MOUNT_ATTR_*` bits.
    pub rec_set: u64,
    pub rec_clear: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            bind: false,
            rec_set: 0,
            rec_clear: 0,
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

/// `MOUNT_ATTR_*` of linux/mount.h.
pub mod attr {
    pub const IDMAP: u64 = 0x0010_0000;
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    pub const ATIME_MASK: u64 = 0x70;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const NODIRATIME: u64 = 0x80;
    pub const NOSYMFOLLOW: u64 = 0x0020_0000;
}

/// mount_setattr(2) on the mount `fd` refers to (and every mount below it when
/// `recursive`): set and clear `MOUNT_ATTR_*` bits; `userns` goes with `MOUNT_ATTR_IDMAP`.
pub fn mount_setattr(
    fd: i32,
    recursive: bool,
    set: u64,
    clear: u64,
    userns: Option<i32>,
) -> std::io::Result<()> {
    /// struct mount_attr of linux/mount.h.
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: mount_setattr on a descriptor the caller owns, an empty NUL-terminated path
    // with AT_EMPTY_PATH, and a pointer to a live struct of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A recursive mount option (as runc): (clear instead of set, `MOUNT_ATTR_*` bit).
pub fn recursive_attr(opt: &str) -> Option<(bool, u64)> {
    Some(match opt {
        "rro" => (false, attr::RDONLY),
        "rrw" => (true, attr::RDONLY),
        "rnosuid" => (false, attr::NOSUID),
        "rsuid" => (true, attr::NOSUID),
        "rnodev" => (false, attr::NODEV),
        "rdev" => (true, attr::NODEV),
        "rnoexec" => (false, attr::NOEXEC),
        "rexec" => (true, attr::NOEXEC),
        "rnodiratime" => (false, attr::NODIRATIME),
        "rdiratime" => (true, attr::NODIRATIME),
        "rrelatime" => (false, attr::RELATIME),
        "rnorelatime" => (true, attr::RELATIME),
        "rnoatime" => (false, attr::NOATIME),
        "ratime" => (true, attr::NOATIME),
        "rstrictatime" => (false, attr::STRICTATIME),
        "rnostrictatime" => (true, attr::STRICTATIME),
        "rnosymfollow" => (false, attr::NOSYMFOLLOW),
        "rsymfollow" => (true, attr::NOSYMFOLLOW),
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
                } else if let Some((clear, bit)) = recursive_attr(other) {
                    if clear {
                        o.rec_clear |= bit;
                    } else {
                        o.rec_set |= bit;
                        // An access-time mode is set by clearing the whole atime field
                        // (mount_setattr(2)).
                        if bit & attr::ATIME_MASK == bit {
                            o.rec_clear |= attr::ATIME_MASK;
                        }
                    }
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

/// The mount point, in `mountinfo` text (/proc/self/mountinfo), of the mount that holds
/// `path` (absolute, without symlinks): the longest mount point that is `path` or one of its
/// ancestors. The last such line wins, as the kernel lists a mount after what it covers.
pub fn mount_point_of(path: &Path, mountinfo: &str) -> Option<PathBuf> {
    let mut best: Option<PathBuf> = None;
    for line in mountinfo.lines() {
        let Some(point) = line.split(' ').nth(4).map(unescape) else {
            continue;
        };
        let point = PathBuf::from(point);
        if path.starts_with(&point)
            && best
                .as_ref()
                .is_none_or(|b| point.components().count() >= b.components().count())
        {
            best = Some(point);
        }
    }
    best
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .map(|d| d.iter().fold(0u32, |n, c| n * 8 + u32::from(c - b'0')))
            .and_then(|n| u8::try_from(n).ok());
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

    #[test]
    fn recursive_options_become_mount_attrs() {
        let o = parse_options(&[
            "rbind".into(),
            "rro".into(),
            "rnosuid".into(),
            "rexec".into(),
        ]);
        assert_eq!(o.rec_set, attr::RDONLY | attr::NOSUID);
        assert_eq!(o.rec_clear, attr::NOEXEC);
        assert!(
            o.data.is_empty(),
            "never passed on as mount data: {:?}",
            o.data
        );
        let o = parse_options(&["rnoatime".into()]);
        assert_eq!((o.rec_set, o.rec_clear), (attr::NOATIME, attr::ATIME_MASK));
    }

    #[test]
    fn the_mount_holding_a_path_is_found() {
        let mi = "\
22 1 8:1 / / rw shared:1 - ext4 /dev/vda rw
30 22 0:40 / /run rw shared:5 - tmpfs tmpfs rw
31 30 0:41 / /run/c/b\\040x/rootfs rw shared:9 - overlay overlay rw
32 31 0:42 / /run/c/b\\040x/rootfs/proc rw - proc proc rw
";
        let at = |p: &str| mount_point_of(Path::new(p), mi);
        assert_eq!(at("/run/c/b x/rootfs"), Some("/run/c/b x/rootfs".into()));
        assert_eq!(
            at("/run/c/b x/rootfs/etc"),
            Some("/run/c/b x/rootfs".into())
        );
        assert_eq!(at("/run/c/other"), Some("/run".into()));
        assert_eq!(at("/runx"), Some("/".into()));
        assert_eq!(at("/run/c/b x/rootfsx"), Some("/run".into()));
    }
}
