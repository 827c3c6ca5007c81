//! The library inside real Exims: Debian's exim4-daemon-heavy and the Exim built with the
//! `lmdb` lookup (scripts/setup), expanding `${dlfunc}` calls and `${lookup…lmdb}` with
//! `exim -be`, in the private test world.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;

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
        "mta-sts: configuration file {}: TOML parse error at line 1, column 17: \
         unknown variant `sometimes`, expected `none` or `fail`; answering fail until it is fixed",
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
        "database = \"/nonexistent/dir/shared.mdb\"\nstate = \"/nonexistent/dir/state.mdb\"\n",
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
