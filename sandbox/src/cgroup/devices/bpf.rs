//! Device rules on cgroup v2: cgroup v2 has no devices controller, so the rules become a
//! small eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the container's
//! cgroup, as runc does. Without it a container holding CAP_MKNOD could create and open
//! any device node of the host.
//!
//! The program checks the rules from the last to the first (a later rule overrides an
//! earlier one, as v1's devices.allow/deny writes do); the first that matches decides;
//! none matching denies. Attached without BPF_F_ALLOW_MULTI, so attaching again (Update)
//! replaces the program.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Errors building, loading or attaching the program.
#[derive(Debug, thiserror::Error)]
pub enum DeviceFilterError {
    #[error("device rule {0:?}: cannot be expressed")]
    Rule(String),
    #[error("load the device filter (bpf BPF_PROG_LOAD): {source}; verifier: {log}")]
    Load { source: std::io::Error, log: String },
    #[error("attach the device filter to {path}: {source}")]
    Attach {
        path: String,
        source: std::io::Error,
    },
}

/// One rule in v1 syntax terms: type 'a', 'b' or 'c'; None for a `*` number; access bits
/// (mknod 1, read 2, write 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    pub typ: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u32,
}

impl Rule {
    /// Parses a v1-style rule ("c 1:3 rwm", "a *:* rwm", "b *:* m").
    pub fn parse(allow: bool, text: &str) -> Result<Rule, DeviceFilterError> {
        let bad = || DeviceFilterError::Rule(text.to_string());
        let mut parts = text.split_whitespace();
        let typ = parts
            .next()
            .and_then(|t| t.chars().next())
            .ok_or_else(bad)?;
        if !matches!(typ, 'a' | 'b' | 'c') {
            return Err(bad());
        }
        let (major, minor) = match parts.next() {
            Some(nums) => {
                let (ma, mi) = nums.split_once(':').ok_or_else(bad)?;
                let num = |s: &str| -> Result<Option<u32>, DeviceFilterError> {
                    if s == "*" {
                        Ok(None)
                    } else {
                        s.parse().map(Some).map_err(|_| bad())
                    }
                };
                (num(ma)?, num(mi)?)
            }
            None => (None, None),
        };
        let mut access = 0;
        for ch in parts.next().unwrap_or("rwm").chars() {
            access |= match ch {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                _ => return Err(bad()),
            };
        }
        Ok(Rule {
            allow,
            typ,
            major,
            minor,
            access,
        })
    }
}

/// struct bpf_insn.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

const LDX_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const AND_K: u8 = 0x57; // BPF_ALU64 | BPF_AND | BPF_K
const RSH_K: u8 = 0x77; // BPF_ALU64 | BPF_RSH | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

