//! The C boundary: the functions Exim calls with `${dlfunc}` (SPEC §2), declared in
//! `include/exim_mta_sts.h`. Nothing else in the crate is called from C.
//!
//! Every export is defined through [`export!`], which wraps the whole body in
//! `catch_unwind`: a panic becomes a logged `fail` (or `0` for the host form), never an
//! unwind into Exim (which Rust turns into an abort). Every routine problem is an `OK`
//! answer of `fail` or `0`, because Exim fails open when an expansion fails in a router
//! condition or an `event_action`; only a wrong argument count, a bug in the Exim
//! configuration, returns `ERROR` with a message.
#![allow(unsafe_code)]

use crate::{exim, process};
use mta_sts_core::decide::Answer;
use mta_sts_core::policy::Mode;
use mta_sts_core::tlsevent::Event;
use mta_sts_core::{domain, log, mx};
use std::ffi::{CStr, c_int, c_uchar};
use std::sync::{Mutex, Once};

/// Exim's `local_scan.h` return codes.
pub const OK: c_int = 0;
pub const ERROR: c_int = 3;

/// `typedef int exim_dlfunc_t(uschar **yield, int argc, uschar *argv[]);`
pub type EximDlfunc = unsafe extern "C" fn(*mut *mut c_uchar, c_int, *mut *mut c_uchar) -> c_int;

/// Exim passes at most this many arguments to a dlfunc (`EXPAND_DLFUNC_MAX_ARGS`).
const MAX_ARGS: c_int = 8;

/// What a call returns: a string with status `OK`, or `ERROR` with a message.
enum Reply {
    Static(&'static CStr),
    Text(Vec<u8>),
    Error(String),
}

/// The last result: `*yield` points into it until the next call in this process (Exim
/// copies an `OK` result at once, but keeps the pointer of an error message).
static RESULT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn publish(yield_: *mut *mut c_uchar, reply: Reply) -> c_int {
    let (status, bytes): (c_int, &[u8]) = match &reply {
        Reply::Static(s) => (OK, s.to_bytes()),
        Reply::Text(t) => (OK, t),
        Reply::Error(m) => (ERROR, m.as_bytes()),
    };
    let mut buf = RESULT.lock().unwrap_or_else(|p| p.into_inner());
    buf.clear();
    buf.extend(bytes.iter().map(|&b| if b == 0 { b'?' } else { b }));
    buf.push(0);
    if !yield_.is_null() {
        // SAFETY: Exim passes a valid `uschar **`; the buffer stays alive (a static) and
        // unchanged until the next call in this process.
        unsafe { *yield_ = buf.as_mut_ptr() };
    }
    status
}

/// The arguments as byte strings (a NULL pointer reads as empty).
///
/// # Safety
/// `argv` must point to `argc` pointers, each NULL or a NUL-terminated string that
/// outlives the call, as Exim guarantees.
unsafe fn args<'a>(argc: c_int, argv: *mut *mut c_uchar) -> Result<Vec<&'a [u8]>, c_int> {
    if !(0..=MAX_ARGS).contains(&argc) || (argc > 0 && argv.is_null()) {
        return Err(argc);
    }
    let n = usize::try_from(argc).map_err(|_| argc)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        // SAFETY: i < argc, and argv holds argc pointers (caller's contract).
        let p = unsafe { *argv.add(i) };
        out.push(if p.is_null() {
            &b""[..]
        } else {
            // SAFETY: a NUL-terminated string that outlives the call (caller's contract).
            unsafe { CStr::from_ptr(p.cast()) }.to_bytes()
        });
    }
    Ok(out)
}

fn install_panic_hook() {
    exim::register();
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The default hook writes to stderr, which must never happen inside Exim.
        std::panic::set_hook(Box::new(|info| log::alert(&format!("internal error: {info}"))));
    });
}

