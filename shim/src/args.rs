//! The command line containerd passes: Go-style flags, then an action.

/// Errors parsing the command line.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error("flag -{0} needs a value")]
    MissingValue(String),
    #[error("unknown flag -{0}")]
    Unknown(String),
}

/// Parsed flags.
#[derive(Debug, Default, Clone)]
pub struct Args {
    pub namespace: String,
    pub address: String,
    pub publish_binary: String,
    pub id: String,
    pub bundle: String,
    pub socket: String,
    pub debug: bool,
    pub version: bool,
    /// `-info`: print the RuntimeInfo protobuf (containerd 2.x).
    pub info: bool,
    /// `start`, `delete`, `init`, or empty; `serve` in the server `start` forks.
    pub action: String,
}

impl Args {
    /// Parses `-flag value`, `-flag=value` and `--flag` forms, as Go's flag package does.
    pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Args, ArgsError> {
        let mut a = Args::default();
        let mut it = argv.into_iter();
        while let Some(arg) = it.next() {
            let Some(flag) = arg.strip_prefix('-') else {
                a.action = arg;
                continue;
            };
            let flag = flag.strip_prefix('-').unwrap_or(flag);
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            match name.as_str() {
                "debug" => a.debug = inline.as_deref() != Some("false"),
                "v" | "version" => a.version = true,
                "info" => a.info = true,
                "namespace" | "address" | "publish-binary" | "id" | "bundle" | "socket" => {
                    let v = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .ok_or_else(|| ArgsError::MissingValue(name.clone()))?,
                    };
                    match name.as_str() {
                        "namespace" => a.namespace = v,
                        "address" => a.address = v,
                        "publish-binary" => a.publish_binary = v,
                        "id" => a.id = v,
                        "bundle" => a.bundle = v,
                        _ => a.socket = v,
                    }
                }
                _ => return Err(ArgsError::Unknown(name)),
            }
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Args {
        Args::parse(s.split(' ').map(String::from)).unwrap()
    }

    #[test]
    fn containerd_start_line() {
        let a = parse("-namespace k8s.io -address /run/c.sock -publish-binary /usr/bin/containerd -id abc -debug start");
        assert_eq!(a.namespace, "k8s.io");
        assert_eq!(a.address, "/run/c.sock");
        assert_eq!(a.id, "abc");
        assert!(a.debug);
        assert_eq!(a.action, "start");
    }

    #[test]
    fn inline_values_and_double_dash() {
        let a = parse("--namespace=default -id=x -bundle /b delete");
        assert_eq!(a.namespace, "default");
        assert_eq!(a.id, "x");
        assert_eq!(a.bundle, "/b");
        assert_eq!(a.action, "delete");
    }

    #[test]
    fn bad_flags_are_errors() {
        assert!(Args::parse(["-id".to_string()]).is_err());
        assert!(Args::parse(["-bogus".to_string()]).is_err());
    }
}
