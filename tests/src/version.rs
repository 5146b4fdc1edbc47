//! The containerd versions the suite runs against, and where their binaries are.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A containerd release line the suite supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// Debian bookworm's containerd 1.6 (`/usr/bin`).
    V1_6,
    /// Debian trixie's containerd 1.7, unpacked by `scripts/setup.sh` under `.cache/containerd-1.7`.
    V1_7,
    /// Debian sid's containerd 2.1, unpacked by `scripts/setup.sh` under `.cache/containerd-2.1`.
    V2_1,
}

impl Version {
    pub const ALL: [Version; 3] = [Version::V1_6, Version::V1_7, Version::V2_1];

    /// Accepts "1.6", "v1_6", "1_6" and the like.
    pub fn parse(s: &str) -> Version {
        match s.trim_start_matches('v').replace('_', ".").as_str() {
            "1.6" => Version::V1_6,
            "1.7" => Version::V1_7,
            "2.1" => Version::V2_1,
            other => panic!("unknown containerd version {other:?} (want 1.6, 1.7 or 2.1)"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_6 => "1.6",
            Version::V1_7 => "1.7",
            Version::V2_1 => "2.1",
        }
    }

    /// Name of the environment variable that overrides the binary directory.
    pub fn env_var(self) -> String {
        format!("MYPOD_CONTAINERD_{}", self.as_str().replace('.', "_"))
    }

    /// containerd config file format version this release reads.
    pub fn config_version(self) -> u32 {
        match self {
            Version::V1_6 | Version::V1_7 => 2,
            Version::V2_1 => 3,
        }
    }

    /// Directory holding `containerd`, `ctr` and `containerd-shim-runc-v2` of this version.
    pub fn bin_dir(self) -> PathBuf {
        if let Some(dir) = std::env::var_os(self.env_var()) {
            return PathBuf::from(dir);
        }
        match self {
            Version::V1_6 => PathBuf::from("/usr/bin"),
            Version::V1_7 => repo_root().join(".cache/containerd-1.7/usr/bin"),
            Version::V2_1 => repo_root().join(".cache/containerd-2.1/usr/bin"),
        }
    }

    /// Checks that the binaries exist and really are this version; panics (fails the test)
    /// otherwise, so that a missing version never passes silently.
    pub fn binaries(self) -> Binaries {
        let dir = self.bin_dir();
        let b = Binaries {
            containerd: dir.join("containerd"),
            ctr: dir.join("ctr"),
            runc_shim: dir.join("containerd-shim-runc-v2"),
        };
        for p in [&b.containerd, &b.ctr] {
            assert!(
                p.is_file(),
                "containerd {} binary {} is missing: run scripts/setup.sh (or set {} to a directory \
                 holding containerd and ctr)",
                self,
                p.display(),
                self.env_var()
            );
        }
        let out = Command::new(&b.containerd)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", b.containerd.display()));
        let text = String::from_utf8_lossy(&out.stdout);
        let want = format!(" {}.", self.as_str());
        assert!(
            text.contains(&want),
            "{} is not containerd {}: it says {text:?}",
            b.containerd.display(),
            self
        );
        b
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Paths of one containerd version's binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub containerd: PathBuf,
    pub ctr: PathBuf,
    pub runc_shim: PathBuf,
}

/// The workspace root (this crate lives in `<root>/tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("CARGO_MANIFEST_DIR has a parent")
        .to_path_buf()
}
