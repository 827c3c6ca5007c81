//! TLS reports (RFC 8460, SPEC §10, issue 11): real deliveries through the shipped
//! exim-config to real receivers record their TLS outcomes, and `exim-mta-sts report --json`
//! gives exactly those counts and result types, in §4.4's shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;
use serde_json::Value;

/// A domain whose MX is `rx`, with a policy of `mode` listing `listed` (or `rx` itself).
fn domain(w: &World, d: &str, rx: &Receiver, mode: &str, listed: Option<&str>) {
    w.zone(
        d,
        &format!(
            "{d} MX 10 {}\n{}_mta-sts.{d} TXT \"v=STSv1; id=r1\"\nmta-sts.{d} A 127.0.1.1\n",
            rx.name,
            rx.a_record()
        ),
    );
    w.serve_policy(d, &policy(mode, &[listed.unwrap_or(&rx.name)], 86400), "");
}

fn report_of<'a>(reports: &'a Value, d: &str) -> &'a Value {
    let all = reports.as_array().unwrap();
    let mine: Vec<&Value> = all.iter().filter(|r| r["policies"][0]["policy"]["policy-domain"] == d).collect();
    assert_eq!(mine.len(), 1, "one report for {d}: {reports:#}");
    mine[0]
}

/// RFC 8460 §4.4's schema, checked by hand: every key of the skeleton with its type, no
/// other key, the registry's result types, RFC 3339 `Z` date-times, RFC 5952 addresses.
fn check_schema(r: &Value) {
    let keys = |v: &Value, allowed: &[&str], required: &[&str]| {
        let o = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
        for k in o.keys() {
            assert!(allowed.contains(&k.as_str()), "unknown key {k} in {v}");
        }
        for k in required {
            assert!(o.contains_key(*k), "{k} missing in {v}");
        }
    };
    let top = ["organization-name", "date-range", "contact-info", "report-id", "policies"];
    keys(r, &top, &top);
    for k in ["organization-name", "contact-info", "report-id"] {
        assert!(r[k].is_string(), "{k}");
    }
    keys(&r["date-range"], &["start-datetime", "end-datetime"], &["start-datetime", "end-datetime"]);
    for k in ["start-datetime", "end-datetime"] {
        let t = r["date-range"][k].as_str().unwrap();
        assert!(t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T', "RFC 3339 with Z: {t}");
    }
    let policies = r["policies"].as_array().unwrap();
    assert!(!policies.is_empty(), "RFC 8460 §4: policies is an array");
    let types = [
        "starttls-not-supported",
        "certificate-host-mismatch",
        "certificate-expired",
        "certificate-not-trusted",
        "validation-failure",
        "tlsa-invalid",
        "dnssec-invalid",
        "dane-required",
        "sts-policy-fetch-error",
        "sts-policy-invalid",
        "sts-webpki-invalid",
    ];
    for p in policies {
        keys(p, &["policy", "summary", "failure-details"], &["policy", "summary"]);
        let pol = &p["policy"];
        keys(
            pol,
            &["policy-type", "policy-string", "policy-domain", "mx-host"],
            &["policy-type", "policy-domain"],
        );
        assert!(["sts", "tlsa", "no-policy-found"].contains(&pol["policy-type"].as_str().unwrap()));
        for k in ["policy-string", "mx-host"] {
            assert!(
                pol.get(k).is_none_or(|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_string))),
                "{k}"
            );
        }
        let sum = ["total-successful-session-count", "total-failure-session-count"];
        keys(&p["summary"], &sum, &sum);
        assert!(sum.iter().all(|k| p["summary"][k].is_u64()));
        for f in p.get("failure-details").and_then(Value::as_array).into_iter().flatten() {
            let all = [
                "result-type",
                "sending-mta-ip",
                "receiving-mx-hostname",
                "receiving-mx-helo",
                "receiving-ip",
                "failed-session-count",
                "additional-information",
                "failure-reason-code",
            ];
            keys(f, &all, &["result-type", "failed-session-count"]);
            assert!(types.contains(&f["result-type"].as_str().unwrap()), "{f}");
            assert!(f["failed-session-count"].is_u64());
            for k in ["sending-mta-ip", "receiving-ip"] {
                if let Some(ip) = f.get(k) {
                    let ip = ip.as_str().unwrap();
                    let parsed: std::net::IpAddr = ip.parse().unwrap();
                    assert_eq!(parsed.to_string(), ip, "RFC 5952 form");
                }
            }
        }
    }
}

