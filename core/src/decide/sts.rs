//! The MTA-STS part of the cold path (RFC 8461 §3, §5.1): from what is cached and what DNS
//! and the policy host answer now, the entry to store. Every failure is a typed
//! [`Cause`], and its answer and log wording come from [`Cause::verdict`].

use super::net::{Fetched, Net};
use crate::cache::{Entry, Kind, OwnedEntry};
use crate::cause::{Cause, FetchError, FetchFailure};
use crate::config::Config;
use crate::log::{self, Level};
use crate::policy::{self, Discovery, Mode};

fn unexpired_policy<'a>(cached: Option<&Entry<&'a str>>, now: u64) -> Option<Entry<&'a str>> {
    cached.filter(|e| e.kind == Kind::Policy && now < e.expires).copied()
}

/// Keeps a cached, unexpired policy (RFC 8461 §3.3: "if no "live" policy can be
/// discovered via DNS or fetched via HTTPS, but a valid (non-expired) policy exists in
/// the sender's cache, the sender MUST apply that cached policy").
fn keep(p: &Entry<&str>, now: u64) -> OwnedEntry {
    let mut e = p.to_owned_entry();
    e.checked = now;
    e
}

/// Why the `_mta-sts` TXT lookup gave no usable record, and the details.
struct NoRecord {
    cause: Cause,
    detail: String,
}

fn discover_id(domain: &str, net: &mut dyn Net) -> Result<String, NoRecord> {
    let records = net
        .txt(&format!("_mta-sts.{domain}"))
        .map_err(|e| NoRecord { cause: Cause::from(&e), detail: e.to_string() })?;
    let no = |cause, detail: String| Err(NoRecord { cause, detail });
    match policy::discover(&records) {
        Discovery::Record(r) => Ok(r.id),
        // RFC 8461 §3.1: not exactly one record means no policy.
        Discovery::Several(n) => no(Cause::SeveralRecords, format!("{n} records (RFC 8461 §3.1)")),
        Discovery::Invalid(e) => no(Cause::InvalidRecord, e.to_string()),
        Discovery::NoRecord => no(Cause::NoRecord, String::new()),
    }
}

/// The log line for `cause` ([`Cause::log`]).
fn say(domain: &str, cause: Cause, cfg: &Config, detail: &str, tail: &str) {
    cause.log(cfg.fetch_failure, domain, detail, tail);
}

/// A cached policy kept although `cause` went wrong: said at the verdict's level, except
/// for a policy in mode `none` (RFC 8461 §10.2 alerts on failed refreshes are for policies
/// that protect something; RFC.md A-25).
fn say_kept(domain: &str, p: &Entry<&str>, cause: Cause, cfg: &Config, detail: &str) {
    let v = cause.verdict(cfg.fetch_failure);
    let level = if p.mode == Mode::None { Level::Info } else { v.level };
    log::write(
        level,
        &format!(
            "domain={domain} source=cache mode={}: {}: {detail}; keeping the cached policy (id={})",
            p.mode.as_str(),
            v.words,
            p.id
        ),
    );
}

/// An entry of `kind` recording `cause`.
fn failed(kind: Kind, until: u64, now: u64, cause: Cause, detail: String) -> OwnedEntry {
    let mut e = OwnedEntry::bare(kind, until, now);
    e.cause = cause;
    e.note = detail;
    e
}

/// The MTA-STS refresh for `domain` (A-label form), given what the store holds (`cached`).
/// Returns the entry to store; [`super::fresh`] of it is the answer.
///
/// `proactive` is the admin tool's refresh (RFC 8461 §3.3, §10.2): a cached policy is
/// fetched again whatever its age and, if the TXT record cannot be had, under its cached
/// id ("fetching the current live policy … regardless of the state of the "_mta-sts" TXT
/// record, and updating their cache's "max age" accordingly").
pub fn refresh(
    domain: &str,
    cached: Option<&Entry<&str>>,
    now: u64,
    cfg: &Config,
    net: &mut dyn Net,
    proactive: bool,
) -> OwnedEntry {
    if let Some(c) = cached.filter(|c| c.kind == Kind::Policy && now >= c.expires) {
        let until = c.fetched.saturating_add(cfg.fetch_backoff());
        if now < until {
            return expired_early(domain, c, until, now, cfg);
        }
    }
    let policy = unexpired_policy(cached, now);
    let id = match (discover_id(domain, net), policy) {
        (Ok(id), _) => id,
        (Err(_), Some(p)) if proactive => p.id.to_owned(),
        (Err(NoRecord { cause: Cause::Dns, detail }), Some(p)) => {
            say_kept(domain, &p, Cause::Dns, cfg, &detail);
            return keep(&p, now);
        }
        (Err(NoRecord { cause: Cause::Dns, detail }), None) => {
            // SPEC §4: a temporary DNS failure with nothing cached answers `fail`.
            say(domain, Cause::Dns, cfg, &detail, ", and no policy is cached");
            return failed(Kind::TempFail, now.saturating_add(cfg.tempfail_ttl), now, Cause::Dns, detail);
        }
        // RFC 8461 §3.1: "the absence of a usable TXT record is not by itself sufficient
        // to remove a sender's previously cached policy".
        (Err(NoRecord { cause, detail }), Some(p)) => {
            let v = cause.verdict(cfg.fetch_failure);
            log::info(&format!(
                "domain={domain} source=cache mode={}: {} {detail}; the cached policy stays until it expires",
                p.mode.as_str(),
                v.words
            ));
            return keep(&p, now);
        }
        (Err(NoRecord { cause, detail }), None) => {
            log::debug(|| {
                format!("domain={domain} mode=none: {} {detail}", cause.verdict(cfg.fetch_failure).words)
            });
            let until = now.saturating_add(cfg.negative_ttl);
            return failed(Kind::NoSts, until, now, cause, detail);
        }
    };
    // RFC 8461 §3.3: after a failed fetch, wait five minutes or more per version id.
    let backing_off = cached.is_some_and(|c| c.failed_id == id && now < c.retry_after);
    if let Some(p) = policy.filter(|p| p.id == id) {
        // RFC 8461 §3: same id and unexpired: no fetch needed, unless the policy is due
        // for its proactive refresh (§3.3: "MTAs SHOULD proactively refresh cached
        // policies before they expire"), which is not retried within the back-off.
        let due = proactive || now >= p.fetched.saturating_add(cfg.refresh_after);
        if !due || backing_off {
            return keep(&p, now);
        }
    }
    let result = if backing_off {
        Err(FetchError {
            kind: FetchFailure::BackingOff,
            reason: format!("not retried before {}s have passed since the last failure", cfg.fetch_backoff()),
        })
    } else {
        net.fetch(domain)
    };
    match result {
        Ok(fetched) => stored_policy(domain, &id, fetched, now, net),
        Err(e) => {
            let mut f = failed_fetch(domain, &id, cached, policy, &e, now, cfg, backing_off);
            // RFC 8460 §3: who is told of this failure (sts-policy-*), when no cached
            // policy carries it: asked once per failed fetch, kept while backing off.
            if f.report.is_empty() {
                f.report = match cached.filter(|c| !c.report.is_empty()) {
                    Some(c) if backing_off => c.report.to_owned(),
                    _ if backing_off => String::new(),
                    _ => tlsrpt_of(domain, net),
                };
            }
            f
        }
    }
}

