//! The ttrpc Sandbox service (`containerd.runtime.sandbox.v1.Sandbox`), served beside the
//! Task service on the pod's socket: what containerd 2.x's CRI calls for a runtime entry
//! with `sandboxer = "shim"` (RunPodSandbox → CreateSandbox, StartSandbox, SandboxStatus,
//! WaitSandbox; StopPodSandbox → StopSandbox; RemovePodSandbox → ShutdownSandbox). The
//! edge only: requests become [`crate::pod::Pod`] sandbox operations, errors ttrpc statuses.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::sandbox_api::*;
use containerd_shim_protos::sandbox_async::{create_sandbox, Sandbox};
use containerd_shim_protos::types::platform::Platform;
use ttrpc::asynchronous::{Service as TtrpcService, TtrpcContext};

use crate::convert::timestamp;
use crate::detached::to_the_end;
use crate::pod::PodRef;

type R<T> = ttrpc::Result<T>;

/// Sandbox service over the pod.
pub struct SandboxService {
    pod: PodRef,
}

/// The service map entry of the Sandbox service.
pub fn services(pod: PodRef) -> HashMap<String, TtrpcService> {
    create_sandbox(Arc::new(SandboxService { pod }))
}

/// containerd's name for this machine's architecture (GOARCH).
fn goarch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// containerd's type URL for an OCI spec in an Any (JSON-encoded), as typeurl registers it.
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// `StartSandboxResponse.spec` (field 3, containerd >= 2.3): newer than the protos of
/// containerd-shim-protos 0.12, so it is written as an unknown field; 2.1 skips it.
const START_SANDBOX_SPEC_FIELD: u32 = 3;

/// Puts `spec` into the response's `spec` field as an Any.
fn add_spec(r: &mut StartSandboxResponse, spec: &oci_spec::runtime::Spec) {
    use containerd_shim_protos::protobuf::well_known_types::any::Any;
    use containerd_shim_protos::protobuf::Message;
    let Ok(json) = serde_json::to_vec(spec) else {
        return;
    };
    let mut any = Any::new();
    any.type_url = SPEC_TYPE_URL.to_string();
    any.value = json;
    match any.write_to_bytes() {
        Ok(bytes) => r
            .special_fields
            .mut_unknown_fields()
            .add_length_delimited(START_SANDBOX_SPEC_FIELD, bytes),
        Err(e) => log::warn!("encode the sandbox spec: {e}"),
    }
}

#[async_trait]
impl Sandbox for SandboxService {
    async fn create_sandbox(
        &self,
        _: &TtrpcContext,
        req: CreateSandboxRequest,
    ) -> R<CreateSandboxResponse> {
        log::debug!(
            "create_sandbox id={} bundle={} netns={}",
            req.sandbox_id,
            req.bundle_path,
            req.netns_path
        );
        let pod = crate::sandbox_config::pod_config(
            &req.sandbox_id,
            req.options.as_ref(),
            &req.netns_path,
        )?;
        let this = self.pod.clone();
        to_the_end(async move {
            this.create_sandbox(&req.sandbox_id, Path::new(&req.bundle_path), pod)
                .await
                .inspect_err(|e| log::warn!("create sandbox {}: {e}", req.sandbox_id))
        })
        .await?;
        Ok(CreateSandboxResponse::new())
    }

    async fn start_sandbox(
        &self,
        _: &TtrpcContext,
        req: StartSandboxRequest,
    ) -> R<StartSandboxResponse> {
        log::debug!("start_sandbox id={}", req.sandbox_id);
        let pod = self.pod.clone();
        let (pid, created, spec) =
            to_the_end(async move { pod.start_sandbox(&req.sandbox_id).await }).await?;
        let mut r = StartSandboxResponse::new();
        r.pid = pid as u32;
        r.created_at = MessageField::some(timestamp(created));
        if let Some(spec) = spec {
            add_spec(&mut r, &spec);
        }
        Ok(r)
    }

    async fn platform(&self, _: &TtrpcContext, _: PlatformRequest) -> R<PlatformResponse> {
        let mut p = Platform::new();
        p.os = "linux".to_string();
        p.architecture = goarch().to_string();
        let mut r = PlatformResponse::new();
        r.platform = MessageField::some(p);
        Ok(r)
    }

