//! The sandbox's plain statistics as containerd's cgroups Metrics protos, packed in an Any
//! with the type URL containerd's typeurl registry knows (`io.containerd.cgroups.v1.Metrics`
//! / `io.containerd.cgroups.v2.Metrics`, the messages' full names).

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use mypod_sandbox::cgroup::stats::{self, Stats};

use crate::error::ServiceError;

/// The type URLs: the messages' full names (package io.containerd.cgroups.v1 / .v2).
/// Written out rather than taken from the descriptors: building protobuf descriptors by
/// reflection costs heap that a shim would keep for its lifetime.
const V1_TYPE: &str = "io.containerd.cgroups.v1.Metrics";
const V2_TYPE: &str = "io.containerd.cgroups.v2.Metrics";

/// Packs `s` into an Any.
pub fn to_any(s: &Stats) -> Result<Any, ServiceError> {
    let (type_url, value) = match s {
        Stats::V1(s) => (V1_TYPE, v1_metrics(s).write_to_bytes()),
        Stats::V2(s) => (V2_TYPE, v2_metrics(s).write_to_bytes()),
    };
    let mut any = Any::new();
    any.type_url = type_url.to_string();
    any.value = value.map_err(|e| ServiceError::Internal(format!("encode metrics: {e}")))?;
    Ok(any)
}

fn entry(e: &stats::MemEntry) -> MessageField<v1::MemoryEntry> {
    let mut m = v1::MemoryEntry::new();
    m.limit = e.limit;
    m.usage = e.usage;
    m.max = e.max;
    m.failcnt = e.failcnt;
    MessageField::some(m)
}

fn blkio(list: &[stats::BlkioEntry]) -> Vec<v1::BlkIOEntry> {
    list.iter()
        .map(|e| {
            let mut b = v1::BlkIOEntry::new();
            b.op = e.op.clone();
            b.device = e.device.clone();
            b.major = e.major;
            b.minor = e.minor;
            b.value = e.value;
            b
        })
        .collect()
}

