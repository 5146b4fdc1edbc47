//! Task events to containerd: ttrpc `Events/Forward` on TTRPC_ADDRESS, in order.
//!
//! Events are queued in memory and sent one at a time; a failed send reconnects and
//! retries with backoff until it succeeds, so an exit is never dropped while containerd
//! restarts. An event containerd answers with a refusal ([`refused`]) is dropped after
//! [`REFUSALS`] tries instead, so that it cannot hold up every event behind it. Before the
//! shim exits it flushes the queue (bounded wait).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{Client, EventsClient};
use tokio::sync::mpsc;

use crate::convert::timestamp;

/// Queues events for containerd.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::UnboundedSender<ForwardRequest>,
    pending: Arc<AtomicUsize>,
    namespace: String,
}

impl Publisher {
    /// Starts the sender task on the current runtime.
    pub fn start(ttrpc_address: String, namespace: String) -> Publisher {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(rx, address(&ttrpc_address), pending.clone()));
        Publisher {
            tx,
            pending,
            namespace,
        }
    }

    /// Queues one event under `topic`.
    pub fn publish<M: Message>(&self, topic: &str, event: &M) {
        let value = match event.write_to_bytes() {
            Ok(v) => v,
            Err(e) => {
                log::error!("encode event {topic}: {e}");
                return;
            }
        };
        let mut any = Any::new();
        any.type_url = type_url::<M>();
        any.value = value;
        let mut env = Envelope::new();
        env.timestamp = MessageField::some(timestamp(SystemTime::now()));
        env.namespace = self.namespace.clone();
        env.topic = topic.to_string();
        env.event = MessageField::some(any);
        let mut req = ForwardRequest::new();
        req.envelope = MessageField::some(env);
        self.pending.fetch_add(1, Ordering::SeqCst);
        if self.tx.send(req).is_err() {
            self.pending.fetch_sub(1, Ordering::SeqCst);
            log::error!("event {topic} not queued: publisher stopped");
        }
    }

    /// Waits until every queued event was delivered, at most `limit`.
    pub async fn flush(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.pending.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The package of every task event (containerd api/events/*.proto).
const EVENTS_PACKAGE: &str = "containerd.events";

/// The Any type URL of an event: its full protobuf name, as containerd expects it.
///
/// Built from the message's name rather than by reflection: protobuf's descriptors are built
/// on first use, and the events' descriptor pulls in google/protobuf/descriptor.proto
/// (through types/fieldpath.proto), several hundred KiB of heap kept for the life of the shim.
fn type_url<M: Message>() -> String {
    format!("{EVENTS_PACKAGE}.{}", M::NAME)
}

fn address(a: &str) -> String {
    if a.starts_with("unix://") {
        a.to_string()
    } else {
        format!("unix://{a}")
    }
}

/// How often containerd may refuse one event before it is dropped: with the backoff, about
/// 6 s of refusals (a containerd still starting its services is not taken for a refusal).
const REFUSALS: u32 = 10;

/// Whether containerd answered and refused the event (no retry will change its mind), as
/// opposed to not answering (restarting, a deadline passed).
fn refused(e: &ttrpc::Error) -> bool {
    use ttrpc::Code;
    let ttrpc::Error::RpcStatus(s) = e else {
        return false;
    };
    matches!(
        s.code(),
        Code::INVALID_ARGUMENT
            | Code::NOT_FOUND
            | Code::ALREADY_EXISTS
            | Code::PERMISSION_DENIED
            | Code::FAILED_PRECONDITION
            | Code::OUT_OF_RANGE
            | Code::UNIMPLEMENTED
    )
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<ForwardRequest>,
    addr: String,
    pending: Arc<AtomicUsize>,
) {
    let mut client: Option<EventsClient> = None;
    while let Some(req) = rx.recv().await {
        let topic = req.envelope.topic.clone();
        let mut delay = Duration::from_millis(20);
        let mut attempt = 0u32;
        let mut refusals = 0u32;
        loop {
            if client.is_none() {
                match Client::connect(&addr).await {
                    Ok(c) => client = Some(EventsClient::new(c)),
                    Err(e) => log::warn!("connect {addr} for events: {e}"),
                }
            }
            if let Some(c) = &client {
                let ctx = ttrpc::context::with_timeout(Duration::from_secs(5).as_nanos() as i64);
                match c.forward(ctx, &req).await {
                    Ok(_) => break,
                    Err(e) if refused(&e) => {
                        refusals += 1;
                        if refusals >= REFUSALS {
                            log::error!("event {topic} dropped: containerd refused it: {e}");
                            break;
                        }
                        log::warn!("forward event {topic} (attempt {attempt}): {e}");
                    }
                    Err(e) => {
                        log::warn!("forward event {topic} (attempt {attempt}): {e}");
                        client = None;
                    }
                }
            }
            attempt += 1;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::events::task::*;
    use containerd_shim_protos::protobuf::MessageFull;

    fn same<M: MessageFull>() {
        assert_eq!(type_url::<M>(), M::descriptor().full_name());
    }

    #[test]
    fn only_an_answered_refusal_drops_an_event() {
        let status = |c| ttrpc::Error::RpcStatus(ttrpc::get_status(c, "x"));
        assert!(refused(&status(ttrpc::Code::INVALID_ARGUMENT)));
        assert!(refused(&status(ttrpc::Code::NOT_FOUND)));
        assert!(!refused(&status(ttrpc::Code::UNAVAILABLE)));
        assert!(!refused(&status(ttrpc::Code::DEADLINE_EXCEEDED)));
        assert!(!refused(&status(ttrpc::Code::INTERNAL)));
        assert!(!refused(&ttrpc::Error::LocalClosed));
        assert!(!refused(&ttrpc::Error::RemoteClosed));
    }

    #[test]
    fn type_urls_match_the_descriptors() {
        same::<TaskCreate>();
        same::<TaskStart>();
        same::<TaskDelete>();
        same::<TaskIO>();
        same::<TaskExit>();
        same::<TaskOOM>();
        same::<TaskExecAdded>();
        same::<TaskExecStarted>();
        same::<TaskPaused>();
        same::<TaskResumed>();
        same::<TaskCheckpointed>();
    }
}
