//! The test image built by `scripts/build-image.sh`, a plain-directory copy of its rootfs for
//! containers made from a hand-written spec (`ctr run --config`), and variants of it made
//! locally (`variant_tar`: another config `User`, an extra layer of files).

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

/// A variant of the test image, derived locally from its OCI layout (no registry): the same
/// layer, optionally a layer of extra files on top, and a config with `User` set.
#[derive(Clone, Copy, Debug)]
pub struct Variant<'a> {
    /// The full name it is imported under, `REPO:TAG` (`docker.io/library/busybox:TAG`).
    pub name: &'a str,
    /// The config's `User` (`NAME`, `UID` or `UID:GID`), if any.
    pub user: Option<&'a str>,
    /// Files of the extra layer: (path in the image, content), mode 0644; none: no extra layer.
    pub files: &'a [(&'a str, &'a str)],
}

/// The `sha256:HEX` digest and size of `data`, stored as a blob of `layout`.
fn put_blob(layout: &Path, data: &[u8]) -> (String, usize) {
    use sha2::{Digest, Sha256};
    let hex: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let digest = format!("sha256:{hex}");
    let p = blob(layout, &digest);
    fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    (digest, data.len())
}

/// `tar -cf ARCHIVE -C DIR MEMBERS...`, deterministic (sorted, fixed mtime, owner 0:0).
fn tar_c(archive: &Path, dir: &Path, members: &[String]) {
    let out = Command::new("tar")
        .args([
            "--sort=name",
            "--mtime=@1700000000",
            "--owner=0",
            "--group=0",
        ])
        .args(["--numeric-owner", "--format=posix", "-cf"])
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .args(members)
        .output()
        .expect("run tar");
    assert!(
        out.status.success(),
        "tar -cf {} -C {}: {}",
        archive.display(),
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes the OCI layout tar of variant `v` under `dir` and returns its path (import it with
/// `ctr images import`, as the base image is).
pub fn variant_tar(v: &Variant, dir: &Path) -> PathBuf {
    let (_, tag) = v.name.rsplit_once(':').expect("variant name is REPO:TAG");
    let work = dir.join(format!("variant-{tag}"));
    let layout = work.join("layout");
    tar_x(&image_tar(), &layout, &[]);
    let mut index = read_json(&layout.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("index.json: manifests[0].digest")
        .to_string();
    let mut manifest = read_json(&blob(&layout, &manifest_digest));
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("manifest: config.digest")
        .to_string();
    let mut config = read_json(&blob(&layout, &config_digest));
    // The base's config and manifest are replaced: no unreferenced blobs in the tar.
    for old in [&manifest_digest, &config_digest] {
        fs::remove_file(blob(&layout, old)).expect("remove a replaced blob");
    }
    if let Some(user) = v.user {
        config["config"]["User"] = user.into();
    }
    if !v.files.is_empty() {
        let root = work.join("layer");
        for (path, text) in v.files {
            let p = root.join(path.trim_start_matches('/'));
            fs::create_dir_all(p.parent().expect("a file has a parent")).expect("mkdir");
            fs::write(&p, text).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        }
        let mut top: Vec<String> = fs::read_dir(&root)
            .expect("read the layer dir")
            .map(|e| {
                e.expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        top.sort();
        let layer = work.join("layer.tar");
        tar_c(&layer, &root, &top);
        let data = fs::read(&layer).expect("read the layer");
        let (digest, size) = put_blob(&layout, &data);
        manifest["layers"]
            .as_array_mut()
            .expect("manifest: layers")
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": digest,
                "size": size,
            }));
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .expect("config: rootfs.diff_ids")
            .push(digest.into());
    }
    let (digest, size) = put_blob(&layout, &serde_json::to_vec(&config).expect("JSON"));
    manifest["config"]["digest"] = digest.into();
    manifest["config"]["size"] = size.into();
    let (digest, size) = put_blob(&layout, &serde_json::to_vec(&manifest).expect("JSON"));
    let entry = &mut index["manifests"][0];
    entry["digest"] = digest.into();
    entry["size"] = size.into();
    entry["annotations"] = serde_json::json!({
        "io.containerd.image.name": v.name,
        "org.opencontainers.image.ref.name": tag,
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("JSON"),
    )
    .expect("write index.json");
    let out = work.join("image.tar");
    let members = ["oci-layout", "index.json", "blobs"].map(String::from);
    tar_c(&out, &layout, &members);
    out
}
