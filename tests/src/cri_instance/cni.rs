//! libcni's cache dir, shared by every CRI instance on the host.

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use crate::procfs;

/// libcni's cache dir (containerd gives no way to move it): the first pod's CNI ADD creates
/// `/var/lib/cni/results` if it is missing. The files in it are removed per instance by the
/// purge; the dirs themselves, when the tests made them, by the last CRI instance to end.
const CNI_DIR: &str = "/var/lib/cni";
const CNI_RESULTS: &str = "/var/lib/cni/results";
/// Left in `CNI_DIR` when the tests created it: whoever ends the last CRI instance removes it.
const CNI_MARKER: &str = "/var/lib/cni/.made-by-mypod-tests";

/// CRI instances alive in this process.
static CNI_USERS: Mutex<usize> = Mutex::new(0);

/// Held by each CRI instance. The first of a process creates the cache dirs (with a marker) if
/// they are missing; when the process' last one ends and no other live test process has a
/// CRI instance, dirs the tests made are removed again (only if empty).
pub(super) struct CniCacheUser;

impl CniCacheUser {
    pub(super) fn new() -> CniCacheUser {
        let mut users = CNI_USERS.lock().unwrap_or_else(|e| e.into_inner());
        if *users == 0 && !Path::new(CNI_DIR).exists() {
            use std::os::unix::fs::DirBuilderExt;
            let made = fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(CNI_RESULTS);
            if made.is_ok() {
                let _ = fs::write(
                    CNI_MARKER,
                    "made by mypod-tests (tests/src/cri_instance/cni.rs)\n",
                );
            }
        }
        *users += 1;
        CniCacheUser
    }
}

/// True if another live test process has a CRI instance (its instance dir has `cni/`).
fn other_process_uses_cni() -> bool {
    let me = std::process::id();
    let Ok(rd) = fs::read_dir(crate::containerd::tmp_root()) else {
        return false;
    };
    rd.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix("mypodtest-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        pid.is_some_and(|p| p != me && procfs::alive(p)) && e.path().join("cni").is_dir()
    })
}

impl Drop for CniCacheUser {
    fn drop(&mut self) {
        let mut users = CNI_USERS.lock().unwrap_or_else(|e| e.into_inner());
        *users -= 1;
        if *users == 0 && Path::new(CNI_MARKER).is_file() && !other_process_uses_cni() {
            // remove_dir fails (and keeps the dir) unless it is empty.
            let results_gone = match fs::remove_dir(CNI_RESULTS) {
                Ok(()) => true,
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            };
            if results_gone {
                let _ = fs::remove_file(CNI_MARKER);
                let _ = fs::remove_dir(CNI_DIR);
            }
        }
    }
}
