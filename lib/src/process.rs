//! Per-process state and the one entry point the C boundary calls, [`with_answer`].
//!
//! The configuration is read and the store opened once per process (and afresh in a
//! forked child). A call takes the hot path (one read transaction, no I/O) when the store
//! has a fresh entry; otherwise the helper runs the cold path in its own process
//! ([`crate::spawn`]) and the answer is [`decide::fresh`] of the entry it stored and
//! handed back. Nothing from the network is read in this process (SPEC §9).

use crate::spawn;
use mta_sts_core::cache::{Entry, Store};
use mta_sts_core::cause::{Cause, HelperError};
use mta_sts_core::config::{Config, ConfigError};
use mta_sts_core::decide::{self, Answer};
use mta_sts_core::tally::{Session, Tallies};
use mta_sts_core::tlsevent::{self, Event};
use mta_sts_core::{log, sys};
use std::path::PathBuf;
use std::sync::Mutex;

struct Process {
    fork_generation: u32,
    /// The file the configuration came from (the helper is told to read the same).
    config_path: PathBuf,
    config: Result<Config, ConfigError>,
    /// `Err` holds why the store is unusable (already logged once).
    store: Result<Store, String>,
    /// The TLS report counters, opened on the first event to record (`Err`: why not).
    tallies: Option<Result<Tallies, String>>,
}

impl Process {
    fn start() -> Process {
        let fork_generation = sys::fork_generation();
        let config_path = Config::path_from_env();
        let config = Config::load_from(&config_path);
        let store = match &config {
            Ok(cfg) => open_store(cfg, &config_path),
            Err(e) => {
                // SPEC §6: a bad file is reported and `fail` answered until it is fixed.
                say(Cause::Config, "", &e.to_string(), "until it is fixed");
                Err("no configuration".into())
            }
        };
        Process { fork_generation, config_path, config, store, tallies: None }
    }
}

/// Opens the store; a new one (missing, or rebuilt after damage) is seeded by the helper
/// from the shared database, which this process never opens (SPEC §3).
fn open_store(cfg: &Config, config_path: &std::path::Path) -> Result<Store, String> {
    let store = Store::open(&cfg.state).map_err(|e| {
        log::alert(&format!("{e}; answering through the helper's live lookups"));
        e.to_string()
    })?;
    // Nothing to seed from without a shared database (a first start).
    if store.is_new
        && cfg.database.exists()
        && let Err((why, detail)) = spawn::run(cfg, config_path, &["--seed"])
    {
        say(Cause::Helper(why), "", &detail, "the new state store was not seeded");
    }
    Ok(store)
}

/// The log line for a cause the library itself meets, through its one translation.
fn say(cause: Cause, domain: &str, detail: &str, tail: &str) {
    let tail = if tail.is_empty() { String::new() } else { format!("; {tail}") };
    cause.log(mta_sts_core::config::FetchFailure::None, domain, detail, &tail);
}

static PROCESS: Mutex<Option<Process>> = Mutex::new(None);

/// This process's state, set up on first use (and afresh in a forked child).
fn current() -> std::sync::MutexGuard<'static, Option<Process>> {
    // A panic while the lock was held leaves nothing half-done that matters here.
    let mut guard = PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    let generation = sys::fork_generation();
    if guard.as_ref().is_some_and(|p| p.fork_generation != generation) {
        // A forked child: LMDB handles must not be used (or closed) here.
        if let Some(old) = guard.take() {
            if let Ok(store) = old.store {
                store.abandon();
            }
            if let Some(Ok(t)) = old.tallies {
                t.abandon();
            }
        }
    }
    if guard.is_none() {
        *guard = Some(Process::start());
    }
    guard
}

