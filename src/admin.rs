//! What the admin tool (`src/bin/exim-mta-sts/`) knows, gathered with the library's own
//! code: a live diagnosis of a domain ([`check`]), the cached state ([`EntryInfo`]), and
//! the cache maintenance operations. No RFC rule is implemented here: the diagnosis runs
//! [`decide::sts::refresh`] and [`dane::check`] and records what they saw.

use crate::cache::{Entry, Kind, OwnedEntry, Store};
use crate::cause::{Cause, DnsError, FetchError};
use crate::probe::Probe;
use std::time::{Duration, Instant};

/// Probes one MX host: as Exim's DANE would (its authenticated TLSA records) when DANE
/// applies, else as the enforce transport would.
fn probe_host(resolver: &crate::dns::Resolver, host: &str, until: Instant, dane: bool) -> Probe {
    if !dane {
        return crate::probe::probe(resolver, host, until);
    }
    match resolver.tlsa_data(&format!("_25._tcp.{host}")) {
        Ok(a) if a.authentic && !a.items.is_empty() => {
            crate::probe::probe_dane(resolver, host, until, &a.items)
        }
        Ok(_) => Probe::Unreachable(format!("{host}: no DNSSEC-authenticated TLSA records")),
        Err(e) => Probe::Unreachable(e.to_string()),
    }
}

/// The longest one MX host's probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
use crate::config::Config;
use crate::decide::{self, Answer, DaneState, Fetched, Net};
use crate::engine::LiveNet;
use crate::fetch::FetchReport;
use crate::policy::{self, Discovery};
use crate::shared_db::{self, Change};
use crate::{dane, mx};
use serde::Serialize;

/// A TXT lookup as seen: the records, or the temporary failure.
#[derive(Debug, Clone, Serialize)]
pub struct TxtSeen {
    pub name: String,
    pub records: Vec<String>,
    pub error: Option<String>,
}

/// A [`Net`] that records what passes through it.
struct Recorder<'a> {
    net: &'a mut LiveNet,
    txt: Vec<TxtSeen>,
    fetch: Option<(FetchReport, Option<String>)>,
}

