//! Reading a container's cgroup statistics into plain structs (the shim turns them into
//! containerd's `io.containerd.cgroups.v1.Metrics` or `io.containerd.cgroups.v2.Metrics`).
//! Files a host lacks leave their part empty rather than failing the whole read.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::cgroup::Cgroup;
use crate::resources::read_opt;

/// Statistics of one cgroup.
#[derive(Debug, Clone, PartialEq)]
pub enum Stats {
    V1(Box<V1Stats>),
    V2(Box<V2Stats>),
}

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

/// pids controller: current count and limit (0 = unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pids {
    pub current: u64,
    pub limit: u64,
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

/// hugetlb usage of one page size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hugetlb {
    pub pagesize: String,
    /// v1 usage_in_bytes / v2 current.
    pub usage: u64,
    /// v1 max_usage_in_bytes / v2 max (the limit).
    pub max: u64,
    pub failcnt: u64,
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

/// v2 memory statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Memory {
    /// `memory.stat`, key → value (anon, file, inactive_file, ...).
    pub stat: BTreeMap<String, u64>,
    pub usage: u64,
    /// 0 = unlimited ("max").
    pub usage_limit: u64,
    pub swap_usage: u64,
    pub swap_limit: u64,
    pub max_usage: u64,
    pub swap_max_usage: u64,
}

/// One line of v2 `io.stat`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoEntry {
    pub major: u64,
    pub minor: u64,
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
}

/// Everything read from a v2 host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Stats {
    pub memory: Option<V2Memory>,
    /// `cpu.stat`: usage_usec, user_usec, system_usec, nr_periods, nr_throttled, ...
    pub cpu: Option<BTreeMap<String, u64>>,
    pub pids: Option<Pids>,
    pub io: Vec<IoEntry>,
    pub hugetlb: Vec<Hugetlb>,
    /// `memory.events`: low, high, max, oom, oom_kill, oom_group_kill.
    pub memory_events: Option<BTreeMap<String, u64>>,
}

/// `key value` lines into a map (non-numeric values are skipped).
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let k = f.next()?;
            let v = f.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// A single number; "max" and garbage read as 0.
pub fn parse_u64(text: &str) -> u64 {
    text.trim().parse().unwrap_or(0)
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

/// v2 `io.stat` lines `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. ...`.
pub fn parse_io_stat(text: &str) -> Vec<IoEntry> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (ma, mi) = f.next()?.split_once(':')?;
            let mut e = IoEntry {
                major: ma.parse().ok()?,
                minor: mi.parse().ok()?,
                ..IoEntry::default()
            };
            for kv in f {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let v = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => e.rbytes = v,
                    "wbytes" => e.wbytes = v,
                    "rios" => e.rios = v,
                    "wios" => e.wios = v,
                    _ => {}
                }
            }
            Some(e)
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

fn num(dir: &Path, file: &str) -> u64 {
    read_opt(&dir.join(file)).map_or(0, |t| parse_u64(&t))
}

