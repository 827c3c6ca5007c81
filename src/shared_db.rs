//! The shared database (SPEC §3, config key `database`): the file Exim administrators read
//! with `${lookup{DOMAIN:mode}lmdb{PATH}}`, in the Perl original's key layout.
//!
//! Keys `DOMAIN:mode`, `DOMAIN:mx`, `DOMAIN:expire`, `DOMAIN:id`, `DOMAIN:report`, and
//! nothing else; each value is followed by one NUL byte, because Exim 4.96's lookup
//! measures values with `strlen()`.
//!
//! Inside an Exim process this file is never opened: LMDB forbids two environments on one
//! file in one process, and Exim's own lookup may have it open. [`update_in_child`] does
//! the write from a short-lived child process and waits for it, so a lookup made right
//! after `getmta` returns sees the change. Other processes (the admin tool) call [`apply`].

use crate::lmdbfile::{self, OpenError};
use crate::sys;
use lmdb::{Cursor, EnvironmentFlags, Transaction, WriteFlags};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The suffixes of the five keys, in the order they are written.
pub const SUFFIXES: [&str; 5] = ["mode", "mx", "expire", "id", "report"];

/// What the shared database says about one policy domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPolicy {
    pub mode: String,
    pub mx: String,
    pub expire: u64,
    pub id: String,
    pub report: String,
}

/// A change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Store(SharedPolicy),
    Drop,
}

fn open(path: &Path) -> Result<lmdb::Environment, OpenError> {
    lmdbfile::open(path, EnvironmentFlags::empty(), |_| Ok(())).map(|(env, _)| env)
}

impl Change {
    /// Each key suffix with its new value, `None` meaning the key goes. SPEC §3: `report`
    /// is absent when there are no TLSRPT destinations.
    fn values(&self) -> [(&'static str, Option<String>); 5] {
        match self {
            Change::Store(p) => [
                ("mode", Some(p.mode.clone())),
                ("mx", Some(p.mx.clone())),
                ("expire", Some(p.expire.to_string())),
                ("id", Some(p.id.clone())),
                ("report", (!p.report.is_empty()).then(|| p.report.clone())),
            ],
            Change::Drop => SUFFIXES.map(|s| (s, None)),
        }
    }
}

/// Applies `change` for `domain` directly (for processes that are not Exim).
pub fn apply(path: &Path, domain: &str, change: &Change) -> Result<(), String> {
    let env = open(path).map_err(|e| e.to_string())?;
    let db = env.open_db(None).map_err(|e| e.to_string())?;
    let values = change.values();
    lmdbfile::write(&env, |txn| {
        for (suffix, value) in &values {
            let key = format!("{domain}:{suffix}");
            match value {
                Some(v) => {
                    // SPEC §3: "each value is the text below followed by one NUL byte".
                    let mut bytes = Vec::with_capacity(v.len() + 1);
                    bytes.extend_from_slice(v.as_bytes());
                    bytes.push(0);
                    txn.put(db, &key, &bytes, WriteFlags::empty())?;
                }
                None => del(txn, db, &key)?,
            }
        }
        Ok(())
    })
    .map_err(|e| format!("database {}: {e}", path.display()))
}

fn del(txn: &mut lmdb::RwTransaction<'_>, db: lmdb::Database, key: &str) -> Result<(), lmdb::Error> {
    match txn.del(db, &key, None) {
        Ok(()) | Err(lmdb::Error::NotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies `change` from a forked child and waits for it (the helper: a full disk can make
/// LMDB's mapped file raise SIGBUS, which must cost only the child, never the answer).
pub fn update_in_child(path: &Path, domain: &str, change: &Change) -> Result<(), String> {
    let end = sys::run_in_child(CHILD_DEADLINE, || match apply(path, domain, change) {
        Ok(()) => 0,
        Err(e) => {
            crate::log::alert(&format!("cannot update the shared database: {e}"));
            1
        }
    })
    .map_err(|e| format!("cannot fork to update {}: {e}", path.display()))?;
    match end.failure() {
        None => Ok(()),
        Some(why) => Err(format!("updating {} failed ({why})", path.display())),
    }
}

/// How long a child updating the shared database may take.
const CHILD_DEADLINE: Duration = Duration::from_secs(10);

/// Reads every key, with the trailing NUL stripped (for the admin tool and tests).
pub fn read_all(path: &Path) -> Result<BTreeMap<String, String>, String> {
    // Opening creates the lock file when it is missing: as the directory's owner.
    let env = lmdbfile::as_dir_owner(path, || {
        lmdb::Environment::new()
            .set_flags(EnvironmentFlags::NO_SUB_DIR | EnvironmentFlags::READ_ONLY)
            .open(path)
    })?
    .map_err(|e| format!("database {}: {e}", path.display()))?;
    let db = env.open_db(None).map_err(|e| e.to_string())?;
    let txn = env.begin_ro_txn().map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    let mut cur = txn.open_ro_cursor(db).map_err(|e| e.to_string())?;
    for item in cur.iter_start() {
        let (k, v) = item.map_err(|e| e.to_string())?;
        let v = v.strip_suffix(b"\0").unwrap_or(v);
        out.insert(String::from_utf8_lossy(k).into_owned(), String::from_utf8_lossy(v).into_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_drop_write_exactly_the_five_keys_with_nul() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shared.mdb");
        let p = SharedPolicy {
            mode: "enforce".into(),
            mx: "mx.example.com:*.example.net".into(),
            expire: 1_800_000_000,
            id: "abc123".into(),
            report: "tlsrpt@example.com".into(),
        };
        apply(&path, "example.com", &Change::Store(p)).unwrap();
        apply(
            &path,
            "other.example",
            &Change::Store(SharedPolicy {
                report: String::new(),
                ..SharedPolicy {
                    mode: "testing".into(),
                    mx: "a.example".into(),
                    expire: 5,
                    id: "x".into(),
                    report: String::new(),
                }
            }),
        )
        .unwrap();
        let all = read_all(&path).unwrap();
        let keys: Vec<&str> = all.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "example.com:expire",
                "example.com:id",
                "example.com:mode",
                "example.com:mx",
                "example.com:report",
                "other.example:expire",
                "other.example:id",
                "other.example:mode",
                "other.example:mx",
            ]
        );
        assert_eq!(all["example.com:mx"], "mx.example.com:*.example.net");
        assert_eq!(all["example.com:expire"], "1800000000");

        // Raw values end in exactly one NUL.
        let env = lmdb::Environment::new().set_flags(EnvironmentFlags::NO_SUB_DIR).open(&path).unwrap();
        let db = env.open_db(None).unwrap();
        let txn = env.begin_ro_txn().unwrap();
        assert_eq!(txn.get(db, &"example.com:mode").unwrap(), b"enforce\0");
        drop(txn);
        drop(env);

        apply(&path, "example.com", &Change::Drop).unwrap();
        let all = read_all(&path).unwrap();
        assert!(all.keys().all(|k| k.starts_with("other.example:")), "{all:?}");
    }
}