impl Net for Recorder<'_> {
    fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError> {
        let r = self.net.txt(name);
        self.txt.push(TxtSeen {
            name: name.to_owned(),
            records: r.clone().unwrap_or_default(),
            error: r.as_ref().err().map(ToString::to_string),
        });
        r
    }

    fn fetch(&mut self, domain: &str) -> Result<Fetched, FetchError> {
        let (report, r) = self.net.fetch_report(domain);
        self.fetch = Some((report, r.as_ref().err().map(|e| e.reason.clone())));
        r
    }

    fn dane(&mut self, domain: &str) -> DaneState {
        self.net.dane(domain)
    }

    fn take_unsigned_nx(&mut self, domain: &str) -> bool {
        self.net.take_unsigned_nx(domain)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StsRecordCheck {
    pub txt: TxtSeen,
    /// "valid", "absent", "several", "invalid: ...", or "DNS failure".
    pub verdict: String,
    pub id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FetchCheck {
    #[serde(flatten)]
    pub report: FetchReport,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyCheck {
    pub mode: String,
    pub max_age: u64,
    pub max_age_clamped: bool,
    pub mx: Vec<String>,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TlsRptCheck {
    pub txt: Option<TxtSeen>,
    pub rua: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MxHost {
    pub preference: u16,
    pub host: String,
    /// Does the policy (enforce or testing) allow it? `None` without such a policy.
    pub allowed: Option<bool>,
    /// What a TLS probe of it found (`None` with `--no-probe`, or when DANE governs).
    pub probe: Option<ProbeReport>,
}

/// What the probe of one MX host found ([`crate::probe`]).
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    pub address: Option<String>,
    /// `ok`, the RFC 8460 result type a delivery would record, or `unreachable`.
    pub result: String,
    pub detail: String,
}

impl ProbeReport {
    fn of(p: Probe, cfg: &Config) -> ProbeReport {
        match p {
            Probe::Ok { address, tls } => {
                ProbeReport { address: Some(address), result: "ok".into(), detail: tls }
            }
            Probe::Failed { address, failure, reason } => ProbeReport {
                address: Some(address),
                result: Cause::Tls(failure)
                    .verdict(cfg.fetch_failure)
                    .result_type
                    .map_or("validation-failure", |r| r.as_str())
                    .to_owned(),
                detail: reason,
            },
            Probe::Unreachable(why) => {
                ProbeReport { address: None, result: "unreachable".into(), detail: why }
            }
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DaneCheck {
    pub enabled: bool,
    pub applies: bool,
    pub why: String,
}

/// A live diagnosis of one domain.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub domain: String,
    pub sts_record: StsRecordCheck,
    pub fetch: Option<FetchCheck>,
    pub policy: Option<PolicyCheck>,
    pub tlsrpt: TlsRptCheck,
    pub dane: DaneCheck,
    pub mx_hosts: Vec<MxHost>,
    pub mx_error: Option<String>,
    /// What `getmta DOMAIN` would answer with nothing cached.
    pub answer: String,
    pub why: String,
    /// Everything an administrator should look at; empty when all is well.
    pub problems: Vec<String>,
}

/// Diagnoses `domain` (normalised) live, as the library would see it with nothing cached;
/// with `probe`, each MX host is also probed over SMTP and STARTTLS (unless DANE governs).
pub fn check(cfg: &Config, domain: &str, now: u64, probe: bool) -> CheckReport {
    let deadline = Instant::now() + Duration::from_secs(cfg.cold_deadline);
    let mut net = LiveNet::new(cfg);
    let mut rec = Recorder { net: &mut net, txt: Vec::new(), fetch: None };
    let mut entry = decide::sts::refresh(domain, None, now, cfg, &mut rec, false);
    let Recorder { txt, fetch, .. } = rec;
    let mut problems = Vec::new();

    let sts_txt = txt.iter().find(|t| t.name.starts_with("_mta-sts.")).cloned().unwrap_or(TxtSeen {
        name: format!("_mta-sts.{domain}"),
        records: Vec::new(),
        error: None,
    });
    let (verdict, id) = match (&sts_txt.error, policy::discover(&sts_txt.records)) {
        (Some(e), _) => {
            problems.push(format!("the _mta-sts TXT lookup failed: {e}"));
            ("DNS failure".to_owned(), None)
        }
        (None, Discovery::Record(r)) => ("valid".to_owned(), Some(r.id)),
        (None, Discovery::NoRecord) => ("absent".to_owned(), None),
        (None, Discovery::Several(n)) => {
            problems.push(format!(
                "{n} STS records: RFC 8461 §3.1 requires exactly one, so senders see no policy"
            ));
            ("several".to_owned(), None)
        }
        (None, Discovery::Invalid(e)) => {
            problems.push(format!("the _mta-sts record is invalid ({e}), so senders see no policy"));
            (format!("invalid: {e}"), None)
        }
    };
    let fetch = fetch.map(|(report, error)| {
        if let Some(e) = &error {
            problems.push(format!("policy fetch failed: {e}"));
        }
        FetchCheck { report, error }
    });
    let policy = (entry.kind == Kind::Policy).then(|| {
        let parsed = policy::parse_policy(&entry.text).ok();
        if parsed.as_ref().is_some_and(|p| p.max_age_clamped) {
            problems.push(format!("max_age is above {}; senders clamp it", policy::MAX_AGE_LIMIT));
        }
        PolicyCheck {
            mode: entry.mode.as_str().to_owned(),
            max_age: parsed.as_ref().map_or(0, |p| p.max_age),
            max_age_clamped: parsed.as_ref().is_some_and(|p| p.max_age_clamped),
            mx: entry.view().mx_patterns().map(str::to_owned).collect(),
            text: entry.text.clone(),
        }
    });
    let tlsrpt_txt = txt.iter().find(|t| t.name.starts_with("_smtp._tls.")).cloned();
    let rua =
        tlsrpt_txt.as_ref().and_then(|t| policy::parse_tlsrpt(&t.records)).map(|t| t.rua).unwrap_or_default();

    let dane = if cfg.dane {
        let st = dane::check(net.resolver(), domain, cfg.dane_min_ttl, cfg.negative_ttl);
        if st.bogus {
            problems.push(st.why.clone());
        }
        entry.dane = st.applies;
        DaneCheck { enabled: true, applies: st.applies, why: st.why }
    } else {
        DaneCheck { enabled: false, applies: false, why: "dane = false in the configuration".to_owned() }
    };

    let sts_patterns: Option<Vec<String>> =
        policy.as_ref().filter(|p| p.mode != "none").map(|p| p.mx.clone());
    let (mx_hosts, mx_error) = match net.resolver().mx(domain) {
        Ok(a) => {
            let mut hosts: Vec<MxHost> = a
                .items
                .into_iter()
                .map(|(preference, host)| MxHost {
                    allowed: sts_patterns
                        .as_ref()
                        .map(|p| mx::host_allowed(p.iter().map(String::as_str), host.as_bytes())),
                    // RFC 8461 §2: with DANE, the MX is checked as Exim's DANE checks it.
                    probe: probe.then(|| {
                        let until = deadline.min(Instant::now() + PROBE_TIMEOUT);
                        ProbeReport::of(probe_host(net.resolver(), &host, until, entry.dane), cfg)
                    }),
                    preference,
                    host,
                })
                .collect();
            hosts.sort_by_key(|h| h.preference);
            (hosts, None)
        }
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    if let Some(p) = &policy {
        let refused: Vec<&str> =
            mx_hosts.iter().filter(|h| h.allowed == Some(false)).map(|h| h.host.as_str()).collect();
        if !refused.is_empty() {
            problems.push(format!(
                "MX host(s) {} not allowed by the policy's mx patterns (mode {})",
                refused.join(", "),
                p.mode
            ));
        }
        for h in mx_hosts.iter().filter(|h| h.allowed != Some(false) && p.mode != "none") {
            if let Some(r) = h.probe.as_ref().filter(|r| r.result != "ok" && r.result != "unreachable") {
                let effect = if p.mode == "enforce" {
                    "an enforce delivery there defers"
                } else {
                    "a delivery there would fail under enforce"
                };
                problems.push(format!("MX host {}: {}: {}; {effect}", h.host, r.result, r.detail));
            }
        }
        if !mx_hosts.is_empty() && refused.len() == mx_hosts.len() && p.mode == "enforce" {
            problems.push(
                "no MX host is allowed by the enforce policy: mail to this domain cannot be delivered"
                    .to_owned(),
            );
        }
    }

    if entry.dane {
        for h in &mx_hosts {
            if let Some(r) = h.probe.as_ref().filter(|r| r.result != "ok" && r.result != "unreachable") {
                problems.push(format!(
                    "MX host {}: {}: {}; a DANE delivery there defers",
                    h.host, r.result, r.detail
                ));
            }
        }
    }
    let answer = decide::fresh(&entry.view(), cfg);
    let why = match (&answer, entry.kind) {
        (Answer::Dane { .. }, _) => format!("DANE applies: {}", dane.why),
        (_, Kind::Policy) => format!("policy id {} fetched, mode {}", entry.id, entry.mode.as_str()),
        (_, Kind::NoSts) => entry.note.clone(),
        (_, Kind::FetchFailed) => {
            format!("valid record but no policy ({}); fetch_failure setting decides", entry.note)
        }
        (_, Kind::TempFail) => format!("temporary DNS failure with nothing cached: {}", entry.note),
    };
    CheckReport {
        domain: domain.to_owned(),
        sts_record: StsRecordCheck { txt: sts_txt, verdict, id },
        fetch,
        policy,
        tlsrpt: TlsRptCheck { txt: tlsrpt_txt, rua },
        dane,
        mx_hosts,
        mx_error,
        answer: answer.as_str().to_owned(),
        why,
        problems,
    }
}

/// The cached state of one domain, as the admin tool shows it. Times are Unix seconds.
#[derive(Debug, Clone, Serialize)]
pub struct EntryInfo {
    pub domain: String,
    /// policy, no-mta-sts, fetch-failed or dns-tempfail.
    pub state: String,
    pub mode: Option<String>,
    pub mx: Vec<String>,
    pub id: Option<String>,
    pub report: Vec<String>,
    pub expires: u64,
    pub expires_in: i64,
    pub checked: u64,
    pub fetched: Option<u64>,
    pub last_used: Option<u64>,
    pub dane: bool,
    pub dane_until: u64,
    /// What getmta answers now from the cache, or "(refresh on next call)".
    pub getmta_now: String,
    /// The last problem, typed ([`crate::cause::Cause::name`]), when there was one.
    pub cause: Option<String>,
    /// Its RFC 8460 result type, when a TLS report counts it.
    pub result_type: Option<String>,
    pub note: Option<String>,
}

impl EntryInfo {
    pub fn new(domain: &str, e: &Entry<&str>, cfg: &Config, now: u64) -> EntryInfo {
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let policy = e.kind == Kind::Policy;
        EntryInfo {
            domain: domain.to_owned(),
            state: e.kind.as_str().to_owned(),
            mode: policy.then(|| e.mode.as_str().to_owned()),
            mx: e.mx_patterns().map(str::to_owned).collect(),
            id: some(e.id),
            report: e.report.split(',').filter(|r| !r.is_empty()).map(str::to_owned).collect(),
            expires: e.expires,
            expires_in: i64::try_from(e.expires).unwrap_or(i64::MAX) - i64::try_from(now).unwrap_or(0),
            checked: e.checked,
            fetched: (policy && e.fetched > 0).then_some(e.fetched),
            last_used: (e.used > 0).then_some(e.used),
            dane: e.dane,
            dane_until: e.dane_until,
            getmta_now: decide::hot(e, now, cfg)
                .map_or_else(|| "(refreshed on the next call)".to_owned(), |a| a.as_str().to_owned()),
            cause: (e.cause != Cause::None).then(|| e.cause.name().to_owned()),
            result_type: e.cause.verdict(cfg.fetch_failure).result_type.map(|r| r.as_str().to_owned()),
            note: some(e.note),
        }
    }
}

/// Every cached domain, sorted.
pub fn list(store: &Store, cfg: &Config, now: u64) -> Result<Vec<EntryInfo>, String> {
    let mut out: Vec<EntryInfo> = store
        .entries()
        .map_err(|e| e.to_string())?
        .iter()
        .filter_map(|(d, bytes)| Entry::decode(bytes).map(|e| EntryInfo::new(d, &e, cfg, now)))
        .collect();
    out.sort_by(|a, b| a.domain.cmp(&b.domain));
    Ok(out)
}

/// Drops `domain` from both databases. Returns whether the store knew it.
pub fn forget(store: &Store, cfg: &Config, domain: &str) -> Result<bool, String> {
    let known = store.forget(domain).map_err(|e| e.to_string())?;
    shared_db::apply(&cfg.database, domain, &Change::Drop)?;
    Ok(known)
}

/// Drops every expired entry from both databases; returns the domains dropped.
pub fn purge(store: &Store, cfg: &Config, now: u64) -> Result<Vec<String>, String> {
    let mut dropped = Vec::new();
    for (domain, bytes) in store.entries().map_err(|e| e.to_string())? {
        let Some(e) = Entry::decode(&bytes) else { continue };
        // An expired policy or negative entry; a lapsed DANE answer alone does not count.
        if now >= e.expires {
            forget(store, cfg, &domain)?;
            dropped.push(domain);
        }
    }
    Ok(dropped)
}

/// The outcome of a proactive refresh of one domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// Fetched; the policy is the same (its expiry moved on).
    Unchanged,
    /// Fetched; the policy changed (or appeared, or went).
    Updated,
    /// The fetch failed; the cached policy stays.
    Failed,
}

/// Compares the entry before and after a refresh: a failed fetch leaves the id that
/// failed in the entry (the cached policy kept); a successful one clears it.
pub fn refresh_outcome(old: &OwnedEntry, new: &OwnedEntry) -> RefreshOutcome {
    let same = old.kind == new.kind && old.mode == new.mode && old.mx == new.mx && old.id == new.id;
    if new.kind == Kind::Policy && !new.failed_id.is_empty() {
        RefreshOutcome::Failed
    } else if same {
        RefreshOutcome::Unchanged
    } else {
        RefreshOutcome::Updated
    }
}
