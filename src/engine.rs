//! The store side of a cold-path run (SPEC §3, §9), in the helper and the admin tool: a
//! fetch lease so that concurrent processes asking for the same domain cause one fetch,
//! the decision ([`decide::cold`]) over the live network ([`LiveNet`]) within one deadline,
//! the store updated, and the shared database brought up to date when a policy was
//! stored, changed or dropped.

use crate::cache::{Entry, Kind, OwnedEntry, Store};
use crate::cause::{Cause, DnsError, FetchError};
use crate::config::Config;
use crate::decide::{self, DaneState, Fetched, Net, Why};
use crate::dns;
use crate::fetch::{FetchOptions, FetchReport, Fetcher};
use crate::shared_db::{self, Change, SharedPolicy};
use crate::{dane, log};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The network for this process, built on first need.
pub struct LiveNet {
    resolver: dns::Resolver,
    fetcher: Option<Fetcher>,
    opts: FetchOptions,
    /// `dane_min_ttl` and `negative_ttl` (see [`dane::check`]).
    dane_ttls: (u64, u64),
    /// The policy fetches of this run by outcome (`ok` or the cause's name), for
    /// `exim-mta-sts stats` and so that a failed fetch is counted for the TLS reports once: the
    /// caller keeps them in the counters file ([`crate::tally::Tallies::count`]) once per run.
    pub outcomes: BTreeMap<String, u64>,
    /// The last TXT name answered by an unsigned NXDOMAIN without a CNAME (see
    /// [`LiveNet::take_unsigned_nx`]).
    unsigned_nx: Option<String>,
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
            dane_ttls: (cfg.dane_min_ttl, cfg.negative_ttl),
            outcomes: BTreeMap::new(),
            unsigned_nx: None,
        }
    }

    pub fn resolver(&self) -> &dns::Resolver {
        &self.resolver
    }

    /// The policy fetch with what it saw on the way (for the admin tool's `check`).
    pub fn fetch_report(&mut self, domain: &str) -> (FetchReport, Result<Fetched, FetchError>) {
        let resolver = &self.resolver;
        let opts = &self.opts;
        let r = self
            .fetcher
            .get_or_insert_with(|| Fetcher::new(resolver.clone(), opts.clone()))
            .fetch_report(domain);
        let outcome = match &r.1 {
            Ok(_) => "ok",
            Err(e) => Cause::from(e).name(),
        };
        *self.outcomes.entry(outcome.to_owned()).or_default() += 1;
        r
    }
}

impl Net for LiveNet {
    fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError> {
        let answer = self.resolver.txt(name);
        self.unsigned_nx = match &answer {
            Ok(a) if a.nxdomain && !a.authentic && !a.aliased => Some(name.to_owned()),
            _ => None,
        };
        answer.map(|a| a.items)
    }

    fn fetch(&mut self, domain: &str) -> Result<Fetched, FetchError> {
        self.fetch_report(domain).1
    }

    fn dane(&mut self, domain: &str) -> DaneState {
        dane::check(&self.resolver, domain, self.dane_ttls.0, self.dane_ttls.1)
    }

    /// A name inside a signed zone cannot be an unauthenticated NXDOMAIN, nor NXDOMAIN in
    /// a child zone: so the zone holding DOMAIN (and its MX records) is unsigned.
    fn take_unsigned_nx(&mut self, domain: &str) -> bool {
        let name = self.unsigned_nx.take();
        name.is_some_and(|n| n.strip_prefix("_mta-sts.") == Some(domain))
    }
}

/// How the shared database is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWrites {
    /// From a short-lived child process (the helper, single-threaded: a SIGBUS from a full
    /// disk under LMDB's map then costs the child, not the answer).
    InChild,
    /// Directly (the admin tool, whose refresh runs threads: no `fork` there).
    Direct,
}

/// How [`Engine::begin`] went.
#[derive(Debug)]
pub enum Begin {
    /// The fetch lease is ours (or could not be taken: go on without): run the cold path
    /// from this cached entry, then [`Engine::finish`].
    Go(Option<OwnedEntry>),
    /// Another process was on it and stored this fresh entry meanwhile.
    Done(OwnedEntry),
    /// Another process holds the lease, and we were asked not to wait.
    Busy,
}

/// The store side of a cold-path run: lease, store, shared database.
pub struct Engine<'a> {
    pub cfg: &'a Config,
    pub store: &'a mut Store,
    pub shared: SharedWrites,
}

