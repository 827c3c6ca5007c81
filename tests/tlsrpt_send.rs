//! Sending TLS reports (RFC 8460 §5, SPEC §10, issue 11): `exim-mta-sts report send` to
//! real `mailto:` and `https:` destinations in the test world, once per day and destination,
//! with retries; several hosts' counts merged into one report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::report::*;
use common::*;
use serde_json::Value;

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
    let today = today();
    let r = tool(&tx.toml, &["report", "send", "--date", &today], "");
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains(&format!("{today} {d} tlsrpt@{rua}: sent")), "{}", r.out);
    assert!(
        r.out.contains(&format!("{today} {d} https://reports.{d}/v1/tlsrpt: sent")),
        "{}{}",
        r.out,
        tool(&tx.toml, &["check", &d, "--no-probe", "--json"], "").out
    );
    assert_eq!(rua_rx.received_after_waiting_for(1), 1, "{}", tx.log());
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
    let today = today();
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
    let today = today();
    let first = tool(&tx.toml, &["report", "send", "--date", &today], "");
    assert_eq!(first.code, 1, "a destination failed: {}{}", first.out, first.err);
    assert!(first.out.contains(&format!("{d} https://nowhere.{d}/r: failed: ")), "{}", first.out);
    let again = tool(&tx.toml, &["report", "send", "--date", &today], "");
    assert_eq!(again.code, 0, "{}{}", again.out, again.err);
    assert!(again.out.contains("waiting: tried 1 time(s), next try after "), "{}", again.out);
}

#[test]
fn report_send_drops_counts_older_than_a_week() {
    use exim_mta_sts_tool::tally::{PolicySeen, Session, Tallies, day_of};
    let w = World::get();
    let dir = w.scratch("rpt-prune");
    let cfg = config(&dir, "report_contact = \"tlsrpt@origin.test\"");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let policy =
        PolicySeen { kind: "sts".into(), mode: "enforce".into(), id: "1".into(), ..Default::default() };
    let (old, kept) = (day_of(now - 8 * 86_400), day_of(now - 7 * 86_400));
    let t = Tallies::open(&dir.join("reports.mdb")).unwrap();
    for day in [&old, &kept] {
        let s = Session {
            day,
            domain: "prune.test",
            policy: &policy,
            key: Some("192.0.2.1:1>192.0.2.2"),
            failure: None,
        };
        assert!(t.record(&s).unwrap());
    }
    drop(t);
    // A state store must exist for `report send`.
    assert_eq!(tool(&cfg, &["prefetch", "-"], "").code, 0);
    let r = tool(&cfg, &["report", "send"], "");
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let t = Tallies::open(&dir.join("reports.mdb")).unwrap();
    assert!(t.day(&old).unwrap().is_empty(), "eight days ago is dropped");
    assert_eq!(t.day(&kept).unwrap().len(), 1, "seven days ago is kept");
}
