//! Pod grouping: which pod a container belongs to, and where the shim serving that pod
//! listens.
//!
//! Containers of one pod share one shim. A container's group is CRI's sandbox id, else
//! runc's group annotation, else the container's own id (an empty annotation counts as
//! absent). CRI's comes first, unlike runc-v2: it is set by containerd itself, while a pod
//! annotation can reach a container's spec (`pod_annotations`), and a pod that named
//! another pod's group would join that pod's shim and its user namespace. The socket path is derived from (containerd address, namespace, group), so
//! `start` and `delete` find the same shim for a container.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Annotation containerd's runc-v2 shim honours for grouping; we honour it too (after
/// CRI's sandbox id).
pub const RUNC_GROUP: &str = "io.containerd.runc.v2.group";
/// Annotation CRI sets on every container of a pod.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// Where shim sockets live (as runc-v2's): a 0700 directory, never an abstract socket.
pub const SOCKET_DIR: &str = "/run/containerd/s";

/// The group named by a container's annotations, if any (see the module doc).
fn named(annotations: &HashMap<String, String>) -> Option<&str> {
    [SANDBOX_ID, RUNC_GROUP].iter().find_map(|k| {
        annotations
            .get(*k)
            .map(String::as_str)
            .filter(|g| !g.is_empty())
    })
}

/// The group of container `id` with these (a spec's) annotations.
pub fn group_id<'a>(annotations: Option<&'a HashMap<String, String>>, id: &'a str) -> &'a str {
    annotations.and_then(named).unwrap_or(id)
}

/// The group named in a bundle's config.json, if it can be read and names one. Only the
/// annotations are decoded: the full spec is parsed and validated once, by Create, in the
/// serving shim.
pub fn of_bundle(bundle: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Annotated {
        #[serde(default)]
        annotations: Option<HashMap<String, String>>,
    }
    let data = std::fs::read(bundle.join("config.json")).ok()?;
    let a = serde_json::from_slice::<Annotated>(&data)
        .ok()?
        .annotations?;
    named(&a).map(str::to_string)
}

/// The socket path of the shim serving `group` for containerd at `address` in `namespace`.
pub fn socket_path(address: &str, namespace: &str, group: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(address.as_bytes());
    h.update(b"/");
    h.update(namespace.as_bytes());
    h.update(b"/");
    h.update(group.as_bytes());
    let hex: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Path::new(SOCKET_DIR).join(format!("mypod-{hex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sandbox_id_wins_then_runc_group_then_own_id() {
        assert_eq!(group_id(None, "c1"), "c1");
        let a = annotations(&[("other", "x")]);
        assert_eq!(group_id(Some(&a), "c1"), "c1");
        let a = annotations(&[(SANDBOX_ID, "pod")]);
        assert_eq!(group_id(Some(&a), "c1"), "pod");
        // A pod annotation naming another pod's group does not move a CRI container.
        let a = annotations(&[(SANDBOX_ID, "pod"), (RUNC_GROUP, "grp")]);
        assert_eq!(group_id(Some(&a), "c1"), "pod");
        let a = annotations(&[(RUNC_GROUP, "grp")]);
        assert_eq!(group_id(Some(&a), "c1"), "grp");
    }

    #[test]
    fn empty_annotations_are_ignored() {
        let a = annotations(&[(RUNC_GROUP, "")]);
        assert_eq!(group_id(Some(&a), "c1"), "c1");
        let a = annotations(&[(RUNC_GROUP, ""), (SANDBOX_ID, "pod")]);
        assert_eq!(group_id(Some(&a), "c1"), "pod");
        let a = annotations(&[(RUNC_GROUP, ""), (SANDBOX_ID, "")]);
        assert_eq!(group_id(Some(&a), "c1"), "c1");
    }

    #[test]
    fn bundle_group_comes_from_the_annotations_only() {
        let dir = std::env::temp_dir().join(format!("mypod-group-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: [(&str, Option<&str>); 7] = [
            (
                r#"{"ociVersion":"1.0.2","annotations":{"io.kubernetes.cri.sandbox-id":"sb"}}"#,
                Some("sb"),
            ),
            (
                r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"sb","io.containerd.runc.v2.group":"g"},"process":{"args":["x"]}}"#,
                Some("sb"),
            ),
            (
                r#"{"annotations":{"io.containerd.runc.v2.group":"","io.kubernetes.cri.sandbox-id":"sb"}}"#,
                Some("sb"),
            ),
            (
                r#"{"annotations":{"io.containerd.runc.v2.group":""}}"#,
                None,
            ),
            (r#"{"annotations":null}"#, None),
            (r#"{"ociVersion":"1.0.2","process":{"args":["x"]}}"#, None),
            ("not json", None),
        ];
        for (json, want) in cases {
            std::fs::write(dir.join("config.json"), json).unwrap();
            assert_eq!(of_bundle(&dir).as_deref(), want, "{json}");
            // A full spec groups the same way from its annotations (as `delete` does).
            if let Ok(spec) = serde_json::from_str::<oci_spec::runtime::Spec>(json) {
                assert_eq!(
                    group_id(spec.annotations().as_ref(), "own-id"),
                    want.unwrap_or("own-id"),
                    "{json}"
                );
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(of_bundle(&dir), None);
    }

    #[test]
    fn socket_path_is_stable_and_distinct_per_part_and_fits_sun_path() {
        let a = socket_path("/run/containerd/containerd.sock", "k8s.io", "pod1");
        assert_eq!(
            a,
            socket_path("/run/containerd/containerd.sock", "k8s.io", "pod1")
        );
        assert_ne!(
            a,
            socket_path("/run/containerd/containerd.sock", "k8s.io", "pod2")
        );
        assert_ne!(
            a,
            socket_path("/run/containerd/containerd.sock", "default", "pod1")
        );
        assert_ne!(a, socket_path("/other.sock", "k8s.io", "pod1"));
        assert!(a.as_os_str().len() < 100);
        assert!(a.starts_with(SOCKET_DIR));
        // Pinned: a shim started by an older binary must still be found after an upgrade.
        assert_eq!(
            a,
            Path::new("/run/containerd/s/mypod-8e264b1ad347c80aee5f3dea6e4bb53d")
        );
    }
}
