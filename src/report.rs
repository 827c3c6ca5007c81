//! RFC 8460 aggregate reports (§4, SPEC §10) built from the counters the library keeps
//! ([`crate::tally`]): one report per policy domain and UTC day, with the keys of §4.4's
//! skeleton exactly (RFC.md A-20: `mx-host` an array), the day as 00:00:00Z-23:59:59Z
//! IP addresses in RFC 5952 form.

use crate::config::Config;
use crate::tally::{PolicySeen, Tallies, Tally};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Report {
    pub organization_name: String,
    pub date_range: DateRange,
    pub contact_info: String,
    pub report_id: String,
    pub policies: Vec<PolicyReport>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DateRange {
    pub start_datetime: String,
    pub end_datetime: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub policy: Policy,
    pub summary: Summary,
    #[serde(rename = "failure-details", skip_serializing_if = "Vec::is_empty")]
    pub failure_details: Vec<FailureDetail>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Policy {
    pub policy_type: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_string: Vec<String>,
    pub policy_domain: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mx_host: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Summary {
    pub total_successful_session_count: u64,
    pub total_failure_session_count: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FailureDetail {
    pub result_type: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sending_mta_ip: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub receiving_mx_hostname: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub receiving_ip: String,
    pub failed_session_count: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub failure_reason_code: String,
}

/// An IP address in RFC 5952 form (RFC 8460 §4.4); anything else is dropped.
fn ip(s: &str) -> String {
    s.parse::<std::net::IpAddr>().map(|a| a.to_string()).unwrap_or_default()
}

fn policy_report(domain: &str, p: &PolicySeen, t: &Tally) -> PolicyReport {
    let sts = p.kind == "sts";
    PolicyReport {
        policy: Policy {
            policy_type: p.kind.clone(),
            // RFC 8460 §4.5: the policy as published, one element per line.
            policy_string: if sts {
                p.text
                    .lines()
                    .map(|l| l.trim_end_matches('\r').to_owned())
                    .filter(|l| !l.is_empty())
                    .collect()
            } else {
                Vec::new()
            },
            policy_domain: domain.to_owned(),
            mx_host: if sts {
                p.mx.split(':').filter(|m| !m.is_empty()).map(str::to_owned).collect()
            } else {
                Vec::new()
            },
        },
        summary: Summary {
            total_successful_session_count: t.successes,
            total_failure_session_count: t.failures,
        },
        failure_details: t
            .details
            .iter()
            .map(|(d, n)| FailureDetail {
                result_type: d.result.clone(),
                sending_mta_ip: ip(&d.sending_ip),
                receiving_mx_hostname: d.mx.clone(),
                receiving_ip: ip(&d.receiving_ip),
                failed_session_count: *n,
                failure_reason_code: d.reason.clone(),
            })
            .collect(),
    }
}

/// This host's name (the default `organization-name`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// One day's counts: (policy domain, policy, tally).
pub type Counts = Vec<(String, PolicySeen, Tally)>;

/// This host's counts for `day`, plus those of other hosts' exports (`--merge`).
pub fn counts(tallies: &Tallies, day: &str, merge: &[Export]) -> Result<Counts, String> {
    let mut all = tallies.day(day).map_err(|e| e.to_string())?;
    for e in merge {
        if e.day != day {
            return Err(format!("an export of {} (from {}) cannot be merged into {day}", e.day, e.host));
        }
        for c in &e.counts {
            let policy = PolicySeen {
                kind: c.kind.clone(),
                mode: c.mode.clone(),
                id: c.id.clone(),
                mx: c.mx.clone(),
                text: c.text.clone(),
            };
            let i = match all.iter().position(|(d, p, _)| *d == c.domain && p.key() == policy.key()) {
                Some(i) => i,
                None => {
                    all.push((c.domain.clone(), policy, Tally::default()));
                    all.len() - 1
                }
            };
            if let Some((_, _, t)) = all.get_mut(i) {
                t.successes += c.successes;
                t.failures += c.failures;
                for d in &c.details {
                    *t.details.entry(d.detail.clone()).or_default() += d.count;
                }
            }
        }
    }
    Ok(all)
}

/// One host's counters for a day, as `report export` writes them and `report --merge`
/// reads them (RFC 8460 §4: one report per organisation, not per host).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Export {
    pub day: String,
    pub host: String,
    pub counts: Vec<ExportCount>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ExportCount {
    pub domain: String,
    pub kind: String,
    pub mode: String,
    pub id: String,
    pub mx: String,
    pub text: String,
    pub successes: u64,
    pub failures: u64,
    pub details: Vec<ExportDetail>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ExportDetail {
    #[serde(flatten)]
    pub detail: crate::tally::Detail,
    pub count: u64,
}

/// This host's counters for `day`.
pub fn export(tallies: &Tallies, day: &str) -> Result<Export, String> {
    let counts = tallies
        .day(day)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(domain, p, t)| ExportCount {
            domain,
            kind: p.kind,
            mode: p.mode,
            id: p.id,
            mx: p.mx,
            text: p.text,
            successes: t.successes,
            failures: t.failures,
            details: t.details.into_iter().map(|(detail, count)| ExportDetail { detail, count }).collect(),
        })
        .collect();
    Ok(Export { day: day.to_owned(), host: host_name(), counts })
}

/// The reports for UTC day `day` (`YYYY-MM-DD`) from `counts`, by policy domain.
pub fn reports(cfg: &Config, counts: Counts, day: &str) -> Vec<(String, Report)> {
    let mut by_domain: BTreeMap<String, Vec<PolicyReport>> = BTreeMap::new();
    for (domain, policy, tally) in counts {
        by_domain.entry(domain.clone()).or_default().push(policy_report(&domain, &policy, &tally));
    }
    let org = if cfg.report_org.is_empty() { host_name() } else { cfg.report_org.clone() };
    by_domain
        .into_iter()
        .map(|(domain, policies)| {
            let report = Report {
                organization_name: org.clone(),
                date_range: DateRange {
                    start_datetime: format!("{day}T00:00:00Z"),
                    end_datetime: format!("{day}T23:59:59Z"),
                },
                contact_info: cfg.report_contact.clone(),
                report_id: format!("{day}T00:00:00Z_{domain}@{}", host_name()),
                policies,
            };
            (domain, report)
        })
        .collect()
}
