//! Pod operations that run to their end even when their request is dropped.
//!
//! ttrpc-rust drops a request's handler future when the request's deadline passes (the
//! caller's context deadline travels as `timeout_nano`) or its connection closes (a
//! containerd restart). A Create, Start or Delete dropped at one of its awaits would leave
//! the pod's bookkeeping half done: an id reserved forever (every retry: "already
//! exists"), a started process nobody records (no exit event, no Wait), a container taken
//! out of the table but not destroyed. So the service edge runs each operation that
//! changes the pod as a task of its own and awaits that: the request may go, the operation
//! still finishes and leaves the pod consistent, and containerd's clean-up (a Delete after
//! the failed call) finds what it did.

use std::future::Future;

use crate::error::ServiceError;

/// Runs `op` as its own task and returns its result; see the module comment.
pub async fn to_the_end<T, F>(op: F) -> Result<T, ServiceError>
where
    F: Future<Output = Result<T, ServiceError>> + Send + 'static,
    T: Send + 'static,
{
    tokio::spawn(op)
        .await
        .unwrap_or_else(|e| Err(ServiceError::Internal(format!("the operation ended: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_caller_does_not_cancel_the_operation() {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let call = to_the_end(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            d.store(true, Ordering::SeqCst);
            Ok(())
        });
        // As ttrpc does on a request's deadline: the handler's future is dropped.
        let timed_out = tokio::time::timeout(Duration::from_millis(1), call).await;
        assert!(timed_out.is_err());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(
            done.load(Ordering::SeqCst),
            "the operation was cancelled with its caller"
        );
    }
}
