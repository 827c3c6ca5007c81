//! SPEC §2 and §4 behaviour of the built library, loaded with `dlopen` and called as Exim
//! calls it, against the real DNS server and HTTPS policy hosts of the test world.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;

#[test]
fn enforce_policy_is_fetched_and_answers_all_three_calls() {
    let w = World::get();
    let d = w.unique("enforce");
    w.sts_domain(&d, "id1", &policy("enforce", &[&format!("mx1.{d}"), &format!("*.backup.{d}")], 86400));
    let dir = w.scratch("enforce");
    let lib = lib_with(&config(&dir, ""));

    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(lib.getmx(&d), format!("mx1.{d}:*.backup.{d}"));
    assert_eq!(lib.getmta(&[&d, &format!("mx1.{d}")]), "");
    assert_eq!(lib.getmta(&[&d, &format!("MX1.{}.", d.to_uppercase())]), "");
    assert_eq!(lib.getmta(&[&d, &format!("b7.backup.{d}")]), "");
    assert_eq!(lib.getmta(&[&d, &format!("mx1.{d}.attacker.net")]), "0");
    assert_eq!(lib.getmta(&[&d, &format!("a.b.backup.{d}")]), "0");
    assert_eq!(lib.getmta(&[&d, &format!("backup.{d}")]), "0");
    assert_eq!(w.requests(&d), 1, "one fetch for all these calls");

    let db = shared(&dir);
    assert_eq!(db[&format!("{d}:mode")], "enforce");
    assert_eq!(db[&format!("{d}:mx")], format!("mx1.{d}:*.backup.{d}"));
    assert_eq!(db[&format!("{d}:id")], "id1");
    let expire: u64 = db[&format!("{d}:expire")].parse().unwrap();
    let now = exim_mta_sts_tool::clock::now();
    assert!((now + 86400 - 5..=now + 86400).contains(&expire), "expire {expire} now {now}");
    assert!(!db.contains_key(&format!("{d}:report")), "no TLSRPT record, no report key");
}

#[test]
fn cached_answers_need_neither_dns_nor_https() {
    let w = World::get();
    let d = w.unique("hot");
    w.sts_domain(&d, "id1", &policy("testing", &[&format!("mx.{d}")], 86400));
    let lib = lib_with(&config(&w.scratch("hot"), ""));
    assert_eq!(lib.getmta(&[&d]), "testing");
    // Now DNS fails for the domain and the policy host is gone: the cache answers.
    w.zone(&d, &format!("_mta-sts.{d} SERVFAIL\nmta-sts.{d} SERVFAIL\n"));
    std::fs::remove_file(w.policy_dir(&d).join("body")).unwrap();
    for _ in 0..100 {
        assert_eq!(lib.getmta(&[&d]), "testing");
    }
    assert_eq!(w.requests(&d), 1);
}

#[test]
fn tlsrpt_destinations_reach_the_shared_database() {
    let w = World::get();
    let d = w.unique("tlsrpt");
    w.zone(
        &d,
        &format!(
            "_mta-sts.{d} TXT \"v=STSv1; id=r1\"\nmta-sts.{d} A 127.0.1.1\n_smtp._tls.{d} TXT \"v=TLSRPTv1; rua=mailto:tls@{d},https://r.{d}/x\"\n"
        ),
    );
    w.serve_policy(&d, &policy("enforce", &[&format!("mx.{d}")], 600), "");
    let dir = w.scratch("tlsrpt");
    let lib = lib_with(&config(&dir, ""));
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(shared(&dir)[&format!("{d}:report")], format!("tls@{d},https://r.{d}/x"));
}

