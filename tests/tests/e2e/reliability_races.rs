//! Issue 18, "Concurrency": many containers of one pod and many pods created at once, then
//! all removed at once, leave nothing; execs racing the init's exit, Kill racing Start and
//! Delete racing an exit keep the task's state consistent, with exactly one TaskExit per
//! process that ran (the containerd PR#10603 class: an init exit lost under many execs).
//! `MYPOD_SOAK=1` runs the long version (50 at once, hundreds of race rounds); each test
//! prints its figures as `FIGURE|` lines (see `reliability_support`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use mypod_tests::cri::api::ContainerState;
use mypod_tests::cri::describe_status;
use mypod_tests::{
    per_version, per_version_cri, ContainerBuilder, Containerd, CriClient, Pod, PodFootprint,
};

use crate::reliability_support::{
    counts_without_shims, describe, figure, scale, settle, tally, Counts, Event, EventStream,
};

/// Deadline for one state to be reached, generous: 50 pods at once on 2 shared cores.
const T: Duration = Duration::from_secs(180);
/// containerd's fds may stay this much above the start (see reliability_churn).
const CONTAINERD_FD_SLACK: usize = 2;

/// Asserts that every one of the calls made at once succeeded.
fn all_ok<T>(results: &[Result<T, String>]) {
    let failed: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        results.len()
    );
}

/// After everything made at once was removed: waits for the instance's counts to come back
/// to `base`, prints the figure `test` (what was `done`, create and remove seconds, shims,
/// counts before / at the peak / after) and asserts nothing was left behind.
fn settled_at_once(
    c: &Containerd,
    test: &str,
    done: &str,
    (create_secs, remove_secs): (f64, f64),
    shims: usize,
    base: &Counts,
    peak: &Counts,
) {
    let (after, above) = settle(c, base, CONTAINERD_FD_SLACK, T);
    let mut f = vec![
        ("done", done.to_string()),
        ("create_secs", format!("{create_secs:.1}")),
        ("remove_secs", format!("{remove_secs:.1}")),
        ("shims_while_running", shims.to_string()),
    ];
    f.extend(base.fields(&after));
    f.extend(peak.peak_fields());
    f.push(("lost", above.len().to_string()));
    figure(test, c, &f);
    assert!(above.is_empty(), "left behind: {above:?}");
}

/// Runs `f(i)` for i in 0..n, each on its own thread with its own CRI client, all at once
/// (they wait for each other at a barrier before calling); returns the results in order.
fn at_once<R: Send>(c: &Containerd, n: usize, f: impl Fn(&CriClient, usize) -> R + Sync) -> Vec<R> {
    let barrier = std::sync::Barrier::new(n);
    let address = c.address();
    thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (f, barrier, address) = (&f, &barrier, &address);
                s.spawn(move || {
                    let client = CriClient::connect(address).unwrap_or_else(|e| panic!("{e}"));
                    barrier.wait();
                    f(&client, i)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect()
    })
}

/// One pod with one running container, stopped and removed: the bridge, the shared cgroup
/// parent and containerd's lazily opened files exist afterwards, so counts taken after it
/// measure only what the test adds.
fn warm_up(c: &Containerd, parent: &str) {
    let mut b = c.pod("warmup");
    b.cgroup_parent = Some(parent.to_string());
    let pod = c.run_pod_ok(b);
    let id = c.start_in_pod(&pod, &ContainerBuilder::new("main", &["sleep", "100000"]));
    c.wait_container_state(&id, ContainerState::ContainerRunning, T);
    c.stop_and_remove_pod(&pod);
}

