//! The library among processes, as Exim uses it: forked children, many processes asking
//! at once, writers while Exim's own `lmdb` lookup reads, a C program built against the
//! header, and silence on stdout/stderr.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// Forks, waits and redirects descriptors through libc, as Exim does.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

mod common;
use common::*;
use std::path::Path;

/// Forks; the child runs `f` and exits with its status. Returns the child's pid.
fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: test code; the child only calls the library and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(99);
        // SAFETY: leave without running the test harness's exit handlers.
        unsafe { libc::_exit(code) };
    }
    pid
}

fn wait_child(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 + libc::WTERMSIG(status) }
}

#[test]
fn c_program_compiles_against_the_header_and_calls_the_library() {
    let w = World::get();
    let d = w.unique("cprog");
    w.sts_domain(&d, "c", &policy("enforce", &[&format!("mx.{d}")], 600));
    let dir = w.scratch("cprog");
    let src = dir.join("prog.c");
    std::fs::write(
        &src,
        r#"#define _POSIX_C_SOURCE 200809L
#include "exim_mta_sts.h"
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
typedef int exim_dlfunc_t(unsigned char **yield, int argc, unsigned char *argv[]);
static exim_dlfunc_t *const check_getmta = getmta;
static exim_dlfunc_t *const check_getmx = getmx;
static int seen[4096];
/* Inheritable (not close-on-exec) descriptors: remembered when `mark`, else printed when
   new. */
static void inheritable(int mark) {
    char path[64], target[256];
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == dirfd(d) || fd >= 4096) continue;
        if (fcntl(fd, F_GETFD) & FD_CLOEXEC) continue;
        if (mark) { seen[fd] = 1; continue; }
        if (seen[fd]) continue;
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        printf("inheritable descriptor %d: %s\n", fd, target);
    }
    if (d) closedir(d);
}
int main(int argc, char **argv) {
    unsigned char *y = NULL;
    unsigned char *args[2];
    int rc;
    if (argc != 3) return 2;
    inheritable(1);
    args[0] = (unsigned char *)argv[1];
    args[1] = (unsigned char *)argv[2];
    rc = check_getmta(&y, 1, args); printf("%d %s\n", rc, (char *)y);
    rc = check_getmta(&y, 2, args); printf("%d [%s]\n", rc, (char *)y);
    rc = check_getmx(&y, 1, args); printf("%d %s\n", rc, (char *)y);
    rc = check_getmta(&y, 0, args); printf("%d %s\n", rc, (char *)y);
    {   /* No thread may be left behind after a fetch: Exim forks. */
        int threads = 0;
        DIR *d = opendir("/proc/self/task");
        while (d && readdir(d)) threads++;
        if (d) closedir(d);
        printf("threads %d\n", threads - 2);
    }
    /* Every descriptor the library keeps open is close-on-exec: nothing leaks into the
       programs Exim runs (pipe transports, ...). */
    inheritable(0);
    return rc == ERROR ? 0 : 1;
}
"#,
    )
    .unwrap();
    let lib = lib_path();
    let libdir = lib.parent().unwrap();
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("include");
    let exe = dir.join("prog");
    let cc = std::process::Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg(format!("-L{}", libdir.display()))
        .arg("-lexim_mta_sts")
        .arg(format!("-Wl,-rpath,{}", libdir.display()))
        .output()
        .unwrap();
    assert!(cc.status.success(), "cc: {}", String::from_utf8_lossy(&cc.stderr));
    let out = std::process::Command::new(&exe)
        // cargo points LD_LIBRARY_PATH at target/debug, which has another build of the
        // library; the program must run the one it was linked against (its rpath).
        .env_remove("LD_LIBRARY_PATH")
        .arg(&d)
        .arg(format!("mx.{d}"))
        .env("EXIM_MTA_STS_CONFIG", config(&dir, ""))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "0 enforce\n0 []\n0 mx.{d}\n3 getmta: expected 1 or 2 arguments (DOMAIN or DOMAIN, HOST), got 0\nthreads 1\n"
        )
    );
}