#[test]
fn domain_without_mta_sts_is_none_and_negatively_cached() {
    let w = World::get();
    let d = w.unique("nosts");
    w.zone(&d, &format!("{d} MX 10 mx.{d}\n"));
    let dir = w.scratch("nosts");
    let lib = lib_with(&config(&dir, "negative_ttl = 3"));
    let start = std::time::Instant::now();
    assert_eq!(lib.getmta(&[&d]), "none");
    assert_eq!(lib.getmta(&[&d, "anything.example"]), "");
    assert_eq!(lib.getmx(&d), "");
    // The domain publishes a policy now, but the negative cache still answers: no DNS.
    w.sts_domain(&d, "new", &policy("enforce", &[&format!("mx.{d}")], 600));
    assert_eq!(lib.getmta(&[&d]), "none");
    assert_eq!(w.requests(&d), 0);
    assert!(shared(&dir).is_empty(), "the shared database holds policies only");
    // Once negative_ttl has passed (whole seconds: wait a second more), DNS is asked again.
    std::thread::sleep(std::time::Duration::from_secs(4).saturating_sub(start.elapsed()));
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(w.requests(&d), 1);
}

#[test]
fn changed_id_refetches_and_same_id_does_not() {
    let w = World::get();
    let d = w.unique("idchange");
    w.sts_domain(&d, "one", &policy("enforce", &[&format!("mx.{d}")], 86400));
    let dir = w.scratch("idchange");
    let lib = lib_with(&config(&dir, "recheck_interval = 0"));
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(w.requests(&d), 1, "same id: no new fetch (RFC 8461 §3)");
    w.sts_domain(&d, "two", &policy("testing", &[&format!("mx2.{d}")], 86400));
    assert_eq!(lib.getmta(&[&d]), "testing");
    assert_eq!(w.requests(&d), 2);
    let db = shared(&dir);
    assert_eq!((db[&format!("{d}:mode")].as_str(), db[&format!("{d}:id")].as_str()), ("testing", "two"));
    assert_eq!(lib.getmta(&[&d, &format!("mx.{d}")]), "0");
}

#[test]
fn recheck_interval_limits_txt_queries() {
    let w = World::get();
    let d = w.unique("recheck");
    w.sts_domain(&d, "one", &policy("enforce", &[&format!("mx.{d}")], 86400));
    let lib = lib_with(&config(&w.scratch("recheck"), "recheck_interval = 3600"));
    assert_eq!(lib.getmta(&[&d]), "enforce");
    // A new id is published, but the cached policy is not re-checked within the interval.
    w.sts_domain(&d, "two", &policy("testing", &[&format!("mx.{d}")], 86400));
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(w.requests(&d), 1);
}

#[test]
fn failed_refresh_keeps_the_cached_policy() {
    let w = World::get();
    let d = w.unique("keep");
    w.sts_domain(&d, "one", &policy("enforce", &[&format!("mx.{d}")], 86400));
    let dir = w.scratch("keep");
    let lib = lib_with(&config(&dir, "recheck_interval = 0"));
    assert_eq!(lib.getmta(&[&d]), "enforce");
    // New id, but the policy host now fails: RFC 8461 §3.3/§5.1 keeps the cached policy.
    w.zone(&d, &format!("_mta-sts.{d} TXT \"v=STSv1; id=two\"\nmta-sts.{d} A 127.0.1.1\n"));
    w.serve_policy(&d, "oops", "status=500");
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(lib.getmta(&[&d, "evil.example"]), "0");
    // The TXT record disappears: still the cached policy (RFC 8461 §3.1).
    w.zone(&d, "");
    assert_eq!(lib.getmta(&[&d]), "enforce");
    // DNS fails: still the cached policy.
    w.zone(&d, &format!("_mta-sts.{d} SERVFAIL\n"));
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(shared(&dir)[&format!("{d}:id")], "one");
}

