//! A mount just made, named by a descriptor rather than by its path.
//!
//! A mount's destination can lie in a volume that a running container of the pod shares:
//! between the mount and what follows it (a bind's `ro`, `nosuid`…, `rro`, propagation) that
//! container can rename the destination and put a symlink in its place. Looking the path up
//! again (even inside the rootfs, with RESOLVE_IN_ROOT) would then reach another mount — the
//! rootfs's own root, say — and leave the new one writable (runc's CVE-2021-30465 class). So
//! every follow-up goes through a descriptor of the new mount itself:
//! - a bind is made as a detached copy (`open_tree(OPEN_TREE_CLONE)`, or the shim's idmapped
//!   copy) attached with `move_mount`; the copy's descriptor then names the attached mount;
//! - the v1 cgroup tmpfs is made with `fsopen`/`fsmount`, likewise a descriptor;
//! - any other filesystem is mounted with mount(2), and only when something must follow is its
//!   path opened again: the mount reached must be the one mount(2) made (its id is the one id
//!   in the namespace's mountinfo that was not there before: no one else mounts in this
//!   namespace), else the container is refused.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::mount::{mount, MsFlags};

use super::{Context, InitError};
use crate::mount::{attr, mount_setattr};

const NONE: Option<&str> = None;

/// `/proc/self/fd/N`: the magic link resolves to exactly what the descriptor names.
pub fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Binds `src` (a path of the helper's, i.e. the host's view; with its submounts when
/// `recursive`) on `at` (an O_PATH descriptor of the mount point) and returns the new mount.
pub fn bind(src: &Path, recursive: bool, at: &OwnedFd) -> std::io::Result<OwnedFd> {
    let tree = crate::idmap::clone_tree(src, recursive)?;
    crate::idmap::attach(tree.as_raw_fd(), at.as_raw_fd())?;
    // The copy's descriptor now names the attached mount.
    Ok(tree)
}

/// Binds what `at` names (with its submounts) over itself and returns the new mount: one
/// lookup, the one that opened `at`.
pub fn bind_over(at: &OwnedFd) -> std::io::Result<OwnedFd> {
    use std::os::fd::AsFd;
    let tree = crate::idmap::clone_tree_at(at.as_fd())?;
    crate::idmap::attach(tree.as_raw_fd(), at.as_raw_fd())?;
    Ok(tree)
}

/// A tmpfs with `mode` and the `MOUNT_ATTR_*` bits `attrs`, attached on `at`; returns it.
pub fn tmpfs(mode: &str, attrs: u64, at: &OwnedFd) -> std::io::Result<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_SET_STRING: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    let mode = std::ffi::CString::new(mode).map_err(|_| errno(libc::EINVAL))?;
    // SAFETY: fsopen(2) with a NUL-terminated name; a non-negative result is a new
    // descriptor nothing else owns.
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), FSOPEN_CLOEXEC) };
    let fs = owned(fs)?;
    // SAFETY: fsconfig(2) on our descriptor with NUL-terminated key and value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            c"mode".as_ptr(),
            mode.as_ptr(),
            0,
        )
    };
    check(rc)?;
    // SAFETY: fsconfig(2) on our descriptor; CMD_CREATE takes no key or value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    check(rc)?;
    // SAFETY: fsmount(2) on our configured descriptor; the result is a new descriptor.
    let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) };
    let mnt = owned(mnt)?;
    crate::idmap::attach(mnt.as_raw_fd(), at.as_raw_fd())?;
    Ok(mnt)
}

fn errno(e: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(e)
}

fn check(rc: libc::c_long) -> std::io::Result<()> {
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn owned(fd: libc::c_long) -> std::io::Result<OwnedFd> {
    check(fd)?;
    let fd = i32::try_from(fd).map_err(|_| errno(libc::EBADF))?;
    // SAFETY: the system call just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Flags a bind remount must keep (the kernel refuses to clear them in a user namespace).
pub fn locked_flags(path: &str) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags;
    let f = st.flags();
    let mut m = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if f.contains(fs) {
            m |= ms;
        }
    }
    m
}

