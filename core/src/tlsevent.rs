//! What an Exim transport event says of one SMTP session for the TLS report (RFC 8460 §4.3,
//! SPEC §10): the one place that turns Exim's words into a typed [`TlsFailure`] and a
//! session outcome, given the policy the store holds for the domain. Pure: no I/O.

use crate::cause::{Cause, ResultType, TlsFailure};
use crate::config::FetchFailure;
use crate::entry::{Entry, Kind};
use crate::policy::Mode;
use crate::tally::{Detail, PolicySeen};

/// What the shipped transports pass to `mtasts_event` (SPEC §10).
#[derive(Debug, Clone, Copy, Default)]
pub struct Event<'a> {
    pub name: &'a str,
    pub host: &'a str,
    pub host_address: &'a str,
    pub sending_ip: &'a str,
    pub sending_port: &'a str,
    /// `$tls_out_cipher|$tls_out_certificate_verified`.
    pub tls: &'a str,
    /// `$event_data`: the deferral text, or the `dane:fail` result type.
    pub data: &'a str,
}

/// A TLS failure in the words of Exim's deferral (`$event_data` of `msg:host:defer`), or
/// `None` when the attempt failed for another reason (a refused connection, an SMTP error:
/// not a TLS negotiation failure, and RFC 8460 §4.3.4 need not report transient errors).
/// Debian's Exim uses GnuTLS, which says only "certificate invalid" for an expired as for an
/// untrusted certificate (both become `certificate-not-trusted`; `exim-mta-sts check`
/// tells them apart) and gives no detail for a name mismatch; OpenSSL builds say more.
pub fn tls_failure_of_exim(text: &str) -> Option<TlsFailure> {
    let t = text.to_ascii_lowercase();
    let has = |w: &str| t.contains(w);
    if has("did not offer tls") || (has("starttls") && (has("not ") || has("refused") || has("rejected"))) {
        Some(TlsFailure::NoStarttls)
    } else if has("expired") {
        Some(TlsFailure::Expired)
    } else if has("hostname mismatch") || has("name mismatch") {
        Some(TlsFailure::HostMismatch)
    } else if has("certificate invalid")
        || has("revoked")
        || has("issuer")
        || has("self signed")
        || has("self-signed")
    {
        Some(TlsFailure::NotTrusted)
    } else if has("certificate verification failed") {
        // GnuTLS's name check fails with no words of its own.
        Some(TlsFailure::HostMismatch)
    } else if has("tls") {
        Some(TlsFailure::Other)
    } else {
        None
    }
}

/// The policy `entry` stands for in a report, when it is one a report covers: an `enforce`
/// or `testing` policy (`sts`), or DANE (`tlsa`). RFC.md A-23: mode `none` and no policy
/// are not reported (the shipped transports that call this carry policies only).
pub fn policy_of(entry: &Entry<&str>, dane: bool) -> Option<PolicySeen> {
    if dane {
        return Some(PolicySeen { kind: "tlsa".into(), ..PolicySeen::default() });
    }
    (entry.kind == Kind::Policy && entry.mode != Mode::None).then(|| PolicySeen {
        kind: "sts".into(),
        mode: entry.mode.as_str().to_owned(),
        id: entry.id.to_owned(),
        mx: entry.mx.to_owned(),
        text: entry.text.to_owned(),
    })
}

/// The RFC 8460 result type of `cause`.
fn result_type(cause: Cause) -> ResultType {
    cause.verdict(FetchFailure::None).result_type.unwrap_or(ResultType::ValidationFailure)
}

