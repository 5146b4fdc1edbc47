//! Idmapped bind mounts (`mounts[].uidMappings` / `gidMappings`, options `idmap` and
//! `ridmap`), made as runc 1.2 makes them: the shim, in the host's user namespace,
//! clones the source tree (open_tree), attaches a user namespace holding the mount's
//! mappings (mount_setattr MOUNT_ATTR_IDMAP) and hands the detached mount to the init
//! helper as a descriptor; the container process attaches it (move_mount) where the
//! mount goes. The container may have a user namespace of its own or not.
//!
//! oci-spec does not model these fields, so they are read from the raw config.json.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::process;

/// Errors making an idmapped mount.
#[derive(Debug, thiserror::Error)]
pub enum IdmapError {
    #[error("config.json: mounts[{index}]: {reason}")]
    Invalid { index: usize, reason: String },
    #[error("idmapped mount of {source_path}: {what}: {error}")]
    Sys {
        source_path: PathBuf,
        what: &'static str,
        error: std::io::Error,
    },
}

/// One range of an id mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

/// The idmapping of the spec's mount number `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountIdmap {
    pub index: usize,
    pub uid: Vec<IdRange>,
    pub gid: Vec<IdRange>,
    /// `ridmap`, or `rbind` without `idmap`: the submounts are idmapped too.
    pub recursive: bool,
    /// Mapped through the pod's user namespace (a bind mount of a pod under
    /// `user_namespace = "pod"`), not through a namespace of its own.
    pub pod: bool,
}

/// Reads the idmappings of config.json's mounts (empty when none has any).
pub fn parse(config: &[u8]) -> Result<Vec<MountIdmap>, IdmapError> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(default)]
        mounts: Vec<RawMount>,
    }
    #[derive(Deserialize)]
    struct RawMount {
        #[serde(default, rename = "type")]
        typ: Option<String>,
        #[serde(default)]
        options: Option<Vec<String>>,
        #[serde(default, rename = "uidMappings")]
        uid: Option<Vec<IdRange>>,
        #[serde(default, rename = "gidMappings")]
        gid: Option<Vec<IdRange>>,
    }
    let raw: Raw = serde_json::from_slice(config).map_err(|e| IdmapError::Invalid {
        index: 0,
        reason: format!("uidMappings/gidMappings: {e}"),
    })?;
    let mut out = Vec::new();
    for (index, m) in raw.mounts.into_iter().enumerate() {
        let uid = m.uid.unwrap_or_default();
        let gid = m.gid.unwrap_or_default();
        let opts = m.options.unwrap_or_default();
        let has = |o: &str| opts.iter().any(|x| x == o);
        let asked = has("idmap") || has("ridmap");
        if uid.is_empty() && gid.is_empty() && !asked {
            continue;
        }
        let bad = |reason: &str| IdmapError::Invalid {
            index,
            reason: reason.to_string(),
        };
        if uid.is_empty() || gid.is_empty() {
            return Err(bad(
                "an idmapped mount needs both uidMappings and gidMappings",
            ));
        }
        let bind = m.typ.as_deref() == Some("bind") || has("bind") || has("rbind");
        if !bind {
            return Err(bad("only bind mounts can be idmapped"));
        }
        for (what, ranges) in [("uidMappings", &uid), ("gidMappings", &gid)] {
            for (i, r) in ranges.iter().enumerate() {
                let field = format!("{what}[{i}]");
                crate::ids::check_range(&field, r.container_id, r.host_id, r.size)
                    .map_err(|e| bad(&e.to_string()))?;
            }
        }
        let recursive = has("ridmap") || (has("rbind") && !has("idmap"));
        out.push(MountIdmap {
            index,
            uid,
            gid,
            recursive,
            pod: false,
        });
    }
    Ok(out)
}

/// Makes the detached idmapped mount of each `maps` entry; `source` gives the host
/// path of a mount's source; `pod` is the pod's user namespace, for the entries mapped
/// through it. Returns (mount index, mount fd).
pub fn prepare(
    maps: &[MountIdmap],
    source: impl Fn(usize) -> Option<PathBuf>,
    pod: Option<BorrowedFd<'_>>,
) -> Result<Vec<(usize, OwnedFd)>, IdmapError> {
    let mut out = Vec::new();
    for m in maps {
        let src = source(m.index).ok_or_else(|| IdmapError::Invalid {
            index: m.index,
            reason: "an idmapped mount needs a source".into(),
        })?;
        let sys = |what: &'static str| {
            let src = src.clone();
            move |error| IdmapError::Sys {
                source_path: src,
                what,
                error,
            }
        };
        let own;
        let userns = match (m.pod, pod) {
            (true, Some(ns)) => ns,
            _ => {
                own =
                    userns_with(&m.uid, &m.gid).map_err(sys("user namespace with the mappings"))?;
                own.as_fd()
            }
        };
        out.push((
            m.index,
            tree(&src, m.recursive, userns).map_err(sys("idmap"))?,
        ));
    }
    Ok(out)
}

/// A detached copy of the tree at `src` (with its submounts if `recursive`), idmapped
/// through `userns`.
pub fn tree(src: &Path, recursive: bool, userns: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    let what = |w: &str| {
        let w = w.to_string();
        move |e: std::io::Error| std::io::Error::new(e.kind(), format!("{w}: {e}"))
    };
    let tree = open_tree(src, recursive).map_err(what("open_tree"))?;
    set_idmap(&tree, userns, recursive).map_err(what("mount_setattr(MOUNT_ATTR_IDMAP)"))?;
    Ok(tree)
}

