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
            let group = mypod_sandbox::spec::group_id(&spec, &args.id);
            let sock = crate::start::socket_path(&args.address, &args.namespace, group);
            // Under start's lock: a start racing us cannot lose a socket it just bound.
            let lock = crate::start::lock(&sock).map_err(|e| e.to_string())?;
            let alive = std::os::unix::net::UnixStream::connect(&sock).is_ok();
            // A live socket may belong to a newer shim that `start` spawned for the same
            // pod after ours died; the container is that shim's only if it served it.
            let serving = read_pid(&sock.with_extension("pid"));
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
                mypod_sandbox::container::cleanup_dead(&bundle, &args.id, &layout)
                    .map_err(|e| format!("clean up {}: {e}", args.id))?;
            }
        }
        Err(e) => log::warn!("delete {}: {e}; nothing to clean", args.id),
    }
    let mut r = DeleteResponse::new();
    r.exit_status = 128 + libc::SIGKILL as u32;
    r.exited_at = MessageField::some(crate::events::timestamp(SystemTime::now()));
    r.write_to_bytes().map_err(|e| e.to_string())
}

fn read_pid(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
