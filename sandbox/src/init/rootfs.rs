//! Building the container's root: propagation, the spec's mounts (targets resolved
//! inside the rootfs with openat2(RESOLVE_IN_ROOT), so symlinks cannot point a mount
//! outside), /dev, pivot_root, and a read-only root.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mknodat, Mode, SFlag};
use oci_spec::runtime::{LinuxDeviceType, Mount, Spec};

use super::attached::{self, fd_path, locked_flags, remount_bind, set_propagation, set_recursive};
use super::{Context, InitError};
use crate::mount::{mount_point_of, parse_options, propagation_flag};
use crate::wire::InitRequest;

const NONE: Option<&str> = None;

/// Default devices every container gets (path, major, minor), as runc does.
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Mounts everything and pivots into the rootfs; `before_pivot` runs once the mounts are
/// done, while the host's root is still reachable (the create hooks' moment).
///
/// `tree` is the rootfs idmapped for the pod's user namespace (made by the shim); it is
/// attached over the working directory, which the helper set to the rootfs before it
/// entered the user namespace.
pub fn prepare(
    req: &InitRequest,
    tree: Option<OwnedFd>,
    before_pivot: impl FnOnce() -> Result<(), InitError>,
) -> Result<(), InitError> {
    let spec = &req.spec;
    let root = &req.rootfs;
    let prop = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flag)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    // As runc: the whole tree gets the propagation asked for (rshared keeps every mount in
    // its host peer group, which a Bidirectional volume needs), but the mount holding the
    // rootfs is made private, so the rootfs bind below and every mount made on it (/proc,
    // /dev, the volumes) stay out of the host, and pivot_root accepts it.
    mount(NONE, "/", NONE, prop, NONE).ctx(|| "set propagation of /".into())?;
    if prop.contains(MsFlags::MS_SHARED) {
        let info = std::fs::read_to_string("/proc/self/mountinfo")
            .ctx(|| "read /proc/self/mountinfo".into())?;
        let holder = mount_point_of(root, &info).unwrap_or_else(|| PathBuf::from("/"));
        mount(NONE, &holder, NONE, MsFlags::MS_PRIVATE, NONE)
            .ctx(|| format!("make {} private", holder.display()))?;
    }
    let rootfd = match tree {
        Some(tree) => {
            let here = open_dir(Path::new("."))?;
            crate::idmap::attach(tree.as_raw_fd(), here.as_raw_fd())
                .ctx(|| format!("attach the idmapped rootfs over {}", root.display()))?;
            // The descriptor now names the root of the attached mount.
            tree
        }
        None => {
            mount(
                Some(root.as_path()),
                root.as_path(),
                NONE,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                NONE,
            )
            .ctx(|| format!("bind rootfs {}", root.display()))?;
            open_dir(root)?
        }
    };
    let mounts = spec.mounts().clone().unwrap_or_default();
    for (index, m) in mounts.iter().enumerate() {
        mount_one(&rootfd, req, index, m)?;
    }
    let dev_bound = mounts
        .iter()
        .any(|m| m.destination() == Path::new("/dev") && parse_options(opts(m)).bind);
    if !dev_bound {
        make_devices(&rootfd, spec)?;
    }
    if let Some(cwd) = spec.process().as_ref().map(|p| p.cwd()) {
        ensure(&rootfd, cwd, true).map_err(|e| match e {
            InitError::Sys { errno, .. } => InitError::Sys {
                what: format!("create cwd {} set in config.json", cwd.display()),
                errno,
            },
            e => e,
        })?;
    }
    nix::unistd::fchdir(rootfd.as_raw_fd()).ctx(|| format!("chdir {}", root.display()))?;
    before_pivot()?;
    pivot(&rootfd, root)?;
    dev_links();
    Ok(())
}

/// After masked/readonly paths: the rootfs propagation asked for and a read-only root.
pub fn finish(spec: &Spec) -> Result<(), InitError> {
    if let Some(p) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flag)
    {
        mount(NONE, "/", NONE, p, NONE).ctx(|| "set rootfsPropagation".into())?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        let flags = locked_flags("/") | MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(NONE, "/", NONE, flags, NONE).ctx(|| "remount rootfs read-only".into())?;
    }
    Ok(())
}

