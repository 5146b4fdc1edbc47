//! containerd's own timestamps of a `ctr run --rm`: the task events it logs at debug level
//! (`event published` / `event forwarded` with `topic=...`), to split a lifecycle's wall time
//! into the part before the shim is involved, the shim's RPCs, and the part after.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ctr_phases::{ExecRun, LifecycleRun};
use super::stats;
use super::Rt;

/// The topics that mark a lifecycle, in order.
pub const TOPICS: [&str; 5] = [
    "/containers/create",
    "/tasks/create",
    "/tasks/start",
    "/tasks/exit",
    "/tasks/delete",
];

/// The segments between ctr's start, the events above, and ctr's end.
pub const SEGMENTS: [(&str, bool); 6] = [
    (
        "ctr start-up, image + snapshot prepare, container record (containerd)",
        false,
    ),
    ("shim start + Create RPC (until TaskCreate)", true),
    ("Start RPC (until TaskStart)", true),
    ("/bin/true runs, exit reported (until TaskExit)", true),
    ("Wait returns, Delete RPC (until TaskDelete)", true),
    (
        "shim shutdown, snapshot + container removal, ctr exit (containerd)",
        false,
    ),
];

/// One event line of containerd's log: when, and its topic.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub time: SystemTime,
    pub topic: String,
}

/// The task/container events in containerd's log text.
pub fn parse_events(log: &str) -> Vec<Event> {
    log.lines()
        .filter(|l| l.contains("msg=\"event published\"") || l.contains("msg=\"event forwarded\""))
        .filter_map(|l| {
            let time = field(l, "time=\"", '"').and_then(parse_rfc3339)?;
            let topic = field(l, "topic=", ' ')?.to_string();
            Some(Event { time, topic })
        })
        .collect()
}

fn field<'a>(line: &'a str, key: &str, end: char) -> Option<&'a str> {
    let start = line.find(key)? + key.len();
    let rest = &line[start..];
    Some(rest.split(end).next().unwrap_or(rest))
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (logrus' RFC3339Nano).
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = s.get(19..)?;
    let mut nanos: i64 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits: String = frac.chars().take_while(char::is_ascii_digit).collect();
        let padded = format!("{digits:0<9}");
        nanos = padded.get(..9)?.parse().ok()?;
        rest = &frac[digits.len()..];
    }
    let offset = if rest == "Z" {
        0
    } else {
        let sign = match rest.get(..1)? {
            "+" => 1,
            "-" => -1,
            _ => return None,
        };
        sign * (rest.get(1..3)?.parse::<i64>().ok()? * 3600
            + rest.get(4..6)?.parse::<i64>().ok()? * 60)
    };
    let secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(nanos as u64))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The segment durations (ms) of one run, if all its events are in its window.
fn segments(run: &LifecycleRun, events: &[Event]) -> Option<[f64; 6]> {
    let (a, b) = (run.timed.began, run.timed.ended);
    let mut marks = vec![a];
    for topic in TOPICS {
        let e = events
            .iter()
            .find(|e| e.topic == topic && e.time >= a && e.time <= b)?;
        marks.push(e.time);
    }
    marks.push(b);
    let mut out = [0.0; 6];
    for (i, w) in marks.windows(2).enumerate() {
        out[i] = w[1]
            .duration_since(w[0])
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0);
    }
    Some(out)
}

/// Median segment times per runtime: `[rt][segment]`, and how many runs had all their events.
#[derive(Clone, Debug, Default)]
pub struct Breakdown {
    pub mypod: Vec<f64>,
    pub runc: Vec<f64>,
    pub runs_mypod: usize,
    pub runs_runc: usize,
}

impl Breakdown {
    pub fn of(&self, rt: Rt) -> &[f64] {
        match rt {
            Rt::Mypod => &self.mypod,
            Rt::Runc => &self.runc,
        }
    }
}

