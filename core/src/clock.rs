//! The wall clock, in whole Unix seconds: the one place the library reads it (the decision
//! takes `now` as an argument, so that it can be tested at any time).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
