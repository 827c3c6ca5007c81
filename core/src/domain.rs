//! Domain names as this library compares them (SPEC §2, RFC 8461 §4.1, RFC.md A-16):
//! lower case, A-label (IDNA) form, no trailing dot, RFC 5321 `Domain` syntax.
//!
//! The hot path normalises ASCII names into a caller's stack buffer without allocating;
//! only names with non-ASCII characters go through the `idna` crate. Nothing here does I/O.

/// RFC 1035 §2.3.4: 255 octets on the wire, so at most 253 characters in text form.
pub const MAX_LEN: usize = 253;

/// A buffer big enough for any normalised domain.
pub type Buf = [u8; MAX_LEN];

/// Why a name is not a domain this library will look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// An address literal such as `[192.0.2.1]`: RFC 8461 §3.4 gives such
    /// destinations no policy.
    AddressLiteral,
    /// Anything else that is not an RFC 5321 `Domain`.
    Syntax,
}

/// Normalises an ASCII name into `buf`: lower case, one trailing dot removed, checked
/// against RFC 5321 `Domain` (letters, digits and hyphens; labels of 1 to 63 characters
/// that neither start nor end with a hyphen; 253 characters at most).
///
/// Returns `Ok(None)` when the name holds non-ASCII characters, which need [`normalize`].
pub fn normalize_ascii<'b>(input: &[u8], buf: &'b mut Buf) -> Result<Option<&'b str>, Invalid> {
    if input.first() == Some(&b'[') {
        return Err(Invalid::AddressLiteral);
    }
    let input = input.strip_suffix(b".").unwrap_or(input);
    // The 253-character limit applies to the A-label form (RFC 5890 §2.3.2.1, RFC 5891):
    // a non-ASCII name is measured after conversion, by the caller's second call. Its
    // UTF-8 form can be at most four bytes per A-label byte, which bounds the IDNA work.
    if !input.is_ascii() {
        return if input.len() > 4 * MAX_LEN { Err(Invalid::Syntax) } else { Ok(None) };
    }
    if input.len() > MAX_LEN {
        return Err(Invalid::Syntax);
    }
    let out = buf.get_mut(..input.len()).ok_or(Invalid::Syntax)?;
    let mut label_len = 0usize;
    let mut prev = b'.';
    for (dst, &c) in out.iter_mut().zip(input) {
        let c = c.to_ascii_lowercase();
        match c {
            b'a'..=b'z' | b'0'..=b'9' => label_len += 1,
            b'-' if prev != b'.' => label_len += 1,
            b'.' if prev != b'.' && prev != b'-' => label_len = 0,
            _ => return Err(Invalid::Syntax),
        }
        if label_len > 63 {
            return Err(Invalid::Syntax);
        }
        *dst = c;
        prev = c;
    }
    if prev == b'.' || prev == b'-' {
        // Empty input, an empty last label, or a label ending in a hyphen.
        return Err(Invalid::Syntax);
    }
    // Only ASCII letters, digits, '-' and '.' were copied.
    std::str::from_utf8(out).map(Some).map_err(|_| Invalid::Syntax)
}

/// Normalises any name, converting U-labels to A-labels (IDNA, UTS #46) first.
pub fn normalize(input: &str) -> Result<String, Invalid> {
    let mut buf = [0u8; MAX_LEN];
    if let Some(s) = normalize_ascii(input.as_bytes(), &mut buf)? {
        return Ok(s.to_owned());
    }
    let input = input.strip_suffix('.').unwrap_or(input);
    let ascii = idna::domain_to_ascii_strict(input).map_err(|_| Invalid::Syntax)?;
    match normalize_ascii(ascii.as_bytes(), &mut buf)? {
        Some(s) => Ok(s.to_owned()),
        None => Err(Invalid::Syntax),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_forms() {
        let cases: &[(&str, Result<&str, Invalid>)] = &[
            ("Example.COM", Ok("example.com")),
            ("example.com.", Ok("example.com")),
            ("mx-1.example.com", Ok("mx-1.example.com")),
            ("xn--bcher-kva.example", Ok("xn--bcher-kva.example")),
            ("bücher.example", Ok("xn--bcher-kva.example")),
            ("BÜCHER.example.", Ok("xn--bcher-kva.example")),
            ("localhost", Ok("localhost")),
            ("[192.0.2.1]", Err(Invalid::AddressLiteral)),
            ("[IPv6:2001:db8::1]", Err(Invalid::AddressLiteral)),
            ("", Err(Invalid::Syntax)),
            (".", Err(Invalid::Syntax)),
            ("example..com", Err(Invalid::Syntax)),
            (".example.com", Err(Invalid::Syntax)),
            ("example.com..", Err(Invalid::Syntax)),
            ("-a.example.com", Err(Invalid::Syntax)),
            ("a-.example.com", Err(Invalid::Syntax)),
            ("a_b.example.com", Err(Invalid::Syntax)),
            ("a b.example.com", Err(Invalid::Syntax)),
            ("*.example.com", Err(Invalid::Syntax)),
            ("example.com:25", Err(Invalid::Syntax)),
            ("a\0b", Err(Invalid::Syntax)),
        ];
        for (input, want) in cases {
            assert_eq!(normalize(input).as_deref(), want.as_deref(), "input {input:?}");
        }
    }

    #[test]
    fn length_limits() {
        let label63 = "a".repeat(63);
        assert!(normalize(&format!("{label63}.com")).is_ok());
        assert_eq!(normalize(&format!("{label63}b.com")), Err(Invalid::Syntax));
        let long = ["abcdefghi"; 25].join("."); // 249 characters
        assert!(normalize(&long).is_ok());
        assert_eq!(normalize(&format!("{long}.abcd")), Err(Invalid::Syntax));
        assert_eq!(normalize(&"a.".repeat(1_000_000)), Err(Invalid::Syntax));
        assert_eq!(normalize(&"ü.".repeat(1_000_000)), Err(Invalid::Syntax));
    }

    #[test]
    fn length_limit_applies_to_the_a_label_form() {
        // 13 labels of ten 'ü': 272 bytes of UTF-8, but each A-label is
        // "xn--tdaaaaaaaaa" (15 characters): 13 * 16 - 1 = 207 characters.
        let name = vec!["ü".repeat(10); 13].join(".");
        assert!(name.len() > MAX_LEN, "{}", name.len());
        let a = normalize(&name).expect("the A-label form fits in 253 characters");
        assert!(a.len() <= MAX_LEN && a.starts_with("xn--"), "{a}");
        // Nineteen such labels make 303 A-label characters: too long.
        assert_eq!(normalize(&vec!["ü".repeat(10); 19].join(".")), Err(Invalid::Syntax));
    }
}