/// A delivery to `domain` (normalised) failed under its policy (an MX refused, or TLS
/// failed): under an enforce policy the next call re-checks the `_mta-sts` id first
/// ([`decide::recheck_after_failure`], RFC 8461 §5.1).
pub fn delivery_failed(domain: &str) {
    let now = mta_sts_core::clock::now();
    let guard = current();
    let Some(Process { config: Ok(cfg), store: Ok(store), .. }) = guard.as_ref() else { return };
    match store.update(domain, |e| decide::recheck_after_failure(e, now, cfg)) {
        Ok(true) => log::info(&format!(
            "domain={domain}: a delivery failed under the enforce policy; its _mta-sts id is re-checked \
             at the next call (RFC 8461 §5.1)"
        )),
        Ok(false) => {}
        Err(e) => log::warn(&format!("domain={domain}: cannot mark the policy for a re-check: {e}")),
    }
}

/// Records one SMTP session's TLS outcome for the reports (SPEC §10), as the event `ev`
/// of a delivery to `domain` (normalised) says it went under the policy the store holds.
/// Never changes the delivery: a problem is logged.
pub fn record(domain: &str, ev: &Event<'_>) {
    let now = mta_sts_core::clock::now();
    let mut guard = current();
    let Some(Process { config: Ok(cfg), store: Ok(store), tallies, .. }) = guard.as_mut() else { return };
    // Whether the event counts depends only on the policy's kind and mode: decided from the
    // answer-only view, so that an event that does not count (the EHLO before STARTTLS,
    // say) costs no decoding of the policy text; the full entry only for one that counts.
    let seen = store.read_bytes(domain, |bytes| {
        let bytes = bytes?;
        let light = Entry::decode_for_answer(bytes)?;
        let failure = tlsevent::outcome(ev, &tlsevent::policy_of(&light, cfg.dane && light.dane)?)?;
        let full = Entry::decode(bytes)?;
        Some((tlsevent::policy_of(&full, cfg.dane && full.dane)?, failure))
    });
    let Ok(Some((policy, failure))) = seen else { return };
    let tallies = tallies.get_or_insert_with(|| {
        Tallies::open(&cfg.reports).map_err(|e| {
            log::warn(&format!("{e}; TLS report counts are not kept"));
            e.to_string()
        })
    });
    let Ok(tallies) = tallies else { return };
    let (day, key) = (mta_sts_core::tally::day_of(now), tlsevent::session_key(ev));
    let session = Session { day: &day, domain, policy: &policy, key: key.as_deref(), failure };
    if let Err(e) = tallies.record(&session) {
        log::warn(&format!("domain={domain}: TLS report count not kept: {e}"));
    }
}

/// Computes the answer for `domain` (normalised) and passes it to `f`.
pub fn with_answer<R>(domain: &str, mut f: impl FnMut(Answer<'_>) -> R) -> R {
    let now = mta_sts_core::clock::now();
    let mut guard = current();
    let Some(p) = guard.as_mut() else {
        return f(Answer::Fail);
    };
    let Ok(cfg) = &p.config else {
        return f(Answer::Fail);
    };

    // Hot path: one read transaction.
    if let Ok(store) = &mut p.store {
        let hot = store.read_bytes(domain, |bytes| {
            let e = Entry::decode_for_answer(bytes?)?;
            decide::hot(&e, now, cfg).map(&mut f)
        });
        match hot {
            Ok(Some(r)) => return r,
            Ok(None) => {}
            Err(e) => log::warn(&format!("{e}; answering through the helper")),
        }
    }
    // Cold path: the helper, in its own process.
    match spawn::run(cfg, &p.config_path, &[domain]) {
        Ok(bytes) => match Entry::decode(&bytes) {
            Some(entry) => f(decide::fresh(&entry, cfg)),
            None => {
                say(Cause::Helper(HelperError::NoAnswer), domain, "its answer is not an entry", "");
                f(Answer::Fail)
            }
        },
        Err((why, detail)) => {
            say(Cause::Helper(why), domain, &detail, "asked again at the next call");
            f(Answer::Fail)
        }
    }
}
