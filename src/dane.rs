//! Does DANE (RFC 7672) apply to a domain? SPEC §5, RFC 8461 §2: MTA-STS must not override
//! DANE, so when it applies `getmta` answers `dane` and Exim's own DANE governs delivery.
//!
//! DANE applies when the domain's MX RRset and the TLSA RRset (`_25._tcp.MX`) of at least
//! one of its MX hosts come back DNSSEC-authenticated (the AD bit from the system
//! resolver: the same trust Exim's own DANE uses) and that TLSA RRset holds at least one
//! usable record. The answer is cached for as long as the records' TTLs allow.

use crate::decide::DANE_MAX_TTL as MAX_TTL;
pub use crate::decide::{DaneState, unsigned};
use crate::dns::{DnsError, Resolver, Type};
use hickory_proto::rr::RData;

/// At most this many MX hosts are asked for TLSA records.
const MAX_MX: usize = 8;

/// RFC 7672 §2.2 / §3.1: DANE-TA(2) and DANE-EE(3) are the usable certificate usages for
/// SMTP (PKIX-TA(0) and PKIX-EE(1) are not); selectors 0-1 and matching types 0-2 are the
/// defined ones.
pub fn usable(usage: u8, selector: u8, matching: u8) -> bool {
    matches!(usage, 2 | 3) && selector <= 1 && matching <= 2
}

fn clamp(ttl: u32, min_ttl: u64) -> u64 {
    u64::from(ttl).clamp(min_ttl.min(MAX_TTL), MAX_TTL)
}

/// Explains a temporary failure: a validating resolver answers SERVFAIL for data whose
/// signatures do not validate, and answers with the CD bit set; anything else is
/// unreachable or broken DNS. Returns (bogus?, explanation).
fn diagnose(resolver: &Resolver, name: &str, rtype: Type, e: &DnsError) -> (bool, String) {
    match resolver.lookup_unchecked(name, rtype, |_: &RData| Some(())) {
        Ok(a) if !a.items.is_empty() => (
            true,
            format!(
                "DNSSEC validation of {name} {rtype} failed (bogus signatures: the resolver answers only with checking disabled)"
            ),
        ),
        _ => (false, e.to_string()),
    }
}

/// Checks `domain` (A-label form). `min_ttl` is the shortest time an answer from a signed
/// zone is cached; an unsigned zone's answer is kept for `insecure_ttl`.
pub fn check(resolver: &Resolver, domain: &str, min_ttl: u64, insecure_ttl: u64) -> DaneState {
    let no = |ttl: u64, why: String, bogus: bool| DaneState { applies: false, ttl, why, bogus };
    let mx = match resolver.mx(domain) {
        Ok(a) => a,
        Err(e) => {
            let (bogus, why) = diagnose(resolver, domain, Type::MX, &e);
            return no(min_ttl, why, bogus);
        }
    };
    if !mx.authentic {
        return unsigned(domain, insecure_ttl, "its MX answer is not DNSSEC-authenticated");
    }
    let mut hosts = mx.items;
    hosts.sort_by_key(|(pref, _)| *pref);
    // RFC 5321 §5.1: no MX records means the domain itself is the (implicit) MX.
    let hosts: Vec<String> = if hosts.is_empty() {
        vec![domain.to_owned()]
    } else {
        hosts.into_iter().map(|(_, h)| h).take(MAX_MX).collect()
    };
    let mut ttl = mx.ttl;
    let mut notes = Vec::new();
    let mut bogus = false;
    for host in &hosts {
        let name = format!("_25._tcp.{host}");
        match resolver.tlsa(&name) {
            Ok(t) if t.authentic && t.items.iter().any(|&(u, s, m)| usable(u, s, m)) => {
                return DaneState {
                    applies: true,
                    ttl: clamp(ttl.min(t.ttl), min_ttl),
                    why: format!("DNSSEC-authenticated TLSA records for MX {host}"),
                    bogus,
                };
            }
            Ok(t) if t.authentic && !t.items.is_empty() => {
                notes.push(format!("{name}: no usable TLSA record (RFC 7672 §3.1)"));
                ttl = ttl.min(t.ttl);
            }
            Ok(t) if !t.items.is_empty() => {
                notes.push(format!("{name}: TLSA records not DNSSEC-authenticated"))
            }
            Ok(_) => {}
            Err(e) => {
                let (b, why) = diagnose(resolver, &name, Type::TLSA, &e);
                bogus |= b;
                notes.push(why);
            }
        }
    }
    let why = if notes.is_empty() {
        format!("no TLSA records for the MX hosts of {domain}")
    } else {
        notes.join("; ")
    };
    no(clamp(ttl, min_ttl), why, bogus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_tlsa_parameters_follow_rfc_7672() {
        assert!(usable(3, 1, 1));
        assert!(usable(2, 0, 2));
        assert!(usable(3, 0, 0));
        assert!(!usable(0, 0, 1), "PKIX-TA is unusable for SMTP");
        assert!(!usable(1, 1, 1), "PKIX-EE is unusable for SMTP");
        assert!(!usable(3, 2, 1), "unknown selector");
        assert!(!usable(3, 1, 3), "unknown matching type");
        assert!(!usable(4, 1, 1), "unknown usage");
    }

    #[test]
    fn ttls_are_clamped() {
        assert_eq!(clamp(0, 60), 60);
        assert_eq!(clamp(300, 60), 300);
        assert_eq!(clamp(u32::MAX, 60), MAX_TTL);
        assert_eq!(clamp(5, 1), 5);
    }
}
