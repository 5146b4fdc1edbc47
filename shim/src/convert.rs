//! containerd's messages ↔ the pod's plain types, at the service edge: requests into
//! [`crate::pod`] types, its replies and events into protobuf, times into timestamps.

use mypod_sandbox::json_path;
use std::time::SystemTime;

use containerd_shim_protos::api::{
    CreateTaskRequest, DeleteResponse, ExecProcessRequest, PidsResponse, ProcessInfo,
    StateResponse, Status as PbStatus, UpdateTaskRequest, WaitResponse,
};
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::oci::ProcessDetails;
use containerd_shim_protos::topics;
use containerd_shim_protos::types::mount::Mount;
use mypod_sandbox::stdio::StdioPaths;
use mypod_sandbox::ExitStatus;

use crate::error::ServiceError;
use crate::events::Publisher;
use crate::pod::{
    CreateRequest, Deleted, Event, EventSink, ExecRequest, ProcessState, RootfsMount, Status,
};

/// The type URL of an exec's ProcessDetails (its full protobuf name), written out: building
/// descriptors by reflection costs heap the shim would keep for its lifetime.
const PROCESS_DETAILS_TYPE: &str = "containerd.runc.v1.ProcessDetails";

/// Converts a time to a protobuf timestamp.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

/// Create's request; restoring from a checkpoint is refused.
pub fn create_request(req: CreateTaskRequest) -> Result<CreateRequest, ServiceError> {
    if !req.checkpoint.is_empty() {
        return Err(ServiceError::NotImplemented("restore from checkpoint"));
    }
    Ok(CreateRequest {
        rootfs: req
            .rootfs
            .iter()
            .map(|m| RootfsMount {
                typ: m.type_.clone(),
                source: m.source.clone(),
                target: m.target.clone(),
                options: m.options.clone(),
            })
            .collect(),
        stdio: StdioPaths {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        },
        id: req.id,
        bundle: req.bundle,
        terminal: req.terminal,
    })
}

/// Exec's request, its process spec (JSON in an Any) decoded.
pub fn exec_request(req: ExecProcessRequest) -> Result<ExecRequest, ServiceError> {
    let process: oci_spec::runtime::Process =
        json_path::parse(&req.spec.value).map_err(|(path, e)| {
            ServiceError::InvalidArgument(format!(
                "exec {}: process spec: {}",
                req.exec_id,
                json_path::describe(&path, &e)
            ))
        })?;
    Ok(ExecRequest {
        process,
        stdio: StdioPaths {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
        },
        id: req.id,
        exec_id: req.exec_id,
        terminal: req.terminal,
    })
}

/// UpdateTaskRequest.resources: an Any whose value is the OCI `LinuxResources` as JSON (what
/// containerd's `typeurl` makes of `specs.LinuxResources`, and what runc's shim decodes).
pub fn update_resources(
    req: &UpdateTaskRequest,
) -> Result<oci_spec::runtime::LinuxResources, ServiceError> {
    let any = req.resources.as_ref().ok_or_else(|| {
        ServiceError::InvalidArgument(format!("update {}: no resources given", req.id))
    })?;
    json_path::parse(&any.value).map_err(|(path, e)| {
        ServiceError::InvalidArgument(format!(
            "update {}: resources ({}) are not OCI LinuxResources JSON: {}",
            req.id,
            any.type_url,
            json_path::describe(&path, &e)
        ))
    })
}

fn status(s: Status) -> PbStatus {
    match s {
        Status::Created => PbStatus::CREATED,
        Status::Running => PbStatus::RUNNING,
        Status::Paused => PbStatus::PAUSED,
        Status::Stopped => PbStatus::STOPPED,
    }
}

/// State's reply.
pub fn state_response(s: ProcessState) -> StateResponse {
    let mut r = StateResponse::new();
    r.id = s.id;
    r.exec_id = s.exec_id;
    r.bundle = s.bundle;
    r.pid = s.pid as u32;
    r.status = status(s.status).into();
    r.stdin = s.stdio.stdin;
    r.stdout = s.stdio.stdout;
    r.stderr = s.stdio.stderr;
    r.terminal = s.terminal;
    if let Some(x) = s.exit {
        r.exit_status = x.code;
        r.exited_at = MessageField::some(timestamp(x.at));
    }
    r
}

