//! `exim-mta-sts report send`: each policy domain's report for one day, gzipped (RFC 8460
//! §5.1), to the `mailto:` destinations of its TLSRPT record (§5.3: a `multipart/report`
//! message with `report-type="tlsrpt"`, the §5.1 file name, `TLS-Report-Domain`,
//! `TLS-Report-Submitter`, the §5.3 Subject, and `TLS-Required: No` so that report mail is
//! not held to the very policy it reports on, RFC 8460 §3), handed to `report_sendmail`.
//! `https:` destinations get a POST of the gzip (§5.4). Each (day, domain, destination) is
//! sent once; a failed one is tried again on later runs for 24 hours.

use crate::cache::Store;
use crate::config::Config;
use crate::report::{self, Report};
use crate::tally::{Tallies, day_start};
use flate2::Compression;
use flate2::write::GzEncoder;
use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use std::io::Write;

/// How one destination went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub domain: String,
    pub destination: String,
    /// `sent`, `already sent`, `failed: ...`, `given up: ...` or `skipped: ...`.
    pub outcome: String,
}

/// The gzip (RFC 1952) of `bytes`.
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(bytes).and_then(|()| gz.finish()).map_err(|e| e.to_string())
}

/// The §5.1 file name: `sender!policy-domain!begin!end!unique.json.gz`.
pub fn filename(submitter: &str, domain: &str, start: u64, unique: &str) -> String {
    format!("{submitter}!{domain}!{start}!{}!{unique}.json.gz", start + 86_399)
}

/// The report message (RFC 8460 §5.3) to `to`.
pub fn message(
    cfg: &Config,
    to: &str,
    domain: &str,
    r: &Report,
    gz: Vec<u8>,
    file: &str,
) -> Result<Vec<u8>, String> {
    let submitter = cfg.report_contact.rsplit_once('@').map_or("", |(_, d)| d).to_owned();
    let from = if cfg.report_from.is_empty() { cfg.report_contact.clone() } else { cfg.report_from.clone() };
    let text = format!(
        "This is an aggregate TLS report (RFC 8460) from {} for {domain}, {} to {}.\n",
        r.organization_name, r.date_range.start_datetime, r.date_range.end_datetime
    );
    let body = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "tlsrpt"),
        vec![
            MimePart::new("text/plain", text),
            MimePart::new("application/tlsrpt+gzip", gz).attachment(file.to_owned()),
        ],
    );
    MessageBuilder::new()
        .from(from.as_str())
        .to(to)
        // RFC 8460 §5.3's Subject, as plain ASCII (no encoded-word).
        .header(
            "Subject",
            Raw::new(format!("Report Domain: {domain} Submitter: {submitter} Report-ID: <{}>", r.report_id)),
        )
        .header("TLS-Report-Domain", Raw::new(domain.to_owned()))
        .header("TLS-Report-Submitter", Raw::new(submitter))
        .header("TLS-Required", Raw::new("No"))
        .body(body)
        .write_to_vec()
        .map_err(|e| e.to_string())
}

/// Hands `msg` to `report_sendmail`.
fn sendmail(cfg: &Config, msg: &[u8]) -> Result<(), String> {
    let mut words = cfg.report_sendmail.split_whitespace();
    let program = words.next().ok_or("report_sendmail is empty")?;
    let mut child = std::process::Command::new(program)
        .args(words)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("{program}: {e}"))?;
    child.stdin.take().ok_or("no stdin")?.write_all(msg).map_err(|e| e.to_string())?;
    let st = child.wait().map_err(|e| e.to_string())?;
    if st.success() { Ok(()) } else { Err(format!("{program}: {st}")) }
}

/// POSTs `gz` to an `https:` destination (RFC 8460 §5.4: `application/tlsrpt+gzip`),
/// with the system's trust store, no redirect, no proxy, one minute at most.
fn post(url: &str, gz: &[u8]) -> Result<(), String> {
    let agent = ureq::Agent::new_with_config(crate::fetch::strict_config(std::time::Duration::from_secs(60)));
    let resp = agent
        .post(url)
        .header("Content-Type", "application/tlsrpt+gzip")
        .send(gz)
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) { Ok(()) } else { Err(format!("{url}: HTTP status {status}")) }
}

/// The most destinations one domain's report goes to (RFC 8460 §7, R-8460-32: a `rua` list
/// must not turn the sender into an amplifier).
const MAX_DESTINATIONS: usize = 5;

/// A domain's report destinations, from the `rua` stored with its policy (the shared
/// database's `:report` form), at most [`MAX_DESTINATIONS`].
pub fn destinations(rua: &str) -> impl Iterator<Item = &str> {
    rua.split(',').map(str::trim).filter(|d| !d.is_empty()).take(MAX_DESTINATIONS)
}

