//! runtime.toml: the shim's configuration, from containerd's runtime options.
//!
//! `start` reads `runtimeoptions.v1.Options` (a protobuf Any) from stdin; its ConfigPath
//! names the file, or (containerd 1.7+) config_body carries the TOML itself. Unknown keys
//! and wrong types are errors that name the key, reported when the pod's shim starts.

use std::io::Read;
use std::path::Path;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use serde::Deserialize;

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read runtime options from stdin: {0}")]
    Stdin(std::io::Error),
    #[error("decode runtime options: {0}")]
    Decode(String),
    #[error("read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid runtime config {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// The shim's configuration (see runtime.toml for every key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Log at debug level.
    pub debug: bool,
    /// Container settings.
    pub container: ContainerConfig,
    /// Sandboxing defaults.
    pub sandbox: SandboxConfig,
}

/// `[container]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContainerConfig {
    /// Seconds container setup may take.
    pub setup_timeout: u64,
}

impl Default for ContainerConfig {
    fn default() -> ContainerConfig {
        ContainerConfig { setup_timeout: 120 }
    }
}

/// `[sandbox]`: how much isolation a container gets when its spec does not decide.
/// The built-in defaults keep today's behaviour; see runtime.toml for the target ones.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// `"pod"` or `"off"` (carried to the sandbox; not applied yet).
    pub user_namespace: UserNamespace,
    /// `"default"` or `"off"`: mypod's default profile for specs without one.
    pub seccomp: Seccomp,
    /// `"refuse"` or `"allow"`.
    pub host_access: HostAccess,
    /// First host id of the user-namespace id pool (a multiple of 65536).
    pub userns_pool_start: u32,
    /// Ids in the pool (a non-zero multiple of 65536).
    pub userns_pool_size: u32,
}

/// `sandbox.user_namespace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserNamespace {
    Pod,
    Off,
}

/// `sandbox.seccomp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seccomp {
    Default,
    Off,
}

/// `sandbox.host_access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostAccess {
    Refuse,
    Allow,
}

/// Host ids come in blocks of this many (one container's 0..65535).
const ID_BLOCK: u32 = 65536;

impl Default for SandboxConfig {
    fn default() -> SandboxConfig {
        SandboxConfig {
            user_namespace: UserNamespace::Pod,
            seccomp: Seccomp::Default,
            host_access: HostAccess::Refuse,
            userns_pool_start: 0x7000_0000,
            userns_pool_size: ID_BLOCK * 1024,
        }
    }
}

impl SandboxConfig {
    /// Checks the id pool; the message names the key.
    fn check(&self) -> Result<(), String> {
        let (start, size) = (self.userns_pool_start, self.userns_pool_size);
        if start % ID_BLOCK != 0 {
            return Err(format!(
                "sandbox.userns_pool_start = {start}: must be a multiple of 65536"
            ));
        }
        // Only where the pool is used: a node that runs without pod user namespaces keeps
        // whatever it had.
        if start == 0 && self.user_namespace == UserNamespace::Pod {
            return Err(
                "sandbox.userns_pool_start = 0 with user_namespace = \"pod\": 0 would make a \
                 pod's root the host's root"
                    .to_string(),
            );
        }
        if size == 0 || size % ID_BLOCK != 0 {
            return Err(format!(
                "sandbox.userns_pool_size = {size}: must be a non-zero multiple of 65536"
            ));
        }
        if u64::from(start) + u64::from(size) > 1 << 31 {
            return Err(format!(
                "sandbox.userns_pool_start + sandbox.userns_pool_size = {start} + {size}: \
                 must not exceed 2147483648 (ids above 2147483647 are refused)"
            ));
        }
        Ok(())
    }

    /// The sandbox's policy for containers of this shim.
    pub fn policy(&self) -> mypod_sandbox::Policy {
        use mypod_sandbox::policy;
        policy::Policy {
            user_namespace: match self.user_namespace {
                UserNamespace::Pod => policy::UserNamespace::Pod,
                UserNamespace::Off => policy::UserNamespace::Off,
            },
            userns_pool: policy::IdPool {
                start: self.userns_pool_start,
                size: self.userns_pool_size,
            },
            seccomp: match self.seccomp {
                Seccomp::Default => policy::SeccompDefault::Default,
                Seccomp::Off => policy::SeccompDefault::Off,
            },
            host_access: match self.host_access {
                HostAccess::Refuse => policy::HostAccess::Refuse,
                HostAccess::Allow => policy::HostAccess::Allow,
            },
        }
    }
}