/// (meta, body, why): each must count as a failed fetch (RFC 8461 §3.3).
fn fetch_faults(d: &str) -> Vec<(String, String, &'static str)> {
    let good = policy("enforce", &[&format!("mx.{d}")], 600);
    vec![
        ("status=404".into(), good.clone(), "404"),
        ("status=500".into(), good.clone(), "500"),
        (format!("status=302\nlocation=https://mta-sts.{d}/other"), good.clone(), "redirect not followed"),
        ("content_type=text/html".into(), good.clone(), "Content-Type"),
        ("content_type=none".into(), good.clone(), "no Content-Type"),
        ("pad_to=70000".into(), good.clone(), "body over 64 KiB"),
        ("pad_to=70000\nchunked=1".into(), good.clone(), "chunked body over 64 KiB"),
        ("cert=wrong-name".into(), good.clone(), "certificate for another name"),
        ("cert=untrusted".into(), good.clone(), "certificate from an untrusted CA"),
        ("cert=expired".into(), good.clone(), "expired certificate"),
        (String::new(), "version: STSv1\nmode: enforce\nmax_age: 60\n".into(), "invalid policy (no mx)"),
        (String::new(), "<html>hello</html>".into(), "not a policy"),
    ]
}

#[test]
fn fetch_failures_with_nothing_cached_answer_none_by_default() {
    let w = World::get();
    let lib = lib_with(&config(&w.scratch("faults"), ""));
    for (i, (meta, body, why)) in fetch_faults("x").into_iter().enumerate() {
        let d = w.unique(&format!("fault{i}"));
        w.zone(&d, &format!("_mta-sts.{d} TXT \"v=STSv1; id=f\"\nmta-sts.{d} A 127.0.1.1\n"));
        w.serve_policy(&d, &body, &meta);
        assert_eq!(lib.getmta(&[&d]), "none", "{why}");
        assert_eq!(lib.getmta(&[&d, "any.example"]), "", "{why}");
        assert_eq!(w.requests(&d), if why.contains("certificate") { 0 } else { 1 }, "{why}");
    }
}

#[test]
fn fetch_failures_with_fetch_failure_fail_answer_fail() {
    let w = World::get();
    let lib = lib_with(&config(&w.scratch("faults-fail"), "fetch_failure = \"fail\""));
    for (i, (meta, body, why)) in fetch_faults("x").into_iter().enumerate() {
        let d = w.unique(&format!("ffail{i}"));
        w.zone(&d, &format!("_mta-sts.{d} TXT \"v=STSv1; id=f\"\nmta-sts.{d} A 127.0.1.1\n"));
        w.serve_policy(&d, &body, &meta);
        assert_eq!(lib.getmta(&[&d]), "fail", "{why}");
        assert_eq!(lib.getmta(&[&d, &format!("mx.{d}")]), "0", "{why}: fail closed");
    }
    // The policy host does not exist at all.
    let d = w.unique("ffail-nohost");
    w.zone(&d, &format!("_mta-sts.{d} TXT \"v=STSv1; id=f\"\n"));
    assert_eq!(lib.getmta(&[&d]), "fail");
}

#[test]
fn slow_policy_host_cannot_hold_the_caller_past_fetch_timeout() {
    let w = World::get();
    let d = w.unique("slow");
    w.zone(&d, &format!("_mta-sts.{d} TXT \"v=STSv1; id=s\"\nmta-sts.{d} A 127.0.1.1\n"));
    w.serve_policy(&d, &policy("enforce", &[&format!("mx.{d}")], 600), "trickle_ms=500");
    let lib = lib_with(&config(&w.scratch("slow"), "fetch_timeout = 2"));
    let start = std::time::Instant::now();
    assert_eq!(lib.getmta(&[&d]), "none");
    let took = start.elapsed();
    assert!(took < std::time::Duration::from_secs(4), "took {took:?}");
    assert!(took >= std::time::Duration::from_secs(2), "gave up early: {took:?}");
}

#[test]
fn failed_fetch_is_not_retried_for_five_minutes() {
    let w = World::get();
    let d = w.unique("backoff");
    w.zone(&d, &format!("_mta-sts.{d} TXT \"v=STSv1; id=b\"\nmta-sts.{d} A 127.0.1.1\n"));
    w.serve_policy(&d, "x", "status=503");
    let lib = lib_with(&config(&w.scratch("backoff"), "recheck_interval = 0"));
    assert_eq!(lib.getmta(&[&d]), "none");
    w.serve_policy(&d, &policy("enforce", &[&format!("mx.{d}")], 600), "");
    assert_eq!(lib.getmta(&[&d]), "none");
    assert_eq!(w.requests(&d), 1, "RFC 8461 §3.3: no new attempt within five minutes");
}

