//! `exim-mta-sts check` probes each MX host over SMTP and STARTTLS (issue 11), against the
//! test world's real receivers (Exim daemons with good, wrong-name, untrusted, expired and no
//! certificates), and names the RFC 8460 result type a delivery would record.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;

#[test]
fn check_probes_every_mx_and_names_what_a_delivery_would_record() {
    let w = World::get();
    let d = w.unique("probe");
    let flavours = ["good", "wrong-name", "untrusted", "expired", "none"];
    let rxs: Vec<Receiver> =
        flavours.iter().map(|f| Receiver::start(&w, &format!("mx-{f}.{d}"), f)).collect();
    let mut zone = format!("_mta-sts.{d} TXT \"v=STSv1; id=p1\"\nmta-sts.{d} A 127.0.1.1\n");
    for (i, rx) in rxs.iter().enumerate() {
        zone.push_str(&format!("{d} MX {} {}\n{}", 10 * (i + 1), rx.name, rx.a_record()));
    }
    w.zone(&d, &zone);
    w.serve_policy(&d, &policy("testing", &[&format!("*.{d}")], 86400), "");
    let cfg = config(&w.scratch("probe"), "");

    let r = tool(&cfg, &["check", &d, "--json"], "");
    assert_eq!(r.code, 1, "problems found: {}{}", r.out, r.err);
    let v = json(&r.out);
    let hosts = v["mx_hosts"].as_array().unwrap();
    let got: Vec<(&str, &str)> =
        hosts.iter().map(|h| (h["host"].as_str().unwrap(), h["probe"]["result"].as_str().unwrap())).collect();
    let want: Vec<(String, &str)> = flavours
        .iter()
        .zip([
            "ok",
            "certificate-host-mismatch",
            "certificate-not-trusted",
            "certificate-expired",
            "starttls-not-supported",
        ])
        .map(|(f, r)| (format!("mx-{f}.{d}"), r))
        .collect();
    assert_eq!(got, want.iter().map(|(h, r)| (h.as_str(), *r)).collect::<Vec<_>>(), "{}", r.out);
    for (h, rx) in hosts.iter().zip(&rxs) {
        assert_eq!(h["probe"]["address"], rx.ip.as_str());
    }
    // Each failing MX is a problem: under testing, what enforce would refuse.
    let problems: Vec<&str> = v["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.starts_with(&format!("MX host mx-expired.{d}: certificate-expired: "))
            && p.ends_with("a delivery there would fail under enforce")),
        "{problems:?}"
    );
    // The probes spoke SMTP: each receiver logged a connection.
    assert!(rxs.iter().all(|rx| rx.connections() >= 1));

    // The text form, and --no-probe.
    let text = tool(&cfg, &["check", &d], "").out;
    assert!(text.contains(&format!("probe at {}: certificate-host-mismatch (", rxs[1].ip)), "{text}");
    assert!(text.contains(&format!("probe at {}: STARTTLS, certificate valid (", rxs[0].ip)), "{text}");
    let quiet = tool(&cfg, &["check", &d, "--no-probe", "--json"], "");
    assert_eq!(quiet.code, 0, "{}", quiet.out);
    assert!(json(&quiet.out)["mx_hosts"].as_array().unwrap().iter().all(|h| h["probe"].is_null()));
}