fn opts(m: &Mount) -> &[String] {
    m.options().as_deref().unwrap_or(&[])
}

fn open_dir(p: &Path) -> Result<OwnedFd, InitError> {
    let fd = nix::fcntl::open(
        p,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| format!("open {}", p.display()))?;
    // SAFETY: open just returned this fd; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `path` (absolute, as seen in the container) inside the rootfs.
fn open_in(root: &OwnedFd, path: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(root.as_raw_fd(), path, how)?;
    // SAFETY: openat2 just returned this fd; we are its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates `path` inside the rootfs (directories, and a file leaf unless `dir`) and
/// returns an O_PATH fd to it.
fn ensure(root: &OwnedFd, path: &Path, dir: bool) -> Result<OwnedFd, InitError> {
    if let Ok(fd) = open_in(root, path, OFlag::O_PATH) {
        return Ok(fd);
    }
    let mut cur = PathBuf::from("/");
    let comps: Vec<_> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    for (i, name) in comps.iter().enumerate() {
        let next = cur.join(name);
        let last = i + 1 == comps.len();
        if open_in(root, &next, OFlag::O_PATH).is_err() {
            let parent = open_in(root, &cur, OFlag::O_PATH | OFlag::O_DIRECTORY)
                .ctx(|| format!("open {} in rootfs", cur.display()))?;
            let r = if last && !dir {
                nix::fcntl::openat(
                    Some(parent.as_raw_fd()),
                    name.as_os_str(),
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o755),
                )
                .map(|fd| {
                    let _ = nix::unistd::close(fd);
                })
            } else {
                nix::sys::stat::mkdirat(
                    Some(parent.as_raw_fd()),
                    name.as_os_str(),
                    Mode::from_bits_truncate(0o755),
                )
            };
            match r {
                Ok(()) | Err(nix::Error::EEXIST) => {}
                Err(errno) => {
                    return Err(InitError::Sys {
                        what: format!("create mount point {} in rootfs", next.display()),
                        errno,
                    })
                }
            }
        }
        cur = next;
    }
    open_in(root, path, OFlag::O_PATH).ctx(|| format!("open {} in rootfs", path.display()))
}

fn mount_one(root: &OwnedFd, req: &InitRequest, index: usize, m: &Mount) -> Result<(), InitError> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(InitError::Invalid(format!(
            "mount destination {} is not absolute",
            dest.display()
        )));
    }
    let typ = m.typ().as_deref().unwrap_or("");
    let o = parse_options(opts(m));
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(root, req, dest, o.flags);
    }
    let source = m.source().clone().unwrap_or_default();
    let bind = o.bind || typ == "bind";
    let follows = o.rec_set | o.rec_clear != 0 || !o.propagation.is_empty();
    // The new mount, by descriptor (see [`attached`]), when something follows it.
    let mnt = if bind {
        let src = if source.is_absolute() {
            source.clone()
        } else {
            req.rootfs.parent().unwrap_or(Path::new("/")).join(&source)
        };
        let tree = req
            .idmapped
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, t)| t);
        // An idmapped source was opened by the shim: its path may not be searchable by
        // the container's ids (the pod's user namespace), the descriptor is.
        let is_dir = match tree {
            Some(t) => {
                // SAFETY: the shim placed this mount's descriptor on fd `t` for us; it
                // stays open for the borrow.
                let t = unsafe { std::os::fd::BorrowedFd::borrow_raw(*t) };
                nix::sys::stat::fstat(t.as_raw_fd())
                    .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
                    .ctx(|| format!("mount {} to {}: source", src.display(), dest.display()))?
            }
            None => std::fs::metadata(&src)
                .ctx(|| format!("mount {} to {}: source", src.display(), dest.display()))?
                .is_dir(),
        };
        let fd = ensure(root, dest, is_dir)?;
        let recursive = o.flags.contains(MsFlags::MS_REC);
        let mnt = if let Some(tree) = tree {
            // The shim made the idmapped copy of the source: attach it here.
            crate::idmap::attach(*tree, fd.as_raw_fd()).ctx(|| {
                format!(
                    "attach idmapped mount of {} to {}",
                    src.display(),
                    dest.display()
                )
            })?;
            // SAFETY: the shim placed this mount's descriptor on fd `tree` for this mount
            // alone; nothing else uses or closes it (it now names the attached mount).
            unsafe { OwnedFd::from_raw_fd(*tree) }
        } else {
            attached::bind(&src, recursive, &fd)
                .ctx(|| format!("bind mount {} to {}", src.display(), dest.display()))?
        };
        remount_bind(&mnt, dest, o.flags)?;
        Some(mnt)
    } else {
        let fd = ensure(root, dest, true)?;
        let data = (!o.data.is_empty()).then_some(o.data.as_str());
        let target = fd_path(&fd);
        // Something follows the mount: its path will be opened again, and checked.
        let before = follows.then(attached::mount_ids).transpose()?;
        let r = mount(
            Some(source.as_path()),
            target.as_str(),
            Some(typ),
            o.flags,
            data,
        );
        match r {
            Ok(()) => match before {
                Some(before) => {
                    let again = open_in(root, dest, OFlag::O_PATH)
                        .ctx(|| format!("reopen {}", dest.display()))?;
                    Some(attached::verified(again, &before, dest)?)
                }
                None => None,
            },
            // sysfs cannot be mounted without owning the network namespace: bind it.
            Err(nix::Error::EPERM) if typ == "sysfs" => {
                let mnt = attached::bind(Path::new("/sys"), true, &fd)
                    .ctx(|| format!("bind /sys to {}", dest.display()))?;
                remount_bind(&mnt, dest, o.flags)?;
                if o.flags.contains(MsFlags::MS_RDONLY) {
                    // The host's /sys, with its submounts: all of it read-only.
                    set_recursive(&mnt, dest, crate::mount::attr::RDONLY, 0)?;
                }
                Some(mnt)
            }
            Err(errno) => {
                return Err(InitError::Sys {
                    what: format!("mount {typ} {} to {}", source.display(), dest.display()),
                    errno,
                })
            }
        }
    };
    if let Some(mnt) = mnt {
        if o.rec_set | o.rec_clear != 0 {
            set_recursive(&mnt, dest, o.rec_set, o.rec_clear)?;
        }
        for p in &o.propagation {
            set_propagation(&mnt, dest, *p)?;
        }
    }
    Ok(())
}

