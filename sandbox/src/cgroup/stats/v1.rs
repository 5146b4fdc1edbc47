//! Reading cgroup v1 statistics: memory (with memsw, kmem), cpu and cpuacct, pids, blkio
//! (CFQ, BFQ or throttle counters) and hugetlb.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::{hugetlb_sizes, num, parse_flat_keyed, parse_u64, read_opt, Hugetlb, Pids};
use crate::cgroup::placement::Cgroup;

/// One v1 memory counter group (`memory.*`, `memory.memsw.*`, `memory.kmem.*`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemEntry {
    pub limit: u64,
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

/// v1 memory controller statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Memory {
    /// `memory.stat`, key → value (cache, rss, total_inactive_file, ...).
    pub stat: BTreeMap<String, u64>,
    pub usage: MemEntry,
    pub swap: MemEntry,
    pub kernel: MemEntry,
    pub kernel_tcp: MemEntry,
    /// `memory.oom_control`: oom_kill_disable, under_oom, oom_kill.
    pub oom_control: BTreeMap<String, u64>,
}

/// v1 cpu and cpuacct statistics, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Cpu {
    pub total: u64,
    pub per_cpu: Vec<u64>,
    pub user: u64,
    pub kernel: u64,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

/// One line of a v1 blkio file: `8:0 Read 4096`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlkioEntry {
    pub op: String,
    pub device: String,
    pub major: u64,
    pub minor: u64,
    pub value: u64,
}

/// v1 blkio statistics (recursive counters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Blkio {
    pub io_service_bytes: Vec<BlkioEntry>,
    pub io_serviced: Vec<BlkioEntry>,
    pub io_queued: Vec<BlkioEntry>,
    pub io_service_time: Vec<BlkioEntry>,
    pub io_wait_time: Vec<BlkioEntry>,
    pub io_merged: Vec<BlkioEntry>,
    pub io_time: Vec<BlkioEntry>,
    pub sectors: Vec<BlkioEntry>,
}

/// Everything read from a v1 host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Stats {
    pub memory: Option<V1Memory>,
    pub cpu: Option<V1Cpu>,
    pub pids: Option<Pids>,
    pub blkio: Option<V1Blkio>,
    pub hugetlb: Vec<Hugetlb>,
}

