//! A new or rebuilt state store must not forget the policies in force (issue 8 item 6).
//!
//! When the state store is missing, damaged or was a planted link, it is rebuilt empty.
//! Forgetting every cached policy then would turn each `enforce` domain into `none` for as
//! long as its policy host cannot be reached: exactly the attack MTA-STS exists for
//! (RFC 8461 §5.1: a cached, unexpired policy MUST be applied). The shared database still
//! holds `mode`, `mx`, `expire`, `id` and `report` of every cached policy, so the new store
//! is seeded from it: unexpired policies only, never past their `expire`, and never over an
//! entry another process stored meanwhile.

use crate::cache::{CacheError, Kind, OwnedEntry, Store};
use crate::policy::Mode;
use crate::{log, shared_db};
use std::collections::BTreeMap;
use std::path::Path;

/// The entries to seed from the shared database's keys, by domain: unexpired policies with
/// a valid mode. Each is marked as never checked and never fetched, so that the first call
/// re-checks its TXT `id` and the proactive refresh fetches its text again; until then
/// (and if neither can reach the policy host) it is applied as cached.
pub fn seeds(shared: &BTreeMap<String, String>, now: u64) -> Vec<(String, OwnedEntry)> {
    let mut out = Vec::new();
    for (key, mode) in shared {
        let Some(domain) = key.strip_suffix(":mode") else { continue };
        let get = |field: &str| shared.get(&format!("{domain}:{field}"));
        let (Some(mode), Some(expire)) =
            (Mode::parse(mode), get("expire").and_then(|e| e.parse::<u64>().ok()))
        else {
            continue;
        };
        let mx = get("mx").cloned().unwrap_or_default();
        if expire <= now || (mode != Mode::None && mx.is_empty()) {
            continue;
        }
        let mut e = OwnedEntry::bare(Kind::Policy, expire, 0);
        e.mode = mode;
        e.mx = mx;
        e.id = get("id").cloned().unwrap_or_default();
        e.report = get("report").cloned().unwrap_or_default();
        e.note = "re-seeded from the shared database after the state store was rebuilt".to_owned();
        out.push((domain.to_owned(), e));
    }
    out
}

/// Stores `seeds` where `store` has no entry for the domain. Returns how many were stored.
fn plant(store: &mut Store, seeds: &[(String, OwnedEntry)]) -> Result<usize, String> {
    let mut n = 0;
    for (domain, entry) in seeds {
        if store.read(domain, |e| e.is_none()).map_err(|e| e.to_string())? {
            store.put(domain, &entry.view()).map_err(|e| e.to_string())?;
            n += 1;
        }
    }
    Ok(n)
}

fn seed_now(database: &Path, store: &mut Store, now: u64) -> Result<usize, String> {
    let shared = shared_db::read_all(database)?;
    plant(store, &seeds(&shared, now))
}

/// Opens the state store at `state` and, when it is new (missing or just rebuilt), seeds
/// it from the shared database at `database`: the one way the helper and the admin tool
/// open their store (the library inside Exim never opens the shared database: SPEC §3).
pub fn open_store(state: &Path, database: &Path) -> Result<Store, CacheError> {
    let mut store = Store::open(state)?;
    if store.is_new {
        reseed(&mut store, state, database, crate::clock::now());
    }
    Ok(store)
}

/// Seeds an existing, new store (`exim-mta-sts helper --seed`, run by the library when it
/// found the store missing and created it).
pub fn reseed(store: &mut Store, state: &Path, database: &Path, now: u64) {
    if !database.exists() {
        return;
    }
    match seed_now(database, store, now) {
        Ok(0) => {}
        Ok(n) => log::alert(&format!(
            "state store {} is new: {n} unexpired policies re-seeded from the shared database {}",
            state.display(),
            database.display()
        )),
        Err(e) => log::alert(&format!(
            "state store {} is new and could not be re-seeded from the shared database {}: {e}",
            state.display(),
            database.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn only_unexpired_well_formed_policies_are_seeded() {
        let db = shared(&[
            ("a.example:mode", "enforce"),
            ("a.example:mx", "mx.a.example:*.b.a.example"),
            ("a.example:expire", "2000"),
            ("a.example:id", "abc"),
            ("a.example:report", "tls@a.example"),
            ("old.example:mode", "enforce"),
            ("old.example:mx", "mx.old.example"),
            ("old.example:expire", "1000"),
            ("bad.example:mode", "strict"),
            ("bad.example:mx", "mx.bad.example"),
            ("bad.example:expire", "2000"),
            ("nomx.example:mode", "testing"),
            ("nomx.example:expire", "2000"),
            ("none.example:mode", "none"),
            ("none.example:expire", "2000"),
            ("noexp.example:mode", "enforce"),
            ("noexp.example:mx", "mx.noexp.example"),
        ]);
        let got = seeds(&db, 1000);
        let names: Vec<&str> = got.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(names, ["a.example", "none.example"]);
        let a = &got[0].1;
        assert_eq!(
            (a.kind, a.mode, a.expires, a.checked, a.fetched),
            (Kind::Policy, Mode::Enforce, 2000, 0, 0)
        );
        assert_eq!(
            (a.mx.as_str(), a.id.as_str(), a.report.as_str()),
            ("mx.a.example:*.b.a.example", "abc", "tls@a.example")
        );
    }
}
