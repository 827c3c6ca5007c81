//! The library inside real Exims: Debian's exim4-daemon-heavy and the Exim built with the
//! `lmdb` lookup (scripts/setup), expanding `${dlfunc}` calls and `${lookup…lmdb}` with
//! `exim -be`, in the private test world.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;
use std::path::Path;

#[test]
fn both_exims_expand_all_three_calls() {
    let w = World::get();
    let lib = lib_path();
    for (tag, exim) in [("debian", debian_exim()), ("lmdb", lmdb_exim())] {
        let d = w.unique(&format!("exim-{tag}"));
        w.sts_domain(&d, "e1", &policy("enforce", &[&format!("mx.{d}")], 3600));
        let dir = w.scratch(&format!("exim-{tag}"));
        let cfg = config(&dir, "");
        let expansion = format!(
            "{}|{}|[{}]|[{}]|{}",
            dlfunc(&lib, "getmta", &[&d]),
            dlfunc(&lib, "getmx", &[&d]),
            dlfunc(&lib, "getmta", &[&d, &format!("mx.{d}")]),
            dlfunc(&lib, "getmta", &[&d, "mx.attacker.example"]),
            dlfunc(&lib, "getmta", &["[192.0.2.1]"]),
        );
        let (out, err) = exim_be(&exim, &exim_conf(&dir), &cfg, &expansion);
        assert_eq!(out, format!("enforce|mx.{d}|[]|[0]|none"), "{tag}: stderr {err}");
        // Both Exims export log_write (-export-dynamic); in -be mode Exim writes its log
        // lines to stderr.
        assert!(
            err.contains(&format!("mta-sts: domain={d} mode=enforce source=fetch id=e1")),
            "{tag}: {err}"
        );
        assert!(err.contains(&format!("domain={d} host=mx.attacker.example refused")), "{tag}: {err}");
    }
}

#[test]
fn exim_lmdb_lookup_reads_what_getmta_stored_in_the_same_process() {
    let w = World::get();
    let lib = lib_path();
    let first = w.unique("lmdb-first");
    let second = w.unique("lmdb-second");
    w.sts_domain(&first, "f1", &policy("testing", &[&format!("mx.{first}")], 3600));
    w.sts_domain(
        &second,
        "s1",
        &policy("enforce", &[&format!("mx1.{second}"), &format!("*.{second}")], 3600),
    );
    let dir = w.scratch("lmdb-lookup");
    let cfg = config(&dir, "");
    let conf = exim_conf(&dir);
    let db = dir.join("shared.mdb");
    let look = |key: &str| format!("${{lookup{{{key}}}lmdb{{{}}}{{$value}}{{NOTFOUND}}}}", db.display());

    // getmta learns `first`, then Exim's lookup in the same process reads it.
    let e = format!(
        "{}/{}/{}",
        dlfunc(&lib, "getmta", &[&first]),
        look(&format!("{first}:mode")),
        look(&format!("{first}:id"))
    );
    let (out, err) = exim_be(&lmdb_exim(), &conf, &cfg, &e);
    assert_eq!(out, "testing/testing/f1", "{err}");

    // Exim's lookup has the file open (with a read snapshot) while getmta learns `second`
    // in the same process: the open handle stays consistent, and the library never opens
    // the shared file in this process (SPEC §3).
    let e = format!(
        "{}/{}/{}/{}",
        look(&format!("{first}:mode")),
        dlfunc(&lib, "getmta", &[&second]),
        look(&format!("{first}:mx")),
        dlfunc(&lib, "getmta", &[&second, &format!("a.{second}")]),
    );
    let (out, err) = exim_be(&lmdb_exim(), &conf, &cfg, &e);
    assert_eq!(out, format!("testing/enforce/mx.{first}/"), "{err}");

    // A new process sees everything, NUL terminator not included.
    let e = format!(
        "{}|{}|{}",
        look(&format!("{second}:mode")),
        look(&format!("{second}:mx")),
        look(&format!("{second}:id"))
    );
    let (out, err) = exim_be(&lmdb_exim(), &conf, &cfg, &e);
    assert_eq!(out, format!("enforce|mx1.{second}:*.{second}|s1"), "{err}");
}