/// Where sending one (day, domain, destination) stands, from its mark
/// ([`Tallies::sent`]: `ok TIME`, or `failed FIRST-TIME ATTEMPTS REASON`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    NotTried,
    Sent,
    /// Failed, and tried again until 24 hours after the first failure (RFC 8460 §5.5).
    Failing {
        first: u64,
        attempts: u32,
    },
    /// Failed for more than 24 hours: not tried again.
    GivenUp,
}

impl Mark {
    pub fn of(mark: Option<&str>, now: u64) -> Mark {
        let Some(mark) = mark else { return Mark::NotTried };
        let f: Vec<&str> = mark.split(' ').collect();
        if f.first() == Some(&"ok") {
            return Mark::Sent;
        }
        let first = f.get(1).and_then(|t| t.parse::<u64>().ok()).unwrap_or(now);
        let attempts = f.get(2).and_then(|t| t.parse::<u32>().ok()).unwrap_or(1);
        if now > first.saturating_add(86_400) { Mark::GivenUp } else { Mark::Failing { first, attempts } }
    }
}

/// Seconds after the first failure before attempt number `attempts + 1`.
fn retry_wait(attempts: u32) -> u64 {
    let steps: u64 = (0..attempts.saturating_sub(1)).fold(900, |w, _| (w * 2).min(86_400));
    if attempts == 0 { 0 } else { steps.min(86_400) }
}

/// Sends `day`'s reports. Destinations come from the state store (the `rua` stored with
/// each policy).
pub fn send_day(
    cfg: &Config,
    tallies: &Tallies,
    counts: report::Counts,
    store: &mut Store,
    day: &str,
    now: u64,
) -> Result<Vec<Sent>, String> {
    if cfg.report_contact.is_empty() || !cfg.report_contact.contains('@') {
        return Err("report_contact is not set (an addr-spec): nothing is sent".to_owned());
    }
    let start = day_start(day).ok_or_else(|| format!("{day}: not a day"))?;
    let mut out = Vec::new();
    for (domain, r) in report::reports(cfg, counts, day) {
        let rua = store
            .read(&domain, |e| e.map(|e| e.report.to_owned()))
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let dests: Vec<&str> = destinations(&rua).collect();
        if dests.is_empty() {
            out.push(Sent {
                domain: domain.clone(),
                destination: String::new(),
                outcome: "skipped: no rua".into(),
            });
        }
        let json = serde_json::to_vec(&r).map_err(|e| e.to_string())?;
        for dest in dests {
            let sent =
                |outcome: String| Sent { domain: domain.clone(), destination: dest.to_owned(), outcome };
            let before = tallies.sent(day, &domain, dest).map_err(|e| e.to_string())?;
            // RFC 8460 §5.5 (R-8460-30): retried with exponential back-off (15 min, 30 min,
            // 1 h, ...) for 24 hours after the first failure.
            let (first_failure, attempts) = match Mark::of(before.as_deref(), now) {
                Mark::Sent => {
                    out.push(sent("already sent".into()));
                    continue;
                }
                Mark::GivenUp => {
                    out.push(sent("given up: failing for more than 24 hours".into()));
                    continue;
                }
                Mark::Failing { first, attempts } => (first, attempts),
                Mark::NotTried => (now, 0),
            };
            let next = first_failure + retry_wait(attempts);
            if attempts > 0 && now < next {
                out.push(sent(format!("waiting: tried {attempts} time(s), next try after {next}")));
                continue;
            }
            let file = filename(
                cfg.report_contact.rsplit('@').next().unwrap_or(""),
                &domain,
                start,
                &format!("{now}"),
            );
            let result = if dest.starts_with("https://") {
                gzip(&json).and_then(|gz| post(dest, &gz))
            } else if dest.contains(':') {
                Err(format!("{dest}: not a mailto: or https: destination"))
            } else {
                gzip(&json)
                    .and_then(|gz| message(cfg, dest, &domain, &r, gz, &file))
                    .and_then(|m| sendmail(cfg, &m))
            };
            let (mark, outcome) = match result {
                Ok(()) => (format!("ok {now}"), "sent".to_owned()),
                Err(e) => (format!("failed {first_failure} {} {e}", attempts + 1), format!("failed: {e}")),
            };
            tallies.mark_sent(day, &domain, dest, &mark).map_err(|e| e.to_string())?;
            out.push(sent(outcome));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially() {
        // After 1, 2, 3 ... failed attempts: wait 15 min, 30 min, 1 h ... from the first.
        let waits: Vec<u64> = (0..9).map(retry_wait).collect();
        assert_eq!(waits, [0, 900, 1800, 3600, 7200, 14_400, 28_800, 57_600, 86_400]);
    }
}
