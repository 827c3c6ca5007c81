//! Pure parsers for what a policy domain publishes: the `_mta-sts` TXT record
//! (RFC 8461 §3.1), the policy file (RFC 8461 §3.2) and the `_smtp._tls` TLSRPT record
//! (RFC 8460 §3). Text in, values or a [`ParseError`] out: no I/O, no clock, no config.
//!
//! Where the RFCs are ambiguous, the decisions of RFC.md part 3 apply; each is cited at
//! the line that implements it.

use std::fmt;

/// RFC 8461 §3.2: `max_age` has a "maximum value of 31557600".
pub const MAX_AGE_LIMIT: u64 = 31_557_600;

/// A policy's mode (RFC 8461 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }

    /// RFC 8461 §3.2: the values are case-sensitive.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "enforce" => Some(Mode::Enforce),
            "testing" => Some(Mode::Testing),
            "none" => Some(Mode::None),
            _ => None,
        }
    }
}

/// The `_mta-sts` TXT record: only its `id` matters to a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsRecord {
    pub id: String,
}

/// A parsed policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// Seconds, already clamped to [`MAX_AGE_LIMIT`].
    pub max_age: u64,
    /// The published `max_age` was above the limit and was clamped (RFC.md A-03).
    pub max_age_clamped: bool,
    /// Patterns in published order, normalised (lower case, no trailing dot), without
    /// exact duplicates.
    pub mx: Vec<String>,
}

/// The `_smtp._tls` TLSRPT record (RFC 8460 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRpt {
    /// The `mailto:` and `https:` URIs of every `rua=` field, in published order.
    pub rua: Vec<String>,
}

impl TlsRpt {
    /// The shared database's `DOMAIN:report` value (SPEC §3): comma-separated, `mailto:`
    /// stripped from email addresses, `https:` URIs kept as published.
    pub fn report_value(&self) -> String {
        let parts: Vec<&str> = self.rua.iter().map(|u| strip_scheme(u, "mailto:").unwrap_or(u)).collect();
        parts.join(",")
    }
}

/// Why a record or policy was rejected. Whatever the variant, RFC 8461 §3.1 (records)
/// and §3.2/§3.3 (policies) require the same next step: treat the record as absent, or
/// the fetch as failed (TLSRPT `sts-policy-invalid`); a cached policy stays in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The TXT record holds non-ASCII bytes (RFC 8461 §3.1: "MUST be US-ASCII").
    NotAscii,
    /// The policy body is not UTF-8 (RFC.md A-02).
    NotUtf8,
    /// The TXT record does not follow the §3.1 / RFC 8460 §3 grammar.
    RecordSyntax(String),
    /// A policy line does not follow the §3.2 grammar.
    Line { line: usize, reason: String },
    /// A required field is missing.
    Missing(&'static str),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::NotAscii => f.write_str("record is not US-ASCII"),
            ParseError::NotUtf8 => f.write_str("policy is not valid UTF-8"),
            ParseError::RecordSyntax(r) => write!(f, "record syntax: {r}"),
            ParseError::Line { line, reason } => write!(f, "policy line {line}: {reason}"),
            ParseError::Missing(field) => write!(f, "required field {field:?} is missing"),
        }
    }
}

impl std::error::Error for ParseError {}

/// What the `_mta-sts` TXT RRset says (RFC 8461 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// No record begins with `v=STSv1`: the domain has no MTA-STS.
    NoRecord,
    /// More than one STS record: R-8461-07, treat as no policy.
    Several(usize),
    /// One STS record that fails the grammar: R-8461-07, treat as no policy.
    Invalid(ParseError),
    Record(StsRecord),
}

fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn strip_scheme<'a>(uri: &'a str, scheme: &str) -> Option<&'a str> {
    let head = uri.get(..scheme.len())?;
    head.eq_ignore_ascii_case(scheme).then(|| uri.get(scheme.len()..)).flatten()
}

/// RFC.md A-07: a record "is an STS record" when it starts with `v=STSv1` followed by
/// `*WSP ";"` (the ABNF's field delimiter); the same rule serves `v=TLSRPTv1`.
fn has_version(record: &str, version: &str) -> bool {
    record.strip_prefix(version).is_some_and(|rest| rest.trim_start_matches(is_wsp).starts_with(';'))
}

/// `(ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`: the extension-name production
/// shared by RFC 8461 §3.1, §3.2 and RFC 8460 §3.
fn is_ext_name(name: &str) -> bool {
    let b = name.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    b.len() <= 32 && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

/// `1*(%x21-3A / %x3C / %x3E-7E)`: printable ASCII except `=`, `;` and SP.
fn is_ext_value(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|c| matches!(c, 0x21..=0x3A | 0x3C | 0x3E..=0x7E))
}

