//! A fake cgroup tree in a temp dir for the resources unit tests: the controller files
//! given exist (empty), so what [`super::apply`] writes can be read back.

use std::fs;
use std::path::PathBuf;

use oci_spec::runtime::LinuxResources;

use crate::cgroup::placement::Cgroup;

pub(super) fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

pub(super) struct Fake {
    root: PathBuf,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

pub(super) fn fake(name: &str, v2: bool, controllers: &[&str], files: &[&str]) -> (Fake, Cgroup) {
    let root = std::env::temp_dir().join(format!("mypod-res-{name}-{}-{}", std::process::id(), v2));
    let _ = fs::remove_dir_all(&root);
    let mut dirs = Vec::new();
    if v2 {
        let d = root.join("pod/c1");
        fs::create_dir_all(&d).unwrap();
        dirs.push((String::new(), d));
    } else {
        for c in controllers {
            let d = root.join(c).join("pod/c1");
            fs::create_dir_all(&d).unwrap();
            dirs.push((c.to_string(), d));
        }
    }
    for (_, d) in &dirs {
        for f in files {
            fs::write(d.join(f), "").unwrap();
        }
    }
    (
        Fake { root },
        Cgroup {
            dirs,
            v2,
            unified: None,
        },
    )
}

pub(super) fn get(cg: &Cgroup, ctrl: &str, file: &str) -> String {
    fs::read_to_string(cg.controller_dir(ctrl).unwrap().join(file)).unwrap()
}

/// Records every write to one cgroup file of a fake tree, which a regular file cannot (each
/// write replaces the last, as the kernel's multi-entry files such as `rdma.max` or
/// `net_prio.ifpriomap` do not): the file becomes a FIFO drained by a thread.
pub(super) struct Writes {
    path: PathBuf,
    reader: Option<std::thread::JoinHandle<String>>,
}

/// What [`Writes::finish`] appends so the reader knows the writes are over.
const END: &str = "<end>";

impl Writes {
    /// Replaces `cg`'s `file` of `ctrl` by a FIFO and starts draining it.
    pub(super) fn start(cg: &Cgroup, ctrl: &str, file: &str) -> Writes {
        let path = cg.controller_dir(ctrl).unwrap().join(file);
        let _ = fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Opened read-write, the FIFO never reports EOF and its pipe lives on between one
        // writer and the next: a reader that reopened it after each EOF could close it
        // just after a writer had written and gone, and the kernel would drop that write.
        let fifo = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut fifo = fifo;
            let mut all = Vec::new();
            let mut buf = [0u8; 4096];
            while !all.ends_with(END.as_bytes()) {
                let n = fifo.read(&mut buf).unwrap();
                all.extend_from_slice(&buf[..n]);
            }
            all.truncate(all.len() - END.len());
            String::from_utf8(all).unwrap()
        });
        Writes {
            path,
            reader: Some(reader),
        }
    }

    /// Everything written since [`Writes::start`], in order, concatenated: writes that meet
    /// in the pipe cannot be told apart, so one write of `a\nb` would show as `a\nb` and
    /// two writes of `a` and `b` as `ab`.
    pub(super) fn finish(mut self) -> String {
        fs::write(&self.path, END).unwrap();
        self.reader.take().unwrap().join().unwrap()
    }
}
