//! The library's own store (SPEC §3, config key `state`): what the hot path reads.
//!
//! One LMDB file, main database only, keys:
//! - `!schema`        → [`SCHEMA`]; a file without it (or with another) is moved aside;
//! - `d:DOMAIN`       → an [`Entry`]: a policy, or what is known of a domain without one;
//! - `l:DOMAIN`       → a fetch lease: (pid, until), so that concurrent processes asking
//!   for the same new domain cause one fetch (SPEC §8).
//!
//! The environment is opened once per process and afresh after `fork()`; a read keeps a
//! reset read transaction between calls (renewing it costs ~30 ns). Exim is never pointed
//! at this file.

use crate::lmdbfile::{self, OpenError};
use crate::policy::Mode;
use lmdb::{Cursor, Database, Environment, EnvironmentFlags, InactiveTransaction, Transaction, WriteFlags};
use std::path::Path;

pub const SCHEMA_KEY: &[u8] = b"!schema";
pub const SCHEMA: &[u8] = b"exim-mta-sts state 3";

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
    /// When the `_mta-sts` TXT record was last checked.
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
    /// The TXT `id` the policy was fetched under (or that failed).
    pub id: S,
    /// The `mx` patterns, colon-separated (the shared database's form).
    pub mx: S,
    /// The TLSRPT destinations (the shared database's `:report` form).
    pub report: S,
    /// The policy as served.
    pub text: S,
    /// The last problem seen (failure reason), for the admin tool.
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
            id: f(&self.id),
            mx: f(&self.mx),
            report: f(&self.report),
            text: f(&self.text),
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

    /// Serialises: magic, kind, mode, DANE flag, seven u64 (LE), then six length-prefixed strings.
    pub fn encode(&self) -> Vec<u8> {
        let strings =
            [&self.id, &self.mx, &self.report, &self.text, &self.note, &self.failed_id].map(|s| s.as_ref());
        let mut out = Vec::with_capacity(HEADER + strings.iter().map(|s| s.len() + 4).sum::<usize>());
        out.extend_from_slice(&[MAGIC, self.kind.code(), mode_code(self.mode), u8::from(self.dane)]);
        for t in [
            self.expires,
            self.checked,
            self.fetched,
            self.retry_after,
            self.shared_retry,
            self.dane_until,
            self.used,
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
            id: "",
            mx: "",
            report: "",
            text: "",
            note: "",
            failed_id: "",
        }
        .to_owned_entry()
    }
}

const MAGIC: u8 = b'S';
const HEADER: usize = 4 + 7 * 8;

impl<'a> Entry<&'a str> {
    /// Reads an encoded entry without copying; `None` when the bytes are not one.
    pub fn decode(b: &'a [u8]) -> Option<Entry<&'a str>> {
        Self::decode_with(b, true)
    }

    /// [`Entry::decode`] for answering only (the hot path): the policy text and the note,
    /// which can be long (a policy may have 64 KiB) and no answer needs, are left empty
    /// instead of being checked on every call. Never store such a view.
    pub fn decode_for_answer(b: &'a [u8]) -> Option<Entry<&'a str>> {
        Self::decode_with(b, false)
    }

    fn decode_with(b: &'a [u8], full: bool) -> Option<Entry<&'a str>> {
        let (&[magic, kind, mode, dane], rest) = b.split_first_chunk::<4>()?;
        if magic != MAGIC || dane > 1 {
            return None;
        }
        let mut rest = rest;
        let mut times = [0u64; 7];
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
            // Strings 3 and 4 are the policy text and the note.
            if full || !(3..=4).contains(&i) {
                *s = std::str::from_utf8(bytes).ok()?;
            }
            rest = r;
        }
        let [expires, checked, fetched, retry_after, shared_retry, dane_until, used] = times;
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
            id,
            mx,
            report,
            text,
            note,
            failed_id,
        })
    }
}

/// A problem with the store. The caller answers from live lookups and logs it.
#[derive(Debug)]
pub enum CacheError {
    Open(OpenError),
    Lmdb(lmdb::Error),
}

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheError::Open(e) => e.fmt(f),
            CacheError::Lmdb(e) => write!(f, "state database: {e}"),
        }
    }
}