/// /sys/fs/cgroup: on v1 a tmpfs with the container's directory of each hierarchy
/// bound in (as runc does); on v2 the container's own cgroup directory. Every step after
/// the first mount goes through the new mounts' descriptors (see [`attached`]).
fn mount_cgroup(
    root: &OwnedFd,
    req: &InitRequest,
    dest: &Path,
    flags: MsFlags,
) -> Result<(), InitError> {
    let fd = ensure(root, dest, true)?;
    let ro = flags & MsFlags::MS_RDONLY;
    let base = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if req.cgroup_v2 {
        if let Some((_, dir)) = req.cgroup_binds.first() {
            let mnt = attached::bind(dir, false, &fd)
                .ctx(|| format!("bind cgroup {} to {}", dir.display(), dest.display()))?;
            remount_bind(&mnt, dest, base | ro)?;
        }
        return Ok(());
    }
    use crate::mount::attr;
    let tmpfs = attached::tmpfs("755", attr::NOSUID | attr::NODEV | attr::NOEXEC, &fd)
        .ctx(|| format!("mount tmpfs on {}", dest.display()))?;
    for (name, dir) in &req.cgroup_binds {
        let sub = name.strip_prefix("name=").unwrap_or(name);
        if sub.is_empty() {
            continue;
        }
        let target = dest.join(sub);
        // Inside the tmpfs just made, which only this helper sees.
        let at = ensure(&tmpfs, Path::new(sub), true)?;
        attached::bind(dir, true, &at)
            .ctx(|| format!("bind cgroup {} to {}", dir.display(), target.display()))?;
        if sub.contains(',') {
            for c in sub.split(',') {
                let _ = nix::unistd::symlinkat(sub, Some(tmpfs.as_raw_fd()), c);
            }
        }
    }
    // The tmpfs and every hierarchy under it at once (one mount_setattr, not a remount per
    // bind): only sets flags, so the flags the host locked on the binds stay.
    attached::set_cgroup_flags(&tmpfs, dest, !ro.is_empty())
}

