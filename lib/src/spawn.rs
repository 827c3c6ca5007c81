//! Starting the helper (SPEC §9): the `exim-mta-sts` binary runs the cold path in its own
//! process, with a clean environment, no descriptor of Exim's but the three standard ones,
//! as the owner of the state directory when Exim routes as root, and within a deadline.
//! Its standard output is its answer (an encoded store entry); its standard error is its
//! log lines, passed on to Exim's log here. Only its own pid is waited for, so Exim's
//! other children are left alone; no thread is started.
#![allow(unsafe_code)]

use mta_sts_core::cause::HelperError;
use mta_sts_core::config::Config;
use mta_sts_core::sys::ChildEnd;
use mta_sts_core::{account, log, sys};
use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// An answer bigger than this is not one (an entry holds at most a 64 KiB policy by default).
const MAX_ANSWER: usize = 4 << 20;
/// Log output beyond this is dropped (and the drop said).
const MAX_LOG: usize = 256 << 10;

/// Why the helper gave no answer, with the details for the log.
pub type Failure = (HelperError, String);

/// Runs `HELPER --config FILE helper ARGS...` and returns what it wrote on its standard
/// output once it exited successfully.
pub fn run(cfg: &Config, config_path: &Path, args: &[&str]) -> Result<Vec<u8>, Failure> {
    let helper = &cfg.helper;
    let mut cmd = Command::new(helper);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .arg("--config")
        .arg(config_path)
        .arg("helper")
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if log::debugging() {
        cmd.arg("--debug");
    }
    if sys::euid() == 0 {
        // SPEC §9: never root; std drops the supplementary groups too.
        let (uid, gid) = account::cold_path_user(cfg).map_err(|e| (HelperError::WouldRunAsRoot, e))?;
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: runs in the child between fork and exec, and only makes a system call
    // (async-signal-safe): every descriptor above 2 becomes close-on-exec, so none of
    // Exim's open files, sockets or pipes reaches the helper.
    unsafe {
        cmd.pre_exec(|| {
            cloexec_from(3);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        let kind = match e.kind() {
            ErrorKind::NotFound => HelperError::Missing,
            _ => HelperError::NotExecutable,
        };
        (kind, format!("{}: {e}", helper.display()))
    })?;
    let deadline = Instant::now() + cfg.helper_deadline();
    let (out, err) = collect(&mut child, deadline);
    let pid = libc::pid_t::try_from(child.id()).unwrap_or(0);
    let end = sys::wait_for(pid, deadline.saturating_duration_since(Instant::now()));
    pass_on_log(&err);
    let h = helper.display();
    match end {
        // Reaped by Exim (its own SIGCHLD handling): the answer decides.
        Ok(ChildEnd::Exited(0) | ChildEnd::ReapedElsewhere) if !out.is_empty() => Ok(out),
        Ok(ChildEnd::TimedOut) => {
            Err((HelperError::Deadline, format!("{h}: no answer within {:?}", cfg.helper_deadline())))
        }
        Ok(ChildEnd::Signalled(s)) => Err((HelperError::Killed, format!("{h}: killed by signal {s}"))),
        Ok(ChildEnd::Exited(n)) if n != 0 => {
            Err((HelperError::NoAnswer, format!("{h}: exit status {n} without an answer")))
        }
        Ok(_) => Err((HelperError::NoAnswer, format!("{h}: ended without an answer"))),
        Err(e) => Err((HelperError::NoAnswer, format!("{h}: cannot wait for it: {e}"))),
    }
}

/// Marks every descriptor from `first` on close-on-exec (Linux `close_range` with
/// `CLOSE_RANGE_CLOEXEC`; older kernels: one `fcntl` per possible descriptor).
fn cloexec_from(first: libc::c_uint) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: a system call on this process's own descriptor table.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return;
    }
    // SAFETY: sysconf and fcntl on descriptors of this process only.
    unsafe {
        let max = libc::sysconf(libc::_SC_OPEN_MAX).clamp(0, 65_536) as libc::c_int;
        for fd in first as libc::c_int..max {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Reads the child's standard output and error until both end or the deadline passes.
fn collect(child: &mut Child, deadline: Instant) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut streams: Vec<(Box<dyn Read>, i32, bool)> = Vec::new();
    if let Some(o) = child.stdout.take() {
        let fd = o.as_raw_fd();
        streams.push((Box::new(o), fd, true));
    }
    if let Some(e) = child.stderr.take() {
        let fd = e.as_raw_fd();
        streams.push((Box::new(e), fd, false));
    }
    let mut buf = [0u8; 16 << 10];
    while !streams.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let mut fds: Vec<libc::pollfd> = streams
            .iter()
            .map(|(_, fd, _)| libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 })
            .collect();
        let ms = libc::c_int::try_from(left.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        let mut ended = Vec::new();
        for (i, p) in fds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            let Some((stream, _, is_out)) = streams.get_mut(i) else { continue };
            match stream.read(&mut buf) {
                Ok(0) => ended.push(i),
                Ok(k) => {
                    let (sink, cap) = if *is_out { (&mut out, MAX_ANSWER) } else { (&mut err, MAX_LOG) };
                    let room = cap.saturating_sub(sink.len());
                    sink.extend_from_slice(buf.get(..k.min(room)).unwrap_or_default());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => ended.push(i),
            }
        }
        for i in ended.into_iter().rev() {
            streams.remove(i);
        }
    }
    (out, err)
}

/// Writes the helper's log lines to Exim's log (each line cut at 2000 bytes).
fn pass_on_log(err: &[u8]) {
    let text = String::from_utf8_lossy(err);
    for line in text.lines().filter(|l| !l.is_empty()) {
        let cut = line.char_indices().nth(2000).map_or(line, |(i, _)| line.get(..i).unwrap_or(line));
        log::write_piped(cut);
    }
    if err.len() >= MAX_LOG {
        log::warn(&format!("the helper wrote more than {MAX_LOG} bytes of log; the rest was dropped"));
    }
}
