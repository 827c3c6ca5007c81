//! The library's calls into C: Exim's exported logging symbols, syslog, `fork`, and
//! fork detection. Each is wrapped in a safe function here so that `unsafe` stays in this
//! file and in `ffi.rs` (the calls *from* Exim).
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int, c_uint};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

/// Writes one line to syslog (facility mail) **without** `openlog`, which would change
/// Exim's own syslog identity (CRATES.md §5).
pub fn syslog(priority: c_int, line: &CStr) {
    // SAFETY: constant format, one NUL-terminated string argument.
    unsafe { libc::syslog(libc::LOG_MAIL | priority, c"%s".as_ptr(), line.as_ptr()) };
}

static FORK_GENERATION: AtomicU32 = AtomicU32::new(0);

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// A number that changes in a child process after every `fork()`, read without a system
/// call. The first call registers a `pthread_atfork` handler.
pub fn fork_generation() -> u32 {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: registers a handler that only increments an atomic, which is
        // async-signal-safe and valid in a freshly forked child.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
    });
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// How a child started by [`run_in_child`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildEnd {
    /// It exited with this status.
    Exited(i32),
    /// It was killed by this signal.
    Signalled(i32),
    /// Somebody else (Exim's own SIGCHLD handling) reaped it; its status is unknown.
    ReapedElsewhere,
    /// It outlived the deadline and was killed.
    TimedOut,
}

/// Runs `job` in a forked child process and waits for it, at most `deadline`.
/// The child runs `job` and leaves with `_exit(job())`: no atexit handlers, no stdio
/// flush, nothing of the parent's state (Exim's) touched. Only the child's own pid is
/// waited for, so Exim's other children are left alone.
pub fn run_in_child(deadline: Duration, job: impl FnOnce() -> i32) -> Result<ChildEnd, std::io::Error> {
    // SAFETY: fork() in a single-threaded Exim process; the child only runs `job`, which
    // opens its own files, and then _exit()s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or(70);
        // SAFETY: _exit never returns and runs no handlers.
        unsafe { libc::_exit(code) };
    }
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        let mut status: c_int = 0;
        // SAFETY: waits for our own child only, without blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            if libc::WIFEXITED(status) {
                return Ok(ChildEnd::Exited(libc::WEXITSTATUS(status)));
            }
            if libc::WIFSIGNALED(status) {
                return Ok(ChildEnd::Signalled(libc::WTERMSIG(status)));
            }
        } else if r < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return Ok(ChildEnd::ReapedElsewhere),
                _ => return Err(e),
            }
        }
        if start.elapsed() >= deadline {
            // SAFETY: signals and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Ok(ChildEnd::TimedOut);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// Is a process with this pid alive (on this machine)?
pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// This process's id.
pub fn pid() -> u32 {
    std::process::id()
}

/// Marks the LMDB environment's data-file descriptor close-on-exec (LMDB 0.9 leaves it
/// inheritable; its lock-file descriptors already are), so that no descriptor of ours
/// leaks into the programs Exim runs.
pub fn lmdb_cloexec(env: &lmdb::Environment) {
    let mut fd: lmdb_sys::mdb_filehandle_t = -1;
    // SAFETY: a valid, open environment; mdb_env_get_fd only reads it.
    let rc = unsafe { lmdb_sys::mdb_env_get_fd(env.env(), &mut fd) };
    if rc == 0 && fd >= 0 {
        // SAFETY: fcntl on a descriptor LMDB owns; only the close-on-exec flag changes.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// The file-system identity of the calling thread: Linux's fsuid and fsgid (which alone
/// decide file access, creation ownership and link following checks) and the supplementary
/// groups. Switched with the raw system calls, which change the calling thread only: no
/// signal is sent to other threads (glibc's `setgroups` would broadcast), the effective
/// uid stays root (Exim's signals, its other privileges), and nothing outlives the switch.
struct FsIdentity {
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

fn current_fs_identity() -> Result<FsIdentity, std::io::Error> {
    // SAFETY: with an id of -1 (invalid) setfsuid/setfsgid change nothing and return the
    // current value; getgroups writes at most `n` entries into a buffer of that size.
    unsafe {
        let uid = libc::setfsuid(libc::uid_t::MAX) as libc::uid_t;
        let gid = libc::setfsgid(libc::gid_t::MAX) as libc::gid_t;
        let n = libc::getgroups(0, std::ptr::null_mut());
        let mut groups = vec![0; usize::try_from(n).map_err(|_| std::io::Error::last_os_error())?];
        let got = libc::getgroups(n, groups.as_mut_ptr());
        groups.truncate(usize::try_from(got).map_err(|_| std::io::Error::last_os_error())?);
        Ok(FsIdentity { uid, gid, groups })
    }
}

fn set_fs_identity(id: &FsIdentity) -> Result<(), std::io::Error> {
    // SAFETY: per-thread credential changes with valid arguments (a pointer to `len`
    // gids); each result is checked by reading the value back.
    unsafe {
        if libc::syscall(libc::SYS_setgroups, id.groups.len(), id.groups.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::setfsgid(id.gid);
        libc::setfsuid(id.uid);
    }
    let now = current_fs_identity()?;
    if (now.uid, now.gid) != (id.uid, id.gid) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("cannot switch file access to uid {} gid {}", id.uid, id.gid),
        ));
    }
    Ok(())
}

/// Runs `f` with this thread's file accesses made as `uid`:`gid` with no supplementary
/// group, then restores the previous identity (also if `f` panics). Used by root to touch
/// files in a directory that another user can write, so that a link planted there can
/// reach nothing that user could not reach anyway (the 21Nails class of bugs).
pub fn with_fs_identity<R>(uid: u32, gid: u32, f: impl FnOnce() -> R) -> Result<R, std::io::Error> {
    struct Restore(FsIdentity);
    impl Drop for Restore {
        fn drop(&mut self) {
            // Root keeps CAP_SETUID and CAP_SETGID while its fsuid is another user's, so
            // this does not fail; if it did, the thread would be left with less access,
            // never more, and Exim would defer what it cannot write.
            if let Err(e) = set_fs_identity(&self.0) {
                // Said here rather than through `log`, which builds on this module.
                let line =
                    std::ffi::CString::new(format!("mta-sts: cannot restore the file-system identity: {e}"))
                        .unwrap_or_default();
                if !exim_log(LOG_MAIN | LOG_PANIC, &line) {
                    syslog(libc::LOG_ERR, &line);
                }
            }
        }
    }
    let saved = Restore(current_fs_identity()?);
    set_fs_identity(&FsIdentity { uid, gid, groups: vec![gid] })?;
    let r = f();
    drop(saved);
    Ok(r)
}