#[test]
fn broken_configuration_answers_fail_and_says_why() {
    let w = World::get();
    let d = w.unique("badconf");
    w.sts_domain(&d, "b", &policy("enforce", &[&format!("mx.{d}")], 3600));
    let dir = w.scratch("badconf");
    let cfg = dir.join("mta-sts.toml");
    std::fs::write(&cfg, "fetch_failure = \"sometimes\"\n").unwrap();
    let lib = lib_path();
    let e = format!(
        "{}|{}|[{}]",
        dlfunc(&lib, "getmta", &[&d]),
        dlfunc(&lib, "getmta", &[&d, &format!("mx.{d}")]),
        dlfunc(&lib, "getmx", &[&d])
    );
    let (out, err) = exim_be(&debian_exim(), &exim_conf(&dir), &cfg, &e);
    assert_eq!(out, "fail|0|[]", "{err}");
    let line = format!(
        "mta-sts: answer=fail: configuration unusable: configuration file {}: TOML parse error at line 1, \
         column 17: `fetch_failure = \"sometimes\"`: unknown variant `sometimes`, expected `none` or `fail`; \
         until it is fixed",
        cfg.display()
    );
    assert!(err.contains(&line), "{err}");
    assert_eq!(w.requests(&d), 0);
}

#[test]
fn unreadable_configuration_file_answers_fail() {
    let w = World::get();
    let dir = w.scratch("unreadable-conf");
    // A directory where the file should be: it exists but cannot be read as a file.
    let cfg = dir.join("conf.d");
    std::fs::create_dir_all(&cfg).unwrap();
    let e = dlfunc(&lib_path(), "getmta", &["example.test"]);
    let (out, err) = exim_be(&debian_exim(), &exim_conf(&dir), &cfg, &e);
    assert_eq!(out, "fail", "{err}");
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn panic_inside_the_library_is_a_logged_fail_not_an_abort() {
    let w = World::get();
    let dir = w.scratch("panic");
    let cfg = config(&dir, "");
    let fault = fault_lib_path();
    for exim in [debian_exim(), lmdb_exim()] {
        let e = format!(
            "[{}]/[{}]/after",
            dlfunc(&fault, "exim_mta_sts_fault_panic", &["x.test"]),
            dlfunc(&fault, "exim_mta_sts_fault_panic", &["x.test", "mx.x.test"])
        );
        let (out, err) = exim_be(&exim, &exim_conf(&dir), &cfg, &e);
        assert_eq!(out, "[fail]/[0]/after", "{err}");
        assert!(err.contains("mta-sts: internal error: panicked at"), "{err}");
        assert!(err.contains("fault injection: deliberate panic"), "{err}");
        assert!(err.contains("exim_mta_sts_fault_panic: internal error; answered \"fail\""), "{err}");
        assert!(!err.contains("thread '"), "the default panic hook must not write to stderr: {err}");
    }
}

#[test]
fn wrong_argument_count_is_an_expansion_error_with_a_message() {
    let w = World::get();
    let dir = w.scratch("argc");
    let e = dlfunc(&lib_path(), "getmta", &["a.test", "b", "c"]);
    let (out, err) = exim_be(&debian_exim(), &exim_conf(&dir), &config(&dir, ""), &e);
    assert!(
        out.contains("getmta: expected 1 or 2 arguments (DOMAIN or DOMAIN, HOST), got 3"),
        "{out} / {err}"
    );
}

#[test]
fn garbage_state_database_is_moved_aside_and_rebuilt() {
    let w = World::get();
    let d = w.unique("garbage");
    w.sts_domain(&d, "g", &policy("enforce", &[&format!("mx.{d}")], 3600));
    let dir = w.scratch("garbage");
    let cfg = config(&dir, "");
    std::fs::write(dir.join("state.mdb"), vec![0x5a; 20000]).unwrap();
    std::fs::write(
        dir.join("shared.mdb"),
        b"this is not an LMDB file at all, but it is long enough to look like one?".repeat(200),
    )
    .unwrap();
    // Damaged files of the Exim user's, as in a real spool directory.
    let (uid, gid) = exim_ids();
    for f in ["state.mdb", "shared.mdb"] {
        std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid)).unwrap();
    }
    let e = format!("{}|{}", dlfunc(&lib_path(), "getmta", &[&d]), dlfunc(&lib_path(), "getmx", &[&d]));
    let (out, err) = exim_be(&debian_exim(), &exim_conf(&dir), &cfg, &e);
    assert_eq!(out, format!("enforce|mx.{d}"), "{err}");
    assert!(err.contains(&format!("database {}/state.mdb was unusable", dir.display())), "{err}");
    assert!(err.contains(&format!("database {}/shared.mdb was unusable", dir.display())), "{err}");
    let aside: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".broken-"))
        .collect();
    assert_eq!(aside.len(), 2, "{aside:?}");
    // The rebuilt shared database is readable by Exim's own lookup.
    let look = format!("${{lookup{{{d}:mode}}lmdb{{{}/shared.mdb}}}}", dir.display());
    let (out, err) = exim_be(&lmdb_exim(), &exim_conf(&dir), &cfg, &look);
    assert_eq!(out, "enforce", "{err}");
}

