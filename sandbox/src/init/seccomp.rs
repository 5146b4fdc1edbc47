//! `linux.seccomp`: the spec's profile compiled with libseccomp and loaded the way runc
//! does it (runc's libcontainer/seccomp and seccomp/patchbpf):
//!
//! - `SCMP_ACT_KILL` is `KILL_THREAD`; `ERRNO` and `TRACE` return `errnoRet` /
//!   `defaultErrnoRet`, EPERM when unset;
//! - every name of a `syscalls[]` entry is a rule of its own; names libseccomp does not know
//!   on this architecture are skipped; a rule whose action is the default action is skipped
//!   (libseccomp refuses those);
//! - a rule's `args` are ANDed, unless two of them test the same argument: then each
//!   condition becomes a rule of its own, so they are ORed;
//! - `flags`: `SECCOMP_FILTER_FLAG_LOG` and `_SPEC_ALLOW` are passed to seccomp(2), as is
//!   `_TSYNC` (a no-op here: the process has one thread); with no `flags` at all,
//!   `SPEC_ALLOW` is set when libseccomp and the kernel have it (runc ≥ 1.2, crun);
//! - the BPF program libseccomp generates is prefixed with runc's -ENOSYS stub: a syscall
//!   numbered above every syscall the profile names (per listed architecture) returns
//!   ENOSYS instead of the default action, so that a libc falls back from syscalls newer
//!   than the profile (clone3, fchmodat2, ...) instead of failing with EPERM. Only when
//!   the default action denies (not ALLOW, LOG or TRACE);
//! - the program is loaded with seccomp(2) (prctl(2) when there are no flags), without
//!   setting no_new_privs: that is `process.noNewPrivileges`' business.
//!
//! When the filter is loaded is the caller's choice (see `container` in mod.rs).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, Spec,
};

use super::InitError;

/// Syscalls take at most 6 arguments.
const MAX_ARGS: usize = 6;
/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
/// runc turns on libseccomp's binary-tree optimisation above this many rules.
const OPTIMIZE_ABOVE: usize = 32;

/// A compiled filter, ready to load.
#[derive(Debug)]
pub struct Filter {
    prog: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
}

fn invalid(what: impl std::fmt::Display) -> InitError {
    InitError::Invalid(format!("linux.seccomp: {what}"))
}

impl Filter {
    /// Compiles the spec's `linux.seccomp`; `None` when the spec has none.
    pub fn compile(spec: &Spec) -> Result<Option<Filter>, InitError> {
        match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(sc) => compile(sc).map(Some),
            None => Ok(None),
        }
    }

    /// Installs the filter on this process (and what it execs). Needs no_new_privs or
    /// CAP_SYS_ADMIN. Allocates nothing unless it fails.
    pub fn load(&self) -> Result<(), InitError> {
        // SAFETY: `self.prog` is a valid program of `len` instructions that outlives the
        // call; the kernel copies it.
        match unsafe { load_raw(&self.prog, self.flags) } {
            0 => Ok(()),
            errno => {
                let hint = if errno == libc::EACCES {
                    " (loading a filter needs no_new_privs or CAP_SYS_ADMIN)"
                } else {
                    ""
                };
                Err(InitError::Sys {
                    what: format!(
                        "linux.seccomp: load the filter ({} instructions, flags {:#x}) with seccomp(2){hint}",
                        self.prog.len(),
                        self.flags
                    ),
                    errno: nix::Error::from_raw(errno),
                })
            }
        }
    }
}

/// Loads `prog` with seccomp(2) (prctl(2) without flags); returns 0 or the errno.
///
/// # Safety
/// `prog` must be a complete classic BPF program; it must not be empty.
unsafe fn load_raw(prog: &[libc::sock_filter], flags: libc::c_ulong) -> i32 {
    let fprog = libc::sock_fprog {
        len: prog.len() as libc::c_ushort,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    let r = if flags == 0 {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        ) as libc::c_long
    } else {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r == 0 {
        0
    } else {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL)
    }
}

