//! Create: loads and validates the bundle's spec, creates the cgroup, prepares the
//! idmapped mounts, starts the init helper and sends it the request, mounts the rootfs and
//! applies the cgroup limits while the helper joins the pod's namespaces, then sends the
//! go and waits until the container is ready to start (the create hooks run on the way,
//! see [`super::channel`]). Whatever was taken is released if create fails half way.

use std::path::Path;
use std::sync::Arc;

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::idmap::{IdRange, MountIdmap};
use crate::pod_userns::PodUserns;
use crate::policy::{SeccompDefault, UserNamespace};
use crate::wire::WireError;

use super::cleanup::Partial;
use super::launch::{Extras, Launching};
use super::{cgroups_path, rootfs_path, wants_terminal, Container, ContainerError, CreateOpts};
use crate::cgroup::resources;
use crate::cgroup::{Cgroup, Layout};
use crate::mount;
use crate::spec::{self, SpecError};
use crate::stdio::LogContext;
use crate::timing::Phases;
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

/// The pod's user namespace if this container runs in it: `[sandbox] user_namespace =
/// "pod"`, no user namespace in the spec (a spec's own is honoured as given) and no host
/// access. Made with the pod's first such container.
fn pod_userns(
    opts: &CreateOpts,
    spec: &Spec,
    no_host_access: bool,
) -> Result<Option<Arc<PodUserns>>, ContainerError> {
    let policy = &opts.launcher.policy;
    let own = spec::namespaces(spec)
        .iter()
        .any(|(t, _)| *t == LinuxNamespaceType::User);
    if policy.user_namespace != UserNamespace::Pod || own || !no_host_access {
        return Ok(None);
    }
    if let Some(p) = spec.process() {
        crate::pod_userns::check_user("process.user", p.user())?;
    }
    let ns = opts
        .launcher
        .userns
        .get_or_create(policy.userns_pool, &opts.id)?;
    Ok(Some(ns))
}

/// The bind mounts of a pod-userns container that the spec does not idmap itself: each is
/// idmapped through the pod's namespace (`map`), submounts too for `rbind`.
fn pod_bind_idmaps(spec: &Spec, own: &[MountIdmap], map: &[IdRange]) -> Vec<MountIdmap> {
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    mounts
        .iter()
        .enumerate()
        .filter(|(i, _)| !own.iter().any(|m| m.index == *i))
        .filter_map(|(index, m)| {
            let opts = m.options().as_deref().unwrap_or_default();
            let has = |o: &str| opts.iter().any(|x| x == o);
            let bind = m.typ().as_deref() == Some("bind") || has("bind") || has("rbind");
            bind.then(|| MountIdmap {
                index,
                uid: map.to_vec(),
                gid: map.to_vec(),
                recursive: has("rbind"),
                pod: true,
            })
        })
        .collect()
}

/// Adds the pod's mounts whose destinations the spec does not mount itself (after the
/// spec's own, so the indexes of its idmapped mounts stay valid). containerd's default
/// per-container /dev/shm (a tmpfs named `shm`) is replaced in place by the pod's, as CRI
/// replaces it with the pause container's; any other mount of the spec is kept.
fn with_pod_mounts(mut spec: Spec, pod: &[oci_spec::runtime::Mount]) -> Spec {
    if pod.is_empty() {
        return spec;
    }
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    let default_shm = |x: &oci_spec::runtime::Mount| {
        x.destination() == Path::new("/dev/shm")
            && x.typ().as_deref() == Some("tmpfs")
            && x.source().as_deref() == Some(Path::new("shm"))
    };
    for m in pod {
        match mounts
            .iter()
            .position(|x| x.destination() == m.destination())
        {
            Some(i) if default_shm(&mounts[i]) => mounts[i] = m.clone(),
            Some(_) => {}
            None => mounts.push(m.clone()),
        }
    }
    spec.set_mounts(Some(mounts));
    spec
}

