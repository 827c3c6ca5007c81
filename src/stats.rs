//! `exim-mta-sts stats` (issue 12): how the cache and the TLS reports are doing, from the
//! three databases, as words, JSON or the Prometheus text format (for node_exporter's
//! textfile collector). Everything here is read by the tool; nothing is counted on the hot
//! path (fetch outcomes are counted by the helper and the tool: [`crate::counters`]).

use crate::cache::{Entry, Kind, Store};
use crate::cause::Cause;
use crate::config::Config;
use crate::counters::RefreshRun;
use crate::send::{self, Mark};
use crate::tally::{self, Tallies};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A policy is "in use" when Exim (or `prefetch`) needed it within this many seconds: the
/// window `exim-mta-sts refresh` keeps fresh by default (`--used-within 30`).
pub const IN_USE: u64 = 30 * 86_400;

/// Today's TLS sessions (RFC 8460 counts), summed over domains.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Sessions {
    pub successes: u64,
    pub failures: u64,
}

/// The reports of the days `report send` covers (yesterday and the day before), one per
/// (day, domain, destination).
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Reports {
    /// Not sent yet (never tried, or failed and still retried).
    pub pending: u64,
    pub sent: u64,
    /// Given up after 24 hours of failures (RFC 8460 §5.5).
    pub failed: u64,
}

/// Everything `stats` prints.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// When these figures were read (Unix seconds).
    pub time: u64,
    /// Unexpired policies by mode (`enforce`, `testing`, `none`).
    pub policies: BTreeMap<String, u64>,
    /// Unexpired entries by state (`policy`, `no-mta-sts` = negatively cached,
    /// `fetch-failed`, `dns-tempfail`), and `expired` for the rest.
    pub domains: BTreeMap<String, u64>,
    /// Domains whose mail goes by DANE (SPEC §5), as last checked and still valid.
    pub dane_domains: u64,
    /// Unexpired policies that expire within a day.
    pub expiring_within_a_day: u64,
    /// Age in seconds of the oldest unexpired policy's fetch.
    pub oldest_policy_age: Option<u64>,
    /// Policies in use ([`IN_USE`]) whose last refresh or TXT check failed.
    pub refresh_failing: u64,
    /// Age of the fetch of the oldest of those (how long it has gone without a good fetch).
    pub refresh_failing_age: Option<u64>,
    /// Policy fetches by outcome (`ok` or the cause's name) over the last hour and day.
    pub fetches_last_hour: BTreeMap<String, u64>,
    pub fetches_last_day: BTreeMap<String, u64>,
    /// Since the counters' file was made.
    pub fetches_total: BTreeMap<String, u64>,
    /// The last `exim-mta-sts refresh` run.
    pub last_refresh: Option<RefreshRun>,
    /// File sizes in bytes: `state`, `shared`, `reports` (absent files are left out).
    pub database_bytes: BTreeMap<String, u64>,
    pub tls_sessions_today: Sessions,
    pub reports: Reports,
    /// Problems met while reading (a database that could not be opened, say).
    pub problems: Vec<String>,
}

/// Reads the figures at `now`.
pub fn gather(cfg: &Config, store: Option<&Store>, now: u64) -> Stats {
    let mut s = Stats { time: now, ..Stats::default() };
    // Each domain's TLSRPT destinations, for the reports' states.
    let mut rua: BTreeMap<String, String> = BTreeMap::new();
    if let Some(store) = store {
        match store.entries() {
            Ok(all) => {
                for (d, bytes) in all {
                    if let Some(e) = Entry::decode(&bytes) {
                        s.add_entry(&e, now);
                        rua.insert(d, e.report.to_owned());
                    }
                }
            }
            Err(e) => s.problems.push(format!("state store: {e}")),
        }
    }
    for (name, path) in [("state", &cfg.state), ("shared", &cfg.database), ("reports", &cfg.reports)] {
        if let Ok(m) = std::fs::metadata(path) {
            s.database_bytes.insert(name.to_owned(), m.len());
        }
    }
    if cfg.reports.exists() {
        match Tallies::open(&cfg.reports) {
            Ok(t) => s.add_counters(&t, &rua, now),
            Err(e) => s.problems.push(format!("report counters: {e}")),
        }
    }
    s
}

