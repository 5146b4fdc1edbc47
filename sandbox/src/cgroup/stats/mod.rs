//! Reading a container's cgroup statistics into plain structs (the shim turns them into
//! containerd's `io.containerd.cgroups.v1.Metrics` or `io.containerd.cgroups.v2.Metrics`).
//! Files a host lacks leave their part empty rather than failing the whole read. The types
//! and parsers common to both versions are here; `v1` and `v2` read each version's files.

mod v1;
mod v2;

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::placement::Cgroup;

pub use v1::{parse_blkio, BlkioEntry, MemEntry, V1Blkio, V1Cpu, V1Memory, V1Stats};
pub use v2::{parse_io_stat, IoEntry, V2Memory, V2Stats};

/// Statistics of one cgroup.
#[derive(Debug, Clone, PartialEq)]
pub enum Stats {
    V1(Box<V1Stats>),
    V2(Box<V2Stats>),
}

/// pids controller: current count and limit (0 = unlimited).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pids {
    pub current: u64,
    pub limit: u64,
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

fn num(dir: &Path, file: &str) -> u64 {
    read_opt(&dir.join(file)).map_or(0, |t| parse_u64(&t))
}

/// Reads the statistics of `cg`.
pub fn read(cg: &Cgroup) -> Stats {
    if cg.v2 {
        Stats::V2(Box::new(v2::read(cg)))
    } else {
        Stats::V1(Box::new(v1::read(cg)))
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

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
}
