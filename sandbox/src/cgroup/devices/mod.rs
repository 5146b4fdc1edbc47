//! Device rules: the spec's `linux.resources.devices` followed by runc's default allow
//! list, written to the v1 devices controller (`devices.allow` / `devices.deny`) or, on
//! cgroup v2, compiled into an eBPF device filter ([`bpf`]).

pub mod bpf;

use std::fs;
use std::path::Path;

use oci_spec::runtime::LinuxDeviceCgroup;

use super::placement::{io, Cgroup, CgroupError};

impl Cgroup {
    /// Applies device rules (v1 devices controller, or on v2 an eBPF device filter): the
    /// spec's rules in order, then the defaults every container gets, as runc does. Unless
    /// the spec's first rule is about every device, "deny all" goes first, as in runc: a
    /// spec that says nothing, or only allows some, gets no device beyond its rules and the
    /// defaults (not its parent cgroup's, on v1 usually every device).
    pub fn apply_devices(&self, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
        let deny_first = rules
            .first()
            .is_none_or(|r| !device_rule(r).starts_with('a'));
        if self.v2 {
            let Some((_, dir)) = self.dirs.first() else {
                return Ok(());
            };
            let mut list = Vec::with_capacity(rules.len() + DEFAULT_ALLOWED.len() + 1);
            if deny_first {
                list.push(bpf::Rule::parse(false, DENY_ALL)?);
            }
            for r in rules {
                list.push(bpf::Rule::parse(r.allow(), &device_rule(r))?);
            }
            for rule in DEFAULT_ALLOWED {
                list.push(bpf::Rule::parse(true, rule)?);
            }
            return Ok(bpf::apply(dir, &list)?);
        }
        let Some((_, dir)) = self
            .dirs
            .iter()
            .find(|(n, _)| n.split(',').any(|c| c == "devices"))
        else {
            if !rules.is_empty() {
                log::warn!("device cgroup rules not applied: no v1 devices hierarchy");
            }
            return Ok(());
        };
        if deny_first {
            write_rule(dir, false, DENY_ALL)?;
        }
        for r in rules {
            write_rule(dir, r.allow(), &device_rule(r))?;
        }
        for rule in DEFAULT_ALLOWED {
            write_rule(dir, true, rule)?;
        }
        Ok(())
    }
}

/// Every device: what a spec without rules starts from, denied.
const DENY_ALL: &str = "a *:* rwm";

/// Device rules every container is allowed, whatever its spec denies (runc's list).
const DEFAULT_ALLOWED: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:8 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:5 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
];

fn write_rule(dir: &Path, allow: bool, rule: &str) -> Result<(), CgroupError> {
    let file = dir.join(if allow {
        "devices.allow"
    } else {
        "devices.deny"
    });
    fs::write(&file, rule).map_err(io(&file))
}

/// Formats a device rule as the v1 devices controller reads it.
pub fn device_rule(r: &LinuxDeviceCgroup) -> String {
    let typ = r
        .typ()
        .map(|t| t.as_str().to_string())
        .unwrap_or("a".into());
    if typ == "a" {
        return "a".into();
    }
    let num = |n: Option<i64>| {
        n.filter(|n| *n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    let access = r.access().clone().unwrap_or_else(|| "rwm".into());
    format!("{typ} {}:{} {access}", num(r.major()), num(r.minor()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rules_format() {
        let r: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":false,"access":"rwm"}"#).unwrap();
        assert_eq!(device_rule(&r), "a");
        let r: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":true,"type":"c","major":1,"access":"rw"}"#).unwrap();
        assert_eq!(device_rule(&r), "c 1:* rw");
    }

    /// v1, on a fake directory (each write replaces the file: the last rule stays).
    #[test]
    fn without_a_rule_for_every_device_all_are_denied_first() {
        let dir = std::env::temp_dir().join(format!("mypod-devices-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let cg = Cgroup {
            dirs: vec![("devices".into(), dir.clone())],
            v2: false,
            unified: None,
        };
        let deny = || fs::read_to_string(dir.join("devices.deny")).unwrap_or_default();
        cg.apply_devices(&[]).unwrap();
        assert_eq!(deny(), DENY_ALL);
        let allow = fs::read_to_string(dir.join("devices.allow")).unwrap();
        assert_eq!(Some(allow.as_str()), DEFAULT_ALLOWED.last().copied());
        // Only an allow rule: still denied first.
        fs::remove_file(dir.join("devices.deny")).unwrap();
        let only_allow: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}"#)
                .unwrap();
        cg.apply_devices(&[only_allow]).unwrap();
        assert_eq!(deny(), DENY_ALL);
        // A first rule about every device is the spec's own start: nothing added.
        fs::remove_file(dir.join("devices.deny")).unwrap();
        let all: LinuxDeviceCgroup =
            serde_json::from_str(r#"{"allow":true,"access":"rwm"}"#).unwrap();
        cg.apply_devices(&[all]).unwrap();
        assert_eq!(deny(), "");
        fs::remove_dir_all(&dir).unwrap();
    }
}
