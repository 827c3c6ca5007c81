//! The privilege split (SPEC §9, issue 10): the cold path runs in the helper, as the Exim
//! user when the library is called as root, with a clean environment and no inherited
//! descriptor; a missing, unrunnable, killed or late helper answers `fail`/`0` with a log
//! line, never a failed expansion, and the next call works once the helper is back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// One `dup` to give the calling process an inheritable descriptor.
#![allow(unsafe_code)]

mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// `getmta DOMAIN` and `getmta DOMAIN HOST` through a fresh Debian Exim with `extra`
/// configuration lines: (the two answers joined by `|`, Exim's log output).
fn ask(dir: &Path, d: &str, extra: &str) -> (String, String) {
    let cfg = config(dir, extra);
    let e = format!(
        "{}|{}",
        dlfunc(&lib_path(), "getmta", &[d]),
        dlfunc(&lib_path(), "getmta", &[d, &format!("mx.{d}")])
    );
    exim_be(&debian_exim(), &exim_conf(dir), &cfg, &e)
}

/// A domain with an enforce policy, and a scratch directory for it.
fn setup(tag: &str) -> (World, String, std::path::PathBuf) {
    let w = World::get();
    let d = w.unique(tag);
    w.sts_domain(&d, "h", &policy("enforce", &[&format!("mx.{d}")], 3600));
    let dir = w.scratch(tag);
    (w, d, dir)
}

/// After a failure: the real helper back, the same domain is answered.
fn works_again(dir: &Path, d: &str) {
    let (out, err) = ask(dir, d, "");
    assert_eq!(out, "enforce|", "{err}");
}

#[test]
fn called_as_root_the_network_work_is_done_as_the_exim_user() {
    let (w, d, dir) = setup("asroot");
    assert_eq!(exim_mta_sts_tool::sys::euid(), 0, "this test needs root");
    let lib = lib_with(&config(&dir, ""));
    assert_eq!(lib.getmta(&[&d]), "enforce");
    // Seen from outside: the uid owning the socket the policy host's client connected from.
    let (uid, _) = exim_ids();
    let clients = std::fs::read_to_string(w.policy_dir(&d).join("clients")).unwrap();
    assert_eq!(clients, format!("uid={uid}\n"));
    // The answer came from the entry the helper stored (as that user: it made the files).
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(dir.join("state.mdb")).unwrap().uid(), uid);
    assert_eq!(shared(&dir)[&format!("{d}:mode")], "enforce");
}

#[test]
fn missing_helper_answers_fail_and_says_why() {
    let (_w, d, dir) = setup("nohelper");
    let (out, err) = ask(&dir, &d, "helper = \"/nonexistent/exim-mta-sts\"");
    assert_eq!(out, "fail|0", "{err}");
    assert!(
        err.contains(&format!("mta-sts: domain={d} answer=fail: helper missing: /nonexistent/exim-mta-sts")),
        "{err}"
    );
    works_again(&dir, &d);
}