/// Defines one export: `export!(name, fallback, |args| body)`. `fallback(argc)` is the
/// `OK` answer given if the body panics.
macro_rules! export {
    ($(#[$doc:meta])* $name:ident, $fallback:expr, |$args:ident| $body:expr) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// Called by Exim's `${dlfunc}` with its `exim_dlfunc_t` contract.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $name(yield_: *mut *mut c_uchar, argc: c_int, argv: *mut *mut c_uchar) -> c_int {
            install_panic_hook();
            let run = std::panic::AssertUnwindSafe(|| {
                // SAFETY: Exim's contract for argv (see `args`).
                match unsafe { args(argc, argv) } {
                    Ok($args) => $body,
                    Err(n) => wrong_count(stringify!($name), n),
                }
            });
            let reply = match std::panic::catch_unwind(run) {
                Ok(reply) => reply,
                Err(_) => {
                    let fallback: fn(c_int) -> &'static CStr = $fallback;
                    let answer = fallback(argc);
                    log::alert(&format!(concat!(stringify!($name), ": internal error; answered {:?}"), answer));
                    Reply::Static(answer)
                }
            };
            publish(yield_, reply)
        }
        const _: EximDlfunc = $name;
    };
}

/// The `ERROR` answer for a wrong number of arguments (a bug in the Exim configuration).
fn wrong_count(name: &str, argc: impl std::fmt::Display) -> Reply {
    let want = match name {
        "getmta" => "1 or 2 arguments (DOMAIN or DOMAIN, HOST)",
        "mtasts_event" => "2 to 7 arguments (EVENT, DOMAIN, ...)",
        _ => "1 argument (DOMAIN)",
    };
    Reply::Error(format!("{name}: expected {want}, got {argc}"))
}

/// The panic answer: `fail` for the mode, `0` (refuse) for the host form.
fn fail_closed(argc: c_int) -> &'static CStr {
    if argc == 2 { c"0" } else { c"fail" }
}

fn none_or_empty(argc: c_int) -> &'static CStr {
    let _ = argc;
    c""
}

/// The normalised domain, or the answer for a name that is not an MTA-STS domain.
fn with_domain(raw: &[u8], f: impl FnOnce(&str) -> Reply, not_a_domain: Reply) -> Reply {
    let mut buf = [0u8; domain::MAX_LEN];
    match domain::normalize_ascii(raw, &mut buf) {
        Ok(Some(d)) => f(d),
        Ok(None) => match std::str::from_utf8(raw).map(domain::normalize) {
            Ok(Ok(d)) => f(&d),
            _ => not_a_domain,
        },
        // SPEC §2: "An address literal or a syntactically invalid domain is not an
        // MTA-STS domain".
        Err(_) => not_a_domain,
    }
}

