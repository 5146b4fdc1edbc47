//! The checks of `linux.seccomp` that run when config.json is loaded and validated (see
//! [`crate::spec`]): what runc refuses when it converts the profile, and the field a
//! profile oci-spec cannot parse goes wrong at.

use std::path::PathBuf;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSyscall,
    Spec,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::spec::SpecError;

fn seccomp_err(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError::Seccomp {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks an action and its errno/trace value (`errnoRet` / `defaultErrnoRet`).
fn validate_action(
    action: LinuxSeccompAction,
    ret: Option<u32>,
    action_field: &str,
    ret_field: &str,
) -> Result<(), SpecError> {
    if action == LinuxSeccompAction::ScmpActNotify {
        return Err(seccomp_err(
            action_field,
            "SCMP_ACT_NOTIFY is not supported by mypod yet (it needs a seccomp agent at \
             linux.seccomp.listenerPath)",
        ));
    }
    if matches!(
        action,
        LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
    ) {
        if let Some(v) = ret.filter(|v| *v > u32::from(u16::MAX)) {
            return Err(seccomp_err(
                ret_field,
                format!("{v} does not fit the 16 bits of a seccomp return value"),
            ));
        }
    }
    Ok(())
}

/// Checks `linux.seccomp` as runc does when it converts the profile, so that a profile the
/// container process could not load fails Create before anything is built: actions
/// (SCMP_ACT_NOTIFY and `listenerPath` are refused: no seccomp agent support), errno values,
/// flags this kernel and libseccomp support, argument indexes, empty syscall names. Syscall
/// names unknown on this architecture are not errors: the filter skips them, as runc does.
/// Actions, operators, architectures and flags oci-spec does not know fail parsing already
/// (see [`crate::spec::load`], which names the field).
pub fn validate(sc: &LinuxSeccomp) -> Result<(), SpecError> {
    if sc
        .listener_path()
        .as_ref()
        .is_some_and(|p| !p.as_os_str().is_empty())
    {
        return Err(SpecError::Unsupported {
            field: "linux.seccomp.listenerPath",
        });
    }
    validate_action(
        sc.default_action(),
        sc.default_errno_ret(),
        "linux.seccomp.defaultAction",
        "linux.seccomp.defaultErrnoRet",
    )?;
    super::filter::flags(sc, libseccomp::get_api())
        .map_err(|e| seccomp_err("linux.seccomp.flags", e.trim_start_matches("flags: ")))?;
    for (i, call) in sc.syscalls().iter().flatten().enumerate() {
        let field = |f: &str| format!("linux.seccomp.syscalls[{i}].{f}");
        validate_action(
            call.action(),
            call.errno_ret(),
            &field("action"),
            &field("errnoRet"),
        )?;
        if call.names().iter().any(String::is_empty) {
            return Err(seccomp_err(
                field("names"),
                "an empty string is not a syscall name",
            ));
        }
        for (j, arg) in call.args().iter().flatten().enumerate() {
            super::filter::condition(arg)
                .map_err(|e| seccomp_err(field(&format!("args[{j}]")), e))?;
        }
    }
    Ok(())
}

/// When config.json does not parse, looks at `linux.seccomp` alone (oci-spec's types are
/// stricter than the JSON runc reads):
/// - a profile with neither `defaultAction` nor `syscalls` is no profile to runc: it is
///   dropped and the spec parsed again;
/// - a value oci-spec does not know (an action, operator, architecture or flag) or of the
///   wrong type is reported naming its field, e.g. `linux.seccomp.syscalls[0].action`.
///
/// `None` when `linux.seccomp` is not the problem.
pub fn parse_fallback(data: &[u8]) -> Option<Result<Spec, SpecError>> {
    let mut v: Value = serde_json::from_slice(data).ok()?;
    let sc = v.get("linux")?.get("seccomp")?;
    if sc.is_null() {
        return None;
    }
    let empty = |key: &str| match sc.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    if empty("defaultAction") && empty("syscalls") {
        v.get_mut("linux")?.as_object_mut()?.remove("seccomp");
        return serde_json::from_value(v).ok().map(Ok);
    }
    find_error(sc).map(Err)
}

/// The first field of a JSON `linux.seccomp` that oci-spec cannot read.
fn find_error(sc: &Value) -> Option<SpecError> {
    fn check<T: DeserializeOwned>(field: &str, v: Option<&Value>) -> Result<(), SpecError> {
        let Some(v) = v else {
            return Err(seccomp_err(field, "missing"));
        };
        serde_json::from_value::<T>(v.clone())
            .map(|_| ())
            .map_err(|e| seccomp_err(field, e.to_string()))
    }
    fn optional<T: DeserializeOwned>(field: &str, v: Option<&Value>) -> Result<(), SpecError> {
        check::<Option<T>>(field, Some(v.unwrap_or(&Value::Null)))
    }
    fn each<T: DeserializeOwned>(field: &str, v: Option<&Value>) -> Result<(), SpecError> {
        match v {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, item)| check::<T>(&format!("{field}[{i}]"), Some(item))),
            other => optional::<Vec<T>>(field, other),
        }
    }
    let p = "linux.seccomp";
    let run = || -> Result<(), SpecError> {
        check::<Option<Value>>(p, Some(sc))?;
        if !sc.is_object() {
            return Err(seccomp_err(p, "not an object"));
        }
        check::<LinuxSeccompAction>(&format!("{p}.defaultAction"), sc.get("defaultAction"))?;
        optional::<u32>(&format!("{p}.defaultErrnoRet"), sc.get("defaultErrnoRet"))?;
        each::<Arch>(&format!("{p}.architectures"), sc.get("architectures"))?;
        each::<LinuxSeccompFilterFlag>(&format!("{p}.flags"), sc.get("flags"))?;
        optional::<PathBuf>(&format!("{p}.listenerPath"), sc.get("listenerPath"))?;
        optional::<String>(&format!("{p}.listenerMetadata"), sc.get("listenerMetadata"))?;
        let Some(Value::Array(calls)) = sc.get("syscalls") else {
            return optional::<Vec<LinuxSyscall>>(&format!("{p}.syscalls"), sc.get("syscalls"));
        };
        for (i, call) in calls.iter().enumerate() {
            let f = format!("{p}.syscalls[{i}]");
            if !call.is_object() {
                return check::<LinuxSyscall>(&f, Some(call));
            }
            match call.get("names") {
                Some(names @ Value::Array(_)) => each::<String>(&format!("{f}.names"), Some(names)),
                other => check::<Vec<String>>(&format!("{f}.names"), other),
            }?;
            check::<LinuxSeccompAction>(&format!("{f}.action"), call.get("action"))?;
            optional::<u32>(&format!("{f}.errnoRet"), call.get("errnoRet"))?;
            let Some(Value::Array(args)) = call.get("args") else {
                optional::<Vec<LinuxSeccompArg>>(&format!("{f}.args"), call.get("args"))?;
                continue;
            };
            for (j, arg) in args.iter().enumerate() {
                let a = format!("{f}.args[{j}]");
                if !arg.is_object() {
                    return check::<LinuxSeccompArg>(&a, Some(arg));
                }
                check::<usize>(&format!("{a}.index"), arg.get("index"))?;
                check::<u64>(&format!("{a}.value"), arg.get("value"))?;
                optional::<u64>(&format!("{a}.valueTwo"), arg.get("valueTwo"))?;
                check::<oci_spec::runtime::LinuxSeccompOperator>(
                    &format!("{a}.op"),
                    arg.get("op"),
                )?;
            }
        }
        check::<LinuxSeccomp>(p, Some(sc))
    };
    run().err()
}

