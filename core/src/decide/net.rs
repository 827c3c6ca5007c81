//! What the decision asks of the network, and what it gets back: implemented by the
//! helper's live network (`engine::LiveNet` in the tool) and by the tests' fake ones.

use crate::cause::{DnsError, FetchError};
use crate::policy::Policy;

/// A fetched and parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The body as served (kept for TLSRPT's `policy-string`, RFC 8460 §4.5).
    pub text: String,
    pub policy: Policy,
}

/// The outcome of a DANE check (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaneState {
    pub applies: bool,
    /// Seconds this answer may be cached.
    pub ttl: u64,
    /// Why, in words, for the log and the admin tool.
    pub why: String,
    /// A DNSSEC validation failure (bogus signatures) was seen: a problem to report.
    pub bogus: bool,
}

/// The network as the decision needs it.
pub trait Net {
    /// TXT records of `name`; empty for NXDOMAIN or NODATA.
    fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError>;
    /// The policy of `domain` over HTTPS.
    fn fetch(&mut self, domain: &str) -> Result<Fetched, FetchError>;
    /// Does DANE apply to `domain` (SPEC §5)?
    fn dane(&mut self, domain: &str) -> DaneState;
    /// Did the last TXT question ask for `_mta-sts.DOMAIN` and get an NXDOMAIN that the
    /// validating resolver did not authenticate, without a CNAME on the way? Then the
    /// domain's zone is unsigned: under DNSSEC a signed zone's denial is authenticated.
    /// Forgotten once asked.
    fn take_unsigned_nx(&mut self, domain: &str) -> bool;
}
