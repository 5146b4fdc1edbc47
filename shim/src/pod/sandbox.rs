//! The pod as containerd 2.x's sandbox (`sandboxer = "shim"`): CreateSandbox makes the
//! pod's files and its holder ([`mypod_sandbox::holder`], a container of the pod's table
//! under the sandbox id that containerd never hears of as a task); the other verbs act on
//! that holder. Every container created afterwards gets the pod's files.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mypod_sandbox::holder::{self, PodConfig};
use mypod_sandbox::pod_files::PodFiles;
use mypod_sandbox::ExitStatus;
use oci_spec::runtime::Mount;

use super::types::{CreateRequest, Status};
use super::{Pod, Result};
use crate::error::ServiceError;

/// The directory of the holder's (empty) root, in the sandbox's bundle.
const HOLDER_ROOT: &str = "holder";
/// The directory of the pod's files, in the sandbox's bundle.
pub const POD_FILES: &str = "pod";

/// Whether `spec` (a bundle's config.json) is the holder's that CreateSandbox wrote for
/// sandbox `id`: its root is the holder's and it names `id` as its own sandbox.
pub fn is_sandbox_bundle(spec: &oci_spec::runtime::Spec, id: &str) -> bool {
    let root = spec.root().as_ref().map(|r| r.path().as_path());
    let own = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::group::SANDBOX_ID))
        .is_some_and(|s| s == id);
    root == Some(Path::new(HOLDER_ROOT)) && own
}

/// The sandbox this shim is, once created.
pub struct SandboxState {
    id: String,
    bundle: PathBuf,
    files: PodFiles,
    mounts: Vec<Mount>,
    created_at: SystemTime,
    /// The pod's cgroup parent (CRI's pod-level cgroup), for SandboxMetrics.
    cgroup_parent: String,
    /// The pod's config, for the spec StartSandbox reports.
    config: PodConfig,
}

/// What SandboxStatus reports.
#[derive(Debug, Clone)]
pub struct SandboxStatus {
    pub id: String,
    pub pid: i32,
    /// The holder runs (`SANDBOX_READY`); otherwise `SANDBOX_NOTREADY`.
    pub ready: bool,
    pub created_at: SystemTime,
    pub exited_at: Option<SystemTime>,
}

fn invalid(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::InvalidArgument(e.to_string())
}

/// Removes what CreateSandbox wrote into the bundle (best effort).
fn remove_bundle_files(bundle: &Path) {
    let _ = std::fs::remove_file(bundle.join("config.json"));
    let _ = std::fs::remove_dir_all(bundle.join(HOLDER_ROOT));
}

impl Pod {
    /// The mounts every container of the pod gets: the pod's files once it is a sandbox.
    pub(super) fn pod_mounts(&self) -> Vec<Mount> {
        self.sandbox_lock()
            .as_ref()
            .map(|s| s.mounts.clone())
            .unwrap_or_default()
    }

    fn sandbox_lock(&self) -> std::sync::MutexGuard<'_, Option<SandboxState>> {
        self.sandbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sandbox's id, checked against `id`.
    fn sandbox_id(&self, id: &str) -> Result<String> {
        match self.sandbox_lock().as_ref() {
            Some(s) if s.id == id => Ok(s.id.clone()),
            Some(s) => Err(ServiceError::NotFound(format!(
                "sandbox {id}: this shim is sandbox {}",
                s.id
            ))),
            None => Err(ServiceError::NotFound(format!("sandbox {id}: not created"))),
        }
    }

