//! Exec: sets up another process in a running container, joining its namespaces and
//! cgroups through a launch of its own.

use std::path::PathBuf;

use super::launch::{launch, Extras};
use super::{wants_terminal, Container, ContainerError, ExecOpts, ExecTarget, Process};
use crate::spec;
use crate::stdio::LogContext;
use crate::wire::InitRequest;

impl Container {
    /// What an exec needs of this container, detached from it.
    pub fn exec_target(&self) -> ExecTarget {
        ExecTarget {
            id: self.id.clone(),
            spec: self.spec.clone(),
            cgroup: self.cgroup.clone(),
            pid: self.pid(),
            start_time: self.start_time,
            pod_userns: self.pod_userns,
        }
    }
}

impl ExecTarget {
    /// Sets up an exec'd process in the container (blocking); start it with
    /// [`Process::begin_start`].
    pub fn exec(&self, opts: ExecOpts) -> Result<Process, ContainerError> {
        let terminal = wants_terminal(Some(&opts.process));
        if opts.process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(ContainerError::Invalid(format!(
                "exec {}: process.args is empty",
                opts.exec_id
            )));
        }
        // The exec's process is checked as Create checks the container's: a field mypod
        // cannot honour (an AppArmor profile, a bad scheduler) is refused, never ignored.
        // The rest of the spec was checked at Create.
        spec::validate_process(&opts.process)?;
        if self.pod_userns {
            crate::pod_userns::check_user("process.user", opts.process.user())?;
        }
        let mut spec = self.spec.clone();
        spec.set_process(Some(opts.process));
        let ctx = LogContext {
            id: self.id.clone(),
            namespace: opts.launcher.namespace.clone(),
        };
        let join = self.cgroup.join();
        let req = InitRequest {
            id: format!("{}/{}", self.id, opts.exec_id),
            bundle: PathBuf::new(),
            spec,
            rootfs: PathBuf::from("/"),
            cgroup_tasks: join.tasks,
            cgroup_procs: Vec::new(),
            cgroup_binds: Vec::new(),
            cgroup_v2: self.cgroup.v2,
            join_pid: Some(self.pid),
            join_start_time: self.start_time,
            console_fd: None,
            idmapped: Vec::new(),
            userns_fd: None,
            rootfs_tree: false,
            // The container's filter (an exec's process differs, its linux.seccomp not),
            // from the host-wide cache: not kept per container, it is ~10 KiB each.
            seccomp: crate::seccomp::cache::compiled(&self.spec)?,
            holder: false,
        };
        let mut pid = None;
        match launch(
            &opts.launcher,
            req,
            &opts.stdio,
            &ctx,
            Extras {
                terminal,
                trees: Vec::new(),
                userns: None,
                cgroup2: join.v2_dir,
            },
            &mut pid,
        ) {
            Ok((p, _)) => Ok(p),
            Err(e) => {
                if let Some(pid) = pid {
                    // Only while it is still the container's: the pid may have been
                    // reaped and reused meanwhile.
                    let _ = self.cgroup.signal_member(pid, libc::SIGKILL);
                }
                Err(e)
            }
        }
    }
}