impl Engine<'_> {
    /// Runs the whole cold path for `domain` (normalised) and returns the stored entry.
    pub fn run(
        &mut self,
        domain: &str,
        cached: Option<OwnedEntry>,
        now: u64,
        why: Why,
        net: &mut LiveNet,
    ) -> OwnedEntry {
        let cached = match self.begin(domain, cached, now, true) {
            Begin::Done(entry) => return entry,
            Begin::Go(cached) => cached,
            // Not answered when waiting; were it, the cold path would run from scratch.
            Begin::Busy => None,
        };
        let entry = cold(domain, cached.as_ref(), now, self.cfg, net, why);
        self.finish(domain, cached.as_ref(), entry, now)
    }

    /// Takes the fetch lease of `domain`. With `wait`, waits for another process holding
    /// it to store its result (at most as long as a cold path may take).
    pub fn begin(&mut self, domain: &str, cached: Option<OwnedEntry>, now: u64, wait: bool) -> Begin {
        let cfg = self.cfg;
        match self.store.take_lease(domain, now, now + lease_time(cfg)) {
            Ok(true) if wait => self.reread(domain, cached, now),
            Ok(true) => Begin::Go(cached),
            Ok(false) if !wait => Begin::Busy,
            Ok(false) => match wait_for_other(self.store, domain, cfg) {
                Some(done) => Begin::Done(done),
                // It took too long (or vanished): do it ourselves, from what it stored.
                None => Begin::Go(self.store.read(domain, |e| e.map(|e| e.to_owned_entry())).ok().flatten()),
            },
            Err(e) => {
                log::warn(&format!("{e}; fetching without a lease"));
                Begin::Go(cached)
            }
        }
    }

    /// With the lease ours, reads the entry again: another process may have stored it
    /// between our first read and our lease (it then released its lease), and fetching it
    /// again would break single-flight. A fresh entry is the answer; the lease goes back.
    fn reread(&mut self, domain: &str, cached: Option<OwnedEntry>, now: u64) -> Begin {
        let cfg = self.cfg;
        let now_stored =
            self.store.read(domain, |e| e.map(|e| (decide::hot(&e, now, cfg).is_some(), e.to_owned_entry())));
        match now_stored {
            Ok(Some((true, fresh))) => {
                let _ = self.store.release_lease(domain);
                Begin::Done(fresh)
            }
            Ok(Some((false, stored))) => Begin::Go(Some(stored)),
            Ok(None) => Begin::Go(None),
            Err(_) => Begin::Go(cached),
        }
    }

    /// Stores the result of the cold path, brings the shared database up to date and
    /// releases the lease.
    pub fn finish(
        &mut self,
        domain: &str,
        cached: Option<&OwnedEntry>,
        mut entry: OwnedEntry,
        now: u64,
    ) -> OwnedEntry {
        entry.shared_retry = match sync_shared(self.cfg, self.shared, domain, cached, &entry) {
            Ok(()) => 0,
            Err(()) => now + SHARED_RETRY,
        };
        if let Err(e) = self.store.put_releasing_lease(domain, &entry.view()) {
            log::alert(&format!("cannot store {domain}: {e}"));
            // Let the others go on rather than wait for a lease that was not released.
            let _ = self.store.release_lease(domain);
        }
        entry
    }
}

/// The cold path proper ([`decide::cold`]) over the live network, within one deadline for
/// everything it asks the network (the guard lifts it when the cold path ends).
pub fn cold(
    domain: &str,
    cached: Option<&OwnedEntry>,
    now: u64,
    cfg: &Config,
    net: &mut LiveNet,
    why: Why,
) -> OwnedEntry {
    let _deadline = net.resolver.cutoff_until(Instant::now() + Duration::from_secs(cfg.cold_deadline));
    decide::cold(domain, cached, now, cfg, net, why)
}

/// The lease outlives a whole cold path: its network deadline, then the store write and
/// the shared-database update, with a margin.
pub fn lease_time(cfg: &Config) -> u64 {
    cfg.cold_deadline.saturating_add(15)
}

/// Polls the store while another process holds the lease, until a fresh entry appears.
fn wait_for_other(store: &mut Store, domain: &str, cfg: &Config) -> Option<OwnedEntry> {
    let start = Instant::now();
    let limit = Duration::from_secs(lease_time(cfg));
    while start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
        let now = crate::clock::now();
        let fresh = store
            .read(domain, |e| e.filter(|e| decide::hot(e, now, cfg).is_some()).map(|e| e.to_owned_entry()))
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

/// What the shared database must be told about `domain` after `old` became `new`.
/// `unknown_before`: nothing is known of what it holds (an update failed earlier, or the
/// state store is unusable), so it is told the whole state.
fn shared_change(old: Option<&OwnedEntry>, new: &OwnedEntry, unknown_before: bool) -> Option<Change> {
    let (was, now) = (old.and_then(|o| shared_view(&o.view())), shared_view(&new.view()));
    match (was, now) {
        (o, Some(n)) if unknown_before || o.as_ref() != Some(&n) => Some(Change::Store(n)),
        (Some(_), None) => Some(Change::Drop),
        (None, None) if unknown_before => Some(Change::Drop),
        _ => None,
    }
}

/// SPEC §3: when a policy is stored, changed or dropped, bring the shared database up to
/// date before answering. An update that failed before (recorded in the old entry) is
/// made now whatever changed.
fn sync_shared(
    cfg: &Config,
    how: SharedWrites,
    domain: &str,
    old: Option<&OwnedEntry>,
    new: &OwnedEntry,
) -> Result<(), ()> {
    let pending = old.is_some_and(|o| o.shared_retry != 0);
    match shared_change(old, new, pending) {
        Some(change) => write_shared(cfg, how, domain, &change),
        None => Ok(()),
    }
}

/// Without a usable state store nothing is known of what the shared database holds, so
/// each cold-path answer is written to it (cheap next to the DNS and HTTPS lookups that
/// every call then makes).
pub fn sync_shared_without_store(cfg: &Config, how: SharedWrites, domain: &str, new: &OwnedEntry) {
    if let Some(change) = shared_change(None, new, true) {
        let _ = write_shared(cfg, how, domain, &change);
    }
}

fn write_shared(cfg: &Config, how: SharedWrites, domain: &str, change: &Change) -> Result<(), ()> {
    let done = match how {
        SharedWrites::InChild => shared_db::update_in_child(&cfg.database, domain, change),
        SharedWrites::Direct => shared_db::apply(&cfg.database, domain, change),
    };
    done.map_err(|e| {
        log::alert(&format!(
            "shared database not updated for {domain}: {e}; trying again in {SHARED_RETRY}s"
        ));
    })
}
