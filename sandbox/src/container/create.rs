//! Create: loads and validates the bundle's spec, creates the cgroup, prepares the
//! idmapped mounts, starts the init helper, mounts the rootfs and applies the cgroup
//! limits while the helper starts, then sends the request and waits until the container
//! is ready to start (the create hooks run on the way, see [`super::channel`]). Whatever
//! was taken is released if create fails half way.

use std::path::Path;

use oci_spec::runtime::Spec;

use crate::policy::SeccompDefault;

use super::cleanup::Partial;
use super::launch::{Extras, Launching};
use super::{cgroups_path, rootfs_path, wants_terminal, Container, ContainerError, CreateOpts};
use crate::cgroup::resources;
use crate::cgroup::{Cgroup, Layout};
use crate::mount;
use crate::spec::{self, SpecError};
use crate::stdio::LogContext;
use crate::wire::InitRequest;

/// Warns about the parts of linux.resources this host cannot apply (for example a
/// controller that has no hierarchy here), so that nothing is dropped silently.
fn warn_unapplied_resources(id: &str, cg: &Cgroup, spec: &Spec) {
    let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) else {
        return;
    };
    let kinds = resources::unapplied(cg, r);
    if !kinds.is_empty() {
        log::warn!(
            "container {id}: linux.resources not applied: {}",
            kinds.join(", ")
        );
    }
}

/// `[sandbox] seccomp = "default"`: a spec without `linux.seccomp` gets mypod's default
/// profile, for the capabilities its bounding set keeps (so execs, which run under the
/// container's spec, get it too). A spec's own profile is applied as given; a container
/// allowed host access runs as runc would run it, without the default profile.
fn with_default_seccomp(mut spec: Spec, default: SeccompDefault, no_host_access: bool) -> Spec {
    let has_own = spec.linux().as_ref().is_some_and(|l| l.seccomp().is_some());
    if default != SeccompDefault::Default || has_own || !no_host_access {
        return spec;
    }
    let profile = crate::seccomp_default::profile_for_spec(&spec);
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_seccomp(Some(profile));
    spec.set_linux(Some(linux));
    spec
}

impl Container {
    /// Creates the container; blocks until it is ready to start or has failed.
    pub fn create(opts: CreateOpts, layout: &Layout) -> Result<Container, ContainerError> {
        let (spec, idmaps) = spec::load_with_idmaps(&opts.bundle)?;
        spec::validate(&spec)?;
        crate::sysctl::validate(&spec, crate::sysctl::is_own_namespace)?;
        // Before anything is made: a refused container leaves nothing behind.
        let policy = &opts.launcher.policy;
        let asked =
            crate::host_access::check(&spec, policy.host_access, crate::sysctl::is_own_namespace)?;
        if !asked.is_empty() {
            log::warn!(
                "container {}: {}",
                opts.id,
                crate::host_access::allowed_warning(&asked)
            );
        }
        let spec = with_default_seccomp(spec, policy.seccomp, asked.is_empty());
        let mut partial = Partial::default();
        match Self::create_inner(opts, layout, spec, &idmaps, &mut partial) {
            Ok(c) => Ok(c),
            Err(e) => {
                partial.undo();
                Err(e)
            }
        }
    }

    fn create_inner(
        opts: CreateOpts,
        layout: &Layout,
        spec: Spec,
        idmaps: &[crate::idmap::MountIdmap],
        partial: &mut Partial,
    ) -> Result<Container, ContainerError> {
        let rootfs = rootfs_path(&spec, &opts.bundle);
        let cgroup = Cgroup::new(layout, &cgroups_path(&spec, &opts.id))?;
        partial.cgroup = Some(cgroup.clone());
        cgroup.create()?;
        let terminal = wants_terminal(spec.process().as_ref());
        let ctx = LogContext {
            id: opts.id.clone(),
            namespace: opts.launcher.namespace.clone(),
        };
        let trees = if idmaps.is_empty() {
            Vec::new()
        } else {
            let mounts = spec.mounts().clone().unwrap_or_default();
            let base = rootfs.parent().unwrap_or(Path::new("/")).to_path_buf();
            let source = |i: usize| {
                let s = mounts.get(i)?.source().clone()?;
                Some(if s.is_absolute() { s } else { base.join(s) })
            };
            crate::idmap::prepare(idmaps, source, opts.launcher.init_exe.path())
                .map_err(SpecError::from)?
        };
        let join = cgroup.join();
        // The helper starts now, in its cgroup2 directory; it joins the v1 hierarchies
        // and builds the container once the request below comes, after the rootfs is
        // mounted and the cgroup limits are set.
        let helper = Launching::spawn(
            &opts.launcher,
            &opts.stdio,
            &ctx,
            Extras {
                terminal,
                trees,
                cgroup2: join.v2_dir,
            },
        )?;
        if !opts.rootfs.is_empty() {
            partial.mounted_rootfs = Some(rootfs.clone());
            mount::mount_rootfs(&opts.rootfs, &rootfs)?;
        }
        let devices = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        cgroup.apply_devices(&devices)?;
        if let Some(r) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            resources::apply(&cgroup, r)?;
        }
        warn_unapplied_resources(&opts.id, &cgroup, &spec);
        let req = InitRequest {
            id: opts.id.clone(),
            bundle: opts.bundle.clone(),
            spec,
            rootfs,
            cgroup_tasks: join.tasks,
            cgroup_procs: Vec::new(),
            cgroup_binds: cgroup.binds(),
            cgroup_v2: cgroup.v2,
            join_pid: None,
            console_fd: None,
            idmapped: Vec::new(),
        };
        let init = helper.finish(req, &mut partial.pid)?;
        partial.pid = None;
        partial.cgroup = None;
        let mounted_rootfs = partial.mounted_rootfs.take();
        Ok(Container {
            id: opts.id,
            bundle: opts.bundle,
            spec: init.1,
            init: init.0,
            cgroup,
            mounted_rootfs,
            poststop_done: false,
        })
    }
}
