//! cgroupsPath in systemd's `slice:prefix:name` form (what containerd passes with
//! `SystemdCgroup = true`), expanded to the cgroup directory systemd gives that unit:
//! the slice's path (`a-b.slice` lives in `a.slice/a-b.slice`) and then `prefix-name.scope`,
//! as runc's systemd driver computes it.
//!
//! mypod creates that directory itself, through cgroupfs; it does not ask systemd over
//! D-Bus for a transient scope, so the scope is not a systemd unit (`systemctl` does not
//! list it) although it sits where systemd and kubelet expect it. Where systemd does not
//! run, the form is not expanded: the whole string is one relative cgroupfs path, as runc's
//! cgroupfs driver takes it (see [`super::placement::Place::Own`]).

use std::path::{Path, PathBuf};

/// Errors of a systemd-form cgroupsPath.
#[derive(Debug, thiserror::Error)]
pub enum SystemdPathError {
    #[error("cgroupsPath {path:?}: slice {slice:?} {why}")]
    BadSlice {
        path: String,
        slice: String,
        why: &'static str,
    },
    #[error("cgroupsPath {0:?}: the unit name must not be empty or contain '/'")]
    BadName(String),
}

/// Whether `cgroups_path` is in systemd's `slice:prefix:name` form.
pub fn is_systemd_form(cgroups_path: &str) -> bool {
    !cgroups_path.starts_with('/') && cgroups_path.split(':').count() == 3
}

/// Whether systemd is the init system here (sd_booted(3): /run/systemd/system exists).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The cgroup directory, relative to the hierarchy roots, of a `slice:prefix:name` path.
/// An empty slice means `system.slice`; a name ending in `.slice` is itself a slice.
pub fn expand(cgroups_path: &str) -> Result<PathBuf, SystemdPathError> {
    let mut parts = cgroups_path.splitn(3, ':');
    let (slice, prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(s), Some(p), Some(n)) => (s, p, n),
        _ => return Err(SystemdPathError::BadName(cgroups_path.to_string())),
    };
    let bad_unit = |s: &str| s.contains('/') || s == "." || s == "..";
    if name.is_empty() || bad_unit(name) || bad_unit(prefix) {
        return Err(SystemdPathError::BadName(cgroups_path.to_string()));
    }
    if name.ends_with(".slice") {
        return expand_slice(cgroups_path, name);
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Ok(expand_slice(cgroups_path, slice)?.join(unit))
}

/// `a-b-c.slice` → `a.slice/a-b.slice/a-b-c.slice`; `-.slice` (the root slice) → "".
fn expand_slice(path: &str, slice: &str) -> Result<PathBuf, SystemdPathError> {
    let bad = |why| SystemdPathError::BadSlice {
        path: path.to_string(),
        slice: slice.to_string(),
        why,
    };
    let base = slice
        .strip_suffix(".slice")
        .ok_or_else(|| bad("does not end in .slice"))?;
    if base.contains('/') {
        return Err(bad("contains '/'"));
    }
    if base == "-" {
        return Ok(PathBuf::new());
    }
    let mut out = PathBuf::new();
    let mut prefix = String::new();
    for part in base.split('-') {
        if part.is_empty() {
            return Err(bad(
                "has an empty component ('--', or a leading or trailing '-')",
            ));
        }
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        out.push(format!("{prefix}.slice"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_paths_expand_like_runc() {
        assert_eq!(
            expand("kubepods-besteffort-pod12.slice:cri-containerd:abc").unwrap(),
            Path::new(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope"
            )
        );
        assert_eq!(
            expand(":docker:x").unwrap(),
            Path::new("system.slice/docker-x.scope")
        );
        assert_eq!(expand("-.slice::x").unwrap(), Path::new("x.scope"));
        assert_eq!(
            expand("system.slice::mypod-a.slice").unwrap(),
            Path::new("mypod.slice/mypod-a.slice")
        );
    }

    #[test]
    fn bad_slices_and_names_are_refused() {
        for p in [
            "kubepods--x.slice:p:n",
            "-kubepods.slice:p:n",
            "kubepods.slic:p:n",
            "a/b.slice:p:n",
            "system.slice:p:",
            "system.slice:p:../x",
            "system.slice:..:x",
        ] {
            assert!(expand(p).is_err(), "{p} accepted");
        }
        assert!(is_systemd_form("system.slice:p:n"));
        assert!(!is_systemd_form("/system.slice:p:n"));
        assert!(!is_systemd_form("/mypod/x"));
    }
}
