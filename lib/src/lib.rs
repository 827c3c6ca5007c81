//! libexim_mta_sts.so: the library Exim loads with `${dlfunc}` (SPEC §2). It holds the C
//! edge ([`ffi`]: the functions Exim calls, declared in `include/exim_mta_sts.h`; and
//! [`exim`], Exim's logging symbols), the hot path ([`process`]: a store read and the
//! decision from what is cached) and the start of the helper ([`spawn`]), which runs the
//! cold path in its own process. It links no TLS, HTTP or DNS code and starts no thread
//! (SPEC §9); what it shares with the helper is `mta_sts_core`.

mod exim;
pub mod ffi;
pub mod process;
mod spawn;

pub use ffi::{EximDlfunc, getmta, getmx, mtasts_event};
