//! `-info`: the runtime's self-description containerd 2.x asks for before it creates a
//! task whose spec has idmapped mounts (`validateRuntimeFeatures`): a protobuf
//! `containerd.types.RuntimeInfo` on stdout whose `features` is the runtime-spec
//! features document (JSON in an Any, as containerd's typeurl stores non-proto types).

/// The runtime-spec features of mypod (`runc features` format), for what containerd and
/// tools read from it.
fn features_json() -> String {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": mypod_sandbox::hooks::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "cgroup": { "v1": true, "v2": true, "systemd": true, "systemdUser": false },
            "seccomp": { "enabled": true },
            "apparmor": { "enabled": false },
            "selinux": { "enabled": false },
            "intelRdt": { "enabled": false },
            "mountExtensions": { "idmap": { "enabled": true } },
        },
    })
    .to_string()
}

/// Appends a length-delimited protobuf field.
fn field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    varint(out, u64::from(number << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The encoded RuntimeInfo: name (1), version (2: version 1), features (4: Any).
pub fn runtime_info() -> Vec<u8> {
    let mut version = Vec::new();
    field(&mut version, 1, env!("CARGO_PKG_VERSION").as_bytes());
    let mut any = Vec::new();
    field(
        &mut any,
        1,
        b"types.containerd.io/opencontainers/runtime-spec/1/features/Features",
    );
    field(&mut any, 2, features_json().as_bytes());
    let mut out = Vec::new();
    field(&mut out, 1, b"io.containerd.mypod.v2");
    field(&mut out, 2, &version);
    field(&mut out, 4, &any);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_info_is_a_protobuf_with_the_features_any() {
        use protobuf::Message;
        let b = runtime_info();
        // Field 4 holds an Any; find and decode it.
        let mut i = 0;
        let mut any = None;
        while i < b.len() {
            let key = b[i] >> 3;
            let (len, n) = {
                let (mut v, mut s, mut n) = (0usize, 0, 0);
                loop {
                    let byte = b[i + 1 + n];
                    v |= ((byte & 0x7f) as usize) << s;
                    n += 1;
                    if byte < 0x80 {
                        break;
                    }
                    s += 7;
                }
                (v, n)
            };
            let start = i + 1 + n;
            if key == 4 {
                any = Some(&b[start..start + len]);
            }
            i = start + len;
        }
        let any = protobuf::well_known_types::any::Any::parse_from_bytes(any.unwrap()).unwrap();
        assert!(any.type_url.ends_with("runtime-spec/1/features/Features"));
        let v: serde_json::Value = serde_json::from_slice(&any.value).unwrap();
        assert_eq!(v["linux"]["mountExtensions"]["idmap"]["enabled"], true);
    }
}
