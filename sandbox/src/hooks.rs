//! OCI hooks: run a hook list with the container's state on stdin, as the runtime spec
//! and runc do. Where each list runs is the caller's business:
//!
//! | hook            | runs in                         | when                                   |
//! |-----------------|---------------------------------|----------------------------------------|
//! | prestart        | the shim (runtime namespaces)   | mounts done, before pivot_root (create)|
//! | createRuntime   | the shim                        | right after prestart                   |
//! | createContainer | the container process           | after createRuntime, before pivot_root |
//! | startContainer  | the container process           | at Start, right before execve          |
//! | poststart       | the shim                        | after the process has exec'd           |
//! | poststop        | the shim                        | after the container is destroyed       |
//!
//! A hook gets exactly its `env` (nothing inherited), its `args` as argv (argv[0]
//! included) and the state JSON on stdin; it fails on a non-zero exit, a signal, or
//! when it outlives its `timeout`. Its stdin and output are memory files, so neither a
//! hook that never reads its state nor a chatty one can block us past its timeout; the
//! output is shown in the error.

use std::ffi::CString;
use std::io::{Read, Seek, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks, Spec};
use serde::Serialize;

use crate::process;

/// Errors of running a hook; the text is shown to the user through containerd.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{kind} hook #{index} ({path}): {what}: {source}")]
    Io {
        kind: &'static str,
        index: usize,
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{kind} hook #{index} ({path}) failed: {status}{output}")]
    Failed {
        kind: &'static str,
        index: usize,
        path: PathBuf,
        status: String,
        output: String,
    },
    #[error("{kind} hook #{index} ({path}) timed out after {secs}s and was killed{output}")]
    Timeout {
        kind: &'static str,
        index: usize,
        path: PathBuf,
        secs: i64,
        output: String,
    },
}

/// The hook lists, by when they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    /// The field name in config.json.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    /// Whether the hook runs in the runtime's namespaces (the shim), not the container's.
    pub fn in_runtime(self) -> bool {
        !matches!(self, Kind::CreateContainer | Kind::StartContainer)
    }

    /// This kind's list in `hooks` (empty when absent).
    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        #[allow(deprecated)]
        let list = match self {
            Kind::Prestart => hooks.prestart(),
            Kind::CreateRuntime => hooks.create_runtime(),
            Kind::CreateContainer => hooks.create_container(),
            Kind::StartContainer => hooks.start_container(),
            Kind::Poststart => hooks.poststart(),
            Kind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or_default()
    }
}

/// All kinds, in config.json order.
pub const KINDS: [Kind; 6] = [
    Kind::Prestart,
    Kind::CreateRuntime,
    Kind::CreateContainer,
    Kind::StartContainer,
    Kind::Poststart,
    Kind::Poststop,
];

/// Whether the spec has hooks of any of `kinds`.
pub fn has(spec: &Spec, kinds: &[Kind]) -> bool {
    spec.hooks()
        .as_ref()
        .is_some_and(|h| kinds.iter().any(|k| !k.of(h).is_empty()))
}

/// The runtime-spec version the state complies with (not the config's `ociVersion`).
pub const OCI_VERSION: &str = "1.2.0";

/// The state of the container, as `runc state` prints it and hooks read it.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub status: &'static str,
    /// 0 (left out) once the container has stopped.
    #[serde(skip_serializing_if = "is_zero")]
    pub pid: i32,
    pub bundle: PathBuf,
    #[serde(skip_serializing_if = "std::collections::HashMap::is_empty")]
    pub annotations: std::collections::HashMap<String, String>,
}

impl State {
    /// The state of the container of `spec` in `bundle`.
    pub fn new(spec: &Spec, id: &str, bundle: &Path, status: &'static str, pid: i32) -> State {
        State {
            oci_version: OCI_VERSION.to_string(),
            id: id.to_string(),
            status,
            pid,
            bundle: bundle.to_path_buf(),
            annotations: spec.annotations().clone().unwrap_or_default(),
        }
    }
}

fn is_zero(pid: &i32) -> bool {
    *pid == 0
}

