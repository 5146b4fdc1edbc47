//! Joining namespaces by path and creating new ones, user namespace first.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, FromRawFd};
use std::path::PathBuf;

use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::{fork, ForkResult, Gid, Uid};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use super::{Context, InitError};

/// The clone flag of a namespace type.
pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// Which namespaces to join (opened up front, before any setns changes our view of
/// /proc) and which to create.
///
/// Order: every namespace given by path except the user namespace is joined first,
/// while this process is still root of the host's user namespace (a CRI network
/// namespace belongs to the host's, and setns(2) into it needs the host's
/// CAP_SYS_ADMIN); then the user namespace is joined or created; then the rest is
/// created, owned by that user namespace.
pub struct Plan {
    join: Vec<(CloneFlags, File, PathBuf)>,
    /// The user namespace to join (by path, or the pod's by fd).
    user: Option<(File, PathBuf)>,
    new: CloneFlags,
    uid_maps: Vec<LinuxIdMapping>,
    gid_maps: Vec<LinuxIdMapping>,
    userns: bool,
}

impl Plan {
    /// Opens every namespace path the spec names; `pod_userns` is the fd of the pod's
    /// user namespace to join (the spec then has none of its own).
    pub fn new(spec: &Spec, pod_userns: Option<i32>) -> Result<Plan, InitError> {
        let mut join = Vec::new();
        let mut user = None;
        let mut new = CloneFlags::empty();
        let mut userns = false;
        for (typ, path) in crate::spec::namespaces(spec) {
            let f = flag(typ);
            userns |= typ == LinuxNamespaceType::User;
            match path {
                Some(p) => {
                    let file = File::open(&p)
                        .ctx(|| format!("open {typ} namespace path {}", p.display()))?;
                    if typ == LinuxNamespaceType::User {
                        user = Some((file, p));
                    } else {
                        join.push((f, file, p));
                    }
                }
                None => new |= f,
            }
        }
        if let Some(fd) = pod_userns {
            // SAFETY: the shim placed the pod's user namespace on this fd for us alone.
            let file = unsafe { File::from_raw_fd(fd) };
            user = Some((file, PathBuf::from("the pod's user namespace")));
            new -= CloneFlags::CLONE_NEWUSER;
            userns = true;
        }
        let linux = spec.linux().as_ref();
        Ok(Plan {
            join,
            user,
            new,
            uid_maps: linux
                .and_then(|l| l.uid_mappings().clone())
                .unwrap_or_default(),
            gid_maps: linux
                .and_then(|l| l.gid_mappings().clone())
                .unwrap_or_default(),
            userns,
        })
    }

