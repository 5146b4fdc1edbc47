//! The ttrpc Task service: the edge where requests become pod operations and errors
//! become ttrpc statuses. Served as both `containerd.task.v2.Task` (containerd 1.6, 1.7)
//! and `containerd.task.v3.Task` (2.x); the messages are identical on the wire.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim_async::{create_task, Task};
use ttrpc::asynchronous::{Service as TtrpcService, TtrpcContext};

use crate::convert;
use crate::detached::to_the_end;
use crate::error::ServiceError;
use crate::pod::PodRef;

/// Task service over one pod.
pub struct TaskService {
    pod: PodRef,
}

type R<T> = ttrpc::Result<T>;

/// Logs how long a successful RPC took (debug), as `<rpc> id=<id> exec=<exec> took <N>us`:
/// the benchmark reads it to split a `ctr` command's time into the shim's part and
/// containerd's.
struct Took {
    rpc: &'static str,
    what: Option<(String, String)>,
    since: std::time::Instant,
}

impl Took {
    fn new(rpc: &'static str, id: &str, exec_id: &str) -> Took {
        let what =
            log::log_enabled!(log::Level::Debug).then(|| (id.to_string(), exec_id.to_string()));
        Took {
            rpc,
            what,
            since: std::time::Instant::now(),
        }
    }

    fn log(self) {
        if let Some((id, exec_id)) = self.what {
            let us = self.since.elapsed().as_micros();
            log::debug!("{} id={id} exec={exec_id} took {us}us", self.rpc);
        }
    }
}

fn unsupported<T>(what: &'static str) -> R<T> {
    Err(ServiceError::NotImplemented(what).into())
}

/// Builds the service map under both Task API names.
pub fn services(pod: PodRef) -> HashMap<String, TtrpcService> {
    let svc: Arc<dyn Task + Send + Sync> = Arc::new(TaskService { pod });
    let mut map = create_task(svc.clone());
    let v3 = create_task(svc);
    for (name, s) in v3 {
        map.insert(name.replace(".v3.", ".v2."), s);
    }
    map
}

#[async_trait]
impl Task for TaskService {
    async fn state(&self, _: &TtrpcContext, req: StateRequest) -> R<StateResponse> {
        log::debug!("state id={} exec={}", req.id, req.exec_id);
        Ok(convert::state_response(
            self.pod.state(&req.id, &req.exec_id)?,
        ))
    }

    async fn create(&self, _: &TtrpcContext, req: CreateTaskRequest) -> R<CreateTaskResponse> {
        log::debug!("create id={} exec={}", req.id, "");
        let t = Took::new("create", &req.id, "");
        let (pod, req) = (self.pod.clone(), convert::create_request(req)?);
        let pid = to_the_end(async move { pod.create(req).await }).await?;
        t.log();
        let mut r = CreateTaskResponse::new();
        r.pid = pid as u32;
        Ok(r)
    }

    async fn start(&self, _: &TtrpcContext, req: StartRequest) -> R<StartResponse> {
        log::debug!("start id={} exec={}", req.id, req.exec_id);
        let t = Took::new("start", &req.id, &req.exec_id);
        let pod = self.pod.clone();
        let pid = to_the_end(async move { pod.start(&req.id, &req.exec_id).await }).await?;
        t.log();
        let mut r = StartResponse::new();
        r.pid = pid as u32;
        Ok(r)
    }

    async fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> R<DeleteResponse> {
        log::debug!("delete id={} exec={}", req.id, req.exec_id);
        let t = Took::new("delete", &req.id, &req.exec_id);
        let pod = self.pod.clone();
        let d = to_the_end(async move { pod.delete(&req.id, &req.exec_id).await }).await?;
        t.log();
        Ok(convert::delete_response(d))
    }

    async fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> R<PidsResponse> {
        Ok(convert::pids_response(self.pod.pids(&req.id)?)?)
    }

    async fn pause(&self, _: &TtrpcContext, req: PauseRequest) -> R<Empty> {
        log::debug!("pause id={}", req.id);
        let pod = self.pod.clone();
        to_the_end(async move { pod.set_paused(&req.id, true).await }).await?;
        Ok(Empty::new())
    }

    async fn resume(&self, _: &TtrpcContext, req: ResumeRequest) -> R<Empty> {
        log::debug!("resume id={}", req.id);
        let pod = self.pod.clone();
        to_the_end(async move { pod.set_paused(&req.id, false).await }).await?;
        Ok(Empty::new())
    }

    async fn checkpoint(&self, _: &TtrpcContext, _: CheckpointTaskRequest) -> R<Empty> {
        unsupported("Checkpoint")
    }

    async fn kill(&self, _: &TtrpcContext, req: KillRequest) -> R<Empty> {
        log::debug!("kill id={} exec={}", req.id, req.exec_id);
        self.pod.kill(&req.id, &req.exec_id, req.signal, req.all)?;
        Ok(Empty::new())
    }

    async fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> R<Empty> {
        log::debug!("exec id={} exec={}", req.id, req.exec_id);
        let t = Took::new("exec", &req.id, &req.exec_id);
        self.pod.exec(convert::exec_request(req)?)?;
        t.log();
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> R<Empty> {
        log::debug!("resize_pty id={} exec={}", req.id, req.exec_id);
        self.pod
            .resize(&req.id, &req.exec_id, req.width, req.height)?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> R<Empty> {
        log::debug!("close_io id={} exec={}", req.id, req.exec_id);
        self.pod.close_stdin(&req.id, &req.exec_id)?;
        Ok(Empty::new())
    }

    async fn update(&self, _: &TtrpcContext, req: UpdateTaskRequest) -> R<Empty> {
        log::debug!("update id={}", req.id);
        let resources = convert::update_resources(&req)?;
        let pod = self.pod.clone();
        to_the_end(async move { pod.update(&req.id, resources).await }).await?;
        Ok(Empty::new())
    }

    async fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> R<WaitResponse> {
        log::debug!("wait id={} exec={}", req.id, req.exec_id);
        let exit = self.pod.wait(&req.id, &req.exec_id).await?;
        Ok(convert::wait_response(exit))
    }

    async fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> R<StatsResponse> {
        log::debug!("stats id={}", req.id);
        let stats = self.pod.stats(&req.id).await?;
        let mut r = StatsResponse::new();
        r.stats = MessageField::some(crate::metrics::to_any(&stats)?);
        Ok(r)
    }

    async fn connect(&self, _: &TtrpcContext, req: ConnectRequest) -> R<ConnectResponse> {
        log::debug!("connect id={} exec={}", req.id, "");
        let mut r = ConnectResponse::new();
        r.shim_pid = std::process::id();
        r.task_pid = self.pod.pid(&req.id).unwrap_or(0) as u32;
        r.version = env!("CARGO_PKG_VERSION").to_string();
        Ok(r)
    }

    async fn shutdown(&self, _: &TtrpcContext, _: ShutdownRequest) -> R<Empty> {
        self.pod.shutdown();
        Ok(Empty::new())
    }
}
