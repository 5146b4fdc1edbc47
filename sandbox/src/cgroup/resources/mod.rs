//! Applying `linux.resources` to a container's cgroup: the entry points ([`validate`],
//! [`apply`], [`unapplied`]), the error type and the writes common to v1 and v2 (cpuset,
//! pids, hugetlb, rdma, unified). The controller files that differ live in `v1` and, with
//! the conversions runc uses (cpu shares → cpu.weight, blkio weight → io.weight,
//! memory+swap → memory.swap.max), in `v2`. Used at Create and by Update.
//!
//! Semantics follow runc: a value of 0 means "not set" for memory, cpu and pids; -1 means
//! unlimited. Values are checked before anything is written, so bad input fails with an
//! error naming the field; what the kernel still refuses fails with an error naming the
//! file and the value (`memory.limit_in_bytes = 4096: device or resource busy`).
//! Device rules are applied by [`crate::cgroup::Cgroup::apply_devices`].

mod v1;
mod v2;
mod validate;

#[cfg(test)]
mod fake;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxHugepageLimit, LinuxRdma, LinuxResources, LinuxThrottleDevice,
};

use super::placement::Cgroup;

pub use v2::{blkio_weight_to_io_weight, shares_to_weight, swap_to_v2};
pub use validate::validate;

/// Errors applying resource limits.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// The kernel refused a value.
    #[error("{file} = {value}: {reason} (cgroup {dir})")]
    Write {
        file: String,
        value: String,
        reason: String,
        dir: PathBuf,
    },
    /// A file that had to be read could not be.
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A value the spec must not hold.
    #[error("linux.resources.{field} = {value}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// A field this host's cgroups cannot honour.
    #[error("linux.resources.{field}: {reason}")]
    Unsupported { field: String, reason: String },
}

type Result<T> = std::result::Result<T, ResourceError>;

/// An errno as the kernel's text, lower-cased: "invalid argument".
fn reason(e: &std::io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    };
    let mut c = text.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => text,
    }
}

/// Writes `value` to `dir/file`.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    log::debug!("cgroup {}: {file} = {value}", dir.display());
    fs::write(dir.join(file), value).map_err(|e| ResourceError::Write {
        file: file.to_string(),
        value: value.to_string(),
        reason: reason(&e),
        dir: dir.to_path_buf(),
    })
}

fn read(dir: &Path, file: &str) -> Result<String> {
    let path = dir.join(file);
    fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|source| ResourceError::Read { path, source })
}

/// What of `r` is not applied by [`apply`] on this cgroup (for a warning).
pub fn unapplied(cg: &Cgroup, r: &LinuxResources) -> Vec<String> {
    let mut out = Vec::new();
    let need = |out: &mut Vec<String>, field: &str, controller: &str| {
        if cg.controller_dir(controller).is_none() {
            out.push(format!("{field} (no {controller} hierarchy)"));
        }
    };
    if r.memory().is_some() {
        need(&mut out, "memory", "memory");
    }
    if r.cpu().is_some() {
        need(&mut out, "cpu", "cpu");
    }
    if r.pids().is_some() {
        need(&mut out, "pids", "pids");
    }
    if r.block_io().is_some() {
        need(&mut out, "blockIO", if cg.v2 { "io" } else { "blkio" });
    }
    if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
        need(&mut out, "hugepageLimits", "hugetlb");
    }
    if let Some(n) = r.network() {
        if cg.v2 {
            out.push("network (no net_cls/net_prio on cgroup v2)".into());
        } else {
            if n.class_id().is_some() {
                need(&mut out, "network.classID", "net_cls");
            }
            if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                need(&mut out, "network.priorities", "net_prio");
            }
        }
    }
    if r.rdma().as_ref().is_some_and(|h| !h.is_empty()) {
        need(&mut out, "rdma", "rdma");
    }
    if let Some(m) = r.memory() {
        if m.kernel().is_some_and(|k| k != 0) {
            out.push("memory.kernel (deprecated; ignored as runc does)".into());
        }
        if cg.v2 {
            if m.swappiness().is_some() {
                out.push("memory.swappiness (no cgroup v2 equivalent)".into());
            }
            if m.disable_oom_killer() == Some(true) {
                out.push("memory.disableOOMKiller (no cgroup v2 equivalent)".into());
            }
            if m.kernel_tcp().is_some_and(|k| k != 0) {
                out.push("memory.kernelTCP (no cgroup v2 equivalent)".into());
            }
        }
    }
    out
}