/// USER_HZ, for cpuacct.stat's ticks.
fn clock_ticks() -> u64 {
    // SAFETY: sysconf(3) takes no pointers.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Reads the statistics of `cg`.
pub fn read(cg: &Cgroup) -> Stats {
    if cg.v2 {
        Stats::V2(Box::new(read_v2(cg)))
    } else {
        Stats::V1(Box::new(read_v1(cg)))
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

fn hugetlb_sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let rest = n.strip_prefix("hugetlb.")?;
            let size = rest.strip_suffix(suffix)?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    sizes
}

fn read_v1(cg: &Cgroup) -> V1Stats {
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

fn read_v2(cg: &Cgroup) -> V2Stats {
    let mut s = V2Stats::default();
    let Some(dir) = cg.controller_dir("") else {
        return s;
    };
    if let Some(stat) = read_opt(&dir.join("memory.stat")) {
        s.memory = Some(V2Memory {
            stat: parse_flat_keyed(&stat),
            usage: num(dir, "memory.current"),
            usage_limit: num(dir, "memory.max"),
            swap_usage: num(dir, "memory.swap.current"),
            swap_limit: num(dir, "memory.swap.max"),
            max_usage: num(dir, "memory.peak"),
            swap_max_usage: num(dir, "memory.swap.peak"),
        });
    }
    s.memory_events = read_opt(&dir.join("memory.events")).map(|t| parse_flat_keyed(&t));
    s.cpu = read_opt(&dir.join("cpu.stat")).map(|t| parse_flat_keyed(&t));
    if let Some(cur) = read_opt(&dir.join("pids.current")) {
        s.pids = Some(Pids {
            current: parse_u64(&cur),
            limit: num(dir, "pids.max"),
        });
    }
    s.io = read_opt(&dir.join("io.stat"))
        .map(|t| parse_io_stat(&t))
        .unwrap_or_default();
    for size in hugetlb_sizes(dir, ".current") {
        s.hugetlb.push(Hugetlb {
            usage: num(dir, &format!("hugetlb.{size}.current")),
            max: num(dir, &format!("hugetlb.{size}.max")),
            failcnt: read_opt(&dir.join(format!("hugetlb.{size}.events")))
                .map(|t| parse_flat_keyed(&t).get("max").copied().unwrap_or(0))
                .unwrap_or(0),
            pagesize: size,
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn flat_keyed_and_numbers() {
        let m = parse_flat_keyed("cache 4096\nrss 8192\ntotal_inactive_file 12\nbad x\n");
        assert_eq!(m.get("rss"), Some(&8192));
        assert_eq!(m.get("total_inactive_file"), Some(&12));
        assert_eq!(m.get("bad"), None);
        assert_eq!(parse_u64("max\n"), 0);
        assert_eq!(parse_u64("42\n"), 42);
    }

    #[test]
    fn blkio_and_io_stat() {
        let mut names = HashMap::new();
        let v = parse_blkio("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n", &mut names);
        assert_eq!(v.len(), 2);
        assert_eq!(
            (v[0].major, v[0].minor, v[0].op.as_str(), v[0].value),
            (8, 0, "Read", 4096)
        );
        let io = parse_io_stat("8:16 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n");
        assert_eq!(
            io,
            [IoEntry {
                major: 8,
                minor: 16,
                rbytes: 1,
                wbytes: 2,
                rios: 3,
                wios: 4
            }]
        );
    }

    #[test]
    fn v2_over_fake_files() {
        let dir = std::env::temp_dir().join(format!("mypod-stats-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for (f, v) in [
            ("memory.stat", "anon 100\nfile 200\ninactive_file 50\n"),
            ("memory.current", "300\n"),
            ("memory.max", "max\n"),
            ("memory.events", "oom 1\noom_kill 1\n"),
            ("cpu.stat", "usage_usec 10\nuser_usec 6\nsystem_usec 4\n"),
            ("pids.current", "3\n"),
            ("pids.max", "20\n"),
            ("hugetlb.2MB.current", "0\n"),
            ("hugetlb.2MB.max", "4194304\n"),
        ] {
            fs::write(dir.join(f), v).unwrap();
        }
        let cg = Cgroup {
            dirs: vec![(String::new(), dir.clone())],
            v2: true,
            unified: None,
        };
        let Stats::V2(s) = read(&cg) else {
            panic!("v2 expected")
        };
        let m = s.memory.unwrap();
        assert_eq!((m.usage, m.usage_limit), (300, 0));
        assert_eq!(m.stat.get("inactive_file"), Some(&50));
        assert_eq!(s.cpu.unwrap().get("usage_usec"), Some(&10));
        assert_eq!(
            s.pids,
            Some(Pids {
                current: 3,
                limit: 20
            })
        );
        assert_eq!(s.memory_events.unwrap().get("oom_kill"), Some(&1));
        assert_eq!(s.hugetlb[0].pagesize, "2MB");
        assert_eq!(s.hugetlb[0].max, 4194304);
        fs::remove_dir_all(&dir).unwrap();
    }
}
