//! Calls into C shared by the library and the helper: syslog, `fork`, fork detection,
//! process and credential calls, LMDB's descriptor. Each is wrapped in a safe function
//! here so that `unsafe` stays in this file, `lmdbfile.rs`'s one open, and the library's C
//! edge (`lib/src/lib.rs`, `lib/src/exim.rs`, `lib/src/spawn.rs`).
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char, c_int};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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

impl ChildEnd {
    /// How it failed, in words; `None` when it succeeded (or its status is unknown).
    pub fn failure(&self) -> Option<String> {
        match self {
            ChildEnd::Exited(0) | ChildEnd::ReapedElsewhere => None,
            ChildEnd::Exited(n) => Some(format!("child exit status {n}")),
            ChildEnd::Signalled(s) => Some(format!("child killed by signal {s}")),
            ChildEnd::TimedOut => Some("child past its deadline, killed".to_owned()),
        }
    }
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
    wait_for(pid, deadline)
}

/// Waits for our child `pid` at most `deadline`, then kills and reaps it. Only that pid is
/// waited for, so Exim's other children are left alone.
pub fn wait_for(pid: libc::pid_t, deadline: Duration) -> Result<ChildEnd, std::io::Error> {
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
                // Said to syslog rather than through `log`, which builds on this module.
                let line =
                    std::ffi::CString::new(format!("mta-sts: cannot restore the file-system identity: {e}"))
                        .unwrap_or_default();
                syslog(libc::LOG_ERR, &line);
            }
        }
    }
    let saved = Restore(current_fs_identity()?);
    set_fs_identity(&FsIdentity { uid, gid, groups: vec![gid] })?;
    let r = f();
    drop(saved);
    Ok(r)
}

/// Takes `uid` and `gid` for good (no supplementary group but `gid`), as a helper or a tool
/// started as root does before anything touches the network (SPEC §9). Checked by reading
/// the ids back: a process still root afterwards is an error.
pub fn become_user(uid: u32, gid: u32) -> Result<(), std::io::Error> {
    let groups = [gid];
    // SAFETY: plain credential calls with valid arguments (a pointer to one gid).
    let failed = unsafe {
        libc::setgroups(1, groups.as_ptr()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0
    };
    if failed {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: these cannot fail.
    let (ruid, euid, rgid, egid) =
        unsafe { (libc::getuid(), libc::geteuid(), libc::getgid(), libc::getegid()) };
    if (ruid, euid, rgid, egid) != (uid, uid, gid, gid) {
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, "ids did not change"));
    }
    Ok(())
}

/// The uid and primary gid of a user, by name (through the system's user database) or as
/// a number (its gid is then the same number unless the user database knows better).
pub fn user_ids(user: &str) -> Result<(u32, u32), String> {
    let name = std::ffi::CString::new(user).map_err(|_| "not a user name".to_owned())?;
    let mut pw: libc::passwd =
        // SAFETY: a plain C struct of integers and pointers; all-zero is a valid value.
        unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as c_char; 16 << 10];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: valid pointers to a passwd, a buffer of `buf.len()` bytes and a result slot.
    let rc = unsafe { libc::getpwnam_r(name.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc == 0 && !found.is_null() {
        return Ok((pw.pw_uid, pw.pw_gid));
    }
    match user.parse::<u32>() {
        Ok(n) => Ok((n, n)),
        Err(_) => Err("no such user".to_owned()),
    }
}

/// Gives `file` real blocks for its first `len` bytes (`posix_fallocate`), so that writes
/// through a shared mapping of them can never fault for want of space (SIGBUS): a full disk
/// is then an error here, not a signal later.
pub fn reserve(file: &std::fs::File, len: u64) -> Result<(), std::io::Error> {
    use std::os::fd::AsRawFd;
    let len =
        libc::off_t::try_from(len).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid open descriptor owned by `file`; no memory is passed.
    match unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}
