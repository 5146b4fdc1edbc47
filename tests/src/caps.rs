//! Linux capability names and the bit masks /proc/PID/status shows for them.

use serde_json::Value;

/// Capability names in bit order (linux/capability.h), CAP_CHOWN = bit 0.
pub const NAMES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// containerd's default capability set (oci.defaultUnixCaps): bits 0x00000000a80425fb.
pub const DEFAULT_MASK: u64 = 0x0000_0000_a804_25fb;

pub fn bit(name: &str) -> Option<u32> {
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

/// The mask of a list of capability names; names this table does not know are returned apart.
pub fn mask_of<'a>(names: impl IntoIterator<Item = &'a str>) -> (u64, Vec<String>) {
    let mut mask = 0;
    let mut unknown = Vec::new();
    for n in names {
        match bit(n) {
            Some(b) => mask |= 1u64 << b,
            None => unknown.push(n.to_string()),
        }
    }
    (mask, unknown)
}

/// The mask of one set (`bounding`, `effective`, ...) of an OCI spec's process.capabilities;
/// an absent set is empty.
pub fn spec_mask(spec: &Value, set: &str) -> u64 {
    let names = spec["process"]["capabilities"][set]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    let (mask, unknown) = mask_of(names);
    assert!(
        unknown.is_empty(),
        "spec names capabilities this test does not know: {unknown:?}"
    );
    mask
}

/// Parses a `CapBnd:` style hex value.
pub fn parse_hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim(), 16)
        .unwrap_or_else(|e| panic!("not a capability mask: {s:?}: {e}"))
}

/// Names of the bits set in `mask`, for messages.
pub fn names_of(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| {
            NAMES
                .get(b)
                .map_or_else(|| format!("bit{b}"), |n| n.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_mask_matches_names() {
        let default = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
        ];
        assert_eq!(mask_of(default), (DEFAULT_MASK, vec![]));
        assert_eq!(names_of(DEFAULT_MASK).len(), 14);
    }
}
