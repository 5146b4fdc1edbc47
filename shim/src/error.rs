//! Errors of the Task service, mapped to ttrpc status codes at the service edge.

use mypod_sandbox::cgroup::freezer::FreezerError;
use mypod_sandbox::cgroup::resources::ResourceError;
use mypod_sandbox::container::ContainerError;
use mypod_sandbox::pod_userns::PodUsernsError;
use mypod_sandbox::userns_pool::PoolError;
use ttrpc::Code;

/// What a Task RPC can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// What was not found, said in full (`container c1 not found`).
    #[error("{0}")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0} is not supported by mypod")]
    NotImplemented(&'static str),
    #[error("{0}")]
    Container(#[from] ContainerError),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    fn code(&self) -> Code {
        match self {
            ServiceError::NotFound(_) => Code::NOT_FOUND,
            ServiceError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ServiceError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            ServiceError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            ServiceError::NotImplemented(_) => Code::UNIMPLEMENTED,
            ServiceError::Container(e) => match e {
                ContainerError::Spec(_) | ContainerError::Sysctl(_) => Code::INVALID_ARGUMENT,
                ContainerError::Process(mypod_sandbox::process::ProcessError::Finished(_)) => {
                    Code::NOT_FOUND
                }
                ContainerError::NotCreated => Code::FAILED_PRECONDITION,
                ContainerError::HostAccess(_) => Code::PERMISSION_DENIED,
                ContainerError::Seccomp(mypod_sandbox::seccomp::SeccompError::Invalid(_)) => {
                    Code::INVALID_ARGUMENT
                }
                ContainerError::PodUserns(u) => match u {
                    PodUsernsError::OutsidePod { .. } => Code::INVALID_ARGUMENT,
                    PodUsernsError::Pool(PoolError::Exhausted { .. }) => Code::RESOURCE_EXHAUSTED,
                    _ => Code::UNKNOWN,
                },
                ContainerError::Resource(r) => match r {
                    ResourceError::Read { .. } => Code::UNKNOWN,
                    _ => Code::INVALID_ARGUMENT,
                },
                ContainerError::Freezer(FreezerError::NoFreezer) => Code::FAILED_PRECONDITION,
                _ => Code::UNKNOWN,
            },
            ServiceError::Internal(_) => Code::INTERNAL,
        }
    }
}

impl From<ServiceError> for ttrpc::Error {
    fn from(e: ServiceError) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: ServiceError) -> Code {
        match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(s) => s.code(),
            _ => Code::OK,
        }
    }

    #[test]
    fn codes_match_containerd_errdefs() {
        assert_eq!(code(ServiceError::NotFound("x".into())), Code::NOT_FOUND);
        assert_eq!(
            code(ServiceError::NotImplemented("Pause")),
            Code::UNIMPLEMENTED
        );
        assert_eq!(
            code(ServiceError::Container(ContainerError::Init("boom".into()))),
            Code::UNKNOWN
        );
        let refused = mypod_sandbox::host_access::HostAccessError::Refused(vec![
            mypod_sandbox::host_access::Asked::SharedNamespace("network"),
        ]);
        assert_eq!(
            code(ServiceError::Container(ContainerError::HostAccess(refused))),
            Code::PERMISSION_DENIED
        );
        let exhausted = PodUsernsError::Pool(PoolError::Exhausted { start: 0, slots: 1 });
        assert_eq!(
            code(ServiceError::Container(ContainerError::PodUserns(
                exhausted
            ))),
            Code::RESOURCE_EXHAUSTED
        );
        let outside = PodUsernsError::OutsidePod {
            field: "process.user.uid".into(),
            id: 70000,
        };
        assert_eq!(
            code(ServiceError::Container(ContainerError::PodUserns(outside))),
            Code::INVALID_ARGUMENT
        );
    }
}