/// (successes, failures, [(result-type, count, reason)]) of a report's only policy.
fn counts(r: &Value) -> (u64, u64, Vec<(String, u64, String)>) {
    let p = &r["policies"][0];
    let details = p["failure-details"].as_array().cloned().unwrap_or_default();
    (
        p["summary"]["total-successful-session-count"].as_u64().unwrap(),
        p["summary"]["total-failure-session-count"].as_u64().unwrap(),
        details
            .iter()
            .map(|f| {
                (
                    f["result-type"].as_str().unwrap().to_owned(),
                    f["failed-session-count"].as_u64().unwrap(),
                    f["failure-reason-code"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect(),
    )
}

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
    let today = exim_mta_sts_tool::tally::day_of(exim_mta_sts_tool::clock::now());
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

/// The body of the MIME part of `msg` whose Content-Type starts with `ctype`.
fn part<'a>(msg: &'a str, ctype: &str) -> &'a str {
    let at = msg.find(&format!("Content-Type: {ctype}")).unwrap_or_else(|| panic!("no {ctype} part: {msg}"));
    let rest = &msg[at..];
    let body = &rest[rest.find("\n\n").or_else(|| rest.find("\r\n\r\n")).unwrap()..];
    let end = body.find("\n--").unwrap_or(body.len());
    body[..end].trim()
}

#[test]
fn report_send_delivers_each_report_to_its_rua_once_by_mail_past_a_bad_certificate_and_by_https() {
    use base64::Engine;
    use std::io::Read;
    let w = World::get();
    let d = w.unique("rpt-send");
    let rua = w.unique("rpt-rua");
    let rx = Receiver::start(&w, &format!("mx.{d}"), "good");
    domain(&w, &d, &rx, "enforce", None);
    w.zone(
        &format!("tls-{d}"),
        &format!(
            "_smtp._tls.{d} TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@{rua},https://reports.{d}/v1/tlsrpt\"\nreports.{d} A 127.0.1.1\n"
        ),
    );
    // The rua domain enforces MTA-STS, and its MX's certificate names another host: report
    // mail goes anyway (TLS-Required: No, RFC 8460 §3), ordinary mail would not.
    let rua_rx = Receiver::start(&w, &format!("mx.{rua}"), "wrong-name");
    domain(&w, &rua, &rua_rx, "enforce", None);
    let tx = Sender::new(&w, "rpt-send");
    tx.send(&format!("user@{d}"));
    let sendmail = format!("{} -C {} -odi -oi -t", debian_exim().display(), tx.conf.display());
    tx.mta_sts_config(&format!(
        "report_contact = \"tlsrpt@origin.test\"\nreport_org = \"Origin Test\"\nreport_sendmail = \"{sendmail}\"\n"
    ));
    let today = exim_mta_sts_tool::tally::day_of(exim_mta_sts_tool::clock::now());
    let r = tool(&tx.toml, &["report", "send", "--date", &today], "");
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains(&format!("{today} {d} tlsrpt@{rua}: sent")), "{}", r.out);
    assert!(
        r.out.contains(&format!("{today} {d} https://reports.{d}/v1/tlsrpt: sent")),
        "{}{}",
        r.out,
        tool(&tx.toml, &["check", &d, "--no-probe", "--json"], "").out
    );
    let start = std::time::Instant::now();
    while rua_rx.received() == 0 && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(rua_rx.received(), 1, "{}", tx.log());
    let msg = std::fs::read_to_string(rua_rx.dir.join("mailbox")).unwrap();
    let unfolded = msg.replace("\n ", " ").replace("\n\t", " ");
    for header in [
        format!("TLS-Report-Domain: {d}"),
        "TLS-Report-Submitter: origin.test".to_owned(),
        "TLS-Required: No".to_owned(),
        format!("Subject: Report Domain: {d} Submitter: origin.test Report-ID: <"),
    ] {
        assert!(unfolded.contains(&header), "{header} missing: {msg}");
    }
    assert!(unfolded.contains("multipart/report") && unfolded.contains("report-type=\"tlsrpt\""), "{msg}");
    let start_epoch = exim_mta_sts_tool::tally::day_start(&today).unwrap();
    assert!(
        msg.contains(&format!("origin.test!{d}!{start_epoch}!{}!", start_epoch + 86_399)),
        "§5.1 file name: {msg}"
    );
    let b64: String = part(&msg, "application/tlsrpt+gzip").split_whitespace().collect();
    let gz = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
    let sent: Value = serde_json::from_str(&text).unwrap();
    check_schema(&sent);
    let shown = json(&tool(&tx.toml, &["report", "--date", &today, "--json"], "").out);
    assert_eq!(&sent, report_of(&shown, &d), "the mail carries exactly what report --json shows");
    assert_eq!(sent["organization-name"], "Origin Test");
    // The https: destination got the same gzip in a POST (RFC 8460 §5.4).
    let posts = w.dir.join("https").join(format!("reports.{d}")).join("posts");
    let meta = std::fs::read_to_string(posts.join("0.meta")).unwrap();
    assert_eq!(meta, "/v1/tlsrpt\napplication/tlsrpt+gzip\n");
    let mut posted = String::new();
    flate2::read::GzDecoder::new(&std::fs::read(posts.join("0")).unwrap()[..])
        .read_to_string(&mut posted)
        .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&posted).unwrap(), sent);
    assert_eq!(sent["contact-info"], "tlsrpt@origin.test");
    // Once per day and destination.
    let again = tool(&tx.toml, &["report", "send", "--date", &today], "");
    assert!(again.out.contains(&format!("{d} tlsrpt@{rua}: already sent")), "{}", again.out);
    assert!(again.out.contains(&format!("{d} https://reports.{d}/v1/tlsrpt: already sent")), "{}", again.out);
    assert_eq!(std::fs::read_dir(&posts).unwrap().count(), 2, "one POST only");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(rua_rx.received(), 1);
    // Ordinary mail to the rua domain is still held to its policy.
    let log = tx.send(&format!("someone@{rua}"));
    assert!(log.contains(&format!("== someone@{rua} R=mtasts_enforce")), "{log}");
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
    let today = exim_mta_sts_tool::tally::day_of(exim_mta_sts_tool::clock::now());
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
fn two_hosts_send_one_report_per_domain_and_day() {
    use std::io::Read;
    let w = World::get();
    let d = w.unique("rpt-two");
    let rx = Receiver::start(&w, &format!("mx.{d}"), "good");
    domain(&w, &d, &rx, "enforce", None);
    w.zone(
        &format!("tls-{d}"),
        &format!("_smtp._tls.{d} TXT \"v=TLSRPTv1; rua=https://reports.{d}/r\"\nreports.{d} A 127.0.1.1\n"),
    );
    // Two sending hosts: each its own store and counters.
    let (a, b) = (Sender::new(&w, "rpt-host-a"), Sender::new(&w, "rpt-host-b"));
    a.send(&format!("one@{d}"));
    b.send(&format!("two@{d}"));
    b.send(&format!("three@{d}"));
    let today = exim_mta_sts_tool::tally::day_of(exim_mta_sts_tool::clock::now());
    let export = tool(&a.toml, &["report", "export", "--date", &today], "");
    assert_eq!(export.code, 0, "{}", export.err);
    let file = w.scratch("rpt-two").join("host-a.json");
    std::fs::write(&file, &export.out).unwrap();
    let file = file.display().to_string();
    let alone = json(&tool(&b.toml, &["report", "--date", &today, "--json"], "").out);
    assert_eq!(counts(report_of(&alone, &d)).0, 2);
    let merged = json(&tool(&b.toml, &["report", "--date", &today, "--json", "--merge", &file], "").out);
    assert_eq!(counts(report_of(&merged, &d)).0, 3, "{merged:#}");
    // The report sent is the merged one, once.
    b.mta_sts_config("report_contact = \"tlsrpt@origin.test\"\n");
    let sent = tool(&b.toml, &["report", "send", "--date", &today, "--merge", &file], "");
    assert_eq!(sent.code, 0, "{}{}", sent.out, sent.err);
    let posts = w.dir.join("https").join(format!("reports.{d}")).join("posts");
    let mut text = String::new();
    flate2::read::GzDecoder::new(&std::fs::read(posts.join("0")).unwrap()[..])
        .read_to_string(&mut text)
        .unwrap();
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(counts(&report).0, 3, "{report:#}");
    // An export of another day is refused.
    let other = export.out.replace(&format!("\"day\": \"{today}\""), "\"day\": \"2000-01-01\"");
    std::fs::write(&file, other).unwrap();
    let refused = tool(&b.toml, &["report", "--date", &today, "--merge", &file], "");
    assert_eq!(refused.code, 1, "{}", refused.out);
    assert!(refused.err.contains("cannot be merged"), "{}", refused.err);
}