/// `scale(16, 50)` containers created and started at once in one pod (one CRI client per
/// container): all RUNNING, one shim; then all stopped and removed at once, then the pod:
/// nothing of the pod is left and the instance's counts are back where they were.
fn many_containers_in_one_pod_at_once(c: &Containerd) {
    let n = scale(16, 50);
    let parent = format!("/{}/many", c.namespace());
    warm_up(c, &parent);
    let base = counts_without_shims(c, T);
    let mut b = c.pod("many");
    b.cgroup_parent = Some(parent);
    let pod = c.run_pod_ok(b);
    let start = Instant::now();
    let created = at_once(c, n, |cri, i| {
        let b = ContainerBuilder::new(&format!("c{i}"), &["sleep", "100000"]);
        let id = cri
            .create_container(&pod.id, &b.build(&pod.builder), &pod.config)
            .map_err(|e| format!("create c{i}: {e}"))?;
        cri.start_container(&id)
            .map_err(|e| format!("start c{i}: {e}"))?;
        Ok::<String, String>(id)
    });
    let create_secs = start.elapsed().as_secs_f64();
    let failed: Vec<&String> = created.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {n} failed: {failed:?}",
        failed.len()
    );
    let ids: Vec<String> = created.into_iter().map(Result::unwrap).collect();
    for id in &ids {
        c.wait_container_state(id, ContainerState::ContainerRunning, T);
    }
    let shims = c.shim_pids();
    assert_eq!(shims.len(), 1, "one shim serves the pod: {shims:?}");
    let peak = Counts::take(c);
    assert!(
        peak.seen_load(&base, n),
        "{n} containers should show: {peak:?} vs {base:?}"
    );
    let fp = c.footprint(&pod, &ids);
    assert_eq!(fp.pids.len(), n + 1, "the sandbox and {n} containers run");

    let start = Instant::now();
    let removed = at_once(c, n, |cri, i| {
        cri.stop_container(&ids[i], 0)
            .and_then(|()| cri.remove_container(&ids[i]))
            .map_err(|e| e.to_string())
    });
    all_ok(&removed);
    c.stop_and_remove_pod(&pod);
    let remove_secs = start.elapsed().as_secs_f64();
    c.assert_pod_gone(&fp, false, T);
    let done =
        format!("{n} containers created at once in one pod, {n}/{n} running, then removed at once");
    let secs = (create_secs, remove_secs);
    settled_at_once(
        c,
        "containers_at_once",
        &done,
        secs,
        shims.len(),
        &base,
        &peak,
    );
}
per_version_cri!(many_containers_in_one_pod_at_once);

/// `scale(10, 50)` pods made at once (RunPodSandbox + a container each, one CRI client per
/// pod): all RUNNING, one shim each; then all stopped and removed at once: nothing of any pod
/// is left, no shim, and the instance's counts are back where they were.
fn many_pods_at_once(c: &Containerd) {
    let n = scale(10, 50);
    let parent = format!("/{}/pods", c.namespace());
    warm_up(c, &parent);
    let base = counts_without_shims(c, T);
    let start = Instant::now();
    let made = at_once(c, n, |cri, i| {
        let mut b = c.pod(&format!("p{i}"));
        b.cgroup_parent = Some(parent.clone());
        let config = b.build();
        let pod_id = cri
            .run_pod_sandbox(&config, c.cri_handler())
            .map_err(|e| format!("pod p{i}: {e}"))?;
        let pod = Pod {
            id: pod_id,
            builder: b,
            config,
            handler: c.cri_handler().to_string(),
        };
        let cb = ContainerBuilder::new("main", &["sleep", "100000"]);
        let id = cri
            .create_container(&pod.id, &cb.build(&pod.builder), &pod.config)
            .and_then(|id| cri.start_container(&id).map(|()| id))
            .map_err(|e| format!("container of p{i}: {e}"))?;
        Ok::<(Pod, String), String>((pod, id))
    });
    let create_secs = start.elapsed().as_secs_f64();
    all_ok(&made);
    let pods: Vec<(Pod, String)> = made.into_iter().map(Result::unwrap).collect();
    for (_, id) in &pods {
        let st = c.wait_container_state(id, ContainerState::ContainerRunning, T);
        assert!(st.started_at > 0, "{}", describe_status(&st));
    }
    let mut shims: Vec<u32> = pods
        .iter()
        .map(|(p, _)| c.sandbox_shim_pid(&p.id).expect("a shim per pod"))
        .collect();
    shims.sort_unstable();
    shims.dedup();
    assert_eq!(shims.len(), n, "one shim per pod");
    assert_eq!(c.shim_pids().len(), n, "no other shim");
    let peak = Counts::take(c);
    assert!(
        peak.seen_load(&base, n),
        "{n} pods should show: {peak:?} vs {base:?}"
    );
    let fps: Vec<PodFootprint> = pods
        .iter()
        .map(|(p, id)| c.footprint(p, std::slice::from_ref(id)))
        .collect();

    let start = Instant::now();
    let removed = at_once(c, n, |cri, i| {
        let id = &pods[i].0.id;
        cri.stop_pod_sandbox(id)
            .and_then(|()| cri.remove_pod_sandbox(id))
            .map_err(|e| e.to_string())
    });
    let remove_secs = start.elapsed().as_secs_f64();
    all_ok(&removed);
    for fp in &fps {
        c.assert_pod_gone(fp, true, T);
    }
    let done = format!("{n} pods made at once, {n}/{n} running, then removed at once");
    let secs = (create_secs, remove_secs);
    settled_at_once(c, "pods_at_once", &done, secs, shims.len(), &base, &peak);
}
per_version_cri!(many_pods_at_once);

