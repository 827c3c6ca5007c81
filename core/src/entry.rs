//! One domain's cached record in the library's store, and its byte encoding (pure: no
//! I/O; fuzzed by `fuzz/fuzz_targets/entry.rs`). The store itself is [`crate::cache`].

use crate::cause::Cause;
use crate::policy::Mode;

/// What an entry records about a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A policy fetched under `id`, valid until `expires`.
    Policy,
    /// No usable `_mta-sts` record (negative cache) until `expires`.
    NoSts,
    /// A valid record `id`, but the fetch failed and nothing was cached; the answer follows
    /// `fetch_failure` until `expires` (RFC 8461 §3.3's five-minute back-off).
    FetchFailed,
    /// DNS failed temporarily with nothing cached: `fail` until `expires`.
    TempFail,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Policy => 1,
            Kind::NoSts => 2,
            Kind::FetchFailed => 3,
            Kind::TempFail => 4,
        }
    }
    fn from_code(c: u8) -> Option<Kind> {
        Some(match c {
            1 => Kind::Policy,
            2 => Kind::NoSts,
            3 => Kind::FetchFailed,
            4 => Kind::TempFail,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Policy => "policy",
            Kind::NoSts => "no-mta-sts",
            Kind::FetchFailed => "fetch-failed",
            Kind::TempFail => "dns-tempfail",
        }
    }
}

fn mode_code(m: Mode) -> u8 {
    match m {
        Mode::None => 0,
        Mode::Testing => 1,
        Mode::Enforce => 2,
    }
}

fn mode_from(c: u8) -> Option<Mode> {
    Some(match c {
        0 => Mode::None,
        1 => Mode::Testing,
        2 => Mode::Enforce,
        _ => return None,
    })
}

/// One domain's entry. `S` is `&str` when borrowed from the database (the hot path copies
/// nothing) and `String` when owned ([`OwnedEntry`]). Times are Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<S> {
    pub kind: Kind,
    /// The policy's mode (meaningful for [`Kind::Policy`]).
    pub mode: Mode,
    /// When this entry stops being usable as it is.
    pub expires: u64,
    /// When the `_mta-sts` TXT record was last checked; 0 when a re-check is due now (a
    /// delivery failed under the enforce policy: RFC 8461 §5.1).
    pub checked: u64,
    /// When the policy was fetched.
    pub fetched: u64,
    /// No fetch for this domain before this time (back-off after a failure).
    pub retry_after: u64,
    /// 0 when the shared database agrees with this entry; otherwise its update failed
    /// (say, a full disk) and is tried again from this time on.
    pub shared_retry: u64,
    /// DANE applies (SPEC §5), as last checked.
    pub dane: bool,
    /// Until when that DANE answer holds (0: never checked).
    pub dane_until: u64,
    /// When Exim (or `prefetch`) last needed this domain on the cold path, which runs at
    /// least every `recheck_interval` for a domain in use; `refresh` keeps it.
    pub used: u64,
    /// When a failed delivery last forced a re-check of the TXT `id` (RFC 8461 §5.1; at
    /// most once per `fetch_backoff`).
    pub rechecked: u64,
    /// The TXT `id` the policy was fetched under (or that failed).
    pub id: S,
    /// The `mx` patterns, colon-separated (the shared database's form).
    pub mx: S,
    /// The TLSRPT destinations (the shared database's `:report` form).
    pub report: S,
    /// The policy as served.
    pub text: S,
    /// The last problem seen, typed (its code is stored).
    pub cause: Cause,
    /// The last problem seen, in words (failure reason), for the admin tool.
    pub note: S,
    /// The TXT `id` whose fetch failed last (RFC 8461 §3.3: back-off is per id).
    pub failed_id: S,
}

/// An entry that owns its strings (built by the cold path, or copied out of a read
/// transaction).
pub type OwnedEntry = Entry<String>;

impl<S> Entry<S> {
    /// The same entry with each string mapped by `f`.
    fn map<'a, T>(&'a self, f: impl Fn(&'a S) -> T) -> Entry<T> {
        Entry {
            kind: self.kind,
            mode: self.mode,
            expires: self.expires,
            checked: self.checked,
            fetched: self.fetched,
            retry_after: self.retry_after,
            shared_retry: self.shared_retry,
            dane: self.dane,
            dane_until: self.dane_until,
            used: self.used,
            rechecked: self.rechecked,
            id: f(&self.id),
            mx: f(&self.mx),
            report: f(&self.report),
            text: f(&self.text),
            cause: self.cause,
            note: f(&self.note),
            failed_id: f(&self.failed_id),
        }
    }
}

impl<S: AsRef<str>> Entry<S> {
    /// A borrowed view of this entry.
    pub fn view(&self) -> Entry<&str> {
        self.map(|s| s.as_ref())
    }

    /// An owned copy of this entry.
    pub fn to_owned_entry(&self) -> OwnedEntry {
        self.map(|s| s.as_ref().to_owned())
    }

    pub fn mx_patterns(&self) -> impl Iterator<Item = &str> {
        self.mx.as_ref().split(':').filter(|p| !p.is_empty())
    }

