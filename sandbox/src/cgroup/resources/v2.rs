//! The cgroup v2 files: memory.max / memory.swap.max / memory.low (with
//! checkBeforeUpdate), cpu.weight / cpu.max, io.weight / io.max, and runc's conversions
//! from the spec's v1-style values.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory};

use super::{read, throttles, write, ResourceError, Result};

// Conversions: runc's libcontainer/cgroups/utils.go.

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

pub(super) fn memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
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

pub(super) fn cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
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

pub(super) fn io(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::cgroup::resources::fake::{fake, get, res, Writes};
    use crate::cgroup::resources::{apply, unapplied};

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

    #[test]
    fn v2_rdma_and_hugepage_limits() {
        let (_f, cg) = fake(
            "v2rdma",
            true,
            &[],
            &["rdma.max", "hugetlb.2MB.max", "hugetlb.1GB.max"],
        );
        let max = Writes::start(&cg, "", "rdma.max");
        let r = res(
            r#"{"rdma":{"mlx5_1":{"hcaObjects":10000},"mlx4_0":{"hcaHandles":2}},
                        "hugepageLimits":[{"pageSize":"2MB","limit":4194304},
                                          {"pageSize":"1GB","limit":1073741824}]}"#,
        );
        apply(&cg, &r).unwrap();
        assert_eq!(
            max.finish(),
            "mlx4_0 hca_handle=2 hca_object=maxmlx5_1 hca_handle=max hca_object=10000"
        );
        assert_eq!(get(&cg, "", "hugetlb.2MB.max"), "4194304");
        assert_eq!(get(&cg, "", "hugetlb.1GB.max"), "1073741824");
        assert!(unapplied(&cg, &r).is_empty(), "{:?}", unapplied(&cg, &r));
        let e = apply(
            &cg,
            &res(r#"{"hugepageLimits":[{"pageSize":"64KB","limit":65536}]}"#),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "linux.resources.hugepageLimits.pageSize 64KB: this host has no hugetlb.64KB.max"
        );
    }

    #[test]
    fn v2_network_is_not_written_but_reported() {
        let (_f, cg) = fake(
            "v2net",
            true,
            &[],
            &["net_cls.classid", "net_prio.ifpriomap"],
        );
        let r =
            res(r#"{"network":{"classID":1048577,"priorities":[{"name":"eth0","priority":10}]}}"#);
        apply(&cg, &r).unwrap();
        assert_eq!(get(&cg, "", "net_cls.classid"), "");
        assert_eq!(get(&cg, "", "net_prio.ifpriomap"), "");
        assert_eq!(
            unapplied(&cg, &r),
            ["network (no net_cls/net_prio on cgroup v2)"]
        );
    }
}