#[test]
fn temporary_dns_failure_with_nothing_cached_is_fail() {
    let w = World::get();
    let servfail = w.unique("servfail");
    let timeout = w.unique("timeout");
    w.zone(&servfail, &format!("_mta-sts.{servfail} SERVFAIL\n_mta-sts.{timeout} TIMEOUT\n"));
    // tempfail_ttl counts from the start of a call, which may itself wait dns_timeout.
    let lib = lib_with(&config(&w.scratch("tempfail"), "dns_timeout = 2\ntempfail_ttl = 5"));
    let failed_at = std::time::Instant::now();
    assert_eq!(lib.getmta(&[&servfail]), "fail");
    assert_eq!(lib.getmta(&[&servfail, "mx.example"]), "0");
    assert_eq!(lib.getmx(&servfail), "");
    let start = std::time::Instant::now();
    assert_eq!(lib.getmta(&[&timeout]), "fail");
    assert!(start.elapsed() < std::time::Duration::from_secs(4), "{:?}", start.elapsed());
    // Remembered briefly: the next call answers without waiting on DNS again.
    let start = std::time::Instant::now();
    assert_eq!(lib.getmta(&[&timeout]), "fail");
    assert!(start.elapsed() < std::time::Duration::from_millis(100));
    // DNS recovers: after tempfail_ttl the domain's real state is answered.
    w.sts_domain(&servfail, "back", &policy("testing", &[&format!("mx.{servfail}")], 600));
    std::thread::sleep(std::time::Duration::from_secs(6).saturating_sub(failed_at.elapsed()));
    assert_eq!(lib.getmta(&[&servfail]), "testing");
}

#[test]
fn txt_record_rules_of_rfc_8461_section_3_1() {
    let w = World::get();
    let lib = lib_with(&config(&w.scratch("txt"), ""));
    // (records, expected answer)
    let cases = [
        (vec!["\"v=STSv1; id=a\"", "\"v=STSv1; id=b\""], "none"),
        (vec!["\"v=STSv1; id=not-valid\""], "none"),
        (vec!["\"v=STSv1; \" \"id=split\""], "enforce"),
        (vec!["\"v=spf1 -all\"", "\"v=STSv1; id=ok; ext=1\""], "enforce"),
    ];
    for (records, want) in cases {
        let d = w.unique("txt");
        let mut zone = format!("mta-sts.{d} A 127.0.1.1\n");
        for r in &records {
            zone.push_str(&format!("_mta-sts.{d} TXT {r}\n"));
        }
        w.zone(&d, &zone);
        w.serve_policy(&d, &policy("enforce", &[&format!("mx.{d}")], 600), "");
        assert_eq!(lib.getmta(&[&d]), want, "{records:?}");
    }
}

#[test]
fn cname_delegation_and_tcp_fallback() {
    let w = World::get();
    let lib = lib_with(&config(&w.scratch("cname"), ""));
    // RFC 8461 §8.2: _mta-sts delegated by CNAME to a provider.
    let d = w.unique("cname");
    w.zone(&d, &format!("_mta-sts.{d} CNAME _mta-sts.provider.{d}\n_mta-sts.provider.{d} TXT \"v=STSv1; id=deleg\"\nmta-sts.{d} A 127.0.1.1\n"));
    w.serve_policy(&d, &policy("testing", &[&format!("mx.{d}")], 600), "");
    assert_eq!(lib.getmta(&[&d]), "testing");
    // An answer too big for UDP: the resolver retries over TCP.
    let d = w.unique("bigtxt");
    let mut zone = format!("mta-sts.{d} A 127.0.1.1\n_mta-sts.{d} TXT \"v=STSv1; id=big\"\n");
    for i in 0..40 {
        zone.push_str(&format!("_mta-sts.{d} TXT \"filler-{i}-{}\"\n", "x".repeat(60)));
    }
    w.zone(&d, &zone);
    w.serve_policy(&d, &policy("enforce", &[&format!("mx.{d}")], 600), "");
    assert_eq!(lib.getmta(&[&d]), "enforce");
}

