//! Reading cgroup v2 statistics from the one unified directory: memory (and
//! memory.events), cpu.stat, pids, io.stat and hugetlb.

use std::collections::BTreeMap;

use super::{hugetlb_sizes, num, parse_flat_keyed, parse_u64, read_opt, Hugetlb, Pids};
use crate::cgroup::placement::Cgroup;

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

pub(super) fn read(cg: &Cgroup) -> V2Stats {
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
    use std::fs;

    use super::*;
    use crate::cgroup::stats::{read, Stats};

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