/// Delete's reply.
pub fn delete_response(d: Deleted) -> DeleteResponse {
    let mut r = DeleteResponse::new();
    r.pid = d.pid as u32;
    if let Some(exit) = d.exit {
        r.exit_status = exit.code;
        r.exited_at = MessageField::some(timestamp(exit.at));
    }
    r
}

/// Wait's reply.
pub fn wait_response(exit: ExitStatus) -> WaitResponse {
    let mut r = WaitResponse::new();
    r.exit_status = exit.code;
    r.exited_at = MessageField::some(timestamp(exit.at));
    r
}

/// Pids' reply: each pid, with a ProcessDetails naming the exec of those that are execs.
pub fn pids_response(pids: Vec<(i32, Option<String>)>) -> Result<PidsResponse, ServiceError> {
    let mut r = PidsResponse::new();
    for (pid, exec_id) in pids {
        let mut p = ProcessInfo::new();
        p.pid = pid as u32;
        if let Some(exec_id) = exec_id {
            let mut d = ProcessDetails::new();
            d.exec_id = exec_id;
            let mut any = Any::new();
            any.type_url = PROCESS_DETAILS_TYPE.to_string();
            any.value = d
                .write_to_bytes()
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            p.info = MessageField::some(any);
        }
        r.processes.push(p);
    }
    Ok(r)
}

/// The pod's events go to containerd as task events.
impl EventSink for Publisher {
    fn emit(&self, event: Event) {
        match event {
            Event::Create {
                id,
                bundle,
                rootfs,
                stdio,
                terminal,
                pid,
            } => {
                let mut ev = TaskCreate::new();
                ev.container_id = id;
                ev.bundle = bundle;
                ev.rootfs = rootfs
                    .into_iter()
                    .map(|m| {
                        let mut pm = Mount::new();
                        pm.type_ = m.typ;
                        pm.source = m.source;
                        pm.target = m.target;
                        pm.options = m.options;
                        pm
                    })
                    .collect();
                let mut io = TaskIO::new();
                io.stdin = stdio.stdin;
                io.stdout = stdio.stdout;
                io.stderr = stdio.stderr;
                io.terminal = terminal;
                ev.io = MessageField::some(io);
                ev.pid = pid as u32;
                self.publish(topics::TASK_CREATE_EVENT_TOPIC, &ev);
            }
            Event::Start { id, pid } => {
                let mut ev = TaskStart::new();
                ev.container_id = id;
                ev.pid = pid as u32;
                self.publish(topics::TASK_START_EVENT_TOPIC, &ev);
            }
            Event::Exit {
                id,
                exec_id,
                pid,
                exit,
            } => {
                let mut ev = TaskExit::new();
                ev.id = if exec_id.is_empty() { &id } else { &exec_id }.to_string();
                ev.container_id = id;
                ev.pid = pid as u32;
                ev.exit_status = exit.code;
                ev.exited_at = MessageField::some(timestamp(exit.at));
                self.publish(topics::TASK_EXIT_EVENT_TOPIC, &ev);
            }
            Event::Delete { id, pid, exit } => {
                let mut ev = TaskDelete::new();
                ev.container_id = id.clone();
                ev.id = id;
                ev.pid = pid as u32;
                ev.exit_status = exit.code;
                ev.exited_at = MessageField::some(timestamp(exit.at));
                self.publish(topics::TASK_DELETE_EVENT_TOPIC, &ev);
            }
            Event::ExecAdded { id, exec_id } => {
                let mut ev = TaskExecAdded::new();
                ev.container_id = id;
                ev.exec_id = exec_id;
                self.publish(topics::TASK_EXEC_ADDED_EVENT_TOPIC, &ev);
            }
            Event::ExecStarted { id, exec_id, pid } => {
                let mut ev = TaskExecStarted::new();
                ev.container_id = id;
                ev.exec_id = exec_id;
                ev.pid = pid as u32;
                self.publish(topics::TASK_EXEC_STARTED_EVENT_TOPIC, &ev);
            }
            Event::Oom { id } => {
                let mut ev = TaskOOM::new();
                ev.container_id = id;
                self.publish(topics::TASK_OOM_EVENT_TOPIC, &ev);
            }
            Event::Paused { id } => {
                let mut ev = TaskPaused::new();
                ev.container_id = id;
                self.publish(topics::TASK_PAUSED_EVENT_TOPIC, &ev);
            }
            Event::Resumed { id } => {
                let mut ev = TaskResumed::new();
                ev.container_id = id;
                self.publish(topics::TASK_RESUMED_EVENT_TOPIC, &ev);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::MessageFull;
    use std::time::Duration;

    #[test]
    fn process_details_type_url_is_the_full_name() {
        assert_eq!(
            PROCESS_DETAILS_TYPE,
            ProcessDetails::descriptor().full_name()
        );
    }

    #[test]
    fn timestamps_keep_seconds_and_nanos() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let ts = timestamp(t);
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_789));
    }

