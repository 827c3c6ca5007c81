//! Single-flight under load (issue 8 items 4 and 5): many real Exim processes asking at
//! once cause one fetch per domain, and a `max_age: 0` policy is not fetched per call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;
use std::path::Path;

/// Starts `exim -be` (the lmdb-capable test Exim) with `lines` on its standard input.
fn spawn_be(conf: &Path, toml: &Path, lines: &[String]) -> std::process::Child {
    be_spawn(std::process::Command::new(lmdb_exim()), conf, toml, lines)
}

/// A small deterministic shuffle (xorshift), so that each process has its own order.
fn shuffled<T: Clone>(items: &[T], seed: u64) -> Vec<T> {
    let mut v = items.to_vec();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

#[test]
fn sixty_exims_asking_for_twenty_new_domains_fetch_each_once() {
    let w = World::get();
    let domains: Vec<String> = (0..20).map(|_| w.unique("flight")).collect();
    for d in &domains {
        w.sts_domain(d, "a", &policy("enforce", &[&format!("mx.{d}")], 3600));
    }
    let dir = w.scratch("flight");
    let toml = config(&dir, "");
    let conf = exim_conf(&dir);
    let lib = lib_path();
    let db = dir.join("shared.mdb");
    let children: Vec<_> = (0..60)
        .map(|p| {
            let lines: Vec<String> = shuffled(&domains, p + 1)
                .iter()
                .map(|d| {
                    // Exim's own lookup reads the shared database meanwhile. Its handle keeps
                    // the snapshot it opened with until Exim tidies its lookups (not within
                    // one -be run; README), so it sees this domain, or nothing yet.
                    format!(
                        "{}/${{lookup{{{d}:mode}}lmdb{{{}}}{{$value}}{{missing}}}}",
                        dlfunc(&lib, "getmta", &[d]),
                        db.display()
                    )
                })
                .collect();
            spawn_be(&conf, &toml, &lines)
        })
        .collect();
    for child in children {
        let (lines, err) = be_output(child);
        assert_eq!(lines.len(), 20, "{lines:?} {err}");
        assert!(lines.iter().all(|l| l == "enforce/enforce" || l == "enforce/missing"), "{lines:?} {err}");
        assert!(lines[0] == "enforce/enforce", "the first lookup opens after the first call: {lines:?}");
    }
    let shared = exim_mta_sts_tool::shared_db::read_all(&db).unwrap();
    assert!(domains.iter().all(|d| shared[&format!("{d}:mode")] == "enforce"), "{shared:?}");
    let fetches: Vec<usize> = domains.iter().map(|d| w.requests(d)).collect();
    assert!(fetches.iter().all(|&n| n == 1), "fetches per domain: {fetches:?}");
}

#[test]
fn max_age_zero_is_not_fetched_on_every_call() {
    // RFC.md A-05: the policy applies to the delivery in flight; later calls within
    // fetch_backoff answer as after a failed fetch, without fetching again.
    let w = World::get();
    let d = w.unique("maxage0");
    w.sts_domain(&d, "z", &policy("enforce", &[&format!("mx.{d}")], 0));
    let dir = w.scratch("maxage0");
    let toml = config(&dir, "");
    let conf = exim_conf(&dir);
    let call = dlfunc(&lib_path(), "getmta", &[&d]);
    let children: Vec<_> = (0..10).map(|_| spawn_be(&conf, &toml, &vec![call.clone(); 5])).collect();
    let mut all = Vec::new();
    for child in children {
        let (lines, err) = be_output(child);
        assert_eq!(lines.len(), 5, "{lines:?} {err}");
        all.extend(lines);
    }
    assert_eq!(w.requests(&d), 1, "50 calls from 10 processes: one fetch ({all:?})");
    assert!(all.iter().all(|a| a == "enforce" || a == "none"), "{all:?}");
    assert!(all.iter().any(|a| a == "enforce"), "the call that fetched applies the policy: {all:?}");
}

#[test]
fn one_deadline_bounds_the_cold_path_and_the_lease_outlives_it() {
    // Eight MX hosts whose TLSA questions are never answered: the DANE lookups alone (a
    // query and a diagnosis per host, 2 s each here) would take 32 s, longer than the fetch
    // lease used to last, after which a waiting process fetched again. With one deadline for
    // the whole cold path (cold_deadline = 5) every caller answers within it, and the lease
    // (deadline + 15 s) outlives it: one fetch for 20 concurrent Exims.
    let w = World::get();
    let d = w.unique("slowtlsa");
    // `AD`: the test DNS server sets the AD bit for these names (a stand-in for a validating
    // resolver), so that the DANE lookups are made.
    let mut zone = format!("{d} AD\n_mta-sts.{d} TXT \"v=STSv1; id=s\"\nmta-sts.{d} A 127.0.1.1\n");
    for i in 0..8 {
        zone.push_str(&format!("{d} MX 10 mx{i}.{d}\nmx{i}.{d} A 127.0.0.1\n_25._tcp.mx{i}.{d} TIMEOUT\n"));
    }
    w.zone(&d, &zone);
    w.serve_policy(&d, &policy("enforce", &[&format!("*.{d}")], 3600), "");
    let dir = w.scratch("slowtlsa");
    let toml = config(&dir, "cold_deadline = 5\ndns_timeout = 2\nfetch_timeout = 1\n");
    let conf = exim_conf(&dir);
    let call = dlfunc(&lib_path(), "getmta", &[&d]);
    let started = std::time::Instant::now();
    let children: Vec<_> = (0..20).map(|_| spawn_be(&conf, &toml, std::slice::from_ref(&call))).collect();
    let mut slowest = std::time::Duration::ZERO;
    for child in children {
        let (lines, err) = be_output(child);
        slowest = slowest.max(started.elapsed());
        assert_eq!(lines, ["enforce"], "{err}");
    }
    assert_eq!(w.requests(&d), 1, "one fetch for 20 concurrent callers");
    // Within the deadline, plus process start-up and the store write on a loaded machine.
    assert!(slowest < std::time::Duration::from_secs(5 + 5), "the last answer came after {slowest:?}");
}
