//! Protos that no crate ships: CRI's `runtimeoptions.v1.Options`, which containerd hands
//! non-runc shims (on `start`'s stdin and in `CreateTaskRequest.options`), and the part of
//! CRI's `runtime.v1.PodSandboxConfig` a shim sandboxer reads (`cri_pod`).

// The generated mod.rs declares `pub mod runtimeoptions;` (runtimeoptions.v1). Generated
// code is exempt from the workspace's lints.
#[allow(
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used,
    unsafe_op_in_unsafe_fn
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/protos/mod.rs"));
}
pub use generated::cri_pod;
pub use generated::runtimeoptions;

pub use runtimeoptions::Options;

/// The type URL of CRI's PodSandboxConfig in containerd 2.x's CreateSandboxRequest.options.
pub const POD_SANDBOX_CONFIG_TYPE_URL: &str = "runtime.v1.PodSandboxConfig";

/// The type URL containerd uses for [`Options`].
pub const OPTIONS_TYPE_URL: &str = "runtimeoptions.v1.Options";

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::Message;

    #[test]
    fn options_round_trip_with_containerd_field_numbers() {
        // type_url=1 "t", config_path=2 "/etc/mypod/runtime.toml", config_body=3 "a=1"
        let mut wire = vec![0x0a, 1, b't', 0x12, 23];
        wire.extend_from_slice(b"/etc/mypod/runtime.toml");
        wire.extend_from_slice(&[0x1a, 3, b'a', b'=', b'1']);
        let o = Options::parse_from_bytes(&wire).unwrap();
        assert_eq!(o.type_url, "t");
        assert_eq!(o.config_path, "/etc/mypod/runtime.toml");
        assert_eq!(o.config_body, b"a=1");
        assert_eq!(o.write_to_bytes().unwrap(), wire);
    }
}