impl Stats {
    fn add_entry(&mut self, e: &Entry<&str>, now: u64) {
        if now >= e.expires {
            *self.domains.entry("expired".to_owned()).or_default() += 1;
            return;
        }
        *self.domains.entry(e.kind.as_str().to_owned()).or_default() += 1;
        if e.dane && now < e.dane_until {
            self.dane_domains += 1;
        }
        if e.kind != Kind::Policy {
            return;
        }
        *self.policies.entry(e.mode.as_str().to_owned()).or_default() += 1;
        if e.expires <= now.saturating_add(86_400) {
            self.expiring_within_a_day += 1;
        }
        let age = now.saturating_sub(e.fetched);
        self.oldest_policy_age = Some(self.oldest_policy_age.map_or(age, |a| a.max(age)));
        if e.cause != Cause::None && e.used.saturating_add(IN_USE) >= now {
            self.refresh_failing += 1;
            self.refresh_failing_age = Some(self.refresh_failing_age.map_or(age, |a| a.max(age)));
        }
    }

    fn add_counters(&mut self, t: &Tallies, rua: &BTreeMap<String, String>, now: u64) {
        let problem = |what: &str, e: &dyn std::fmt::Display| format!("report counters ({what}): {e}");
        match (t.recent(now, 3600), t.recent(now, 86_400), t.totals()) {
            (Ok(h), Ok(d), Ok(all)) => {
                (self.fetches_last_hour, self.fetches_last_day, self.fetches_total) = (h, d, all)
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => self.problems.push(problem("fetches", &e)),
        }
        match t.refresh_run() {
            Ok(r) => self.last_refresh = r,
            Err(e) => self.problems.push(problem("refresh", &e)),
        }
        match t.day(&tally::day_of(now)) {
            Ok(day) => {
                for (_, _, n) in day {
                    self.tls_sessions_today.successes += n.successes;
                    self.tls_sessions_today.failures += n.failures;
                }
            }
            Err(e) => self.problems.push(problem("today", &e)),
        }
        // The days `report send` covers: yesterday and the day before.
        for back in [1, 2] {
            let day = tally::day_of(now.saturating_sub(back * 86_400));
            if let Err(e) = self.add_reports(t, rua, &day, now) {
                self.problems.push(problem("reports", &e));
            }
        }
    }

    fn add_reports(
        &mut self,
        t: &Tallies,
        rua: &BTreeMap<String, String>,
        day: &str,
        now: u64,
    ) -> Result<(), String> {
        let mut domains: Vec<String> =
            t.day(day).map_err(|e| e.to_string())?.into_iter().map(|(d, _, _)| d).collect();
        domains.dedup();
        for domain in domains {
            let rua = rua.get(&domain).map_or("", String::as_str);
            for dest in send::destinations(rua) {
                let mark = t.sent(day, &domain, dest).map_err(|e| e.to_string())?;
                match Mark::of(mark.as_deref(), now) {
                    Mark::Sent => self.reports.sent += 1,
                    Mark::GivenUp => self.reports.failed += 1,
                    Mark::NotTried | Mark::Failing { .. } => self.reports.pending += 1,
                }
            }
        }
        Ok(())
    }
}

/// One metric family in the Prometheus text exposition format (version 0.0.4).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP exim_mta_sts_{name} {help}");
    let _ = writeln!(out, "# TYPE exim_mta_sts_{name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "exim_mta_sts_{name}{labels} {v}");
    }
}

/// `{key="value"}`, the value escaped as the format says.
fn label(key: &str, value: &str) -> String {
    let v = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    format!("{{{key}=\"{v}\"}}")
}

fn by(key: &str, m: &BTreeMap<String, u64>, always: &[&str]) -> Vec<(String, u64)> {
    let mut all: BTreeMap<&str, u64> = always.iter().map(|k| (*k, 0)).collect();
    for (k, v) in m {
        all.insert(k, *v);
    }
    all.into_iter().map(|(k, v)| (label(key, k), v)).collect()
}

fn one(v: u64) -> Vec<(String, u64)> {
    vec![(String::new(), v)]
}

