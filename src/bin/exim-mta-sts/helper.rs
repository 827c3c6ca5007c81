//! `exim-mta-sts helper`: the cold path for libexim_mta_sts.so (SPEC §9). Not for people:
//! the library starts it when its store has no fresh entry for a domain, with a clean
//! environment, as the Exim user (the tool also leaves root itself, [`crate::run`]).
//!
//! ```text
//! exim-mta-sts --config FILE helper [--debug] DOMAIN   the cold path for DOMAIN
//! exim-mta-sts --config FILE helper [--debug] --seed   seed a new state store
//! ```
//!
//! Standard output: the entry stored for DOMAIN, in the store's encoding (the library
//! decodes it strictly and answers from it, also when the store is unusable). Standard
//! error: log lines, one per line, tagged with their level ([`log::use_pipe`]); the
//! library writes them to Exim's log. Exit status 0 with an answer, 1 without.

use exim_mta_sts_tool::cache::{CacheError, Kind, OwnedEntry};
use exim_mta_sts_tool::cause::Cause;
use exim_mta_sts_tool::config::Config;
use exim_mta_sts_tool::decide::Why;
use exim_mta_sts_tool::engine::{self, Engine, LiveNet, SharedWrites};
use exim_mta_sts_tool::sys::{self, ChildEnd};
use exim_mta_sts_tool::tally::{self, Detail, PolicySeen, Session, Tallies};
use exim_mta_sts_tool::{cache::Store, clock, domain, log, reseed};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

pub(crate) fn helper(cfg: &Config, domain: Option<&str>, seed: bool) -> ExitCode {
    if seed {
        return match Store::open(&cfg.state) {
            Ok(mut store) => {
                reseed::reseed(&mut store, &cfg.state, &cfg.database, clock::now());
                let _ = std::io::stdout().write_all(b"seeded\n");
                ExitCode::SUCCESS
            }
            Err(e) => {
                log::alert(&format!("{e}; not seeded"));
                ExitCode::from(1)
            }
        };
    }
    let Some(d) = domain.and_then(|d| domain::normalize(d).ok()) else {
        log::alert(&format!("helper: {domain:?} is not a domain name"));
        return ExitCode::from(1);
    };
    let now = clock::now();
    let mut net = LiveNet::new(cfg);
    let entry = match reseed::open_store(&cfg.state, &cfg.database) {
        Ok(mut store) => {
            let cached = store.read(&d, |e| e.map(|e| e.to_owned_entry())).ok().flatten();
            Engine { cfg, store: &mut store, shared: SharedWrites::InChild }.run(
                &d,
                cached,
                now,
                Why::Use,
                &mut net,
            )
        }
        Err(e) => {
            log::alert(&format!("{e}; answering from live DNS and HTTPS lookups"));
            let entry = engine::cold(&d, None, now, cfg, &mut net, Why::Use);
            engine::sync_shared_without_store(cfg, SharedWrites::InChild, &d, &entry);
            entry
        }
    };
    if !net.outcomes.is_empty() {
        count_in_child(cfg, &d, &entry, now, &mut net);
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(&entry.encode()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}

/// The counters of this run (the TLS report count of a failed fetch, the fetch outcomes
/// for `stats`), written from a forked child: on a full disk, LMDB's mapped file can raise
/// SIGBUS, which must cost the child, never the answer (as for the shared database).
fn count_in_child(cfg: &Config, d: &str, entry: &OwnedEntry, now: u64, net: &mut LiveNet) {
    let outcomes = std::mem::take(&mut net.outcomes);
    let end = sys::run_in_child(Duration::from_secs(10), || {
        let kept = Tallies::open(&cfg.reports).and_then(|t| {
            count_policy_failure(&t, cfg, d, entry, now)?;
            t.count(now, &outcomes)
        });
        match kept {
            Ok(()) => 0,
            Err(e) => {
                log::warn(&format!("domain={d}: counters not kept: {e}"));
                1
            }
        }
    });
    match end {
        // Exit status 1: the child said why.
        Ok(ChildEnd::Exited(1)) => {}
        Ok(end) => {
            if let Some(why) = end.failure() {
                log::warn(&format!("domain={d}: counters not kept in {} ({why})", cfg.reports.display()));
            }
        }
        Err(e) => log::warn(&format!("domain={d}: counters not kept: cannot fork: {e}")),
    }
}

/// SPEC §10: a policy fetch that failed in this run is counted for the domain's TLS report
/// (`sts-policy-fetch-error`, `sts-policy-invalid`, `sts-webpki-invalid`), under the cached
/// policy when one is kept.
fn count_policy_failure(
    t: &Tallies,
    cfg: &Config,
    d: &str,
    entry: &OwnedEntry,
    now: u64,
) -> Result<(), CacheError> {
    let Some(rt) =
        entry.cause.verdict(cfg.fetch_failure).result_type.filter(|_| matches!(entry.cause, Cause::Fetch(_)))
    else {
        return Ok(());
    };
    let policy = PolicySeen {
        kind: "sts".into(),
        mode: entry.mode.as_str().to_owned(),
        id: if entry.kind == Kind::Policy { entry.id.clone() } else { entry.failed_id.clone() },
        mx: entry.mx.clone(),
        text: entry.text.clone(),
    };
    let detail = Detail { reason: entry.note.chars().take(200).collect(), ..Detail::default() };
    let day = tally::day_of(now);
    let session = Session { day: &day, domain: d, policy: &policy, key: None, failure: Some((rt, detail)) };
    t.record(&session).map(|_| ())
}
