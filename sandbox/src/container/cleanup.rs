//! Kill and delete: signalling every process, destroying a container (processes,
//! rootfs, cgroup, poststop hooks), undoing a create that failed half way, and cleaning
//! up after a container whose shim died.

use std::path::{Path, PathBuf};

use super::{cgroups_path, rootfs_path, Container, ContainerError};
use crate::cgroup::freezer;
use crate::cgroup::{Cgroup, Layout};
use crate::hooks;
use crate::mount;
use crate::spec;

/// Resources taken during create, released if create fails half way.
#[derive(Default)]
pub(super) struct Partial {
    pub(super) mounted_rootfs: Option<PathBuf>,
    pub(super) cgroup: Option<Cgroup>,
    pub(super) pid: Option<i32>,
}

impl Partial {
    pub(super) fn undo(&mut self) {
        // The process the helper reported (`pid`) was born in the cgroup: killing
        // everything in it kills that process too, without trusting a pid that may have
        // been reaped and reused meanwhile.
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.kill_all();
            if let Err(e) = cg.remove() {
                log::warn!("cleanup after failed create: {e}");
            }
        }
        if let Some(r) = self.mounted_rootfs.take() {
            if let Err(e) = mount::unmount_all(&r) {
                log::warn!("cleanup after failed create: {e}");
            }
        }
    }
}

impl Container {
    /// Signals every process in the container.
    pub fn signal_all(&self, sig: i32) -> Result<(), ContainerError> {
        self.cgroup.signal_all(sig)?;
        Ok(())
    }

    /// Kills what is left, unmounts the rootfs we mounted, removes the cgroup and runs the
    /// poststop hooks. Each step is tried whatever the one before did (as runc's destroy);
    /// the first failure is returned. Blocking; safe to call again after a failure.
    pub fn destroy(&mut self) -> Result<(), ContainerError> {
        let _ = self.init.signal(libc::SIGKILL);
        // Being destroyed: nobody is left to read what did not linger.
        drop(self.init.on_exit());
        // Frozen processes cannot die: thaw a paused container first.
        if freezer::is_frozen(&self.cgroup) {
            let _ = self.cgroup.signal_all(libc::SIGKILL);
            if let Err(e) = freezer::set_frozen(&self.cgroup, false) {
                log::warn!("thaw {} before destroying it: {e}", self.id);
            }
        }
        let mut first: Option<ContainerError> = None;
        let cgroup = self.cgroup.kill_all().and_then(|()| self.cgroup.remove());
        if let Err(e) = cgroup {
            first.get_or_insert(e.into());
        }
        if let Some(r) = self.mounted_rootfs.take() {
            if let Err(e) = mount::unmount_all(&r) {
                self.mounted_rootfs = Some(r);
                first.get_or_insert(e.into());
            }
        }
        if !self.poststop_done {
            self.poststop_done = true;
            // The container is gone whatever a poststop hook says: the runtime spec
            // asks for a warning and the next hook, not a failed delete.
            let state = self.state("stopped");
            for e in hooks::run_each(self.spec.hooks().as_ref(), hooks::Kind::Poststop, &state) {
                log::warn!("{}: {e}", self.id);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// The bundle file that says the container's cgroup is its own: written by Create once the
/// cgroup was found unused, before it is made.
const CGROUP_OWNED: &str = "mypod-cgroup-owned";

pub(super) fn mark_cgroup_owned(bundle: &Path) -> Result<(), ContainerError> {
    let path = bundle.join(CGROUP_OWNED);
    std::fs::write(&path, b"")
        .map_err(|e| ContainerError::Invalid(format!("write {}: {e}", path.display())))
}

/// Cleans up after a container whose shim died: kill, unmount, remove the cgroup. The
/// cgroup only if the bundle marks it as the container's own: a container refused at
/// Create (its cgroupsPath named a cgroup in use) must not have that cgroup killed here.
pub fn cleanup_dead(bundle: &Path, id: &str, layout: &Layout) -> Result<(), ContainerError> {
    let spec = spec::load(bundle)?;
    if !bundle.join(CGROUP_OWNED).exists() {
        if super::root_is_bundle_rootfs(&spec, bundle) {
            mount::unmount_all(&rootfs_path(&spec, bundle))?;
        }
        log::info!("{id}: its cgroup was never its own: left alone");
        return Ok(());
    }
    let cg = Cgroup::new(layout, &cgroups_path(&spec, id))?;
    if freezer::is_frozen(&cg) {
        let _ = cg.signal_all(libc::SIGKILL);
        let _ = freezer::set_frozen(&cg, false);
    }
    cg.kill_all()?;
    // Only where a snapshot may have been mounted (see `root_is_bundle_rootfs`).
    if super::root_is_bundle_rootfs(&spec, bundle) {
        mount::unmount_all(&rootfs_path(&spec, bundle))?;
    }
    cg.remove()?;
    Ok(())
}