#[test]
fn forked_children_reopen_the_store_and_leave_the_parent_intact() {
    let w = World::get();
    let a = w.unique("fork-a");
    let b = w.unique("fork-b");
    w.sts_domain(&a, "a", &policy("enforce", &[&format!("mx.{a}")], 600));
    w.sts_domain(&b, "b", &policy("testing", &[&format!("mx.{b}")], 600));
    let lib = lib_with(&config(&w.scratch("fork"), ""));
    assert_eq!(lib.getmta(&[&a]), "enforce");
    for _ in 0..3 {
        let pid = fork_child(|| {
            let ok = lib.getmta(&[&a]) == "enforce" && lib.getmta(&[&b]) == "testing";
            i32::from(!ok)
        });
        assert_eq!(wait_child(pid), 0, "child answers");
        // The parent's store (and its kept read transaction) still work after the child
        // has exited, and see what the child stored.
        assert_eq!(lib.getmta(&[&a]), "enforce");
        assert_eq!(lib.getmta(&[&b]), "testing");
    }
    assert_eq!(w.requests(&a), 1);
    assert_eq!(w.requests(&b), 1, "fetched by the first child only");
}

#[test]
fn twenty_processes_asking_at_once_cause_one_fetch() {
    let w = World::get();
    let d = w.unique("herd");
    w.sts_domain(&d, "h", &policy("enforce", &[&format!("mx.{d}")], 600));
    w.serve_policy(&d, &policy("enforce", &[&format!("mx.{d}")], 600), "delay_ms=400");
    let lib = lib_with(&config(&w.scratch("herd"), ""));
    let pids: Vec<_> = (0..20).map(|_| fork_child(|| i32::from(lib.getmta(&[&d]) != "enforce"))).collect();
    let codes: Vec<i32> = pids.into_iter().map(wait_child).collect();
    assert!(codes.iter().all(|&c| c == 0), "{codes:?}");
    assert_eq!(w.requests(&d), 1, "one fetch for twenty processes (SPEC §8)");
}

#[test]
fn exim_reads_the_shared_database_while_writers_run() {
    let w = World::get();
    let stable = w.unique("stable");
    w.sts_domain(&stable, "s", &policy("enforce", &[&format!("mx.{stable}")], 3600));
    let dir = w.scratch("writers");
    let cfg = config(&dir, "recheck_interval = 0");
    let lib = lib_with(&cfg);
    assert_eq!(lib.getmta(&[&stable]), "enforce");

    // Four writer processes, each changing the policy of its own domain 50 times.
    let lib = &lib;
    let writers: Vec<_> = (0..4)
        .map(|k| {
            let d = w.unique(&format!("writer{k}"));
            let w = World::get();
            fork_child(move || {
                for i in 0..50 {
                    let mode = if i % 2 == 0 { "enforce" } else { "testing" };
                    w.sts_domain(&d, &format!("v{i}"), &policy(mode, &[&format!("mx{i}.{d}")], 3600));
                    if lib.getmta(&[&d]) != mode {
                        return 1;
                    }
                }
                0
            })
        })
        .collect();

    // Meanwhile Exim's lookup reads (uncached, a real mdb_get each time) and calls getmta
    // in the same process.
    let db = dir.join("shared.mdb");
    let line = format!(
        "${{lookup{{{stable}:mode}}lmdb,cache=no_rd{{{}}}{{$value}}{{MISSING}}}}/{}",
        db.display(),
        dlfunc(&lib_path(), "getmta", &[&stable])
    );
    let mut done: Vec<Option<i32>> = vec![None; writers.len()];
    let mut runs = 0;
    while runs < 10 || done.iter().any(Option::is_none) {
        for (p, slot) in writers.iter().zip(done.iter_mut()) {
            let mut status = 0;
            // SAFETY: polling our own children.
            if slot.is_none() && unsafe { libc::waitpid(*p, &mut status, libc::WNOHANG) } == *p {
                *slot = Some(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 });
            }
        }
        let (out, err) = exim_be(&lmdb_exim(), &exim_conf(&dir), &cfg, &vec![line.as_str(); 20].join("\n"));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 20, "{out} / {err}");
        assert!(lines.iter().all(|l| *l == "enforce/enforce"), "{out} / {err}");
        runs += 1;
        assert!(runs < 2000, "writers did not finish");
    }
    assert!(done.iter().all(|d| *d == Some(0)), "writers: {done:?}");
    eprintln!("{runs} Exim runs of 20 lookups each while the writers ran");
    let all = shared(&dir);
    assert_eq!(all.len(), 5 * 4, "four keys (no report) for the stable domain and each writer's: {all:?}");
}