/// Where a TOML error is: `table.key (line N)`, read from the text around its span, so
/// that an error the deserializer reports without the key (a wrong type, an unknown
/// value) still names it.
fn locate(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at)?;
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next().unwrap_or("");
    let table = before
        .get(..line_start)?
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .and_then(|l| l.get(1..l.find(']')?))
        .map(str::trim);
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty());
    Some(match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k} (line {line_no})"),
        (None, Some(k)) => format!("{k} (line {line_no})"),
        _ => format!("line {line_no}"),
    })
}

impl Config {
    /// Parses and checks TOML; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let c: Config = toml::from_str(text).map_err(|e| {
            let at = e.span().and_then(|s| locate(text, s.start));
            invalid(match at {
                Some(at) => format!("{at}: {}", e.message()),
                None => e.message().to_string(),
            })
        })?;
        if !(1..=3600).contains(&c.container.setup_timeout) {
            return Err(invalid(format!(
                "container.setup_timeout = {}: must be 1 to 3600 seconds",
                c.container.setup_timeout
            )));
        }
        c.sandbox.check().map_err(invalid)?;
        Ok(c)
    }

    /// Reads the runtime options on stdin (if any) and returns the TOML text to use and
    /// where it came from. No options, or options of another type, mean defaults.
    pub fn source_from_stdin() -> Result<Option<(String, String)>, ConfigError> {
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Ok(None);
        }
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(ConfigError::Stdin)?;
        Self::source_from_options(&buf)
    }

    /// Decodes a marshalled Any holding runtimeoptions.v1.Options.
    pub fn source_from_options(any: &[u8]) -> Result<Option<(String, String)>, ConfigError> {
        if any.is_empty() {
            return Ok(None);
        }
        let any = Any::parse_from_bytes(any).map_err(|e| ConfigError::Decode(e.to_string()))?;
        if !any.type_url.ends_with(mypod_protos::OPTIONS_TYPE_URL) {
            log::info!("runtime options of type {:?} ignored", any.type_url);
            return Ok(None);
        }
        let opts = mypod_protos::Options::parse_from_bytes(&any.value)
            .map_err(|e| ConfigError::Decode(e.to_string()))?;
        if !opts.config_path.is_empty() {
            let text = std::fs::read_to_string(Path::new(&opts.config_path)).map_err(|source| {
                ConfigError::Read {
                    path: opts.config_path.clone(),
                    source,
                }
            })?;
            return Ok(Some((text, opts.config_path)));
        }
        if !opts.config_body.is_empty() {
            let text = String::from_utf8_lossy(&opts.config_body).into_owned();
            return Ok(Some((text, "(options table from containerd)".into())));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_runtime_toml_is_the_defaults() {
        let text = include_str!("../../runtime.toml");
        assert_eq!(
            Config::parse(text, "runtime.toml").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::parse("[container]\nsetup_timout = 5\n", "x").unwrap_err();
        assert!(e.to_string().contains("setup_timout"), "{e}");
        let e = Config::parse("debug = \"yes\"\n", "x").unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
        let e = Config::parse("[container]\nsetup_timeout = 0\n", "x").unwrap_err();
        assert!(e.to_string().contains("container.setup_timeout"), "{e}");
    }

    #[test]
    fn sandbox_defaults() {
        let s = Config::default().sandbox;
        assert_eq!(s.user_namespace, UserNamespace::Pod);
        assert_eq!(s.seccomp, Seccomp::Default);
        assert_eq!(s.host_access, HostAccess::Refuse);
        assert_eq!(s.userns_pool_start, 0x7000_0000);
        assert_eq!(s.userns_pool_size, 65536 * 1024);
        assert_eq!(s.policy(), mypod_sandbox::Policy::default());
        // An empty table is the defaults too.
        assert_eq!(
            Config::parse("[sandbox]\n", "x").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn sandbox_keys_parse() {
        let text = "[sandbox]\nuser_namespace = \"pod\"\nseccomp = \"default\"\n\
                    host_access = \"refuse\"\nuserns_pool_start = 65536\n\
                    userns_pool_size = 131072\n";
        let s = Config::parse(text, "x").unwrap().sandbox;
        assert_eq!(
            s,
            SandboxConfig {
                user_namespace: UserNamespace::Pod,
                seccomp: Seccomp::Default,
                host_access: HostAccess::Refuse,
                userns_pool_start: 65536,
                userns_pool_size: 131072,
            }
        );
        let p = s.policy();
        assert_eq!(p.user_namespace, mypod_sandbox::policy::UserNamespace::Pod);
        assert_eq!(p.seccomp, mypod_sandbox::policy::SeccompDefault::Default);
        assert_eq!(p.host_access, mypod_sandbox::policy::HostAccess::Refuse);
        assert_eq!(
            p.userns_pool,
            mypod_sandbox::policy::IdPool {
                start: 65536,
                size: 131072
            }
        );
        let s = Config::parse(
            "[sandbox]\nuser_namespace = \"off\"\nseccomp = \"off\"\nhost_access = \"allow\"\n",
            "x",
        )
        .unwrap()
        .sandbox;
        assert_eq!(s.user_namespace, UserNamespace::Off);
        assert_eq!(s.seccomp, Seccomp::Off);
        assert_eq!(s.host_access, HostAccess::Allow);
        // The whole pool up to 2^31, above the host's first 65536 ids.
        let text = "[sandbox]\nuserns_pool_start = 65536\nuserns_pool_size = 2147418112\n";
        assert!(Config::parse(text, "x").is_ok());
        // A start of 0 where no pod user namespace is made (as accepted before).
        let text = "[sandbox]\nuser_namespace = \"off\"\nuserns_pool_start = 0\n";
        assert!(Config::parse(text, "x").is_ok());
    }

    #[test]
    fn sandbox_errors_name_the_key_and_the_file() {
        let err = |text: &str| {
            Config::parse(text, "/etc/mypod/runtime.toml")
                .unwrap_err()
                .to_string()
        };
        let cases = [
            ("[sandbox]\nhost_acces = \"allow\"\n", "host_acces"),
            ("[sandbox]\nhost_access = \"deny\"\n", "sandbox.host_access"),
            ("[sandbox]\nhost_access = true\n", "sandbox.host_access"),
            ("[sandbox]\nseccomp = \"strict\"\n", "sandbox.seccomp"),
            ("[sandbox]\nuser_namespace = \"host\"\n", "sandbox.user_namespace"),
            ("[sandbox]\nuserns_pool_start = \"0\"\n", "sandbox.userns_pool_start"),
            ("[sandbox]\nuserns_pool_start = -65536\n", "sandbox.userns_pool_start"),
            ("[sandbox]\nuserns_pool_size = 4294967296\n", "sandbox.userns_pool_size"),
            ("[sandbox]\nuserns_pool_start = 100000\n", "sandbox.userns_pool_start = 100000: must be a multiple of 65536"),
            ("[sandbox]\nuserns_pool_start = 0\n", "would make a pod's root the host's root"),
            ("[sandbox]\nuserns_pool_size = 0\n", "sandbox.userns_pool_size = 0: must be a non-zero multiple of 65536"),
            ("[sandbox]\nuserns_pool_size = 65537\n", "sandbox.userns_pool_size = 65537: must be a non-zero multiple of 65536"),
            (
                "[sandbox]\nuserns_pool_start = 2147418112\nuserns_pool_size = 131072\n",
                "sandbox.userns_pool_start + sandbox.userns_pool_size = 2147418112 + 131072: must not exceed 2147483648",
            ),
            ("sandbox = 1\n", "sandbox"),
        ];
        for (text, key) in cases {
            let e = err(text);
            assert!(e.contains(key), "{text:?}: {e}");
            assert!(e.contains("/etc/mypod/runtime.toml"), "{text:?}: {e}");
        }
        // The default start plus the default size fits; one block more does not.
        let text = "[sandbox]\nuserns_pool_size = 268435456\n";
        assert!(Config::parse(text, "x").is_ok());
        let text = "[sandbox]\nuserns_pool_size = 268500992\n";
        assert!(err(text).contains("must not exceed"), "{}", err(text));
    }

    #[test]
    fn options_any_selects_path_or_body() {
        let mut o = mypod_protos::Options::new();
        o.config_body = b"debug = true\n".to_vec();
        let mut any = Any::new();
        any.type_url = format!("types.containerd.io/{}", mypod_protos::OPTIONS_TYPE_URL);
        any.value = o.write_to_bytes().unwrap();
        let (text, _) = Config::source_from_options(&any.write_to_bytes().unwrap())
            .unwrap()
            .unwrap();
        assert!(Config::parse(&text, "body").unwrap().debug);
        any.type_url = "containerd.runc.v1.Options".into();
        assert!(Config::source_from_options(&any.write_to_bytes().unwrap())
            .unwrap()
            .is_none());
    }
}
