//! `exim-mta-sts check`: the live diagnosis of a domain, printed.

use crate::{Outcome, normalize, ok_if, print_json};
use exim_mta_sts_tool::admin::{self, CheckReport};
use exim_mta_sts_tool::config::Config;
use exim_mta_sts_tool::log;

pub(crate) fn check(cfg: &Config, d: &str, json: bool, probe: bool, now: u64) -> Outcome {
    let d = normalize(d)?;
    log::quiet();
    let r = admin::check(cfg, &d, now, probe);
    if json {
        print_json(&r)?;
    } else {
        print_check(&r);
    }
    Ok(ok_if(r.problems.is_empty()))
}

fn print_check(r: &CheckReport) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!("{}", r.domain);
    println!("  _mta-sts TXT: {}", r.sts_record.verdict);
    for rec in &r.sts_record.txt.records {
        println!("      {rec:?}");
    }
    if let Some(id) = &r.sts_record.id {
        println!("    id: {id}");
    }
    match &r.fetch {
        Some(f) => {
            println!("  policy fetch: {}", f.report.url);
            let cert = f.report.certificate.as_deref().unwrap_or("(no TLS session)");
            println!("    certificate: {cert}");
            if let Some(s) = f.report.status {
                println!("    status: {s}");
            }
            if let Some(c) = &f.report.content_type {
                println!("    content-type: {}", if c.is_empty() { "(none)" } else { c });
            }
            if let Some(n) = f.report.size {
                println!("    size: {n} bytes");
            }
            if let Some(e) = &f.error {
                println!("    error: {e}");
            }
        }
        None => println!("  policy fetch: not attempted"),
    }
    if let Some(p) = &r.policy {
        println!(
            "  policy: mode {}, max_age {}{}",
            p.mode,
            p.max_age,
            if p.max_age_clamped { " (clamped)" } else { "" }
        );
        for m in &p.mx {
            println!("    mx: {m}");
        }
    }
    match &r.tlsrpt.txt {
        Some(t) if !r.tlsrpt.rua.is_empty() => println!("  TLSRPT: {} ({})", r.tlsrpt.rua.join(", "), t.name),
        Some(t) if !t.records.is_empty() => println!("  TLSRPT: no valid record ({:?})", t.records),
        _ => println!("  TLSRPT: none"),
    }
    println!(
        "  DANE: {} ({})",
        if r.dane.enabled { yes_no(r.dane.applies) } else { "not checked" },
        r.dane.why
    );
    if let Some(e) = &r.mx_error {
        println!("  MX hosts: {e}");
    } else if r.mx_hosts.is_empty() {
        println!("  MX hosts: none");
    } else {
        println!("  MX hosts:");
        for h in &r.mx_hosts {
            let allowed = match h.allowed {
                Some(true) => "allowed by the policy",
                Some(false) => "NOT allowed by the policy",
                None => "",
            };
            println!("    {:>5} {}  {allowed}", h.preference, h.host);
            if let Some(p) = &h.probe {
                let at = p.address.as_deref().map(|a| format!(" at {a}")).unwrap_or_default();
                match p.result.as_str() {
                    "ok" => println!("          probe{at}: STARTTLS, certificate valid ({})", p.detail),
                    r => println!("          probe{at}: {r} ({})", p.detail),
                }
            }
        }
    }
    println!("  getmta answers: {} ({})", r.answer, r.why);
    if r.problems.is_empty() {
        println!("  no problems found");
    } else {
        println!("  problems:");
        for p in &r.problems {
            println!("    - {p}");
        }
    }
}
