//! Exim's exported logging symbols (SPEC §7), found with `dlsym` when the running Exim
//! exports them (Debian's does), registered as the [`log::Host`] of this process.
#![allow(unsafe_code)]

use mta_sts_core::log::{self, Level};
use std::ffi::{CStr, c_char, c_int, c_uint};
use std::sync::OnceLock;

type LogWrite = unsafe extern "C" fn(selector: c_uint, flags: c_int, format: *const c_char, ...);
type DebugPrintf = unsafe extern "C" fn(format: *const c_char, ...);

/// Exim's `log_write` flags (Exim's `macros.h`, also in `local_scan.h`).
pub const LOG_MAIN: c_int = 1;
pub const LOG_PANIC: c_int = 2;

struct EximSymbols {
    log_write: Option<LogWrite>,
    debug_printf: Option<DebugPrintf>,
    /// Address of Exim's `unsigned int debug_selector`.
    debug_selector: Option<usize>,
}

fn lookup(name: &CStr) -> Option<usize> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the loaded
    // objects' symbol tables.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!p.is_null()).then_some(p as usize)
}

/// Resolved once per process: the addresses survive `fork()` unchanged.
fn exim() -> &'static EximSymbols {
    static SYMS: OnceLock<EximSymbols> = OnceLock::new();
    SYMS.get_or_init(|| {
        // A process that is not Exim (the admin tool, a test) may still export a
        // `log_write`; only trust the set when all three are present.
        let (lw, dp, ds) = (lookup(c"log_write"), lookup(c"debug_printf"), lookup(c"debug_selector"));
        match (lw, dp, ds) {
            (Some(lw), Some(dp), Some(ds)) => EximSymbols {
                // SAFETY: these are Exim's exported functions with the signatures of
                // Exim's local_scan.h: `void log_write(unsigned, int, const char *, ...)`
                // and `void debug_printf(const char *, ...)`.
                log_write: Some(unsafe { std::mem::transmute::<usize, LogWrite>(lw) }),
                // SAFETY: as above, for `debug_printf`.
                debug_printf: Some(unsafe { std::mem::transmute::<usize, DebugPrintf>(dp) }),
                debug_selector: Some(ds),
            },
            _ => EximSymbols { log_write: None, debug_printf: None, debug_selector: None },
        }
    })
}

/// Writes one line to Exim's logs. Returns false when Exim's `log_write` is absent.
pub fn exim_log(flags: c_int, line: &CStr) -> bool {
    match exim().log_write {
        Some(f) => {
            // SAFETY: a constant "%s" format with one NUL-terminated string argument;
            // message text is never used as a format.
            unsafe { f(0, flags, c"%s".as_ptr(), line.as_ptr()) };
            true
        }
        None => false,
    }
}

/// Is Exim running with debugging (`-d`) on?
pub fn exim_debug_enabled() -> bool {
    match exim().debug_selector {
        // SAFETY: the address of Exim's `unsigned int debug_selector` global, valid for
        // the life of the process; Exim is single-threaded.
        Some(addr) => unsafe { std::ptr::read_volatile(addr as *const c_uint) != 0 },
        None => false,
    }
}

/// Writes one line to Exim's debug output.
pub fn exim_debug(line: &CStr) {
    if let Some(f) = exim().debug_printf {
        // SAFETY: constant format, one NUL-terminated string argument.
        unsafe { f(c"%s\n".as_ptr(), line.as_ptr()) };
    }
}

fn write(level: Level, line: &CStr) -> bool {
    let flags = match level {
        Level::Alert => LOG_MAIN | LOG_PANIC,
        Level::Info | Level::Warn => LOG_MAIN,
    };
    exim_log(flags, line)
}

/// Makes Exim this process's log host (once; cheap afterwards).
pub fn register() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        log::set_host(log::Host { write, debug_enabled: exim_debug_enabled, debug: exim_debug });
    });
}