#[test]
fn helper_that_cannot_run_answers_fail_and_says_why() {
    let (_w, d, dir) = setup("badhelper");
    let not_exec = dir.join("not-executable");
    std::fs::write(&not_exec, "#!/bin/sh\nexit 0\n").unwrap();
    let not_a_program = dir.join("not-a-program");
    std::fs::write(&not_a_program, b"\x7fELF but not really").unwrap();
    std::fs::set_permissions(&not_a_program, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Not executable: it cannot be started. Executable but not a program: the system runs
    // it with /bin/sh (execvp's rule), which fails, and no answer comes.
    for (helper, words) in [(&not_exec, "helper cannot be run"), (&not_a_program, "helper gave no answer")] {
        let (out, err) = ask(&dir, &d, &format!("helper = \"{}\"", helper.display()));
        assert_eq!(out, "fail|0", "{err}");
        let line = format!("mta-sts: domain={d} answer=fail: {words}: {}", helper.display());
        assert!(err.contains(&line), "{err}");
    }
    works_again(&dir, &d);
}

#[test]
fn helper_killed_mid_fetch_answers_fail_and_says_why() {
    let (w, d, dir) = setup("killed");
    w.serve_policy(&d, &policy("enforce", &[&format!("mx.{d}")], 3600), "delay_ms=20000");
    let cfg = config(&dir, "");
    let child = be_spawn(
        std::process::Command::new(debian_exim()),
        &exim_conf(&dir),
        &cfg,
        &[dlfunc(&lib_path(), "getmta", &[&d])],
    );
    // Once the helper is in the middle of the fetch, kill it.
    let start = Instant::now();
    while w.requests(&d) == 0 {
        assert!(start.elapsed() < Duration::from_secs(15), "the fetch never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let kill =
        std::process::Command::new("pkill").args(["-KILL", "-f", &format!("helper {d}$")]).status().unwrap();
    assert!(kill.success(), "no helper to kill");
    let (lines, err) = be_output(child);
    assert_eq!(lines, ["fail"], "{err}");
    assert!(err.contains(&format!("mta-sts: domain={d} answer=fail: helper killed: ")), "{err}");
    assert!(err.contains("killed by signal 9"), "{err}");
    w.serve_policy(&d, &policy("enforce", &[&format!("mx.{d}")], 3600), "");
    works_again(&dir, &d);
}

#[test]
fn helper_past_its_deadline_is_killed_and_answers_fail() {
    let (_w, d, dir) = setup("late");
    // A stand-in for a hung helper (the real one keeps its own deadline, so this fault
    // cannot be produced with it): a program that never answers.
    let hung = dir.join("hung-helper");
    std::fs::write(&hung, "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(&hung, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = config(&dir, &format!("helper = \"{}\"\ncold_deadline = 1", hung.display()));
    let start = Instant::now();
    let (out, err) = exim_be(&debian_exim(), &exim_conf(&dir), &cfg, &dlfunc(&lib_path(), "getmta", &[&d]));
    let took = start.elapsed();
    assert_eq!(out, "fail", "{err}");
    assert!(
        err.contains(&format!("mta-sts: domain={d} answer=fail: helper past its deadline, killed: ")),
        "{err}"
    );
    // The call waited for the deadline (2 x 1 + 30 s), not for the program (600 s).
    assert!(took >= Duration::from_secs(32) && took < Duration::from_secs(45), "{took:?} {err}");
    let left =
        std::process::Command::new("pgrep").args(["-f", &hung.display().to_string()]).output().unwrap();
    assert!(left.stdout.is_empty(), "the hung helper was left running");
    works_again(&dir, &d);
}

#[test]
fn helper_starts_clean_as_the_exim_user_with_no_inherited_descriptor() {
    let (_w, d, dir) = setup("probe");
    // A probe in the helper's place reports what it was given (then gives no answer).
    let src = dir.join("probe.c");
    std::fs::write(
        &src,
        r#"#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    char out[4096];
    snprintf(out, sizeof out, "%s.probe", argv[2]);
    FILE *f = fopen(out, "w");
    if (!f) return 3;
    gid_t groups[64];
    int n = getgroups(64, groups);
    fprintf(f, "uid %d %d gid %d %d groups", (int)getuid(), (int)geteuid(), (int)getgid(), (int)getegid());
    for (int i = 0; i < n; i++) fprintf(f, " %d", (int)groups[i]);
    fprintf(f, "\nargs");
    for (int i = 1; i < argc; i++) fprintf(f, " %s", argv[i]);
    fprintf(f, "\nenv");
    for (char **e = environ; *e; e++) fprintf(f, " %s", *e);
    fprintf(f, "\nfds");
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d) && atoi(e->d_name) != fileno(f))
            fprintf(f, " %s", e->d_name);
    fprintf(f, "\n");
    return 1;
}
"#,
    )
    .unwrap();
    let probe = dir.join("probe");
    let cc = std::process::Command::new("cc").arg(&src).arg("-o").arg(&probe).output().unwrap();
    assert!(cc.status.success(), "{}", String::from_utf8_lossy(&cc.stderr));
    let cfg = config(&dir, &format!("helper = \"{}\"", probe.display()));
    // An inheritable descriptor in the calling process, as Exim has (its log, a socket).
    // SAFETY: dup of standard input; `dup` never sets close-on-exec.
    let inheritable = unsafe { libc::dup(0) };
    assert!(inheritable > 2);
    let lib = lib_with(&cfg);
    assert_eq!(lib.getmta(&[&d]), "fail");
    let report = std::fs::read_to_string(format!("{}.probe", cfg.display())).unwrap();
    let (uid, gid) = exim_ids();
    assert_eq!(
        report,
        format!(
            "uid {uid} {uid} gid {gid} {gid} groups\nargs --config {} helper {d}\nenv PATH=/usr/sbin:/usr/bin:/sbin:/bin\nfds 0 1 2\n",
            cfg.display()
        )
    );
}
