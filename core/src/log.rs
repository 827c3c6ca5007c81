//! Logging (SPEC §7): one line per decision or problem, where an Exim administrator looks.
//!
//! Inside Exim the lines go through Exim's exported `log_write` (main log; problems the
//! administrator must fix also to the panic log), and detail through `debug_printf` when
//! Exim runs with `-d`: the library registers those as the [`Host`]. Without a host, lines
//! go to syslog (facility mail) without `openlog`. The admin tool sends them to stderr;
//! the helper sends them, one tagged line each, to the library that started it
//! ([`use_pipe`]), which writes them to Exim's log. Nothing here ever writes to stdout or
//! stderr inside Exim.

use crate::sys;
use std::ffi::{CStr, CString};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

/// Where the process hosting the library logs (Exim's exported functions).
pub struct Host {
    /// Writes one line; `false` when the host cannot (then syslog is used).
    pub write: fn(Level, &CStr) -> bool,
    /// Is debugging on?
    pub debug_enabled: fn() -> bool,
    /// Writes one debug line.
    pub debug: fn(&CStr),
}

static HOST: OnceLock<Host> = OnceLock::new();

/// Registers the host's logging (once per process; later calls change nothing).
pub fn set_host(host: Host) {
    let _ = HOST.set(host);
}

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
const SINK_PIPE: u8 = 3;

/// For command-line programs: send log lines to stderr instead of Exim or syslog.
pub fn use_stderr() {
    SINK.store(SINK_STDERR, Ordering::Relaxed);
}

/// For the helper: each line to stderr as one tag character (`I`, `W`, `A`, `D`) and the
/// text, for the library that started it to pass on ([`parse_piped`]).
pub fn use_pipe() {
    SINK.store(SINK_PIPE, Ordering::Relaxed);
}

/// Is debug output wanted (the host's `-d`, or the helper started under it)?
static PIPE_DEBUG: AtomicU8 = AtomicU8::new(0);

/// For the helper started by an Exim running with `-d`: pass debug lines on too.
pub fn pipe_debug() {
    PIPE_DEBUG.store(1, Ordering::Relaxed);
}

/// One line from the helper's stderr: its level (`None` for debug) and text. A line
/// without a known tag is passed on as a warning, whole.
pub fn parse_piped(line: &str) -> (Option<Level>, &str) {
    let mut chars = line.chars();
    let level = match chars.next() {
        Some('I') => Some(Level::Info),
        Some('W') => Some(Level::Warn),
        Some('A') => Some(Level::Alert),
        Some('D') => None,
        _ => return (Some(Level::Warn), line),
    };
    (level, chars.as_str())
}

fn pipe_line(tag: char, msg: &str) {
    let clean: String =
        msg.chars().map(|c| if c == '\n' || c == '\r' || c == '\0' { ' ' } else { c }).collect();
    #[allow(clippy::print_stderr)]
    {
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "{tag}{clean}");
    }
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
    if sink == SINK_PIPE {
        let tag = match level {
            Level::Info => 'I',
            Level::Warn => 'W',
            Level::Alert => 'A',
        };
        return pipe_line(tag, msg);
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
    if !HOST.get().is_some_and(|h| (h.write)(level, &line)) {
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
    if SINK.load(Ordering::Relaxed) == SINK_PIPE {
        if PIPE_DEBUG.load(Ordering::Relaxed) != 0 {
            pipe_line('D', &msg());
        }
    } else if let Some(h) = HOST.get().filter(|h| (h.debug_enabled)()) {
        (h.debug)(&c_line(&msg()));
    }
}

/// Is debug output on (so that the helper is asked for its debug lines too)?
pub fn debugging() -> bool {
    HOST.get().is_some_and(|h| (h.debug_enabled)())
}

/// Writes a line that came from the helper as it is (its `mta-sts: ` prefix added here).
pub fn write_piped(line: &str) {
    match parse_piped(line) {
        (Some(level), text) => write(level, text),
        (None, text) => debug(|| text.to_owned()),
    }
}
