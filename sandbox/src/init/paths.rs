//! Hostname, sysctls, masked and read-only paths.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::Spec;

use super::namespaces::Plan;
use super::{Context, InitError};

const NONE: Option<&str> = None;

/// Sets hostname and domainname; both need a private UTS namespace.
pub fn hostname(spec: &Spec, plan: &Plan) -> Result<(), InitError> {
    let host = spec.hostname().as_deref().filter(|h| !h.is_empty());
    let domain = spec.domainname().as_deref().filter(|h| !h.is_empty());
    if (host.is_some() || domain.is_some()) && !plan.new_uts() {
        return Err(InitError::Invalid(
            "config.json: hostname/domainname need a new uts namespace".into(),
        ));
    }
    if let Some(h) = host {
        nix::unistd::sethostname(h).ctx(|| format!("sethostname {h:?}"))?;
    }
    if let Some(d) = domain {
        // SAFETY: the pointer and length describe `d`, which outlives the call.
        let r = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
        if r != 0 {
            return Err(InitError::Sys {
                what: format!("setdomainname {d:?}"),
                errno: nix::Error::last(),
            });
        }
    }
    Ok(())
}

/// Which of linux.sysctl [`sysctls`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sysctls {
    All,
    /// `net.*` only (the helper, in a joined network namespace, before it enters the
    /// user namespace).
    Net,
    /// All but `net.*` (written already).
    NotNet,
}

/// Writes linux.sysctl under /proc/sys (`/proc/sys/net` is the writer's network
/// namespace's).
pub fn sysctls(spec: &Spec, which: Sysctls) -> Result<(), InitError> {
    let Some(map) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in map {
        let net = key.starts_with("net.") || key.starts_with("net/");
        let wanted = match which {
            Sysctls::All => true,
            Sysctls::Net => net,
            Sysctls::NotNet => !net,
        };
        if !wanted {
            continue;
        }
        if key.is_empty() || key.split(['.', '/']).any(|c| c.is_empty() || c == "..") {
            return Err(InitError::Invalid(format!(
                "linux.sysctl: invalid key {key:?}"
            )));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).ctx(|| format!("linux.sysctl: set {key}={value}"))?;
    }
    Ok(())
}

/// In the pod's user namespace, container root cannot open raw sockets in a network
/// namespace it does not own (CRI's): unless the spec decides, ICMP echo sockets are opened
/// to every group of the pod's network namespace (net.ipv4.ping_group_range, as
/// containerd 2.x sets it by default), so that `ping` works as it does under runc. Only a
/// namespace still at the kernel's default ("1 0": nobody) is changed.
pub fn default_ping_group_range(spec: &Spec) -> Result<(), InitError> {
    const KEY: &str = "net.ipv4.ping_group_range";
    let set = spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .is_some_and(|m| m.contains_key(KEY));
    let path = "/proc/sys/net/ipv4/ping_group_range";
    let Ok(now) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let now: Vec<&str> = now.split_whitespace().collect();
    if set || now != ["1", "0"] {
        return Ok(());
    }
    std::fs::write(path, "0 2147483647").ctx(|| format!("set {KEY} for the pod's user namespace"))
}

/// Masks linux.maskedPaths (/dev/null over files, an empty read-only tmpfs over
/// directories) and makes linux.readonlyPaths read-only. Missing paths are skipped.
pub fn masked_and_readonly(spec: &Spec) -> Result<(), InitError> {
    let Some(linux) = spec.linux().as_ref() else {
        return Ok(());
    };
    for p in linux.readonly_paths().iter().flatten() {
        readonly(p)?;
    }
    for p in linux.masked_paths().iter().flatten() {
        mask(p)?;
    }
    Ok(())
}

fn readonly(p: &str) -> Result<(), InitError> {
    if !Path::new(p).exists() {
        return Ok(());
    }
    // Bound over itself and remounted through the new mount's descriptor, never its path
    // again (see super::attached).
    let at = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(p)
        .map(std::os::fd::OwnedFd::from)
        .ctx(|| format!("open readonly path {p}"))?;
    let mnt = super::attached::bind_over(&at).ctx(|| format!("bind readonly path {p}"))?;
    let target = super::attached::fd_path(&mnt);
    // Keep the mount's own nosuid/nodev/noexec (a locked flag cannot be dropped) and add
    // nothing else, as runc does: a read-only /bin must stay executable.
    let keep = nix::sys::statvfs::statvfs(target.as_str())
        .map(|st| {
            use nix::sys::statvfs::FsFlags;
            let f = st.flags();
            let mut m = MsFlags::empty();
            m.set(MsFlags::MS_NOSUID, f.contains(FsFlags::ST_NOSUID));
            m.set(MsFlags::MS_NODEV, f.contains(FsFlags::ST_NODEV));
            m.set(MsFlags::MS_NOEXEC, f.contains(FsFlags::ST_NOEXEC));
            m
        })
        .ctx(|| format!("statfs readonly path {p}"))?;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep;
    mount(NONE, target.as_str(), NONE, flags, NONE).ctx(|| format!("remount readonly path {p}"))
}

fn mask(p: &str) -> Result<(), InitError> {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(_) => return Ok(()),
    };
    if meta.is_dir() {
        mount(Some("tmpfs"), p, Some("tmpfs"), MsFlags::MS_RDONLY, NONE)
            .ctx(|| format!("mask directory {p}"))
    } else {
        mount(Some("/dev/null"), p, NONE, MsFlags::MS_BIND, NONE).ctx(|| format!("mask file {p}"))
    }
}
