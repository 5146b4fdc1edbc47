//! Applying `linux.resources` to a container's cgroup: the v1 controller files, or the v2
//! files with the conversions runc uses (cpu shares → cpu.weight, blkio weight → io.weight,
//! memory+swap → memory.swap.max). Used at Create and by Update.
//!
//! Semantics follow runc: a value of 0 means "not set" for memory, cpu and pids; -1 means
//! unlimited. Values are checked before anything is written, so bad input fails with an
//! error naming the field; what the kernel still refuses fails with an error naming the
//! file and the value (`memory.limit_in_bytes = 4096: device or resource busy`).
//! Device rules are applied by [`crate::cgroup::Cgroup::apply_devices`].

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxRdma,
    LinuxResources, LinuxThrottleDevice,
};

use crate::cgroup::Cgroup;

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

// ---- conversions (runc's libcontainer/cgroups/utils.go) ----

/// cpu.shares (2..262144) to cpu.weight (1..10000); 0 stays "not set".
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// blkio.weight (10..1000) to io.weight (1..10000); 0 stays "not set".
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// The spec's memory+swap limit as v2's memory.swap.max (swap alone): -1 is "max", 0 is
/// "not set". Unlimited memory with no swap given means unlimited swap too.
pub fn swap_to_v2(swap: i64, memory: i64) -> std::result::Result<i64, String> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if memory == 0 || memory == -1 {
        return Err("a swap limit needs a memory limit".into());
    }
    if swap < memory {
        return Err(format!(
            "memory+swap ({swap}) must be at least the memory limit ({memory})"
        ));
    }
    Ok(swap - memory)
}

/// `-1` → "max" (v2) or "-1" (v1); a positive number as is.
fn limit_str(v: i64, v2: bool) -> String {
    if v < 0 && v2 {
        "max".into()
    } else {
        v.to_string()
    }
}

// ---- validation ----

fn check_bytes(field: &'static str, v: Option<i64>) -> Result<()> {
    match v {
        Some(v) if v < -1 => Err(ResourceError::Invalid {
            field,
            value: v.to_string(),
            reason: "must be -1 (unlimited), 0 (not set) or a number of bytes".into(),
        }),
        _ => Ok(()),
    }
}