/// A device node to create in the container's /dev.
struct Node {
    path: PathBuf,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
}

fn make_devices(root: &OwnedFd, spec: &Spec) -> Result<(), InitError> {
    let mut devs: Vec<Node> = DEFAULT_DEVICES
        .iter()
        .map(|(p, major, minor)| Node {
            path: PathBuf::from(p),
            kind: SFlag::S_IFCHR,
            major: *major,
            minor: *minor,
            mode: 0o666,
            uid: None,
            gid: None,
        })
        .collect();
    for d in spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default()
    {
        let kind = match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(InitError::Invalid(format!(
                    "linux.devices: {} has type \"a\"",
                    d.path().display()
                )))
            }
        };
        devs.retain(|x| x.path != *d.path());
        devs.push(Node {
            path: d.path().clone(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666),
            uid: d.uid(),
            gid: d.gid(),
        });
    }
    for n in devs {
        make_node(root, &n)?;
    }
    Ok(())
}

fn make_node(root: &OwnedFd, n: &Node) -> Result<(), InitError> {
    let path = &n.path;
    let parent_path = path.parent().unwrap_or(Path::new("/"));
    ensure(root, parent_path, true)?;
    let parent = open_in(root, parent_path, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .ctx(|| format!("open {}", parent_path.display()))?;
    let name = path.file_name().unwrap_or_default();
    let dev = nix::sys::stat::makedev(n.major, n.minor);
    let mode = Mode::from_bits_truncate(n.mode as libc::mode_t);
    match mknodat(Some(parent.as_raw_fd()), name, n.kind, mode, dev) {
        Ok(()) | Err(nix::Error::EEXIST) => {}
        // In a user namespace mknod is refused: bind the host's node instead.
        Err(nix::Error::EPERM) => {
            let fd = ensure(root, path, false)?;
            mount(
                Some(path.as_path()),
                fd_path(&fd).as_str(),
                NONE,
                MsFlags::MS_BIND,
                NONE,
            )
            .ctx(|| format!("bind device {}", path.display()))?;
            return Ok(());
        }
        Err(errno) => {
            return Err(InitError::Sys {
                what: format!("mknod {}", path.display()),
                errno,
            })
        }
    }
    if n.uid.is_some() || n.gid.is_some() {
        nix::unistd::fchownat(
            Some(parent.as_raw_fd()),
            name,
            n.uid.map(nix::unistd::Uid::from_raw),
            n.gid.map(nix::unistd::Gid::from_raw),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ctx(|| format!("chown {}", path.display()))?;
    }
    Ok(())
}

fn pivot(rootfd: &OwnedFd, root: &Path) -> Result<(), InitError> {
    let old = nix::fcntl::open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ctx(|| "open /".into())?;
    // SAFETY: open just returned this fd; we are its only owner.
    let old = unsafe { OwnedFd::from_raw_fd(old) };
    nix::unistd::fchdir(rootfd.as_raw_fd()).ctx(|| format!("chdir {}", root.display()))?;
    nix::unistd::pivot_root(".", ".").ctx(|| format!("pivot_root {}", root.display()))?;
    nix::unistd::fchdir(old.as_raw_fd()).ctx(|| "fchdir old root".into())?;
    mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE)
        .ctx(|| "make old root rslave".into())?;
    umount2(".", MntFlags::MNT_DETACH).ctx(|| "unmount old root".into())?;
    nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    Ok(())
}

fn dev_links() {
    let links = [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
    ];
    for (target, link) in links {
        let _ = std::os::unix::fs::symlink(target, link);
    }
    if Path::new("/dev/pts/ptmx").exists() {
        let _ = std::fs::remove_file("/dev/ptmx");
        let _ = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx");
    }
    if Path::new("/proc/kcore").exists() {
        let _ = std::os::unix::fs::symlink("/proc/kcore", "/dev/core");
    }
}
