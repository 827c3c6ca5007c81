//! The decision (RFC 8461 §5.1, SPEC §4): from what the store holds, the clock, DNS and
//! the policy host, what applies to a domain now.
//!
//! [`hot`] answers from a stored entry alone, with no I/O: the common case. [`refresh`]
//! is the cold path: it asks DNS (and the policy host when needed) and returns the entry
//! to store. Both take the time and the network as arguments.

use crate::cache::{Entry, Kind, OwnedEntry};
use crate::config::{Config, FetchFailure};
use crate::dns::DnsError;
use crate::fetch::{FetchError, Fetched};
use crate::log;
use crate::policy::{self, Discovery, Mode};

/// What applies to a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// A policy is in effect (any mode, `none` included), with its `mx` patterns.
    Policy { mode: Mode, mx: &'a str },
    /// No MTA-STS policy applies.
    NoPolicy,
    /// The state cannot safely be known now (SPEC §4): the caller answers `fail`/`0`.
    Fail,
    /// DANE applies and takes precedence (SPEC §5, RFC 8461 §2). `mx` is the cached MTA-STS
    /// policy's patterns, if any (for `getmx`).
    Dane { mx: &'a str },
}

impl Answer<'_> {
    /// What `getmta DOMAIN` answers (SPEC §2), NUL-terminated for the C boundary.
    pub fn word(&self) -> &'static std::ffi::CStr {
        match self {
            Answer::Policy { mode: Mode::Enforce, .. } => c"enforce",
            Answer::Policy { mode: Mode::Testing, .. } => c"testing",
            Answer::Policy { mode: Mode::None, .. } | Answer::NoPolicy => c"none",
            Answer::Fail => c"fail",
            Answer::Dane { .. } => c"dane",
        }
    }

    /// [`Answer::word`] as text.
    pub fn as_str(&self) -> &'static str {
        self.word().to_str().unwrap_or("fail")
    }
}

/// The network as the decision needs it.
pub trait Net {
    /// TXT records of `name`; empty for NXDOMAIN or NODATA.
    fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError>;
    /// The policy of `domain` over HTTPS.
    fn fetch(&mut self, domain: &str) -> Result<Fetched, FetchError>;
}

/// The answer an entry gives right after it was made (or read), whatever the clock says:
/// a policy just fetched applies to the delivery in progress even with `max_age: 0`
/// (RFC.md A-05).
pub fn fresh<'a>(e: &Entry<&'a str>, cfg: &Config) -> Answer<'a> {
    if cfg.dane && e.dane {
        return Answer::Dane { mx: if e.kind == Kind::Policy { e.mx } else { "" } };
    }
    match e.kind {
        Kind::Policy => Answer::Policy { mode: e.mode, mx: e.mx },
        Kind::NoSts => Answer::NoPolicy,
        Kind::FetchFailed => no_policy_obtained(cfg),
        Kind::TempFail => Answer::Fail,
    }
}

/// A valid `_mta-sts` record but no policy to apply: as after a failed fetch.
fn no_policy_obtained<'a>(cfg: &Config) -> Answer<'a> {
    match cfg.fetch_failure {
        // RFC 8461 §3.3: "senders MUST continue with delivery as though the domain
        // has not implemented MTA-STS".
        FetchFailure::None => Answer::NoPolicy,
        FetchFailure::Fail => Answer::Fail,
    }
}

/// The answer from a stored entry at `now`, or `None` when the entry is too old and the
/// cold path must run.
pub fn hot<'a>(e: &Entry<&'a str>, now: u64, cfg: &Config) -> Option<Answer<'a>> {
    // A shared-database update that failed is due to be tried again; or the DANE answer
    // is stale (or was never made).
    if (e.shared_retry != 0 && now >= e.shared_retry) || (cfg.dane && now >= e.dane_until) {
        return None;
    }
    if cfg.dane && e.dane {
        return Some(fresh(e, cfg));
    }
    sts_hot(e, now, cfg)
}

