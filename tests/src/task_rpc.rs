//! Task requests sent straight to a shim's socket (the address containerd dials), for what
//! ctr cannot send: ids containerd never would, requests out of order, stdio nobody reads.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use containerd_shim_protos::shim::shim_ttrpc_async::TaskClient;

/// A request's answer: the reply, or the ttrpc status code and message.
pub type Answer<T> = Result<T, (ttrpc::Code, String)>;

/// Sends one request on a fresh connection to the shim at `sock`; the answer and how long
/// it took. Panics if the shim does not answer within 20 s: a hang is a failure.
pub fn call<F, Fut, T>(sock: &Path, f: F) -> (Answer<T>, Duration)
where
    F: FnOnce(TaskClient, ttrpc::context::Context) -> Fut,
    Fut: Future<Output = ttrpc::Result<T>>,
{
    let address = format!("unix://{}", sock.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let start = Instant::now();
    let res = rt.block_on(async {
        let client = ttrpc::asynchronous::Client::connect(&address)
            .await
            .unwrap_or_else(|e| panic!("connect {address}: {e}"));
        let ctx = ttrpc::context::with_timeout(Duration::from_secs(15).as_nanos() as i64);
        tokio::time::timeout(Duration::from_secs(20), f(TaskClient::new(client), ctx)).await
    });
    let took = start.elapsed();
    let answer =
        match res.unwrap_or_else(|_| panic!("the shim at {address} did not answer in 20 s")) {
            Ok(v) => Ok(v),
            Err(ttrpc::Error::RpcStatus(s)) => Err((s.code(), s.message.clone())),
            Err(e) => panic!("request to {address}: {e}"),
        };
    (answer, took)
}
