//! Issue 6: resource limits in the cgroup files and in effect, Pause/Resume, Update, Stats
//! (`ctr task metrics`) and OOM events, on cgroup v1 (this machine's hybrid layout) and on
//! cgroup v2 (a cgroup2-only host: `scripts/cgroup2-vm.sh --test resources`). Every test has
//! a branch for each; a host that is neither fails.
//!
//! None of the three `ctr` versions has `task update`, so Update is sent to the task's shim
//! as containerd sends it (Task.Update over ttrpc, the resources as OCI JSON in an Any) by a
//! small client (`update`); everything else goes through `ctr`.
//!
//! Layout, by topic: `limits` (memory, cpu, pids, cpuset, blkio; OOM), `placement` (the
//! container's cgroups), `pause`, `stats`, `update`; the cgroup helpers they share are here.
//! The tests are made here too (`per_version!` below, not next to each function), so that
//! their paths stay `resources::NAME::v1_6`, ... as docs/oci-conformance.md names them.

use std::path::{Path, PathBuf};

use mypod_tests::{per_version, Containerd};

mod limits;
mod pause;
mod placement;
mod stats;
mod update;

// The tests, by topic.
use limits::{
    bad_limits_fail_clearly, limits_in_cgroup_files, memory_hog_is_oom_killed,
    pids_limit_stops_a_fork_bomb,
};
per_version!(limits_in_cgroup_files);
per_version!(pids_limit_stops_a_fork_bomb);
per_version!(bad_limits_fail_clearly);
per_version!(memory_hog_is_oom_killed);

use placement::{processes_are_in_their_cgroup_everywhere, systemd_cgroups_path};
per_version!(processes_are_in_their_cgroup_everywhere);
per_version!(systemd_cgroups_path);

use pause::pause_and_resume;
per_version!(pause_and_resume);

use stats::metrics_move_with_load;
per_version!(metrics_move_with_load);

use update::update_running_and_stopped;
per_version!(update_running_and_stopped);

/// `/sys/fs/cgroup/<controller>/<ns>/<id>`: where `ctr run` puts a container (its default
/// cgroupsPath is `/<namespace>/<id>`).
fn cgroup_dir(c: &Containerd, controller: &str, id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(c.ctr_namespace())
        .join(id)
}

fn cgroup_file(c: &Containerd, controller: &str, id: &str, file: &str) -> String {
    let p = cgroup_dir(c, controller, id).join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn is_v1() -> bool {
    Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists()
}

/// A cgroup2-only host: the unified tree at /sys/fs/cgroup. Panics on a host that is
/// neither v1 nor v2, so no test passes by checking nothing.
fn is_v2() -> bool {
    if is_v1() {
        return false;
    }
    assert!(
        Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        "neither cgroup v1 (/sys/fs/cgroup/memory) nor cgroup v2 (/sys/fs/cgroup/cgroup.controllers)"
    );
    true
}

/// `/sys/fs/cgroup/<ns>/<id>/<file>` on cgroup v2 (one tree; ctr's default cgroupsPath is
/// `/<namespace>/<id>`).
fn v2_file(c: &Containerd, id: &str, file: &str) -> String {
    let p = Path::new("/sys/fs/cgroup")
        .join(c.ctr_namespace())
        .join(id)
        .join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}
