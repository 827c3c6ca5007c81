//! MX host validation against a policy's `mx` patterns (RFC 8461 §4.1, SPEC §4).
//!
//! Both sides are normalised first ([`crate::domain`]): lower case, A-labels, no trailing
//! dot. A pattern is either a full name, which matches that name only, or `*.` followed by
//! a name, which matches exactly one extra leftmost label. Nothing else is a pattern: no
//! substring, suffix or regular-expression matching (the Perl original's defect).

/// Does the normalised `host` match the normalised `pattern`?
pub fn pattern_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        // RFC 8461 §4.1: '*' "may only be used to match the entire left-most label":
        // "*.example.com" matches "mail.example.com" but not "example.com" or
        // "foo.bar.example.com". The label must not be empty (RFC.md T-MX-09).
        Some(parent) => match host.split_once('.') {
            Some((first, rest)) => !first.is_empty() && rest == parent,
            None => false,
        },
        None => pattern == host,
    }
}

/// Does the normalised `host` match any of the `patterns`?
pub fn any_matches<'a>(patterns: impl IntoIterator<Item = &'a str>, host: &str) -> bool {
    patterns.into_iter().any(|p| pattern_matches(p, host))
}

/// Is `host` (as Exim gives it) allowed by `patterns`? The host is normalised here; a
/// host that is not a valid domain name matches nothing.
pub fn host_allowed<'a>(patterns: impl IntoIterator<Item = &'a str>, host: &[u8]) -> bool {
    let mut buf = [0u8; crate::domain::MAX_LEN];
    match crate::domain::normalize_ascii(host, &mut buf) {
        Ok(Some(h)) => any_matches(patterns, h),
        Ok(None) => match std::str::from_utf8(host).map(crate::domain::normalize) {
            Ok(Ok(h)) => any_matches(patterns, &h),
            _ => false,
        },
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_table() {
        // (pattern, host as Exim may pass it, allowed?)
        let cases = [
            // exact names
            ("mx.example.com", "mx.example.com", true),
            ("mx.example.com", "MX.Example.COM", true),
            ("mx.example.com", "mx.example.com.", true),
            ("mx.example.com", "mx2.example.com", false),
            ("mx.example.com", "example.com", false),
            // the Perl original's unanchored regex accepted these
            ("mx.example.com", "mx.example.com.attacker.net", false),
            ("mx.example.com", "evilmx.example.com", false),
            ("mx.example.com", "mxxexample.com", false),
            ("mx.example.com", "a.mx.example.com", false),
            ("mail.example.com", "xmail.example.com", false),
            // wildcards: exactly one leftmost label (RFC 8461 §4.1)
            ("*.example.com", "mail.example.com", true),
            ("*.example.com", "MAIL.EXAMPLE.COM.", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "mail.example.com.attacker.net", false),
            ("*.example.com", "mailexample.com", false),
            ("*.example.com", "*.example.com", false),
            ("*.example.com", "mail.example.net", false),
            // IDNA: the policy holds A-labels, Exim may hold either form
            ("mx.xn--bcher-kva.example", "mx.bücher.example", true),
            ("*.xn--bcher-kva.example", "MX.XN--BCHER-KVA.EXAMPLE", true),
            ("*.xn--bcher-kva.example", "mx.xn--bcher-kva.example", true),
            ("mx.xn--bcher-kva.example", "mx.bucher.example", false),
            // garbage hosts match nothing
            ("mx.example.com", "", false),
            ("mx.example.com", "[192.0.2.1]", false),
            ("mx.example.com", "mx.example.com:25", false),
        ];
        for (pattern, host, want) in cases {
            assert_eq!(host_allowed([pattern], host.as_bytes()), want, "pattern {pattern:?} host {host:?}");
        }
    }

    #[test]
    fn any_of_several_patterns() {
        let patterns = ["mx1.example.com", "*.backup.example.net"];
        assert!(host_allowed(patterns, b"mx1.example.com"));
        assert!(host_allowed(patterns, b"b1.backup.example.net"));
        assert!(!host_allowed(patterns, b"mx2.example.com"));
        assert!(!host_allowed(patterns, b"backup.example.net"));
        assert!(!host_allowed(std::iter::empty(), b"mx1.example.com"));
    }
}