    #[test]
    fn state_reports_status_and_exit() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        let s = ProcessState {
            id: "c1".into(),
            exec_id: "e1".into(),
            bundle: "/b".into(),
            pid: 42,
            status: Status::Paused,
            stdio: StdioPaths {
                stdin: "in".into(),
                stdout: "out".into(),
                stderr: "err".into(),
            },
            terminal: true,
            exit: Some(ExitStatus { code: 3, at }),
        };
        let r = state_response(s);
        assert_eq!(
            (r.id.as_str(), r.exec_id.as_str(), r.bundle.as_str()),
            ("c1", "e1", "/b")
        );
        assert_eq!(r.pid, 42);
        assert_eq!(r.status.enum_value(), Ok(PbStatus::PAUSED));
        assert_eq!(
            (r.stdin.as_str(), r.stdout.as_str(), r.stderr.as_str()),
            ("in", "out", "err")
        );
        assert!(r.terminal);
        assert_eq!(r.exit_status, 3);
        assert_eq!(r.exited_at.seconds, 5);
        for (s, pb) in [
            (Status::Created, PbStatus::CREATED),
            (Status::Running, PbStatus::RUNNING),
            (Status::Stopped, PbStatus::STOPPED),
        ] {
            assert_eq!(status(s), pb);
        }
    }

    #[test]
    fn delete_of_an_exec_never_started_reports_nothing() {
        assert_eq!(delete_response(Deleted::default()), DeleteResponse::new());
        let r = delete_response(Deleted {
            pid: 7,
            exit: Some(ExitStatus {
                code: 137,
                at: SystemTime::UNIX_EPOCH,
            }),
        });
        assert_eq!((r.pid, r.exit_status), (7, 137));
        assert!(r.exited_at.is_some());
    }

    #[test]
    fn requests_become_plain_types() {
        let mut req = CreateTaskRequest::new();
        req.id = "c1".into();
        req.bundle = "/b".into();
        req.stdout = "out".into();
        let mut m = Mount::new();
        m.type_ = "overlay".into();
        m.target = "t".into();
        req.rootfs.push(m);
        let c = create_request(req.clone()).unwrap();
        assert_eq!(
            (c.id.as_str(), c.bundle.as_str(), c.stdio.stdout.as_str()),
            ("c1", "/b", "out")
        );
        assert_eq!(
            (c.rootfs[0].typ.as_str(), c.rootfs[0].target.as_str()),
            ("overlay", "t")
        );
        req.checkpoint = "/cp".into();
        assert!(matches!(
            create_request(req),
            Err(ServiceError::NotImplemented(_))
        ));

        let mut req = ExecProcessRequest::new();
        req.id = "c1".into();
        req.exec_id = "e1".into();
        req.terminal = true;
        let mut spec = Any::new();
        spec.value = br#"{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}"#.to_vec();
        req.spec = MessageField::some(spec);
        let x = exec_request(req.clone()).unwrap();
        assert_eq!(
            (x.id.as_str(), x.exec_id.as_str(), x.terminal),
            ("c1", "e1", true)
        );
        assert_eq!(x.process.cwd().to_str(), Some("/"));
        req.spec = MessageField::some(Any::new());
        assert!(matches!(
            exec_request(req),
            Err(ServiceError::InvalidArgument(ref m)) if m.starts_with("exec e1: process spec: ")
        ));
    }
}
