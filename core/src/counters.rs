//! The cold path's counters for `exim-mta-sts stats` (issue 12), in the TLS report counters'
//! file ([`crate::tally`], `MDB_NOSYNC`): policy fetches by outcome, counted by the helper
//! and the admin tool after a run, never by a cached `getmta` (the hot path does no write).
//!
//! Keys (NUL-separated): `c SLOT NAME` → count in that five-minute slot (SLOT: Unix time /
//! 300, ten digits; kept 48 hours), `C NAME` → count since the file was made (a Prometheus
//! counter), `r` → the last `refresh` run ([`RefreshRun`]). A sent report's mark is `x DAY
//! DOMAIN DEST` ([`Tallies::sent`]).

use crate::cache::CacheError;
use crate::lmdbfile;
use crate::tally::{Tallies, key};
use lmdb::{Cursor, Transaction, WriteFlags};
use std::collections::BTreeMap;

/// Hours of counts kept.
const KEEP_SLOTS: u64 = 48 * 12;
/// Seconds per slot: "the last hour" is the last 12 or 13 slots (60 to 65 minutes).
const SLOT: u64 = 300;

fn slot_key(slot: u64, name: &str) -> Vec<u8> {
    key(b'c', &[&format!("{slot:010}"), name])
}

fn number(v: &[u8]) -> u64 {
    std::str::from_utf8(v).ok().and_then(|t| t.parse().ok()).unwrap_or(0)
}

/// The last `exim-mta-sts refresh` run (times in Unix seconds; policies by outcome).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RefreshRun {
    pub started: u64,
    pub finished: u64,
    pub unchanged: u64,
    pub changed: u64,
    pub failed: u64,
    pub busy: u64,
}

impl RefreshRun {
    fn encode(&self) -> String {
        let f = [self.started, self.finished, self.unchanged, self.changed, self.failed, self.busy];
        f.map(|n| n.to_string()).join(" ")
    }
    fn decode(text: &str) -> Option<RefreshRun> {
        let f: Vec<u64> = text.split(' ').map(|t| t.parse().ok()).collect::<Option<_>>()?;
        let [started, finished, unchanged, changed, failed, busy] = f.as_slice() else { return None };
        Some(RefreshRun {
            started: *started,
            finished: *finished,
            unchanged: *unchanged,
            changed: *changed,
            failed: *failed,
            busy: *busy,
        })
    }
}

impl Tallies {
    /// Adds `counts` (name → n) at time `now`, and drops slots older than two days.
    pub fn count(&self, now: u64, counts: &BTreeMap<String, u64>) -> Result<(), CacheError> {
        if counts.is_empty() {
            return Ok(());
        }
        let slot = now / SLOT;
        lmdbfile::write(&self.env, |t| {
            for (name, n) in counts {
                for k in [slot_key(slot, name), key(b'C', &[name])] {
                    let old = match t.get(self.db, &k) {
                        Ok(v) => number(v),
                        Err(lmdb::Error::NotFound) => 0,
                        Err(e) => return Err(e),
                    };
                    t.put(self.db, &k, &(old.saturating_add(*n)).to_string(), WriteFlags::empty())?;
                }
            }
            let oldest = slot_key(slot.saturating_sub(KEEP_SLOTS), "");
            let stale: Vec<Vec<u8>> = {
                let mut cur = t.open_ro_cursor(self.db)?;
                let prefix = key(b'c', &[]);
                cur.iter_from(&prefix)
                    .map_while(Result::ok)
                    .take_while(|(k, _)| k.starts_with(&prefix) && *k < oldest.as_slice())
                    .map(|(k, _)| k.to_vec())
                    .collect()
            };
            for k in stale {
                t.del(self.db, &k, None)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Counts (name → n) of the slots that began within the last `secs` seconds before
    /// `now`, the current slot included (so "the last hour" covers 60 to 65 minutes).
    pub fn recent(&self, now: u64, secs: u64) -> Result<BTreeMap<String, u64>, CacheError> {
        let first = now.saturating_sub(secs) / SLOT;
        let prefix = key(b'c', &[]);
        let txn = self.env.begin_ro_txn()?;
        let mut cur = txn.open_ro_cursor(self.db)?;
        let mut out = BTreeMap::new();
        for (k, v) in cur.iter_from(slot_key(first, "")).map_while(Result::ok) {
            if !k.starts_with(&prefix) {
                break;
            }
            if let Some(name) = k.split(|b| *b == 0).nth(2) {
                *out.entry(String::from_utf8_lossy(name).into_owned()).or_default() += number(v);
            }
        }
        Ok(out)
    }

    /// Counts (name → n) since the file was made.
    pub fn totals(&self) -> Result<BTreeMap<String, u64>, CacheError> {
        let prefix = [b'C', 0];
        let txn = self.env.begin_ro_txn()?;
        let mut cur = txn.open_ro_cursor(self.db)?;
        let mut out = BTreeMap::new();
        for (k, v) in cur.iter_from(prefix).map_while(Result::ok) {
            let Some(name) = k.strip_prefix(prefix.as_slice()) else { break };
            out.insert(String::from_utf8_lossy(name).into_owned(), number(v));
        }
        Ok(out)
    }

    /// Remembers the last `refresh` run.
    pub fn set_refresh_run(&self, run: &RefreshRun) -> Result<(), CacheError> {
        let v = run.encode();
        lmdbfile::write(&self.env, |t| t.put(self.db, &b"r", &v, WriteFlags::empty()))?;
        Ok(self.env.sync(true)?)
    }

    /// The last `refresh` run, if any was recorded.
    pub fn refresh_run(&self) -> Result<Option<RefreshRun>, CacheError> {
        let txn = self.env.begin_ro_txn()?;
        Ok(match txn.get(self.db, &b"r") {
            Ok(v) => RefreshRun::decode(&String::from_utf8_lossy(v)),
            Err(lmdb::Error::NotFound) => None,
            Err(e) => return Err(e.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn counts_by_slot_are_summed_over_a_window_and_pruned_after_two_days() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tallies::open(&dir.path().join("r.mdb")).unwrap();
        let one = |name: &str, n: u64| BTreeMap::from([(name.to_owned(), n)]);
        let now = 1_800_001_800; // half past: 70 minutes ago is in the previous clock hour
        t.count(now - 3 * 86_400, &one("ok", 7)).unwrap();
        t.count(now - 5 * 3600, &one("ok", 2)).unwrap();
        t.count(now - 60, &one("fetch-status", 1)).unwrap();
        t.count(now - 70 * 60, &one("fetch-status", 4)).unwrap();
        t.count(now, &one("ok", 3)).unwrap();
        assert_eq!(
            t.recent(now, 3600).unwrap(),
            BTreeMap::from([("fetch-status".into(), 1), ("ok".into(), 3)])
        );
        assert_eq!(t.recent(now, 86_400).unwrap().get("ok"), Some(&5));
        assert_eq!(t.totals().unwrap().get("ok"), Some(&12), "totals keep the pruned slot");
        // The slot of three days ago is gone from the file; 70 minutes ago is not the last hour.
        assert_eq!(t.recent(now, 10 * 86_400).unwrap().get("ok"), Some(&5));
    }

    #[test]
    fn the_last_refresh_run_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tallies::open(&dir.path().join("r.mdb")).unwrap();
        assert_eq!(t.refresh_run().unwrap(), None);
        let run = RefreshRun { started: 5, finished: 9, unchanged: 3, changed: 1, failed: 2, busy: 0 };
        t.set_refresh_run(&run).unwrap();
        assert_eq!(t.refresh_run().unwrap(), Some(run));
    }
}