#[test]
fn a_failed_destination_is_retried_later_with_back_off_not_at_once() {
    let w = World::get();
    let d = w.unique("rpt-retry");
    let rx = Receiver::start(&w, &format!("mx.{d}"), "good");
    domain(&w, &d, &rx, "enforce", None);
    // The rua's host does not exist: the POST fails.
    w.zone(&format!("tls-{d}"), &format!("_smtp._tls.{d} TXT \"v=TLSRPTv1; rua=https://nowhere.{d}/r\"\n"));
    let tx = Sender::new(&w, "rpt-retry");
    tx.send(&format!("user@{d}"));
    tx.mta_sts_config("report_contact = \"tlsrpt@origin.test\"\n");
    let today = exim_mta_sts_tool::tally::day_of(exim_mta_sts_tool::clock::now());
    let first = tool(&tx.toml, &["report", "send", "--date", &today], "");
    assert_eq!(first.code, 1, "a destination failed: {}{}", first.out, first.err);
    assert!(first.out.contains(&format!("{d} https://nowhere.{d}/r: failed: ")), "{}", first.out);
    let again = tool(&tx.toml, &["report", "send", "--date", &today], "");
    assert_eq!(again.code, 0, "{}{}", again.out, again.err);
    assert!(again.out.contains("waiting: tried 1 time(s), next try after "), "{}", again.out);
}