/// The MTA-STS part of [`hot`]: the answer while the entry's MTA-STS state is fresh.
pub fn sts_hot<'a>(e: &Entry<&'a str>, now: u64, cfg: &Config) -> Option<Answer<'a>> {
    let usable = match e.kind {
        // RFC 8461 §5.1: use the cached policy while unexpired; re-check the TXT id no
        // more often than `recheck_interval` (§3: a changed id means a new policy).
        Kind::Policy => now < e.expires && now < e.checked.saturating_add(cfg.recheck_interval),
        Kind::NoSts | Kind::FetchFailed | Kind::TempFail => now < e.expires,
    };
    usable.then(|| fresh(e, cfg))
}

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

/// What the `_mta-sts` TXT lookup gave, when it gave no usable record.
enum NoRecord {
    /// DNS failed temporarily.
    TempFail(String),
    /// No record, several, or an invalid one (RFC 8461 §3.1: no policy).
    Absent(String),
}

fn discover_id(domain: &str, net: &mut dyn Net) -> Result<String, NoRecord> {
    let records = net.txt(&format!("_mta-sts.{domain}")).map_err(|e| NoRecord::TempFail(e.to_string()))?;
    match policy::discover(&records) {
        Discovery::Record(r) => Ok(r.id),
        Discovery::Several(n) => {
            Err(NoRecord::Absent(format!("{n} STS records (RFC 8461 §3.1: not exactly one)")))
        }
        Discovery::Invalid(e) => Err(NoRecord::Absent(format!("invalid _mta-sts record: {e}"))),
        Discovery::NoRecord => Err(NoRecord::Absent("no _mta-sts record".to_owned())),
    }
}

/// The cold path for `domain` (A-label form), given what the store holds (`cached`).
/// Returns the entry to store; [`fresh`] of it is the answer.
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
            return expired_early(domain, c, until, now);
        }
    }
    let policy = unexpired_policy(cached, now);
    let id = match (discover_id(domain, net), policy) {
        (Ok(id), _) => id,
        (Err(_), Some(p)) if proactive => p.id.to_owned(),
        (Err(NoRecord::TempFail(e)), Some(p)) => {
            warn_unless_none(&p, &format!("domain={domain} source=cache: {e}; keeping the cached policy"));
            return keep(&p, now);
        }
        (Err(NoRecord::TempFail(e)), None) => {
            // SPEC §4: a temporary DNS failure with nothing cached answers `fail`.
            log::warn(&format!("domain={domain} answer=fail: {e}, and no policy is cached"));
            let mut t = OwnedEntry::bare(Kind::TempFail, now.saturating_add(cfg.tempfail_ttl), now);
            t.note = e;
            return t;
        }
        // RFC 8461 §3.1: "the absence of a usable TXT record is not by itself sufficient
        // to remove a sender's previously cached policy".
        (Err(NoRecord::Absent(why)), Some(p)) => {
            log::info(&format!(
                "domain={domain} source=cache mode={}: {why}; the cached policy stays until it expires",
                p.mode.as_str()
            ));
            return keep(&p, now);
        }
        (Err(NoRecord::Absent(why)), None) => {
            log::debug(|| format!("domain={domain} mode=none: {why}"));
            let mut n = OwnedEntry::bare(Kind::NoSts, now.saturating_add(cfg.negative_ttl), now);
            n.note = why;
            return n;
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
            kind: crate::fetch::FailureKind::FetchError,
            reason: format!("not retried before {}s have passed since the last failure", cfg.fetch_backoff()),
        })
    } else {
        net.fetch(domain)
    };
    match result {
        Ok(fetched) => stored_policy(domain, &id, fetched, now, net),
        Err(e) => failed_fetch(domain, &id, cached, policy, &e, now, cfg, backing_off),
    }
}

