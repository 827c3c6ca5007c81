//! The one decision layer (RFC 8461 §5.1, SPEC §4-§5): what applies to a domain, from
//! what the store holds, the clock and, on the cold path, the network's answers.
//!
//! [`hot`] answers from a stored entry alone, with no I/O: the common case, and all the
//! library inside Exim decides. [`cold`] runs in the helper: it asks DNS and the policy
//! host through a [`Net`] (the MTA-STS part is [`sts::refresh`]), re-checks DANE, and
//! returns the entry to store; [`fresh`] of that entry is the answer. Time and network are
//! arguments, so every decision is tested at any `now` with a fake network.

mod net;
pub mod sts;
#[cfg(test)]
mod tests;

pub use net::{DaneState, Fetched, Net};

use crate::cache::{Entry, Kind, OwnedEntry};
use crate::config::{Config, FetchFailure};
use crate::log;
use crate::policy::Mode;

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

/// Why the cold path runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Exim asked (marks the domain as used).
    Use,
    /// The admin tool's `prefetch` (marks the domain as used).
    Prefetch,
    /// The admin tool's proactive `refresh` (does not mark it used).
    Refresh,
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

/// RFC 8461 §5.1: a delivery failed under an enforce policy (an MX the policy does not list,
/// or TLS the policy requires): "senders SHOULD first check for a new version of the policy
/// (by querying the "_mta-sts" TXT record) before bouncing". The entry to store so that the
/// next call re-checks the TXT `id` whatever `recheck_interval` says (refetching on a change),
/// or `None`: not an enforce policy, a re-check already due, or one forced less than
/// `fetch_backoff` ago (so a domain that keeps failing costs one TXT query per back-off).
pub fn recheck_after_failure(e: Entry<&str>, now: u64, cfg: &Config) -> Option<OwnedEntry> {
    let due = e.kind == Kind::Policy
        && e.mode == Mode::Enforce
        && e.checked != 0
        && now >= e.rechecked.saturating_add(cfg.fetch_backoff());
    due.then(|| {
        let mut o = e.to_owned_entry();
        o.checked = 0;
        o.rechecked = now;
        o
    })
}

/// The cold path for `domain` (A-label form), given what the store holds: the MTA-STS state
/// refreshed unless still fresh, and the DANE answer re-checked once stale (SPEC §5).
/// Returns the entry to store; [`fresh`] of it is the answer.
pub fn cold(
    domain: &str,
    cached: Option<&OwnedEntry>,
    now: u64,
    cfg: &Config,
    net: &mut dyn Net,
    why: Why,
) -> OwnedEntry {
    let proactive = why == Why::Refresh;
    // Only a TXT answer of this run counts as evidence for the DANE check below.
    net.take_unsigned_nx(domain);
    let mut entry = match cached.filter(|c| !proactive && sts_hot(&c.view(), now, cfg).is_some()) {
        Some(c) => c.clone(),
        None => sts::refresh(domain, cached.map(Entry::view).as_ref(), now, cfg, net, proactive),
    };
    entry.used = match why {
        Why::Use | Why::Prefetch => now,
        Why::Refresh => cached.map_or(0, |c| c.used),
    };
    entry.rechecked = cached.map_or(0, |c| c.rechecked);
    if !cfg.dane {
        return entry;
    }
    match cached.filter(|c| now < c.dane_until) {
        Some(c) => (entry.dane, entry.dane_until) = (c.dane, c.dane_until),
        None => {
            let st = if net.take_unsigned_nx(domain) {
                // SPEC §8: no MX query for a domain whose zone the TXT answer showed unsigned.
                unsigned(domain, cfg.negative_ttl, "its _mta-sts answer is an unsigned NXDOMAIN")
            } else {
                net.dane(domain)
            };
            let was = cached.is_some_and(|c| c.dane);
            if st.applies && !was {
                log::info(&format!("domain={domain} answer=dane: {}", st.why));
            } else if was && !st.applies {
                log::info(&format!("domain={domain}: DANE no longer applies ({}); MTA-STS applies", st.why));
            } else if !st.applies && st.bogus {
                log::warn(&format!("domain={domain} not dane: {}", st.why));
            } else {
                log::debug(|| format!("domain={domain} dane={}: {}", st.applies, st.why));
            }
            entry.dane = st.applies;
            entry.dane_until = now.saturating_add(st.ttl);
        }
    }
    entry
}

/// The longest a DANE answer is cached, whatever the TTLs say.
pub const DANE_MAX_TTL: u64 = 86_400;

/// "No DANE" for a domain whose zone is known to be unsigned: it cannot gain DANE before it
/// is signed, so the answer is kept for `insecure_ttl` (the `negative_ttl`, an hour by
/// default) rather than an MX TTL (SPEC §8: a domain without MTA-STS or DNSSEC costs at
/// most one DNS query an hour).
pub fn unsigned(domain: &str, insecure_ttl: u64, evidence: &str) -> DaneState {
    DaneState {
        applies: false,
        ttl: insecure_ttl.min(DANE_MAX_TTL),
        why: format!("the zone of {domain} is not DNSSEC-signed ({evidence})"),
        bogus: false,
    }
}
