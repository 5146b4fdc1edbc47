//! The pod's user namespace (`[sandbox] user_namespace = "pod"`): one per pod, made by
//! the shim with the pod's first container and joined by every later container and exec.
//!
//! The shim takes a range of [`RANGE`] host ids from the host-wide pool
//! ([`crate::userns_pool`]), makes a user namespace mapping container ids `0..65536` to
//! it (a short-lived child is cloned into it; the shim writes its maps from outside and
//! keeps a descriptor), and keeps both for the pod's life. The same namespace
//! idmaps the rootfs and every bind mount (see `container/create.rs`), so files keep the
//! owners they have on disk and container root writes files owned by host root.
//!
//! The descriptors are close-on-exec and never placed in a container: a helper gets a
//! copy of the namespace's descriptor to join it, and setns(2) leaves nothing behind.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::idmap::IdRange;
use crate::policy::IdPool;
use crate::userns_pool::{Lease, Pool, PoolError, RANGE};

/// Where the pool's slot files live (a tmpfs: a reboot frees every range).
pub const POOL_DIR: &str = "/run/mypod/userns-pool";

/// Errors making the pod's user namespace.
#[derive(Debug, thiserror::Error)]
pub enum PodUsernsError {
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error(
        "{field} {id} is outside the pod's user namespace (ids 0..{RANGE}); runtime.toml \
         [sandbox] user_namespace = \"off\" runs containers without one"
    )]
    OutsidePod { field: String, id: u32 },
    #[error(
        "make the pod's user namespace (host ids {first}..{end}): {source}; \
         runtime.toml [sandbox] user_namespace = \"off\" turns pod user namespaces off",
        end = u64::from(*first) + u64::from(RANGE)
    )]
    Make { first: u32, source: std::io::Error },
}

/// A pod's user namespace and the range of host ids it maps to.
#[derive(Debug)]
pub struct PodUserns {
    _lease: Lease,
    first: u32,
    ns: OwnedFd,
}

impl PodUserns {
    /// Takes a range from `pool` and makes the namespace.
    pub fn create(pool: &Pool, hint: u64) -> Result<PodUserns, PodUsernsError> {
        let mut lease = pool.take(hint)?;
        let first = lease.first;
        let map = pod_map(first);
        let ns = crate::idmap::userns_with(&map, &map)
            .map_err(|source| PodUsernsError::Make { first, source })?;
        let st = nix::sys::stat::fstat(std::os::fd::AsRawFd::as_raw_fd(&ns)).map_err(|e| {
            PodUsernsError::Make {
                first,
                source: e.into(),
            }
        })?;
        lease
            .mark((st.st_dev, st.st_ino))
            .map_err(|source| PodUsernsError::Make { first, source })?;
        log::info!(
            "pod user namespace: container ids 0..{RANGE} are host ids {first}..{}",
            u64::from(first) + u64::from(RANGE)
        );
        Ok(PodUserns {
            _lease: lease,
            first,
            ns,
        })
    }

    /// The host id container id 0 maps to.
    pub fn first(&self) -> u32 {
        self.first
    }

    /// The namespace's mapping (the same for uids and gids).
    pub fn map(&self) -> Vec<IdRange> {
        pod_map(self.first)
    }

    /// The namespace.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.ns.as_fd()
    }
}

fn pod_map(first: u32) -> Vec<IdRange> {
    vec![IdRange {
        container_id: 0,
        host_id: first,
        size: RANGE,
    }]
}

/// The pod's user namespace, made on first use and shared by the pod's containers.
#[derive(Debug, Default)]
pub struct PodUsernsSlot(Mutex<Option<Arc<PodUserns>>>);

impl PodUsernsSlot {
    /// The pod's namespace, made now from `pool` if this is the first container asking.
    pub fn get_or_create(
        &self,
        pool: IdPool,
        hint: &str,
    ) -> Result<Arc<PodUserns>, PodUsernsError> {
        // One Create at a time makes it; a panic elsewhere leaves a usable value.
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ns) = slot.as_ref() {
            return Ok(ns.clone());
        }
        let pool = Pool {
            dir: PathBuf::from(POOL_DIR),
            start: pool.start,
            size: pool.size,
        };
        let ns = Arc::new(PodUserns::create(&pool, hash(hint))?);
        *slot = Some(ns.clone());
        Ok(ns)
    }

    /// The pod's namespace if it was made.
    pub fn get(&self) -> Option<Arc<PodUserns>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// FNV-1a: spreads pods over the pool's slots (not a security property).
fn hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Checks that the ids a process runs with exist in the pod's namespace.
pub fn check_user(prefix: &str, user: &oci_spec::runtime::User) -> Result<(), PodUsernsError> {
    match crate::ids::user_ids(prefix, user).find(|(_, id)| *id >= RANGE) {
        Some((field, id)) => Err(PodUsernsError::OutsidePod { field, id }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_outside_the_pod_range_are_named() {
        let mut u = oci_spec::runtime::User::default();
        u.set_uid(65535);
        u.set_gid(0);
        check_user("process.user", &u).unwrap();
        u.set_additional_gids(Some(vec![5, 65536]));
        let e = check_user("process.user", &u).unwrap_err().to_string();
        assert!(
            e.contains("process.user.additionalGids[1] 65536 is outside")
                && e.contains("user_namespace"),
            "{e}"
        );
    }

    #[test]
    fn hints_spread() {
        assert_ne!(hash("a"), hash("b"));
    }
}