/// Applies `r` (all but device rules) to `cg`. Fields that are absent are left as they
/// are, so the same call serves Create and Update.
pub fn apply(cg: &Cgroup, r: &LinuxResources) -> Result<()> {
    validate(r, cg.v2)?;
    let v2 = cg.v2;
    // cpuset first (as runc does on v1): the kernel alone knows which cpus and mems exist, so
    // this is the write an Update most likely fails on, and failing before any other file is
    // written leaves the container's limits as they were.
    if let (Some(c), Some(dir)) = (r.cpu(), cg.controller_dir("cpuset")) {
        if let Some(cpus) = c.cpus().as_ref().filter(|s| !s.is_empty()) {
            write(dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = c.mems().as_ref().filter(|s| !s.is_empty()) {
            write(dir, "cpuset.mems", mems)?;
        }
    }
    if let (Some(m), Some(dir)) = (r.memory(), cg.controller_dir("memory")) {
        if v2 {
            v2::memory(dir, m)?;
        } else {
            v1::memory(dir, m)?;
        }
    }
    if let (Some(c), Some(dir)) = (r.cpu(), cg.controller_dir("cpu")) {
        if v2 {
            v2::cpu(dir, c)?;
        } else {
            v1::cpu(dir, c)?;
        }
    }
    if let (Some(p), Some(dir)) = (r.pids(), cg.controller_dir("pids")) {
        if p.limit() != 0 {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            write(dir, "pids.max", &v)?;
        }
    }
    if let Some(b) = r.block_io() {
        if v2 {
            if let Some(dir) = cg.controller_dir("io") {
                v2::io(dir, b)?;
            }
        } else if let Some(dir) = cg.controller_dir("blkio") {
            v1::blkio(dir, b)?;
        }
    }
    if let (Some(h), Some(dir)) = (r.hugepage_limits(), cg.controller_dir("hugetlb")) {
        hugetlb(dir, h, v2)?;
    }
    if !v2 {
        if let Some(n) = r.network() {
            v1::network(cg, n)?;
        }
    }
    if let (Some(rd), Some(dir)) = (r.rdma(), cg.controller_dir("rdma")) {
        rdma(dir, rd)?;
    }
    if let Some(u) = r.unified() {
        if v2 {
            if let Some(dir) = cg.controller_dir("") {
                let mut keys: Vec<_> = u.iter().collect();
                keys.sort();
                for (k, v) in keys {
                    write(dir, k, v)?;
                }
            }
        }
    }
    Ok(())
}

fn throttles(
    b: &LinuxBlockIo,
) -> [(
    &'static str,
    &'static str,
    &Option<Vec<LinuxThrottleDevice>>,
); 4] {
    [
        (
            "blkio.throttle.read_bps_device",
            "rbps",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            "wbps",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            "riops",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            "wiops",
            b.throttle_write_iops_device(),
        ),
    ]
}

fn hugetlb(dir: &Path, limits: &[LinuxHugepageLimit], v2: bool) -> Result<()> {
    for h in limits {
        let file = if v2 {
            format!("hugetlb.{}.max", h.page_size())
        } else {
            format!("hugetlb.{}.limit_in_bytes", h.page_size())
        };
        if !dir.join(&file).exists() {
            return Err(ResourceError::Unsupported {
                field: format!("hugepageLimits.pageSize {}", h.page_size()),
                reason: format!("this host has no {file}"),
            });
        }
        write(dir, &file, &h.limit().to_string())?;
    }
    Ok(())
}

fn rdma(dir: &Path, r: &HashMap<String, LinuxRdma>) -> Result<()> {
    let mut devs: Vec<_> = r.iter().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    for (dev, l) in devs {
        let f = |v: Option<u32>| v.map_or("max".to_string(), |v| v.to_string());
        write(
            dir,
            "rdma.max",
            &format!(
                "{dev} hca_handle={} hca_object={}",
                f(l.hca_handles()),
                f(l.hca_objects())
            ),
        )?;
    }
    Ok(())
}
