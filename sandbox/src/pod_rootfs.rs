//! The rootfs of a container in the pod's user namespace, seen through idmapped mounts.
//!
//! An overlay cannot be idmapped as a whole, and its upper layer cannot be either (the
//! overlay's own work files are made with the mounter's credentials, host root, which an
//! idmapped upper cannot name). So the overlay containerd describes is mounted by the
//! shim, as host root, on idmapped copies of its lower layers (passed to overlayfs as
//! `/proc/self/fd/N`): the image's files show their on-disk owners inside the pod. The
//! upper layer, the container's own and empty at first, stays as it is; what the
//! container writes there is stored under the pod's host ids, and the upper directory's
//! top (made by containerd, owned by host root) is given to the pod's root so that
//! container root owns `/` as it does without a user namespace. Nothing of the image is
//! chowned. Any other rootfs (a bind mount, a plain directory) is idmapped as a whole.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::mount::MountSpec;

/// containerd's overlay mounts with each lower layer replaced by an idmapped copy, and
/// the copies' descriptors (to keep open until the overlay is mounted). `None` when the
/// rootfs is not a single overlay mount.
pub fn overlay(
    mounts: &[MountSpec],
    userns: BorrowedFd<'_>,
    first: u32,
) -> std::io::Result<Option<(Vec<MountSpec>, Vec<OwnedFd>)>> {
    let [m] = mounts else {
        return Ok(None);
    };
    if m.typ != "overlay" {
        return Ok(None);
    }
    let mut keep = Vec::new();
    let mut options = Vec::with_capacity(m.options.len());
    for o in &m.options {
        if let Some(dirs) = o.strip_prefix("lowerdir=") {
            let mut fds = Vec::new();
            for dir in dirs.split(':').filter(|d| !d.is_empty()) {
                let tree = crate::idmap::tree(Path::new(dir), false, userns).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("lower layer {dir}: {e}"))
                })?;
                fds.push(format!("/proc/self/fd/{}", tree.as_raw_fd()));
                keep.push(tree);
            }
            options.push(format!("lowerdir={}", fds.join(":")));
        } else {
            if let Some(upper) = o.strip_prefix("upperdir=") {
                give_top_to_pod_root(Path::new(upper), first)?;
            }
            options.push(o.clone());
        }
    }
    Ok(Some((
        vec![MountSpec {
            typ: m.typ.clone(),
            source: m.source.clone(),
            options,
        }],
        keep,
    )))
}

/// The upper layer's top directory, owned by an id the pod cannot name (host root, as
/// containerd made it), goes to the same id inside the pod.
fn give_top_to_pod_root(upper: &Path, first: u32) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(upper)?;
    let inside = |id: u32| {
        id.checked_sub(first)
            .is_some_and(|d| d < crate::userns_pool::RANGE)
    };
    if inside(meta.uid()) && inside(meta.gid()) {
        return Ok(());
    }
    let map = |id: u32| {
        if id < crate::userns_pool::RANGE {
            first + id
        } else {
            first
        }
    };
    std::os::unix::fs::lchown(upper, Some(map(meta.uid())), Some(map(meta.gid()))).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("chown upper layer {}: {e}", upper.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_single_overlay_is_rewritten() {
        let f = std::fs::File::open("/").unwrap();
        let fd = std::os::fd::AsFd::as_fd(&f);
        let bind = MountSpec {
            typ: "bind".into(),
            source: "/x".into(),
            options: vec!["rbind".into()],
        };
        assert!(overlay(std::slice::from_ref(&bind), fd, 0x7000_0000)
            .unwrap()
            .is_none());
        assert!(overlay(&[], fd, 0x7000_0000).unwrap().is_none());
    }
}
