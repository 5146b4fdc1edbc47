//! The spec's profile as a libseccomp filter: actions, architectures, argument
//! conditions and flags mapped as runc maps them, one rule per syscall name, then the
//! exported program (prefixed with the ENOSYS stub, see `bpf`) as a [`Filter`].

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, Spec,
};

use super::bpf::{enosys_stub, export, last_syscalls, needs_enosys_stub};
use super::{invalid, Filter, Optimize, SeccompError};

/// Syscalls take at most 6 arguments.
const MAX_ARGS: usize = 6;
/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;
/// runc turns on libseccomp's binary-tree optimisation above this many rules.
const OPTIMIZE_ABOVE: usize = 32;

impl Filter {
    /// Compiles the spec's `linux.seccomp`; `None` when the spec has none. The layout is
    /// runc's ([`Optimize::Runc`]).
    pub fn compile(spec: &Spec) -> Result<Option<Filter>, SeccompError> {
        match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(sc) => compile(sc, Optimize::Runc).map(Some),
            None => Ok(None),
        }
    }

    /// Compiles a profile with the dispatch layout asked for: [`Optimize::BinaryTree`] for
    /// mypod's own default profile (see [`super::default::filter`]). Same checks and
    /// mapping as [`Filter::compile`] otherwise.
    pub fn compile_profile(sc: &LinuxSeccomp, optimize: Optimize) -> Result<Filter, SeccompError> {
        compile(sc, optimize)
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

fn compile(sc: &LinuxSeccomp, optimize: Optimize) -> Result<Filter, SeccompError> {
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
    let tree = match optimize {
        Optimize::Runc => rules > OPTIMIZE_ABOVE,
        Optimize::BinaryTree => true,
        Optimize::Linear => false,
    };
    if tree {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::{compiled, test_spec as spec};

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
}
