//! Logging into containerd's shim log: the `log` FIFO of a live container's bundle.
//!
//! containerd reads `<bundle>/log` of every task it started. A pod shim outlives its first
//! container's bundle, so it keeps the FIFO of each live container and writes to the
//! newest; when that container is deleted, the next one takes over. Writes never block:
//! a full or readerless FIFO drops the line rather than stall the shim.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// The shim's logger.
pub struct FifoLogger {
    sinks: Mutex<Vec<(String, File)>>,
    level: LevelFilter,
}

static LOGGER: std::sync::OnceLock<FifoLogger> = std::sync::OnceLock::new();

/// Installs the logger (once).
pub fn init(debug: bool) {
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let logger = LOGGER.get_or_init(|| FifoLogger {
        sinks: Mutex::new(Vec::new()),
        level,
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Adds the log FIFO of a container's bundle; it becomes the current sink.
pub fn add_bundle(bundle: &Path) {
    let id = bundle.to_string_lossy();
    let Some(l) = LOGGER.get() else { return };
    let path = bundle.join("log");
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => {
            if let Ok(mut s) = l.sinks.lock() {
                s.retain(|(i, _)| *i != id);
                s.push((id.to_string(), f));
            }
        }
        Err(e) => log::debug!("no shim log at {}: {e}", path.display()),
    }
}

/// Drops a deleted container's FIFO.
pub fn remove_bundle(bundle: &Path) {
    let id = bundle.to_string_lossy();
    if let Some(l) = LOGGER.get() {
        if let Ok(mut s) = l.sinks.lock() {
            s.retain(|(i, _)| *i != id);
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// RFC 3339 UTC time, as containerd's own log lines carry.
fn timestamp() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86400, secs % 86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

impl Log for FifoLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let line = format!(
            "time=\"{}\" level={level} msg=\"{}\" runtime=io.containerd.mypod.v2 pid={}\n",
            timestamp(),
            escape(&r.args().to_string()),
            std::process::id()
        );
        let Ok(mut sinks) = self.sinks.lock() else {
            return;
        };
        // Newest first; a sink whose reader is gone is dropped.
        while let Some((_, f)) = sinks.last_mut() {
            match f.write(line.as_bytes()) {
                Ok(_) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    sinks.pop();
                }
            }
        }
    }

    fn flush(&self) {}
}