fn host_answer(domain: &str, host: &[u8], a: Answer<'_>) -> &'static CStr {
    match a {
        Answer::Policy { mode: Mode::Enforce | Mode::Testing, mx: patterns } => {
            // RFC 8461 §4.1: the MX host must match one of the policy's patterns.
            if mx::host_allowed(patterns.split(':').filter(|p| !p.is_empty()), host) {
                c""
            } else {
                log::info(&format!(
                    "domain={domain} host={} refused: not an mx of the policy ({patterns})",
                    String::from_utf8_lossy(host)
                ));
                c"0"
            }
        }
        // RFC 8461 §2: DANE governs; Exim's DANE checks the host (RFC.md A-14).
        Answer::Policy { mode: Mode::None, .. } | Answer::NoPolicy | Answer::Dane { .. } => c"",
        // SPEC §2: "0 … also when the library cannot decide (fail closed)".
        Answer::Fail => c"0",
    }
}

export! {
    /// `${dlfunc{LIB}{getmta}{DOMAIN}}`: `enforce`, `testing`, `none` or `fail`.
    /// `${dlfunc{LIB}{getmta}{DOMAIN}{HOST}}`: empty when HOST may be used, else `0`.
    getmta, fail_closed, |a| match a.as_slice() {
        [d] => with_domain(d, |d| {
            let r = process::with_answer(d, |a| a.word());
            log::debug(|| format!("getmta {d} = {}", r.to_string_lossy()));
            Reply::Static(r)
        }, Reply::Static(c"none")),
        [d, host] => with_domain(d, |d| {
            let r = process::with_answer(d, |ans| host_answer(d, host, ans));
            log::debug(|| format!("getmta {d} {} = {:?}", String::from_utf8_lossy(host), r.to_string_lossy()));
            if r == c"0" {
                // The delivery to this MX will not happen: RFC 8461 §5.1's re-check, and
                // a failed session for the TLS report (RFC.md A-21).
                process::delivery_failed(d);
                let host = String::from_utf8_lossy(host);
                process::record(d, &Event { name: "mx-refused", host: &host, ..Event::default() });
            }
            Reply::Static(r)
        }, Reply::Static(c"")),
        other => wrong_count("getmta", other.len()),
    }
}

export! {
    /// `${dlfunc{LIB}{getmx}{DOMAIN}}`: the policy's `mx` patterns, colon-separated.
    getmx, none_or_empty, |a| match a.as_slice() {
        [d] => with_domain(d, |d| {
            process::with_answer(d, |ans| match ans {
                Answer::Policy { mx, .. } | Answer::Dane { mx } => Reply::Text(mx.as_bytes().to_vec()),
                Answer::NoPolicy | Answer::Fail => Reply::Static(c""),
            })
        }, Reply::Static(c"")),
        other => wrong_count("getmx", other.len()),
    }
}

export! {
    /// `${dlfunc{LIB}{mtasts_event}{$event_name}{$domain}{$host}{$host_address}
    /// {$sending_ip_address $sending_port}{$tls_out_cipher|$tls_out_certificate_verified}
    /// {$event_data}}` from a transport's `event_action` (SPEC §10): the session's TLS
    /// outcome is counted for the reports, and `msg:host:defer` under an enforce policy
    /// makes the next call re-check the policy's `_mta-sts` id (RFC 8461 §5.1). Always
    /// answers "" (nothing to object to). Missing trailing arguments read as empty. (Seven
    /// at most: Exim 4.96 miscounts a `${dlfunc}` given the eight it allows.)
    mtasts_event, none_or_empty, |a| match a.as_slice() {
        [name, d, rest @ ..] if rest.len() <= 5 => with_domain(d, |d| {
            let text = |i: usize| rest.get(i).map(|b| String::from_utf8_lossy(b)).unwrap_or_default();
            let name = String::from_utf8_lossy(name);
            let (host, address, sending, tls, data) = (text(0), text(1), text(2), text(3), text(4));
            let (ip, port) = sending.split_once(' ').unwrap_or((&sending, ""));
            if name == "msg:host:defer" {
                process::delivery_failed(d);
            }
            if matches!(&*name, "smtp:ehlo" | "msg:host:defer" | "dane:fail") {
                let ev = Event {
                    name: &name,
                    host: &host,
                    host_address: &address,
                    sending_ip: ip,
                    sending_port: port,
                    tls: &tls,
                    data: &data,
                };
                process::record(d, &ev);
            }
            Reply::Static(c"")
        }, Reply::Static(c"")),
        other => wrong_count("mtasts_event", other.len()),
    }
}

#[cfg(feature = "fault-injection")]
export! {
    /// Test-only (feature `fault-injection`): panics inside the guard, to prove that a
    /// panic becomes a logged `fail`/`0` answer and never an abort of Exim.
    exim_mta_sts_fault_panic, fail_closed, |a| {
        let _ = a;
        #[allow(clippy::panic)]
        { panic!("fault injection: deliberate panic") }
    }
}

#[cfg(feature = "fault-injection")]
export! {
    /// Test-only (feature `fault-injection`): does nothing, answers "". The benchmark's
    /// baseline for what Exim's `${dlfunc}` itself costs.
    exim_mta_sts_noop, none_or_empty, |a| {
        let _ = a;
        Reply::Static(c"")
    }
}
