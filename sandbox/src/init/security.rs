//! The process's identity and privileges: oom_score_adj, rlimits, user and groups,
//! capabilities (all five sets).

use std::str::FromStr;

use caps::{CapSet, Capability};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{Capabilities, Process};

use super::{Context, InitError};

/// Writes process.oomScoreAdj.
pub fn oom_score_adj(p: &Process) -> Result<(), InitError> {
    let Some(adj) = p.oom_score_adj() else {
        return Ok(());
    };
    std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| {
        let hint =
            if e.raw_os_error() == Some(libc::EACCES) || e.raw_os_error() == Some(libc::EPERM) {
                " (lowering it needs CAP_SYS_RESOURCE, which this host withholds)"
            } else {
                ""
            };
        InitError::Io {
            what: format!("set process.oomScoreAdj {adj}{hint}"),
            source: e,
        }
    })
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// Applies process.rlimits.
pub fn rlimits(p: &Process) -> Result<(), InitError> {
    for r in p.rlimits().iter().flatten() {
        let name = r.typ().to_string();
        let res = rlimit_resource(&name)
            .ok_or_else(|| InitError::Invalid(format!("process.rlimits: unknown {name}")))?;
        let lim = libc::rlimit {
            rlim_cur: r.soft(),
            rlim_max: r.hard(),
        };
        // SAFETY: setrlimit reads the struct we pass, which lives across the call.
        if unsafe { libc::setrlimit(res, &lim) } != 0 {
            return Err(InitError::Sys {
                what: format!(
                    "process.rlimits: set {name} soft={} hard={}",
                    r.soft(),
                    r.hard()
                ),
                errno: nix::Error::last(),
            });
        }
    }
    Ok(())
}

fn to_caps(set: &Option<Capabilities>) -> Vec<Capability> {
    set.iter()
        .flatten()
        .filter_map(|c| Capability::from_str(&format!("CAP_{c}")).ok())
        .collect()
}

fn mask(caps: &[Capability]) -> u64 {
    caps.iter().fold(0, |m, c| m | c.bitmask())
}

/// Drops the bounding set, switches to the spec's user and groups, then sets the
/// effective, permitted, inheritable and ambient sets.
pub fn user_and_caps(p: &Process, in_userns: bool) -> Result<(), InitError> {
    let spec_caps = p.capabilities().as_ref();
    if let Some(c) = spec_caps {
        let keep = to_caps(c.bounding());
        for cap in caps::all() {
            if !keep.contains(&cap) {
                match caps::drop(None, CapSet::Bounding, cap) {
                    Ok(()) => {}
                    // A capability the kernel does not know cannot be held anyway.
                    Err(_) if !caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) => {}
                    Err(e) => {
                        return Err(InitError::Invalid(format!(
                            "drop {cap} from the bounding set: {e}"
                        )))
                    }
                }
            }
        }
    }
    let u = p.user();
    // Checked when the spec was read; checked again here, at the only place ids reach
    // set*id(2), because (uid_t)-1 would silently keep uid 0.
    crate::ids::check_user("process.user", u).map_err(|e| InitError::Invalid(e.to_string()))?;
    nix::sys::prctl::set_keepcaps(true).ctx(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    let groups: Vec<Gid> = u
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    let setgroups_denied = in_userns
        && std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    if !setgroups_denied {
        nix::unistd::setgroups(&groups).ctx(|| format!("setgroups {:?}", u.additional_gids()))?;
    }
    let gid = Gid::from_raw(u.gid());
    nix::unistd::setresgid(gid, gid, gid).ctx(|| format!("setgid {}", u.gid()))?;
    let uid = Uid::from_raw(u.uid());
    nix::unistd::setresuid(uid, uid, uid).ctx(|| format!("setuid {}", u.uid()))?;
    nix::sys::prctl::set_keepcaps(false).ctx(|| "prctl(PR_SET_KEEPCAPS)".into())?;
    let Some(c) = spec_caps else {
        return Ok(());
    };
    capset(
        mask(&to_caps(c.effective())),
        mask(&to_caps(c.permitted())),
        mask(&to_caps(c.inheritable())),
    )?;
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| InitError::Invalid(format!("clear ambient capabilities: {e}")))?;
    for cap in to_caps(c.ambient()) {
        caps::raise(None, CapSet::Ambient, cap)
            .map_err(|e| InitError::Invalid(format!("raise ambient {cap}: {e}")))?;
    }
    Ok(())
}

/// Sets effective, permitted and inheritable in one capset(2), so that shrinking the
/// permitted set never leaves effective larger than permitted in between.
fn capset(eff: u64, perm: u64, inh: u64) -> Result<(), InitError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut hdr = Header {
        version: VERSION_3,
        pid: 0,
    };
    let lo = |m: u64| m as u32;
    let hi = |m: u64| (m >> 32) as u32;
    let data = [
        Data {
            effective: lo(eff),
            permitted: lo(perm),
            inheritable: lo(inh),
        },
        Data {
            effective: hi(eff),
            permitted: hi(perm),
            inheritable: hi(inh),
        },
    ];
    // SAFETY: capset reads a v3 header and two data structs laid out as the kernel's
    // __user_cap_header_struct / __user_cap_data_struct; both live across the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut Header, data.as_ptr()) };
    if r != 0 {
        return Err(InitError::Sys {
            what: "set capabilities (capset)".into(),
            errno: nix::Error::last(),
        });
    }
    Ok(())
}
