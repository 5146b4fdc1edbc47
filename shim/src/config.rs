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

impl Config {
    /// Parses and checks TOML; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            origin: origin.to_string(),
            message,
        };
        let c: Config = toml::from_str(text).map_err(|e| invalid(e.message().to_string()))?;
        if !(1..=3600).contains(&c.container.setup_timeout) {
            return Err(invalid(format!(
                "container.setup_timeout = {}: must be 1 to 3600 seconds",
                c.container.setup_timeout
            )));
        }
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