/// Splits a `v=...;` TXT record into its `(name, value)` fields after the version, per
/// `version 1*(field-delim field) [field-delim]` with `field-delim = *WSP ";" *WSP`.
fn record_fields<'a>(record: &'a str, version: &str) -> Result<Vec<(&'a str, &'a str)>, ParseError> {
    if !record.is_ascii() {
        return Err(ParseError::NotAscii);
    }
    let mut parts = record.split(';');
    let first = parts.next().unwrap_or("");
    if first.trim_end_matches(is_wsp) != version {
        return Err(ParseError::RecordSyntax(format!("must begin with {version}")));
    }
    let parts: Vec<&str> = parts.collect();
    let (last, fields) = match parts.split_last() {
        Some((last, fields)) => (*last, fields),
        None => return Err(ParseError::RecordSyntax("no field after the version".into())),
    };
    // White space is allowed only inside a delimiter (`*WSP ";" *WSP`): a field between two
    // `;` may be padded on both sides, the last one (no `;` after it) only before it.
    // RFC 8461 §3.1, RFC 8460 §3: "v=STSv1; id=X   " (no final ';') is invalid.
    let last = last.trim_start_matches(is_wsp);
    if last.ends_with(is_wsp) {
        return Err(ParseError::RecordSyntax("white space after the last field without ';'".into()));
    }
    let fields: Vec<&str> = fields.iter().map(|p| p.trim_matches(is_wsp)).collect();
    let mut out = Vec::with_capacity(fields.len() + 1);
    for part in fields.iter().copied().chain((!last.is_empty()).then_some(last)) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| ParseError::RecordSyntax(format!("field {part:?} is not name=value")))?;
        if !is_ext_name(name) {
            return Err(ParseError::RecordSyntax(format!("bad field name {name:?}")));
        }
        out.push((name, value));
    }
    if out.is_empty() {
        return Err(ParseError::RecordSyntax("no field after the version".into()));
    }
    Ok(out)
}

/// Parses one `_mta-sts` record (its strings already concatenated, RFC 8461 §3.1).
pub fn parse_sts_record(record: &str) -> Result<StsRecord, ParseError> {
    let mut id = None;
    for (name, value) in record_fields(record, "v=STSv1")? {
        if name == "id" && id.is_none() {
            // §3.1: sts-id = %s"id=" 1*32(ALPHA / DIGIT). RFC.md A-11: the first
            // occurrence counts, so a malformed first id invalidates the record.
            if value.is_empty() || value.len() > 32 || !value.bytes().all(|c| c.is_ascii_alphanumeric()) {
                return Err(ParseError::RecordSyntax(format!("bad id {value:?}")));
            }
            id = Some(value.to_owned());
        } else if !is_ext_value(value) {
            // §3.2: unknown fields are ignored, but must still be well-formed.
            return Err(ParseError::RecordSyntax(format!("bad value for {name:?}")));
        }
        // §3.2 (RFC.md A-10): later duplicates of `id` are ignored.
    }
    id.map(|id| StsRecord { id }).ok_or(ParseError::Missing("id"))
}

/// Applies RFC 8461 §3.1's discovery rules to the TXT RRset of `_mta-sts.DOMAIN`, each
/// record given as its concatenated strings (R-8461-09).
pub fn discover(records: &[String]) -> Discovery {
    // §3.1: "records that do not begin with "v=STSv1;" are discarded".
    let sts: Vec<&String> = records.iter().filter(|r| has_version(r, "v=STSv1")).collect();
    match sts.as_slice() {
        [] => Discovery::NoRecord,
        // §3.1: "If the number of resulting records is not one, or if the resulting
        // record is syntactically invalid, senders MUST assume the recipient domain does
        // not have an available MTA-STS Policy".
        [one] => match parse_sts_record(one) {
            Ok(r) => Discovery::Record(r),
            Err(e) => Discovery::Invalid(e),
        },
        many => Discovery::Several(many.len()),
    }
}

/// Parses the TLSRPT RRset of `_smtp._tls.DOMAIN` (RFC 8460 §3). `None` when the domain
/// does not implement TLSRPT (no record, several, or an invalid one).
pub fn parse_tlsrpt(records: &[String]) -> Option<TlsRpt> {
    // RFC 8460 §3: discard records not beginning with "v=TLSRPTv1;"; not exactly one left
    // means no TLSRPT.
    let mut tlsrpt = records.iter().filter(|r| has_version(r, "v=TLSRPTv1"));
    let record = tlsrpt.next()?;
    if tlsrpt.next().is_some() {
        return None;
    }
    let mut rua = Vec::new();
    let mut seen_rua = false;
    for (name, value) in record_fields(record, "v=TLSRPTv1").ok()? {
        if name == "rua" {
            seen_rua = true;
            // RFC.md A-18: every rua field counts; keep mailto and https, drop the rest.
            for uri in value.split(',').map(|u| u.trim_matches(is_wsp)) {
                // RFC 8460 §3: within a tlsrpt-uri, "commas (ASCII 0x2C), exclamation
                // points (ASCII 0x21), and semicolons (ASCII 0x3B) MUST be encoded": an
                // unencoded '!' makes the record invalid.
                if uri.is_empty() || uri.contains(is_wsp) || uri.contains('!') {
                    return None;
                }
                let known = strip_scheme(uri, "mailto:").or_else(|| strip_scheme(uri, "https:"));
                if known.is_some_and(|rest| !rest.is_empty()) && !rua.iter().any(|u| u == uri) {
                    rua.push(uri.to_owned());
                }
            }
        } else if !is_ext_value(value) {
            return None;
        }
    }
    // RFC 8460 §3: "tlsrpt-rua record is required".
    seen_rua.then_some(TlsRpt { rua })
}

