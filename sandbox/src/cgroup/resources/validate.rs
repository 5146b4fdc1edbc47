//! Checking `linux.resources` before anything is written: negative limits, ranges,
//! page-size and unified file names, and the cgroup version a field needs.

use oci_spec::runtime::LinuxResources;

use super::{swap_to_v2, ResourceError, Result};

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
            // The core files move processes in (cgroup.procs: any host pid), change the
            // tree (subtree_control, type) or act on it (kill, freeze): the runtime's own.
            if k.starts_with("cgroup.") && !UNIFIED_CORE_LIMITS.contains(&k.as_str()) {
                return Err(ResourceError::Invalid {
                    field: "unified",
                    value: k.clone(),
                    reason: format!(
                        "a cgroup core file; of those only {} may be set",
                        UNIFIED_CORE_LIMITS.join(" and ")
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The `cgroup.*` files a spec's `unified` may write: limits on the container's own subtree.
const UNIFIED_CORE_LIMITS: [&str; 2] = ["cgroup.max.depth", "cgroup.max.descendants"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::resources::fake::res;

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
        for core in [
            "cgroup.procs",
            "cgroup.threads",
            "cgroup.subtree_control",
            "cgroup.kill",
        ] {
            let r = res(&format!(r#"{{"unified":{{"{core}":"1"}}}}"#));
            assert!(validate(&r, true).is_err(), "{core}");
        }
        assert!(validate(&res(r#"{"unified":{"cgroup.max.depth":"2"}}"#), true).is_ok());
        assert!(validate(
            &res(r#"{"hugepageLimits":[{"pageSize":"2MB","limit":-1}]}"#),
            true
        )
        .is_err());
    }
}
