//! MX host matching (RFC 8461 §4.1): `pattern NUL host`, checked against a reference
//! written from the RFC's words, on normalised names.
#![no_main]
use exim_mta_sts_tool::{domain, mx};
use libfuzzer_sys::fuzz_target;

/// RFC 8461 §4.1: a pattern matches its own name; `*.parent` matches a name made of one
/// more non-empty leftmost label (without a dot) and `parent`.
fn reference(pattern: &str, host: &str) -> bool {
    if let Some(parent) = pattern.strip_prefix("*.") {
        host.len() > parent.len() + 1
            && host.ends_with(parent)
            && host.as_bytes()[host.len() - parent.len() - 1] == b'.'
            && !host[..host.len() - parent.len() - 1].contains('.')
    } else {
        pattern == host
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let (Some(p), Some(h)) = (parts.next(), parts.next()) else { return };
    let (Ok(p), Ok(h)) = (std::str::from_utf8(p), std::str::from_utf8(h)) else { return };
    let (wild, name) = match p.strip_prefix("*.") {
        Some(rest) => ("*.", rest),
        None => ("", p),
    };
    let Ok(host) = domain::normalize(h) else {
        // A host that is not a valid name matches nothing.
        assert!(!mx::host_allowed([p], h.as_bytes()), "{p:?} {h:?}");
        return;
    };
    let Ok(name) = domain::normalize(name) else { return };
    let pattern = format!("{wild}{name}");
    let got = mx::pattern_matches(&pattern, &host);
    assert_eq!(got, reference(&pattern, &host), "{pattern:?} vs {host:?}");
    // As Exim gives the host (any case, trailing dot), the answer is the same.
    assert_eq!(mx::host_allowed([pattern.as_str()], h.as_bytes()), got);
});