#[test]
fn unusable_database_paths_still_give_correct_answers() {
    let w = World::get();
    let d = w.unique("nodb");
    w.sts_domain(&d, "n", &policy("enforce", &[&format!("mx.{d}")], 3600));
    let dir = w.scratch("nodb");
    let cfg = dir.join("mta-sts.toml");
    std::fs::write(
        &cfg,
        // No directory to take the helper's user from: it is named.
        "database = \"/nonexistent/dir/shared.mdb\"\nstate = \"/nonexistent/dir/state.mdb\"\nuser = \"Debian-exim\"\n",
    )
    .unwrap();
    let e = format!(
        "{}|[{}]|[{}]",
        dlfunc(&lib_path(), "getmta", &[&d]),
        dlfunc(&lib_path(), "getmta", &[&d, &format!("mx.{d}")]),
        dlfunc(&lib_path(), "getmta", &[&d, "evil.example"])
    );
    let (out, err) = exim_be(&debian_exim(), &exim_conf(&dir), &cfg, &e);
    assert_eq!(out, "enforce|[]|[0]", "{err}");
    assert!(err.contains("database /nonexistent/dir/state.mdb"), "{err}");
    assert!(err.contains("answering from live DNS and HTTPS lookups"), "{err}");
}

#[test]
fn debug_detail_appears_under_exim_d() {
    let w = World::get();
    let d = w.unique("debug");
    w.sts_domain(&d, "d", &policy("testing", &[&format!("mx.{d}")], 3600));
    let dir = w.scratch("debug");
    let cfg = config(&dir, "");
    let (_, err) = exim_be_with(
        &debian_exim(),
        &["-d+expand"],
        &exim_conf(&dir),
        &cfg,
        &dlfunc(&lib_path(), "getmta", &[&d]),
    );
    assert!(err.contains(&format!("mta-sts: getmta {d} = testing")), "{err}");
}

