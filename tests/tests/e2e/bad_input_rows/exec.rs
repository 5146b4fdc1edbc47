//! `ctr task exec` into the pod's sibling with exec ids containerd would not accept, an exec
//! id already in use, a program that does not exist, and a container that does not exist.

use std::time::Duration;

use mypod_tests::{per_version, Containerd};

use super::{assert_says, ctr_error, row, Sibling};

fn refused(sib: &Sibling, sent: &str, args: &[&str], needles: &[&str]) {
    let out = sib.c.ctr(args);
    out.assert_failure();
    let err = ctr_error(&out);
    row("exec", sent, &err, out.elapsed);
    assert_says(sent, &out.stderr, out.elapsed, needles);
    sib.assert_unharmed(None);
}

fn bad_execs(c: &Containerd) {
    let sib = Sibling::start(c, "sibling");
    let long = "e".repeat(200);
    refused(
        &sib,
        "exec id \"a/../b\" (a path)",
        &["tasks", "exec", "--exec-id", "a/../b", "sibling", "true"],
        &["a/../b"],
    );
    refused(
        &sib,
        "exec id of 200 characters",
        &["tasks", "exec", "--exec-id", &long, "sibling", "true"],
        &["eeeeeeeeee"],
    );
    refused(
        &sib,
        "exec of /bin/nope (no such program)",
        &["tasks", "exec", "--exec-id", "nope", "sibling", "/bin/nope"],
        &["/bin/nope"],
    );
    refused(
        &sib,
        "exec into a container that does not exist",
        &["tasks", "exec", "--exec-id", "x", "ghost", "true"],
        &["ghost"],
    );
    // An exec id that a running exec holds.
    let busy = [
        "tasks",
        "exec",
        "--detach",
        "--exec-id",
        "busy",
        "sibling",
        "sleep",
        "1000",
    ];
    c.ctr_ok(&busy);
    refused(
        &sib,
        "exec id already held by a running exec",
        &["tasks", "exec", "--exec-id", "busy", "sibling", "true"],
        &["busy"],
    );
    c.ctr_ok(&[
        "tasks",
        "kill",
        "--exec-id",
        "busy",
        "-s",
        "SIGKILL",
        "sibling",
    ]);
    let mut last = None;
    let deleted = (0..100).any(|_| {
        let out = c.ctr(&["tasks", "delete", "--exec-id", "busy", "sibling"]);
        let ok = out.success() || out.stderr.contains("not found");
        last = Some(out);
        ok || {
            std::thread::sleep(Duration::from_millis(100));
            false
        }
    });
    assert!(deleted, "the busy exec could not be deleted: {last:?}");
    sib.finish();
}
per_version!(bad_execs);
