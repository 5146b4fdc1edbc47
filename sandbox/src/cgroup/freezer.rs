//! Pausing and resuming a container: the v1 freezer (`freezer.state` FROZEN / THAWED) or
//! v2's `cgroup.freeze`, waiting until the kernel reports the new state.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::placement::Cgroup;

/// How long a freeze or thaw may take to settle.
const SETTLE: Duration = Duration::from_secs(5);

/// Errors freezing or thawing a cgroup.
#[derive(Debug, thiserror::Error)]
pub enum FreezerError {
    #[error("no freezer: the container's cgroup has no v1 freezer hierarchy")]
    NoFreezer,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} did not reach {want} within {SETTLE:?} (last: {got})")]
    Timeout {
        path: PathBuf,
        want: &'static str,
        got: String,
    },
}

fn read(path: &Path) -> Result<String, FreezerError> {
    fs::read_to_string(path).map_err(|source| FreezerError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, v: &str) -> Result<(), FreezerError> {
    fs::write(path, v).map_err(|source| FreezerError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The state a v2 `cgroup.events` reports: `frozen 0|1`.
pub fn v2_frozen(events: &str) -> Option<bool> {
    events
        .lines()
        .find_map(|l| l.strip_prefix("frozen "))
        .map(|v| v.trim() == "1")
}

/// Freezes (`true`) or thaws (`false`) every process of the cgroup and waits until the
/// kernel reports it done. A freeze that does not settle is undone (thawed) and fails.
pub fn set_frozen(cg: &Cgroup, frozen: bool) -> Result<(), FreezerError> {
    let r = set_inner(cg, frozen);
    if r.is_err() && frozen {
        let _ = set_inner(cg, false);
    }
    r
}

fn set_inner(cg: &Cgroup, frozen: bool) -> Result<(), FreezerError> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    if cg.v2 {
        let dir = cg.controller_dir("").ok_or(FreezerError::NoFreezer)?;
        let file = dir.join("cgroup.freeze");
        let events = dir.join("cgroup.events");
        write(&file, if frozen { "1" } else { "0" })?;
        loop {
            let text = read(&events)?;
            if v2_frozen(&text) == Some(frozen) {
                return Ok(());
            }
            if start.elapsed() > SETTLE {
                return Err(FreezerError::Timeout {
                    path: events,
                    want: if frozen { "frozen 1" } else { "frozen 0" },
                    got: text.trim().replace('\n', ", "),
                });
            }
            thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }
    let dir = cg
        .controller_dir("freezer")
        .ok_or(FreezerError::NoFreezer)?;
    let file = dir.join("freezer.state");
    let want = if frozen { "FROZEN" } else { "THAWED" };
    loop {
        // Writing FROZEN again nudges tasks that were forking while the freeze began
        // (runc does the same).
        write(&file, want)?;
        let got = read(&file)?;
        if got.trim() == want {
            return Ok(());
        }
        if start.elapsed() > SETTLE {
            return Err(FreezerError::Timeout {
                path: file,
                want,
                got: got.trim().to_string(),
            });
        }
        thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// Whether the cgroup is frozen now (a missing freezer counts as not frozen).
pub fn is_frozen(cg: &Cgroup) -> bool {
    if cg.v2 {
        return cg
            .controller_dir("")
            .and_then(|d| fs::read_to_string(d.join("cgroup.events")).ok())
            .and_then(|t| v2_frozen(&t))
            .unwrap_or(false);
    }
    cg.controller_dir("freezer")
        .and_then(|d| fs::read_to_string(d.join("freezer.state")).ok())
        .is_some_and(|s| s.trim() != "THAWED")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_events_parse() {
        assert_eq!(v2_frozen("populated 1\nfrozen 1\n"), Some(true));
        assert_eq!(v2_frozen("populated 1\nfrozen 0\n"), Some(false));
        assert_eq!(v2_frozen("populated 1\n"), None);
    }

    #[test]
    fn v2_freeze_over_fake_files() {
        let dir = std::env::temp_dir().join(format!("mypod-freeze-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        // A fake cgroup.events that already says frozen: the write goes to cgroup.freeze.
        fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        let cg = Cgroup {
            dirs: vec![(String::new(), dir.clone())],
            v2: true,
            unified: None,
        };
        set_frozen(&cg, true).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "1");
        assert!(is_frozen(&cg));
        fs::remove_dir_all(&dir).unwrap();
    }
}
