//! The benchmark behind `scripts/bench.sh` (binary `bench`): mypod against containerd's runc-v2
//! shim (Debian's runc) on ONE private CRI-enabled containerd instance of the harness, measured
//! alternately in the same run.
//!
//! - `ctr_phases`: `ctr run --rm` lifecycle, create+start / delete, exec, and ctr's own floor;
//! - `cri_phases`: pod start and teardown through CRI, shim memory and threads, density;
//! - `events`: containerd's log timestamps, to show which part of a lifecycle is containerd's;
//! - `sandbox`: what the sandbox defaults cost (on vs off), with gVisor's runsc beside them;
//! - `report`: the terminal table, docs/benchmarks.md, the samples as JSON and the plot.
//!
//! Everything runs against a `Containerd` of the harness, so every process, mount, cgroup and
//! socket the bench makes is removed when it ends, also when it fails or is interrupted
//! (SIGINT/SIGTERM/SIGHUP set a flag that every loop checks; the error then unwinds through the
//! instance's Drop). Build the bench with `panic = "unwind"` (scripts/bench.sh does) so that a
//! panic in the harness cleans up too.

pub mod cri_phases;
pub mod ctr_phases;
pub mod events;
pub mod report;
pub mod sandbox;
pub mod sandboxer;
pub mod stats;
pub mod sysinfo;

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::containerd::{MYPOD_RUNTIME, RUNC_RUNTIME};

/// A runtime under comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rt {
    Mypod,
    Runc,
}

impl Rt {
    /// Both runtimes, mypod first.
    pub const BOTH: [Rt; 2] = [Rt::Mypod, Rt::Runc];

    /// The runtime type for `ctr run --runtime`.
    pub fn runtime_type(self) -> &'static str {
        match self {
            Rt::Mypod => MYPOD_RUNTIME,
            Rt::Runc => RUNC_RUNTIME,
        }
    }

    /// The CRI runtime handler (RuntimeClass) of the instance's runtime entry.
    pub fn handler(self) -> &'static str {
        match self {
            Rt::Mypod => "mypod",
            Rt::Runc => "runc",
        }
    }

    /// A short name for ids and table headers.
    pub fn name(self) -> &'static str {
        self.handler()
    }

    /// The order the runtimes run in at iteration `i`: alternating which goes first, so that
    /// neither always runs right after the other's (cache, cleanup) work.
    pub fn order(i: usize) -> [Rt; 2] {
        if i & 1 == 0 {
            [Rt::Mypod, Rt::Runc]
        } else {
            [Rt::Runc, Rt::Mypod]
        }
    }
}

impl fmt::Display for Rt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One latency measurement for both runtimes, in milliseconds.
#[derive(Clone, Debug)]
pub struct Series {
    /// Short key (JSON, plot).
    pub key: String,
    /// What was measured, for the table.
    pub title: String,
    pub mypod: Vec<f64>,
    pub runc: Vec<f64>,
    /// The target for the ratio of medians mypod/runc, if it has one.
    pub target: Option<f64>,
}

impl Series {
    pub fn new(key: &str, title: &str, target: Option<f64>) -> Series {
        Series {
            key: key.to_string(),
            title: title.to_string(),
            mypod: Vec::new(),
            runc: Vec::new(),
            target,
        }
    }

    /// Adds one sample (milliseconds) of `rt`.
    pub fn push(&mut self, rt: Rt, ms: f64) {
        match rt {
            Rt::Mypod => self.mypod.push(ms),
            Rt::Runc => self.runc.push(ms),
        }
    }

    pub fn samples(&self, rt: Rt) -> &[f64] {
        match rt {
            Rt::Mypod => &self.mypod,
            Rt::Runc => &self.runc,
        }
    }

    /// Ratio of the medians mypod/runc.
    pub fn ratio(&self) -> Option<f64> {
        let m = stats::median(&self.mypod)?;
        let r = stats::median(&self.runc)?;
        (r > 0.0).then(|| m / r)
    }
}

/// Set by SIGINT, SIGTERM or SIGHUP.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP set the interrupt flag instead of killing the bench, so
/// that it stops at the next check and cleans up.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// True once a signal asked the bench to stop.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Err("interrupted") once a signal asked the bench to stop.
pub fn check_interrupted() -> Result<(), String> {
    if interrupted() {
        Err("interrupted by a signal".to_string())
    } else {
        Ok(())
    }
}

/// Progress lines on stderr, each with the time since the bench started.
pub struct Progress {
    start: Instant,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            start: Instant::now(),
        }
    }

    /// Prints `[mm:ss] msg`.
    pub fn line(&self, msg: &str) {
        let s = self.start.elapsed().as_secs();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "[{:02}:{:02}] {msg}", s / 60, s % 60);
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// Milliseconds of a duration.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
