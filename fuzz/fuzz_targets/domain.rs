//! Domain normalisation (IDNA, trailing dots, literals, lengths), as bytes from Exim.
#![no_main]
use exim_mta_sts_tool::domain::{self, Invalid, MAX_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = [0u8; MAX_LEN];
    let ascii = domain::normalize_ascii(data, &mut buf).map(|o| o.map(str::to_owned));
    let Ok(text) = std::str::from_utf8(data) else { return };
    let full = domain::normalize(text);
    if let Ok(Some(a)) = &ascii {
        assert_eq!(full.as_ref(), Ok(a), "the ASCII fast path and the full path agree");
    }
    if data.first() == Some(&b'[') {
        assert_eq!(full, Err(Invalid::AddressLiteral));
    }
    if let Ok(n) = full {
        assert!(!n.is_empty() && n.len() <= MAX_LEN, "{n:?}");
        assert!(n.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.'), "{n:?}");
        assert!(!n.ends_with('.') && !n.starts_with('.') && !n.contains(".."), "{n:?}");
        assert!(n.split('.').all(|l| (1..=63).contains(&l.len())), "{n:?}");
        assert_eq!(domain::normalize(&n), Ok(n.clone()), "idempotent");
    }
});