impl std::error::Error for CacheError {}

impl From<lmdb::Error> for CacheError {
    fn from(e: lmdb::Error) -> Self {
        CacheError::Lmdb(e)
    }
}

/// Builds `prefix` + `domain` in a stack buffer.
fn key<'b>(prefix: u8, domain: &str, buf: &'b mut [u8; 2 + crate::domain::MAX_LEN]) -> &'b [u8] {
    let d = domain.as_bytes();
    let n = d.len().min(crate::domain::MAX_LEN);
    let (head, tail) = buf.split_at_mut(2);
    head.copy_from_slice(&[prefix, b':']);
    for (dst, src) in tail.iter_mut().zip(d) {
        *dst = *src;
    }
    buf.get(..2 + n).unwrap_or_default()
}

/// The store, open in this process.
pub struct Store {
    env: &'static Environment,
    db: Database,
    /// A reset read transaction kept between reads.
    idle: Option<InactiveTransaction<'static>>,
    /// The file was created (or rebuilt) by this open: see [`crate::reseed`].
    pub is_new: bool,
}

// SAFETY: the environment is opened with MDB_NOTLS, so a (reset) read transaction is not
// tied to the thread that began it (lmdb.h: "A thread may use parallel read-only
// transactions … read-only transactions … not tied to threads"); a Store is only ever
// used by one thread at a time (the process-wide Mutex), which LMDB requires.
#[allow(unsafe_code)]
unsafe impl Send for Store {}

impl Store {
    /// Opens (creating, or rebuilding a damaged file) the store at `path`.
    pub fn open(path: &Path) -> Result<Store, CacheError> {
        // NO_TLS: reader slots belong to transactions, not threads, so the reset read
        // transaction can be kept between calls.
        let (env, is_new) =
            lmdbfile::open(path, EnvironmentFlags::NO_TLS, check_schema).map_err(CacheError::Open)?;
        let db = env.open_db(None)?;
        // The environment lives as long as the process: a forked child abandons it
        // (see `abandon`) and opens its own, as LMDB requires.
        let env: &'static Environment = Box::leak(Box::new(env));
        Ok(Store { env, db, idle: None, is_new })
    }

    /// In a forked child: forget this store without closing anything. Closing the
    /// environment or aborting the kept transaction would release the *parent's* locks
    /// and reader slot, which live in shared memory.
    pub fn abandon(mut self) {
        if let Some(t) = self.idle.take() {
            std::mem::forget(t);
        }
        std::mem::forget(self);
    }

    /// Reads the entry of `domain` and passes it (or `None`) to `f`, inside one read
    /// transaction. Undecodable bytes are treated as no entry.
    pub fn read<R>(
        &mut self,
        domain: &str,
        f: impl FnOnce(Option<Entry<&str>>) -> R,
    ) -> Result<R, CacheError> {
        self.read_bytes(domain, |b| f(b.and_then(Entry::decode)))
    }