/// One session's outcome from an event: `None` when the event says nothing to count;
/// `Some(None)` a success; `Some(Some(..))` a failure with its detail. Each session is
/// counted by one event: a success by `smtp:ehlo` after STARTTLS; an enforce failure by
/// `msg:host:defer`, a DANE one by `dane:fail`, a testing one by `smtp:ehlo`.
pub fn outcome(ev: &Event<'_>, policy: &PolicySeen) -> Option<Option<(ResultType, Detail)>> {
    let mut parts = ev.tls.split('|');
    let (cipher, verified) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let detail = |reason: &str| Detail {
        result: String::new(),
        sending_ip: ev.sending_ip.to_owned(),
        mx: ev.host.to_owned(),
        receiving_ip: ev.host_address.to_owned(),
        reason: reason.chars().take(200).collect(),
    };
    let fail = |t: TlsFailure, reason: &str| Some(Some((result_type(Cause::Tls(t)), detail(reason))));
    match (ev.name, policy.kind.as_str(), policy.mode.as_str()) {
        // Exim's DANE names the RFC 8460 result type itself.
        ("dane:fail", "tlsa", _) => {
            // A session-level type only (an sts-policy-* type is no delivery's to give).
            let rt = ResultType::from_name(ev.data)
                .filter(|r| {
                    !matches!(
                        r,
                        ResultType::StsPolicyFetchError
                            | ResultType::StsPolicyInvalid
                            | ResultType::StsWebpkiInvalid
                    )
                })
                .unwrap_or(ResultType::ValidationFailure);
            Some(Some((rt, detail(ev.data))))
        }
        // Successes are read at the EHLO after STARTTLS, in the transport's own process:
        // its TLS variables and local port are live there, once per connection (a
        // connection Exim carries over to more messages sends no new EHLO). At msg:delivery,
        // raised in the parent, Exim 4.96 knows neither, and at tcp:close of a carried-over
        // connection it has forgotten the verification. The enforce and DANE transports
        // abort a session whose certificate does not verify, so TLS there is verified TLS.
        ("smtp:ehlo", "tlsa", _) | ("smtp:ehlo", "sts", "enforce") => (!cipher.is_empty()).then_some(None),
        // The enforce transport's failures come as msg:host:defer with Exim's words (a
        // DANE failure as dane:fail).
        ("msg:host:defer", "sts", "enforce") => tls_failure_of_exim(ev.data).and_then(|t| fail(t, ev.data)),
        // The testing transport delivers whatever TLS gives; what enforce would have
        // refused is read at the EHLO too: before STARTTLS only when none is offered.
        ("smtp:ehlo", "sts", "testing") if cipher.is_empty() => (!offers_starttls(ev.data))
            .then(|| fail(TlsFailure::NoStarttls, "STARTTLS not offered"))
            .flatten(),
        ("smtp:ehlo", "sts", "testing") if verified != "1" => {
            fail(TlsFailure::Other, "certificate not verified")
        }
        ("smtp:ehlo", "sts", "testing") => Some(None),
        // RFC.md A-21: an MX the policy does not list.
        ("mx-refused", "sts", _) => {
            Some(Some((ResultType::ValidationFailure, detail("mtasts-policy-mx-mismatch"))))
        }
        _ => None,
    }
}

/// Does an EHLO response offer STARTTLS?
fn offers_starttls(ehlo: &str) -> bool {
    ehlo.lines().any(|l| {
        l.get(4..)
            .and_then(|k| k.split_whitespace().next())
            .is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))
    })
}

