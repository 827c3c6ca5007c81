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
use lmdb::{Cursor, Database, Environment, EnvironmentFlags, InactiveTransaction, Transaction, WriteFlags};
use std::path::Path;

pub const SCHEMA_KEY: &[u8] = b"!schema";
pub const SCHEMA: &[u8] = b"exim-mta-sts state 4";

pub use crate::entry::{Entry, Kind, OwnedEntry};

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

    /// Rewrites the entry of `domain` in one write transaction: `f` gets the stored entry and
    /// returns what to store instead, or `None` to leave it. Returns whether it changed.
    pub fn update(
        &self,
        domain: &str,
        f: impl Fn(Entry<&str>) -> Option<OwnedEntry>,
    ) -> Result<bool, CacheError> {
        let k = owned_key(b'd', domain);
        self.write_txn(|t| {
            let new = match t.get(self.db, &k) {
                Ok(bytes) => Entry::decode(bytes).and_then(&f).map(|e| e.encode()),
                Err(lmdb::Error::NotFound) => None,
                Err(e) => return Err(e),
            };
            match new {
                Some(bytes) => t.put(self.db, &k, &bytes, WriteFlags::empty()).map(|()| true),
                None => Ok(false),
            }
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
    use crate::entry::sample;

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
