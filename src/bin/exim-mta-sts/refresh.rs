//! `exim-mta-sts refresh`: the proactive refresh (RFC 8461 §3.3, §10.2) of recently used
//! policies, spread over the jitter window without holding a lease while waiting.

use crate::{Failure, Outcome, ok_if, open_store, until};
use exim_mta_sts_tool::admin::{self, RefreshOutcome};
use exim_mta_sts_tool::cache::{Entry, Kind, OwnedEntry};
use exim_mta_sts_tool::config::Config;
use exim_mta_sts_tool::counters::RefreshRun;
use exim_mta_sts_tool::decide::Why;
use exim_mta_sts_tool::engine::{self, Begin, Engine, LiveNet, SharedWrites};
use exim_mta_sts_tool::tally::Tallies;
use exim_mta_sts_tool::{clock, log};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::time::Duration;

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    if n == 0 || getrandom::fill(&mut b).is_err() {
        return 0;
    }
    u64::from_le_bytes(b) % n
}

pub(crate) fn refresh(
    cfg: &Config,
    now: u64,
    used_within: u64,
    min_age: u64,
    jobs: usize,
    jitter: u64,
) -> Outcome {
    let mut store = open_store(cfg, true)?;
    // Each due domain with its start time: spread over the jitter window (so that many
    // hosts do not all ask a policy host at once) without any sleep that holds a lease.
    let mut due: Vec<(Duration, String, OwnedEntry)> = Vec::new();
    let mut skipped = 0usize;
    for (d, bytes) in store.entries().map_err(|e| Failure(e.to_string(), 1))? {
        let Some(e) = Entry::decode(&bytes) else { continue };
        if e.kind != Kind::Policy || now >= e.expires {
            continue;
        }
        if e.used + used_within < now || now < e.fetched + min_age {
            skipped += 1;
            continue;
        }
        let at = Duration::from_millis(random_below(jitter.saturating_mul(1000) + 1));
        due.push((at, d, e.to_owned_entry()));
    }
    // Progress on a terminal; failures are reported here, not by the library's log.
    log::quiet();
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(due.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}") {
            b.set_style(style);
        }
        Some(b)
    } else {
        None
    };
    let say = |line: String| match &bar {
        Some(b) => b.println(line),
        None => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    };
    let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<(String, Option<OwnedEntry>)>(0);
    let job_rx = std::sync::Mutex::new(job_rx);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(String, Option<OwnedEntry>, OwnedEntry)>();
    let (mut unchanged, mut changed, mut failed) = (0usize, 0usize, 0usize);
    let mut busy = 0usize;
    let mut engine = Engine { cfg, store: &mut store, shared: SharedWrites::Direct };
    let mut settle = |engine: &mut Engine<'_>,
                      (d, cached, entry): (String, Option<OwnedEntry>, OwnedEntry)| {
        let Some(old) = cached else { return };
        let new = engine.finish(&d, Some(&old), entry, clock::now());
        let outcome = admin::refresh_outcome(&old, &new);
        match outcome {
            RefreshOutcome::Failed => {
                let line = format!(
                    "{d}: refresh failed, cached policy kept (expires {}): {}",
                    until(new.expires, now),
                    new.note
                );
                // Also to syslog (facility mail), where Exim's administrators look.
                if let Ok(c) = std::ffi::CString::new(format!("mta-sts: refresh: {line}")) {
                    exim_mta_sts_tool::sys::syslog(libc::LOG_WARNING, &c);
                }
                say(line)
            }
            RefreshOutcome::Updated => {
                say(format!("{d}: policy changed: id {} mode {} mx {}", new.id, new.mode.as_str(), new.mx))
            }
            _ => {}
        }
        match outcome {
            RefreshOutcome::Unchanged => unchanged += 1,
            RefreshOutcome::Updated => changed += 1,
            RefreshOutcome::Failed => failed += 1,
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    };
    // A domain's fetch lease is taken only when its start time has come and a worker is
    // free to fetch it at once, and released as soon as that fetch is stored: Exim never
    // waits on a refresh longer than a fetch takes, and the run lasts about the jitter plus
    // the fetch time.
    let total = due.len();
    due.sort_by_key(|(at, _, _)| *at);
    let started = std::time::Instant::now();
    // Each worker's fetch outcomes, kept in one write at the end (never an open of the
    // counters file per domain, nor one per thread: liblmdb allows one per process).
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    std::thread::scope(|scope| {
        let mut workers = Vec::new();
        for _ in 0..jobs.min(total.max(1)) {
            let (job_rx, done_tx) = (&job_rx, done_tx.clone());
            workers.push(scope.spawn(move || {
                let mut net = LiveNet::new(cfg);
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => break,
                    };
                    let Ok((d, cached)) = job else { break };
                    let entry = engine::cold(&d, cached.as_ref(), clock::now(), cfg, &mut net, Why::Refresh);
                    if done_tx.send((d, cached, entry)).is_err() {
                        break;
                    }
                }
                net.outcomes
            }));
        }
        drop(done_tx);
        let mut queue = due.into_iter().peekable();
        let mut in_flight = 0usize;
        while queue.peek().is_some() || in_flight > 0 {
            let free = in_flight < jobs;
            let wait = match queue.peek() {
                Some((at, _, _)) if free => at.saturating_sub(started.elapsed()),
                _ => Duration::from_secs(1),
            };
            if free && wait.is_zero() {
                let Some((_, d, cached)) = queue.next() else { break };
                match engine.begin(&d, Some(cached), clock::now(), false) {
                    // A worker is idle (in_flight < jobs): the send is taken at once.
                    Begin::Go(cached) => {
                        if job_tx.send((d, cached)).is_err() {
                            break;
                        }
                        in_flight += 1;
                    }
                    Begin::Busy | Begin::Done(_) => {
                        busy += 1;
                        if let Some(b) = &bar {
                            b.inc(1);
                        }
                    }
                }
                continue;
            }
            match done_rx.recv_timeout(wait) {
                Ok(done) => {
                    in_flight -= 1;
                    settle(&mut engine, done);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        drop(job_tx);
        for worker in workers {
            for (k, n) in worker.join().unwrap_or_default() {
                *outcomes.entry(k).or_default() += n;
            }
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let run = RefreshRun {
        started: now,
        finished: clock::now(),
        unchanged: unchanged as u64,
        changed: changed as u64,
        failed: failed as u64,
        busy: busy as u64,
    };
    let kept = Tallies::open(&cfg.reports).and_then(|t| {
        t.count(run.finished, &outcomes)?;
        t.set_refresh_run(&run)
    });
    if let Err(e) = kept {
        let _ = writeln!(
            std::io::stderr(),
            "refresh: not recorded for `stats` in {}: {e}",
            cfg.reports.display()
        );
    }
    println!(
        "refreshed {} policies: {unchanged} unchanged, {changed} changed, {failed} failed (cached policy kept), \
         {busy} being fetched by Exim; {skipped} skipped (not used within {} days, or fetched less than {}h ago)",
        total,
        used_within / 86_400,
        min_age / 3600
    );
    Ok(ok_if(failed == 0))
}