#[test]
fn nothing_is_written_to_stdout_or_stderr() {
    let w = World::get();
    let dir = w.scratch("silence");
    let d = w.unique("silence");
    w.zone(&d, &format!("_mta-sts.{d} TXT \"v=STSv1; id=x\"\nmta-sts.{d} A 127.0.1.1\n"));
    w.serve_policy(&d, "garbage", "status=500");
    let sf = w.unique("silence-sf");
    w.zone(&sf, &format!("_mta-sts.{sf} SERVFAIL\n"));
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "nonsense = [").unwrap();
    let capture = dir.join("captured");
    for cfg in [config(&dir, ""), bad] {
        let (cap, lib, d, sf) = (capture.clone(), lib_path(), d.clone(), sf.clone());
        let pid = fork_child(move || {
            let f = std::fs::File::create(&cap).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: redirecting our own (the child's) stdout and stderr.
            unsafe {
                libc::dup2(f.as_raw_fd(), 1);
                libc::dup2(f.as_raw_fd(), 2);
            }
            let l = lib_with_path(&lib, &cfg);
            for args in
                [vec![d.as_str()], vec![&d, "mx.example"], vec![sf.as_str()], vec![], vec!["[1.2.3.4]"]]
            {
                l.call("getmta", &args);
            }
            l.call("getmx", &[&d]);
            0
        });
        assert_eq!(wait_child(pid), 0);
        assert_eq!(std::fs::read_to_string(&capture).unwrap(), "", "the library wrote to stdout/stderr");
    }
}

fn lib_with_path(lib: &Path, cfg: &Path) -> Lib {
    // SAFETY: single-threaded child.
    unsafe { std::env::set_var("EXIM_MTA_STS_CONFIG", cfg) };
    Lib::open(lib)
}

#[test]
fn the_library_links_the_system_liblmdb() {
    let out = std::process::Command::new("ldd").arg(lib_path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.contains("liblmdb.so.0 => /")),
        "the .so must use the system liblmdb, as Exim does (install liblmdb-dev and pkg-config): {text}"
    );
}

#[test]
fn the_library_carries_no_tls_http_or_dns_code_and_loads_no_unwinder_library() {
    // SPEC §9: the network crates live in the helper only.
    let so = std::fs::read(lib_path()).unwrap();
    // Issue 10: at most 1 MB (10^6 bytes) stripped.
    assert!(so.len() <= 1_000_000, "{} is {} bytes", lib_path().display(), so.len());
    let helper = std::fs::read("/usr/sbin/exim-mta-sts").unwrap();
    let has = |bytes: &[u8], needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    // Crate source paths (panic locations): present in the helper, absent from the library.
    for krate in ["rustls-0.", "hickory-proto-", "ureq-3.", "ring-0.", "webpki-0."] {
        assert!(!has(&so, krate), "{krate} code in {}", lib_path().display());
        assert!(has(&helper, krate), "the helper should have {krate}: is the check blind?");
    }
    // What the library loads with it: the system liblmdb (Exim's) and libc; the unwinder is
    // linked in (lib/build.rs), not libgcc_s.so.1.
    let out = std::process::Command::new("readelf").arg("-d").arg(lib_path()).output().unwrap();
    let needed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1).map(|s| s.trim_end_matches(']').to_owned()))
        .collect();
    assert_eq!(needed, ["liblmdb.so.0", "libc.so.6", "ld-linux-x86-64.so.2"]);
}
