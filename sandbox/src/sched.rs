//! process.scheduler (sched_setattr(2)), process.ioPriority (ioprio_set(2)) and
//! linux.personality (personality(2)): checked at Create with errors naming the field,
//! applied by the container process before it drops privileges, as runc does.

use oci_spec::runtime::{
    IOPriorityClass, LinuxIOPriority, LinuxPersonality, LinuxPersonalityDomain, LinuxSchedulerFlag,
    LinuxSchedulerPolicy, Scheduler,
};

/// A bad scheduler, I/O priority or personality setting.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{what}: {errno}")]
    Sys { what: String, errno: nix::Error },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SchedError {
    SchedError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn policy_number(p: LinuxSchedulerPolicy) -> u32 {
    match p {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    }
}

fn flag_bits(f: LinuxSchedulerFlag) -> u64 {
    match f {
        LinuxSchedulerFlag::SchedResetOnFork => 0x01,
        LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
        LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
        LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
        LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
        LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
        LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
    }
}

/// Checks process.scheduler as runc does: nice in -20..=19, a priority only for
/// SCHED_FIFO/SCHED_RR (and then 1..=99), runtime/deadline/period only for SCHED_DEADLINE.
pub fn validate_scheduler(s: &Scheduler) -> Result<(), SchedError> {
    let policy = *s.policy();
    let rt = matches!(
        policy,
        LinuxSchedulerPolicy::SchedFifo | LinuxSchedulerPolicy::SchedRr
    );
    if let Some(n) = s.nice() {
        if !(-20..=19).contains(n) {
            return Err(invalid(
                "process.scheduler.nice",
                format!("{n} is outside -20..19"),
            ));
        }
    }
    match (s.priority(), rt) {
        (Some(p), true) if !(1..=99).contains(p) => {
            return Err(invalid(
                "process.scheduler.priority",
                format!("{p} is outside 1..99 for {policy}"),
            ))
        }
        (None, true) => {
            return Err(invalid(
                "process.scheduler.priority",
                format!("{policy} needs a priority (1..99)"),
            ))
        }
        (Some(p), false) if *p != 0 => {
            return Err(invalid(
                "process.scheduler.priority",
                format!("only SCHED_FIFO and SCHED_RR take a priority, not {policy}"),
            ))
        }
        _ => {}
    }
    if policy != LinuxSchedulerPolicy::SchedDeadline
        && (s.runtime().is_some_and(|v| v != 0)
            || s.deadline().is_some_and(|v| v != 0)
            || s.period().is_some_and(|v| v != 0))
    {
        return Err(invalid(
            "process.scheduler",
            format!("runtime, deadline and period are for SCHED_DEADLINE only, not {policy}"),
        ));
    }
    Ok(())
}

/// The kernel's struct sched_attr (SCHED_ATTR_SIZE_VER1: with the utilization clamps).
#[repr(C)]
#[derive(Debug, Default)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
    util_min: u32,
    util_max: u32,
}

/// Applies process.scheduler to the calling process.
pub fn apply_scheduler(s: &Scheduler) -> Result<(), SchedError> {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: policy_number(*s.policy()),
        flags: s
            .flags()
            .iter()
            .flatten()
            .fold(0, |acc, f| acc | flag_bits(*f)),
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        ..Default::default()
    };
    // SAFETY: sched_setattr(0 = this thread, a valid sched_attr whose size field is its
    // own size, flags 0); the kernel only reads the struct.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r != 0 {
        return Err(SchedError::Sys {
            what: format!("set process.scheduler (policy {})", s.policy()),
            errno: nix::Error::last(),
        });
    }
    Ok(())
}

/// Checks process.ioPriority: a priority in 0..=7.
pub fn validate_io_priority(p: &LinuxIOPriority) -> Result<(), SchedError> {
    if !(0..=7).contains(&p.priority()) {
        return Err(invalid(
            "process.ioPriority.priority",
            format!("{} is outside 0..7", p.priority()),
        ));
    }
    Ok(())
}

/// The ioprio value of `p`: class << 13 | priority.
fn ioprio_value(p: &LinuxIOPriority) -> i64 {
    let class = match p.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    (class << 13) | p.priority()
}

/// Applies process.ioPriority to the calling process.
pub fn apply_io_priority(p: &LinuxIOPriority) -> Result<(), SchedError> {
    const IOPRIO_WHO_PROCESS: i64 = 1;
    // SAFETY: ioprio_set with integer arguments on the calling process (who 0 = self).
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, ioprio_value(p)) };
    if r != 0 {
        return Err(SchedError::Sys {
            what: format!("set process.ioPriority ({} {})", p.class(), p.priority()),
            errno: nix::Error::last(),
        });
    }
    Ok(())
}

/// Checks linux.personality: flags are refused (runc ignores them with a warning; no
/// personality flag is defined by the spec).
pub fn validate_personality(p: &LinuxPersonality) -> Result<(), SchedError> {
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(invalid(
            "linux.personality.flags",
            "personality flags are not supported",
        ));
    }
    Ok(())
}

/// Applies linux.personality's domain (PER_LINUX or PER_LINUX32) to the calling process.
pub fn apply_personality(p: &LinuxPersonality) -> Result<(), SchedError> {
    let persona: libc::c_ulong = match p.domain() {
        LinuxPersonalityDomain::PerLinux => 0x0000,
        LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality(2) with an integer argument; it changes only this process.
    if unsafe { libc::personality(persona) } == -1 {
        return Err(SchedError::Sys {
            what: format!("set linux.personality {}", p.domain()),
            errno: nix::Error::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(json: &str) -> Scheduler {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn scheduler_rules_follow_runc() {
        for ok in [
            r#"{"policy":"SCHED_OTHER","nice":5}"#,
            r#"{"policy":"SCHED_FIFO","priority":10}"#,
            r#"{"policy":"SCHED_BATCH","priority":0}"#,
            r#"{"policy":"SCHED_DEADLINE","runtime":1000000,"deadline":2000000,"period":3000000}"#,
        ] {
            validate_scheduler(&sched(ok)).unwrap();
        }
        for (bad, field) in [
            (r#"{"policy":"SCHED_OTHER","nice":20}"#, "nice"),
            (r#"{"policy":"SCHED_OTHER","priority":3}"#, "priority"),
            (r#"{"policy":"SCHED_RR"}"#, "priority"),
            (r#"{"policy":"SCHED_FIFO","priority":100}"#, "priority"),
            (r#"{"policy":"SCHED_BATCH","runtime":5}"#, "SCHED_DEADLINE"),
        ] {
            let e = validate_scheduler(&sched(bad)).unwrap_err().to_string();
            assert!(e.contains(field), "{bad}: {e}");
        }
    }

    #[test]
    fn ioprio_and_personality() {
        let p: LinuxIOPriority =
            serde_json::from_str(r#"{"class":"IOPRIO_CLASS_IDLE","priority":0}"#).unwrap();
        assert_eq!(ioprio_value(&p), 3 << 13);
        let p: LinuxIOPriority =
            serde_json::from_str(r#"{"class":"IOPRIO_CLASS_BE","priority":8}"#).unwrap();
        assert!(validate_io_priority(&p).is_err());
        let p: LinuxPersonality =
            serde_json::from_str(r#"{"domain":"LINUX32","flags":["x"]}"#).unwrap();
        let e = validate_personality(&p).unwrap_err().to_string();
        assert!(e.contains("linux.personality.flags"), "{e}");
        assert_eq!(std::mem::size_of::<SchedAttr>(), 56);
    }
}