/// What went wrong in the rounds of a race test, and the figures.
#[derive(Default)]
struct Rounds {
    problems: Vec<String>,
    /// Processes whose TaskExit was checked.
    exits_checked: usize,
    /// Outcome name → rounds.
    outcomes: HashMap<String, usize>,
}

impl Rounds {
    fn outcome(&mut self, name: &str) {
        *self.outcomes.entry(name.to_string()).or_insert(0) += 1;
    }

    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(what());
        }
    }

    /// Prints the FIGURE line, then fails the test if any round went wrong.
    fn finish(self, test: &str, c: &Containerd, done: String) {
        let mut outcomes: Vec<_> = self.outcomes.iter().collect();
        outcomes.sort();
        let outcomes: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        figure(
            test,
            c,
            &[
                ("done", done),
                ("outcomes", outcomes.join(",")),
                ("exits_checked", self.exits_checked.to_string()),
                ("lost", self.problems.len().to_string()),
            ],
        );
        assert!(
            self.problems.is_empty(),
            "{} problems:\n  {}",
            self.problems.len(),
            self.problems
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
}

/// The one TaskExit of process `p` ("" = init) in `ev`, or a problem.
fn one_exit(ev: &[Event], p: &str) -> Result<u32, String> {
    let exits: Vec<&Event> = ev
        .iter()
        .filter(|e| e.topic == "/tasks/exit" && e.process() == p)
        .collect();
    match exits.as_slice() {
        [e] => Ok(e.exit_status),
        _ => Err(format!(
            "{} TaskExit events for process {p:?} (want 1): {}",
            exits.len(),
            describe(ev)
        )),
    }
}

/// Position of the first event of `topic` for process `p`.
fn pos(ev: &[Event], topic: &str, p: &str) -> Option<usize> {
    ev.iter().position(|e| e.topic == topic && e.process() == p)
}

/// Deletes task and container `id` after a round (the task must be STOPPED or gone), then
/// checks nothing of it is left.
fn finish_round(c: &Containerd, id: &str) {
    if c.task(id).is_some() {
        c.delete_task(id);
    }
    c.remove_container(id);
    c.assert_clean_within(id, Duration::from_secs(30));
}

/// Waits until `ctr task ls` shows `id` STOPPED or not at all; its status then.
fn settled_status(c: &Containerd, id: &str) -> Result<Option<String>, String> {
    let start = Instant::now();
    loop {
        match c.task(id) {
            None => return Ok(None),
            Some(t) if t.status == "STOPPED" => return Ok(Some(t.status)),
            Some(t) if start.elapsed() > Duration::from_secs(60) => {
                return Err(format!("task {id} still {} after 60 s", t.status))
            }
            Some(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// `scale(10, 200)` rounds of a container whose init exits 7 after 0.3 s while 4 threads
/// exec into it as fast as they can (`sh -c 'sleep 0.2'`), until execs are refused: the
/// init's exit is reported exactly once with status 7 (none lost among the execs' exits),
/// the task is STOPPED, every exec that started has exactly one TaskExit (0 if it finished,
/// 137 if the pid namespace's end killed it) matching what `ctr task exec` returned, an exec
/// that did not start has none, and nothing is left.
fn execs_race_the_init_exit(c: &Containerd) {
    let rounds = scale(10, 200);
    let events = EventStream::start(c);
    let mut r = Rounds::default();
    let mut execs_total = 0;
    for round in 0..rounds {
        let id = format!("xr{round}");
        c.run_detached(&id, &[], &["/bin/sh", "-c", "sleep 0.3; exit 7"]);
        let results: Mutex<Vec<(String, Option<i32>)>> = Mutex::new(Vec::new());
        thread::scope(|s| {
            for t in 0..4 {
                let (id, results) = (&id, &results);
                s.spawn(move || {
                    for j in 0.. {
                        let exec_id = format!("x{t}-{j}");
                        let out = c.ctr(&[
                            "tasks",
                            "exec",
                            "--exec-id",
                            &exec_id,
                            id,
                            "/bin/sh",
                            "-c",
                            "sleep 0.2",
                        ]);
                        assert!(!out.timed_out, "exec hung:\n{out}");
                        let refused = out.code != Some(0) && out.code != Some(137);
                        results.lock().unwrap().push((exec_id, out.code));
                        if refused || j > 100 {
                            break;
                        }
                    }
                });
            }
        });
        let status = settled_status(c, &id);
        r.check(status.is_ok(), || format!("{id}: {status:?}"));
        let ev = events.wait_for(&id, Duration::from_secs(30), |ev| {
            ev.iter()
                .any(|e| e.topic == "/tasks/exit" && e.process().is_empty())
        });
        match one_exit(&ev, "") {
            Ok(7) => {}
            Ok(s) => r
                .problems
                .push(format!("{id}: init exit status {s}, want 7")),
            Err(e) => r.problems.push(format!("{id}: {e}")),
        }
        r.exits_checked += 1;
        let results = results.into_inner().unwrap();
        let mut started = 0;
        for (exec_id, code) in &results {
            let did_start = pos(&ev, "/tasks/exec-started", exec_id).is_some();
            if did_start {
                started += 1;
                // Wait for its exit (it may come after the init's).
                let ev = events.wait_for(&id, Duration::from_secs(30), |ev| {
                    pos(ev, "/tasks/exit", exec_id).is_some()
                });
                r.exits_checked += 1;
                match one_exit(&ev, exec_id) {
                    Ok(s) if Some(s as i32) == *code && (s == 0 || s == 137) => {}
                    Ok(s) => r.problems.push(format!(
                        "{id}/{exec_id}: TaskExit status {s}, ctr exec returned {code:?}"
                    )),
                    Err(e) => r.problems.push(format!("{id}: {e}")),
                }
            } else {
                let exits = ev
                    .iter()
                    .filter(|e| e.topic == "/tasks/exit" && e.process() == exec_id)
                    .count();
                r.check(exits == 0 && *code != Some(0), || {
                    format!("{id}/{exec_id}: never started but ctr said {code:?}, {exits} exits")
                });
            }
        }
        execs_total += results.len();
        r.outcome(&format!(
            "started_{}",
            if started > 4 { "many" } else { "few" }
        ));
        let del = c.delete_task(&id);
        r.check(del.combined().contains("7"), || {
            format!("{id}: ctr task delete should report exit code 7:\n{del}")
        });
        c.remove_container(&id);
        c.assert_clean_within(&id, Duration::from_secs(30));
    }
    r.finish(
        "execs_race_init_exit",
        c,
        format!(
            "{rounds} rounds: init exits 7 after 0.3 s under 4 exec loops ({execs_total} execs)"
        ),
    );
}
per_version!(execs_race_the_init_exit);

/// `scale(20, 300)` rounds of `ctr task start -d` (Create + Start) racing a loop of
/// `ctr task kill -s KILL` that begins 0-40 ms later and retries until the kill is accepted:
/// the task ends STOPPED (or gone) and never stays CREATED or RUNNING, TaskCreate and
/// TaskExit come exactly once (status 137), TaskStart at most once and before the exit,
/// and nothing is left.
fn kill_races_start(c: &Containerd) {
    let rounds = scale(20, 300);
    let events = EventStream::start(c);
    let mut r = Rounds::default();
    for round in 0..rounds {
        let id = format!("kr{round}");
        c.ctr_ok(&[
            "containers",
            "create",
            "--runtime",
            c.runtime(),
            mypod_tests::IMAGE,
            &id,
            "sleep",
            "1000",
        ]);
        let delay = Duration::from_millis((round % 5) as u64 * 10);
        let (start_out, kills) = thread::scope(|s| {
            let starter = s.spawn(|| c.ctr(&["tasks", "start", "-d", &id]));
            thread::sleep(delay);
            let mut kills = 0;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                kills += 1;
                let k = c.ctr(&["tasks", "kill", "-s", "KILL", &id]);
                if k.success() || Instant::now() > deadline {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
            (starter.join().expect("starter"), kills)
        });
        r.check(!start_out.timed_out, || {
            format!("{id}: start hung:\n{start_out}")
        });
        let status = settled_status(c, &id);
        r.check(status.is_ok(), || format!("{id}: {status:?}"));
        let ev = events.wait_for(&id, Duration::from_secs(30), |ev| {
            pos(ev, "/tasks/exit", "").is_some()
        });
        r.exits_checked += 1;
        match one_exit(&ev, "") {
            Ok(137) => {}
            Ok(s) => r.problems.push(format!("{id}: exit status {s}, want 137")),
            Err(e) => r.problems.push(format!("{id}: {e}")),
        }
        let t = tally(&ev);
        let count = |topic: &str| t.get(&(topic.to_string(), String::new())).copied();
        r.check(count("/tasks/create") == Some(1), || {
            format!("{id}: TaskCreate not exactly once: {}", describe(&ev))
        });
        let starts = count("/tasks/start").unwrap_or(0);
        r.check(starts <= 1, || {
            format!("{id}: {starts} TaskStart: {}", describe(&ev))
        });
        if let (Some(s), Some(x)) = (pos(&ev, "/tasks/start", ""), pos(&ev, "/tasks/exit", "")) {
            r.check(s < x, || {
                format!("{id}: TaskStart after TaskExit: {}", describe(&ev))
            });
        }
        r.check(!start_out.success() || starts == 1, || {
            format!(
                "{id}: ctr start succeeded without TaskStart: {}",
                describe(&ev)
            )
        });
        r.outcome(match (start_out.success(), kills) {
            (true, 1) => "started_killed_first_try",
            (true, _) => "started_killed_after_retries",
            (false, _) => "start_refused_after_kill",
        });
        finish_round(c, &id);
        let ev = events.wait_for(&id, Duration::from_secs(30), |ev| {
            pos(ev, "/tasks/delete", "").is_some()
        });
        let deletes = tally(&ev)
            .get(&("/tasks/delete".to_string(), String::new()))
            .copied()
            .unwrap_or(0);
        r.check(deletes == 1, || {
            format!("{id}: {deletes} TaskDelete: {}", describe(&ev))
        });
    }
    r.finish(
        "kill_races_start",
        c,
        format!("{rounds} rounds: ctr task start racing ctr task kill -s KILL"),
    );
}
per_version!(kill_races_start);

/// `scale(20, 300)` rounds of a container whose init exits 3 after 0-200 ms, while `ctr task
/// delete` is retried from the moment it runs (half of the rounds with `-f`, which kills):
/// the delete succeeds (a plain delete only once the task stopped), TaskExit and TaskDelete
/// come exactly once, the exit first, with the same status (3; or 137 when `-f` killed it
/// first), and nothing is left.
fn delete_races_an_exit(c: &Containerd) {
    let rounds = scale(20, 300);
    let events = EventStream::start(c);
    let mut r = Rounds::default();
    for round in 0..rounds {
        let id = format!("dr{round}");
        let force = round % 2 == 1;
        let script = format!("sleep 0.{}; exit 3", (round / 2) % 3);
        c.run_detached(&id, &[], &["/bin/sh", "-c", &script]);
        let start = Instant::now();
        let mut refused = 0;
        let del = loop {
            let d = if force {
                c.ctr(&["tasks", "delete", "-f", &id])
            } else {
                c.ctr(&["tasks", "delete", &id])
            };
            if d.success() || d.timed_out || start.elapsed() > Duration::from_secs(60) {
                break d;
            }
            refused += 1;
            thread::sleep(Duration::from_millis(5));
        };
        r.check(del.success(), || {
            format!("{id}: delete never succeeded:\n{del}")
        });
        let ev = events.wait_for(&id, Duration::from_secs(30), |ev| {
            pos(ev, "/tasks/delete", "").is_some()
        });
        r.exits_checked += 1;
        let exit = one_exit(&ev, "");
        let deletes: Vec<&Event> = ev.iter().filter(|e| e.topic == "/tasks/delete").collect();
        match (&exit, deletes.as_slice()) {
            (Ok(s), [d]) => {
                let ok = (*s == 3 || (force && *s == 137)) && d.exit_status == *s;
                r.check(ok, || {
                    format!("{id}: exit {s}, delete {} (force {force})", d.exit_status)
                });
                let (x, dl) = (pos(&ev, "/tasks/exit", ""), pos(&ev, "/tasks/delete", ""));
                r.check(x < dl, || {
                    format!("{id}: TaskDelete before TaskExit: {}", describe(&ev))
                });
                r.outcome(match (force, *s, refused) {
                    (true, 137, _) => "force_killed",
                    (true, _, _) => "force_after_exit",
                    (false, _, 0) => "deleted_first_try",
                    (false, _, _) => "deleted_after_refusals",
                });
            }
            _ => r.problems.push(format!(
                "{id}: {exit:?}, {} TaskDelete: {}",
                deletes.len(),
                describe(&ev)
            )),
        }
        c.remove_container(&id);
        c.assert_clean_within(&id, Duration::from_secs(30));
    }
    r.finish(
        "delete_races_exit",
        c,
        format!("{rounds} rounds: ctr task delete [-f] retried while the init exits 3"),
    );
}
per_version!(delete_races_an_exit);