/// Checks what can be checked without the kernel: negative limits, ranges.
pub fn validate(r: &LinuxResources, v2: bool) -> Result<()> {
    if let Some(m) = r.memory() {
        check_bytes("memory.limit", m.limit())?;
        check_bytes("memory.reservation", m.reservation())?;
        check_bytes("memory.swap", m.swap())?;
        check_bytes("memory.kernel", m.kernel())?;
        check_bytes("memory.kernelTCP", m.kernel_tcp())?;
        if let Some(s) = m.swappiness().filter(|s| *s > 100) {
            return Err(ResourceError::Invalid {
                field: "memory.swappiness",
                value: s.to_string(),
                reason: "must be 0 to 100".into(),
            });
        }
        if let (Some(l), Some(s)) = (m.limit(), m.swap()) {
            if l > 0 && s > 0 && s < l {
                return Err(ResourceError::Invalid {
                    field: "memory.swap",
                    value: s.to_string(),
                    reason: format!("memory+swap must be at least the memory limit ({l})"),
                });
            }
        }
        if v2 {
            swap_to_v2(m.swap().unwrap_or(0), m.limit().unwrap_or(0)).map_err(|reason| {
                ResourceError::Invalid {
                    field: "memory.swap",
                    value: m.swap().unwrap_or(0).to_string(),
                    reason,
                }
            })?;
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(q) = c.quota().filter(|q| *q < -1) {
            return Err(ResourceError::Invalid {
                field: "cpu.quota",
                value: q.to_string(),
                reason: "must be -1 (unlimited), 0 (not set) or microseconds".into(),
            });
        }
        if let Some(s) = c.shares().filter(|s| *s != 0 && !(2..=262_144).contains(s)) {
            return Err(ResourceError::Invalid {
                field: "cpu.shares",
                value: s.to_string(),
                reason: "must be 2 to 262144".into(),
            });
        }
        if let Some(p) = c
            .period()
            .filter(|p| *p != 0 && !(1000..=1_000_000).contains(p))
        {
            return Err(ResourceError::Invalid {
                field: "cpu.period",
                value: p.to_string(),
                reason: "must be 1000 to 1000000 microseconds".into(),
            });
        }
    }
    if let Some(p) = r.pids() {
        if p.limit() < -1 {
            return Err(ResourceError::Invalid {
                field: "pids.limit",
                value: p.limit().to_string(),
                reason: "must be -1 (unlimited), 0 (not set) or a number of tasks".into(),
            });
        }
    }
    if let Some(b) = r.block_io() {
        let check_w = |field: &'static str, w: Option<u16>| match w {
            Some(w) if w != 0 && !(10..=1000).contains(&w) => Err(ResourceError::Invalid {
                field,
                value: w.to_string(),
                reason: "must be 10 to 1000".into(),
            }),
            _ => Ok(()),
        };
        check_w("blockIO.weight", b.weight())?;
        check_w("blockIO.leafWeight", b.leaf_weight())?;
        for d in b.weight_device().iter().flatten() {
            check_w("blockIO.weightDevice.weight", d.weight())?;
            check_w("blockIO.weightDevice.leafWeight", d.leaf_weight())?;
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        if h.limit() < 0 {
            return Err(ResourceError::Invalid {
                field: "hugepageLimits.limit",
                value: h.limit().to_string(),
                reason: "must be a number of bytes".into(),
            });
        }
        if h.page_size().is_empty() || !h.page_size().chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ResourceError::Invalid {
                field: "hugepageLimits.pageSize",
                value: h.page_size().clone(),
                reason: "must look like 2MB or 1GB".into(),
            });
        }
    }
    if let Some(u) = r.unified().as_ref().filter(|u| !u.is_empty()) {
        if !v2 {
            return Err(ResourceError::Unsupported {
                field: "unified".into(),
                reason: "cgroup v2 files can only be set on a cgroup v2 host; this host uses \
                         cgroup v1"
                    .into(),
            });
        }
        for k in u.keys() {
            if k.is_empty() || k.contains('/') || k.starts_with('.') || !k.contains('.') {
                return Err(ResourceError::Invalid {
                    field: "unified",
                    value: k.clone(),
                    reason: "not a cgroup file name".into(),
                });
            }
        }
    }
    Ok(())
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
            memory_v2(dir, m)?;
        } else {
            memory_v1(dir, m)?;
        }
    }
    if let (Some(c), Some(dir)) = (r.cpu(), cg.controller_dir("cpu")) {
        if v2 {
            cpu_v2(dir, c)?;
        } else {
            cpu_v1(dir, c)?;
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
                io_v2(dir, b)?;
            }
        } else if let Some(dir) = cg.controller_dir("blkio") {
            blkio_v1(dir, b)?;
        }
    }
    if let (Some(h), Some(dir)) = (r.hugepage_limits(), cg.controller_dir("hugetlb")) {
        hugetlb(dir, h, v2)?;
    }
    if !v2 {
        if let Some(n) = r.network() {
            network_v1(cg, n)?;
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

fn memory_v1(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().unwrap_or(0);
    let mut swap = m.swap().unwrap_or(0);
    let has_memsw = dir.join("memory.memsw.limit_in_bytes").exists();
    if swap != 0 && !has_memsw {
        if swap != -1 {
            return Err(ResourceError::Unsupported {
                field: "memory.swap".into(),
                reason: "this kernel does not account swap (no memory.memsw.limit_in_bytes)".into(),
            });
        }
        swap = 0;
    }
    if limit == -1 && swap == 0 && has_memsw {
        swap = -1;
    }
    // memsw must stay >= memory: when raising, write memsw first.
    let mut memsw_first = false;
    if limit != 0 && swap != 0 {
        let cur: i64 = read(dir, "memory.limit_in_bytes")?
            .parse()
            .unwrap_or(i64::MAX);
        memsw_first = swap == -1 || cur < swap;
    }
    if memsw_first {
        write(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
    }
    if limit != 0 {
        write(dir, "memory.limit_in_bytes", &limit.to_string())?;
    }
    if swap != 0 && !memsw_first {
        write(dir, "memory.memsw.limit_in_bytes", &swap.to_string())?;
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        write(dir, "memory.soft_limit_in_bytes", &r.to_string())?;
    }
    if let Some(k) = m.kernel_tcp().filter(|k| *k != 0) {
        write(dir, "memory.kmem.tcp.limit_in_bytes", &k.to_string())?;
    }
    if let Some(s) = m.swappiness() {
        write(dir, "memory.swappiness", &s.to_string())?;
    }
    if m.disable_oom_killer() == Some(true) {
        write(dir, "memory.oom_control", "1")?;
    }
    Ok(())
}

fn memory_v2(dir: &Path, m: &LinuxMemory) -> Result<()> {
    let limit = m.limit().unwrap_or(0);
    let swap =
        swap_to_v2(m.swap().unwrap_or(0), limit).map_err(|reason| ResourceError::Invalid {
            field: "memory.swap",
            value: m.swap().unwrap_or(0).to_string(),
            reason,
        })?;
    if swap != 0 {
        let v = limit_str(swap, true);
        match write(dir, "memory.swap.max", &v) {
            Ok(()) => {}
            // No swap accounting: "max" is what there is anyway.
            Err(_) if swap == -1 && !dir.join("memory.swap.max").exists() => {}
            Err(e) => return Err(e),
        }
    }
    if limit > 0 && m.check_before_update() == Some(true) {
        check_usage(dir, limit)?;
    }
    if limit != 0 {
        write(dir, "memory.max", &limit_str(limit, true))?;
    }
    if let Some(r) = m.reservation().filter(|r| *r != 0) {
        write(dir, "memory.low", &limit_str(r, true))?;
    }
    Ok(())
}

/// memory.checkBeforeUpdate (as runc on cgroup v2): refuse a limit at or below what the
/// cgroup uses now, rather than let the kernel reclaim or OOM-kill down to it. (On v1
/// the kernel itself refuses, with EBUSY, a limit it cannot reclaim down to.)
fn check_usage(dir: &Path, limit: i64) -> Result<()> {
    let usage: i64 = read(dir, "memory.current")?.parse().unwrap_or(0);
    if usage >= limit {
        return Err(ResourceError::Invalid {
            field: "memory.limit",
            value: limit.to_string(),
            reason: format!(
                "at or below the current usage ({usage} bytes) and checkBeforeUpdate is set"
            ),
        });
    }
    Ok(())
}

fn cpu_v1(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        write(dir, "cpu.shares", &s.to_string())?;
        let got = read(dir, "cpu.shares")?;
        if got != s.to_string() {
            return Err(ResourceError::Invalid {
                field: "cpu.shares",
                value: s.to_string(),
                reason: format!("the kernel set cpu.shares to {got}"),
            });
        }
    }
    let quota = c.quota().unwrap_or(0);
    let mut period_pending = None;
    if let Some(p) = c.period().filter(|p| *p != 0) {
        match write(dir, "cpu.cfs_period_us", &p.to_string()) {
            Ok(()) => {}
            // A smaller period can be refused until the quota fits: retry after it.
            Err(ResourceError::Write { reason, .. })
                if reason == "invalid argument" && quota != 0 =>
            {
                period_pending = Some(p)
            }
            Err(e) => return Err(e),
        }
    }
    if quota != 0 {
        write(dir, "cpu.cfs_quota_us", &quota.to_string())?;
        if let Some(p) = period_pending {
            write(dir, "cpu.cfs_period_us", &p.to_string())?;
        }
    }
    if let Some(b) = c.burst() {
        write(dir, "cpu.cfs_burst_us", &b.to_string())?;
    }
    if let Some(p) = c.realtime_period().filter(|p| *p != 0) {
        write(dir, "cpu.rt_period_us", &p.to_string())?;
    }
    if let Some(r) = c.realtime_runtime().filter(|r| *r != 0) {
        write(dir, "cpu.rt_runtime_us", &r.to_string())?;
    }
    if let Some(i) = c.idle() {
        write(dir, "cpu.idle", &i.to_string())?;
    }
    Ok(())
}

fn cpu_v2(dir: &Path, c: &LinuxCpu) -> Result<()> {
    if c.realtime_period().is_some_and(|p| p != 0) || c.realtime_runtime().is_some_and(|r| r != 0) {
        return Err(ResourceError::Unsupported {
            field: "cpu.realtimeRuntime".into(),
            reason: "real-time scheduling limits do not exist on cgroup v2".into(),
        });
    }
    if let Some(i) = c.idle().filter(|i| *i != 0) {
        write(dir, "cpu.idle", &i.to_string())?;
    }
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        write(dir, "cpu.weight", &shares_to_weight(s).to_string())?;
    }
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if quota != 0 || period != 0 {
        let mut v = if quota > 0 {
            quota.to_string()
        } else {
            "max".to_string()
        };
        if period != 0 {
            v.push_str(&format!(" {period}"));
        }
        write(dir, "cpu.max", &v)?;
    }
    if let Some(b) = c.burst() {
        write(dir, "cpu.max.burst", &b.to_string())?;
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

fn blkio_v1(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    // Kernels without CFQ have only BFQ's files (runc falls back the same way).
    let bfq = !dir.join("blkio.weight").exists() && dir.join("blkio.bfq.weight").exists();
    let (weight, weight_device) = if bfq {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        write(dir, weight, &w.to_string())?;
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        write(dir, "blkio.leaf_weight", &w.to_string())?;
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight().filter(|w| *w != 0) {
            write(
                dir,
                weight_device,
                &format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
        if let Some(w) = d.leaf_weight().filter(|w| *w != 0) {
            write(
                dir,
                "blkio.leaf_weight_device",
                &format!("{}:{} {w}", d.major(), d.minor()),
            )?;
        }
    }
    for (file, _, list) in throttles(b) {
        for t in list.iter().flatten() {
            write(
                dir,
                file,
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

fn io_v2(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
    let bfq = dir.join("io.bfq.weight").exists();
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        if bfq {
            write(dir, "io.bfq.weight", &w.to_string())?;
        } else {
            write(dir, "io.weight", &blkio_weight_to_io_weight(w).to_string())?;
        }
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(w) = d.weight().filter(|w| *w != 0) {
            let dev = format!("{}:{}", d.major(), d.minor());
            if bfq {
                write(dir, "io.bfq.weight", &format!("{dev} {w}"))?;
            } else {
                write(
                    dir,
                    "io.weight",
                    &format!("{dev} {}", blkio_weight_to_io_weight(w)),
                )?;
            }
        }
    }
    for (_, key, list) in throttles(b) {
        for t in list.iter().flatten() {
            let rate = if t.rate() == 0 {
                "max".to_string()
            } else {
                t.rate().to_string()
            };
            write(
                dir,
                "io.max",
                &format!("{}:{} {key}={rate}", t.major(), t.minor()),
            )?;
        }
    }
    Ok(())
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

fn network_v1(cg: &Cgroup, n: &LinuxNetwork) -> Result<()> {
    if let (Some(id), Some(dir)) = (n.class_id(), cg.controller_dir("net_cls")) {
        write(dir, "net_cls.classid", &id.to_string())?;
    }
    if let Some(dir) = cg.controller_dir("net_prio") {
        for p in n.priorities().iter().flatten() {
            write(
                dir,
                "net_prio.ifpriomap",
                &format!("{} {}", p.name(), p.priority()),
            )?;
        }
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

/// Reads a file that may be missing: `None` if it is.
pub(crate) fn read_opt(path: &Path) -> Option<String> {
    match fs::read_to_string(path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => {
            log::debug!("read {}: {e}", path.display());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Cgroup;

    fn res(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    struct Fake {
        root: PathBuf,
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.root);
        }
    }

    fn fake(name: &str, v2: bool, controllers: &[&str], files: &[&str]) -> (Fake, Cgroup) {
        let root =
            std::env::temp_dir().join(format!("mypod-res-{name}-{}-{}", std::process::id(), v2));
        let _ = fs::remove_dir_all(&root);
        let mut dirs = Vec::new();
        if v2 {
            let d = root.join("pod/c1");
            fs::create_dir_all(&d).unwrap();
            dirs.push((String::new(), d));
        } else {
            for c in controllers {
                let d = root.join(c).join("pod/c1");
                fs::create_dir_all(&d).unwrap();
                dirs.push((c.to_string(), d));
            }
        }
        for (_, d) in &dirs {
            for f in files {
                fs::write(d.join(f), "").unwrap();
            }
        }
        (
            Fake { root },
            Cgroup {
                dirs,
                v2,
                unified: None,
            },
        )
    }

    fn get(cg: &Cgroup, ctrl: &str, file: &str) -> String {
        fs::read_to_string(cg.controller_dir(ctrl).unwrap().join(file)).unwrap()
    }

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10000);
        assert_eq!(swap_to_v2(0, -1), Ok(-1));
        assert_eq!(swap_to_v2(-1, 100), Ok(-1));
        assert_eq!(swap_to_v2(0, 100), Ok(0));
        assert_eq!(swap_to_v2(300, 100), Ok(200));
        assert!(swap_to_v2(50, 100).is_err());
        assert!(swap_to_v2(50, 0).is_err());
    }

    #[test]
    fn bad_values_are_refused_with_the_field() {
        let e = validate(&res(r#"{"memory":{"limit":-5}}"#), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "linux.resources.memory.limit = -5: must be -1 (unlimited), 0 (not set) or a number of bytes"
        );
        assert!(validate(&res(r#"{"memory":{"limit":-1}}"#), false).is_ok());
        assert!(validate(&res(r#"{"pids":{"limit":-7}}"#), false).is_err());
        assert!(validate(&res(r#"{"cpu":{"quota":-2}}"#), false).is_err());
        assert!(validate(&res(r#"{"cpu":{"shares":1}}"#), false).is_err());
        assert!(validate(&res(r#"{"cpu":{"period":10}}"#), false).is_err());
        assert!(validate(&res(r#"{"blockIO":{"weight":5}}"#), false).is_err());
        assert!(validate(&res(r#"{"memory":{"limit":100,"swap":50}}"#), true).is_err());
        assert!(validate(&res(r#"{"memory":{"swappiness":101}}"#), false).is_err());
        let e = validate(&res(r#"{"unified":{"memory.max":"1"}}"#), false).unwrap_err();
        assert!(e.to_string().contains("cgroup v1"), "{e}");
        assert!(validate(&res(r#"{"unified":{"../x":"1"}}"#), true).is_err());
        assert!(validate(
            &res(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":-1}]}"#),
            true
        )
        .is_err());
    }

    #[test]
    fn v1_files() {
        let (_f, cg) = fake(
            "v1",
            false,
            &["memory", "cpu,cpuacct", "cpuset", "pids", "blkio"],
            &[
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "memory.soft_limit_in_bytes",
                "memory.swappiness",
                "memory.oom_control",
                "cpu.shares",
                "cpu.cfs_quota_us",
                "cpu.cfs_period_us",
                "cpuset.cpus",
                "cpuset.mems",
                "pids.max",
                "blkio.bfq.weight",
                "blkio.bfq.weight_device",
                "blkio.throttle.read_bps_device",
            ],
        );
        fs::write(
            cg.controller_dir("memory")
                .unwrap()
                .join("memory.limit_in_bytes"),
            "9223372036854771712",
        )
        .unwrap();
        let r = res(r#"{
            "memory":{"limit":104857600,"swap":209715200,"reservation":52428800,
                      "swappiness":10,"disableOOMKiller":true},
            "cpu":{"shares":512,"quota":50000,"period":100000,"cpus":"0","mems":"0"},
            "pids":{"limit":20},
            "blockIO":{"weight":300,"weightDevice":[{"major":8,"minor":0,"weight":200}],
                       "throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}]}
        }"#);
        apply(&cg, &r).unwrap();
        assert_eq!(get(&cg, "memory", "memory.limit_in_bytes"), "104857600");
        assert_eq!(
            get(&cg, "memory", "memory.memsw.limit_in_bytes"),
            "209715200"
        );
        assert_eq!(get(&cg, "memory", "memory.soft_limit_in_bytes"), "52428800");
        assert_eq!(get(&cg, "memory", "memory.swappiness"), "10");
        assert_eq!(get(&cg, "memory", "memory.oom_control"), "1");
        assert_eq!(get(&cg, "cpu", "cpu.shares"), "512");
        assert_eq!(get(&cg, "cpuacct", "cpu.cfs_quota_us"), "50000");
        assert_eq!(get(&cg, "cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(get(&cg, "cpuset", "cpuset.cpus"), "0");
        assert_eq!(get(&cg, "pids", "pids.max"), "20");
        assert_eq!(get(&cg, "blkio", "blkio.bfq.weight"), "300");
        assert_eq!(get(&cg, "blkio", "blkio.bfq.weight_device"), "8:0 200");
        assert_eq!(
            get(&cg, "blkio", "blkio.throttle.read_bps_device"),
            "8:0 1048576"
        );
        assert!(unapplied(&cg, &r).is_empty(), "{:?}", unapplied(&cg, &r));
        let h = res(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":0}]}"#);
        assert_eq!(
            unapplied(&cg, &h),
            ["hugepageLimits (no hugetlb hierarchy)"]
        );
    }

    #[test]
    fn v1_missing_file_names_file_and_value() {
        let (_f, cg) = fake("v1err", false, &["pids"], &[]);
        fs::remove_dir_all(cg.controller_dir("pids").unwrap()).unwrap();
        let e = apply(&cg, &res(r#"{"pids":{"limit":5}}"#)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pids.max = 5: no such file or directory"),
            "{e}"
        );
    }

    #[test]
    fn failed_cpuset_write_leaves_other_limits_alone() {
        let (_f, cg) = fake(
            "v1cpuset",
            false,
            &["memory", "cpu", "cpuset"],
            &[
                "memory.limit_in_bytes",
                "cpu.cfs_quota_us",
                "cpu.cfs_period_us",
            ],
        );
        fs::write(
            cg.controller_dir("memory")
                .unwrap()
                .join("memory.limit_in_bytes"),
            "134217728",
        )
        .unwrap();
        // The cpuset write fails (its dir is gone), as the kernel refuses a cpu it lacks.
        fs::remove_dir_all(cg.controller_dir("cpuset").unwrap()).unwrap();
        let e = apply(
            &cg,
            &res(r#"{"memory":{"limit":268435456},"cpu":{"quota":30000,"period":100000,"cpus":"999"}}"#),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("cpuset.cpus = 999"), "{e}");
        assert_eq!(get(&cg, "memory", "memory.limit_in_bytes"), "134217728");
        assert_eq!(get(&cg, "cpu", "cpu.cfs_quota_us"), "");
    }

    #[test]
    fn v2_files() {
        let (_f, cg) = fake(
            "v2",
            true,
            &[],
            &[
                "memory.max",
                "memory.swap.max",
                "memory.low",
                "cpu.weight",
                "cpu.max",
                "cpuset.cpus",
                "pids.max",
                "io.weight",
                "io.max",
                "hugetlb.2MB.max",
            ],
        );
        let r = res(r#"{
            "memory":{"limit":104857600,"swap":209715200,"reservation":1048576},
            "cpu":{"shares":1024,"quota":-1,"period":100000,"cpus":"0-1"},
            "pids":{"limit":-1},
            "blockIO":{"weight":500,"throttleWriteIOPSDevice":[{"major":8,"minor":16,"rate":100}]},
            "hugepageLimits":[{"pageSize":"2MB","limit":4194304}],
            "unified":{"memory.high":"max"}
        }"#);
        apply(&cg, &r).unwrap();
        assert_eq!(get(&cg, "", "memory.max"), "104857600");
        assert_eq!(get(&cg, "", "memory.swap.max"), "104857600");
        assert_eq!(get(&cg, "", "memory.low"), "1048576");
        assert_eq!(get(&cg, "", "cpu.weight"), "39");
        assert_eq!(get(&cg, "", "cpu.max"), "max 100000");
        assert_eq!(get(&cg, "", "cpuset.cpus"), "0-1");
        assert_eq!(get(&cg, "", "pids.max"), "max");
        assert_eq!(get(&cg, "", "io.weight"), "4950");
        assert_eq!(get(&cg, "", "io.max"), "8:16 wiops=100");
        assert_eq!(get(&cg, "", "hugetlb.2MB.max"), "4194304");
        assert_eq!(get(&cg, "", "memory.high"), "max");
        let e = apply(&cg, &res(r#"{"cpu":{"realtimeRuntime":100}}"#)).unwrap_err();
        assert!(e.to_string().contains("cgroup v2"), "{e}");
    }

    #[test]
    fn check_before_update_refuses_a_limit_below_usage() {
        let dir = std::env::temp_dir().join(format!("mypod-cbu-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("memory.current"), "1000000\n").unwrap();
        let e = check_usage(&dir, 4096).unwrap_err().to_string();
        assert_eq!(
            e,
            "linux.resources.memory.limit = 4096: at or below the current usage (1000000 bytes) \
             and checkBeforeUpdate is set"
        );
        assert!(check_usage(&dir, 2_000_000).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }
}
