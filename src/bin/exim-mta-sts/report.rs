//! `exim-mta-sts report`: the TLS reports (RFC 8460) for one UTC day, from the counters the
//! library keeps (SPEC §10).

use crate::{Failure, Outcome, print_json, usage};
use exim_mta_sts_tool::config::Config;
use exim_mta_sts_tool::tally::{Tallies, day_of};
use exim_mta_sts_tool::{report, send};
use std::process::ExitCode;

/// `YYYY-MM-DD`, or yesterday (UTC).
fn day(date: Option<&str>, now: u64) -> Result<String, Failure> {
    let Some(d) = date else { return Ok(day_of(now.saturating_sub(86_400))) };
    let ok = d.len() == 10
        && d.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    if ok { Ok(d.to_owned()) } else { Err(usage(format!("--date {d:?}: expected YYYY-MM-DD"))) }
}

fn open(cfg: &Config) -> Result<Tallies, Failure> {
    if !cfg.reports.exists() {
        return Err(Failure(format!("no TLS report counters at {} yet", cfg.reports.display()), 1));
    }
    Tallies::open(&cfg.reports).map_err(|e| Failure(e.to_string(), 1))
}

/// `report send`: exit 1 when a destination failed.
pub(crate) fn send(cfg: &Config, date: Option<&str>, now: u64) -> Outcome {
    let day = day(date, now)?;
    let tallies = open(cfg)?;
    let mut store = crate::open_store(cfg, true)?;
    let sent = send::send_day(cfg, &tallies, &mut store, &day, now).map_err(|e| Failure(e, 1))?;
    for s in &sent {
        println!("{day} {} {}: {}", s.domain, s.destination, s.outcome);
    }
    Ok(crate::ok_if(!sent.iter().any(|s| s.outcome.starts_with("failed"))))
}

pub(crate) fn report(cfg: &Config, date: Option<&str>, json: bool, now: u64) -> Outcome {
    let day = day(date, now)?;
    let tallies = open(cfg)?;
    let reports = report::reports(cfg, &tallies, &day).map_err(|e| Failure(e, 1))?;
    if json {
        print_json(&reports.iter().map(|(_, r)| r).collect::<Vec<_>>())?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("TLS reports for {day} (UTC): {} policy domain(s)", reports.len());
    for (domain, r) in &reports {
        for p in &r.policies {
            println!(
                "{domain}  {}  {} successful, {} failed session(s)",
                p.policy.policy_type,
                p.summary.total_successful_session_count,
                p.summary.total_failure_session_count
            );
            for f in &p.failure_details {
                println!(
                    "    {} x{}  mx {} {}  {}",
                    f.result_type,
                    f.failed_session_count,
                    f.receiving_mx_hostname,
                    f.receiving_ip,
                    f.failure_reason_code
                );
            }
        }
    }
    if cfg.report_contact.is_empty() {
        println!("(report_contact is not set: reports name no contact and will not be sent)");
    }
    Ok(ExitCode::SUCCESS)
}