#[test]
fn expired_policy_without_txt_record_is_dropped() {
    let w = World::get();
    let d = w.unique("expire");
    w.sts_domain(&d, "e1", &policy("enforce", &[&format!("mx.{d}")], 1));
    let dir = w.scratch("expire");
    let lib = lib_with(&config(&dir, ""));
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(shared(&dir)[&format!("{d}:mode")], "enforce");
    w.zone(&d, "");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(lib.getmta(&[&d]), "none");
    assert!(shared(&dir).is_empty(), "dropped from the shared database: {:?}", shared(&dir));
}

#[test]
fn none_mode_policy_replaces_enforce() {
    // RFC 8461 §8.3: opting out publishes mode none under a new id.
    let w = World::get();
    let d = w.unique("optout");
    w.sts_domain(&d, "a", &policy("enforce", &[&format!("mx.{d}")], 86400));
    let dir = w.scratch("optout");
    let lib = lib_with(&config(&dir, "recheck_interval = 0"));
    assert_eq!(lib.getmta(&[&d]), "enforce");
    w.sts_domain(&d, "b", "version: STSv1\nmode: none\nmax_age: 60\n");
    assert_eq!(lib.getmta(&[&d]), "none");
    assert_eq!(lib.getmta(&[&d, "anything.example"]), "");
    assert_eq!(shared(&dir)[&format!("{d}:mode")], "none");
}

#[test]
fn max_age_above_the_limit_is_clamped() {
    let w = World::get();
    let d = w.unique("clamp");
    w.sts_domain(&d, "c", &policy("enforce", &[&format!("mx.{d}")], 9_999_999_999));
    let dir = w.scratch("clamp");
    let lib = lib_with(&config(&dir, ""));
    assert_eq!(lib.getmta(&[&d]), "enforce");
    let expire: u64 = shared(&dir)[&format!("{d}:expire")].parse().unwrap();
    assert!(expire <= exim_mta_sts_tool::clock::now() + 31_557_600);
}

#[test]
fn odd_arguments_get_safe_answers() {
    let w = World::get();
    let lib = lib_with(&config(&w.scratch("args"), ""));
    for not_a_domain in ["[192.0.2.1]", "[IPv6:2001:db8::1]", "", "a..b", "x_y.example", &"a".repeat(100_000)]
    {
        assert_eq!(lib.getmta(&[not_a_domain]), "none", "{not_a_domain:.20}");
        assert_eq!(lib.getmta(&[not_a_domain, "mx.example"]), "", "{not_a_domain:.20}");
        assert_eq!(lib.getmx(not_a_domain), "");
    }
    let (rc, msg) = lib.call("getmta", &[]);
    assert_eq!((rc, msg.as_str()), (3, "getmta: expected 1 or 2 arguments (DOMAIN or DOMAIN, HOST), got 0"));
    let (rc, msg) = lib.call("getmta", &["a", "b", "c"]);
    assert_eq!(rc, 3, "{msg}");
    assert!(msg.contains("got 3"), "{msg}");
    let (rc, msg) = lib.call("getmx", &["a", "b"]);
    assert_eq!((rc, msg.as_str()), (3, "getmx: expected 1 argument (DOMAIN), got 2"));
}

#[test]
fn idna_domains_are_looked_up_in_a_label_form() {
    let w = World::get();
    let tag = w.unique("idn");
    let ascii = format!("xn--bcher-kva.{tag}");
    w.sts_domain(&ascii, "i", &policy("enforce", &[&format!("mx.{ascii}")], 600));
    let dir = w.scratch("idn");
    let lib = lib_with(&config(&dir, ""));
    assert_eq!(lib.getmta(&[&format!("Bücher.{tag}.")]), "enforce");
    assert_eq!(lib.getmta(&[&format!("BÜCHER.{tag}"), &format!("MX.bücher.{tag}")]), "");
    assert!(shared(&dir).contains_key(&format!("{ascii}:mode")));
}

