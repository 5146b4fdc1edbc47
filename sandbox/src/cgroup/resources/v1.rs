//! The cgroup v1 controller files: memory (with memsw ordering), cpu, blkio (CFQ or BFQ)
//! and net_cls / net_prio, which exist only on v1.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxNetwork};

use super::{read, throttles, write, ResourceError, Result};
use crate::cgroup::placement::Cgroup;

pub(super) fn memory(dir: &Path, m: &LinuxMemory) -> Result<()> {
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

pub(super) fn cpu(dir: &Path, c: &LinuxCpu) -> Result<()> {
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

pub(super) fn blkio(dir: &Path, b: &LinuxBlockIo) -> Result<()> {
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

pub(super) fn network(cg: &Cgroup, n: &LinuxNetwork) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::cgroup::resources::fake::{fake, get, res, Writes};
    use crate::cgroup::resources::{apply, unapplied};

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
    fn v1_network_class_id_and_priorities() {
        // net_cls and net_prio are usually mounted together.
        let (_f, cg) = fake(
            "v1net",
            false,
            &["net_cls,net_prio"],
            &["net_cls.classid", "net_prio.ifpriomap"],
        );
        let prio = Writes::start(&cg, "net_prio", "net_prio.ifpriomap");
        let r = res(r#"{"network":{"classID":1048577,
            "priorities":[{"name":"eth0","priority":10},{"name":"lo","priority":0}]}}"#);
        apply(&cg, &r).unwrap();
        assert_eq!(get(&cg, "net_cls", "net_cls.classid"), "1048577");
        // One write per interface, as the kernel takes them.
        assert_eq!(prio.finish(), "eth0 10lo 0");
        assert!(unapplied(&cg, &r).is_empty(), "{:?}", unapplied(&cg, &r));
    }

    #[test]
    fn v1_rdma_limits() {
        let (_f, cg) = fake("v1rdma", false, &["rdma"], &["rdma.max"]);
        let max = Writes::start(&cg, "rdma", "rdma.max");
        // Five devices, so that a map's own order is unlikely to pass for sorted.
        let r = res(r#"{"rdma":{"mlx5_4":{"hcaHandles":3,"hcaObjects":10000},
                                "mlx5_1":{"hcaHandles":1},"mlx5_3":{"hcaObjects":7},
                                "mlx5_0":{"hcaHandles":2},"mlx5_2":{}}}"#);
        apply(&cg, &r).unwrap();
        // One write per device, sorted by name; an absent limit is "max".
        assert_eq!(
            max.finish(),
            "mlx5_0 hca_handle=2 hca_object=max\
             mlx5_1 hca_handle=1 hca_object=max\
             mlx5_2 hca_handle=max hca_object=max\
             mlx5_3 hca_handle=max hca_object=7\
             mlx5_4 hca_handle=3 hca_object=10000"
        );
        assert!(unapplied(&cg, &r).is_empty(), "{:?}", unapplied(&cg, &r));
    }

    #[test]
    fn v1_hugepage_limits() {
        let (_f, cg) = fake(
            "v1huge",
            false,
            &["hugetlb"],
            &["hugetlb.2MB.limit_in_bytes", "hugetlb.1GB.limit_in_bytes"],
        );
        let r = res(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":4194304},
                                          {"pageSize":"1GB","limit":1073741824}]}"#);
        apply(&cg, &r).unwrap();
        assert_eq!(get(&cg, "hugetlb", "hugetlb.2MB.limit_in_bytes"), "4194304");
        assert_eq!(
            get(&cg, "hugetlb", "hugetlb.1GB.limit_in_bytes"),
            "1073741824"
        );
        assert!(unapplied(&cg, &r).is_empty(), "{:?}", unapplied(&cg, &r));
        let e = apply(
            &cg,
            &res(r#"{"hugepageLimits":[{"pageSize":"64KB","limit":65536}]}"#),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "linux.resources.hugepageLimits.pageSize 64KB: this host has no \
             hugetlb.64KB.limit_in_bytes"
        );
    }

    #[test]
    fn v1_network_rdma_hugetlb_without_hierarchies_are_reported() {
        let (_f, cg) = fake("v1none", false, &["memory"], &[]);
        let r = res(
            r#"{"network":{"classID":1,"priorities":[{"name":"eth0","priority":1}]},
                        "rdma":{"mlx5_0":{"hcaHandles":1}},
                        "hugepageLimits":[{"pageSize":"2MB","limit":0}]}"#,
        );
        apply(&cg, &r).unwrap();
        assert_eq!(
            unapplied(&cg, &r),
            [
                "hugepageLimits (no hugetlb hierarchy)",
                "network.classID (no net_cls hierarchy)",
                "network.priorities (no net_prio hierarchy)",
                "rdma (no rdma hierarchy)"
            ]
        );
        let memory = cg.controller_dir("memory").unwrap();
        assert_eq!(fs::read_dir(memory).unwrap().count(), 0, "nothing written");
    }
}