    /// Serialises: magic, kind, mode, DANE flag, cause, eight u64 (LE), then six length-prefixed strings.
    pub fn encode(&self) -> Vec<u8> {
        let strings =
            [&self.id, &self.mx, &self.report, &self.text, &self.note, &self.failed_id].map(|s| s.as_ref());
        let mut out = Vec::with_capacity(HEADER + strings.iter().map(|s| s.len() + 4).sum::<usize>());
        out.extend_from_slice(&[
            MAGIC,
            self.kind.code(),
            mode_code(self.mode),
            u8::from(self.dane),
            self.cause.code(),
        ]);
        for t in [
            self.expires,
            self.checked,
            self.fetched,
            self.retry_after,
            self.shared_retry,
            self.dane_until,
            self.used,
            self.rechecked,
        ] {
            out.extend_from_slice(&t.to_le_bytes());
        }
        for s in strings {
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(s.as_bytes().get(..len as usize).unwrap_or_default());
        }
        out
    }
}

impl OwnedEntry {
    /// An entry of `kind` with no policy data.
    pub fn bare(kind: Kind, expires: u64, checked: u64) -> OwnedEntry {
        Entry::<&str> {
            kind,
            mode: Mode::None,
            expires,
            checked,
            fetched: 0,
            retry_after: 0,
            shared_retry: 0,
            dane: false,
            dane_until: 0,
            used: 0,
            rechecked: 0,
            id: "",
            mx: "",
            report: "",
            text: "",
            cause: Cause::None,
            note: "",
            failed_id: "",
        }
        .to_owned_entry()
    }
}

const MAGIC: u8 = b'S';
const HEADER: usize = 5 + 8 * 8;

impl<'a> Entry<&'a str> {
    /// Reads an encoded entry without copying; `None` when the bytes are not one.
    pub fn decode(b: &'a [u8]) -> Option<Entry<&'a str>> {
        Self::decode_with(b, true)
    }

    /// [`Entry::decode`] for answering only (the hot path): the strings no answer needs (the
    /// id, report, policy text, which can be 64 KiB, note and failed id) are left empty
    /// instead of being checked as UTF-8 on every call. Never store such a view.
    pub fn decode_for_answer(b: &'a [u8]) -> Option<Entry<&'a str>> {
        Self::decode_with(b, false)
    }

    fn decode_with(b: &'a [u8], full: bool) -> Option<Entry<&'a str>> {
        let (&[magic, kind, mode, dane, cause], rest) = b.split_first_chunk::<5>()?;
        if magic != MAGIC || dane > 1 {
            return None;
        }
        let mut rest = rest;
        let mut times = [0u64; 8];
        for t in &mut times {
            let (n, r) = rest.split_first_chunk::<8>()?;
            *t = u64::from_le_bytes(*n);
            rest = r;
        }
        let mut strings = [""; 6];
        for (i, s) in strings.iter_mut().enumerate() {
            let (n, r) = rest.split_first_chunk::<4>()?;
            let len = u32::from_le_bytes(*n) as usize;
            let (bytes, r) = r.split_at_checked(len)?;
            // String 1 is the `mx` patterns, the only string an answer needs.
            if full || i == 1 {
                *s = std::str::from_utf8(bytes).ok()?;
            }
            rest = r;
        }
        if !rest.is_empty() {
            // Nothing follows the last string in an entry we wrote: one encoding per entry.
            return None;
        }
        let [expires, checked, fetched, retry_after, shared_retry, dane_until, used, rechecked] = times;
        let [id, mx, report, text, note, failed_id] = strings;
        Some(Entry {
            kind: Kind::from_code(kind)?,
            mode: mode_from(mode)?,
            expires,
            checked,
            fetched,
            retry_after,
            shared_retry,
            dane: dane == 1,
            dane_until,
            used,
            rechecked,
            id,
            mx,
            report,
            text,
            cause: Cause::from_code(cause)?,
            note,
            failed_id,
        })
    }
}

/// An entry with every field set (for tests here and in the store's).
#[cfg(test)]
pub(crate) fn sample() -> Entry<&'static str> {
    Entry {
        kind: Kind::Policy,
        mode: Mode::Enforce,
        expires: 1_800_000_000,
        checked: 1_700_000_000,
        fetched: 1_700_000_001,
        retry_after: 0,
        shared_retry: 0,
        dane: false,
        dane_until: 1_700_000_600,
        used: 1_700_000_000,
        rechecked: 1_700_000_002,
        id: "20240101",
        mx: "mx1.example.com:*.example.net",
        report: "tlsrpt@example.com",
        text: "version: STSv1\nmode: enforce\n",
        cause: Cause::None,
        note: "",
        failed_id: "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips() {
        let e = sample();
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes), Some(e));
        assert_eq!(e.mx_patterns().collect::<Vec<_>>(), ["mx1.example.com", "*.example.net"]);
    }

    #[test]
    fn answer_view_keeps_only_what_an_answer_needs() {
        let e = sample();
        let bytes = e.encode();
        let view = Entry::decode_for_answer(&bytes).unwrap();
        assert_eq!(view, Entry { id: "", report: "", text: "", note: "", failed_id: "", ..e });
        assert_eq!(Entry::decode_for_answer(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn garbage_entries_decode_to_none() {
        let bytes = sample().encode();
        for cut in 0..bytes.len() {
            assert_eq!(Entry::decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(Entry::decode(&bad), None);
        let mut bad = bytes.clone();
        bad[1] = 9;
        assert_eq!(Entry::decode(&bad), None);
    }

    #[test]
    fn trailing_bytes_are_not_an_entry() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert_eq!(Entry::decode(&bytes), None);
        assert_eq!(Entry::decode_for_answer(&bytes), None);
    }
}