/// A detached copy of the tree at `src` (with its submounts if `recursive`), not idmapped.
pub fn clone_tree(src: &Path, recursive: bool) -> std::io::Result<OwnedFd> {
    open_tree(src, recursive)
}

/// A detached copy of what `at` names, with its submounts: no path looked up again.
pub fn clone_tree_at(at: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    let flags = libc::AT_RECURSIVE as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    open_tree_raw(at.as_raw_fd(), c"", flags)
}

/// A user namespace with these mappings: a child cloned into it waits while we write its
/// maps and open a descriptor of it, then exits; the namespace lives on in the descriptor.
pub(crate) fn userns_with(uid: &[IdRange], gid: &[IdRange]) -> std::io::Result<OwnedFd> {
    let (wait, release) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let child = process::clone_waiting(libc::CLONE_NEWUSER, wait.as_raw_fd())?;
    let pid = child.pid();
    let result = (|| {
        let text = |r: &[IdRange]| {
            r.iter()
                .map(|r| format!("{} {} {}\n", r.container_id, r.host_id, r.size))
                .collect::<String>()
        };
        std::fs::write(format!("/proc/{pid}/uid_map"), text(uid))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), text(gid))?;
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
        Ok(OwnedFd::from(ns))
    })();
    // The last write end closes: the child reads end-of-file and exits.
    drop(release);
    let _ = child.wait();
    result
}

const OPEN_TREE_CLONE: libc::c_uint = 1;

fn open_tree(src: &Path, recursive: bool) -> std::io::Result<OwnedFd> {
    let path = std::ffi::CString::new(src.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let flags = if recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    open_tree_raw(libc::AT_FDCWD, &path, flags)
}

/// open_tree(2) with OPEN_TREE_CLONE | O_CLOEXEC and `flags`.
fn open_tree_raw(
    dirfd: i32,
    path: &std::ffi::CStr,
    flags: libc::c_uint,
) -> std::io::Result<OwnedFd> {
    let flags = flags | OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    // SAFETY: open_tree(2) with a NUL-terminated path that outlives the call; a
    // non-negative result is a new descriptor owned by nobody else.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn set_idmap(tree: &OwnedFd, userns: BorrowedFd<'_>, recursive: bool) -> std::io::Result<()> {
    use crate::mount::{attr, mount_setattr};
    mount_setattr(
        tree.as_raw_fd(),
        recursive,
        attr::IDMAP,
        0,
        Some(userns.as_raw_fd()),
    )
}

/// Attaches the detached mount `tree` on `target` (an O_PATH descriptor).
pub fn attach(tree: i32, target: i32) -> std::io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    // SAFETY: move_mount(2) with two descriptors and empty NUL-terminated paths.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree,
            c"".as_ptr(),
            target,
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The namespace has the maps written, and its holder child is gone. Needs root;
    /// skipped otherwise.
    #[test]
    fn a_made_namespace_has_its_maps_and_no_holder_left() {
        use std::os::unix::process::CommandExt;
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let uid = [IdRange {
            container_id: 0,
            host_id: 300_000,
            size: 65536,
        }];
        let gid = [IdRange {
            container_id: 0,
            host_id: 400_000,
            size: 1000,
        }];
        let ns = userns_with(&uid, &gid).unwrap();
        // The holder has exited: no process is in the namespace.
        let st = nix::sys::stat::fstat(ns.as_raw_fd()).unwrap();
        assert!(!crate::userns_pool::userns_in_use((st.st_dev, st.st_ino)));
        let fd = ns.as_raw_fd();
        let mut cmd = std::process::Command::new("cat");
        cmd.args(["/proc/self/uid_map", "/proc/self/gid_map"]);
        // SAFETY: setns(2) only, in the forked child before exec: async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWUSER) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [["0", "300000", "65536"], ["0", "400000", "1000"]],
            "{text}"
        );
    }

    #[test]
    fn mappings_are_read_and_checked() {
        let m = parse(
            br#"{"mounts":[{"destination":"/a","type":"bind","source":"/s","options":["rbind"]},
                {"destination":"/b","type":"bind","source":"/s","options":["rbind","idmap"],
                 "uidMappings":[{"containerID":0,"hostID":1000,"size":1}],
                 "gidMappings":[{"containerID":0,"hostID":1000,"size":1}]}]}"#,
        )
        .unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].index, m[0].recursive), (1, false));
        assert_eq!(m[0].uid[0].host_id, 1000);
        let e = parse(
            br#"{"mounts":[{"destination":"/b","type":"tmpfs","options":["idmap"],
                 "uidMappings":[{"containerID":0,"hostID":1,"size":1}],
                 "gidMappings":[{"containerID":0,"hostID":1,"size":1}]}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "config.json: mounts[0]: only bind mounts can be idmapped"
        );
        let e = parse(
            br#"{"mounts":[{"destination":"/b","type":"bind","source":"/s",
                 "uidMappings":[{"containerID":0,"hostID":1,"size":1}]}]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("both uidMappings and gidMappings"),
            "{e}"
        );
        let e = parse(
            br#"{"mounts":[{"destination":"/b","type":"bind","source":"/s","options":["idmap"],
                 "uidMappings":[{"containerID":0,"hostID":1,"size":1}],
                 "gidMappings":[{"containerID":4294967295,"hostID":1,"size":1}]}]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("mounts[0]: gidMappings[0].containerID + size - 1: 4294967295"),
            "{e}"
        );
    }
}
