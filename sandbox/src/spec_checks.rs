//! Spec values runc refuses, and values whose meaning would silently change on their way
//! to the kernel: refused at Create (and, for a process, at Exec), each naming its field.
//!
//! Made after runc's own validation (`utils_linux.go` validateProcessSpec, `libcontainer/env.go`,
//! `specconv`, `configs/validate`); the table, with runc's messages and where mypod is
//! stricter, is docs/spec-validation.md. Checks that other modules own (ids, sysctls,
//! seccomp, hooks, scheduler, cgroup values) are not repeated here.

use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Process, Spec};

/// A spec value refused; `field` is its path in config.json, e.g. `process.env[2]`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> CheckError {
    CheckError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The checks of a process: the container's, and an exec's.
pub fn process(p: &Process) -> Result<(), CheckError> {
    let cwd = p.cwd();
    if cwd.as_os_str().is_empty() {
        return Err(invalid("process.cwd", "must not be empty"));
    }
    container_path("process.cwd", cwd)?;
    for (i, e) in p.env().iter().flatten().enumerate() {
        env_entry(e).map_err(|r| invalid(format!("process.env[{i}]"), r))?;
    }
    let mut seen = Vec::new();
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        let field = format!("process.rlimits[{i}]");
        if r.soft() > r.hard() {
            return Err(invalid(
                field,
                format!(
                    "{}: soft limit {} is above the hard limit {}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                ),
            ));
        }
        if seen.contains(&r.typ()) {
            return Err(invalid(field, format!("{} is listed twice", r.typ())));
        }
        seen.push(r.typ());
    }
    if let Some(umask) = p.user().umask() {
        if umask > 0o777 {
            return Err(invalid(
                "process.user.umask",
                format!("{umask:#o} has bits above 0o777 (the kernel would drop them)"),
            ));
        }
    }
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(invalid(
                "process.oomScoreAdj",
                format!("{adj} is out of range: it must be in -1000..1000"),
            ));
        }
    }
    if let Some(size) = p.console_size() {
        for (what, v) in [("height", size.height()), ("width", size.width())] {
            if v > u64::from(u16::MAX) {
                return Err(invalid(
                    format!("process.consoleSize.{what}"),
                    format!("{v} does not fit a terminal's 16-bit size"),
                ));
            }
        }
    }
    Ok(())
}

/// The spec's `process.terminal` (`wanted`) against the caller's request for a terminal:
/// a mismatch is refused, as runc refuses it (a pty nobody reads, or a console socket for
/// a process that has no terminal).
pub fn terminal(wanted: bool, requested: bool) -> Result<(), CheckError> {
    match (wanted, requested) {
        (true, false) => Err(invalid(
            "process.terminal",
            "true, but the task was created without a terminal (ctr run -t, CRI tty)",
        )),
        (false, true) => Err(invalid(
            "process.terminal",
            "false, but the task was created with a terminal",
        )),
        _ => Ok(()),
    }
}

/// `NAME=VALUE`, a non-empty name, no NUL (what runc's init refuses).
fn env_entry(e: &str) -> Result<(), String> {
    match e.find('=') {
        None => Err(format!("{e:?} is not NAME=VALUE (no '=')")),
        Some(0) => Err(format!("{e:?}: the variable's name is empty")),
        Some(_) if e.contains('\0') => Err(format!("{e:?} contains a NUL byte")),
        Some(_) => Ok(()),
    }
}

/// An absolute path without NUL bytes or `..` components.
fn container_path(field: &str, p: &Path) -> Result<(), CheckError> {
    if p.as_os_str().as_bytes().contains(&0) {
        return Err(invalid(field, format!("{p:?} contains a NUL byte")));
    }
    if !p.is_absolute() {
        return Err(invalid(field, format!("{p:?} is not an absolute path")));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(field, format!("{p:?} contains a '..' component")));
    }
    Ok(())
}

/// The checks of a container's spec beyond its process.
pub fn spec(s: &Spec) -> Result<(), CheckError> {
    if s.root().is_none() {
        return Err(invalid(
            "root",
            "missing: a container needs a root filesystem",
        ));
    }
    let namespaces: Vec<_> = s
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    let has = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    for (i, n) in namespaces.iter().enumerate() {
        if let Some(p) = n.path() {
            container_path(&format!("linux.namespaces[{i}].path"), p)?;
        }
    }
    if !has(LinuxNamespaceType::Mount) {
        return Err(invalid(
            "linux.namespaces",
            "no mount namespace: root.path, mounts and masked paths need one (without it the \
             process would see the host's root filesystem)",
        ));
    }
    for (i, m) in s.mounts().iter().flatten().enumerate() {
        mount(&format!("mounts[{i}]"), m)?;
    }
    if let Some(linux) = s.linux() {
        let lists = [
            ("linux.maskedPaths", linux.masked_paths()),
            ("linux.readonlyPaths", linux.readonly_paths()),
        ];
        for (name, list) in lists {
            for (i, p) in list.iter().flatten().enumerate() {
                container_path(&format!("{name}[{i}]"), Path::new(p))?;
            }
        }
        if !has(LinuxNamespaceType::User) {
            let maps = [
                ("linux.uidMappings", linux.uid_mappings()),
                ("linux.gidMappings", linux.gid_mappings()),
            ];
            for (name, map) in maps {
                if map.as_ref().is_some_and(|m| !m.is_empty()) {
                    return Err(invalid(
                        name,
                        "given, but linux.namespaces has no user namespace to apply it to",
                    ));
                }
            }
        }
        for (i, d) in linux.devices().iter().flatten().enumerate() {
            container_path(&format!("linux.devices[{i}].path"), d.path())?;
        }
        let rules = linux
            .resources()
            .as_ref()
            .and_then(|r| r.devices().as_ref());
        for (i, d) in rules.into_iter().flatten().enumerate() {
            let field = format!("linux.resources.devices[{i}].access");
            match d.access().as_deref() {
                None | Some("") => return Err(invalid(field, "must not be empty")),
                Some(a) if !a.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) => {
                    return Err(invalid(
                        field,
                        format!("{a:?}: only r, w and m are allowed"),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// Options that are neither mount flags nor filesystem data (handled by `idmap`).
const NOT_DATA: &[&str] = &["idmap", "ridmap"];

fn mount(field: &str, m: &Mount) -> Result<(), CheckError> {
    container_path(&format!("{field}.destination"), m.destination())?;
    if let Some(src) = m.source() {
        if src.as_os_str().as_bytes().contains(&0) {
            return Err(invalid(
                format!("{field}.source"),
                format!("{src:?} contains a NUL byte"),
            ));
        }
    }
    let typ = m.typ().as_deref().unwrap_or("");
    if typ.contains('\0') {
        return Err(invalid(
            format!("{field}.type"),
            format!("{typ:?} contains a NUL byte"),
        ));
    }
    let opts: Vec<String> = m.options().clone().unwrap_or_default();
    let o = crate::mount::parse_options(&opts);
    if typ == "bind" && !o.bind {
        return Err(invalid(
            format!("{field}.options"),
            "type \"bind\" without option \"bind\" or \"rbind\" (runc mounts a filesystem \
             named \"bind\", which does not exist)",
        ));
    }
    if o.bind {
        let data: Vec<&str> = o
            .data
            .split(',')
            .filter(|d| !d.is_empty() && !NOT_DATA.contains(d))
            .collect();
        if !data.is_empty() {
            return Err(invalid(
                format!("{field}.options"),
                format!(
                    "{}: a bind mount cannot take filesystem options (the kernel ignores them)",
                    data.join(",")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