    /// Joins every namespace of `pid` that differs from ours (exec into a container).
    /// `pid` must still be the container's init, started at `start_time` (checked after its
    /// namespaces are opened: a pid reused since names a process whose namespaces, a
    /// host process's the same as ours, must not be joined).
    pub fn of_process(pid: i32, start_time: Option<u64>) -> Result<Plan, InitError> {
        use std::os::unix::fs::MetadataExt;
        let mut join = Vec::new();
        let mut user = None;
        let mut userns = false;
        // Mount last of those joined by `join` (it changes our root); the user namespace
        // after them all (see [`Plan`]).
        for (name, typ) in [
            ("user", LinuxNamespaceType::User),
            ("cgroup", LinuxNamespaceType::Cgroup),
            ("ipc", LinuxNamespaceType::Ipc),
            ("uts", LinuxNamespaceType::Uts),
            ("net", LinuxNamespaceType::Network),
            ("pid", LinuxNamespaceType::Pid),
            ("mnt", LinuxNamespaceType::Mount),
        ] {
            let path = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
            let theirs = std::fs::metadata(&path)
                .ctx(|| format!("container process {pid} is gone ({})", path.display()))?;
            let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))
                .ctx(|| format!("read /proc/self/ns/{name}"))?;
            if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
                continue;
            }
            let file = File::open(&path).ctx(|| format!("open {}", path.display()))?;
            if typ == LinuxNamespaceType::User {
                userns = true;
                user = Some((file, path));
            } else {
                join.push((flag(typ), file, path));
            }
        }
        let gone = || InitError::Invalid(format!("container process {pid} is gone"));
        let same = match start_time {
            Some(t) => crate::process::start_time(pid) == Some(t),
            // Not known: at least a container's own mount namespace (only a container
            // host_access allowed to join the runtime's has none, and it has a start time).
            None => join.iter().any(|(f, _, _)| *f == CloneFlags::CLONE_NEWNS),
        };
        if !same {
            return Err(gone());
        }
        Ok(Plan {
            join,
            user,
            new: CloneFlags::empty(),
            uid_maps: Vec::new(),
            gid_maps: Vec::new(),
            userns,
        })
    }

    /// setns() into every namespace given by path, except the user namespace.
    pub fn join(&self) -> Result<(), InitError> {
        for (f, file, path) in &self.join {
            setns(file.as_fd(), *f).ctx(|| format!("join namespace {}", path.display()))?;
        }
        Ok(())
    }

    /// Joins the user namespace given by path (or the pod's), or creates the new one.
    /// After a join this process is root in it (uid and gid 0 when mapped, so that what
    /// it creates has owners the namespace can name) with every capability there.
    pub fn enter_user(&self) -> Result<(), InitError> {
        if let Some((file, path)) = &self.user {
            setns(file.as_fd(), CloneFlags::CLONE_NEWUSER)
                .ctx(|| format!("join user namespace {}", path.display()))?;
            let zero = (Gid::from_raw(0), Uid::from_raw(0));
            match nix::unistd::setresgid(zero.0, zero.0, zero.0)
                .and_then(|()| nix::unistd::setresuid(zero.1, zero.1, zero.1))
            {
                // 0 not mapped there: the process's own ids are set later all the same.
                Ok(()) | Err(nix::Error::EINVAL) => {}
                Err(errno) => {
                    return Err(InitError::Sys {
                        what: format!("become root of user namespace {}", path.display()),
                        errno,
                    })
                }
            }
        } else if self.new_user() {
            self.enter_new_userns()?;
        }
        Ok(())
    }

    /// Whether the network namespace is joined (not new): with a user namespace, it
    /// belongs to another user namespace, and the helper sets its sysctls before it
    /// enters the user namespace.
    pub fn joins_net(&self) -> bool {
        self.join
            .iter()
            .any(|(f, _, _)| *f == CloneFlags::CLONE_NEWNET)
    }

    /// Whether a new user namespace is requested.
    pub fn new_user(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUSER)
    }

    /// Whether the container runs in a user namespace (new or joined).
    pub fn in_userns(&self) -> bool {
        self.userns
    }

    /// Whether a new mount namespace is requested.
    pub fn new_mount(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWNS)
    }

    /// Whether a new UTS namespace is requested.
    pub fn new_uts(&self) -> bool {
        self.new.contains(CloneFlags::CLONE_NEWUTS)
    }

    /// Forks; the child unshares a user namespace, the parent writes its id maps from
    /// outside and exits. Returns in the child, root in the new namespace.
    fn enter_new_userns(&self) -> Result<(), InitError> {
        let (mut ready_r, mut ready_w) = pipe()?;
        let (mut go_r, mut go_w) = pipe()?;
        // SAFETY: single-threaded process (freshly exec'd, checked at the start of
        // init's `run`, no thread started since): the child may do anything.
        match unsafe { fork() }.ctx(|| "fork for user namespace".into())? {
            ForkResult::Parent { child } => {
                drop(ready_w);
                drop(go_r);
                let mut b = [0u8; 1];
                if ready_r.read(&mut b).ok() != Some(1) {
                    // The child failed and reported it.
                    // SAFETY: _exit ends this process without running anything else.
                    unsafe { libc::_exit(1) }
                }
                let pid = child.as_raw();
                write_map(pid, "uid_map", &self.uid_maps)?;
                write_map(pid, "gid_map", &self.gid_maps)?;
                go_w.write_all(b"g")
                    .ctx(|| "signal user namespace child".into())?;
                // SAFETY: _exit ends this process without running anything else.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Child => {
                drop(ready_r);
                drop(go_w);
                unshare(CloneFlags::CLONE_NEWUSER).ctx(|| "create user namespace".into())?;
                ready_w
                    .write_all(b"r")
                    .ctx(|| "signal id map writer".into())?;
                let mut b = [0u8; 1];
                if go_r.read(&mut b).ok() != Some(1) {
                    return Err(InitError::Invalid(
                        "user namespace id maps were not written".into(),
                    ));
                }
                nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
                    .ctx(|| "setresgid(0) in user namespace".into())?;
                nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
                    .ctx(|| "setresuid(0) in user namespace".into())?;
                Ok(())
            }
        }
    }

    /// Creates the remaining new namespaces (the pid one takes effect for children).
    pub fn unshare_rest(&self) -> Result<(), InitError> {
        let rest = self.new - CloneFlags::CLONE_NEWUSER;
        if !rest.is_empty() {
            unshare(rest).ctx(|| format!("unshare namespaces {rest:?}"))?;
        }
        Ok(())
    }
}

fn pipe() -> Result<(File, File), InitError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
    Ok((File::from(r), File::from(w)))
}

fn write_map(pid: i32, file: &str, maps: &[LinuxIdMapping]) -> Result<(), InitError> {
    let text: String = maps
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect();
    std::fs::write(format!("/proc/{pid}/{file}"), text)
        .ctx(|| format!("write {file} for the user namespace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that now names another process (a host process, after the container's init
    /// was reaped and its number reused) is not joined.
    #[test]
    fn a_process_without_a_mount_namespace_of_its_own_is_not_joined() {
        let me = std::process::id() as i32;
        let err = Plan::of_process(me, None).err().map(|e| e.to_string());
        assert_eq!(err, Some(format!("container process {me} is gone")));
        let then = crate::process::start_time(me).unwrap();
        assert!(
            Plan::of_process(me, Some(then + 1)).is_err(),
            "another start time"
        );
        assert!(Plan::of_process(me, Some(then)).is_ok(), "the same process");
    }
}
