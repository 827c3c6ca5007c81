//! What the library inside Exim (`lib/`) and the helper (the `exim-mta-sts` binary) share:
//! no network code, no thread (SPEC §9).
//!
//! - [`decide`]: the one decision layer: what applies to a domain, from what the store
//!   holds, the clock and (in the helper) the network's answers, DANE's precedence included;
//! - [`cause`]: typed failures and the one translation of a cause into its answer, log
//!   line and RFC 8460 result type;
//! - [`entry`] (a domain's record and its encoding), [`cache`] (the LMDB store),
//!   [`lmdbfile`] (opening LMDB files safely);
//! - [`policy`], [`mx`], [`domain`]: pure parsers and matching;
//! - [`config`], [`log`], [`clock`], [`sys`] (calls into C).

pub mod account;
pub mod cache;
pub mod cause;
pub mod clock;
pub mod config;
pub mod counters;
pub mod decide;
pub mod domain;
pub mod entry;
pub mod lmdbfile;
pub mod log;
pub mod mx;
pub mod policy;
pub mod sys;
pub mod tally;
pub mod tlsevent;
