//! Harness for mypod's end-to-end tests: private containerd instances (1.6, 1.7, 2.1) driven
//! through `ctr` exactly as a user would, or through CRI as the kubelet would (`cri`,
//! `cri_instance`), with complete cleanup.
//!
//! Environment:
//! - `MYPOD_TEST_RUNTIME` = `mypod` (default) or `runc`: which runtime the suite runs containers
//!   with; `runc` checks the tests themselves against containerd's runc shim.
//! - `MYPOD_SHIM`: the shim binary (default `<repo>/target/release/containerd-shim-mypod-v2`).
//! - `MYPOD_CONTAINERD_1_6`, `_1_7`, `_2_1`: directories holding `containerd` and `ctr`.
//! - `MYPOD_TEST_IMAGE`: the OCI layout tar (default `<repo>/.cache/images/busybox.tar`).
//! - `MYPOD_TEST_TMPDIR`: where instance dirs go (default `/tmp`).

// Test code: a panic (unwrap, expect) is how a test or the harness fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bench;
pub mod caps;
pub mod cleanup;
pub mod command;
pub mod containerd;
pub mod cri;
pub mod cri_instance;
pub mod ctr;
pub mod diff;
pub mod image;
pub mod netns;
pub mod panic_note;
pub mod procfs;
pub mod task_rpc;
pub mod version;

pub use command::Output;
pub use containerd::{beside_runc, Containerd, MYPOD_RUNTIME, RUNC_RUNTIME};
pub use cri::{ContainerBuilder, CriClient, CriError, PodBuilder};
pub use cri_instance::{Pod, PodFootprint, SandboxImage};
pub use ctr::Task;
pub use image::IMAGE;
pub use version::Version;

/// Makes one `#[test]` per containerd version from a function `fn NAME(c: &Containerd)`:
/// `per_version!(NAME);` gives `NAME::v1_6`, `NAME::v1_7` and `NAME::v2_1`;
/// `per_version!(NAME: v1_7, v2_1);` only those. Each test gets a fresh containerd instance.
#[macro_export]
macro_rules! per_version {
    ($name:ident) => {
        $crate::per_version!($name: v1_6, v1_7, v2_1);
    };
    ($name:ident with $f:path) => {
        $crate::per_version!($name with $f: v1_6, v1_7, v2_1);
    };
    ($name:ident: $($v:ident),+ $(,)?) => {
        $crate::per_version!($name with ::std::convert::identity: $($v),+);
    };
    ($name:ident with $f:path: $($v:ident),+ $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $v() {
                    let c = $f($crate::Containerd::builder(stringify!($v))).start();
                    super::$name(&c);
                }
            )+
        }
    };
}

/// Like `per_version!`, with a CRI-enabled instance (`Containerd::builder(v).cri(true)`):
/// `per_version_cri!(NAME);`, `per_version_cri!(NAME: v1_7, v2_1);`, or
/// `per_version_cri!(NAME with FN);` where `FN(Builder) -> Builder` adjusts the instance (e.g.
/// its sandbox image).
#[macro_export]
macro_rules! per_version_cri {
    ($name:ident) => {
        $crate::per_version_cri!($name with ::std::convert::identity);
    };
    ($name:ident with $f:path) => {
        $crate::per_version_cri!($name with $f: v1_6, v1_7, v2_1);
    };
    ($name:ident: $($v:ident),+ $(,)?) => {
        $crate::per_version_cri!($name with ::std::convert::identity: $($v),+);
    };
    ($name:ident with $f:path: $($v:ident),+ $(,)?) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $v() {
                    let b = $crate::Containerd::builder(stringify!($v)).cri(true);
                    let mut c = $f(b).start();
                    // `&mut` coerces to `&` for tests that do not restart containerd.
                    super::$name(&mut c);
                }
            )+
        }
    };
}
