//! The test image built by `scripts/build-image.sh`, and a plain-directory copy of its rootfs for
//! containers made from a hand-written spec (`ctr run --config`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::version::repo_root;

/// The name `ctr images import` gives the image on every containerd version.
pub const IMAGE: &str = "docker.io/library/busybox:local";

/// The image's PATH (its config's Env).
pub const IMAGE_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The OCI layout tar (env MYPOD_TEST_IMAGE overrides); panics if it is missing.
pub fn image_tar() -> PathBuf {
    let p = std::env::var_os("MYPOD_TEST_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache/images/busybox.tar"));
    assert!(
        p.is_file(),
        "test image {} is missing: run scripts/setup.sh",
        p.display()
    );
    p
}

fn tar_x(archive: &Path, dest: &Path, members: &[&str]) {
    fs::create_dir_all(dest).unwrap_or_else(|e| panic!("mkdir {}: {e}", dest.display()));
    let out = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dest)
        .args(members)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar -xf {} -C {}: {}",
        archive.display(),
        dest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read_json(p: &Path) -> Value {
    let text = fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("odd digest {digest}"));
    layout.join("blobs/sha256").join(hex)
}

/// Unpacks the image's layers into `dest` (which must not exist yet), using `scratch` for the
/// OCI layout.
pub fn unpack_rootfs(dest: &Path, scratch: &Path) {
    assert!(!dest.exists(), "{} already exists", dest.display());
    if !scratch.join("index.json").is_file() {
        tar_x(&image_tar(), scratch, &[]);
    }
    let index = read_json(&scratch.join("index.json"));
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("index.json: manifests[0].digest");
    let manifest = read_json(&blob(scratch, digest));
    let layers = manifest["layers"].as_array().expect("manifest: layers");
    for layer in layers {
        let d = layer["digest"].as_str().expect("layer digest");
        tar_x(&blob(scratch, d), dest, &[]);
    }
    assert!(
        dest.join("bin/busybox").is_file(),
        "unpacked rootfs has no /bin/busybox"
    );
}
