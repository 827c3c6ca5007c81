//! Typed failures, and the one place that turns a failure into what it means.
//!
//! Each layer has its own error type: [`DnsError`] (the resolver), [`FetchError`] (the
//! policy fetch), [`crate::policy::ParseError`] (the parsers), [`crate::cache::CacheError`]
//! (the store), [`crate::config::ConfigError`] (the configuration), [`HelperError`] (the
//! library starting the helper). Whatever went wrong for a domain is one [`Cause`]; the
//! store keeps the last one (its code, [`Cause::code`]) and [`Cause::verdict`] is the one
//! exhaustive `match` that gives its answer, its log wording and its RFC 8460 result type.

use crate::config;
use crate::log::Level;
use std::fmt;

/// RFC 8460 §4.3 result types (shared/RFC.md part 2.D), the complete initial registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResultType {
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    TlsaInvalid,
    DnssecInvalid,
    DaneRequired,
    StsPolicyFetchError,
    StsPolicyInvalid,
    StsWebpkiInvalid,
}

impl ResultType {
    /// Every registered type.
    pub const ALL: [ResultType; 11] = [
        ResultType::StarttlsNotSupported,
        ResultType::CertificateHostMismatch,
        ResultType::CertificateExpired,
        ResultType::CertificateNotTrusted,
        ResultType::ValidationFailure,
        ResultType::TlsaInvalid,
        ResultType::DnssecInvalid,
        ResultType::DaneRequired,
        ResultType::StsPolicyFetchError,
        ResultType::StsPolicyInvalid,
        ResultType::StsWebpkiInvalid,
    ];

    /// The type a registered name stands for.
    pub fn from_name(name: &str) -> Option<ResultType> {
        ResultType::ALL.into_iter().find(|r| r.as_str() == name)
    }

    /// The registered name.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultType::StarttlsNotSupported => "starttls-not-supported",
            ResultType::CertificateHostMismatch => "certificate-host-mismatch",
            ResultType::CertificateExpired => "certificate-expired",
            ResultType::CertificateNotTrusted => "certificate-not-trusted",
            ResultType::ValidationFailure => "validation-failure",
            ResultType::TlsaInvalid => "tlsa-invalid",
            ResultType::DnssecInvalid => "dnssec-invalid",
            ResultType::DaneRequired => "dane-required",
            ResultType::StsPolicyFetchError => "sts-policy-fetch-error",
            ResultType::StsPolicyInvalid => "sts-policy-invalid",
            ResultType::StsWebpkiInvalid => "sts-webpki-invalid",
        }
    }
}

/// Why a DNS question got no usable answer (the DNS layer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The name cannot be asked (not a valid DNS name).
    BadName(String),
    /// The cold path's overall deadline passed first.
    Deadline(String),
    /// No server gave a NOERROR or NXDOMAIN answer (SERVFAIL, REFUSED, timeouts).
    NoAnswer(String),
}

impl fmt::Display for DnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsError::BadName(d) | DnsError::Deadline(d) | DnsError::NoAnswer(d) => f.write_str(d),
        }
    }
}

impl std::error::Error for DnsError {}

/// Which way a policy fetch failed (the fetch layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchFailure {
    /// The policy host's name did not resolve.
    HostNotFound,
    /// Connection refused or reset, TLS alert, or another transport error.
    Transport,
    /// The fetch timed out, or the cold path's deadline passed.
    Timeout,
    /// The policy host's certificate failed PKIX validation (RFC 8461 §3.3).
    Certificate,
    /// Not HTTP 200 (redirects included: RFC 8461 §3.3).
    Status,
    /// Not `text/plain` (RFC 8461 §3.2, with `require_text_plain`).
    ContentType,
    /// Larger than `max_policy_size`.
    TooLarge,
    /// The body is not a valid policy (RFC 8461 §3.2).
    Invalid,
    /// Not tried: a fetch for this id failed less than `fetch_backoff` ago (RFC 8461 §3.3).
    BackingOff,
}

/// A failed policy fetch: which way, and the words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub kind: FetchFailure,
    pub reason: String,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for FetchError {}