#[test]
fn a_session_that_carries_several_messages_counts_once() {
    use std::io::Write;
    let w = World::get();
    let d = w.unique("rpt-session");
    let rx = Receiver::start(&w, &format!("mx.{d}"), "good");
    domain(&w, &d, &rx, "enforce", None);
    let tx = Sender::new(&w, "rpt-session");
    // Three messages queued, then a two-stage queue run (-qq): Exim routes them all first,
    // then carries them to the host over one connection.
    for n in 0..3 {
        let mut child = std::process::Command::new(debian_exim())
            .arg("-C")
            .arg(&tx.conf)
            .args(["-odq", "-f", "sender@origin.test", &format!("user{n}@{d}")])
            .env("EXIM_MTA_STS_CONFIG", &tx.toml)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"Subject: queued\n\nhello\n").unwrap();
        assert!(child.wait().unwrap().success());
    }
    let st = std::process::Command::new(debian_exim())
        .arg("-C")
        .arg(&tx.conf)
        .arg("-qqff")
        .env("EXIM_MTA_STS_CONFIG", &tx.toml)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(tx.queued(), 0, "{}", tx.log());
    let log = rx.log();
    assert_eq!(log.matches("TCP/IP connection count").count(), 1, "one SMTP session: {log}");
    assert_eq!(log.matches(" <= sender@origin.test").count(), 3, "three messages over it: {log}");
    let today = exim_mta_sts_tool::tally::day_of(exim_mta_sts_tool::clock::now());
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
    let today = exim_mta_sts_tool::tally::day_of(exim_mta_sts_tool::clock::now());
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