/// The session key (`SENDING-IP:PORT>RECEIVING-IP`), when there was a TCP session.
pub fn session_key(ev: &Event<'_>) -> Option<String> {
    let port = ev.sending_port.parse::<u16>().ok().filter(|p| *p > 0)?;
    (!ev.host_address.is_empty()).then(|| format!("{}:{port}>{}", ev.sending_ip, ev.host_address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exims_deferral_words_map_to_result_types() {
        let t = tls_failure_of_exim;
        assert_eq!(
            t("a TLS session is required, but the server did not offer TLS support"),
            Some(TlsFailure::NoStarttls)
        );
        assert_eq!(t("TLS session: (certificate verification failed)"), Some(TlsFailure::HostMismatch));
        assert_eq!(
            t("TLS session: (certificate verification failed): certificate invalid"),
            Some(TlsFailure::NotTrusted)
        );
        assert_eq!(
            t("TLS session: (SSL_connect): certificate verify failed: certificate has expired"),
            Some(TlsFailure::Expired)
        );
        assert_eq!(
            t("TLS session: (gnutls_handshake): An unexpected TLS packet was received."),
            Some(TlsFailure::Other)
        );
        assert_eq!(t("Connection refused"), None);
        assert_eq!(t("SMTP error from remote mail server after RCPT TO: 451 try later"), None);
    }

    #[test]
    fn deliveries_count_as_the_policy_requires() {
        let sts = PolicySeen { kind: "sts".into(), mode: "enforce".into(), ..PolicySeen::default() };
        let testing = PolicySeen { mode: "testing".into(), ..sts.clone() };
        let ev = |name, tls, data| Event {
            name,
            tls,
            data,
            host: "mx.a.example",
            host_address: "192.0.2.9",
            sending_ip: "192.0.2.1",
            sending_port: "4000",
        };
        let rt = |o: Option<Option<(ResultType, Detail)>>| o.map(|f| f.map(|(r, _)| r.as_str()));
        let plain = "250-mx.a.example Hello\n250-STARTTLS\n250 HELP";
        let bare = "250-mx.a.example Hello\n250 HELP";
        // Enforce: the EHLO after STARTTLS is its success; msg:delivery counts nothing.
        assert_eq!(rt(outcome(&ev("smtp:ehlo", "TLS1.3:X|0|no", bare), &sts)), Some(None));
        assert_eq!(rt(outcome(&ev("smtp:ehlo", "|0|no", plain), &sts)), None, "before STARTTLS");
        assert_eq!(rt(outcome(&ev("msg:delivery", "TLS1.3:X|1|no", ""), &sts)), None);
        assert_eq!(rt(outcome(&ev("tcp:close", "TLS1.3:X|1|no", ""), &sts)), None);
        let cert = "TLS session: (certificate verification failed): certificate invalid";
        assert_eq!(rt(outcome(&ev("msg:host:defer", "", cert), &sts)), Some(Some("certificate-not-trusted")));
        assert_eq!(rt(outcome(&ev("msg:host:defer", "", "Connection refused"), &sts)), None);
        // Testing: the EHLO tells.
        assert_eq!(rt(outcome(&ev("smtp:ehlo", "TLS1.3:X|1|no", bare), &testing)), Some(None));
        assert_eq!(rt(outcome(&ev("smtp:ehlo", "|0|no", plain), &testing)), None, "STARTTLS follows");
        assert_eq!(
            rt(outcome(&ev("smtp:ehlo", "|0|no", bare), &testing)),
            Some(Some("starttls-not-supported"))
        );
        assert_eq!(
            rt(outcome(&ev("smtp:ehlo", "TLS1.3:X|0|no", bare), &testing)),
            Some(Some("validation-failure"))
        );
        assert_eq!(rt(outcome(&ev("msg:delivery", "TLS1.3:X|0|no", ""), &testing)), None);
        assert_eq!(rt(outcome(&ev("mx-refused", "", ""), &sts)), Some(Some("validation-failure")));
        let tlsa = PolicySeen { kind: "tlsa".into(), ..PolicySeen::default() };
        assert_eq!(rt(outcome(&ev("dane:fail", "", "tlsa-invalid"), &tlsa)), Some(Some("tlsa-invalid")));
        assert_eq!(rt(outcome(&ev("smtp:ehlo", "TLS1.3:X|0|no", ""), &tlsa)), Some(None));
        assert_eq!(
            rt(outcome(&ev("msg:host:defer", "", "TLS session: x"), &tlsa)),
            None,
            "counted by dane:fail"
        );
        assert_eq!(session_key(&ev("msg:delivery", "", "")).as_deref(), Some("192.0.2.1:4000>192.0.2.9"));
        let stale = Event { sending_port: "-1", ..ev("msg:delivery", "", "") };
        assert_eq!(session_key(&stale), None);
    }
}
