//! The classic BPF program itself: libseccomp's export read back through a memfd, and
//! runc's -ENOSYS stub put in front of it, so that syscalls newer than the profile get
//! ENOSYS (a libc then falls back) instead of the default action.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use libseccomp::{ScmpArch, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction};

use super::{invalid, SeccompError};

/// runc's rule: the stub only matters when the default action denies; skipped too when the
/// default already returns ENOSYS.
pub(super) fn needs_enosys_stub(sc: &LinuxSeccomp) -> bool {
    match sc.default_action() {
        LinuxSeccompAction::ScmpActAllow
        | LinuxSeccompAction::ScmpActLog
        | LinuxSeccompAction::ScmpActTrace => false,
        LinuxSeccompAction::ScmpActErrno => sc.default_errno_ret() != Some(libc::ENOSYS as u32),
        _ => true,
    }
}

/// libseccomp's BPF program for `ctx`, read back through a memfd.
pub(super) fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let fd = nix::sys::memfd::memfd_create(
        c"mypod-seccomp",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(|errno| SeccompError::Sys {
        what: "linux.seccomp: memfd_create for the BPF export".into(),
        errno,
    })?;
    let mut file = File::from(fd);
    ctx.export_bpf(&file)
        .map_err(|e| invalid(format_args!("export the BPF program: {e}")))?;
    let mut raw = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut raw))
        .map_err(|e| invalid(format_args!("read the exported BPF program: {e}")))?;
    parse_bpf(&raw)
}

