//! The policy fetch over HTTPS (RFC 8461 §3.2, §3.3): `GET
//! https://mta-sts.DOMAIN/.well-known/mta-sts.txt` against the system trust store, with
//! SNI, no redirects, status 200 only, `text/plain`, a streamed size limit and one
//! deadline for the whole exchange.
//!
//! Host names are resolved through this crate's DNS stub ([`crate::dns`]): ureq's own
//! resolver starts a thread per request when a timeout is set, and a thread stuck in
//! `getaddrinfo` would make Exim's next `fork()` unsafe. No connection is pooled, so
//! nothing is shared with a forked child.

use crate::cause::{FetchError, FetchFailure};
use crate::decide::Fetched;
use crate::dns;
use crate::policy::{self, ParseError};
use std::net::SocketAddr;
use std::time::Duration;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// What to fetch with.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub timeout: Duration,
    pub max_size: u64,
    pub require_text_plain: bool,
}

fn fail(kind: FetchFailure, reason: impl Into<String>) -> FetchError {
    FetchError { kind, reason: reason.into() }
}

/// The URL of a domain's policy (RFC 8461 §3.2), `domain` already in A-label form.
pub fn policy_url(domain: &str) -> String {
    format!("https://mta-sts.{domain}/.well-known/mta-sts.txt")
}

/// Resolves the policy host through [`dns::Resolver`], within ureq's remaining time.
#[derive(Debug)]
struct StubResolver(dns::Resolver);

impl Resolver for StubResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().ok_or(ureq::Error::HostNotFound)?;
        let port = uri.port_u16().unwrap_or(443);
        let ips = self.0.addrs(host).map_err(|e| ureq::Error::Io(std::io::Error::other(e.to_string())))?;
        let mut out = self.empty();
        for ip in ips.into_iter().take(16) {
            out.push(SocketAddr::new(ip, port));
        }
        if out.is_empty() { Err(ureq::Error::HostNotFound) } else { Ok(out) }
    }
}

/// The HTTPS client's settings for policy fetches, also used to POST TLS reports
/// (RFC 8460 §5.4): `timeout` for the whole exchange.
pub fn strict_config(timeout: Duration) -> ureq::config::Config {
    use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
    ureq::Agent::config_builder()
        // RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed".
        .max_redirects(0)
        .http_status_as_error(false)
        .https_only(true)
        // RFC.md A-26: no proxy from the environment.
        .proxy(None)
        // RFC 8461 §3.3: "HTTP caching … MUST NOT be used"; no pooled connections
        // either, so that nothing is shared with a forked child.
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        // RFC 8461 §3.3 MAY: one deadline for everything, body included.
        .timeout_global(Some(timeout))
        .user_agent(concat!("exim-mta-sts/", env!("CARGO_PKG_VERSION")))
        // RFC 8461 §3.3 / §7.1: PKIX validation against the system's roots, with SNI set
        // to the host of the URL.
        .tls_config(
            TlsConfig::builder()
                .provider(TlsProvider::Rustls)
                .root_certs(RootCerts::PlatformVerifier)
                .use_sni(true)
                .build(),
        )
        .build()
}

/// An HTTPS client set up for policy fetches. Build one per process (it loads the
/// system's CA certificates) and a new one after `fork()`.
pub struct Fetcher {
    agent: ureq::Agent,
    opts: FetchOptions,
    /// A clone of the resolver the agent uses: its cutoff bounds the fetch too.
    resolver: dns::Resolver,
}

impl Fetcher {
    pub fn new(resolver: dns::Resolver, opts: FetchOptions) -> Fetcher {
        let config = strict_config(opts.timeout);
        let agent = ureq::Agent::with_parts(config, DefaultConnector::new(), StubResolver(resolver.clone()));
        Fetcher { agent, opts, resolver }
    }

    /// Fetches and parses the policy of `domain` (A-label form), and tells what was seen
    /// on the way (for the admin tool's diagnosis).
    pub fn fetch_report(&self, domain: &str) -> (FetchReport, Result<Fetched, FetchError>) {
        let mut report = FetchReport { url: policy_url(domain), ..FetchReport::default() };
        let result = self.fetch_into(&mut report);
        (report, result)
    }