/// Remounts the bind mount `mnt` (at `dest`, for messages) with the flags asked for, as
/// mount(2) with MS_BIND|MS_REMOUNT does: the per-mount flags not asked for are cleared,
/// unless the kernel has them locked.
pub fn remount_bind(mnt: &OwnedFd, dest: &Path, flags: MsFlags) -> Result<(), InitError> {
    let extra = flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if extra.is_empty() {
        return Ok(());
    }
    let target = fd_path(mnt);
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra;
    match mount(NONE, target.as_str(), NONE, base, NONE) {
        Ok(()) => Ok(()),
        Err(nix::Error::EPERM) => {
            let flags = base | locked_flags(&target);
            mount(NONE, target.as_str(), NONE, flags, NONE)
                .ctx(|| format!("remount {} with {extra:?}", dest.display()))
        }
        Err(errno) => Err(InitError::Sys {
            what: format!("remount {} with {extra:?}", dest.display()),
            errno,
        }),
    }
}

/// Applies recursive mount options (`rro`…) to `mnt` and every mount below it, with
/// mount_setattr(2) (Linux 5.12), as runc does.
pub fn set_recursive(mnt: &OwnedFd, dest: &Path, set: u64, clear: u64) -> Result<(), InitError> {
    mount_setattr(mnt.as_raw_fd(), true, set, clear, None).map_err(|e| {
        let hint = if e.raw_os_error() == Some(libc::ENOSYS) {
            " (recursive mount options need Linux 5.12)"
        } else {
            ""
        };
        InitError::Io {
            what: format!("recursive mount options (rro…) on {}{hint}", dest.display()),
            source: e,
        }
    })
}

/// Sets the cgroup mounts' flags: `mnt` and every mount below it.
pub fn set_cgroup_flags(mnt: &OwnedFd, dest: &Path, read_only: bool) -> Result<(), InitError> {
    let mut set = attr::NOSUID | attr::NODEV | attr::NOEXEC;
    if read_only {
        set |= attr::RDONLY;
    }
    mount_setattr(mnt.as_raw_fd(), true, set, 0, None).ctx(|| {
        format!(
            "set the flags of the cgroup mounts under {}",
            dest.display()
        )
    })
}

/// Changes the propagation of `mnt`.
pub fn set_propagation(mnt: &OwnedFd, dest: &Path, p: MsFlags) -> Result<(), InitError> {
    mount(NONE, fd_path(mnt).as_str(), NONE, p, NONE)
        .ctx(|| format!("set propagation of {}", dest.display()))
}

/// The ids of this namespace's mounts.
pub fn mount_ids() -> Result<HashSet<u64>, InitError> {
    // thread-self: a thread's mount namespace can be its own (the tests').
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo")
        .ctx(|| "read /proc/thread-self/mountinfo".into())?;
    Ok(ids_of(&info))
}

fn ids_of(mountinfo: &str) -> HashSet<u64> {
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The mount id `/proc/self/fdinfo` gives for `fd`.
fn mount_id_of(fd: &OwnedFd) -> Result<u64, InitError> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .ctx(|| "read the mount id of a descriptor".into())?;
    info.lines()
        .find_map(|l| l.strip_prefix("mnt_id:")?.trim().parse().ok())
        .ok_or_else(|| InitError::Invalid("no mnt_id in /proc/self/fdinfo".into()))
}

