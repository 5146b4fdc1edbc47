//! Task requests → the shim's Task service, in-process and confined (see `mypod_shim::fuzz`).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use mypod_shim::fuzz::Harness;

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// The directories libFuzzer reads and writes (corpus directories and the artifact
/// prefix's): they stay reachable, at their own paths, inside the confinement.
fn fuzzer_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for arg in std::env::args().skip(1) {
        let path = match arg.split_once('=') {
            Some((flag, value)) if flag.ends_with("artifact_prefix") => {
                PathBuf::from(value).parent().map(PathBuf::from)
            }
            _ if !arg.starts_with('-') => Some(PathBuf::from(&arg)),
            _ => None,
        };
        if let Some(p) = path.and_then(|p| std::fs::canonicalize(p).ok()) {
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }
    dirs
}

libfuzzer_sys::fuzz_target!(
    init: {
        let harness = mypod_shim::fuzz::confine(&fuzzer_dirs())
            .and_then(Harness::new)
            .unwrap_or_else(|e| {
                eprintln!("{e}: refusing to fuzz the Task service unconfined");
                std::process::exit(1);
            });
        let _ = HARNESS.set(harness);
    },
    |data: &[u8]| {
        if let Some(h) = HARNESS.get() {
            h.run(data);
        }
    }
);