/// RFC.md A-05: a policy with `max_age: 0` (or one shorter than `fetch_backoff`) applied
/// to the delivery in flight and has expired. It is never applied past its max_age, and not
/// fetched again before `fetch_backoff` has passed since its fetch, so that a hostile
/// domain cannot make every delivery cost a fetch (nor a TXT query): until then the domain
/// answers as after a failed fetch, and the shared database drops the policy.
fn expired_early(domain: &str, p: &Entry<&str>, until: u64, now: u64) -> OwnedEntry {
    let max_age = p.expires.saturating_sub(p.fetched);
    log::info(&format!(
        "domain={domain}: policy id={} expired {max_age}s after its fetch; not fetched again for {}s",
        p.id,
        until.saturating_sub(now)
    ));
    let mut f = OwnedEntry::bare(Kind::FetchFailed, until, now);
    f.retry_after = until;
    f.id = p.id.to_owned();
    f.note = format!("policy expired (max_age {max_age}s); not fetched again before {until}");
    f
}

fn stored_policy(domain: &str, id: &str, fetched: Fetched, now: u64, net: &mut dyn Net) -> OwnedEntry {
    let p = &fetched.policy;
    if p.max_age_clamped {
        // RFC.md A-03.
        log::warn(&format!("domain={domain}: max_age above {} clamped", policy::MAX_AGE_LIMIT));
    }
    // RFC 8460 §3: the TLSRPT record; a failed lookup just leaves it empty.
    let report = net
        .txt(&format!("_smtp._tls.{domain}"))
        .ok()
        .and_then(|r| policy::parse_tlsrpt(&r))
        .map(|t| t.report_value())
        .unwrap_or_default();
    log::info(&format!(
        "domain={domain} mode={} source=fetch id={id} max_age={} mx={}",
        p.mode.as_str(),
        p.max_age,
        p.mx.join(":")
    ));
    OwnedEntry {
        kind: Kind::Policy,
        mode: p.mode,
        // RFC 8461 §3.2: cached "for up to this value from the last policy fetch time".
        expires: now.saturating_add(p.max_age),
        checked: now,
        fetched: now,
        retry_after: 0,
        shared_retry: 0,
        dane: false,
        dane_until: 0,
        used: 0,
        id: id.to_owned(),
        mx: p.mx.join(":"),
        report,
        text: fetched.text,
        note: String::new(),
        failed_id: String::new(),
    }
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
    let retry_after = if backing_off {
        cached.map(|c| c.retry_after).unwrap_or(now)
    } else {
        now.saturating_add(cfg.fetch_backoff())
    };
    match policy {
        Some(p) => {
            // RFC 8461 §3.3 / §10.2: alert on failed refreshes, unless the mode is none.
            if !backing_off {
                warn_unless_none(
                    &p,
                    &format!(
                        "domain={domain} source=cache: policy fetch for id={id} failed: {e}; keeping the cached policy (id={})",
                        p.id
                    ),
                );
            }
            let mut k = keep(&p, now);
            k.retry_after = retry_after;
            k.failed_id = id.to_owned();
            k.note = e.reason.clone();
            k
        }
        None => {
            let answer = match cfg.fetch_failure {
                FetchFailure::None => "none",
                FetchFailure::Fail => "fail",
            };
            if !backing_off {
                log::warn(&format!("domain={domain} answer={answer}: policy fetch for id={id} failed: {e}"));
            }
            let mut f = OwnedEntry::bare(Kind::FetchFailed, retry_after, now);
            f.retry_after = retry_after;
            f.id = id.to_owned();
            f.failed_id = id.to_owned();
            f.note = e.reason.clone();
            f
        }
    }
}