#[test]
fn shipped_exim_config_parses_in_both_exims() {
    let w = World::get();
    let dir = w.scratch("shipped-conf");
    let cfgdir = Path::new(env!("CARGO_MANIFEST_DIR")).join("exim-config");
    let conf = dir.join("full.conf");
    std::fs::write(
        &conf,
        format!(
            ".include {0}/main.conf\ndomainlist local_domains = sender.test\nexim_user = Debian-exim\nexim_group = Debian-exim\nbegin acl\n.include {0}/acl.conf\nbegin routers\n.include {0}/routers.conf\nbegin transports\n.include {0}/transports.conf\n",
            cfgdir.display()
        ),
    )
    .unwrap();
    for exim in [debian_exim(), lmdb_exim()] {
        let out = std::process::Command::new(&exim).arg("-C").arg(&conf).arg("-bV").output().unwrap();
        assert!(out.status.success(), "{}: {}", exim.display(), String::from_utf8_lossy(&out.stderr));
        let out = std::process::Command::new(&exim)
            .arg("-C")
            .arg(&conf)
            .args(["-bP", "transport", "remote_smtp_mtasts_enforce"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for want in [
            "hosts_require_tls = *",
            "tls_verify_hosts = *",
            "tls_verify_certificates = system",
            "no_tls_tempfail_tryclear",
            "tls_sni = $host",
        ] {
            assert!(text.lines().any(|l| l == want), "{want} missing in {text}");
        }
    }
}

/// Mounts a small tmpfs at `dir` (we are root in the test world's mount namespace).
fn small_disk(dir: &Path, size: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let st = std::process::Command::new("mount")
        // The Exim user's, as a spool directory is (a tmpfs root is root's, mode 1777, by
        // default).
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755,uid={},gid={}", exim_ids().0, exim_ids().1),
            "tmpfs",
        ])
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "mount tmpfs");
}

