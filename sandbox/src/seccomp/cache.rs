//! Compiled filters, kept host-wide so that libseccomp compiles a profile once, not once
//! per container: a default-sized profile takes it ~16 ms (1254 instructions for x86_64,
//! x86 and x32), more than the rest of a container's setup.
//!
//! The shim compiles (or finds) the spec's filter at Create and Exec and hands the program
//! to the init helper in its request ([`WireFilter`]); the helper loads it where it would
//! have loaded what it compiled. Entries live in [`CACHE_DIR`] (root's, 0700, on /run: a
//! reboot empties it), named by the SHA-256 of everything the program depends on: the
//! profile as JSON, the libseccomp version and API level (which syscalls it knows, which
//! flags the kernel takes) and the identity of the binary that compiles it (how it maps a
//! profile). An entry is written to a temporary name and renamed, so a reader sees a whole
//! one or none; one that does not decode is compiled again. No container can reach the
//! directory; the kernel checks every program it is given.
//!
//! The shim also keeps the few entries it used last in memory ([`RECENT_MAX`]): a pod's
//! containers and execs mostly share one profile, and a hit there saves reading and
//! decoding the entry's file (about 0.1 ms of each Create and Exec).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use oci_spec::runtime::{LinuxSeccomp, Spec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Filter, SeccompError};

/// Where compiled filters are kept.
pub const CACHE_DIR: &str = "/run/mypod/seccomp";

/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

/// A compiled filter as the init request carries it: seccomp(2) flags, and each
/// instruction packed as `code << 48 | jt << 40 | jf << 32 | k`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireFilter {
    pub flags: u64,
    /// As one string of 16 hex digits per instruction: a few KB that parse in
    /// microseconds, where a JSON array of numbers took a third of a millisecond.
    #[serde(with = "hex_prog")]
    pub prog: Vec<u64>,
}

/// [`WireFilter::prog`] as hex text.
mod hex_prog {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(prog: &[u64], s: S) -> Result<S::Ok, S::Error> {
        use std::fmt::Write;
        let mut text = String::with_capacity(prog.len() * 16);
        for x in prog {
            let _ = write!(text, "{x:016x}");
        }
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
        let text = <&str>::deserialize(d)?;
        if text.len() % 16 != 0 {
            return Err(D::Error::custom(
                "a compiled filter of partial instructions",
            ));
        }
        text.as_bytes()
            .chunks(16)
            .map(|c| {
                // from_str_radix alone would take a sign.
                c.iter()
                    .all(u8::is_ascii_hexdigit)
                    .then(|| std::str::from_utf8(c).ok())
                    .flatten()
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .ok_or_else(|| D::Error::custom("a compiled filter that is not hex"))
            })
            .collect()
    }
}

impl Filter {
    /// The program in its wire form.
    #[allow(
        clippy::unnecessary_cast,
        reason = "c_ulong is u64 here, u32 on 32-bit targets"
    )]
    pub fn to_wire(&self) -> WireFilter {
        WireFilter {
            flags: self.flags as u64,
            prog: self
                .prog
                .iter()
                .map(|i| {
                    u64::from(i.code) << 48
                        | u64::from(i.jt) << 40
                        | u64::from(i.jf) << 32
                        | u64::from(i.k)
                })
                .collect(),
        }
    }

    /// The filter of a wire form: 1 to 4096 instructions (the kernel checks the rest).
    pub fn from_wire(w: &WireFilter) -> Result<Filter, SeccompError> {
        if w.prog.is_empty() || w.prog.len() > MAX_INSNS {
            return Err(SeccompError::Invalid(format!(
                "linux.seccomp: a compiled filter of {} instructions (1 to {MAX_INSNS})",
                w.prog.len()
            )));
        }
        Ok(Filter {
            flags: w.flags as libc::c_ulong,
            prog: w
                .prog
                .iter()
                .map(|&x| libc::sock_filter {
                    code: (x >> 48) as u16,
                    jt: (x >> 40) as u8,
                    jf: (x >> 32) as u8,
                    k: x as u32,
                })
                .collect(),
        })
    }
}

/// The spec's filter, from the cache or compiled now (and then kept); `None` when the
/// spec has no `linux.seccomp`. A cache that cannot be read or written only costs the
/// compile.
pub fn compiled(spec: &Spec) -> Result<Option<WireFilter>, SeccompError> {
    let Some(sc) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    compiled_in(Path::new(CACHE_DIR), sc, &RECENT).map(Some)
}

/// How many entries the process keeps in memory.
const RECENT_MAX: usize = 2;

/// Entries used last, by path, newest last. Each program is a few KiB.
#[derive(Debug, Default)]
struct Recent(Mutex<Vec<(PathBuf, WireFilter)>>);

/// This process's.
static RECENT: Recent = Recent(Mutex::new(Vec::new()));

impl Recent {
    fn lock(&self) -> MutexGuard<'_, Vec<(PathBuf, WireFilter)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, path: &Path) -> Option<WireFilter> {
        let mut r = self.lock();
        let i = r.iter().position(|(p, _)| p == path)?;
        let hit = r.remove(i);
        let w = hit.1.clone();
        r.push(hit);
        Some(w)
    }

    /// Keeps `w` as the newest entry for `path`, dropping the oldest beyond RECENT_MAX.
    fn put(&self, path: &Path, w: &WireFilter) {
        let mut r = self.lock();
        r.retain(|(p, _)| p != path);
        if r.len() >= RECENT_MAX {
            r.remove(0);
        }
        r.push((path.to_path_buf(), w.clone()));
    }
}