/// The libseccomp action of a spec action; `errno_ret` applies to ERRNO and TRACE.
pub fn action(a: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction, String> {
    let ret = |what: &str| -> Result<u16, String> {
        match errno_ret {
            None => Ok(libc::EPERM as u16),
            Some(v) => u16::try_from(v)
                .map_err(|_| format!("{what} {v} does not fit the 16 bits seccomp returns")),
        }
    };
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(ret("errno")?.into()),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret("trace value")?),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err("SCMP_ACT_NOTIFY is not supported by mypod yet".into())
        }
    })
}

/// The libseccomp condition of a spec argument. For SCMP_CMP_MASKED_EQ, `value` is the
/// mask and `valueTwo` the value the masked argument must equal (as in runc).
pub fn condition(a: &LinuxSeccompArg) -> Result<ScmpArgCompare, String> {
    if a.index() >= MAX_ARGS {
        return Err(format!(
            "argument index {} is out of range (0 to {})",
            a.index(),
            MAX_ARGS - 1
        ));
    }
    let op = match a.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return Ok(ScmpArgCompare::new(
                a.index() as u32,
                ScmpCompareOp::MaskedEqual(a.value()),
                a.value_two().unwrap_or(0),
            ))
        }
    };
    Ok(ScmpArgCompare::new(a.index() as u32, op, a.value()))
}

/// The libseccomp architecture of a spec architecture.
pub fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::native(),
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
    }
}

/// The seccomp(2) flags the spec asks for, and the libseccomp API level each needs.
/// With `flags` absent, SPEC_ALLOW when supported (runc ≥ 1.2 and crun do the same);
/// with `flags: []`, none.
pub fn flags(sc: &LinuxSeccomp, api: u32) -> Result<libc::c_ulong, String> {
    let Some(list) = sc.flags() else {
        return Ok(if api >= 4 {
            libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        } else {
            0
        });
    };
    let mut bits = 0;
    for f in list {
        let (bit, need) = match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => (libc::SECCOMP_FILTER_FLAG_LOG, 3),
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                (libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW, 4)
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => (libc::SECCOMP_FILTER_FLAG_TSYNC, 0),
        };
        if api < need {
            return Err(format!(
                "flags: {f} is not supported by this kernel and libseccomp (API level {api}, \
                 needs {need})"
            ));
        }
        bits |= bit;
    }
    Ok(bits)
}