fn warn_unless_none(p: &Entry<&str>, msg: &str) {
    if p.mode == Mode::None {
        log::info(msg);
    } else {
        log::warn(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind, expires: u64, checked: u64) -> OwnedEntry {
        let mut e = OwnedEntry::bare(kind, expires, checked);
        e.mode = Mode::Enforce;
        e.mx = "mx.example.com".into();
        e.dane_until = u64::MAX;
        e
    }

    #[test]
    fn dane_takes_precedence_while_its_answer_is_fresh() {
        let cfg = Config::default();
        let mut e = entry(Kind::Policy, 1000, 500);
        e.dane = true;
        e.dane_until = 700;
        assert_eq!(hot(&e.view(), 600, &cfg), Some(Answer::Dane { mx: "mx.example.com" }));
        assert_eq!(hot(&e.view(), 700, &cfg), None, "DANE answer stale");
        // Even when the MTA-STS part is stale, a fresh DANE answer needs no DNS.
        assert_eq!(
            hot(&e.view(), 650, &Config { recheck_interval: 0, ..Config::default() }),
            Some(Answer::Dane { mx: "mx.example.com" })
        );
        // dane = false: MTA-STS only.
        let off = Config { dane: false, ..Config::default() };
        assert_eq!(hot(&e.view(), 1000, &off), None, "policy expired");
        assert_eq!(
            hot(&e.view(), 550, &off),
            Some(Answer::Policy { mode: Mode::Enforce, mx: "mx.example.com" })
        );
        e.dane = false;
        assert_eq!(
            hot(&e.view(), 600, &cfg),
            Some(Answer::Policy { mode: Mode::Enforce, mx: "mx.example.com" })
        );
    }

    #[test]
    fn hot_answers_only_while_fresh() {
        let cfg = Config { recheck_interval: 100, ..Config::default() };
        let p = entry(Kind::Policy, 1000, 500);
        assert_eq!(
            hot(&p.view(), 599, &cfg),
            Some(Answer::Policy { mode: Mode::Enforce, mx: "mx.example.com" })
        );
        assert_eq!(hot(&p.view(), 600, &cfg), None, "recheck due");
        let p = entry(Kind::Policy, 550, 500);
        assert_eq!(hot(&p.view(), 550, &cfg), None, "expired");
        assert_eq!(hot(&entry(Kind::NoSts, 10, 0).view(), 9, &cfg), Some(Answer::NoPolicy));
        assert_eq!(hot(&entry(Kind::NoSts, 10, 0).view(), 10, &cfg), None);
        assert_eq!(hot(&entry(Kind::TempFail, 10, 0).view(), 5, &cfg), Some(Answer::Fail));
    }

    #[test]
    fn fetch_failure_setting_decides_fetch_failed_entries() {
        let e = entry(Kind::FetchFailed, 10, 0);
        let none = Config::default();
        let fail = Config { fetch_failure: FetchFailure::Fail, ..Config::default() };
        assert_eq!(hot(&e.view(), 5, &none), Some(Answer::NoPolicy));
        assert_eq!(hot(&e.view(), 5, &fail), Some(Answer::Fail));
    }

    #[test]
    fn max_age_zero_policy_applies_once_and_is_not_refetched_within_the_backoff() {
        struct NoNet;
        impl Net for NoNet {
            fn txt(&mut self, _: &str) -> Result<Vec<String>, DnsError> {
                panic!("no DNS query expected")
            }
            fn fetch(&mut self, _: &str) -> Result<Fetched, FetchError> {
                panic!("no fetch expected")
            }
        }
        let cfg = Config::default();
        let mut e = entry(Kind::Policy, 100, 100);
        e.fetched = 100;
        // RFC.md A-05: the delivery in flight gets the policy just fetched...
        assert!(matches!(fresh(&e.view(), &cfg), Answer::Policy { .. }));
        // ...then it is expired: never applied again, and neither fetched again nor its
        // TXT record asked for fetch_backoff (300 s): the answer is that of a failed fetch.
        assert_eq!(hot(&e.view(), 100, &cfg), None);
        let mut after = refresh("x.example", Some(&e.view()), 150, &cfg, &mut NoNet, false);
        after.dane_until = u64::MAX; // (the DANE part is the engine's)
        assert_eq!((after.kind, after.expires, after.retry_after), (Kind::FetchFailed, 400, 400));
        assert_eq!(hot(&after.view(), 399, &cfg), Some(Answer::NoPolicy));
        let strict = Config { fetch_failure: FetchFailure::Fail, ..Config::default() };
        assert_eq!(hot(&after.view(), 200, &strict), Some(Answer::Fail));
        assert_eq!(hot(&after.view(), 400, &cfg), None, "a fetch is due again");
    }
}