#[test]
fn full_disk_loses_no_answer() {
    let w = World::get();
    let old = w.unique("disk-old");
    let new = w.unique("disk-new");
    w.sts_domain(&old, "o", &policy("enforce", &[&format!("mx.{old}")], 3600));
    w.sts_domain(&new, "n", &policy("testing", &[&format!("mx.{new}")], 3600));
    let dir = w.scratch("fulldisk").join("disk");
    small_disk(&dir, "1m");
    let cfg = config(&dir, "");
    let conf = exim_conf(&w.scratch("fulldisk"));
    let (out, err) = exim_be(&debian_exim(), &conf, &cfg, &dlfunc(&lib_path(), "getmta", &[&old]));
    assert_eq!(out, "enforce", "{err}");
    // Fill the disk: a new policy can no longer be stored.
    let _ = std::fs::write(dir.join("filler"), vec![0u8; 2 << 20]);
    let e = format!(
        "{}|{}|{}",
        dlfunc(&lib_path(), "getmta", &[&new]),
        dlfunc(&lib_path(), "getmta", &[&new, "evil.example"]),
        dlfunc(&lib_path(), "getmta", &[&old])
    );
    let (out, err) = exim_be(&debian_exim(), &conf, &cfg, &e);
    assert_eq!(out, "testing|0|enforce", "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains(&format!("shared database not updated for {new}")), "{err}");
    assert!(!shared(&dir).contains_key(&format!("{new}:mode")));
    // Space again. The failed update is remembered in the state store and made again
    // once due (60 s); a zero recheck interval sends the next call down the cold path
    // at once, where the pending update is made even though nothing changed.
    std::fs::remove_file(dir.join("filler")).unwrap();
    let retry = config(&dir, "recheck_interval = 0");
    let (out, err) = exim_be(&debian_exim(), &conf, &retry, &dlfunc(&lib_path(), "getmta", &[&new]));
    assert_eq!(out, "testing", "{err}");
    assert_eq!(shared(&dir).get(&format!("{new}:mode")).map(String::as_str), Some("testing"), "{err}");
}

#[test]
fn disk_too_small_for_the_databases_still_answers() {
    let w = World::get();
    let d = w.unique("tiny");
    w.sts_domain(&d, "t", &policy("enforce", &[&format!("mx.{d}")], 3600));
    let dir = w.scratch("tinydisk").join("disk");
    small_disk(&dir, "16k");
    let cfg = config(&dir, "");
    let e = format!(
        "{}|{}",
        dlfunc(&lib_path(), "getmta", &[&d]),
        dlfunc(&lib_path(), "getmta", &[&d, &format!("mx.{d}")])
    );
    let (out, err) = exim_be(&debian_exim(), &exim_conf(&w.scratch("tinydisk")), &cfg, &e);
    assert_eq!(out, "enforce|", "{err}");
    assert!(err.contains("answering from live DNS and HTTPS lookups"), "{err}");
}

#[test]
fn without_a_usable_state_store_the_shared_database_still_learns_policies() {
    let w = World::get();
    let d = w.unique("nostate");
    w.sts_domain(&d, "s", &policy("testing", &[&format!("mx.{d}")], 3600));
    let dir = w.scratch("nostate");
    let cfg = dir.join("mta-sts.toml");
    std::fs::write(
        &cfg,
        format!("database = \"{}/shared.mdb\"\nstate = \"/nonexistent/state.mdb\"\n", dir.display()),
    )
    .unwrap();
    let (out, err) = exim_be(&debian_exim(), &exim_conf(&dir), &cfg, &dlfunc(&lib_path(), "getmta", &[&d]));
    assert_eq!(out, "testing", "{err}");
    assert!(err.contains("database /nonexistent/state.mdb"), "{err}");
    assert_eq!(shared(&dir)[&format!("{d}:mode")], "testing");
}

#[test]
fn the_event_export_answers_empty_and_checks_its_arguments() {
    let w = World::get();
    let dir = w.scratch("event-args");
    let lib = lib_with(&config(&dir, ""));
    assert_eq!(lib.call("mtasts_event", &["msg:host:defer", "nothing-cached.test"]), (0, String::new()));
    assert_eq!(
        lib.call("mtasts_event", &["tcp:close", "x.test", "a", "b", "c", "d", "e"]),
        (0, String::new())
    );
    for args in [&["msg:host:defer"][..], &["a", "b", "c", "d", "e", "f", "g", "h"]] {
        assert_eq!(
            lib.call("mtasts_event", args),
            (3, format!("mtasts_event: expected 2 to 7 arguments (EVENT, DOMAIN, ...), got {}", args.len()))
        );
    }
}

#[test]
fn a_full_disk_under_the_databases_never_crashes_exim() {
    // Databases on a disk with no room left at all, not even for a new lock file (liblmdb
    // writes a new lock file through a shared mapping: SIGBUS, had it not been reserved
    // first). Recording a TLS session (inside Exim's transport) and getmta must cost the
    // count or the cache, never Exim's process.
    let w = World::get();
    let d = w.unique("fullrep");
    w.sts_domain(&d, "t", &policy("enforce", &[&format!("mx.{d}")], 3600));
    let base = w.scratch("fullrep");
    let tiny = base.join("disk");
    small_disk(&tiny, "16k");
    let _ = std::fs::write(tiny.join("filler"), vec![0u8; 1 << 20]);
    let lib = lib_path();
    let ehlo = ["smtp:ehlo", &d, &format!("mx.{d}"), "127.0.0.9", "127.0.0.1 4000", "TLS1.3:AES|1", ""];
    for (state, reports) in [(&base, &tiny), (&tiny, &tiny)] {
        let cfg = base.join("mta-sts.toml");
        let toml = format!(
            "database = \"{0}/shared.mdb\"\nstate = \"{0}/state.mdb\"\nreports = \"{1}/reports.mdb\"\n",
            state.display(),
            reports.display()
        );
        std::fs::write(&cfg, toml).unwrap();
        let e = format!(
            "{}|{}|{}",
            dlfunc(&lib, "getmta", &[&d]),
            dlfunc(&lib, "mtasts_event", &ehlo),
            dlfunc(&lib, "getmta", &[&d, &format!("mx.{d}")])
        );
        let (out, err) = exim_be(&debian_exim(), &exim_conf(&base), &cfg, &e);
        assert_eq!(out, "enforce||", "state in {state:?}: {err}");
        assert!(err.contains("No space left on device"), "{err}");
    }
}
