//! Logging (SPEC §7): one line per decision or problem, where an Exim administrator looks.
//!
//! Inside Exim the lines go through Exim's exported `log_write` (main log; problems the
//! administrator must fix also to the panic log), and detail through `debug_printf` when
//! Exim runs with `-d`. Where `log_write` is not exported, lines go to syslog (facility
//! mail) without `openlog`. The admin tool sends them to stderr instead. Nothing here ever
//! writes to stdout or stderr inside Exim.

use crate::sys;
use std::ffi::CString;
use std::sync::atomic::{AtomicU8, Ordering};

/// How serious a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A decision or an event worth a main-log line.
    Info,
    /// Something went wrong but mail is handled safely (main log).
    Warn,
    /// The administrator must fix something (main and panic log).
    Alert,
}

/// Where lines go: Exim or syslog (the default), stderr, or nowhere.
static SINK: AtomicU8 = AtomicU8::new(SINK_EXIM);
const SINK_EXIM: u8 = 0;
const SINK_STDERR: u8 = 1;
const SINK_OFF: u8 = 2;

/// For command-line programs: send log lines to stderr instead of Exim or syslog.
pub fn use_stderr() {
    SINK.store(SINK_STDERR, Ordering::Relaxed);
}

/// For command-line programs that report everything themselves: no log lines.
pub fn quiet() {
    SINK.store(SINK_OFF, Ordering::Relaxed);
}

fn c_line(msg: &str) -> CString {
    let clean: String = format!("mta-sts: {msg}")
        .chars()
        .map(|c| if c == '\0' || c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    CString::new(clean).unwrap_or_default()
}

/// Writes one log line.
pub fn write(level: Level, msg: &str) {
    let sink = SINK.load(Ordering::Relaxed);
    if sink == SINK_OFF {
        return;
    }
    let line = c_line(msg);
    if sink == SINK_STDERR {
        let tag = match level {
            Level::Info => "",
            Level::Warn => "warning: ",
            Level::Alert => "error: ",
        };
        #[allow(clippy::print_stderr)]
        {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{tag}{}", line.to_string_lossy());
        }
        return;
    }
    let flags = match level {
        Level::Alert => sys::LOG_MAIN | sys::LOG_PANIC,
        Level::Info | Level::Warn => sys::LOG_MAIN,
    };
    if !sys::exim_log(flags, &line) {
        let prio = match level {
            Level::Info => libc::LOG_INFO,
            Level::Warn => libc::LOG_WARNING,
            Level::Alert => libc::LOG_ERR,
        };
        sys::syslog(prio, &line);
    }
}

pub fn info(msg: &str) {
    write(Level::Info, msg)
}

pub fn warn(msg: &str) {
    write(Level::Warn, msg)
}

pub fn alert(msg: &str) {
    write(Level::Alert, msg)
}

/// Writes a debug line under `exim -d`; `msg` is only built when debugging is on.
pub fn debug(msg: impl FnOnce() -> String) {
    if sys::exim_debug_enabled() {
        sys::exim_debug(&c_line(&msg()));
    }
}
