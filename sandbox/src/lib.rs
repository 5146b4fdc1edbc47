//! mypod's sandbox library: everything needed to turn an OCI bundle into running
//! containers of one pod — namespaces, mounts, cgroups, security, stdio — with no
//! knowledge of ttrpc or containerd types, so it can be tested and reused alone.
//!
//! Container setup runs in a freshly exec'd helper (`init`), never between fork and
//! exec of the multi-threaded caller: see [`container`] for the protocol.

pub mod cgroup;
pub mod console;
pub mod container;
pub mod exe;
mod forks;
#[doc(hidden)]
pub mod fuzz;
pub mod holder;
pub mod hooks;
pub mod host_access;
pub mod idmap;
pub(crate) mod ids;
pub mod init;
pub mod json_path;
pub mod mount;
pub mod pod_files;
pub(crate) mod pod_rootfs;
pub mod pod_userns;
pub mod policy;
pub mod process;
pub(crate) mod sched;
pub mod seccomp;
pub(crate) mod spawn;
pub mod spec;
pub(crate) mod spec_checks;
pub mod stdio;
pub(crate) mod stuck;
pub(crate) mod sysctl;
pub(crate) mod timing;
pub mod userns_pool;
pub(crate) mod wire;
pub mod zygote;

/// mypod's default seccomp profile (`seccomp = "default"`): [`seccomp_default::profile`],
/// [`seccomp_default::profile_for`], the [`seccomp_default::DENIED`] table.
pub use seccomp::default as seccomp_default;

pub use container::{Container, CreateOpts, ExecOpts, ExecTarget, Launcher, Process};
pub use policy::Policy;
pub use process::ExitStatus;