/// The TLSRPT destinations of `domain` (RFC 8460 §3), in the shared database's form; a
/// failed lookup gives none.
fn tlsrpt_of(domain: &str, net: &mut dyn Net) -> String {
    net.txt(&format!("_smtp._tls.{domain}"))
        .ok()
        .and_then(|r| policy::parse_tlsrpt(&r))
        .map(|t| t.report_value())
        .unwrap_or_default()
}

/// RFC.md A-05: a policy with `max_age: 0` (or one shorter than `fetch_backoff`) applied
/// to the delivery in flight and has expired. It is never applied past its max_age, and not
/// fetched again before `fetch_backoff` has passed since its fetch, so that a hostile
/// domain cannot make every delivery cost a fetch (nor a TXT query): until then the domain
/// answers as after a failed fetch, and the shared database drops the policy.
fn expired_early(domain: &str, p: &Entry<&str>, until: u64, now: u64, cfg: &Config) -> OwnedEntry {
    let max_age = p.expires.saturating_sub(p.fetched);
    let detail = format!("max_age {max_age}s; id={} not fetched again before {until}", p.id);
    say(domain, Cause::Expired, cfg, &detail, "");
    let mut f = failed(Kind::FetchFailed, until, now, Cause::Expired, detail);
    f.retry_after = until;
    f.id = p.id.to_owned();
    f
}

fn stored_policy(domain: &str, id: &str, fetched: Fetched, now: u64, net: &mut dyn Net) -> OwnedEntry {
    let p = &fetched.policy;
    if p.max_age_clamped {
        // RFC.md A-03.
        log::warn(&format!("domain={domain}: max_age above {} clamped", policy::MAX_AGE_LIMIT));
    }
    // RFC 8460 §3: the TLSRPT record; a failed lookup just leaves it empty.
    let report = tlsrpt_of(domain, net);
    log::info(&format!(
        "domain={domain} mode={} source=fetch id={id} max_age={} mx={}",
        p.mode.as_str(),
        p.max_age,
        p.mx.join(":")
    ));
    // RFC 8461 §3.2: cached "for up to this value from the last policy fetch time".
    let mut e = OwnedEntry::bare(Kind::Policy, now.saturating_add(p.max_age), now);
    e.mode = p.mode;
    e.fetched = now;
    e.id = id.to_owned();
    e.mx = p.mx.join(":");
    e.report = report;
    e.text = fetched.text;
    e
}

#[allow(clippy::too_many_arguments)]
fn failed_fetch(
    domain: &str,
    id: &str,
    cached: Option<&Entry<&str>>,
    policy: Option<Entry<&str>>,
    e: &FetchError,
    now: u64,
    cfg: &Config,
    backing_off: bool,
) -> OwnedEntry {
    let cause = Cause::from(e);
    let retry_after = if backing_off {
        cached.map(|c| c.retry_after).unwrap_or(now)
    } else {
        now.saturating_add(cfg.fetch_backoff())
    };
    let detail = format!("id={id}: {e}");
    let mut out = match policy {
        Some(p) => {
            // RFC 8461 §3.3 / §10.2: alert on failed refreshes, unless the mode is none.
            if !backing_off {
                say_kept(domain, &p, cause, cfg, &detail);
            }
            keep(&p, now)
        }
        None => {
            if !backing_off {
                say(domain, cause, cfg, &detail, "");
            }
            let mut f = OwnedEntry::bare(Kind::FetchFailed, retry_after, now);
            f.id = id.to_owned();
            f
        }
    };
    out.retry_after = retry_after;
    out.failed_id = id.to_owned();
    out.cause = cause;
    out.note = e.reason.clone();
    out
}