/// Parses a policy file (RFC 8461 §3.2), its bytes already checked for UTF-8.
pub fn parse_policy(text: &str) -> Result<Policy, ParseError> {
    // RFC.md A-08: tolerate one leading byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut version = None;
    let mut mode = None;
    let mut max_age: Option<(u64, bool)> = None;
    let mut mx: Vec<String> = Vec::new();
    // RFC 8461 §3.2 ABNF: sts-policy-term = LF / CRLF (erratum 6253; RFC.md A-06), so
    // a CR is stripped only right before an LF.
    for (n, raw) in text.split('\n').enumerate() {
        let line_no = n + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let bad = |reason: String| ParseError::Line { line: line_no, reason };
        // RFC.md A-08: empty and whitespace-only lines are tolerated.
        if line.chars().all(is_wsp) {
            continue;
        }
        let (key, value) = line.split_once(':').ok_or_else(|| bad("no ':' after the field name".into()))?;
        // RFC.md A-08: no leading whitespace, none before ':' (the name would hold it).
        if !is_ext_name(key) {
            return Err(bad(format!("bad field name {key:?}")));
        }
        // sts-policy-field-delim = ":" *WSP, and trailing WSP is allowed.
        let value = value.trim_matches(is_wsp);
        // RFC 8461 §3.2: "If any non-repeated field -- i.e., all fields excepting "mx" --
        // is duplicated, all entries except for the first SHALL be ignored." RFC.md A-11
        // and A-12: the first occurrence of a registered field must be well-formed.
        match key {
            "version" if version.is_none() => {
                if value != "STSv1" {
                    return Err(bad(format!("version must be STSv1, not {value:?}")));
                }
                version = Some(());
            }
            "mode" if mode.is_none() => {
                mode = Some(Mode::parse(value).ok_or_else(|| bad(format!("bad mode {value:?}")))?);
            }
            "max_age" if max_age.is_none() => {
                max_age = Some(parse_max_age(value).ok_or_else(|| bad(format!("bad max_age {value:?}")))?);
            }
            "mx" => {
                let pattern =
                    parse_mx_pattern(value).ok_or_else(|| bad(format!("bad mx pattern {value:?}")))?;
                if !mx.contains(&pattern) {
                    mx.push(pattern);
                }
            }
            // Later duplicates and unknown fields are ignored; RFC.md A-09: the value of
            // an unknown field is not checked.
            _ => {}
        }
    }
    version.ok_or(ParseError::Missing("version"))?;
    let mode = mode.ok_or(ParseError::Missing("mode"))?;
    let (max_age, max_age_clamped) = max_age.ok_or(ParseError::Missing("max_age"))?;
    // §3.2 ABNF: mx is "required at least once, except when mode is "none"".
    if mx.is_empty() && mode != Mode::None {
        return Err(ParseError::Missing("mx"));
    }
    Ok(Policy { mode, max_age, max_age_clamped, mx })
}

/// `1*10(DIGIT)`, leading zeros allowed. RFC.md A-03: values above 31557600 are clamped
/// (the flag says so) rather than rejected, since rejecting an enforce policy would
/// downgrade the domain to no protection.
fn parse_max_age(value: &str) -> Option<(u64, bool)> {
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let n: u64 = value.parse().ok()?;
    Some((n.min(MAX_AGE_LIMIT), n > MAX_AGE_LIMIT))
}

/// `["*."] Domain`, normalised. RFC 8461 §3.2: IDNs MUST be written as A-labels, so
/// only ASCII is accepted; RFC.md A-16: one trailing dot is tolerated.
fn parse_mx_pattern(value: &str) -> Option<String> {
    let (wild, name) = match value.strip_prefix("*.") {
        Some(rest) => ("*.", rest),
        None => ("", value),
    };
    let mut buf = [0u8; crate::domain::MAX_LEN];
    match crate::domain::normalize_ascii(name.as_bytes(), &mut buf) {
        Ok(Some(n)) => Some(format!("{wild}{n}")),
        _ => None,
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