/// How an SMTP session's TLS fell short of what a policy requires (RFC 8460 §4.3.1):
/// seen by `exim-mta-sts check`'s probe of an MX host, and by deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The MX did not offer STARTTLS, or refused it.
    NoStarttls,
    /// The certificate does not name the MX host (RFC 8461 §4.2).
    HostMismatch,
    /// The certificate has expired (or is not valid yet).
    Expired,
    /// The chain does not lead to a trusted root.
    NotTrusted,
    /// Any other TLS failure (the handshake, a bad signature, ...).
    Other,
    /// DANE: no TLSA record matches the certificate chain (RFC 8460 §4.3.2.1).
    TlsaMismatch,
}

/// Why the library could not get an answer from the helper (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperError {
    /// The helper is not there (or a directory on its path is not).
    Missing,
    /// It cannot be started (not executable, not a program).
    NotExecutable,
    /// It ran past its deadline and was killed.
    Deadline,
    /// It was killed by a signal.
    Killed,
    /// It exited without an answer (a non-zero status, or nothing usable written).
    NoAnswer,
    /// It would have to run as root (the state directory belongs to root).
    WouldRunAsRoot,
}

/// Whatever went wrong for a domain (or `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    None,
    /// No `_mta-sts` TXT record: the domain has no MTA-STS (not a failure).
    NoRecord,
    /// More than one `v=STSv1` record (RFC 8461 §3.1: no policy).
    SeveralRecords,
    /// An invalid `_mta-sts` record (RFC 8461 §3.1: no policy).
    InvalidRecord,
    /// DNS failed temporarily.
    Dns,
    /// The policy fetch failed.
    Fetch(FetchFailure),
    /// The policy expired soon after its fetch (`max_age` shorter than `fetch_backoff`,
    /// RFC.md A-05) and is not fetched again yet.
    Expired,
    /// The configuration file cannot be used (SPEC §6).
    Config,
    /// The helper gave no answer.
    Helper(HelperError),
    /// A session's TLS failed the policy (a delivery, or `check`'s probe).
    Tls(TlsFailure),
}

/// What a cause means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// What `getmta` answers when no unexpired policy is cached (with one, RFC 8461 §3.3
    /// says it applies): `"none"`, `"fail"`, or `""` when this is not a failure.
    pub answer: &'static str,
    /// How loud its log line is.
    pub level: Level,
    /// The log line's words for it.
    pub words: &'static str,
    /// Its RFC 8460 result type, when it is a failure a report counts.
    pub result_type: Option<ResultType>,
}