fn compile(sc: &LinuxSeccomp) -> Result<Filter, InitError> {
    let default = action(sc.default_action(), sc.default_errno_ret())
        .map_err(|e| invalid(format_args!("defaultAction: {e}")))?;
    let mut ctx = ScmpFilterContext::new(default)
        .map_err(|e| invalid(format_args!("create the filter: {e}")))?;
    let mut arches = Vec::new();
    for a in sc.architectures().iter().flatten() {
        let s = arch(*a);
        ctx.add_arch(s)
            .map_err(|e| invalid(format_args!("architectures: add {a}: {e}")))?;
        arches.push(s);
    }
    let flags = flags(sc, libseccomp::get_api()).map_err(invalid)?;
    // Mirror the flags in libseccomp's attributes (this also checks libseccomp has them);
    // the program is loaded by `load` with these bits.
    if flags & libc::SECCOMP_FILTER_FLAG_LOG != 0 {
        ctx.set_ctl_log(true)
            .map_err(|e| invalid(format_args!("flags: SECCOMP_FILTER_FLAG_LOG: {e}")))?;
    }
    if flags & libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW != 0 {
        ctx.set_ctl_ssb(true)
            .map_err(|e| invalid(format_args!("flags: SECCOMP_FILTER_FLAG_SPEC_ALLOW: {e}")))?;
    }
    if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
        ctx.set_ctl_tsync(true)
            .map_err(|e| invalid(format_args!("flags: SECCOMP_FILTER_FLAG_TSYNC: {e}")))?;
    }
    ctx.set_ctl_nnp(false)
        .map_err(|e| invalid(format_args!("clear the no_new_privs attribute: {e}")))?;
    let syscalls = sc.syscalls().as_deref().unwrap_or_default();
    let rules: usize = syscalls.iter().map(|s| s.names().len()).sum();
    if rules > OPTIMIZE_ABOVE {
        // Not fatal: an older libseccomp only builds a slower (linear) filter.
        let _ = ctx.set_ctl_optimize(2);
    }
    for (i, call) in syscalls.iter().enumerate() {
        let field = format!("syscalls[{i}]");
        let act = action(call.action(), call.errno_ret())
            .map_err(|e| invalid(format_args!("{field}.action: {e}")))?;
        let args = call.args().as_deref().unwrap_or_default();
        let conds = args
            .iter()
            .enumerate()
            .map(|(j, a)| condition(a).map_err(|e| invalid(format_args!("{field}.args[{j}]: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let mut per_index = [0usize; MAX_ARGS];
        for a in args {
            per_index[a.index()] += 1;
        }
        let split = per_index.iter().any(|&n| n > 1);
        for name in call.names() {
            if name.is_empty() {
                return Err(invalid(format_args!(
                    "{field}.names: an empty string is not a syscall"
                )));
            }
            if act == default {
                continue;
            }
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                // Not a syscall of this architecture (or newer than libseccomp): skipped.
                continue;
            };
            let add = |ctx: &mut ScmpFilterContext, c: &[ScmpArgCompare]| {
                ctx.add_rule_conditional(act, nr, c)
                    .map(|_| ())
                    .map_err(|e| invalid(format_args!("{field}: add the rule for {name}: {e}")))
            };
            if split {
                for c in &conds {
                    add(&mut ctx, std::slice::from_ref(c))?;
                }
            } else {
                add(&mut ctx, &conds)?;
            }
        }
    }
    let mut prog = Vec::new();
    if needs_enosys_stub(sc) {
        let names: Vec<&str> = syscalls
            .iter()
            .flat_map(|s| s.names().iter().map(String::as_str))
            .collect();
        prog = enosys_stub(&last_syscalls(&arches, &names)?)?;
    }
    prog.extend(export(&ctx)?);
    if prog.len() > MAX_INSNS {
        return Err(invalid(format_args!(
            "the filter has {} BPF instructions, more than the kernel's limit of {MAX_INSNS}",
            prog.len()
        )));
    }
    Ok(Filter { prog, flags })
}

/// runc's rule: the stub only matters when the default action denies; skipped too when the
/// default already returns ENOSYS.
fn needs_enosys_stub(sc: &LinuxSeccomp) -> bool {
    match sc.default_action() {
        LinuxSeccompAction::ScmpActAllow
        | LinuxSeccompAction::ScmpActLog
        | LinuxSeccompAction::ScmpActTrace => false,
        LinuxSeccompAction::ScmpActErrno => sc.default_errno_ret() != Some(libc::ENOSYS as u32),
        _ => true,
    }
}

/// libseccomp's BPF program for `ctx`, read back through a memfd.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, InitError> {
    // SAFETY: memfd_create with a NUL-terminated name; the fd it returns is ours alone.
    let fd = unsafe { libc::memfd_create(c"mypod-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(InitError::Sys {
            what: "linux.seccomp: memfd_create for the BPF export".into(),
            errno: nix::Error::last(),
        });
    }
    // SAFETY: fd is a fresh descriptor nothing else owns.
    let mut file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file)
        .map_err(|e| invalid(format_args!("export the BPF program: {e}")))?;
    let mut raw = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut raw))
        .map_err(|e| invalid(format_args!("read the exported BPF program: {e}")))?;
    parse_bpf(&raw)
}