/// v1 blkio lines `MAJ:MIN Op value` (the `Total` line is skipped).
pub fn parse_blkio(text: &str, names: &mut HashMap<(u64, u64), String>) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (dev, op, value) = match f.as_slice() {
                [dev, op, v] => (*dev, *op, *v),
                [dev, v] => (*dev, "", *v),
                _ => return None,
            };
            let (ma, mi) = dev.split_once(':')?;
            let (major, minor) = (ma.parse().ok()?, mi.parse().ok()?);
            Some(BlkioEntry {
                op: op.to_string(),
                device: device_name(major, minor, names),
                major,
                minor,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// `/dev/NAME` of a block device (from /sys/dev/block/M:m/uevent), cached.
fn device_name(major: u64, minor: u64, cache: &mut HashMap<(u64, u64), String>) -> String {
    cache
        .entry((major, minor))
        .or_insert_with(|| {
            read_opt(Path::new(&format!("/sys/dev/block/{major}:{minor}/uevent")))
                .and_then(|t| {
                    t.lines()
                        .find_map(|l| l.strip_prefix("DEVNAME="))
                        .map(|n| format!("/dev/{n}"))
                })
                .unwrap_or_default()
        })
        .clone()
}

/// USER_HZ, for cpuacct.stat's ticks.
fn clock_ticks() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

fn mem_entry(dir: &Path, prefix: &str) -> MemEntry {
    MemEntry {
        limit: num(dir, &format!("{prefix}.limit_in_bytes")),
        usage: num(dir, &format!("{prefix}.usage_in_bytes")),
        max: num(dir, &format!("{prefix}.max_usage_in_bytes")),
        failcnt: num(dir, &format!("{prefix}.failcnt")),
    }
}

pub(super) fn read(cg: &Cgroup) -> V1Stats {
    let mut s = V1Stats::default();
    if let Some(dir) = cg.controller_dir("memory") {
        if let Some(stat) = read_opt(&dir.join("memory.stat")) {
            s.memory = Some(V1Memory {
                stat: parse_flat_keyed(&stat),
                usage: mem_entry(dir, "memory"),
                swap: mem_entry(dir, "memory.memsw"),
                kernel: mem_entry(dir, "memory.kmem"),
                kernel_tcp: mem_entry(dir, "memory.kmem.tcp"),
                oom_control: read_opt(&dir.join("memory.oom_control"))
                    .map(|t| parse_flat_keyed(&t))
                    .unwrap_or_default(),
            });
        }
    }
    let mut cpu = None::<V1Cpu>;
    if let Some(dir) = cg.controller_dir("cpuacct") {
        if let Some(total) = read_opt(&dir.join("cpuacct.usage")) {
            let c = cpu.get_or_insert_with(V1Cpu::default);
            c.total = parse_u64(&total);
            c.per_cpu = read_opt(&dir.join("cpuacct.usage_percpu"))
                .map(|t| {
                    t.split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let st = read_opt(&dir.join("cpuacct.stat"))
                .map(|t| parse_flat_keyed(&t))
                .unwrap_or_default();
            let ns = 1_000_000_000 / clock_ticks();
            c.user = st.get("user").copied().unwrap_or(0) * ns;
            c.kernel = st.get("system").copied().unwrap_or(0) * ns;
        }
    }
    if let Some(dir) = cg.controller_dir("cpu") {
        if let Some(t) = read_opt(&dir.join("cpu.stat")) {
            let st = parse_flat_keyed(&t);
            let c = cpu.get_or_insert_with(V1Cpu::default);
            c.periods = st.get("nr_periods").copied().unwrap_or(0);
            c.throttled_periods = st.get("nr_throttled").copied().unwrap_or(0);
            c.throttled_time = st.get("throttled_time").copied().unwrap_or(0);
        }
    }
    s.cpu = cpu;
    if let Some(dir) = cg.controller_dir("pids") {
        if let Some(cur) = read_opt(&dir.join("pids.current")) {
            s.pids = Some(Pids {
                current: parse_u64(&cur),
                limit: num(dir, "pids.max"),
            });
        }
    }
    if let Some(dir) = cg.controller_dir("blkio") {
        let mut names = HashMap::new();
        let mut get = |f: &str| -> Vec<BlkioEntry> {
            // CFQ's files, else BFQ's, else the throttle layer's (as containerd reads them).
            for prefix in ["blkio.", "blkio.bfq.", "blkio.throttle."] {
                if let Some(t) = read_opt(&dir.join(format!("{prefix}{f}_recursive"))) {
                    let v = parse_blkio(&t, &mut names);
                    if !v.is_empty() || prefix == "blkio.throttle." {
                        return v;
                    }
                }
            }
            Vec::new()
        };
        s.blkio = Some(V1Blkio {
            io_service_bytes: get("io_service_bytes"),
            io_serviced: get("io_serviced"),
            io_queued: get("io_queued"),
            io_service_time: get("io_service_time"),
            io_wait_time: get("io_wait_time"),
            io_merged: get("io_merged"),
            io_time: get("time"),
            sectors: get("sectors"),
        });
    }
    if let Some(dir) = cg.controller_dir("hugetlb") {
        for size in hugetlb_sizes(dir, ".usage_in_bytes") {
            s.hugetlb.push(Hugetlb {
                usage: num(dir, &format!("hugetlb.{size}.usage_in_bytes")),
                max: num(dir, &format!("hugetlb.{size}.max_usage_in_bytes")),
                failcnt: num(dir, &format!("hugetlb.{size}.failcnt")),
                pagesize: size,
            });
        }
    }
    s
}