impl Cause {
    /// The one translation (no catch-all arm: a new cause must be decided here).
    pub fn verdict(self, fetch_failure: config::FetchFailure) -> Verdict {
        use ResultType as R;
        // RFC 8461 §3.3: "senders MUST continue with delivery as though the domain has not
        // implemented MTA-STS"; `fetch_failure = "fail"` is SPEC §4's stricter choice.
        let no_policy = match fetch_failure {
            config::FetchFailure::None => "none",
            config::FetchFailure::Fail => "fail",
        };
        let v = |answer, level, words, result_type| Verdict { answer, level, words, result_type };
        match self {
            Cause::None => v("", Level::Info, "no problem", None),
            Cause::NoRecord => v("none", Level::Info, "no _mta-sts record", None),
            // RFC 8461 §3.1: an unusable record means no policy; RFC 8460 has no type for it.
            Cause::SeveralRecords => v("none", Level::Info, "more than one STS record", None),
            Cause::InvalidRecord => v("none", Level::Info, "invalid _mta-sts record", None),
            // SPEC §4: a temporary DNS failure with nothing cached answers `fail`; a
            // transient error RFC 8460 §4.3.4 does not require reporting.
            Cause::Dns => v("fail", Level::Warn, "temporary DNS failure", None),
            Cause::Fetch(f) => {
                let rt = match f {
                    FetchFailure::Certificate => R::StsWebpkiInvalid,
                    FetchFailure::Invalid => R::StsPolicyInvalid,
                    FetchFailure::HostNotFound
                    | FetchFailure::Transport
                    | FetchFailure::Timeout
                    | FetchFailure::Status
                    | FetchFailure::ContentType
                    | FetchFailure::TooLarge
                    | FetchFailure::BackingOff => R::StsPolicyFetchError,
                };
                let words = match f {
                    FetchFailure::HostNotFound => "policy host not found",
                    FetchFailure::Transport => "policy host unreachable",
                    FetchFailure::Timeout => "policy fetch timed out",
                    FetchFailure::Certificate => "policy host certificate invalid",
                    FetchFailure::Status => "policy fetch refused (HTTP status)",
                    FetchFailure::ContentType => "policy not text/plain",
                    FetchFailure::TooLarge => "policy too large",
                    FetchFailure::Invalid => "policy invalid",
                    FetchFailure::BackingOff => "policy fetch backing off after a failure",
                };
                v(no_policy, Level::Warn, words, Some(rt))
            }
            Cause::Expired => v(no_policy, Level::Info, "policy expired early (max_age)", None),
            // SPEC §6: a bad file is reported and `fail` answered until it is fixed.
            Cause::Config => v("fail", Level::Alert, "configuration unusable", None),
            // SPEC §9: a missing or failing helper is answered `fail`, never a failed
            // expansion; the administrator must fix it.
            Cause::Helper(h) => {
                let words = match h {
                    HelperError::Missing => "helper missing",
                    HelperError::NotExecutable => "helper cannot be run",
                    HelperError::Deadline => "helper past its deadline, killed",
                    HelperError::Killed => "helper killed",
                    HelperError::NoAnswer => "helper gave no answer",
                    HelperError::WouldRunAsRoot => "helper would run as root",
                };
                v("fail", Level::Alert, words, None)
            }
            // Delivery-side: the answer is the policy's, so none is given here.
            Cause::Tls(t) => match t {
                TlsFailure::NoStarttls => {
                    v("", Level::Warn, "STARTTLS not offered", Some(R::StarttlsNotSupported))
                }
                TlsFailure::HostMismatch => v(
                    "",
                    Level::Warn,
                    "certificate does not name the MX host",
                    Some(R::CertificateHostMismatch),
                ),
                TlsFailure::Expired => v("", Level::Warn, "certificate expired", Some(R::CertificateExpired)),
                TlsFailure::NotTrusted => {
                    v("", Level::Warn, "certificate not trusted", Some(R::CertificateNotTrusted))
                }
                // RFC 8460 §4.3.3: the catch-all.
                TlsFailure::Other => v("", Level::Warn, "TLS failed", Some(R::ValidationFailure)),
                TlsFailure::TlsaMismatch => {
                    v("", Level::Warn, "no TLSA record matches", Some(R::TlsaInvalid))
                }
            },
        }
    }

    /// Writes the log line for this cause, at its verdict's level (the one shape of every
    /// failure line): `[domain=D ][answer=A ][result=TYPE]: WORDS[: DETAIL]TAIL`.
    pub fn log(self, fetch_failure: config::FetchFailure, domain: &str, detail: &str, tail: &str) {
        let v = self.verdict(fetch_failure);
        let mut head = Vec::new();
        if !domain.is_empty() {
            head.push(format!("domain={domain}"));
        }
        if !v.answer.is_empty() {
            head.push(format!("answer={}", v.answer));
        }
        if let Some(rt) = v.result_type {
            head.push(format!("result={}", rt.as_str()));
        }
        let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
        crate::log::write(v.level, &format!("{}: {}{detail}{tail}", head.join(" "), v.words));
    }

    /// The cause's code in the store (0 for none; the helper's causes, never stored,
    /// read back as [`HelperError::NoAnswer`]).
    pub fn code(self) -> u8 {
        let c = match self {
            Cause::Helper(_) => Cause::Helper(HelperError::NoAnswer),
            other => other,
        };
        CODES.iter().position(|k| *k == c).and_then(|i| u8::try_from(i).ok()).unwrap_or(0)
    }

    /// The cause of a stored code (`None` for a code no version wrote).
    pub fn from_code(c: u8) -> Option<Cause> {
        CODES.get(usize::from(c)).copied()
    }