/// The lifecycle breakdown from containerd's log text.
pub fn breakdown(runs: &[LifecycleRun], log: &str) -> Breakdown {
    let events = parse_events(log);
    let mut out = Breakdown::default();
    for rt in Rt::BOTH {
        let per_run: Vec<[f64; 6]> = runs
            .iter()
            .filter(|r| r.rt == rt)
            .filter_map(|r| segments(r, &events))
            .collect();
        let medians: Vec<f64> = (0..6)
            .map(|i| {
                let v: Vec<f64> = per_run.iter().map(|s| s[i]).collect();
                stats::median(&v).unwrap_or(f64::NAN)
            })
            .collect();
        match rt {
            Rt::Mypod => {
                out.mypod = medians;
                out.runs_mypod = per_run.len();
            }
            Rt::Runc => {
                out.runc = medians;
                out.runs_runc = per_run.len();
            }
        }
    }
    out
}

/// The RPCs of one `ctr task exec`, as mypod's shim logs them when they end.
const EXEC_RPCS: [&str; 3] = ["exec", "start", "delete"];

/// How much of mypod's `ctr task exec` time is the shim's: medians (ms) of the whole run,
/// of the time the shim spent in its Exec, Start and Delete RPCs, and of the rest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecShare {
    pub wall: f64,
    pub shim: f64,
    pub rest: f64,
    pub runs: usize,
}

/// Sums each run's RPC times from the shim's `<rpc> id=.. exec=.. took <N>us` debug lines in
/// containerd's log; runs with a missing line are left out.
pub fn exec_share(runs: &[ExecRun], log: &str) -> ExecShare {
    let mut took: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    for l in log.lines() {
        let Some(msg) = field(l, "msg=\"", '"') else {
            continue;
        };
        let Some((head, us)) = msg.rsplit_once(" took ") else {
            continue;
        };
        let Some(us) = us.strip_suffix("us").and_then(|u| u.parse::<f64>().ok()) else {
            continue;
        };
        took.insert(head.to_string(), us / 1000.0);
    }
    let (mut wall, mut shim, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for r in runs {
        let parts: Option<Vec<f64>> = EXEC_RPCS
            .iter()
            .map(|rpc| {
                took.get(&format!("{rpc} id={} exec={}", r.id, r.exec_id))
                    .copied()
            })
            .collect();
        if let Some(parts) = parts {
            let s: f64 = parts.iter().sum();
            wall.push(r.wall_ms);
            shim.push(s);
            rest.push(r.wall_ms - s);
        }
    }
    let med = |v: &[f64]| stats::median(v).unwrap_or(f64::NAN);
    ExecShare {
        wall: med(&wall),
        shim: med(&shim),
        rest: med(&rest),
        runs: wall.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let t = parse_rfc3339("1970-01-02T00:00:01.5Z").expect("valid");
        assert_eq!(t, UNIX_EPOCH + Duration::from_millis(86_401_500));
        let u = parse_rfc3339("1970-01-02T01:00:01.500000000+01:00").expect("valid");
        assert_eq!(t, u);
        assert!(parse_rfc3339("garbage").is_none());
    }

    #[test]
    fn events() {
        let log = "time=\"2026-12-01T05:19:41.575513150Z\" level=debug msg=\"event published\" ns=k8s.io topic=/containers/create type=containerd.events.ContainerCreate\n\
                   time=\"2026-12-01T05:19:41.599038450Z\" level=info msg=\"serving pod x\"\n";
        let e = parse_events(log);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].topic, "/containers/create");
    }

    #[test]
    fn exec_share_sums_the_rpcs_of_each_run() {
        let line = |rpc: &str, exec: &str, us: u32| {
            format!("time=\"2026-12-01T05:19:41.5Z\" level=debug msg=\"{rpc} id=c exec={exec} took {us}us\" runtime=io.containerd.mypod.v2 pid=7\n")
        };
        let mut log = String::new();
        for (exec, base) in [("e0", 1000), ("e1", 2000)] {
            for rpc in EXEC_RPCS {
                log.push_str(&line(rpc, exec, base));
            }
        }
        // e2 has no delete line: left out.
        log.push_str(&line("exec", "e2", 1));
        let run = |exec: &str, wall_ms: f64| ExecRun {
            id: "c".into(),
            exec_id: exec.into(),
            wall_ms,
        };
        let s = exec_share(&[run("e0", 10.0), run("e1", 20.0), run("e2", 5.0)], &log);
        assert_eq!(s.runs, 2);
        assert_eq!(s.wall, 15.0);
        assert_eq!(s.shim, 4.5);
        assert_eq!(s.rest, 10.5);
    }
}