/// `reopened` (the path of a mount just made, opened again) if it names a new mount: one
/// whose id was not among `before`. Only this helper mounts in its namespace (a host mount
/// that propagates in meanwhile is not under a path a container can swap), so what a
/// swapped path reaches instead is a mount that was there before.
pub fn verified(
    reopened: OwnedFd,
    before: &HashSet<u64>,
    dest: &Path,
) -> Result<OwnedFd, InitError> {
    let id = mount_id_of(&reopened)?;
    if !before.contains(&id) && mount_ids()?.contains(&id) {
        return Ok(reopened);
    }
    Err(InitError::Invalid(format!(
        "mount destination {} changed while it was being mounted (a path in a shared volume \
         replaced?): refused",
        dest.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_ids_are_the_first_field() {
        let info = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    1043 22 0:5 / /dev rw - devtmpfs udev rw\n";
        assert_eq!(ids_of(info), HashSet::from([22, 1043]));
    }

    /// Runs `f` on a thread of its own, in a mount namespace of its own (private).
    fn in_own_mount_ns<T: Send + 'static>(
        f: impl FnOnce() -> Result<T, String> + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T, String>> {
        std::thread::spawn(move || {
            let e = |x: nix::Error| format!("own mount namespace: {x}");
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(e)?;
            mount(NONE, "/", NONE, MsFlags::MS_PRIVATE | MsFlags::MS_REC, NONE).map_err(e)?;
            f()
        })
    }

    /// The attack: a container sharing the volume renames the new mount's destination and
    /// puts a symlink to `/` in its place before the follow-up. The read-only remount must
    /// still land on the new mount, and not on what the path now reaches. Needs root; runs
    /// in a thread of its own mount namespace; skipped otherwise.
    #[test]
    fn a_swapped_destination_does_not_divert_the_read_only_remount() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("mypod-attached-{}", std::process::id()));
        let (made, swap) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let run = {
            let dir = dir.clone();
            let (made, swapped) = (made.0, swap.1);
            move || -> Result<(bool, bool), String> {
                let e = |w: &str| {
                    let w = w.to_string();
                    move |x: nix::Error| format!("{w}: {x}")
                };
                let (root, vol, src) = (dir.join("root"), dir.join("root/data"), dir.join("src"));
                for d in [&vol, &src] {
                    std::fs::create_dir_all(d).map_err(|x| x.to_string())?;
                }
                // The rootfs and the shared volume, as mounts of their own.
                for d in [&root, &vol] {
                    mount(Some(d), d, NONE, MsFlags::MS_BIND, NONE).map_err(e("bind"))?;
                }
                std::fs::create_dir(vol.join("x")).map_err(|x| x.to_string())?;
                let at =
                    OwnedFd::from(std::fs::File::open(vol.join("x")).map_err(|x| x.to_string())?);
                let mnt = bind(&src, false, &at).map_err(|x| x.to_string())?;
                // The other container's move (from its own mount namespace: here the
                // kernel refuses to rename a mount point), between the mount and its
                // follow-up.
                made.send(()).map_err(|x| x.to_string())?;
                swapped.recv().map_err(|x| x.to_string())?;
                remount_bind(
                    &mnt,
                    Path::new("/data/x"),
                    MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                )
                .map_err(|x| x.to_string())?;
                let writable = |p: &Path| std::fs::write(p.join("probe"), b"1").is_ok();
                Ok((writable(&vol.join("y")), writable(&root)))
            }
        };
        let t = in_own_mount_ns(run);
        if made.1.recv().is_ok() {
            let vol = dir.join("root/data");
            std::fs::rename(vol.join("x"), vol.join("y")).unwrap();
            std::os::unix::fs::symlink("/", vol.join("x")).unwrap();
            swap.0.send(()).unwrap();
        }
        let r = t.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let (bind_writable, root_writable) = r.unwrap();
        assert!(
            !bind_writable,
            "the read-only bind stayed writable at its new path"
        );
        assert!(root_writable, "the remount reached the rootfs instead");
    }

    /// A mount made with mount(2), its path opened again: accepted; the directory under it
    /// (what a swapped path would reach): refused. Needs root, as above.
    #[test]
    fn a_reopened_path_is_accepted_only_if_it_reaches_the_new_mount() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("mypod-reopen-{}", std::process::id()));
        let run = {
            let dir = dir.clone();
            move || -> Result<(bool, bool), String> {
                let e = |x: nix::Error| x.to_string();
                std::fs::create_dir_all(&dir).map_err(|x| x.to_string())?;
                let under = OwnedFd::from(std::fs::File::open(&dir).map_err(|x| x.to_string())?);
                let before = mount_ids().map_err(|x| x.to_string())?;
                mount(Some("tmpfs"), &dir, Some("tmpfs"), MsFlags::empty(), NONE).map_err(e)?;
                let again = OwnedFd::from(std::fs::File::open(&dir).map_err(|x| x.to_string())?);
                let new_ok = verified(again, &before, &dir).is_ok();
                let old_ok = verified(under, &before, &dir).is_ok();
                Ok((new_ok, old_ok))
            }
        };
        let r = in_own_mount_ns(run).join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(r.unwrap(), (true, false));
    }

    #[test]
    fn a_descriptor_has_a_mount_id_and_it_is_mounted() {
        let fd = OwnedFd::from(std::fs::File::open("/").unwrap());
        let id = mount_id_of(&fd).unwrap();
        assert!(mount_ids().unwrap().contains(&id));
        // The same mount, not new: refused.
        let before = mount_ids().unwrap();
        assert!(verified(fd, &before, Path::new("/x")).is_err());
    }
}
