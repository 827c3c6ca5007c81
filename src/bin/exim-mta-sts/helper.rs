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

use exim_mta_sts_tool::config::Config;
use exim_mta_sts_tool::decide::Why;
use exim_mta_sts_tool::engine::{self, Engine, LiveNet, SharedWrites};
use exim_mta_sts_tool::{cache::Store, clock, domain, log, reseed};
use std::io::Write;
use std::process::ExitCode;

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
    let mut out = std::io::stdout().lock();
    match out.write_all(&entry.encode()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}