    fn fetch_into(&self, report: &mut FetchReport) -> Result<Fetched, FetchError> {
        let url = report.url.clone();
        // The fetch ends by the cold path's deadline too (its A/AAAA lookups included).
        let timeout = self.resolver.remaining().map_or(self.opts.timeout, |r| r.min(self.opts.timeout));
        if timeout.is_zero() {
            return Err(fail(
                FetchFailure::Timeout,
                format!("{url}: not fetched, the lookup's overall deadline has passed"),
            ));
        }
        let request = self.agent.get(&url).config().timeout_global(Some(timeout)).build();
        let mut resp = request.call().map_err(|e| {
            report.certificate = certificate_problem(&e);
            classify(&url, e)
        })?;
        report.certificate = Some("valid".to_owned());
        let status = resp.status().as_u16();
        report.status = Some(status);
        let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        report.content_type = Some(ctype.clone());
        // RFC 8461 §3.3: "Policies fetched via HTTPS are only valid if the HTTP response
        // code is 200 (OK). HTTP 3xx redirects MUST NOT be followed".
        if status != 200 {
            let what = if (300..400).contains(&status) { " (redirects are not followed)" } else { "" };
            return Err(fail(FetchFailure::Status, format!("{url}: HTTP status {status}{what}")));
        }
        // RFC 8461 §3.2 SHOULD; RFC.md A-01: media type text/plain, parameters ignored.
        if self.opts.require_text_plain && !is_text_plain(&ctype) {
            return Err(fail(
                FetchFailure::ContentType,
                format!("{url}: Content-Type {ctype:?} is not text/plain"),
            ));
        }
        // RFC 8461 §3.3 MAY (RFC.md A-15): the limit is inclusive (a body of exactly
        // max_size bytes parses); past it the fetch fails, a body is never truncated and
        // parsed. ureq fails a read once `limit` bytes have been read, hence the + 1.
        let body = resp
            .body_mut()
            .with_config()
            .limit(self.opts.max_size.saturating_add(1))
            .read_to_vec()
            .map_err(|e| classify(&url, e))?;
        report.size = Some(body.len());
        // RFC.md A-02: the charset parameter is ignored; the body must be UTF-8.
        let text = String::from_utf8(body).map_err(|_| invalid(&url, &ParseError::NotUtf8))?;
        let policy = policy::parse_policy(&text).map_err(|e| invalid(&url, &e))?;
        Ok(Fetched { text, policy })
    }
}

/// What a fetch saw, for diagnosis: each part is `None` when the fetch did not get there.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FetchReport {
    pub url: String,
    /// "valid", or why the policy host's certificate was refused.
    pub certificate: Option<String>,
    pub status: Option<u16>,
    pub content_type: Option<String>,
    /// Body size in bytes.
    pub size: Option<usize>,
}

fn invalid(url: &str, e: &ParseError) -> FetchError {
    fail(FetchFailure::Invalid, format!("{url}: invalid policy: {e}"))
}

fn is_text_plain(ctype: &str) -> bool {
    let media = ctype.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("text/plain")
}

/// Sorts a ureq error into a typed fetch failure with a readable reason.
fn classify(url: &str, e: ureq::Error) -> FetchError {
    if let Some(problem) = certificate_problem(&e) {
        return fail(FetchFailure::Certificate, format!("{url}: {problem}"));
    }
    match &e {
        ureq::Error::BodyExceedsLimit(n) => {
            fail(FetchFailure::TooLarge, format!("{url}: policy larger than {} bytes", n.saturating_sub(1)))
        }
        ureq::Error::Timeout(t) => fail(FetchFailure::Timeout, format!("{url}: timed out ({t})")),
        ureq::Error::HostNotFound => {
            fail(FetchFailure::HostNotFound, format!("{url}: policy host not found in DNS"))
        }
        other => fail(FetchFailure::Transport, format!("{url}: {other}")),
    }
}

/// The policy host's certificate failed PKIX validation (RFC 8461 §3.3): rustls' words
/// for why, whether ureq reports the rustls error directly or inside an I/O error.
fn certificate_problem(e: &ureq::Error) -> Option<String> {
    let rustls_err = match e {
        ureq::Error::Rustls(r) => Some(r),
        ureq::Error::Io(io) => io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    }?;
    matches!(
        rustls_err,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate)
    )
    .then(|| rustls_err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_check_ignores_parameters_and_case() {
        for ok in ["text/plain", "text/plain; charset=utf-8", "Text/Plain;charset=us-ascii", " text/plain "] {
            assert!(is_text_plain(ok), "{ok}");
        }
        for bad in ["", "text/html", "text/plainx", "application/octet-stream", "text/plain-ish; x"] {
            assert!(!is_text_plain(bad), "{bad}");
        }
    }

    #[test]
    fn url_is_built_from_the_domain() {
        assert_eq!(policy_url("example.com"), "https://mta-sts.example.com/.well-known/mta-sts.txt");
    }
}