/// v1 Metrics from the v1 statistics.
pub fn v1_metrics(s: &stats::V1Stats) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    if let Some(mem) = &s.memory {
        let g = |k: &str| mem.stat.get(k).copied().unwrap_or(0);
        let mut ms = v1::MemoryStat::new();
        ms.cache = g("cache");
        ms.rss = g("rss");
        ms.rss_huge = g("rss_huge");
        ms.mapped_file = g("mapped_file");
        ms.dirty = g("dirty");
        ms.writeback = g("writeback");
        ms.pg_pg_in = g("pgpgin");
        ms.pg_pg_out = g("pgpgout");
        ms.pg_fault = g("pgfault");
        ms.pg_maj_fault = g("pgmajfault");
        ms.inactive_anon = g("inactive_anon");
        ms.active_anon = g("active_anon");
        ms.inactive_file = g("inactive_file");
        ms.active_file = g("active_file");
        ms.unevictable = g("unevictable");
        ms.hierarchical_memory_limit = g("hierarchical_memory_limit");
        ms.hierarchical_swap_limit = g("hierarchical_memsw_limit");
        ms.total_cache = g("total_cache");
        ms.total_rss = g("total_rss");
        ms.total_rss_huge = g("total_rss_huge");
        ms.total_mapped_file = g("total_mapped_file");
        ms.total_dirty = g("total_dirty");
        ms.total_writeback = g("total_writeback");
        ms.total_pg_pg_in = g("total_pgpgin");
        ms.total_pg_pg_out = g("total_pgpgout");
        ms.total_pg_fault = g("total_pgfault");
        ms.total_pg_maj_fault = g("total_pgmajfault");
        ms.total_inactive_anon = g("total_inactive_anon");
        ms.total_active_anon = g("total_active_anon");
        ms.total_inactive_file = g("total_inactive_file");
        ms.total_active_file = g("total_active_file");
        ms.total_unevictable = g("total_unevictable");
        ms.usage = entry(&mem.usage);
        ms.swap = entry(&mem.swap);
        ms.kernel = entry(&mem.kernel);
        ms.kernel_tcp = entry(&mem.kernel_tcp);
        m.memory = MessageField::some(ms);
        if !mem.oom_control.is_empty() {
            let o = |k: &str| mem.oom_control.get(k).copied().unwrap_or(0);
            let mut oc = v1::MemoryOomControl::new();
            oc.oom_kill_disable = o("oom_kill_disable");
            oc.under_oom = o("under_oom");
            oc.oom_kill = o("oom_kill");
            m.memory_oom_control = MessageField::some(oc);
        }
    }
    if let Some(c) = &s.cpu {
        let mut u = v1::CPUUsage::new();
        u.total = c.total;
        u.per_cpu = c.per_cpu.clone();
        u.user = c.user;
        u.kernel = c.kernel;
        let mut t = v1::Throttle::new();
        t.periods = c.periods;
        t.throttled_periods = c.throttled_periods;
        t.throttled_time = c.throttled_time;
        let mut cs = v1::CPUStat::new();
        cs.usage = MessageField::some(u);
        cs.throttling = MessageField::some(t);
        m.cpu = MessageField::some(cs);
    }
    if let Some(p) = &s.pids {
        let mut ps = v1::PidsStat::new();
        ps.current = p.current;
        ps.limit = p.limit;
        m.pids = MessageField::some(ps);
    }
    if let Some(b) = &s.blkio {
        let mut bs = v1::BlkIOStat::new();
        bs.io_service_bytes_recursive = blkio(&b.io_service_bytes);
        bs.io_serviced_recursive = blkio(&b.io_serviced);
        bs.io_queued_recursive = blkio(&b.io_queued);
        bs.io_service_time_recursive = blkio(&b.io_service_time);
        bs.io_wait_time_recursive = blkio(&b.io_wait_time);
        bs.io_merged_recursive = blkio(&b.io_merged);
        bs.io_time_recursive = blkio(&b.io_time);
        bs.sectors_recursive = blkio(&b.sectors);
        m.blkio = MessageField::some(bs);
    }
    for h in &s.hugetlb {
        let mut hs = v1::HugetlbStat::new();
        hs.usage = h.usage;
        hs.max = h.max;
        hs.failcnt = h.failcnt;
        hs.pagesize = h.pagesize.clone();
        m.hugetlb.push(hs);
    }
    m
}

