//! `exim-mta-sts refresh` never makes Exim wait (issue 8 item 3): its jitter spreads the
//! start times instead of sleeping while holding a domain's fetch lease, so a real Exim
//! asking for a domain that the refresh has due answers at once, and the whole run lasts
//! about the jitter plus the fetch time, not the sum of the jitters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;
use std::io::Write;
use std::time::{Duration, Instant};

const DOMAINS: usize = 200;
const JITTER: u64 = 30;

#[test]
fn refresh_with_jitter_never_stalls_exim_and_ends_after_about_the_jitter() {
    let w = World::get();
    let tag = w.unique("bulk");
    let domains: Vec<String> = (0..DOMAINS).map(|i| format!("d{i}.{tag}")).collect();
    let mut zone = String::new();
    for d in &domains {
        zone.push_str(&format!("_mta-sts.{d} TXT \"v=STSv1; id=r1\"\nmta-sts.{d} A 127.0.1.1\n"));
        w.serve_policy(d, &policy("enforce", &[&format!("mx.{d}")], 86400), "");
    }
    w.zone(&tag, &zone);
    let dir = w.scratch("refresh-load");
    let cfg = config(&dir, "");
    let tool = env!("CARGO_BIN_EXE_exim-mta-sts");
    let mut prefetch = std::process::Command::new(tool)
        .arg("--config")
        .arg(&cfg)
        .args(["prefetch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    prefetch.stdin.take().unwrap().write_all(domains.join("\n").as_bytes()).unwrap();
    assert!(prefetch.wait().unwrap().success());

    let started = Instant::now();
    let refresh = std::process::Command::new(tool)
        .arg("--config")
        .arg(&cfg)
        .args(["refresh", "--min-age", "0", "--jobs", "4", "--jitter", &JITTER.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Meanwhile Exim asks, with recheck_interval = 0 so that every call takes the cold
    // path, where it would wait for a fetch lease held by the refresh.
    let exim_side = dir.join("exim-side.toml");
    std::fs::write(&exim_side, std::fs::read_to_string(&cfg).unwrap() + "recheck_interval = 0\n").unwrap();
    let conf = exim_conf(&dir);
    let mut slowest = Duration::ZERO;
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(JITTER - 5) {
        let some: Vec<&String> = domains.iter().skip(rounds * 7 % DOMAINS).step_by(23).take(8).collect();
        let ask: Vec<String> = some.iter().map(|d| dlfunc(&lib_path(), "getmta", &[d])).collect();
        let t = Instant::now();
        let (out, err) = exim_be(&lmdb_exim(), &conf, &exim_side, &ask.join("|"));
        slowest = slowest.max(t.elapsed());
        assert_eq!(out, vec!["enforce"; some.len()].join("|"), "{err}");
        rounds += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    // A stall waits for the refresh's lease: up to the jitter (30 s). An answer from the
    // cache and one TXT query take milliseconds; 5 s leaves room for a loaded machine.
    assert!(slowest < Duration::from_secs(5), "an Exim call waited {slowest:?} ({rounds} rounds)");

    // The run ends after about the jitter plus the fetch time (the per-domain sleeps of
    // old made 200 domains x 15 s / 4 jobs = 750 s).
    let limit = Duration::from_secs(JITTER + 30);
    let mut refresh = refresh;
    while refresh.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = refresh.kill();
            panic!("refresh still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = started.elapsed();
    let out = refresh.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains(&format!("refreshed {DOMAINS} policies: ")), "{text}");
    assert!(took >= Duration::from_secs(JITTER / 2), "the start times are spread: {took:?}");
    eprintln!("refresh of {DOMAINS} domains with --jitter {JITTER}: {took:?}; slowest Exim call {slowest:?}");
}