/// Parses a native-endian array of `struct sock_filter`.
fn parse_bpf(raw: &[u8]) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let insns = raw.chunks_exact(8);
    if raw.is_empty() || !insns.remainder().is_empty() {
        return Err(invalid(format_args!(
            "libseccomp exported a BPF program of {} bytes",
            raw.len()
        )));
    }
    Ok(insns
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

// Classic BPF opcodes and seccomp_data offsets used by the stub.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGT_K: u16 = 0x25;
const BPF_JMP_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_S390: u32 = 0x0000_0016;
const AUDIT_ARCH_S390X: u32 = 0x8000_0016;

/// The kernel's AUDIT_ARCH_* of a libseccomp architecture (x32 shares x86-64's; its
/// syscall numbers carry X32_SYSCALL_BIT).
fn audit_arch(a: ScmpArch) -> Option<u32> {
    Some(match a {
        ScmpArch::X86 => 0x4000_0003,
        ScmpArch::X8664 | ScmpArch::X32 => AUDIT_ARCH_X86_64,
        ScmpArch::Arm => 0x4000_0028,
        ScmpArch::Aarch64 => 0xc000_00b7,
        ScmpArch::Mips => 0x0000_0008,
        ScmpArch::Mips64 => 0x8000_0008,
        ScmpArch::Mips64N32 => 0xa000_0008,
        ScmpArch::Mipsel => 0x4000_0008,
        ScmpArch::Mipsel64 => 0xc000_0008,
        ScmpArch::Mipsel64N32 => 0xe000_0008,
        ScmpArch::Ppc => 0x0000_0014,
        ScmpArch::Ppc64 => 0x8000_0015,
        ScmpArch::Ppc64Le => 0xc000_0015,
        ScmpArch::S390 => AUDIT_ARCH_S390,
        ScmpArch::S390X => AUDIT_ARCH_S390X,
        ScmpArch::Riscv64 => 0xc000_00f3,
        _ => return None,
    })
}

/// Per AUDIT_ARCH, the largest syscall number the profile names, per libseccomp
/// architecture (x86-64 and x32 share one AUDIT_ARCH). Only the listed architectures
/// count, as in runc; an architecture none of the names resolve on is left out.
pub(super) type LastSyscalls = BTreeMap<u32, Vec<(ScmpArch, u32)>>;

pub(super) fn last_syscalls(
    arches: &[ScmpArch],
    names: &[&str],
) -> Result<LastSyscalls, SeccompError> {
    let mut out = LastSyscalls::new();
    for &a in arches {
        let audit = audit_arch(a).ok_or_else(|| {
            invalid(format_args!(
                "architectures: no AUDIT_ARCH for {a:?} (needed for the ENOSYS stub)"
            ))
        })?;
        let entry = out.entry(audit).or_default();
        if entry.iter().any(|(seen, _)| *seen == a) {
            continue;
        }
        let largest = names
            .iter()
            .filter_map(|n| ScmpSyscall::from_name_by_arch(n, a).ok())
            .map(|s| s.as_raw_syscall())
            .max()
            .unwrap_or(0);
        if largest > 0 {
            entry.push((a, largest as u32));
        }
    }
    out.retain(|_, v| !v.is_empty());
    Ok(out)
}

/// A jump target in the stub.
#[derive(Clone, Copy)]
enum To {
    /// The next instruction.
    Next,
    /// Skip this many instructions.
    Skip(usize),
    /// The `ret ENOSYS` at the end of the stub.
    Enosys,
    /// The first instruction of libseccomp's program, right after the stub.
    Filter,
    /// The section of the n-th architecture.
    Section(usize),
}

enum Ins {
    Load(u32),
    Jump(To),
    /// Conditional jump: (opcode, k, true, false).
    If(u16, u32, To, To),
    Ret(u32),
}

/// runc's -ENOSYS stub: for each architecture with a known largest syscall, a syscall
/// numbered above it returns ENOSYS; everything else falls through to the filter.
pub(super) fn enosys_stub(last: &LastSyscalls) -> Result<Vec<libc::sock_filter>, SeccompError> {
    if last.is_empty() {
        return Ok(Vec::new());
    }
    let mut ins = vec![Ins::Load(OFFSET_ARCH)];
    for (i, audit) in last.keys().enumerate() {
        ins.push(Ins::If(BPF_JMP_JEQ_K, *audit, To::Section(i), To::Next));
    }
    ins.push(Ins::Jump(To::Filter));
    let mut sections = Vec::new();
    for (audit, maxes) in last {
        sections.push(ins.len());
        ins.push(Ins::Load(OFFSET_NR));
        match maxes.as_slice() {
            [(a, max)] => {
                if *audit == AUDIT_ARCH_S390 || *audit == AUDIT_ARCH_S390X {
                    // Unknown "large" syscalls end up as setup(2), number 0, on s390(x).
                    ins.push(Ins::If(BPF_JMP_JEQ_K, 0, To::Enosys, To::Next));
                }
                if *audit == AUDIT_ARCH_X86_64 {
                    // Only one of the two ABIs is listed: the other goes to the filter.
                    let (t, f) = match a {
                        ScmpArch::X32 => (To::Next, To::Filter),
                        _ => (To::Filter, To::Next),
                    };
                    ins.push(Ins::If(BPF_JMP_JSET_K, X32_SYSCALL_BIT, t, f));
                }
                ins.push(Ins::If(BPF_JMP_JGT_K, *max, To::Enosys, To::Filter));
            }
            [_, _] if *audit == AUDIT_ARCH_X86_64 => {
                let find = |want: ScmpArch| {
                    maxes
                        .iter()
                        .find(|(a, _)| *a == want)
                        .map(|(_, m)| *m)
                        .ok_or_else(|| invalid("ENOSYS stub: x86-64 overlap without x32"))
                };
                let (x32, x86_64) = (find(ScmpArch::X32)?, find(ScmpArch::X8664)?);
                ins.push(Ins::If(
                    BPF_JMP_JSET_K,
                    X32_SYSCALL_BIT,
                    To::Next,
                    To::Skip(1),
                ));
                ins.push(Ins::If(BPF_JMP_JGT_K, x32, To::Enosys, To::Filter));
                ins.push(Ins::If(BPF_JMP_JGT_K, x86_64, To::Enosys, To::Filter));
            }
            other => {
                return Err(invalid(format_args!(
                "ENOSYS stub: unexpected architecture overlap {other:?} on AUDIT_ARCH {audit:#x}"
            )))
            }
        }
    }
    let enosys = ins.len();
    ins.push(Ins::Ret(SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
    let filter = ins.len();
    let target = |at: usize, to: To| -> usize {
        match to {
            To::Next => at + 1,
            To::Skip(n) => at + 1 + n,
            To::Enosys => enosys,
            To::Filter => filter,
            To::Section(i) => sections[i],
        }
    };
    let short = |at: usize, to: To| -> Result<u8, SeccompError> {
        u8::try_from(target(at, to) - at - 1)
            .map_err(|_| invalid("ENOSYS stub: a jump is longer than 255 instructions"))
    };
    ins.iter()
        .enumerate()
        .map(|(at, i)| {
            Ok(match *i {
                Ins::Load(off) => insn(BPF_LD_W_ABS, 0, 0, off),
                Ins::Jump(to) => insn(BPF_JMP_JA, 0, 0, (target(at, to) - at - 1) as u32),
                Ins::If(op, k, t, f) => insn(op, short(at, t)?, short(at, f)?, k),
                Ins::Ret(k) => insn(BPF_RET_K, 0, 0, k),
            })
        })
        .collect()
}

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::compiled;

    #[test]
    fn allow_default_has_no_stub_and_deny_default_has_one() {
        let allow = compiled(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],"syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        assert_eq!(allow.prog[0].k, OFFSET_ARCH);
        let deny = compiled(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],"syscalls":[{"names":["read","write","exit_group"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        let enosys = SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        assert!(
            deny.prog
                .iter()
                .any(|i| i.code == BPF_RET_K && i.k == enosys),
            "no ENOSYS return in the stub"
        );
        assert!(deny.prog.len() > allow.prog.len());
    }
}