impl Container {
    /// Creates the container; blocks until it is ready to start or has failed.
    pub fn create(opts: CreateOpts, layout: &Layout) -> Result<Container, ContainerError> {
        let mut t = Phases::default();
        let (spec, idmaps) = spec::load_with_idmaps(&opts.bundle)?;
        let spec = with_pod_mounts(spec, &opts.pod_mounts);
        spec::validate(&spec)?;
        // containerd's snapshot is mounted on root.path: never on a host directory a spec
        // names (`/run`, `../../..`), which delete would then unmount too.
        if !opts.rootfs.is_empty() && !super::root_is_bundle_rootfs(&spec, &opts.bundle) {
            return Err(spec::SpecError::Invalid {
                field: "root.path",
                reason: "must be the bundle's rootfs when containerd mounts the rootfs".into(),
            }
            .into());
        }
        crate::spec_checks::terminal(wants_terminal(spec.process().as_ref()), opts.terminal)
            .map_err(spec::SpecError::from)?;
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
        t.mark("spec");
        let pod_ns = pod_userns(&opts, &spec, asked.is_empty())?;
        t.mark("userns");
        let mut idmaps = idmaps;
        if let Some(ns) = &pod_ns {
            idmaps.extend(pod_bind_idmaps(&spec, &idmaps, &ns.map()));
        }
        let mut partial = Partial::default();
        match Self::create_inner(opts, layout, spec, &idmaps, pod_ns, &mut partial, &mut t) {
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
        pod_ns: Option<Arc<PodUserns>>,
        partial: &mut Partial,
        t: &mut Phases,
    ) -> Result<Container, ContainerError> {
        let rootfs = rootfs_path(&spec, &opts.bundle);
        let path = cgroups_path(&spec, &opts.id);
        let cgroup = Cgroup::new(layout, &path)?;
        // Before it is ours to kill and remove (`partial`, and a dead shim's `delete`,
        // which acts only on a cgroup the bundle marks as the container's own).
        cgroup.ensure_unused(&path)?;
        super::cleanup::mark_cgroup_owned(&opts.bundle)?;
        partial.cgroup = Some(cgroup.clone());
        cgroup.create()?;
        t.mark("cgroup");
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
            crate::idmap::prepare(idmaps, source, pod_ns.as_ref().map(|ns| ns.fd()))
                .map_err(SpecError::from)?
        };
        t.mark("idmap-binds");
        let userns = match &pod_ns {
            Some(ns) => Some(ns.fd().try_clone_to_owned().map_err(WireError::Io)?),
            None => None,
        };
        let join = cgroup.join();
        // The helper starts now, in its cgroup2 directory.
        let mut helper = Launching::spawn(
            &opts.launcher,
            &opts.stdio,
            &ctx,
            Extras {
                terminal,
                trees,
                userns,
                cgroup2: join.v2_dir,
            },
        )?;
        t.mark("spawn");
        let seccomp = crate::seccomp::cache::compiled(&spec)?;
        t.mark("seccomp");
        let cgroup_binds = cgroup.binds();
        let devices = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.devices().clone())
            .unwrap_or_default();
        let resources = spec.linux().as_ref().and_then(|l| l.resources().clone());
        warn_unapplied_resources(&opts.id, &cgroup, &spec);
        // The request goes now: the helper joins the cgroups and the pod's namespaces while
        // the rootfs is mounted and the limits are set below; it goes on at `finish`.
        let req = InitRequest {
            id: opts.id.clone(),
            bundle: opts.bundle.clone(),
            spec,
            rootfs: rootfs.clone(),
            cgroup_tasks: join.tasks,
            cgroup_procs: Vec::new(),
            cgroup_binds,
            cgroup_v2: cgroup.v2,
            join_pid: None,
            join_start_time: None,
            console_fd: None,
            idmapped: Vec::new(),
            userns_fd: None,
            rootfs_tree: false,
            seccomp,
            holder: opts.holder,
        };
        helper.send(req, pod_ns.is_some(), &partial.pid)?;
        t.mark("sent");
        // Under the pod's user namespace the rootfs goes to the helper with the go,
        // idmapped (see `pod_rootfs`): its files keep their owners.
        let idmap_err = |e: std::io::Error| {
            ContainerError::Invalid(format!(
                "idmap the rootfs {} for the pod's user namespace: {e} (idmapped mounts need \
                 Linux 5.19 for overlayfs, 6.3 for tmpfs; runtime.toml [sandbox] \
                 user_namespace = \"off\" turns pod user namespaces off)",
                rootfs.display()
            ))
        };
        let mut layers_idmapped = false;
        if !opts.rootfs.is_empty() {
            partial.mounted_rootfs = Some(rootfs.clone());
            let overlay = match &pod_ns {
                Some(ns) => crate::pod_rootfs::overlay(&opts.rootfs, ns.fd(), ns.first())
                    .map_err(idmap_err)?,
                None => None,
            };
            match overlay {
                Some((mounts, _layers)) => {
                    mount::mount_rootfs(&mounts, &rootfs)?;
                    layers_idmapped = true;
                }
                None => mount::mount_rootfs(&opts.rootfs, &rootfs)?,
            }
        }
        let rootfs_tree = match &pod_ns {
            Some(_) if layers_idmapped => {
                Some(crate::idmap::clone_tree(&rootfs, true).map_err(idmap_err)?)
            }
            Some(ns) => Some(crate::idmap::tree(&rootfs, true, ns.fd()).map_err(idmap_err)?),
            None => None,
        };
        t.mark("rootfs");
        cgroup.apply_devices(&devices)?;
        if let Some(r) = &resources {
            resources::apply(&cgroup, r)?;
        }
        t.mark("resources");
        let init = helper.finish(rootfs_tree, &mut partial.pid)?;
        t.mark("ready");
        t.log(&format!("create {}", opts.id));
        partial.pid = None;
        partial.cgroup = None;
        let mounted_rootfs = partial.mounted_rootfs.take();
        // Not reaped before the shim records it: the pid is still this process's.
        let start_time = crate::process::start_time(init.0.pid());
        Ok(Container {
            id: opts.id,
            bundle: opts.bundle,
            spec: init.1,
            init: init.0,
            cgroup,
            mounted_rootfs,
            poststop_done: false,
            pod_userns: pod_ns.is_some(),
            start_time,
        })
    }
}