#[cfg(test)]
mod tests {
    use crate::spec::{load, validate, SpecError};
    use oci_spec::runtime::Spec;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const MIN: &str = r#"{"ociVersion":"1.0.2","process":{"args":["/bin/true"],"cwd":"/","user":{"uid":0,"gid":0}},"root":{"path":"rootfs"}}"#;

    fn with_seccomp(seccomp: &str) -> String {
        MIN.replace(
            r#""root""#,
            &format!(r#""linux":{{"namespaces":[{{"type":"mount"}}],"seccomp":{seccomp}}},"root""#),
        )
    }

    fn load_str(json: &str) -> Result<Spec, SpecError> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("mypod-seccomp-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), json).unwrap();
        let r = load(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        r
    }

    fn seccomp_error(seccomp: &str) -> String {
        let json = with_seccomp(seccomp);
        match load_str(&json) {
            Ok(s) => validate(&s).unwrap_err().to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn seccomp_profiles_are_accepted() {
        validate(&spec(&with_seccomp(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
                "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW","SECCOMP_FILTER_FLAG_TSYNC"],
                "syscalls":[{"names":["read","no_such_syscall"],"action":"SCMP_ACT_ALLOW"},
                            {"names":["personality"],"action":"SCMP_ACT_ALLOW",
                             "args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"},
                                     {"index":0,"value":255,"valueTwo":8,"op":"SCMP_CMP_MASKED_EQ"}]},
                            {"names":["mkdir"],"action":"SCMP_ACT_TRACE","errnoRet":65535}]}"#,
        )))
        .unwrap();
    }

    #[test]
    fn seccomp_errors_name_the_field() {
        let cases = [
            (
                r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#,
                "linux.seccomp.defaultAction",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ALLOW"},{"names":["mkdir"],"action":"SCMP_ACT_BOGUS"}]}"#,
                "linux.seccomp.syscalls[1].action",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_VAX"]}"#,
                "linux.seccomp.architectures[1]",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_BOGUS"]}"#,
                "linux.seccomp.flags[0]",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_BOGUS"}]}]}"#,
                "linux.seccomp.syscalls[0].args[0].op",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ERRNO"}]}"#,
                "linux.seccomp.syscalls[0].names",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
                "linux.seccomp.syscalls[0].args[0]",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":[""],"action":"SCMP_ACT_ERRNO"}]}"#,
                "linux.seccomp.syscalls[0].names",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":65536}"#,
                "linux.seccomp.defaultErrnoRet",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO","errnoRet":70000}]}"#,
                "linux.seccomp.syscalls[0].errnoRet",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#,
                "linux.seccomp.defaultAction",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
                "linux.seccomp.syscalls[0].action",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"/run/agent.sock"}"#,
                "linux.seccomp.listenerPath is not supported",
            ),
        ];
        for (profile, want) in cases {
            let e = seccomp_error(profile);
            assert!(e.contains(want), "{profile}: {e:?} does not name {want}");
        }
    }

    #[test]
    fn seccomp_without_default_action_or_syscalls_is_no_profile() {
        let s = load_str(&with_seccomp(r#"{"architectures":["SCMP_ARCH_X86_64"]}"#)).unwrap();
        assert!(s.linux().as_ref().unwrap().seccomp().is_none());
        validate(&s).unwrap();
        let e = load_str(&with_seccomp(
            r#"{"syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains("linux.seccomp.defaultAction"), "{e}");
    }
}
