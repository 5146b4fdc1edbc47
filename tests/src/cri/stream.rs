//! A client of CRI's stream server: what `kubectl exec -it` / `kubectl attach` / `crictl exec
//! -it` do with the URL that CRI's `Exec` and `Attach` return.
//!
//! containerd serves those URLs (`http://ADDR:PORT/exec/TOKEN`, `/attach/TOKEN`) with the
//! kubelet's streaming server (k8s.io/kubelet/pkg/cri/streaming; containerd 1.6/1.7 carry a
//! copy in pkg/cri/streaming), which takes SPDY or a WebSocket upgrade. This client speaks the
//! WebSocket subprotocol `v4.channel.k8s.io` (remotecommand/websocket.go, wsstream/conn.go):
//! - every binary message starts with a channel byte: 0 stdin (client → server), 1 stdout,
//!   2 stderr, 3 error/status (server → client), 4 resize (client → server);
//! - once the streams are set up, the server sends an empty message on the lowest writable
//!   channel (stdout if asked for);
//! - resize messages are JSON `{"Width":W,"Height":H}` (remotecommand.TerminalSize);
//! - at the end the server writes one JSON `metav1.Status` on channel 3 (v4: also on success,
//!   `{"status":"Success"}`; an exec's non-zero exit is `status: Failure, reason:
//!   NonZeroExitCode, details.causes: [{reason: ExitCode, message: "N"}]`), then closes;
//! - v4 has no half-close of stdin (the `v5.channel.k8s.io` close signal, channel 255, is not
//!   offered by this server): the client ends stdin only by closing the whole connection, and
//!   the server then closes the stdin pipe (for an exec, or an attach to a `stdinOnce`
//!   container, that is the process' EOF).

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

/// The subprotocol this client asks for.
pub const V4_PROTOCOL: &str = "v4.channel.k8s.io";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;

/// How long a single blocking read waits before the session looks at its deadline again.
const POLL: Duration = Duration::from_millis(100);

/// One exec or attach session on CRI's stream server.
pub struct StreamSession {
    ws: WebSocket<TcpStream>,
    /// The URL it was opened on (for messages).
    pub url: String,
    /// The subprotocol the server chose.
    pub protocol: String,
    /// Everything received on stdout so far.
    pub stdout: Vec<u8>,
    /// Everything received on stderr so far.
    pub stderr: Vec<u8>,
    /// Everything received on the error/status channel.
    pub status: Vec<u8>,
    /// The server closed the connection (the stream is over).
    pub ended: bool,
}

/// `host:port` of an `http://host:port/...` URL.
fn url_addr(url: &str) -> Result<SocketAddr, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let hostport = rest.split('/').next().unwrap_or_default();
    hostport
        .parse()
        .map_err(|e| format!("address {hostport:?} of {url}: {e}"))
}

impl StreamSession {
    /// Connects to `url` (an Exec or Attach answer) with `connect` (which makes the TCP
    /// connection, e.g. from inside the instance's network namespace) and upgrades to a
    /// WebSocket with subprotocol `v4.channel.k8s.io`.
    pub fn open(
        url: &str,
        connect: impl FnOnce(SocketAddr) -> io::Result<TcpStream>,
    ) -> Result<StreamSession, String> {
        let addr = url_addr(url)?;
        let tcp = connect(addr).map_err(|e| format!("connect to {addr} ({url}): {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        // The handshake itself must not hang a test either.
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let ws_url = format!("ws://{}", &url["http://".len()..]);
        let mut req = ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("request for {ws_url}: {e}"))?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(V4_PROTOCOL),
        );
        let (ws, resp) = tungstenite::client::client(req, tcp)
            .map_err(|e| format!("WebSocket handshake with {url}: {e}"))?;
        let protocol = resp
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        ws.get_ref()
            .set_read_timeout(Some(POLL))
            .map_err(|e| e.to_string())?;
        Ok(StreamSession {
            ws,
            url: url.to_string(),
            protocol,
            stdout: Vec::new(),
            stderr: Vec::new(),
            status: Vec::new(),
            ended: false,
        })
    }

    /// Sends one message on `channel`.
    fn send(&mut self, channel: u8, data: &[u8]) -> Result<(), String> {
        let mut msg = Vec::with_capacity(data.len() + 1);
        msg.push(channel);
        msg.extend_from_slice(data);
        self.ws
            .send(Message::binary(msg))
            .map_err(|e| format!("send on channel {channel} of {}: {e}", self.url))
    }

