//! The decision's unit tests, at any `now`, with a fake network.

use super::sts::refresh;
use super::*;
use crate::cause::{DnsError, FetchError};
use crate::config::FetchFailure;

fn entry(kind: Kind, expires: u64, checked: u64) -> OwnedEntry {
    let mut e = OwnedEntry::bare(kind, expires, checked);
    e.mode = Mode::Enforce;
    e.mx = "mx.example.com".into();
    e.dane_until = u64::MAX;
    e
}

#[test]
fn dane_takes_precedence_while_its_answer_is_fresh() {
    let cfg = Config::default();
    let mut e = entry(Kind::Policy, 1000, 500);
    e.dane = true;
    e.dane_until = 700;
    assert_eq!(hot(&e.view(), 600, &cfg), Some(Answer::Dane { mx: "mx.example.com" }));
    assert_eq!(hot(&e.view(), 700, &cfg), None, "DANE answer stale");
    // Even when the MTA-STS part is stale, a fresh DANE answer needs no DNS.
    assert_eq!(
        hot(&e.view(), 650, &Config { recheck_interval: 0, ..Config::default() }),
        Some(Answer::Dane { mx: "mx.example.com" })
    );
    // dane = false: MTA-STS only.
    let off = Config { dane: false, ..Config::default() };
    assert_eq!(hot(&e.view(), 1000, &off), None, "policy expired");
    assert_eq!(hot(&e.view(), 550, &off), Some(Answer::Policy { mode: Mode::Enforce, mx: "mx.example.com" }));
    e.dane = false;
    assert_eq!(hot(&e.view(), 600, &cfg), Some(Answer::Policy { mode: Mode::Enforce, mx: "mx.example.com" }));
}

#[test]
fn hot_answers_only_while_fresh() {
    let cfg = Config { recheck_interval: 100, ..Config::default() };
    let p = entry(Kind::Policy, 1000, 500);
    assert_eq!(hot(&p.view(), 599, &cfg), Some(Answer::Policy { mode: Mode::Enforce, mx: "mx.example.com" }));
    assert_eq!(hot(&p.view(), 600, &cfg), None, "recheck due");
    let p = entry(Kind::Policy, 550, 500);
    assert_eq!(hot(&p.view(), 550, &cfg), None, "expired");
    assert_eq!(hot(&entry(Kind::NoSts, 10, 0).view(), 9, &cfg), Some(Answer::NoPolicy));
    assert_eq!(hot(&entry(Kind::NoSts, 10, 0).view(), 10, &cfg), None);
    assert_eq!(hot(&entry(Kind::TempFail, 10, 0).view(), 5, &cfg), Some(Answer::Fail));
}

#[test]
fn fetch_failure_setting_decides_fetch_failed_entries() {
    let e = entry(Kind::FetchFailed, 10, 0);
    let none = Config::default();
    let fail = Config { fetch_failure: FetchFailure::Fail, ..Config::default() };
    assert_eq!(hot(&e.view(), 5, &none), Some(Answer::NoPolicy));
    assert_eq!(hot(&e.view(), 5, &fail), Some(Answer::Fail));
}

#[test]
fn max_age_zero_policy_applies_once_and_is_not_refetched_within_the_backoff() {
    struct NoNet;
    impl Net for NoNet {
        fn txt(&mut self, _: &str) -> Result<Vec<String>, DnsError> {
            panic!("no DNS query expected")
        }
        fn fetch(&mut self, _: &str) -> Result<Fetched, FetchError> {
            panic!("no fetch expected")
        }
        fn dane(&mut self, _: &str) -> DaneState {
            panic!("no DANE check expected")
        }
        fn take_unsigned_nx(&mut self, _: &str) -> bool {
            false
        }
    }
    let cfg = Config::default();
    let mut e = entry(Kind::Policy, 100, 100);
    e.fetched = 100;
    // RFC.md A-05: the delivery in flight gets the policy just fetched...
    assert!(matches!(fresh(&e.view(), &cfg), Answer::Policy { .. }));
    // ...then it is expired: never applied again, and neither fetched again nor its
    // TXT record asked for fetch_backoff (300 s): the answer is that of a failed fetch.
    assert_eq!(hot(&e.view(), 100, &cfg), None);
    let mut after = refresh("x.example", Some(&e.view()), 150, &cfg, &mut NoNet, false);
    after.dane_until = u64::MAX; // (the DANE part is the engine's)
    assert_eq!((after.kind, after.expires, after.retry_after), (Kind::FetchFailed, 400, 400));
    assert_eq!(hot(&after.view(), 399, &cfg), Some(Answer::NoPolicy));
    let strict = Config { fetch_failure: FetchFailure::Fail, ..Config::default() };
    assert_eq!(hot(&after.view(), 200, &strict), Some(Answer::Fail));
    assert_eq!(hot(&after.view(), 400, &cfg), None, "a fetch is due again");
}

#[test]
fn a_failed_enforce_delivery_forces_a_recheck_at_most_once_per_backoff() {
    let cfg = Config { recheck_interval: 3600, ..Config::default() };
    let t0 = 1_800_000_000;
    let p = entry(Kind::Policy, t0 + 100_000, t0);
    assert!(hot(&p.view(), t0 + 400, &cfg).is_some(), "fresh before the failure");
    let forced = recheck_after_failure(p.view(), t0 + 400, &cfg).unwrap();
    assert_eq!(hot(&forced.view(), t0 + 400, &cfg), None, "the next call re-checks the TXT id");
    assert_eq!(recheck_after_failure(forced.view(), t0 + 401, &cfg), None, "already due");
    // Checked again (checked = now), a new failure within fetch_backoff (300 s) of the
    // forced re-check forces nothing; after it, it does.
    let mut again = forced.clone();
    again.checked = t0 + 402;
    assert_eq!(recheck_after_failure(again.view(), t0 + 699, &cfg), None);
    assert!(recheck_after_failure(again.view(), t0 + 700, &cfg).is_some());
    assert_eq!(
        (forced.kind, forced.mode, forced.expires, forced.mx.as_str()),
        (p.kind, p.mode, p.expires, p.mx.as_str())
    );
    // Testing and none policies, and other kinds, are never forced.
    let mut t = p.clone();
    t.mode = Mode::Testing;
    assert_eq!(recheck_after_failure(t.view(), t0 + 400, &cfg), None);
    assert_eq!(recheck_after_failure(entry(Kind::NoSts, t0 + 100_000, 0).view(), t0 + 400, &cfg), None);
}
