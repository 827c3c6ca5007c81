//! Per-process state and the one entry point the C boundary calls, [`with_answer`].
//!
//! The configuration is read and the store opened once per process (and afresh in a
//! forked child); the resolver and the HTTPS client are built on first need. A call takes
//! the hot path (one read transaction, no I/O) when the store has a fresh entry, and
//! otherwise the cold path ([`crate::engine`]).

use crate::cache::{Entry, OwnedEntry, Store};
use crate::config::{Config, ConfigError};
use crate::engine::{self, Engine, LiveNet, SharedWrites, Why};
use crate::lookup::{self, Answer};
use crate::{log, sys};
use std::sync::Mutex;

struct Process {
    fork_generation: u32,
    config: Result<Config, ConfigError>,
    /// `Err` holds why the store is unusable (already logged once).
    store: Result<Store, String>,
    net: Option<LiveNet>,
}

impl Process {
    fn start() -> Process {
        let fork_generation = sys::fork_generation();
        let config = Config::load();
        let store = match &config {
            Ok(cfg) => {
                crate::reseed::open_store(&cfg.state, &cfg.database, SharedWrites::FromChild).map_err(|e| {
                    log::alert(&format!("{e}; answering from live DNS and HTTPS lookups"));
                    e.to_string()
                })
            }
            Err(e) => {
                // SPEC §6: a bad file is reported and `fail` answered until it is fixed.
                log::alert(&format!("{e}; answering fail until it is fixed"));
                Err("no configuration".into())
            }
        };
        Process { fork_generation, config, store, net: None }
    }
}

static PROCESS: Mutex<Option<Process>> = Mutex::new(None);

pub use crate::clock::now;

/// Computes the answer for `domain` (normalised) and passes it to `f`.
pub fn with_answer<R>(domain: &str, mut f: impl FnMut(Answer<'_>) -> R) -> R {
    let now = now();
    // A panic while the lock was held leaves nothing half-done that matters here.
    let mut guard = PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    let generation = sys::fork_generation();
    if guard.as_ref().is_some_and(|p| p.fork_generation != generation) {
        // A forked child: LMDB handles must not be used (or closed) here.
        if let Some(old) = guard.take()
            && let Ok(store) = old.store
        {
            store.abandon();
        }
    }
    let p = guard.get_or_insert_with(Process::start);
    let Ok(cfg) = &p.config else {
        return f(Answer::Fail);
    };

    // Hot path: one read transaction.
    let mut cached: Option<OwnedEntry> = None;
    if let Ok(store) = &mut p.store {
        let hot = store.read_bytes(domain, |bytes| {
            let bytes = bytes?;
            match lookup::hot(&Entry::decode_for_answer(bytes)?, now, cfg) {
                Some(answer) => Some(f(answer)),
                None => {
                    // The cold path needs the whole entry (policy text included).
                    cached = Entry::decode(bytes).map(|e| e.to_owned_entry());
                    None
                }
            }
        });
        match hot {
            Ok(Some(r)) => return r,
            Ok(None) => {}
            Err(e) => log::warn(&format!("{e}; answering from live lookups")),
        }
    }
    let net = p.net.get_or_insert_with(|| LiveNet::new(cfg));
    let entry = match &mut p.store {
        Ok(store) => {
            Engine { cfg, store, shared: SharedWrites::FromChild }.run(domain, cached, now, Why::Use, net)
        }
        Err(_) => {
            let entry = engine::cold(domain, None, now, cfg, net, Why::Use);
            engine::sync_shared_without_store(cfg, domain, &entry);
            entry
        }
    };
    f(lookup::fresh(&entry.view(), cfg))
}
