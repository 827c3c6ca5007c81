//! TLS reports (RFC 8460, SPEC §10, issue 11): real deliveries through the shipped
//! exim-config to real receivers record their TLS outcomes, and `exim-mta-sts report --json`
//! gives exactly those counts and result types, in §4.4's shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::report::*;
use common::*;

#[test]
fn deliveries_are_counted_with_their_result_types_and_reported_per_day_and_domain() {
    let w = World::get();
    let tag = |t: &str| w.unique(&format!("rpt-{t}"));
    let cases = [
        ("good", "good", "enforce", false),
        ("notls", "none", "enforce", false),
        ("wrongname", "wrong-name", "enforce", false),
        ("untrusted", "untrusted", "enforce", false),
        ("expired", "expired", "enforce", false),
        ("unlisted", "good", "enforce", true),
        ("testing", "untrusted", "testing", false),
    ];
    let tx = Sender::new(&w, "rpt");
    let mut doms = Vec::new();
    for (name, tls, mode, unlisted) in cases {
        let d = tag(name);
        let rx = Receiver::start(&w, &format!("mx.{d}"), tls);
        let other = format!("elsewhere.{d}");
        domain(&w, &d, &rx, mode, unlisted.then_some(other.as_str()));
        tx.send(&format!("user@{d}"));
        doms.push((name, d, rx));
    }
    let today = today();
    let r = tool(&tx.toml, &["report", "--date", &today, "--json"], "");
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let reports = json(&r.out);
    for rep in reports.as_array().unwrap() {
        check_schema(rep);
    }
    type Want<'a> = (&'a str, (u64, u64, &'a [(&'a str, u64, &'a str)]));
    let want: [Want; 7] = [
        ("good", (1, 0, &[])),
        ("notls", (0, 1, &[("starttls-not-supported", 1, "")])),
        ("wrongname", (0, 1, &[("certificate-host-mismatch", 1, "")])),
        ("untrusted", (0, 1, &[("certificate-not-trusted", 1, "")])),
        // GnuTLS (Debian's Exim) says "certificate invalid" for an expired certificate too:
        // only `exim-mta-sts check` can tell (tests/probe.rs).
        ("expired", (0, 1, &[("certificate-not-trusted", 1, "")])),
        ("unlisted", (0, 1, &[("validation-failure", 1, "mtasts-policy-mx-mismatch")])),
        ("testing", (0, 1, &[("validation-failure", 1, "certificate not verified")])),
    ];
    for ((name, d, rx), (wname, (ok, failed, details))) in doms.iter().zip(want) {
        assert_eq!(*name, wname);
        let rep = report_of(&reports, d);
        let (got_ok, got_failed, got) = counts(rep);
        assert_eq!((got_ok, got_failed), (ok, failed), "{name}: {rep:#}");
        assert_eq!(got.len(), details.len(), "{name}: {rep:#}");
        for ((rt, n, reason), (wrt, wn, wreason)) in got.iter().zip(details) {
            assert_eq!((rt.as_str(), *n), (*wrt, *wn), "{name}: {rep:#}");
            // Exim's own words are kept as the reason code; the fixed codes exactly.
            if !wreason.is_empty() {
                assert_eq!(reason, wreason, "{name}");
            } else {
                assert!(!reason.is_empty(), "{name}: a reason code is given");
            }
        }
        // RFC 8460 §4.4's shape.
        assert_eq!(rep["date-range"]["start-datetime"], format!("{today}T00:00:00Z"));
        assert_eq!(rep["date-range"]["end-datetime"], format!("{today}T23:59:59Z"));
        for key in ["organization-name", "contact-info", "report-id"] {
            assert!(rep[key].is_string(), "{key}: {rep:#}");
        }
        let policy = &rep["policies"][0]["policy"];
        assert_eq!(policy["policy-type"], "sts");
        assert!(policy["mx-host"].is_array(), "RFC.md A-20: {policy}");
        assert_eq!(policy["policy-string"][0], "version: STSv1");
        if let Some(f) = rep["policies"][0]["failure-details"].as_array().and_then(|a| a.first())
            && *name != "unlisted"
        {
            assert_eq!(f["receiving-ip"], rx.ip.as_str(), "{name}: {f}");
            assert_eq!(f["receiving-mx-hostname"], rx.name.as_str());
            assert!(f["sending-mta-ip"].as_str().unwrap().parse::<std::net::IpAddr>().is_ok(), "{f}");
        }
    }
    // Another day has nothing; the text form names each domain.
    assert_eq!(
        json(&tool(&tx.toml, &["report", "--date", "2000-01-01", "--json"], "").out),
        serde_json::json!([])
    );
    let text = tool(&tx.toml, &["report", "--date", &today], "").out;
    assert!(text.contains(&format!("{}  sts  1 successful, 0 failed session(s)", doms[0].1)), "{text}");
}

#[test]
fn failed_policy_fetches_are_counted_with_their_sts_result_types() {
    let w = World::get();
    let tx = Sender::new(&w, "rpt-fetch");
    let mut doms = Vec::new();
    for (name, body, meta, want) in [
        ("status", "x", "status=500", "sts-policy-fetch-error"),
        ("invalid", "version: STSv1\nmode: strict\n", "", "sts-policy-invalid"),
        ("webpki", "x", "cert=untrusted", "sts-webpki-invalid"),
    ] {
        let d = w.unique(&format!("rpt-{name}"));
        w.zone(
            &d,
            &format!(
                "_mta-sts.{d} TXT \"v=STSv1; id=f1\"\nmta-sts.{d} A 127.0.1.1\n_smtp._tls.{d} TXT \"v=TLSRPTv1; rua=mailto:tls@{d}\"\n"
            ),
        );
        w.serve_policy(&d, body, meta);
        let (out, err) = exim_be(&debian_exim(), &tx.conf, &tx.toml, &dlfunc(&lib_path(), "getmta", &[&d]));
        assert_eq!(out, "none", "RFC 8461 §3.3: as if no policy: {err}");
        // A second call within the back-off fetches nothing and counts nothing.
        let (out, _) = exim_be(&debian_exim(), &tx.conf, &tx.toml, &dlfunc(&lib_path(), "getmta", &[&d]));
        assert_eq!(out, "none");
        doms.push((d, want));
    }
    let today = today();
    let reports = json(&tool(&tx.toml, &["report", "--date", &today, "--json"], "").out);
    for (d, want) in &doms {
        let rep = report_of(&reports, d);
        check_schema(rep);
        let (ok, failed, details) = counts(rep);
        assert_eq!((ok, failed), (0, 1), "{d}: {rep:#}");
        assert_eq!((details[0].0.as_str(), details[0].1), (*want, 1), "{d}: {rep:#}");
        assert!(!details[0].2.is_empty(), "a reason: {rep:#}");
        // Its destination is known, so the report can be sent.
        let show = json(&tool(&tx.toml, &["show", d, "--json"], "").out);
        assert_eq!(show["report"], serde_json::json!([format!("tls@{d}")]), "{show:#}");
    }
}

#[test]
fn a_session_that_carries_several_messages_counts_once() {
    let w = World::get();
    let d = w.unique("rpt-session");
    let rx = Receiver::start(&w, &format!("mx.{d}"), "good");
    domain(&w, &d, &rx, "enforce", None);
    let tx = Sender::new(&w, "rpt-session");
    // Three messages queued, then a two-stage queue run (-qq): Exim routes them all first,
    // then carries them to the host over one connection.
    for n in 0..3 {
        tx.enqueue(&format!("user{n}@{d}"));
    }
    tx.queue_run_with("-qqff");
    assert_eq!(tx.queued(), 0, "{}", tx.log());
    let log = rx.log();
    assert_eq!(log.matches("TCP/IP connection count").count(), 1, "one SMTP session: {log}");
    assert_eq!(log.matches(" <= sender@origin.test").count(), 3, "three messages over it: {log}");
    let today = today();
    let r = tool(&tx.toml, &["report", "--date", &today, "--json"], "");
    assert_eq!(r.code, 0, "{}{}\n{}", r.out, r.err, tx.log());
    let reports = json(&r.out);
    assert_eq!(counts(report_of(&reports, &d)), (1, 0, vec![]), "one session, counted once");
}

#[test]
fn a_dane_domain_whose_tlsa_does_not_match_is_reported_as_a_tlsa_failure() {
    let w = World::get();
    // mismatch.sec.test (scripts/world-dnssec): signed MX on 127.0.4.6 whose TLSA record is
    // another certificate's; the receiver there presents its own, valid, certificate.
    let rx = Receiver::start_at(&w, "mx.mismatch.sec.test", "127.0.4.6", "good");
    let mut tx = Sender::new(&w, "rpt-dane");
    tx.validating = true;
    let log = tx.send("bob@mismatch.sec.test");
    assert!(log.contains("== bob@mismatch.sec.test R=mtasts_dane T=remote_smtp_mtasts_dane"), "{log}");
    assert_eq!(rx.received(), 0);
    let today = today();
    let reports = json(&tool(&tx.toml, &["report", "--date", &today, "--json"], "").out);
    let rep = report_of(&reports, "mismatch.sec.test");
    check_schema(rep);
    assert_eq!(rep["policies"][0]["policy"]["policy-type"], "tlsa", "{rep:#}");
    let (ok, failed, details) = counts(rep);
    assert_eq!((ok, failed, details.len()), (0, 1, 1), "{rep:#}");
    // SPEC §10: Exim's own dane:fail result; Exim 4.96 (GnuTLS) says "validation-failure"
    // for a certificate that matches no TLSA record.
    assert_eq!(details[0].0, "validation-failure", "{rep:#}");
}