    async fn stop_sandbox(
        &self,
        _: &TtrpcContext,
        req: StopSandboxRequest,
    ) -> R<StopSandboxResponse> {
        log::debug!("stop_sandbox id={}", req.sandbox_id);
        let pod = self.pod.clone();
        let timeout = Duration::from_secs(req.timeout_secs.into());
        to_the_end(async move { pod.stop_sandbox(&req.sandbox_id, timeout).await }).await?;
        Ok(StopSandboxResponse::new())
    }

    async fn wait_sandbox(
        &self,
        _: &TtrpcContext,
        req: WaitSandboxRequest,
    ) -> R<WaitSandboxResponse> {
        log::debug!("wait_sandbox id={}", req.sandbox_id);
        let exit = self.pod.wait_sandbox(&req.sandbox_id).await?;
        let mut r = WaitSandboxResponse::new();
        r.exit_status = exit.code;
        r.exited_at = MessageField::some(timestamp(exit.at));
        Ok(r)
    }

    async fn sandbox_status(
        &self,
        _: &TtrpcContext,
        req: SandboxStatusRequest,
    ) -> R<SandboxStatusResponse> {
        let st = self.pod.sandbox_status(&req.sandbox_id)?;
        let mut r = SandboxStatusResponse::new();
        r.sandbox_id = st.id;
        r.pid = st.pid as u32;
        r.state = if st.ready {
            "SANDBOX_READY"
        } else {
            "SANDBOX_NOTREADY"
        }
        .to_string();
        r.created_at = MessageField::some(timestamp(st.created_at));
        if let Some(t) = st.exited_at {
            r.exited_at = MessageField::some(timestamp(t));
        }
        Ok(r)
    }

    async fn ping_sandbox(&self, _: &TtrpcContext, req: PingRequest) -> R<PingResponse> {
        self.pod.sandbox_status(&req.sandbox_id)?;
        Ok(PingResponse::new())
    }

    async fn shutdown_sandbox(
        &self,
        _: &TtrpcContext,
        req: ShutdownSandboxRequest,
    ) -> R<ShutdownSandboxResponse> {
        log::debug!("shutdown_sandbox id={}", req.sandbox_id);
        let pod = self.pod.clone();
        to_the_end(async move { pod.shutdown_sandbox(&req.sandbox_id).await }).await?;
        Ok(ShutdownSandboxResponse::new())
    }

    async fn sandbox_metrics(
        &self,
        _: &TtrpcContext,
        req: SandboxMetricsRequest,
    ) -> R<SandboxMetricsResponse> {
        let stats = self.pod.sandbox_stats(&req.sandbox_id).await?;
        let mut r = SandboxMetricsResponse::new();
        let m = r.metrics.mut_or_insert_default();
        m.id = req.sandbox_id;
        m.timestamp = MessageField::some(timestamp(std::time::SystemTime::now()));
        m.data = MessageField::some(crate::metrics::to_any(&stats)?);
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::well_known_types::any::Any;
    use containerd_shim_protos::protobuf::Message;

    #[test]
    fn the_spec_travels_as_field_3_an_any_of_json() {
        let spec: oci_spec::runtime::Spec =
            serde_json::from_str(r#"{"ociVersion":"1.1.0","hostname":"web-0"}"#).unwrap();
        let mut r = StartSandboxResponse::new();
        r.pid = 7;
        add_spec(&mut r, &spec);
        let bytes = r.write_to_bytes().unwrap();
        // Field 3, wire type 2 (length-delimited): tag byte 0x1a.
        assert_eq!(&bytes[..2], &[0x08, 7], "pid first");
        assert_eq!(bytes[2], 0x1a, "then field 3");
        // The length, a varint.
        let (mut len, mut i) = (0usize, 3);
        loop {
            len |= usize::from(bytes[i] & 0x7f) << (7 * (i - 3));
            i += 1;
            if bytes[i - 1] & 0x80 == 0 {
                break;
            }
        }
        let any = Any::parse_from_bytes(&bytes[i..i + len]).unwrap();
        assert_eq!(any.type_url, SPEC_TYPE_URL);
        let back: serde_json::Value = serde_json::from_slice(&any.value).unwrap();
        assert_eq!(back["hostname"], "web-0");
        // A reader without the field still reads the rest.
        assert_eq!(
            StartSandboxResponse::parse_from_bytes(&bytes).unwrap().pid,
            7
        );
    }
}