    /// Writes `data` to the process' stdin; panics if the connection is gone.
    pub fn send_stdin(&mut self, data: &[u8]) {
        self.send(STDIN, data).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Tells the server the terminal's new size; panics if the connection is gone.
    pub fn resize(&mut self, width: u16, height: u16) {
        let json = serde_json::json!({ "Width": width, "Height": height }).to_string();
        self.send(RESIZE, json.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Reads one message (or nothing within `POLL`) into the buffers. Returns false once the
    /// stream has ended.
    fn poll(&mut self) -> Result<bool, String> {
        if self.ended {
            return Ok(false);
        }
        match self.ws.read() {
            Ok(Message::Binary(data)) => {
                if let Some((&ch, rest)) = data.split_first() {
                    match ch {
                        STDOUT => self.stdout.extend_from_slice(rest),
                        STDERR => self.stderr.extend_from_slice(rest),
                        ERROR => self.status.extend_from_slice(rest),
                        other => return Err(format!("message on unexpected channel {other}")),
                    }
                }
                Ok(true)
            }
            Ok(Message::Close(_)) => Ok(true),
            Ok(Message::Text(t)) => Err(format!("unexpected text message {t:?}")),
            Ok(_) => Ok(true),
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(true)
            }
            // The peer's close frame ends the stream; a Go server may still write a frame it
            // had queued after it (a race in its writers), which the protocol says to drop.
            Err(
                tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ReceivedAfterClosing,
                ),
            ) => {
                self.ended = true;
                Ok(false)
            }
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::UnexpectedEof
                ) =>
            {
                self.ended = true;
                Ok(false)
            }
            Err(e) => Err(format!("read from {}: {e}", self.url)),
        }
    }

    /// Reads until `done(self)` holds (true), the stream ends or `timeout` passes (false).
    pub fn read_until(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&StreamSession) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            match self.poll() {
                Ok(true) => {}
                Ok(false) => return done(self),
                Err(e) => panic!("{e}; so far: {}", self.describe()),
            }
        }
    }

    /// Reads until stdout contains `needle`; panics with what arrived if it does not within
    /// `timeout`.
    pub fn expect_stdout(&mut self, needle: &str, timeout: Duration) {
        let found = self.read_until(timeout, |s| {
            String::from_utf8_lossy(&s.stdout).contains(needle)
        });
        assert!(
            found,
            "{needle:?} did not show on stdout within {timeout:?}: {}",
            self.describe()
        );
    }

    /// Reads until the server ends the stream; panics if it does not within `timeout`.
    pub fn wait_end(&mut self, timeout: Duration) {
        let ended = self.read_until(timeout, |s| s.ended);
        assert!(
            ended,
            "the stream did not end within {timeout:?}: {}",
            self.describe()
        );
    }

    /// The status (channel 3) as JSON, if one arrived.
    pub fn status_json(&self) -> Option<serde_json::Value> {
        if self.status.is_empty() {
            return None;
        }
        serde_json::from_slice(&self.status).ok()
    }

    /// The exit code in a v4 status: 0 for `Success`, the `ExitCode` cause for
    /// `NonZeroExitCode`, None for anything else (or no status).
    pub fn exit_code(&self) -> Option<i32> {
        let st = self.status_json()?;
        match st["status"].as_str()? {
            "Success" => Some(0),
            "Failure" if st["reason"] == "NonZeroExitCode" => st["details"]["causes"]
                .as_array()?
                .iter()
                .find(|c| c["reason"] == "ExitCode")?["message"]
                .as_str()?
                .parse()
                .ok(),
            _ => None,
        }
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// What the session has seen, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "stream {} (protocol {:?}, ended {}): stdout {:?}, stderr {:?}, status {:?}",
            self.url,
            self.protocol,
            self.ended,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr),
            String::from_utf8_lossy(&self.status)
        )
    }

    /// Closes the connection from the client's side (the only way to end stdin in v4) and
    /// waits up to `timeout` for the server to finish the close handshake. What arrives
    /// meanwhile is still collected.
    pub fn close(&mut self, timeout: Duration) {
        if self.ended {
            return;
        }
        if self.ws.close(None).is_err() {
            self.ended = true;
            return;
        }
        let deadline = Instant::now() + timeout;
        while !self.ended && Instant::now() < deadline {
            if self.poll().is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_stream_urls() {
        assert_eq!(
            url_addr("http://127.0.0.1:41234/exec/AbC").unwrap(),
            "127.0.0.1:41234".parse().unwrap()
        );
        assert!(url_addr("https://127.0.0.1:1/x").is_err());
        assert!(url_addr("http://127.0.0.1/x").is_err());
    }
}
