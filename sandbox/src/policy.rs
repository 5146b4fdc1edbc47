//! The sandbox's policy: how much isolation a container gets when its spec does not
//! decide, and what host access it may ask for. Plain values; the shim fills them from
//! runtime.toml's `[sandbox]` table and hands them over in [`crate::Launcher`].

/// The shim's sandboxing choices for every container it creates.
///
/// `Default` is runtime.toml's built-in default: sandboxed (a user namespace per pod,
/// mypod's seccomp profile, host access refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Whether a pod's containers get a user namespace of their own (see
    /// [`crate::pod_userns`]).
    pub user_namespace: UserNamespace,
    /// Host ids that pod user namespaces are mapped to.
    pub userns_pool: IdPool,
    /// The seccomp profile of a container whose spec has no `linux.seccomp`.
    /// Applied at Create (see `container/create.rs`), not to host-access containers.
    pub seccomp: SeccompDefault,
    /// Whether a container may ask for host access (see [`crate::host_access`]).
    pub host_access: HostAccess,
}

/// `[sandbox] user_namespace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserNamespace {
    /// One user namespace per pod, its ids taken from [`Policy::userns_pool`].
    Pod,
    /// No user namespace unless the spec asks for one.
    Off,
}

/// `[sandbox] userns_pool_start` and `userns_pool_size`: host ids `start..start + size`.
/// The shim's configuration checks both are multiples of 65536 and end by 2^31.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdPool {
    pub start: u32,
    pub size: u32,
}

/// `[sandbox] seccomp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompDefault {
    /// mypod's default profile for a spec without `linux.seccomp`.
    Default,
    /// No filter unless the spec has one.
    Off,
}

/// `[sandbox] host_access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAccess {
    /// Create fails for a container that asks for host access.
    Refuse,
    /// Such a container runs; the shim logs a warning naming what it asked for.
    Allow,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            user_namespace: UserNamespace::Pod,
            userns_pool: IdPool {
                start: 0x7000_0000,
                size: 65536 * 1024,
            },
            seccomp: SeccompDefault::Default,
            host_access: HostAccess::Refuse,
        }
    }
}
