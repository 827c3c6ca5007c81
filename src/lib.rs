//! exim-mta-sts: MTA-STS (RFC 8461) for Exim.
//!
//! A shared library that Exim loads with `${dlfunc}` (see `include/exim_mta_sts.h` and
//! SPEC §2), answering `getmta` and `getmx` from an LMDB policy cache, and keeping a
//! second LMDB file that Exim's own `lmdb` lookup reads. The same crate builds the admin
//! tool `exim-mta-sts`.
//!
//! Modules, from the C edge inwards:
//! - [`ffi`]: the only C boundary (argument handling, panic guard, return codes);
//! - [`process`]: per-process state and the hot path; [`engine`]: the cold path, fetch
//!   leases, shared-database updates (also used by the admin tool);
//! - [`lookup`]: the RFC 8461 §5.1 decision from cache, clock, DNS and fetch;
//! - [`policy`], [`mx`], [`domain`]: pure parsers and matching;
//! - [`dns`], [`fetch`], [`dane`]: the network (system resolver, HTTPS, DANE check);
//! - [`cache`], [`shared_db`], [`lmdbfile`]: the two LMDB files;
//! - [`config`], [`log`], [`sys`]: configuration, logging, calls into C;
//! - [`admin`]: what the admin tool (`src/bin/exim-mta-sts/`) reports and maintains.
#![deny(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod clock;
pub mod config;
pub mod dane;
pub mod dns;
pub mod domain;
pub mod engine;
pub mod entry;
pub mod fetch;
pub mod ffi;
pub mod lmdbfile;
pub mod log;
pub mod lookup;
pub mod mx;
pub mod policy;
pub mod process;
pub mod reseed;
pub mod shared_db;
pub mod sys;
