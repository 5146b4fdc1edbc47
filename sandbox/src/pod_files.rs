//! The files a pod's containers share when the shim is the pod's sandbox: hostname,
//! hosts, resolv.conf and a /dev/shm tmpfs, made under the sandbox's bundle and bound
//! into every container whose spec does not mount them itself — what containerd's CRI
//! makes for a pause-container pod (`setupSandboxFiles`), which it leaves to the
//! sandboxer for `sandboxer = "shim"`.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{Mount, MountBuilder};

use crate::holder::{PodConfig, Sharing};

/// Errors making the pod's files.
#[derive(Debug, thiserror::Error)]
pub enum PodFilesError {
    #[error("pod config: {0}")]
    Invalid(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("mount the pod's /dev/shm on {path}: {errno}")]
    Shm { path: PathBuf, errno: nix::Error },
    #[error("pod mount: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PodFilesError + 'a {
    move |source| PodFilesError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The size of the pod's /dev/shm, as containerd's CRI makes it (64 MiB).
const SHM_OPTIONS: &str = "mode=1777,size=65536k";

/// The pod's shared files, in one directory.
#[derive(Debug, Clone)]
pub struct PodFiles {
    dir: PathBuf,
    /// The tmpfs mounted for /dev/shm, or the host's /dev/shm (pod on the node's ipc).
    shm: PathBuf,
    shm_mounted: bool,
}

/// A line of resolv.conf must stay one line.
fn one_line(what: &str, v: &str) -> Result<(), PodFilesError> {
    if v.is_empty() || v.contains(['\n', '\r', '\0']) {
        return Err(PodFilesError::Invalid(format!(
            "{what} {v:?} is empty or spans lines"
        )));
    }
    Ok(())
}

/// resolv.conf from a pod's DNS config, as containerd writes it (`parseDNSOptions`);
/// `None` when the pod gives none (then the host's is copied).
pub fn resolv_conf(pod: &PodConfig) -> Result<Option<String>, PodFilesError> {
    for (what, list) in [
        ("dns server", &pod.dns_servers),
        ("dns search", &pod.dns_searches),
        ("dns option", &pod.dns_options),
    ] {
        for v in list {
            one_line(what, v)?;
        }
    }
    let mut out = String::new();
    if !pod.dns_searches.is_empty() {
        out.push_str(&format!("search {}\n", pod.dns_searches.join(" ")));
    }
    for s in &pod.dns_servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !pod.dns_options.is_empty() {
        out.push_str(&format!("options {}\n", pod.dns_options.join(" ")));
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The pod's hostname: the config's, else the node's (as CRI does); checked to be a
/// single name a kernel accepts (at most 64 bytes, no '/' or line break).
pub fn hostname(pod: &PodConfig) -> Result<String, PodFilesError> {
    let h = if pod.hostname.is_empty() {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        pod.hostname.clone()
    };
    if h.len() > 64 || h.contains(['/', '\n', '\r', '\0']) {
        return Err(PodFilesError::Invalid(format!(
            "hostname {h:?} is longer than 64 bytes or has '/' or a line break"
        )));
    }
    Ok(h)
}

impl PodFiles {
    /// Makes the files in `dir` (created): hostname, hosts (the node's, as CRI copies it),
    /// resolv.conf and the /dev/shm tmpfs (the node's /dev/shm for a pod on the node's
    /// ipc namespace). Whatever was made is removed again on failure.
    pub fn make(dir: &Path, pod: &PodConfig) -> Result<PodFiles, PodFilesError> {
        let resolv = resolv_conf(pod)?;
        let host = hostname(pod)?;
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        let mut files = PodFiles {
            dir: dir.to_path_buf(),
            shm: PathBuf::from("/dev/shm"),
            shm_mounted: false,
        };
        if let Err(e) = files.fill(pod, &host, resolv.as_deref()) {
            files.remove();
            return Err(e);
        }
        Ok(files)
    }

    fn fill(
        &mut self,
        pod: &PodConfig,
        host: &str,
        resolv: Option<&str>,
    ) -> Result<(), PodFilesError> {
        let write = |name: &str, body: &[u8]| {
            let p = self.dir.join(name);
            std::fs::write(&p, body).map_err(io("write", &p))
        };
        write("hostname", format!("{host}\n").as_bytes())?;
        let node_file = |p: &str| std::fs::read(p).map_err(io("read", Path::new(p)));
        write("hosts", &node_file("/etc/hosts")?)?;
        match resolv {
            Some(r) => write("resolv.conf", r.as_bytes())?,
            None => write("resolv.conf", &node_file("/etc/resolv.conf")?)?,
        }
        if pod.ipc != Sharing::Node {
            let shm = self.dir.join("shm");
            std::fs::create_dir_all(&shm).map_err(io("create", &shm))?;
            mount(
                Some("shm"),
                &shm,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(SHM_OPTIONS),
            )
            .map_err(|errno| PodFilesError::Shm {
                path: shm.clone(),
                errno,
            })?;
            self.shm = shm;
            self.shm_mounted = true;
        }
        Ok(())
    }

    /// The bind mounts every container of the pod gets (unless its spec has its own).
    pub fn mounts(&self) -> Result<Vec<Mount>, PodFilesError> {
        let bind = |dest: &str, source: PathBuf, extra: &[&str]| {
            let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
            options.extend(extra.iter().map(|s| s.to_string()));
            MountBuilder::default()
                .destination(dest)
                .typ("bind")
                .source(source)
                .options(options)
                .build()
        };
        Ok(vec![
            bind("/etc/hostname", self.dir.join("hostname"), &["rw"])?,
            bind("/etc/hosts", self.dir.join("hosts"), &["rw"])?,
            bind("/etc/resolv.conf", self.dir.join("resolv.conf"), &["rw"])?,
            bind(
                "/dev/shm",
                self.shm.clone(),
                &["rw", "nosuid", "nodev", "noexec"],
            )?,
        ])
    }

    /// Unmounts the /dev/shm tmpfs and removes the directory (best effort: logged).
    pub fn remove(&self) {
        if self.shm_mounted {
            if let Err(e) = umount2(&self.shm, MntFlags::MNT_DETACH) {
                log::warn!("unmount the pod's /dev/shm {}: {e}", self.shm.display());
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("remove the pod's files {}: {e}", self.dir.display());
            }
        }
    }
}

/// Removes the pod's files in `dir` that a dead shim left (its /dev/shm tmpfs unmounted
/// first): the cleanup `delete` does when the shim is gone.
pub fn remove_dead(dir: &Path) {
    if !dir.exists() {
        return;
    }
    let shm = dir.join("shm");
    // Not a mount point (EINVAL) or already gone: nothing to do.
    let _ = umount2(&shm, MntFlags::MNT_DETACH);
    if let Err(e) = std::fs::remove_dir_all(dir) {
        log::warn!("remove the pod's files {}: {e}", dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_as_containerd_writes_it() {
        let mut p = PodConfig::default();
        assert_eq!(resolv_conf(&p).unwrap(), None);
        p.dns_servers = vec!["10.96.0.10".into(), "10.96.0.11".into()];
        p.dns_searches = vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()];
        p.dns_options = vec!["ndots:5".into()];
        assert_eq!(
            resolv_conf(&p).unwrap().unwrap(),
            "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\n\
             nameserver 10.96.0.11\noptions ndots:5\n"
        );
        p.dns_servers.push("1.1.1.1\nnameserver 6.6.6.6".into());
        assert!(resolv_conf(&p).is_err(), "a value may not add lines");
    }

    #[test]
    fn hostnames_are_checked() {
        let mut p = PodConfig {
            hostname: "web-0".into(),
            ..Default::default()
        };
        assert_eq!(hostname(&p).unwrap(), "web-0");
        p.hostname = "a/b".into();
        assert!(hostname(&p).is_err());
        p.hostname = "x".repeat(65);
        assert!(hostname(&p).is_err());
    }

    #[test]
    fn files_and_mounts_without_a_tmpfs() {
        // The node's ipc: no tmpfs to mount, so this runs without privileges too.
        let dir = std::env::temp_dir().join(format!("mypod-podfiles-{}", std::process::id()));
        let p = PodConfig {
            hostname: "h1".into(),
            ipc: Sharing::Node,
            dns_servers: vec!["10.0.0.1".into()],
            ..Default::default()
        };
        let f = PodFiles::make(&dir, &p).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("hostname")).unwrap(),
            "h1\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("resolv.conf")).unwrap(),
            "nameserver 10.0.0.1\n"
        );
        let m = f.mounts().unwrap();
        let dests: Vec<_> = m.iter().map(|m| m.destination().clone()).collect();
        assert_eq!(
            dests,
            [
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf",
                "/dev/shm"
            ]
            .map(PathBuf::from)
        );
        assert_eq!(m[3].source().as_deref(), Some(Path::new("/dev/shm")));
        f.remove();
        assert!(!dir.exists());
    }
}