/// v2 Metrics from the v2 statistics.
pub fn v2_metrics(s: &stats::V2Stats) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    if let Some(mem) = &s.memory {
        let g = |k: &str| mem.stat.get(k).copied().unwrap_or(0);
        let mut ms = v2::MemoryStat::new();
        ms.anon = g("anon");
        ms.file = g("file");
        ms.kernel_stack = g("kernel_stack");
        ms.slab = g("slab");
        ms.sock = g("sock");
        ms.shmem = g("shmem");
        ms.file_mapped = g("file_mapped");
        ms.file_dirty = g("file_dirty");
        ms.file_writeback = g("file_writeback");
        ms.anon_thp = g("anon_thp");
        ms.inactive_anon = g("inactive_anon");
        ms.active_anon = g("active_anon");
        ms.inactive_file = g("inactive_file");
        ms.active_file = g("active_file");
        ms.unevictable = g("unevictable");
        ms.slab_reclaimable = g("slab_reclaimable");
        ms.slab_unreclaimable = g("slab_unreclaimable");
        ms.pgfault = g("pgfault");
        ms.pgmajfault = g("pgmajfault");
        ms.workingset_refault = g("workingset_refault_file") + g("workingset_refault");
        ms.workingset_activate = g("workingset_activate_file") + g("workingset_activate");
        ms.workingset_nodereclaim = g("workingset_nodereclaim");
        ms.pgrefill = g("pgrefill");
        ms.pgscan = g("pgscan");
        ms.pgsteal = g("pgsteal");
        ms.pgactivate = g("pgactivate");
        ms.pgdeactivate = g("pgdeactivate");
        ms.pglazyfree = g("pglazyfree");
        ms.pglazyfreed = g("pglazyfreed");
        ms.thp_fault_alloc = g("thp_fault_alloc");
        ms.thp_collapse_alloc = g("thp_collapse_alloc");
        ms.usage = mem.usage;
        ms.usage_limit = mem.usage_limit;
        ms.swap_usage = mem.swap_usage;
        ms.swap_limit = mem.swap_limit;
        ms.max_usage = mem.max_usage;
        ms.swap_max_usage = mem.swap_max_usage;
        m.memory = MessageField::some(ms);
    }
    if let Some(ev) = &s.memory_events {
        let g = |k: &str| ev.get(k).copied().unwrap_or(0);
        let mut e = v2::MemoryEvents::new();
        e.low = g("low");
        e.high = g("high");
        e.max = g("max");
        e.oom = g("oom");
        e.oom_kill = g("oom_kill");
        e.oom_group_kill = g("oom_group_kill");
        m.memory_events = MessageField::some(e);
    }
    if let Some(c) = &s.cpu {
        let g = |k: &str| c.get(k).copied().unwrap_or(0);
        let mut cs = v2::CPUStat::new();
        cs.usage_usec = g("usage_usec");
        cs.user_usec = g("user_usec");
        cs.system_usec = g("system_usec");
        cs.nr_periods = g("nr_periods");
        cs.nr_throttled = g("nr_throttled");
        cs.throttled_usec = g("throttled_usec");
        cs.nr_bursts = g("nr_bursts");
        cs.burst_usec = g("burst_usec");
        m.cpu = MessageField::some(cs);
    }
    if let Some(p) = &s.pids {
        let mut ps = v2::PidsStat::new();
        ps.current = p.current;
        ps.limit = p.limit;
        m.pids = MessageField::some(ps);
    }
    if !s.io.is_empty() {
        let mut io = v2::IOStat::new();
        for e in &s.io {
            let mut x = v2::IOEntry::new();
            x.major = e.major;
            x.minor = e.minor;
            x.rbytes = e.rbytes;
            x.wbytes = e.wbytes;
            x.rios = e.rios;
            x.wios = e.wios;
            io.usage.push(x);
        }
        m.io = MessageField::some(io);
    }
    for h in &s.hugetlb {
        let mut hs = v2::HugeTlbStat::new();
        hs.current = h.usage;
        hs.max = h.max;
        hs.failcnt = h.failcnt;
        hs.pagesize = h.pagesize.clone();
        m.hugetlb.push(hs);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_urls_are_what_containerd_registers() {
        let a = to_any(&Stats::V1(Box::default())).unwrap();
        assert_eq!(a.type_url, "io.containerd.cgroups.v1.Metrics");
        let a = to_any(&Stats::V2(Box::default())).unwrap();
        assert_eq!(a.type_url, "io.containerd.cgroups.v2.Metrics");
        use containerd_shim_protos::protobuf::MessageFull;
        assert_eq!(V1_TYPE, v1::Metrics::descriptor().full_name());
        assert_eq!(V2_TYPE, v2::Metrics::descriptor().full_name());
    }

    #[test]
    fn v1_memory_keys_map() {
        let mut s = stats::V1Stats::default();
        let mut mem = stats::V1Memory::default();
        mem.stat.insert("total_inactive_file".into(), 7);
        mem.stat.insert("pgpgin".into(), 3);
        mem.usage.usage = 100;
        s.memory = Some(mem);
        let m = v1_metrics(&s);
        assert_eq!(m.memory.total_inactive_file, 7);
        assert_eq!(m.memory.pg_pg_in, 3);
        assert_eq!(m.memory.usage.usage, 100);
    }
}
