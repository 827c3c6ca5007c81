//! `exim-mta-sts stats` (issue 12) against a store populated by real fetches in the test
//! world (the library's helper, `prefetch`, `refresh`) and by entries and counts written
//! through the crate's own store API where the world cannot make them (a DANE domain, an
//! old failing policy, yesterday's reports). The Prometheus text is checked by
//! `promtool check metrics` (Debian's prometheus package), not only by this file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;
use exim_mta_sts_tool::cache::{Kind, OwnedEntry, Store};
use exim_mta_sts_tool::cause::{Cause, FetchFailure};
use exim_mta_sts_tool::policy::Mode;
use exim_mta_sts_tool::tally::{self, Detail, PolicySeen, Session, Tallies};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// `promtool check metrics` of `text`: its complaints (empty when clean).
fn promtool(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/setup installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    if o.status.success() { said } else { format!("promtool failed: {said}") }
}

/// The samples of a Prometheus text, `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

fn put(cfg_dir: &Path, domain: &str, e: &OwnedEntry) {
    let store = Store::open(&cfg_dir.join("state.mdb")).unwrap();
    store.put(domain, &e.view()).unwrap();
}

#[test]
fn stats_count_a_populated_store_and_its_fetches_and_reports() {
    let w = World::get();
    let dir = w.scratch("stats");
    let cfg = config(&dir, "report_contact = \"tlsrpt@sender.test\"");
    let (e1, e2, t1, n1, bad, plain) = (
        w.unique("st-enf1"),
        w.unique("st-enf2"),
        w.unique("st-test"),
        w.unique("st-none"),
        w.unique("st-bad"),
        w.unique("st-plain"),
    );
    for (d, mode) in [(&e1, "enforce"), (&e2, "enforce"), (&t1, "testing"), (&n1, "none")] {
        w.sts_domain(d, "1", &policy(mode, &[&format!("mx.{d}")], 86_400 * 7));
    }
    // A policy host that answers 404: a failed fetch (fetch-status), nothing cached.
    w.zone(&bad, &format!("_mta-sts.{bad} TXT \"v=STSv1; id=1\"\nmta-sts.{bad} A 127.0.1.1\n"));
    w.zone(&plain, &format!("{plain} MX 10 mx.{plain}\n"));

    // One domain through the library inside this process: its helper counts the fetch.
    let lib = lib_with(&cfg);
    assert_eq!(lib.getmta(&[&e1]), "enforce");
    let r = tool(&cfg, &["prefetch", "-"], &format!("{e2}\n{t1}\n{n1}\n{bad}\n{plain}\n"));
    assert!(r.out.contains("5 looked up"), "{}{}", r.out, r.err);

    // What the world cannot make: a DANE domain, a policy in use whose refresh has failed
    // for three days, one expiring within the hour, and counts for the TLS reports.
    let t = now();
    let mut dane = OwnedEntry::bare(Kind::NoSts, t + 3600, t);
    (dane.dane, dane.dane_until) = (true, t + 3600);
    put(&dir, &w.unique("st-dane"), &dane);
    let mut stale = OwnedEntry::bare(Kind::Policy, t + 86_400 * 2, t);
    (stale.mode, stale.fetched, stale.used, stale.id) = (Mode::Enforce, t - 86_400 * 3, t - 60, "old".into());
    stale.cause = Cause::Fetch(FetchFailure::Timeout);
    put(&dir, &w.unique("st-stale"), &stale);
    let soon = w.unique("st-soon");
    let mut expiring = OwnedEntry::bare(Kind::Policy, t + 1800, t);
    (expiring.mode, expiring.fetched, expiring.id) = (Mode::Testing, t - 600, "s".into());
    expiring.report = "a@x.test,b@x.test,https://r.x.test/".into(); // the :report form
    put(&dir, &soon, &expiring);
    let tallies = Tallies::open(&dir.join("reports.mdb")).unwrap();
    let seen =
        PolicySeen { kind: "sts".into(), mode: "testing".into(), id: "s".into(), ..Default::default() };
    let yesterday = tally::day_of(t - 86_400);
    let today = tally::day_of(t);
    let failure = || Some((exim_mta_sts_tool::cause::ResultType::CertificateExpired, Detail::default()));
    for (day, key, failure) in
        [(&yesterday, "a", None), (&today, "b", None), (&today, "c", None), (&today, "d", failure())]
    {
        let s = Session { day, domain: &soon, policy: &seen, key: Some(key), failure };
        assert!(tallies.record(&s).unwrap());
    }
    // Yesterday's report: sent to a, given up for b (first failure 30 h ago), c not yet.
    tallies.mark_sent(&yesterday, &soon, "a@x.test", &format!("ok {t}")).unwrap();
    tallies.mark_sent(&yesterday, &soon, "b@x.test", &format!("failed {} 9 refused", t - 30 * 3600)).unwrap();
    drop(tallies);

    let r = tool(&cfg, &["stats", "--json"], "");
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let v = json(&r.out);
    assert_eq!(v["policies"]["enforce"], 3, "{v}");
    assert_eq!(v["policies"]["testing"], 2);
    assert_eq!(v["policies"]["none"], 1);
    assert_eq!(v["domains"]["policy"], 6);
    assert_eq!(v["domains"]["no-mta-sts"], 2, "the plain domain and the DANE one");
    assert_eq!(v["domains"]["fetch-failed"], 1);
    assert_eq!(v["dane_domains"], 1);
    assert_eq!(v["expiring_within_a_day"], 1);
    assert!(v["oldest_policy_age"].as_u64().unwrap() >= 86_400 * 3);
    assert_eq!(v["refresh_failing"], 1);
    assert!(v["refresh_failing_age"].as_u64().unwrap() >= 86_400 * 3);
    // Fetches: four good ones and one 404, counted by the helper and by prefetch.
    assert_eq!(v["fetches_last_hour"]["ok"], 4, "{v}");
    assert_eq!(v["fetches_last_hour"]["fetch-status"], 1);
    assert_eq!(v["fetches_last_day"]["ok"], 4);
    assert_eq!(v["fetches_total"]["ok"], 4);
    assert_eq!(v["tls_sessions_today"]["successes"], 2);
    assert_eq!(v["tls_sessions_today"]["failures"], 1);
    assert_eq!(v["reports"]["sent"], 1);
    assert_eq!(v["reports"]["failed"], 1);
    assert_eq!(v["reports"]["pending"], 1);
    assert!(v["database_bytes"]["state"].as_u64().unwrap() > 0);
    assert!(v["database_bytes"]["shared"].as_u64().unwrap() > 0);
    assert!(v["last_refresh"].is_null());

    // A cached answer counts nothing (the hot path writes no counter).
    for _ in 0..50 {
        assert_eq!(lib.getmta(&[&e1]), "enforce");
    }
    // A refresh run is remembered, and its fetches counted.
    let r = tool(&cfg, &["refresh", "--min-age", "0"], "");
    assert!(r.out.contains("refreshed"), "{}{}", r.out, r.err);
    let v = json(&tool(&cfg, &["stats", "--json"], "").out);
    assert!(v["last_refresh"]["finished"].as_u64().unwrap() >= t, "{v}");
    assert_eq!(v["last_refresh"]["failed"], 1, "the stale policy's host does not exist: {v}");
    assert_eq!(v["last_refresh"]["unchanged"], 4, "{v}");
    assert_eq!(v["fetches_total"]["ok"], 8, "four refreshed, none for the cached getmtas: {v}");

    // The Prometheus text: promtool's lint is clean, and the values are the same.
    let r = tool(&cfg, &["stats", "--prometheus"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(promtool(&r.out), "", "{}", r.out);
    let m = samples(&r.out);
    assert_eq!(m["exim_mta_sts_policies{mode=\"enforce\"}"], 3.0);
    assert_eq!(m["exim_mta_sts_domains{state=\"no-mta-sts\"}"], 2.0);
    assert_eq!(m["exim_mta_sts_policy_fetches_total{result=\"ok\"}"], 8.0);
    assert_eq!(m["exim_mta_sts_policy_fetches_recent{window=\"1h\",result=\"fetch-status\"}"], 1.0);
    assert_eq!(m["exim_mta_sts_policies_refresh_failing"], 1.0, "the stale policy, failed again");
    assert!(m["exim_mta_sts_refresh_failing_age_seconds"] > 86_400.0, "the example alert fires");
    assert_eq!(m["exim_mta_sts_reports{state=\"failed\"}"], 1.0);
    assert_eq!(m["exim_mta_sts_stats_problems"], 0.0);

    // --textfile as root: written atomically into a root-owned directory, nothing left
    // beside it; refused in a directory others may write (a planted link could take it).
    let prom = dir.join("prom");
    std::fs::create_dir(&prom).unwrap();
    std::fs::set_permissions(&prom, std::fs::Permissions::from_mode(0o755)).unwrap();
    let file = prom.join("exim-mta-sts.prom");
    let r = tool(&cfg, &["stats", "--textfile", file.to_str().unwrap()], "");
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(promtool(&text), "");
    assert_eq!(samples(&text)["exim_mta_sts_policies{mode=\"testing\"}"], 2.0);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o644);
    assert_eq!(std::fs::read_dir(&prom).unwrap().count(), 1, "no temporary file left");
    std::fs::set_permissions(&prom, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::remove_file(&file).unwrap();
    let r = tool(&cfg, &["stats", "--textfile", file.to_str().unwrap()], "");
    assert_eq!(r.code, 2, "{}{}", r.out, r.err);
    assert!(r.err.contains("nobody else may write"), "{}", r.err);
    assert!(!file.exists());
}

#[test]
fn stats_of_an_empty_installation_are_zeros_not_errors() {
    let w = World::get();
    let dir = w.scratch("stats-empty");
    let cfg = config(&dir, "");
    let r = tool(&cfg, &["stats"], "");
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains("policies:          none"), "{}", r.out);
    assert!(r.out.contains("last refresh:      never"), "{}", r.out);
    let r = tool(&cfg, &["stats", "--prometheus"], "");
    assert_eq!(promtool(&r.out), "", "{}", r.out);
    assert_eq!(samples(&r.out)["exim_mta_sts_policies{mode=\"enforce\"}"], 0.0);
}
