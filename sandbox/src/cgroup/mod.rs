//! Everything about a container's cgroup, one concern per module: the host's [`layout`],
//! [`placement`] of a container (create, join, signal, remove), systemd-form paths
//! ([`systemd_path`]), [`devices`] rules, [`resources`] limits, [`stats`], the
//! [`freezer`] and [`oom`] notification.

pub mod devices;
pub mod freezer;
pub mod layout;
pub mod members;
pub mod oom;
pub mod placement;
pub mod resources;
pub mod stats;
pub mod systemd_path;

pub use layout::{Hierarchy, Layout};
pub use placement::{Cgroup, CgroupError, Join};