fn compiled_in(dir: &Path, sc: &LinuxSeccomp, recent: &Recent) -> Result<WireFilter, SeccompError> {
    let Some(path) = key(sc).map(|k| dir.join(k)) else {
        return Ok(compile(sc)?.to_wire());
    };
    if let Some(w) = recent.get(&path) {
        return Ok(w);
    }
    let w = match read(&path) {
        Some(w) => w,
        None => {
            let w = compile(sc)?.to_wire();
            if let Err(e) = write(dir, &path, &w) {
                log::debug!("seccomp cache: keep {}: {e}", path.display());
            }
            w
        }
    };
    recent.put(&path, &w);
    Ok(w)
}

fn compile(sc: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    Filter::compile_profile(sc, super::Optimize::Runc)
}

/// The entry's name: SHA-256 of what the program depends on. `None` when the profile
/// cannot be serialised (it then is compiled every time).
fn key(sc: &LinuxSeccomp) -> Option<String> {
    let profile = serde_json::to_vec(sc).ok()?;
    let v = libseccomp::ScmpVersion::current().ok()?;
    let exe = std::fs::metadata("/proc/self/exe").ok()?;
    let mut h = Sha256::new();
    h.update(b"mypod seccomp cache 2\0");
    h.update(
        format!(
            "libseccomp {}.{}.{} api {}\0exe {} {} {} {}.{}\0",
            v.major,
            v.minor,
            v.micro,
            libseccomp::get_api(),
            exe.dev(),
            exe.ino(),
            exe.size(),
            exe.mtime(),
            exe.mtime_nsec()
        )
        .as_bytes(),
    );
    h.update(&profile);
    Some(
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    )
}

fn read(path: &Path) -> Option<WireFilter> {
    let text = std::fs::read(path).ok()?;
    let w: WireFilter = serde_json::from_slice(&text).ok()?;
    Filter::from_wire(&w).ok()?;
    Some(w)
}

fn write(dir: &Path, path: &Path, w: &WireFilter) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp: PathBuf = dir.join(format!(".tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(w).map_err(std::io::Error::other)?)?;
    drop(f);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("mypod-sc-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// Memory keeps the newest entries, at most RECENT_MAX; a hit becomes the newest.
    #[test]
    fn memory_keeps_the_newest_entries() {
        let w = |n: u64| WireFilter {
            flags: 0,
            prog: vec![6 << 48 | n],
        };
        let p = |n: u64| PathBuf::from(n.to_string());
        let r = Recent::default();
        for n in 0..5 {
            r.put(&p(n), &w(n));
        }
        assert_eq!(r.get(&p(3)), Some(w(3)));
        assert_eq!(r.get(&p(2)), None, "pushed out");
        r.put(&p(5), &w(5));
        assert_eq!(r.get(&p(4)), None, "the oldest once 3 was used");
        assert_eq!(r.get(&p(3)), Some(w(3)));
        assert_eq!(r.get(&p(5)), Some(w(5)));
        assert_eq!(r.lock().len(), RECENT_MAX);
    }

    #[test]
    fn wire_form_round_trips() {
        let f = super::super::compiled(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        );
        let back = Filter::from_wire(&f.to_wire()).unwrap();
        assert_eq!(back.to_wire(), f.to_wire());
        assert_eq!(back.flags, f.flags);
        let empty = WireFilter {
            flags: 0,
            prog: vec![],
        };
        assert!(Filter::from_wire(&empty).is_err());
        let huge = WireFilter {
            flags: 0,
            prog: vec![6 << 48; MAX_INSNS + 1],
        };
        assert!(Filter::from_wire(&huge).is_err());
    }

    #[test]
    fn the_program_travels_as_hex_and_bad_text_is_refused() {
        let w = WireFilter {
            flags: 1,
            prog: vec![0x0020_0000_0000_0004, u64::MAX, 6 << 48],
        };
        let text = serde_json::to_string(&w).unwrap();
        assert!(
            text.contains("\"0020000000000004ffffffffffffffff0006000000000000\""),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<WireFilter>(&text).unwrap(), w);
        for bad in [
            r#"{"flags":0,"prog":"0020000000000004ff"}"#,
            r#"{"flags":0,"prog":"002000000000000x"}"#,
            r#"{"flags":0,"prog":"+020000000000004"}"#,
            r#"{"flags":0,"prog":[1,2]}"#,
        ] {
            assert!(serde_json::from_str::<WireFilter>(bad).is_err(), "{bad}");
        }
    }

    /// The second ask is served from the entry the first wrote (a planted entry proves it
    /// is read, not recompiled); a corrupt entry is compiled again; another profile has
    /// another entry.
    #[test]
    fn entries_are_written_read_and_recompiled_when_bad() {
        let d = dir("cache");
        let sc = super::super::default::profile();
        let memory = Recent::default();
        let first = compiled_in(&d, &sc, &memory).unwrap();
        let path = d.join(key(&sc).unwrap());
        assert!(path.exists(), "the entry was written");
        let mode = std::fs::metadata(&d).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700, "the cache directory is root's alone");
        // A planted (valid) entry is what comes back to a process that does not hold the
        // profile in memory: the cache is read.
        let planted = WireFilter {
            flags: 0,
            prog: vec![6 << 48 | 0x7fff_0000],
        };
        std::fs::write(&path, serde_json::to_vec(&planted).unwrap()).unwrap();
        assert_eq!(compiled_in(&d, &sc, &memory).unwrap(), first, "from memory");
        assert_eq!(compiled_in(&d, &sc, &Recent::default()).unwrap(), planted);
        // A corrupt one is replaced by a fresh compile.
        std::fs::write(&path, b"not json").unwrap();
        assert_eq!(compiled_in(&d, &sc, &Recent::default()).unwrap(), first);
        let other: LinuxSeccomp = serde_json::from_str(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        assert_ne!(key(&other), key(&sc));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