    /// A short name, for `exim-mta-sts show` and the log.
    pub fn name(self) -> &'static str {
        match self {
            Cause::None => "none",
            Cause::NoRecord => "no-record",
            Cause::SeveralRecords => "several-records",
            Cause::InvalidRecord => "invalid-record",
            Cause::Dns => "dns",
            Cause::Fetch(f) => match f {
                FetchFailure::HostNotFound => "fetch-host-not-found",
                FetchFailure::Transport => "fetch-transport",
                FetchFailure::Timeout => "fetch-timeout",
                FetchFailure::Certificate => "fetch-certificate",
                FetchFailure::Status => "fetch-status",
                FetchFailure::ContentType => "fetch-content-type",
                FetchFailure::TooLarge => "fetch-too-large",
                FetchFailure::Invalid => "policy-invalid",
                FetchFailure::BackingOff => "fetch-backing-off",
            },
            Cause::Expired => "expired",
            Cause::Config => "config",
            Cause::Helper(_) => "helper",
            Cause::Tls(t) => match t {
                TlsFailure::NoStarttls => "tls-no-starttls",
                TlsFailure::HostMismatch => "tls-host-mismatch",
                TlsFailure::Expired => "tls-expired",
                TlsFailure::NotTrusted => "tls-not-trusted",
                TlsFailure::Other => "tls-failed",
                TlsFailure::TlsaMismatch => "tls-tlsa-mismatch",
            },
        }
    }
}

/// Every cause the store can hold, by code (append only: codes are stored).
const CODES: [Cause; 23] = [
    Cause::None,
    Cause::NoRecord,
    Cause::SeveralRecords,
    Cause::InvalidRecord,
    Cause::Dns,
    Cause::Fetch(FetchFailure::HostNotFound),
    Cause::Fetch(FetchFailure::Transport),
    Cause::Fetch(FetchFailure::Timeout),
    Cause::Fetch(FetchFailure::Certificate),
    Cause::Fetch(FetchFailure::Status),
    Cause::Fetch(FetchFailure::ContentType),
    Cause::Fetch(FetchFailure::TooLarge),
    Cause::Fetch(FetchFailure::Invalid),
    Cause::Fetch(FetchFailure::BackingOff),
    Cause::Expired,
    Cause::Config,
    Cause::Helper(HelperError::NoAnswer),
    Cause::Tls(TlsFailure::NoStarttls),
    Cause::Tls(TlsFailure::HostMismatch),
    Cause::Tls(TlsFailure::Expired),
    Cause::Tls(TlsFailure::NotTrusted),
    Cause::Tls(TlsFailure::Other),
    Cause::Tls(TlsFailure::TlsaMismatch),
];

impl From<&FetchError> for Cause {
    fn from(e: &FetchError) -> Cause {
        Cause::Fetch(e.kind)
    }
}

impl From<&DnsError> for Cause {
    fn from(_: &DnsError) -> Cause {
        Cause::Dns
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FetchFailure as Setting;

    #[test]
    fn fetch_failures_map_to_their_rfc8460_types() {
        let t = |f| Cause::Fetch(f).verdict(Setting::None).result_type.map(ResultType::as_str);
        assert_eq!(t(FetchFailure::Certificate), Some("sts-webpki-invalid"));
        assert_eq!(t(FetchFailure::Invalid), Some("sts-policy-invalid"));
        assert_eq!(t(FetchFailure::Status), Some("sts-policy-fetch-error"));
        assert_eq!(t(FetchFailure::Timeout), Some("sts-policy-fetch-error"));
        assert_eq!(Cause::NoRecord.verdict(Setting::None).result_type, None);
        assert_eq!(Cause::Dns.verdict(Setting::None).answer, "fail");
        let tls = |t| Cause::Tls(t).verdict(Setting::None).result_type.map(ResultType::as_str);
        assert_eq!(tls(TlsFailure::NoStarttls), Some("starttls-not-supported"));
        assert_eq!(tls(TlsFailure::HostMismatch), Some("certificate-host-mismatch"));
        assert_eq!(tls(TlsFailure::Expired), Some("certificate-expired"));
        assert_eq!(tls(TlsFailure::NotTrusted), Some("certificate-not-trusted"));
        assert_eq!(tls(TlsFailure::Other), Some("validation-failure"));
        assert_eq!(Cause::Fetch(FetchFailure::Status).verdict(Setting::None).answer, "none");
        assert_eq!(Cause::Fetch(FetchFailure::Status).verdict(Setting::Fail).answer, "fail");
    }

    #[test]
    fn stored_codes_round_trip_and_unknown_codes_are_refused() {
        for (i, c) in CODES.iter().enumerate() {
            assert_eq!(Cause::from_code(c.code()), Some(*c));
            assert_eq!(usize::from(c.code()), i);
        }
        assert_eq!(Cause::from_code(200), None);
    }
}