/// Runs the `kind` hooks one after another; the first failure stops the list.
pub fn run(hooks: Option<&Hooks>, kind: Kind, state: &State) -> Result<(), HookError> {
    let Some(hooks) = hooks else {
        return Ok(());
    };
    let list = kind.of(hooks);
    if list.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_vec(state).unwrap_or_default();
    for (index, hook) in list.iter().enumerate() {
        run_one(kind, index, hook, state, &json)?;
    }
    Ok(())
}

/// Runs every `kind` hook, whatever the others do; the failures (for poststop, whose
/// failures the runtime spec wants warned about, not acted on).
pub fn run_each(hooks: Option<&Hooks>, kind: Kind, state: &State) -> Vec<HookError> {
    let Some(hooks) = hooks else {
        return Vec::new();
    };
    let json = serde_json::to_vec(state).unwrap_or_default();
    kind.of(hooks)
        .iter()
        .enumerate()
        .filter_map(|(index, hook)| run_one(kind, index, hook, state, &json).err())
        .collect()
}

/// Checks what can be checked before anything runs: absolute paths, positive timeouts,
/// KEY=VALUE environment. The error is (field, reason).
pub fn validate(spec: &Spec) -> Result<(), (String, String)> {
    let Some(hooks) = spec.hooks() else {
        return Ok(());
    };
    for kind in KINDS {
        for (i, h) in kind.of(hooks).iter().enumerate() {
            let field = |f: &str| format!("hooks.{}[{i}].{f}", kind.name());
            if !h.path().is_absolute() {
                let reason = format!("{:?} is not an absolute path", h.path());
                return Err((field("path"), reason));
            }
            if h.timeout().is_some_and(|t| t <= 0) {
                return Err((field("timeout"), "must be greater than zero".into()));
            }
            if let Some(e) = h.env().iter().flatten().find(|e| !e.contains('=')) {
                return Err((field("env"), format!("{e:?} is not KEY=VALUE")));
            }
        }
    }
    Ok(())
}

