//! `CriClient`: a blocking client of CRI's RuntimeService and ImageService over containerd's
//! unix socket, every call with a deadline.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

use super::api::{
    self, ContainerConfig, ContainerFilter, ContainerStatusResponse, ExecSyncResponse, ImageSpec,
    PodSandboxConfig, PodSandboxFilter, PodSandboxStatusResponse,
};
use super::{CriError, CriResult};

/// Deadline of one CRI call.
pub const CRI_TIMEOUT: Duration = Duration::from_secs(60);

/// A blocking CRI client bound to one containerd socket.
pub struct CriClient {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    socket: PathBuf,
    timeout: Duration,
}

impl CriClient {
    /// Connects to containerd's gRPC socket (CRI is served on the same socket).
    pub fn connect(socket: &Path) -> Result<CriClient, String> {
        CriClient::connect_with_timeout(socket, CRI_TIMEOUT)
    }

    /// Like `connect`, with `timeout` as the deadline of every call.
    pub fn connect_with_timeout(socket: &Path, timeout: Duration) -> Result<CriClient, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let path = socket.to_path_buf();
        let channel = rt.block_on(async {
            // The URI is a placeholder: the connector below always dials the unix socket.
            let endpoint = Endpoint::try_from("http://[::]:50051")
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(10));
            let connect = endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }));
            match tokio::time::timeout(Duration::from_secs(15), connect).await {
                Ok(Ok(ch)) => Ok(ch),
                Ok(Err(e)) => Err(format!("connect to {}: {e:?}", socket.display())),
                Err(_) => Err(format!("connect to {}: timed out", socket.display())),
            }
        })?;
        Ok(CriClient {
            rt,
            channel,
            socket: socket.to_path_buf(),
            timeout,
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn runtime_client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    fn image_client(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
    }

    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(self.timeout);
        r
    }

    /// Runs one call with the client's deadline.
    fn call<T, F>(&self, name: &str, fut: F) -> CriResult<T>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let start = Instant::now();
        let timeout = self.timeout;
        // A little slack past the gRPC deadline, so that the server's own DeadlineExceeded (with
        // its message) wins when it answers.
        let res = self
            .rt
            .block_on(async { tokio::time::timeout(timeout + Duration::from_secs(2), fut).await });
        let elapsed = start.elapsed();
        match res {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(CriError {
                call: name.to_string(),
                code: status.code(),
                message: status.message().to_string(),
                elapsed,
                timed_out: false,
            }),
            Err(_) => Err(CriError {
                call: name.to_string(),
                code: tonic::Code::DeadlineExceeded,
                message: format!("no answer within the client deadline of {timeout:?}"),
                elapsed,
                timed_out: true,
            }),
        }
    }

    pub fn version(&self) -> CriResult<api::VersionResponse> {
        let mut c = self.runtime_client();
        let req = self.request(api::VersionRequest {
            version: "v1".into(),
        });
        self.call("Version", async move { c.version(req).await })
    }

    pub fn status(&self, verbose: bool) -> CriResult<api::StatusResponse> {
        let mut c = self.runtime_client();
        let req = self.request(api::StatusRequest { verbose });
        self.call("Status", async move { c.status(req).await })
    }

    /// RunPodSandbox with `handler` as the RuntimeClass handler; returns the sandbox id.
    pub fn run_pod_sandbox(&self, config: &PodSandboxConfig, handler: &str) -> CriResult<String> {
        let mut c = self.runtime_client();
        let req = self.request(api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_string(),
        });
        self.call("RunPodSandbox", async move { c.run_pod_sandbox(req).await })
            .map(|r| r.pod_sandbox_id)
    }

    pub fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> CriResult<PodSandboxStatusResponse> {
        let mut c = self.runtime_client();
        let req = self.request(api::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose,
        });
        self.call("PodSandboxStatus", async move {
            c.pod_sandbox_status(req).await
        })
    }

    pub fn list_pod_sandbox(
        &self,
        filter: Option<PodSandboxFilter>,
    ) -> CriResult<Vec<api::PodSandbox>> {
        let mut c = self.runtime_client();
        let req = self.request(api::ListPodSandboxRequest { filter });
        self.call(
            "ListPodSandbox",
            async move { c.list_pod_sandbox(req).await },
        )
        .map(|r| r.items)
    }

    pub fn stop_pod_sandbox(&self, id: &str) -> CriResult<()> {
        let mut c = self.runtime_client();
        let req = self.request(api::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        });
        self.call(
            "StopPodSandbox",
            async move { c.stop_pod_sandbox(req).await },
        )
        .map(|_| ())
    }

    pub fn remove_pod_sandbox(&self, id: &str) -> CriResult<()> {
        let mut c = self.runtime_client();
        let req = self.request(api::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        });
        self.call("RemovePodSandbox", async move {
            c.remove_pod_sandbox(req).await
        })
        .map(|_| ())
    }

    /// CreateContainer in pod `pod_id` (whose config was `sandbox_config`); returns its id.
    pub fn create_container(
        &self,
        pod_id: &str,
        config: &ContainerConfig,
        sandbox_config: &PodSandboxConfig,
    ) -> CriResult<String> {
        let mut c = self.runtime_client();
        let req = self.request(api::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(config.clone()),
            sandbox_config: Some(sandbox_config.clone()),
        });
        self.call(
            "CreateContainer",
            async move { c.create_container(req).await },
        )
        .map(|r| r.container_id)
    }

    pub fn start_container(&self, id: &str) -> CriResult<()> {
        let mut c = self.runtime_client();
        let req = self.request(api::StartContainerRequest {
            container_id: id.to_string(),
        });
        self.call(
            "StartContainer",
            async move { c.start_container(req).await },
        )
        .map(|_| ())
    }

    pub fn container_status(&self, id: &str, verbose: bool) -> CriResult<ContainerStatusResponse> {
        let mut c = self.runtime_client();
        let req = self.request(api::ContainerStatusRequest {
            container_id: id.to_string(),
            verbose,
        });
        self.call(
            "ContainerStatus",
            async move { c.container_status(req).await },
        )
    }

    pub fn list_containers(
        &self,
        filter: Option<ContainerFilter>,
    ) -> CriResult<Vec<api::Container>> {
        let mut c = self.runtime_client();
        let req = self.request(api::ListContainersRequest { filter });
        self.call(
            "ListContainers",
            async move { c.list_containers(req).await },
        )
        .map(|r| r.containers)
    }

    /// ExecSync `cmd` in container `id`; `timeout_s` is the command's own timeout (0 = none).
    pub fn exec_sync(&self, id: &str, cmd: &[&str], timeout_s: i64) -> CriResult<ExecSyncResponse> {
        let mut c = self.runtime_client();
        let req = self.request(api::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: timeout_s,
        });
        self.call("ExecSync", async move { c.exec_sync(req).await })
    }

    /// Exec (the streaming kind, as `kubectl exec` / `crictl exec`): the URL on CRI's stream
    /// server where the command runs once a client connects (see `cri::stream`).
    pub fn exec(&self, req: &api::ExecRequest) -> CriResult<String> {
        let mut c = self.runtime_client();
        let req = self.request(req.clone());
        self.call("Exec", async move { c.exec(req).await })
            .map(|r| r.url)
    }

    /// Attach (as `kubectl attach` / `kubectl run -i`): the URL on CRI's stream server that
    /// attaches a client to the container's stdio.
    pub fn attach(&self, req: &api::AttachRequest) -> CriResult<String> {
        let mut c = self.runtime_client();
        let req = self.request(req.clone());
        self.call("Attach", async move { c.attach(req).await })
            .map(|r| r.url)
    }

    /// StopContainer with `timeout_s` seconds between SIGTERM and SIGKILL.
    pub fn stop_container(&self, id: &str, timeout_s: i64) -> CriResult<()> {
        let mut c = self.runtime_client();
        let req = self.request(api::StopContainerRequest {
            container_id: id.to_string(),
            timeout: timeout_s,
        });
        self.call("StopContainer", async move { c.stop_container(req).await })
            .map(|_| ())
    }

    pub fn remove_container(&self, id: &str) -> CriResult<()> {
        let mut c = self.runtime_client();
        let req = self.request(api::RemoveContainerRequest {
            container_id: id.to_string(),
        });
        self.call(
            "RemoveContainer",
            async move { c.remove_container(req).await },
        )
        .map(|_| ())
    }

    /// CheckpointContainer of container `id` into the archive `location` (what `kubectl
    /// checkpoint` / the kubelet's checkpoint API asks for); `timeout_s` 0 = CRI's default.
    pub fn checkpoint_container(&self, id: &str, location: &str, timeout_s: i64) -> CriResult<()> {
        let mut c = self.runtime_client();
        let req = self.request(api::CheckpointContainerRequest {
            container_id: id.to_string(),
            location: location.to_string(),
            timeout: timeout_s,
        });
        self.call("CheckpointContainer", async move {
            c.checkpoint_container(req).await
        })
        .map(|_| ())
    }

    /// ContainerStats of container `id` (None if CRI has no stats for it).
    pub fn container_stats(&self, id: &str) -> CriResult<Option<api::ContainerStats>> {
        let mut c = self.runtime_client();
        let req = self.request(api::ContainerStatsRequest {
            container_id: id.to_string(),
        });
        self.call(
            "ContainerStats",
            async move { c.container_stats(req).await },
        )
        .map(|r| r.stats)
    }

    pub fn list_container_stats(
        &self,
        filter: Option<api::ContainerStatsFilter>,
    ) -> CriResult<Vec<api::ContainerStats>> {
        let mut c = self.runtime_client();
        let req = self.request(api::ListContainerStatsRequest { filter });
        self.call("ListContainerStats", async move {
            c.list_container_stats(req).await
        })
        .map(|r| r.stats)
    }

    /// PodSandboxStats of pod `id` (None if CRI has no stats for it).
    pub fn pod_sandbox_stats(&self, id: &str) -> CriResult<Option<api::PodSandboxStats>> {
        let mut c = self.runtime_client();
        let req = self.request(api::PodSandboxStatsRequest {
            pod_sandbox_id: id.to_string(),
        });
        self.call(
            "PodSandboxStats",
            async move { c.pod_sandbox_stats(req).await },
        )
        .map(|r| r.stats)
    }

    pub fn list_pod_sandbox_stats(
        &self,
        filter: Option<api::PodSandboxStatsFilter>,
    ) -> CriResult<Vec<api::PodSandboxStats>> {
        let mut c = self.runtime_client();
        let req = self.request(api::ListPodSandboxStatsRequest { filter });
        self.call("ListPodSandboxStats", async move {
            c.list_pod_sandbox_stats(req).await
        })
        .map(|r| r.stats)
    }

    /// UpdateContainerResources of container `id` with `linux` (the whole set, as the kubelet
    /// sends it).
    pub fn update_container_resources(
        &self,
        id: &str,
        linux: &api::LinuxContainerResources,
    ) -> CriResult<()> {
        let mut c = self.runtime_client();
        let req = self.request(api::UpdateContainerResourcesRequest {
            container_id: id.to_string(),
            linux: Some(linux.clone()),
            ..Default::default()
        });
        self.call("UpdateContainerResources", async move {
            c.update_container_resources(req).await
        })
        .map(|_| ())
    }

    /// ImageStatus of `image` (None if CRI does not know it).
    pub fn image_status(&self, image: &str) -> CriResult<Option<api::Image>> {
        let mut c = self.image_client();
        let req = self.request(api::ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose: false,
        });
        self.call("ImageStatus", async move { c.image_status(req).await })
            .map(|r| r.image)
    }
}