/// The program for `rules` (in spec order). Registers: r2 device type (1 block, 2 char),
/// r3 requested access bits, r4 major, r5 minor, r6 scratch.
fn program(rules: &[Rule]) -> Vec<Insn> {
    let mut p = vec![
        // struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
        insn(LDX_W, 2, 1, 0, 0),
        insn(MOV_X, 3, 2, 0, 0),
        insn(AND_K, 2, 0, 0, 0xffff),
        insn(RSH_K, 3, 0, 0, 16),
        insn(LDX_W, 4, 1, 4, 0),
        insn(LDX_W, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Each check jumps to the end of this rule's block when it does not match.
        let mut block: Vec<(Insn, bool)> = Vec::new();
        match r.typ {
            'b' => block.push((insn(JNE_K, 2, 0, 0, 1), true)),
            'c' => block.push((insn(JNE_K, 2, 0, 0, 2), true)),
            _ => {}
        }
        if let Some(m) = r.major {
            block.push((insn(JNE_K, 4, 0, 0, m as i32), true));
        }
        if let Some(m) = r.minor {
            block.push((insn(JNE_K, 5, 0, 0, m as i32), true));
        }
        block.push((insn(MOV_X, 6, 3, 0, 0), false));
        if r.allow {
            // Every requested access must be allowed by the rule.
            block.push((insn(AND_K, 6, 0, 0, (!r.access & 7) as i32), false));
            block.push((insn(JNE_K, 6, 0, 0, 0), true));
        } else {
            // Any requested access the rule denies.
            block.push((insn(AND_K, 6, 0, 0, r.access as i32), false));
            block.push((insn(JEQ_K, 6, 0, 0, 0), true));
        }
        block.push((insn(MOV_K, 0, 0, 0, r.allow as i32), false));
        block.push((insn(EXIT, 0, 0, 0, 0), false));
        let len = block.len();
        for (i, (mut ins, jumps)) in block.into_iter().enumerate() {
            if jumps {
                ins.off = (len - i - 1) as i16;
            }
            p.push(ins);
        }
    }
    p.push(insn(MOV_K, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: bpf(2) reads (and for PROG_LOAD's log, writes through a pointer we set to a
    // live buffer) at most attr.len() bytes of a zero-initialised attribute block.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r)
}

fn put32(a: &mut [u8; 128], at: usize, v: u32) {
    a[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put64(a: &mut [u8; 128], at: usize, v: u64) {
    a[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// Builds the program for `rules` and attaches it to the cgroup v2 directory `dir`,
/// replacing one attached before.
pub fn apply(dir: &Path, rules: &[Rule]) -> Result<(), DeviceFilterError> {
    let prog = program(rules);
    let license = CString::new("Apache").unwrap_or_default();
    let load = |log: Option<&mut Vec<u8>>| {
        let mut attr = [0u8; 128];
        put32(&mut attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE);
        put32(&mut attr, 4, prog.len() as u32);
        put64(&mut attr, 8, prog.as_ptr() as u64);
        put64(&mut attr, 16, license.as_ptr() as u64);
        if let Some(log) = log {
            put32(&mut attr, 24, 1); // log_level
            put32(&mut attr, 28, log.len() as u32);
            put64(&mut attr, 32, log.as_mut_ptr() as u64);
        }
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    // Loaded without a verifier log (a log too small for the program fails the load with
    // ENOSPC); on failure loaded again with one, for the error message.
    let fd = match load(None) {
        Ok(fd) => fd,
        Err(source) => {
            let mut log = vec![0u8; 1 << 16];
            let _ = load(Some(&mut log));
            let text = String::from_utf8_lossy(&log);
            let text = text.trim_end_matches('\0').trim();
            // The verifier's last lines say why.
            let tail: Vec<&str> = text.lines().rev().take(4).collect();
            return Err(DeviceFilterError::Load {
                source,
                log: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            });
        }
    };
    // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attach_err = |source| DeviceFilterError::Attach {
        path: dir.display().to_string(),
        source,
    };
    let cg = std::fs::File::open(dir).map_err(attach_err)?;
    let mut attr = [0u8; 128];
    put32(&mut attr, 0, cg.as_raw_fd() as u32);
    put32(&mut attr, 4, prog_fd.as_raw_fd() as u32);
    put32(&mut attr, 8, BPF_CGROUP_DEVICE);
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(attach_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on (type, access, major, minor), a tiny interpreter of the
    /// instructions `program` emits, so the rule logic is checked without the kernel.
    fn run(p: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> u64 {
        let mut r = [0u64; 11];
        let ctx = [(access << 16) | typ, major, minor];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (d, s) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[d] = ctx[i.off as usize / 4] as u64,
                MOV_X => r[d] = r[s],
                MOV_K => r[d] = i.imm as i64 as u64,
                AND_K => r[d] &= i.imm as i64 as u64,
                RSH_K => r[d] >>= i.imm,
                JNE_K if r[d] != i.imm as i64 as u64 => pc += i.off as usize,
                JEQ_K if r[d] == i.imm as i64 as u64 => pc += i.off as usize,
                JNE_K | JEQ_K => {}
                EXIT => return r[0],
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
    }

    fn rules(list: &[(bool, &str)]) -> Vec<Rule> {
        list.iter()
            .map(|(a, t)| Rule::parse(*a, t).unwrap())
            .collect()
    }

    #[test]
    fn later_rules_override_earlier_ones() {
        let p = program(&rules(&[
            (false, "a *:* rwm"),
            (true, "c 1:3 rwm"),
            (true, "c *:* m"),
            (true, "c 136:* rw"),
            (false, "c 1:3 w"),
        ]));
        const M: u32 = 1;
        const R: u32 = 2;
        const W: u32 = 4;
        assert_eq!(run(&p, 2, R, 1, 3), 1, "read /dev/null");
        assert_eq!(
            run(&p, 2, W, 1, 3),
            0,
            "write /dev/null: denied by the last rule"
        );
        assert_eq!(run(&p, 2, R | W, 1, 3), 0, "read+write needs write too");
        assert_eq!(run(&p, 2, M, 8, 0), 1, "mknod of any char device");
        assert_eq!(run(&p, 1, M, 8, 0), 0, "mknod of a block device");
        assert_eq!(run(&p, 1, R, 7, 0), 0, "read /dev/loop0");
        assert_eq!(run(&p, 2, R | W, 136, 5), 1, "a pty");
        assert_eq!(run(&p, 2, M | R, 136, 5), 0, "mknod is not in 136:* rw");
    }

    #[test]
    fn rules_parse_like_v1() {
        assert_eq!(
            Rule::parse(true, "b 7:* rw").unwrap(),
            Rule {
                allow: true,
                typ: 'b',
                major: Some(7),
                minor: None,
                access: 6
            }
        );
        assert!(Rule::parse(true, "x 1:2 r").is_err());
        assert!(Rule::parse(true, "c 1:2 q").is_err());
        let p = program(&rules(&[(true, "a")]));
        assert_eq!(run(&p, 1, 7, 259, 1), 1, "a bare 'a' allows everything");
    }
}