/// The figures in the Prometheus text format.
pub fn prometheus(s: &Stats) -> String {
    let mut o = String::new();
    let modes = ["enforce", "testing", "none"];
    family(
        &mut o,
        "policies",
        "gauge",
        "Unexpired cached MTA-STS policies by mode.",
        &by("mode", &s.policies, &modes),
    );
    let states = ["policy", "no-mta-sts", "fetch-failed", "dns-tempfail", "expired"];
    family(
        &mut o,
        "domains",
        "gauge",
        "Cached domains by state (no-mta-sts: negatively cached).",
        &by("state", &s.domains, &states),
    );
    family(&mut o, "dane_domains", "gauge", "Cached domains whose mail goes by DANE.", &one(s.dane_domains));
    family(
        &mut o,
        "policies_expiring_within_a_day",
        "gauge",
        "Unexpired policies that expire within 24 hours.",
        &one(s.expiring_within_a_day),
    );
    family(
        &mut o,
        "oldest_policy_age_seconds",
        "gauge",
        "Age of the oldest unexpired policy's fetch.",
        &one(s.oldest_policy_age.unwrap_or(0)),
    );
    family(
        &mut o,
        "policies_refresh_failing",
        "gauge",
        "Policies in use whose last refresh or check failed.",
        &one(s.refresh_failing),
    );
    family(
        &mut o,
        "refresh_failing_age_seconds",
        "gauge",
        "Age of the last good fetch of the oldest policy in use whose refresh fails (0: none fails).",
        &one(s.refresh_failing_age.unwrap_or(0)),
    );
    family(
        &mut o,
        "policy_fetches_total",
        "counter",
        "Policy fetches by outcome (ok, or the cause of the failure).",
        &by("result", &s.fetches_total, &["ok"]),
    );
    let mut recent = by("result", &s.fetches_last_hour, &["ok"]);
    for r in &mut recent {
        r.0 = r.0.replacen('{', "{window=\"1h\",", 1);
    }
    for (l, v) in by("result", &s.fetches_last_day, &["ok"]) {
        recent.push((l.replacen('{', "{window=\"24h\",", 1), v));
    }
    family(
        &mut o,
        "policy_fetches_recent",
        "gauge",
        "Policy fetches by outcome over the last hour (1h) or day (24h).",
        &recent,
    );
    let r = s.last_refresh.as_ref();
    family(
        &mut o,
        "last_refresh_timestamp_seconds",
        "gauge",
        "When the last refresh run finished (0: never).",
        &one(r.map_or(0, |r| r.finished)),
    );
    let outcomes = r.map_or_else(BTreeMap::new, |r| {
        BTreeMap::from([
            ("unchanged", r.unchanged),
            ("changed", r.changed),
            ("failed", r.failed),
            ("busy", r.busy),
        ])
    });
    let outcomes: Vec<(String, u64)> = outcomes.into_iter().map(|(k, v)| (label("outcome", k), v)).collect();
    family(
        &mut o,
        "last_refresh_policies",
        "gauge",
        "Policies of the last refresh run by outcome.",
        &outcomes,
    );
    let dbs = s.database_bytes.iter().map(|(k, v)| (label("database", k), *v)).collect::<Vec<_>>();
    family(&mut o, "database_size_bytes", "gauge", "Size of each database file.", &dbs);
    let t = &s.tls_sessions_today;
    let sessions = vec![(label("result", "success"), t.successes), (label("result", "failure"), t.failures)];
    family(
        &mut o,
        "tls_sessions_today",
        "gauge",
        "TLS sessions counted for today's RFC 8460 reports (UTC day).",
        &sessions,
    );
    let rp = &s.reports;
    let reports = vec![
        (label("state", "pending"), rp.pending),
        (label("state", "sent"), rp.sent),
        (label("state", "failed"), rp.failed),
    ];
    family(
        &mut o,
        "reports",
        "gauge",
        "TLS reports of yesterday and the day before, per destination, by state.",
        &reports,
    );
    family(
        &mut o,
        "stats_problems",
        "gauge",
        "Databases that could not be read for these figures.",
        &one(s.problems.len() as u64),
    );
    family(&mut o, "stats_timestamp_seconds", "gauge", "When these figures were read.", &one(s.time));
    o
}
