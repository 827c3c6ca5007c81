//! Per-process state and the one entry point the C boundary calls, [`with_answer`].
//!
//! The configuration is read and the store opened once per process (and afresh in a
//! forked child); the resolver and the HTTPS client are built on first need. A call takes
//! the hot path (one read transaction, no I/O) when the store has a fresh entry, and
//! otherwise the cold path: a fetch lease so that concurrent processes asking for the
//! same domain cause one fetch, [`lookup::refresh`], the store updated, and the shared
//! database brought up to date from a child process when a policy changed.

use crate::cache::{Entry, Kind, OwnedEntry, Store};
use crate::config::{Config, ConfigError};
use crate::dns::{self, DnsError};
use crate::fetch::{FetchError, FetchOptions, Fetched, Fetcher};
use crate::lookup::{self, Answer, Net};
use crate::shared_db::{self, Change, SharedPolicy};
use crate::{dane, log, sys};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The network for this process, built on first need.
pub struct LiveNet {
    resolver: dns::Resolver,
    fetcher: Option<Fetcher>,
    opts: FetchOptions,
}

impl LiveNet {
    pub fn new(cfg: &Config) -> LiveNet {
        LiveNet {
            resolver: dns::Resolver::from_system(cfg.dns_timeout()),
            fetcher: None,
            opts: FetchOptions {
                timeout: cfg.fetch_timeout(),
                max_size: cfg.max_policy_size,
                require_text_plain: cfg.require_text_plain,
            },
        }
    }

    pub fn resolver(&self) -> &dns::Resolver {
        &self.resolver
    }
}

impl Net for LiveNet {
    fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError> {
        self.resolver.txt(name).map(|a| a.items)
    }

    fn fetch(&mut self, domain: &str) -> Result<Fetched, FetchError> {
        let resolver = &self.resolver;
        let opts = &self.opts;
        self.fetcher.get_or_insert_with(|| Fetcher::new(resolver.clone(), opts.clone())).fetch(domain)
    }
}

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
            Ok(cfg) => Store::open(&cfg.state).map_err(|e| {
                log::alert(&format!("{e}; answering from live DNS and HTTPS lookups"));
                e.to_string()
            }),
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

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

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
        let hot = store.read(domain, |e| {
            let e = e?;
            match lookup::hot(&e, now, cfg) {
                Some(answer) => Some(f(answer)),
                None => {
                    cached = Some(e.to_owned_entry());
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
        Ok(store) => cold_with_store(store, domain, cached, now, cfg, net),
        Err(_) => cold(domain, None, now, cfg, net),
    };
    f(lookup::fresh(&entry.view(), cfg))
}

/// The cold path proper: the MTA-STS state refreshed unless still fresh, and the DANE
/// answer re-checked once stale (SPEC §5).
fn cold(domain: &str, cached: Option<&OwnedEntry>, now: u64, cfg: &Config, net: &mut LiveNet) -> OwnedEntry {
    let mut entry = match cached.filter(|c| lookup::sts_hot(&c.view(), now, cfg).is_some()) {
        Some(c) => c.clone(),
        None => lookup::refresh(domain, cached.map(Entry::view).as_ref(), now, cfg, net),
    };
    if !cfg.dane {
        return entry;
    }
    match cached.filter(|c| now < c.dane_until) {
        Some(c) => (entry.dane, entry.dane_until) = (c.dane, c.dane_until),
        None => {
            let st = dane::check(net.resolver(), domain, cfg.dane_min_ttl);
            let was = cached.is_some_and(|c| c.dane);
            if st.applies && !was {
                log::info(&format!("domain={domain} answer=dane: {}", st.why));
            } else if was && !st.applies {
                log::info(&format!("domain={domain}: DANE no longer applies ({}); MTA-STS applies", st.why));
            } else if !st.applies && st.why.contains("DNSSEC validation") {
                log::warn(&format!("domain={domain} not dane: {}", st.why));
            } else {
                log::debug(|| format!("domain={domain} dane={}: {}", st.applies, st.why));
            }
            entry.dane = st.applies;
            entry.dane_until = now.saturating_add(st.ttl);
        }
    }
    entry
}

/// The lease lasts as long as a whole cold path may take.
fn lease_time(cfg: &Config) -> u64 {
    3 * cfg.dns_timeout + cfg.fetch_timeout + 10
}

fn cold_with_store(
    store: &mut Store,
    domain: &str,
    mut cached: Option<OwnedEntry>,
    now: u64,
    cfg: &Config,
    net: &mut LiveNet,
) -> OwnedEntry {
    let lease_until = now + lease_time(cfg);
    match store.take_lease(domain, now, lease_until) {
        Ok(true) => {}
        Ok(false) => {
            // Another process is fetching this domain: wait for its result.
            if let Some(done) = wait_for_other(store, domain, cfg) {
                return done;
            }
            // It took too long (or vanished): do it ourselves.
            cached = store.read(domain, |e| e.map(|e| e.to_owned_entry())).ok().flatten();
        }
        Err(e) => log::warn(&format!("{e}; fetching without a lease")),
    }
    let mut entry = cold(domain, cached.as_ref(), now, cfg, net);
    entry.shared_retry = match sync_shared(cfg, domain, cached.as_ref(), &entry) {
        Ok(()) => 0,
        Err(()) => now + SHARED_RETRY,
    };
    if let Err(e) = store.put(domain, &entry.view()) {
        log::alert(&format!("cannot store {domain}: {e}"));
    }
    let _ = store.release_lease(domain);
    entry
}

/// Polls the store while another process holds the lease, until a fresh entry appears.
fn wait_for_other(store: &mut Store, domain: &str, cfg: &Config) -> Option<OwnedEntry> {
    let start = Instant::now();
    let limit = Duration::from_secs(lease_time(cfg));
    while start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
        let now = now();
        let fresh = store
            .read(domain, |e| e.filter(|e| lookup::hot(e, now, cfg).is_some()).map(|e| e.to_owned_entry()))
            .ok()
            .flatten();
        if fresh.is_some() {
            return fresh;
        }
        if !store.lease_held_by_other(domain, now).unwrap_or(false) {
            // Released without a fresh entry (it failed, or max_age was 0).
            return None;
        }
    }
    None
}

fn shared_view(e: &Entry<&str>) -> Option<SharedPolicy> {
    (e.kind == Kind::Policy).then(|| SharedPolicy {
        mode: e.mode.as_str().to_owned(),
        mx: e.mx.to_owned(),
        expire: e.expires,
        id: e.id.to_owned(),
        report: e.report.to_owned(),
    })
}

/// Seconds before a failed shared-database update is tried again.
const SHARED_RETRY: u64 = 60;

/// SPEC §3: when a policy is stored, changed or dropped, bring the shared database up to
/// date before answering, from a child process. An update that failed before (recorded in
/// the old entry) is made now whatever changed.
fn sync_shared(cfg: &Config, domain: &str, old: Option<&OwnedEntry>, new: &OwnedEntry) -> Result<(), ()> {
    let pending = old.is_some_and(|o| o.shared_retry != 0);
    let (was, now) = (old.and_then(|o| shared_view(&o.view())), shared_view(&new.view()));
    let change = match (was, now) {
        (o, Some(n)) if pending || o.as_ref() != Some(&n) => Change::Store(n),
        (Some(_), None) => Change::Drop,
        (None, None) if pending => Change::Drop,
        _ => return Ok(()),
    };
    shared_db::update_in_child(&cfg.database, domain, &change).map_err(|e| {
        log::alert(&format!(
            "shared database not updated for {domain}: {e}; trying again in {SHARED_RETRY}s"
        ));
    })
}
