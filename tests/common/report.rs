//! Helpers for the TLS report tests (tests/tlsrpt*.rs): a domain with a policy, and the
//! RFC 8460 §4.4 reports `exim-mta-sts report --json` prints.

use super::*;
use serde_json::Value;

/// A domain whose MX is `rx`, with a policy of `mode` listing `listed` (or `rx` itself).
pub fn domain(w: &World, d: &str, rx: &Receiver, mode: &str, listed: Option<&str>) {
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

pub fn report_of<'a>(reports: &'a Value, d: &str) -> &'a Value {
    let all = reports.as_array().unwrap();
    let mine: Vec<&Value> = all.iter().filter(|r| r["policies"][0]["policy"]["policy-domain"] == d).collect();
    assert_eq!(mine.len(), 1, "one report for {d}: {reports:#}");
    mine[0]
}

/// RFC 8460 §4.4's schema, checked by hand: every key of the skeleton with its type, no
/// other key, the registry's result types, RFC 3339 `Z` date-times, RFC 5952 addresses.
pub fn check_schema(r: &Value) {
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
pub fn counts(r: &Value) -> (u64, u64, Vec<(String, u64, String)>) {
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

/// Today, the UTC day the tests' deliveries are counted under.
pub fn today() -> String {
    exim_mta_sts_tool::tally::day_of(exim_mta_sts_tool::clock::now())
}