#[test]
fn policy_in_use_is_refreshed_proactively() {
    // RFC 8461 §3.3: refresh before expiry even when the id is unchanged. Times are whole
    // seconds: refresh_after = 2 leaves at least a second for the calls that must not
    // refetch.
    let w = World::get();
    let d = w.unique("proactive");
    w.sts_domain(&d, "same", &policy("enforce", &[&format!("mx.{d}")], 86400));
    let dir = w.scratch("proactive");
    let lib = lib_with(&config(&dir, "recheck_interval = 0\nrefresh_after = 2"));
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(w.requests(&d), 1, "not due yet");
    let expire1: u64 = shared(&dir)[&format!("{d}:expire")].parse().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    w.serve_policy(&d, &policy("enforce", &[&format!("mx2.{d}")], 86400), "");
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(w.requests(&d), 2, "refetched with the same id");
    assert_eq!(lib.getmx(&d), format!("mx2.{d}"));
    let expire2: u64 = shared(&dir)[&format!("{d}:expire")].parse().unwrap();
    assert!(expire2 > expire1, "the expiry moved on");
    // A failed refresh keeps the policy and is not retried within the back-off.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    w.serve_policy(&d, "gone", "status=404");
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(lib.getmta(&[&d]), "enforce");
    assert_eq!(w.requests(&d), 3);
    assert_eq!(lib.getmx(&d), format!("mx2.{d}"));
}

/// A policy of exactly `size` bytes: the given policy padded with an unknown field.
fn padded_policy(base: &str, size: usize) -> String {
    let pad = size - base.len() - "pad: \n".len();
    let body = format!("{base}pad: {}\n", "x".repeat(pad));
    assert_eq!(body.len(), size);
    body
}

#[test]
fn policy_size_limit_is_inclusive() {
    // RFC.md A-15: with max_policy_size = 65536 (the default), 65 536 bytes parse and
    // 65 537 bytes are a fetch failure (no policy: `none` with the default fetch_failure).
    let w = World::get();
    for (size, want) in [(65_536, "enforce"), (65_537, "none")] {
        let d = w.unique("size");
        let base = policy("enforce", &[&format!("mx.{d}")], 86400);
        w.sts_domain(&d, "id1", &padded_policy(&base, size));
        let lib = lib_with(&config(&w.scratch("size"), ""));
        assert_eq!(lib.getmta(&[&d]), want, "a policy of {size} bytes");
        assert_eq!(w.requests(&d), 1);
    }
}

#[test]
fn domain_without_mta_sts_or_dnssec_costs_one_dns_query_per_negative_ttl() {
    // SPEC §8: with the defaults (negative_ttl = 1 h) a domain without MTA-STS or DNSSEC
    // costs at most one DNS query an hour, DANE check included. A simulated hour: a
    // negative_ttl of 2 s, and calls all along for 7 s. dane_min_ttl = 1 so that a DANE
    // answer kept only for a record TTL would be asked again and again.
    let w = World::get();
    let d = w.unique("quiet");
    w.zone(&d, &format!("{d} MX 10 mx.{d}\nmx.{d} A 127.0.0.1\n"));
    let lib = lib_with(&config(&w.scratch("quiet"), "negative_ttl = 2\ndane = true\ndane_min_ttl = 1"));
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(7) {
        assert_eq!(lib.getmta(&[&d]), "none");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let hours = start.elapsed().as_secs() / 2 + 1;
    let asked = w.queries(&d);
    assert!(
        asked.iter().all(|q| q == &format!("_mta-sts.{d} TXT")),
        "only the TXT record is asked: {asked:?}"
    );
    assert!(asked.len() as u64 <= hours, "{} queries in {hours} simulated hours: {asked:?}", asked.len());
    assert!(asked.len() >= 3, "the negative cache does expire: {asked:?}");
}