    /// CreateSandbox: the pod's files under `bundle`, then the holder, created (not
    /// started). A failure leaves nothing behind.
    pub async fn create_sandbox(&self, id: &str, bundle: &Path, pod: PodConfig) -> Result<()> {
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        /// Clears the flag however the creation ends.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, SeqCst);
            }
        }
        // One at a time: a second CreateSandbox while the first awaits must not clean up
        // the files the first one made. The flag first, then what a finished one left.
        if self.sandbox_creating.swap(true, SeqCst) {
            return Err(ServiceError::AlreadyExists(format!("sandbox {id}")));
        }
        let _done = Done(&self.sandbox_creating);
        if self.sandbox_lock().is_some() || self.pid(id).is_some() {
            return Err(ServiceError::AlreadyExists(format!("sandbox {id}")));
        }
        self.create_sandbox_now(id, bundle, pod).await
    }

    async fn create_sandbox_now(&self, id: &str, bundle: &Path, mut pod: PodConfig) -> Result<()> {
        pod.id = id.to_string();
        let spec = holder::spec(&pod, HOLDER_ROOT).map_err(invalid)?;
        let dir = bundle.join(POD_FILES);
        let files = {
            let pod = pod.clone();
            tokio::task::spawn_blocking(move || PodFiles::make(&dir, &pod))
                .await
                .map_err(|e| ServiceError::Internal(format!("sandbox {id}: {e}")))?
                .map_err(invalid)?
        };
        let made = (|| -> std::result::Result<Vec<Mount>, String> {
            let mounts = files.mounts().map_err(|e| e.to_string())?;
            std::fs::create_dir_all(bundle.join(HOLDER_ROOT)).map_err(|e| e.to_string())?;
            spec.save(bundle.join("config.json"))
                .map_err(|e| e.to_string())?;
            Ok(mounts)
        })();
        let mounts = match made {
            Ok(m) => m,
            Err(e) => {
                files.remove();
                remove_bundle_files(bundle);
                return Err(ServiceError::Internal(format!(
                    "sandbox {id}: write the holder's bundle: {e}"
                )));
            }
        };
        *self.events.quiet.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.to_string());
        let req = CreateRequest {
            id: id.to_string(),
            bundle: bundle.to_string_lossy().into_owned(),
            ..Default::default()
        };
        if let Err(e) = self.create_with(req, true).await {
            *self.events.quiet.lock().unwrap_or_else(|p| p.into_inner()) = None;
            files.remove();
            remove_bundle_files(bundle);
            return Err(e);
        }
        *self.sandbox_lock() = Some(SandboxState {
            id: id.to_string(),
            bundle: bundle.to_path_buf(),
            files,
            mounts,
            created_at: SystemTime::now(),
            cgroup_parent: pod.cgroup_parent.clone(),
            config: pod,
        });
        log::info!("created sandbox {id}");
        Ok(())
    }

    /// StartSandbox: starts the holder; its pid, the sandbox's creation time and the pod
    /// as an OCI spec ([`holder::pod_spec`]; `None`, logged, if it cannot be made).
    pub async fn start_sandbox(
        &self,
        id: &str,
    ) -> Result<(i32, SystemTime, Option<oci_spec::runtime::Spec>)> {
        self.sandbox_id(id)?;
        let pid = self.start(id, "").await?;
        let guard = self.sandbox_lock();
        let created = guard
            .as_ref()
            .map_or_else(SystemTime::now, |s| s.created_at);
        let spec = guard.as_ref().and_then(|s| {
            holder::pod_spec(&s.config, pid, s.mounts.clone())
                .inspect_err(|e| log::warn!("sandbox {id}: no spec for containerd: {e}"))
                .ok()
        });
        Ok((pid, created, spec))
    }

    /// SandboxStatus: the holder's pid and whether it runs.
    pub fn sandbox_status(&self, id: &str) -> Result<SandboxStatus> {
        self.sandbox_id(id)?;
        let st = self.state(id, "")?;
        let created_at = self
            .sandbox_lock()
            .as_ref()
            .map_or_else(SystemTime::now, |s| s.created_at);
        Ok(SandboxStatus {
            id: id.to_string(),
            pid: st.pid,
            ready: st.status == Status::Running || st.status == Status::Paused,
            created_at,
            exited_at: st.exit.map(|x| x.at),
        })
    }

    /// WaitSandbox: resolves when the holder has exited.
    pub async fn wait_sandbox(&self, id: &str) -> Result<ExitStatus> {
        self.sandbox_id(id)?;
        self.wait(id, "").await
    }

    /// StopSandbox: the holder is killed (it holds nothing worth a grace period) and its
    /// exit awaited, at most `timeout` (10 s when 0).
    pub async fn stop_sandbox(&self, id: &str, timeout: Duration) -> Result<()> {
        self.sandbox_id(id)?;
        if self.state(id, "")?.exit.is_none() {
            // Already gone between the two looks: the wait below returns at once.
            let _ = self.kill(id, "", libc::SIGKILL as u32, true);
        }
        let timeout = if timeout.is_zero() {
            Duration::from_secs(10)
        } else {
            timeout
        };
        match tokio::time::timeout(timeout, self.wait(id, "")).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(ServiceError::Internal(format!(
                "sandbox {id}: the pod holder did not exit within {timeout:?} of SIGKILL"
            ))),
        }
    }

    /// SandboxMetrics: the statistics of the pod's cgroup (its parent, which holds every
    /// container of the pod), or of the holder's when the pod has no parent.
    pub async fn sandbox_stats(&self, id: &str) -> Result<mypod_sandbox::cgroup::stats::Stats> {
        self.sandbox_id(id)?;
        let parent = self
            .sandbox_lock()
            .as_ref()
            .map(|s| s.cgroup_parent.clone())
            .unwrap_or_default();
        if parent.is_empty() {
            return self.stats(id).await;
        }
        let cg = mypod_sandbox::cgroup::Cgroup::new(&self.layout, &parent)
            .map_err(|e| ServiceError::Internal(format!("sandbox {id}: {e}")))?;
        tokio::task::spawn_blocking(move || mypod_sandbox::Container::stats(&cg))
            .await
            .map_err(|e| ServiceError::Internal(format!("sandbox {id}: {e}")))
    }

    /// ShutdownSandbox: the holder stopped and removed, the pod's files removed, any
    /// container left torn down; then the shim exits.
    pub async fn shutdown_sandbox(&self, id: &str) -> Result<()> {
        if self.sandbox_lock().is_none() {
            // CreateSandbox failed (and cleaned up) or never came: containerd's cleanup
            // still ends the shim this way.
            log::info!("sandbox {id} was never made: shim exits");
            self.destroy_all().await;
            self.exit.notify_one();
            return Ok(());
        }
        self.sandbox_id(id)?;
        if self.state(id, "").is_ok_and(|s| s.exit.is_none()) {
            self.stop_sandbox(id, Duration::from_secs(10)).await?;
        }
        if self.pid(id).is_some() {
            self.delete(id, "").await?;
        }
        let state = self.sandbox_lock().take();
        if let Some(s) = state {
            let (files, bundle) = (s.files, s.bundle);
            let _ = tokio::task::spawn_blocking(move || {
                files.remove();
                remove_bundle_files(&bundle);
            })
            .await;
        }
        self.destroy_all().await;
        log::info!("sandbox {id} shut down: shim exits");
        self.exit.notify_one();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_holders_own_bundle_is_a_sandbox_bundle() {
        let pod = PodConfig {
            id: "sb1".into(),
            netns: Some("/var/run/netns/cni-1".into()),
            ..Default::default()
        };
        let spec = holder::spec(&pod, HOLDER_ROOT).unwrap();
        assert!(is_sandbox_bundle(&spec, "sb1"));
        assert!(!is_sandbox_bundle(&spec, "c1"), "a container of the pod");
        let mut other = spec.clone();
        other.set_root(Some(
            oci_spec::runtime::RootBuilder::default()
                .path(POD_FILES)
                .build()
                .unwrap(),
        ));
        assert!(
            !is_sandbox_bundle(&other, "sb1"),
            "a container whose rootfs is `pod`"
        );
    }
}