fn run_one(
    kind: Kind,
    index: usize,
    hook: &Hook,
    state: &State,
    json: &[u8],
) -> Result<(), HookError> {
    let path = hook.path().clone();
    let kind_name = kind.name();
    let io = |what: &'static str| {
        let path = path.clone();
        move |source| HookError::Io {
            kind: kind_name,
            index,
            path,
            what,
            source,
        }
    };
    let out = memfd("hook-output").map_err(io("create output file"))?;
    // The state goes in a file too: a hook that never reads its stdin can then never
    // block us on a full pipe, past its timeout.
    let mut input = memfd("hook-state").map_err(io("create state file"))?;
    input
        .write_all(json)
        .and_then(|()| input.rewind())
        .map_err(io("write state file"))?;
    let mut cmd = Command::new(&path);
    let args = hook.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear()
        .envs(
            hook.env()
                .iter()
                .flatten()
                .filter_map(|e| e.split_once('=')),
        )
        .stdin(input)
        .stdout(out.try_clone().map_err(io("duplicate output file"))?)
        .stderr(out.try_clone().map_err(io("duplicate output file"))?);
    if kind.in_runtime() {
        // As runc, which runs them from the bundle directory.
        cmd.current_dir(&state.bundle);
    }
    let (_child, watch) = process::spawn_watched(&mut cmd).map_err(io("start"))?;
    let deadline = hook
        .timeout()
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut nap = Duration::from_micros(200);
    let status = loop {
        if let Some(code) = watch.try_status() {
            break code;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            watch.kill();
            let _ = watch.wait();
            return Err(HookError::Timeout {
                kind: kind_name,
                index,
                path,
                secs: hook.timeout().unwrap_or_default(),
                output: output(out),
            });
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    if status == 0 {
        return Ok(());
    }
    let status = if status > 128 {
        format!("killed by signal {}", status - 128)
    } else {
        format!("exit status {status}")
    };
    Err(HookError::Failed {
        kind: kind_name,
        index,
        path,
        status,
        output: output(out),
    })
}

/// What the hook wrote (stdout and stderr together, at most 4 KiB), for the error.
fn output(mut f: std::fs::File) -> String {
    let mut buf = Vec::new();
    let _ = f.rewind();
    let _ = Read::by_ref(&mut f).take(4096).read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

fn memfd(name: &str) -> std::io::Result<std::fs::File> {
    let name = CString::new(name).unwrap_or_default();
    nix::sys::memfd::memfd_create(&name, nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
        .map(std::fs::File::from)
        .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hooks: &str) -> Spec {
        serde_json::from_str(&format!(r#"{{"ociVersion":"1.0.2","hooks":{hooks}}}"#)).unwrap()
    }

    fn state(s: &Spec) -> State {
        State::new(s, "c1", Path::new("/"), "creating", 42)
    }

    #[test]
    fn state_reaches_stdin_and_env_is_exact() {
        let dir = std::env::temp_dir().join(format!("mypod-hooks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let s = spec(&format!(
            r#"{{"createRuntime":[{{"path":"/bin/sh","args":["hook-argv0","-c","{{ echo \"$0\"; env | grep -v '^PWD=' | sort; cat; }} > {}","x"],"env":["A=1","B=two"]}}]}}"#,
            out.display()
        ));
        run(s.hooks().as_ref(), Kind::CreateRuntime, &state(&s)).unwrap();
        let got = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let mut lines = got.lines();
        assert_eq!(lines.next(), Some("x"), "args[1..] after -c: $0 is x");
        let rest: Vec<&str> = lines.collect();
        assert!(rest.contains(&"A=1") && rest.contains(&"B=two"), "{got}");
        assert!(
            !rest.iter().any(|l| l.starts_with("PATH=")),
            "no inherited env: {got}"
        );
        let json = rest.last().unwrap();
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["ociVersion"], OCI_VERSION);
        assert_eq!(v["id"], "c1");
        assert_eq!(v["status"], "creating");
        assert_eq!(v["pid"], 42);
        assert_eq!(v["bundle"], "/");
    }

    #[test]
    fn failure_names_the_hook_and_shows_its_output() {
        let s = spec(
            r#"{"poststart":[{"path":"/bin/true"},{"path":"/bin/sh","args":["sh","-c","echo boom >&2; exit 3"]}]}"#,
        );
        let e = run(s.hooks().as_ref(), Kind::Poststart, &state(&s))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "poststart hook #1 (/bin/sh) failed: exit status 3: boom");
    }

    #[test]
    fn timeout_kills_the_hook() {
        let s = spec(
            r#"{"prestart":[{"path":"/bin/sh","args":["sh","-c","echo started; exec sleep 30"],"timeout":1}]}"#,
        );
        let t = Instant::now();
        let e = run(s.hooks().as_ref(), Kind::Prestart, &state(&s))
            .unwrap_err()
            .to_string();
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert_eq!(
            e,
            "prestart hook #0 (/bin/sh) timed out after 1s and was killed: started"
        );
    }

    #[test]
    fn a_missing_binary_is_named() {
        let s = spec(r#"{"startContainer":[{"path":"/nonexistent/hook"}]}"#);
        let e = run(s.hooks().as_ref(), Kind::StartContainer, &state(&s))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("startContainer hook #0 (/nonexistent/hook): start: "),
            "{e}"
        );
    }

    #[test]
    fn validation_names_the_field() {
        let e = validate(&spec(r#"{"poststop":[{"path":"relative"}]}"#)).unwrap_err();
        assert_eq!(e.0, "hooks.poststop[0].path");
        assert_eq!(e.1, r#""relative" is not an absolute path"#);
        let e = validate(&spec(r#"{"prestart":[{"path":"/x","timeout":0}]}"#)).unwrap_err();
        assert_eq!(e.0, "hooks.prestart[0].timeout");
        let e = validate(&spec(r#"{"poststart":[{"path":"/x","env":["NOEQ"]}]}"#)).unwrap_err();
        assert_eq!(
            e,
            (
                "hooks.poststart[0].env".into(),
                r#""NOEQ" is not KEY=VALUE"#.into()
            )
        );
        assert!(validate(&spec(r#"{"prestart":[{"path":"/x","env":["A=1"]}]}"#)).is_ok());
    }

    #[test]
    fn a_hook_that_never_reads_a_large_state_still_times_out() {
        let s = spec(r#"{"prestart":[{"path":"/bin/sleep","args":["sleep","30"],"timeout":1}]}"#);
        let mut st = state(&s);
        // Far more than a pipe holds: a pipe write would block until the hook read it.
        st.annotations.insert("big".into(), "x".repeat(1 << 20));
        let t = Instant::now();
        let e = run(s.hooks().as_ref(), Kind::Prestart, &st).unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