/// Parses a native-endian array of `struct sock_filter`.
fn parse_bpf(raw: &[u8]) -> Result<Vec<libc::sock_filter>, InitError> {
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
type LastSyscalls = BTreeMap<u32, Vec<(ScmpArch, u32)>>;

fn last_syscalls(arches: &[ScmpArch], names: &[&str]) -> Result<LastSyscalls, InitError> {
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
fn enosys_stub(last: &LastSyscalls) -> Result<Vec<libc::sock_filter>, InitError> {
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
    let short = |at: usize, to: To| -> Result<u8, InitError> {
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

    fn spec(seccomp: &str) -> Spec {
        let json = format!(
            r#"{{"ociVersion":"1.0.2","process":{{"args":["/bin/true"],"cwd":"/","user":{{"uid":0,"gid":0}}}},"root":{{"path":"rootfs"}},"linux":{{"seccomp":{seccomp}}}}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    fn compiled(seccomp: &str) -> Filter {
        Filter::compile(&spec(seccomp)).unwrap().unwrap()
    }

    #[test]
    fn no_seccomp_no_filter() {
        let s: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"/","user":{"uid":0,"gid":0}},"root":{"path":"rootfs"}}"#,
        )
        .unwrap();
        assert!(Filter::compile(&s).unwrap().is_none());
    }

    #[test]
    fn actions_map_like_runc() {
        use LinuxSeccompAction::*;
        assert_eq!(action(ScmpActKill, None).unwrap(), ScmpAction::KillThread);
        assert_eq!(
            action(ScmpActKillThread, None).unwrap(),
            ScmpAction::KillThread
        );
        assert_eq!(
            action(ScmpActKillProcess, None).unwrap(),
            ScmpAction::KillProcess
        );
        assert_eq!(
            action(ScmpActErrno, None).unwrap(),
            ScmpAction::Errno(libc::EPERM)
        );
        assert_eq!(
            action(ScmpActErrno, Some(38)).unwrap(),
            ScmpAction::Errno(38)
        );
        assert_eq!(action(ScmpActTrace, None).unwrap(), ScmpAction::Trace(1));
        assert_eq!(action(ScmpActTrace, Some(7)).unwrap(), ScmpAction::Trace(7));
        assert_eq!(action(ScmpActAllow, Some(7)).unwrap(), ScmpAction::Allow);
        assert!(action(ScmpActErrno, Some(70000))
            .unwrap_err()
            .contains("70000"));
        assert!(action(ScmpActNotify, None)
            .unwrap_err()
            .contains("SCMP_ACT_NOTIFY"));
    }

    #[test]
    fn flags_default_to_spec_allow_when_absent_only() {
        let absent: LinuxSeccomp =
            serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#).unwrap();
        assert_eq!(
            flags(&absent, 6).unwrap(),
            libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
        );
        assert_eq!(flags(&absent, 3).unwrap(), 0);
        let empty: LinuxSeccomp =
            serde_json::from_str(r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":[]}"#).unwrap();
        assert_eq!(flags(&empty, 6).unwrap(), 0);
        let all: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_TSYNC"]}"#,
        )
        .unwrap();
        assert_eq!(
            flags(&all, 6).unwrap(),
            libc::SECCOMP_FILTER_FLAG_LOG | libc::SECCOMP_FILTER_FLAG_TSYNC
        );
        let e = flags(&all, 2).unwrap_err();
        assert!(e.contains("SECCOMP_FILTER_FLAG_LOG"), "{e}");
    }

    #[test]
    fn masked_eq_takes_value_as_mask() {
        let a: LinuxSeccompArg =
            serde_json::from_str(r#"{"index":1,"value":7,"valueTwo":5,"op":"SCMP_CMP_MASKED_EQ"}"#)
                .unwrap();
        assert_eq!(
            condition(&a).unwrap(),
            ScmpArgCompare::new(1, ScmpCompareOp::MaskedEqual(7), 5)
        );
        let a: LinuxSeccompArg =
            serde_json::from_str(r#"{"index":6,"value":7,"op":"SCMP_CMP_EQ"}"#).unwrap();
        assert!(condition(&a).unwrap_err().contains("index 6"));
    }

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

    #[test]
    fn unknown_syscall_names_are_skipped_and_empty_names_refused() {
        compiled(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["no_such_syscall_xyz","mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        let e = Filter::compile(&spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[""],"action":"SCMP_ACT_ERRNO"}]}"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.seccomp: syscalls[0].names"), "{e}");
    }

    /// Forks, loads `filter` in the child (no_new_privs set first), runs `probe` there and
    /// returns its exit code. The child only makes raw syscalls (nothing allocates), so
    /// forking from the multi-threaded test harness is fine.
    fn in_child(filter: &Filter, probe: fn() -> i32) -> i32 {
        // The child holds copies of every descriptor until it exits (see crate::forks).
        let _forking = crate::forks::spawning();
        // SAFETY: the child only calls prctl, seccomp, raw syscalls and _exit.
        match unsafe { libc::fork() } {
            0 => unsafe {
                // SAFETY: async-signal-safe calls only; `filter.prog` was built before fork.
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    libc::_exit(100);
                }
                if load_raw(&filter.prog, filter.flags) != 0 {
                    libc::_exit(101);
                }
                libc::_exit(probe())
            },
            pid => {
                assert!(pid > 0, "fork failed");
                let mut status = 0;
                // SAFETY: waiting for our own child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
                assert!(libc::WIFEXITED(status), "child status {status:#x}");
                libc::WEXITSTATUS(status)
            }
        }
    }

    /// errno of a raw syscall, 0 on success.
    fn errno_of(nr: libc::c_long, a: libc::c_long, b: libc::c_long) -> i32 {
        // SAFETY: the probes only pass invalid or harmless arguments.
        let r = unsafe { libc::syscall(nr, a, b, 0 as libc::c_long) };
        if r < 0 {
            // SAFETY: reading errno of this thread.
            unsafe { *libc::__errno_location() }
        } else {
            0
        }
    }

    #[test]
    fn deny_default_gets_enosys_for_newer_syscalls() {
        // Everything below the largest syscall named here is denied with EPERM, except
        // what is allowed; syscalls above it get ENOSYS from the stub.
        let f = compiled(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{"names":["exit_group","exit"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":18}]}"#,
        );
        fn probe() -> i32 {
            let mkdirat = errno_of(libc::SYS_mkdirat, -1, 0);
            let getpid = errno_of(libc::SYS_getpid, 0, 0);
            let beyond = errno_of(1000, 0, 0);
            (mkdirat == 18) as i32
                | ((getpid == libc::EPERM) as i32) << 1
                | ((beyond == libc::ENOSYS) as i32) << 2
        }
        assert_eq!(in_child(&f, probe), 0b111);
    }

    #[test]
    fn same_argument_twice_is_ored_like_runc() {
        // dup3(fd, 99) with fd 4242 or 4243: EXDEV; any other fd: allowed (EBADF).
        let f = compiled(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["dup3"],"action":"SCMP_ACT_ERRNO","errnoRet":18,
                "args":[{"index":0,"value":4242,"op":"SCMP_CMP_EQ"},{"index":0,"value":4243,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        fn probe() -> i32 {
            let r = |fd| errno_of(libc::SYS_dup3, fd, 99);
            (r(4242) == 18) as i32
                | ((r(4243) == 18) as i32) << 1
                | ((r(4244) == libc::EBADF) as i32) << 2
        }
        assert_eq!(in_child(&f, probe), 0b111);
        // Different arguments are ANDed: fd 4242 and newfd 99.
        let f = compiled(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["dup3"],"action":"SCMP_ACT_ERRNO","errnoRet":18,
                "args":[{"index":0,"value":4242,"op":"SCMP_CMP_EQ"},{"index":1,"value":99,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        fn probe2() -> i32 {
            let a = errno_of(libc::SYS_dup3, 4242, 99);
            let b = errno_of(libc::SYS_dup3, 4242, 98);
            (a == 18) as i32 | ((b == libc::EBADF) as i32) << 1
        }
        assert_eq!(in_child(&f, probe2), 0b11);
    }
}
