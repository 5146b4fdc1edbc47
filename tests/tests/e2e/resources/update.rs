//! Update: Task.Update sent to the shim over ttrpc as containerd sends it (none of the `ctr`
//! versions has `task update`), to a running and to a stopped container.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use mypod_tests::Containerd;
use serde_json::json;

use super::{cgroup_file, is_v2, v2_file};

// ---- Task.Update over ttrpc, as containerd sends it ----

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A length-delimited protobuf field.
fn field(num: u32, bytes: &[u8], out: &mut Vec<u8>) {
    varint(u64::from(num << 3 | 2), out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// Reads a protobuf message's fields: (number, varint value or bytes).
fn fields(mut b: &[u8]) -> Vec<(u32, Result<u64, Vec<u8>>)> {
    fn uvarint(b: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&x, rest) = b.split_first()?;
            *b = rest;
            v |= u64::from(x & 0x7f) << shift;
            if x & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    let mut out = Vec::new();
    while let Some(key) = uvarint(&mut b) {
        let num = (key >> 3) as u32;
        match key & 7 {
            0 => match uvarint(&mut b) {
                Some(v) => out.push((num, Ok(v))),
                None => break,
            },
            2 => {
                let Some(len) = uvarint(&mut b) else { break };
                let len = len as usize;
                if len > b.len() {
                    break;
                }
                out.push((num, Err(b[..len].to_vec())));
                b = &b[len..];
            }
            _ => break,
        }
    }
    out
}

/// One ttrpc unary call; returns (status code, message, payload).
fn ttrpc_call(sock: &Path, service: &str, method: &str, payload: &[u8]) -> (u64, String, Vec<u8>) {
    let mut req = Vec::new();
    field(1, service.as_bytes(), &mut req);
    field(2, method.as_bytes(), &mut req);
    field(3, payload, &mut req);
    varint(4 << 3, &mut req);
    varint(10_000_000_000, &mut req);
    let mut s = UnixStream::connect(sock).unwrap_or_else(|e| panic!("{}: {e}", sock.display()));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut msg = Vec::new();
    msg.extend_from_slice(&(req.len() as u32).to_be_bytes());
    msg.extend_from_slice(&1u32.to_be_bytes()); // stream id
    msg.extend_from_slice(&[1, 0]); // request, no flags
    msg.extend_from_slice(&req);
    s.write_all(&msg).expect("send ttrpc request");
    let mut head = [0u8; 10];
    s.read_exact(&mut head).expect("ttrpc response header");
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("ttrpc response body");
    let (mut code, mut message, mut payload) = (0, String::new(), Vec::new());
    for (n, v) in fields(&body) {
        match (n, v) {
            (1, Err(status)) => {
                for (sn, sv) in fields(&status) {
                    match (sn, sv) {
                        (1, Ok(c)) => code = c,
                        (2, Err(m)) => message = String::from_utf8_lossy(&m).into_owned(),
                        _ => {}
                    }
                }
            }
            (2, Err(p)) => payload = p,
            _ => {}
        }
    }
    (code, message, payload)
}

/// Task.Update{id, resources: Any(LinuxResources JSON)} to the shim of `id`, as Task v2 or,
/// if the shim does not serve it (containerd 2.x's runc shim), v3.
fn update_task(c: &Containerd, id: &str, resources: &serde_json::Value) -> (u64, String) {
    let mut any = Vec::new();
    field(
        1,
        b"types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
        &mut any,
    );
    field(2, resources.to_string().as_bytes(), &mut any);
    let mut req = Vec::new();
    field(1, id.as_bytes(), &mut req);
    field(2, &any, &mut req);
    let sock = c.shim_socket(id);
    let mut last = (0, String::new());
    for svc in ["containerd.task.v2.Task", "containerd.task.v3.Task"] {
        let (code, msg, _) = ttrpc_call(&sock, svc, "Update", &req);
        // 12 UNIMPLEMENTED / 5 NOT_FOUND: the service is not served under that name.
        if (code == 12 || code == 5) && msg.contains("service") {
            last = (code, msg);
            continue;
        }
        return (code, msg);
    }
    last
}

/// Update changes the limits of a running container; bad values are refused and change
/// nothing; an Update of a stopped container fails clearly.
pub(super) fn update_running_and_stopped(c: &Containerd) {
    let v2 = is_v2();
    // The memory limit as its file says it: memory.max (v2) or memory.limit_in_bytes (v1).
    let mem = |id: &str| {
        if v2 {
            v2_file(c, id, "memory.max")
        } else {
            cgroup_file(c, "memory", id, "memory.limit_in_bytes")
        }
    };
    c.run_detached("upd", &["--memory-limit", "67108864"], &["sleep", "60"]);
    if v2 {
        assert_eq!(mem("upd"), "67108864");
        assert_eq!(v2_file(c, "upd", "cpu.max"), "max 100000");
    }
    let (code, msg) = update_task(
        c,
        "upd",
        &json!({ "memory": { "limit": 100663296 }, "cpu": { "quota": 20000, "period": 100000 } }),
    );
    assert_eq!((code, msg.as_str()), (0, ""), "Update should succeed");
    assert_eq!(mem("upd"), "100663296");
    if v2 {
        assert_eq!(v2_file(c, "upd", "cpu.max"), "20000 100000");
    } else {
        assert_eq!(cgroup_file(c, "cpu", "upd", "cpu.cfs_quota_us"), "20000");
    }
    if c.is_mypod() {
        let (code, msg) = update_task(c, "upd", &json!({ "memory": { "limit": -5 } }));
        assert_eq!(code, 3, "INVALID_ARGUMENT expected: {msg}");
        assert!(msg.contains("memory.limit = -5"), "{msg}");
        assert_eq!(mem("upd"), "100663296");
    }
    c.kill_and_remove("upd");
    c.assert_clean("upd");

    c.run_detached("upd2", &[], &["/bin/true"]);
    c.wait_task_status("upd2", "STOPPED", Duration::from_secs(10));
    let (code, msg) = update_task(c, "upd2", &json!({ "memory": { "limit": 100663296 } }));
    assert_ne!(code, 0, "Update of a stopped container must fail");
    assert!(
        msg.contains("stopped"),
        "the error should say it stopped: {msg}"
    );
    if c.is_mypod() {
        assert_eq!(code, 9, "FAILED_PRECONDITION expected: {msg}");
    }
    c.kill_and_remove("upd2");
    c.assert_clean("upd2");
}
