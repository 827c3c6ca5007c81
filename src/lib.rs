//! exim-mta-sts, the tool: the `exim-mta-sts` binary's library. It holds everything that
//! talks to the network, which never runs inside Exim (SPEC §9): the binary is the admin
//! tool and the helper that `libexim_mta_sts.so` (package `lib/`) starts for the cold path.
//! What both share (store, entry, decision, config, parsers) is `mta_sts_core`, re-exported
//! here under the same module names.
//!
//! Modules:
//! - [`engine`]: the store side of a cold-path run (fetch lease, store, shared database),
//!   around [`decide::cold`];
//! - [`dns`], [`fetch`], [`dane`]: the network (system resolver, HTTPS, DANE check), put
//!   together as [`engine::LiveNet`];
//! - [`shared_db`], [`reseed`]: the shared database Exim's `lmdb` lookup reads;
//! - [`admin`]: what the admin tool (`src/bin/exim-mta-sts/`) reports and maintains.

pub use mta_sts_core::{
    account, cache, cause, clock, config, counters, decide, domain, entry, lmdbfile, log, mx, policy, sys,
    tally, tlsevent,
};

pub mod admin;
pub mod dane;
pub mod dns;
pub mod engine;
pub mod fetch;
pub mod probe;
pub mod report;
pub mod reseed;
pub mod send;
pub mod shared_db;
pub mod stats;
