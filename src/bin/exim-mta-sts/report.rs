//! `exim-mta-sts report`: the TLS reports (RFC 8460) for one UTC day, from the counters the
//! library keeps (SPEC §10).

use crate::{Failure, Outcome, print_json, usage};
use exim_mta_sts_tool::cache::Store;
use exim_mta_sts_tool::config::Config;
use exim_mta_sts_tool::tally::{Tallies, day_of};
use exim_mta_sts_tool::{report, send};
use std::path::PathBuf;
use std::process::ExitCode;

/// Days of counts kept: today and the week before.
const KEEP_DAYS: u64 = 7;

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

/// Reads the `--merge` files.
fn exports(files: &[PathBuf]) -> Result<Vec<report::Export>, Failure> {
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(|e| usage(format!("{}: {e}", f.display())))?;
            serde_json::from_str(&text)
                .map_err(|e| usage(format!("{}: not a report export: {e}", f.display())))
        })
        .collect()
}

/// `report`, `report send`, `report export`.
pub(crate) fn run(
    cfg: &Config,
    action: Option<&str>,
    date: Option<&str>,
    json: bool,
    merge: &[PathBuf],
    now: u64,
) -> Outcome {
    let day = day(date, now)?;
    let tallies = open(cfg)?;
    let merged = exports(merge)?;
    match action {
        Some("export") => {
            print_json(&report::export(&tallies, &day).map_err(|e| Failure(e, 1))?)?;
            Ok(ExitCode::SUCCESS)
        }
        Some(_) => {
            // Without --date: yesterday, and the day before for the retries of failed
            // destinations (RFC 8460 §5.5: for 24 hours after the first attempt).
            let mut days = vec![day];
            if date.is_none() {
                days.push(day_of(now.saturating_sub(2 * 86_400)));
            }
            let mut all_ok = true;
            let mut store = crate::open_store(cfg, true)?;
            for day in days {
                let counts = report::counts(&tallies, &day, &merged).map_err(|e| Failure(e, 1))?;
                all_ok &= send(cfg, &tallies, counts, &mut store, &day, now)?;
            }
            // The hourly run also keeps the file from growing for ever: a week is kept (for
            // `report --date`), older days go.
            let first_kept = day_of(now.saturating_sub(KEEP_DAYS * 86_400));
            if let Err(e) = tallies.prune(&first_kept) {
                eprintln!("report: days before {first_kept} not dropped from {}: {e}", cfg.reports.display());
            }
            Ok(crate::ok_if(all_ok))
        }
        None => {
            let counts = report::counts(&tallies, &day, &merged).map_err(|e| Failure(e, 1))?;
            show(cfg, counts, &day, json)
        }
    }
}

/// `report send` of one day; false when a destination failed.
fn send(
    cfg: &Config,
    tallies: &Tallies,
    counts: report::Counts,
    store: &mut Store,
    day: &str,
    now: u64,
) -> Result<bool, Failure> {
    let sent = send::send_day(cfg, tallies, counts, store, day, now).map_err(|e| Failure(e, 1))?;
    for s in &sent {
        println!("{day} {} {}: {}", s.domain, s.destination, s.outcome);
    }
    Ok(!sent.iter().any(|s| s.outcome.starts_with("failed")))
}

fn show(cfg: &Config, counts: report::Counts, day: &str, json: bool) -> Outcome {
    let reports = report::reports(cfg, counts, day);
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