    /// [`Store::read`] of the encoded entry, for callers that decode it themselves.
    pub fn read_bytes<R>(
        &mut self,
        domain: &str,
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R, CacheError> {
        let txn = match self.idle.take() {
            Some(t) => t.renew()?,
            None => self.env.begin_ro_txn()?,
        };
        let mut kb = [0u8; 2 + crate::domain::MAX_LEN];
        let r = match txn.get(self.db, &key(b'd', domain, &mut kb)) {
            Ok(bytes) => f(Some(bytes)),
            Err(lmdb::Error::NotFound) => f(None),
            Err(e) => return Err(e.into()),
        };
        self.idle = Some(txn.reset());
        Ok(r)
    }

    fn write_txn<R>(
        &self,
        body: impl Fn(&mut lmdb::RwTransaction<'_>) -> Result<R, lmdb::Error>,
    ) -> Result<R, CacheError> {
        Ok(lmdbfile::write(self.env, body)?)
    }

    /// Stores the entry of `domain`.
    pub fn put(&self, domain: &str, entry: &Entry<&str>) -> Result<(), CacheError> {
        let (k, bytes) = (owned_key(b'd', domain), entry.encode());
        self.write_txn(|t| t.put(self.db, &k, &bytes, WriteFlags::empty()))
    }

    /// Stores the entry of `domain` and releases our fetch lease, in one transaction (the
    /// end of a cold path).
    pub fn put_releasing_lease(&self, domain: &str, entry: &Entry<&str>) -> Result<(), CacheError> {
        let (k, lease, bytes) = (owned_key(b'd', domain), owned_key(b'l', domain), entry.encode());
        self.write_txn(|t| {
            t.put(self.db, &k, &bytes, WriteFlags::empty())?;
            release_own(t, self.db, &lease)
        })
    }

    /// Drops everything about `domain`. Returns whether it had an entry.
    pub fn forget(&self, domain: &str) -> Result<bool, CacheError> {
        let k = owned_key(b'd', domain);
        self.write_txn(|t| match t.del(self.db, &k, None) {
            Ok(()) => Ok(true),
            Err(lmdb::Error::NotFound) => Ok(false),
            Err(e) => Err(e),
        })
    }

    /// Takes the fetch lease of `domain` for this process until `until`, unless a live
    /// process holds it. Returns whether we hold it now.
    pub fn take_lease(&self, domain: &str, now: u64, until: u64) -> Result<bool, CacheError> {
        let k = owned_key(b'l', domain);
        self.write_txn(|t| {
            if t.get(self.db, &k).is_ok_and(|v| held_by_other(v, now)) {
                return Ok(false);
            }
            let mut v = crate::sys::pid().to_le_bytes().to_vec();
            v.extend_from_slice(&until.to_le_bytes());
            t.put(self.db, &k, &v, WriteFlags::empty())?;
            Ok(true)
        })
    }

    /// Is the fetch lease of `domain` held by another live process?
    pub fn lease_held_by_other(&self, domain: &str, now: u64) -> Result<bool, CacheError> {
        let k = owned_key(b'l', domain);
        let txn = self.env.begin_ro_txn()?;
        let held = match txn.get(self.db, &k) {
            Ok(v) => held_by_other(v, now),
            Err(lmdb::Error::NotFound) => false,
            Err(e) => return Err(e.into()),
        };
        drop(txn);
        Ok(held)
    }

    /// Releases our lease of `domain`.
    pub fn release_lease(&self, domain: &str) -> Result<(), CacheError> {
        let k = owned_key(b'l', domain);
        self.write_txn(|t| release_own(t, self.db, &k))
    }

    /// Every domain entry, for the admin tool: (domain, encoded entry).
    pub fn entries(&self) -> Result<Vec<(String, Vec<u8>)>, CacheError> {
        let txn = self.env.begin_ro_txn()?;
        let mut out = Vec::new();
        {
            let mut cur = txn.open_ro_cursor(self.db)?;
            for item in cur.iter_from(b"d:") {
                let (k, v) = item?;
                let Some(domain) = k.strip_prefix(b"d:") else { break };
                out.push((String::from_utf8_lossy(domain).into_owned(), v.to_vec()));
            }
        }
        Ok(out)
    }
}

/// `prefix:domain` as an owned key (for write transactions, whose bodies may run twice).
fn owned_key(prefix: u8, domain: &str) -> Vec<u8> {
    let mut kb = [0u8; 2 + crate::domain::MAX_LEN];
    key(prefix, domain, &mut kb).to_vec()
}

/// Is this lease another live process's, and unexpired?
fn held_by_other(lease: &[u8], now: u64) -> bool {
    decode_lease(lease)
        .is_some_and(|(pid, until)| pid != crate::sys::pid() && until > now && crate::sys::process_alive(pid))
}

/// Deletes the lease at `key` if it is ours.
fn release_own(t: &mut lmdb::RwTransaction<'_>, db: Database, key: &[u8]) -> Result<(), lmdb::Error> {
    let mine = t.get(db, &key).ok().and_then(decode_lease).is_some_and(|(pid, _)| pid == crate::sys::pid());
    if mine {
        t.del(db, &key, None)?;
    }
    Ok(())
}

fn decode_lease(v: &[u8]) -> Option<(u32, u64)> {
    let (pid, rest) = v.split_first_chunk::<4>()?;
    let (until, _) = rest.split_first_chunk::<8>()?;
    Some((u32::from_le_bytes(*pid), u64::from_le_bytes(*until)))
}

/// A new (empty) store gets the schema key; an existing one must carry ours.
fn check_schema(env: &Environment) -> Result<(), String> {
    let db = env.open_db(None).map_err(|e| e.to_string())?;
    {
        let txn = env.begin_ro_txn().map_err(|e| e.to_string())?;
        match txn.get(db, &SCHEMA_KEY) {
            Ok(v) if v == SCHEMA => return Ok(()),
            Ok(v) => {
                return Err(format!(
                    "schema {:?} is not {:?}",
                    String::from_utf8_lossy(v),
                    String::from_utf8_lossy(SCHEMA)
                ));
            }
            Err(lmdb::Error::NotFound) => {
                let empty = txn.open_ro_cursor(db).map_err(|e| e.to_string())?.iter_start().next().is_none();
                if !empty {
                    return Err("not an exim-mta-sts state database (no schema key)".into());
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    let mut txn = env.begin_rw_txn().map_err(|e| e.to_string())?;
    txn.put(db, &SCHEMA_KEY, &SCHEMA, WriteFlags::empty()).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry<&'static str> {
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
            id: "20240101",
            mx: "mx1.example.com:*.example.net",
            report: "tlsrpt@example.com",
            text: "version: STSv1\nmode: enforce\n",
            note: "",
            failed_id: "",
        }
    }

    #[test]
    fn entry_round_trips() {
        let e = sample();
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes), Some(e));
        assert_eq!(e.mx_patterns().collect::<Vec<_>>(), ["mx1.example.com", "*.example.net"]);
    }

    #[test]
    fn answer_view_leaves_out_only_the_long_strings() {
        let e = sample();
        let bytes = e.encode();
        let view = Entry::decode_for_answer(&bytes).unwrap();
        assert_eq!(view, Entry { text: "", note: "", ..e });
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
    fn store_put_read_forget_and_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.mdb");
        let mut s = Store::open(&path).unwrap();
        assert!(s.read("example.com", |e| e.is_none()).unwrap());
        s.put("example.com", &sample()).unwrap();
        assert_eq!(
            s.read("example.com", |e| e.map(|e| e.id.to_owned())).unwrap().as_deref(),
            Some("20240101")
        );
        assert_eq!(s.entries().unwrap().len(), 1);
        assert!(s.forget("example.com").unwrap());
        assert!(!s.forget("example.com").unwrap());
        assert!(lmdbfile::lock_path(&path).exists());
    }

    fn raw_lease(s: &Store, domain: &str) -> Option<(u32, u64)> {
        let txn = s.env.begin_ro_txn().unwrap();
        txn.get(s.db, &owned_key(b'l', domain)).ok().and_then(decode_lease)
    }

    #[test]
    fn storing_releases_our_lease_but_never_another_process_s() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.mdb")).unwrap();
        assert!(s.take_lease("a.example", 100, 200).unwrap());
        assert!(raw_lease(&s, "a.example").is_some());
        s.put_releasing_lease("a.example", &sample()).unwrap();
        assert_eq!(raw_lease(&s, "a.example"), None);
        // A lease of another live process (pid 1) blocks us and is not released by us.
        let k = owned_key(b'l', "b.example");
        let v: Vec<u8> = 1u32.to_le_bytes().into_iter().chain(u64::MAX.to_le_bytes()).collect();
        s.write_txn(|t| t.put(s.db, &k, &v, WriteFlags::empty())).unwrap();
        assert!(!s.take_lease("b.example", 100, 200).unwrap());
        assert!(s.lease_held_by_other("b.example", 100).unwrap());
        s.put_releasing_lease("b.example", &sample()).unwrap();
        assert_eq!(raw_lease(&s, "b.example"), Some((1, u64::MAX)));
    }

    #[test]
    fn lease_is_exclusive_between_live_processes_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("state.mdb")).unwrap();
        assert!(s.take_lease("a.example", 100, 200).unwrap());
        // Our own lease does not block us.
        assert!(!s.lease_held_by_other("a.example", 150).unwrap());
        assert!(s.take_lease("a.example", 100, 200).unwrap());
        s.release_lease("a.example").unwrap();
        assert!(!s.lease_held_by_other("a.example", 150).unwrap());
    }
}
