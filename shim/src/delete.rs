//! `delete`: containerd's cleanup for a container whose shim is gone.
//!
//! If the shim that served the container (the bundle's shim.pid) still answers on the
//! pod's socket, it owns the container and cleans up on Delete; we touch nothing. Otherwise kill what is left in the container's cgroup, unmount its
//! rootfs and remove the cgroup. Prints a DeleteResponse (exit 128+SIGKILL, as runc-v2).

use std::path::PathBuf;
use std::time::SystemTime;

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::{Message, MessageField};

use crate::args::Args;

/// Runs `delete`; returns the marshalled DeleteResponse.
pub fn run(args: &Args) -> Result<Vec<u8>, String> {
    let bundle = if args.bundle.is_empty() {
        std::env::current_dir().map_err(|e| format!("current dir: {e}"))?
    } else {
        PathBuf::from(&args.bundle)
    };
    match mypod_sandbox::spec::load(&bundle) {
        Ok(spec) => {
            let group = crate::group::group_id(spec.annotations().as_ref(), &args.id);
            let sock = crate::group::socket_path(&args.address, &args.namespace, group);
            // Under start's lock: a start racing us cannot lose a socket it just bound.
            let lock = crate::start::lock(&sock).map_err(|e| e.to_string())?;
            // A live socket may belong to a newer shim that `start` spawned for the same
            // pod after ours died; the container is that shim's only if it served it.
            let serving = read_pid(&sock.with_extension("pid"));
            // A shim being killed still has its listening socket open while the kernel
            // closes its fds (containerd may see the connection drop first and run us):
            // connect succeeds but nobody will accept. Its task flags say it is exiting.
            let alive = std::os::unix::net::UnixStream::connect(&sock).is_ok()
                && serving.is_none_or(|pid| !exiting(pid));
            let owner = read_pid(&bundle.join("shim.pid"));
            if alive && owner.is_some() && owner == serving {
                log::info!("delete {}: the pod shim is alive and owns it", args.id);
            } else {
                if !alive {
                    // The shim is gone: its socket and pid file are stale.
                    let _ = std::fs::remove_file(&sock);
                    let _ = std::fs::remove_file(sock.with_extension("pid"));
                }
                drop(lock);
                let layout = mypod_sandbox::cgroup::Layout::detect().map_err(|e| e.to_string())?;
                // A sandbox's bundle also holds the pod's files (a /dev/shm tmpfs); only a
                // sandbox's: another container's `pod` may be its rootfs.
                if crate::pod::is_sandbox_bundle(&spec, &args.id) {
                    mypod_sandbox::pod_files::remove_dead(&bundle.join(crate::pod::POD_FILES));
                }
                mypod_sandbox::container::cleanup_dead(&bundle, &args.id, &layout)
                    .map_err(|e| format!("clean up {}: {e}", args.id))?;
            }
        }
        Err(e) => log::warn!("delete {}: {e}; nothing to clean", args.id),
    }
    let mut r = DeleteResponse::new();
    r.exit_status = 128 + libc::SIGKILL as u32;
    r.exited_at = MessageField::some(crate::convert::timestamp(SystemTime::now()));
    r.write_to_bytes().map_err(|e| e.to_string())
}

/// Marks `bundle`'s container as this shim's, as `start` does (its `shim.pid`), unless it
/// is marked already. containerd 2.1+ runs no `start` for the containers of a version-3
/// sandbox shim (see `start::bootstrap`); without the mark, a `delete` after a dropped
/// connection could not tell this live shim's container from a dead shim's.
pub fn claim(bundle: &std::path::Path) {
    use std::io::{ErrorKind, Write};
    let path = bundle.join("shim.pid");
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut f) => {
            if let Err(e) = f.write_all(std::process::id().to_string().as_bytes()) {
                log::warn!("write {}: {e}", path.display());
            }
        }
        // Already marked; or no bundle, which Create itself reports.
        Err(e) if matches!(e.kind(), ErrorKind::AlreadyExists | ErrorKind::NotFound) => {}
        Err(e) => log::warn!("write {}: {e}", path.display()),
    }
}

/// Whether `pid` is gone, a zombie, or exiting (PF_EXITING in /proc/PID/stat's flags).
fn exiting(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_says_exiting(&stat),
        Err(_) => true,
    }
}

fn stat_says_exiting(stat: &str) -> bool {
    const PF_EXITING: u64 = 0x4;
    // Fields after the command name (which may hold spaces): state is the first, flags the
    // seventh.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return true;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let state = f.first().copied().unwrap_or("X");
    let flags = f.get(6).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    matches!(state, "Z" | "X" | "x") || flags & PF_EXITING != 0
}

fn read_pid(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exiting_and_zombie_shims_are_dead() {
        let live = "42 (containerd-shim) S 1 42 42 0 -1 4194560 10 0 0 0";
        assert!(!stat_says_exiting(live));
        let dying = "42 (containerd-shim) S 1 42 42 0 -1 4194564 10 0 0 0";
        assert!(stat_says_exiting(dying));
        let zombie = "42 (a b) Z 1 42 42 0 -1 4194560 10 0 0 0";
        assert!(stat_says_exiting(zombie));
        assert!(!exiting(std::process::id()));
    }
}
