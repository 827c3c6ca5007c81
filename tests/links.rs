//! Root never follows a link planted where the Exim user can write (issue 8 item 0, the
//! class of Exim's 21Nails bugs, CVE-2020-28007). The databases live in a directory that
//! belongs to the Exim user; the library runs as root while Exim routes. Here the test
//! Exim runs as root (`-be`), the "attacker" replaces each database file with a link to a
//! root-owned file, and that file must stay exactly as it was, while the answers stay
//! right: a correct answer from a rebuilt store, never a failed expansion.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A spool directory in `scratch` that belongs to the Exim user, as on Debian, and a
/// configuration with the databases there under their Debian names: (directory, config).
fn exim_spool(scratch: &Path) -> (PathBuf, PathBuf) {
    let (uid, gid) = exim_ids();
    let db = scratch.join("spool");
    std::fs::create_dir(&db).unwrap();
    std::os::unix::fs::chown(&db, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o750)).unwrap();
    let toml = scratch.join("mta-sts.toml");
    let conf = format!("database = \"{0}/mta-sts.mdb\"\nstate = \"{0}/mta-sts-state.mdb\"\n", db.display());
    std::fs::write(&toml, conf).unwrap();
    (db, toml)
}

/// A root-owned mode-0600 file with known content, outside the database directory.
fn victim(path: &Path) -> std::fs::Metadata {
    std::fs::write(path, "root's precious file\n").unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(path, Some(0), Some(0)).unwrap();
    std::fs::metadata(path).unwrap()
}

fn assert_untouched(path: &Path, before: &std::fs::Metadata, what: &str) {
    let now = std::fs::metadata(path).unwrap();
    assert_eq!(std::fs::read_to_string(path).unwrap(), "root's precious file\n", "{what}: content");
    assert_eq!(
        (now.uid(), now.gid(), now.mode()),
        (before.uid(), before.gid(), before.mode()),
        "{what}: owner, mode"
    );
    assert_eq!((now.len(), now.ino()), (before.len(), before.ino()), "{what}: same file, same size");
}

#[test]
fn root_never_follows_a_link_planted_for_any_database_file() {
    assert_eq!(exim_mta_sts_tool::sys::euid(), 0, "this test needs root");
    let w = World::get();
    let (uid, gid) = exim_ids();
    let files = ["mta-sts-state.mdb", "mta-sts-state.mdb-lock", "mta-sts.mdb", "mta-sts.mdb-lock"];
    for (n, file) in files.into_iter().enumerate() {
        for planted_before_first_use in [true, false] {
            let what =
                format!("{file} (planted {})", if planted_before_first_use { "first" } else { "later" });
            let scratch = w.scratch(&format!("links-{n}-{planted_before_first_use}"));
            let (db, toml) = exim_spool(&scratch);
            let conf = exim_conf(&scratch);
            let target = scratch.join("victim");
            let before = victim(&target);

            let d = w.unique("link");
            w.sts_domain(&d, "a", &policy("enforce", &[&format!("mx.{d}")], 3600));
            if !planted_before_first_use {
                let (out, err) = exim_be(&lmdb_exim(), &conf, &toml, &dlfunc(&lib_path(), "getmta", &[&d]));
                assert_eq!(out, "enforce", "{what}: {err}");
                std::fs::remove_file(db.join(file)).unwrap();
            }
            // The attacker (the Exim user owns the directory) plants the link.
            std::os::unix::fs::symlink(&target, db.join(file)).unwrap();

            // A new domain too, so that the cold path writes the shared database.
            let e = w.unique("link-new");
            w.sts_domain(&e, "b", &policy("testing", &[&format!("mx.{e}")], 3600));
            let lib = lib_path();
            let ask = format!(
                "{}|{}|{}|{}",
                dlfunc(&lib, "getmta", &[&d]),
                dlfunc(&lib, "getmta", &[&d, &format!("mx.{d}")]),
                dlfunc(&lib, "getmta", &[&d, "evil.example"]),
                dlfunc(&lib, "getmta", &[&e])
            );
            let (out, err) = exim_be(&lmdb_exim(), &conf, &toml, &ask);
            assert_untouched(&target, &before, &what);
            assert_eq!(out, "enforce||0|testing", "{what}: {err}");
            assert!(err.contains("is a symbolic link to"), "{what}: the log says why: {err}");
            // The store was rebuilt in place of the link, as the directory's owner.
            let planted = std::fs::symlink_metadata(db.join(file)).unwrap();
            assert!(planted.is_file(), "{what}: a new plain file replaced the link");
            assert_eq!((planted.uid(), planted.gid()), (uid, gid), "{what}");
            let shared = exim_mta_sts_tool::shared_db::read_all(&db.join("mta-sts.mdb")).unwrap();
            assert_eq!(shared.get(&format!("{e}:mode")).map(String::as_str), Some("testing"), "{what}");
            assert_untouched(&target, &before, &what);
        }
    }
}

#[test]
fn root_refuses_a_root_owned_directory_that_others_may_write() {
    let w = World::get();
    let d = w.unique("opendir");
    w.sts_domain(&d, "a", &policy("enforce", &[&format!("mx.{d}")], 3600));
    let dir = w.scratch("opendir").join("open");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // A root-owned directory gives no user for the helper (SPEC §9): it is named.
    let toml = config(&dir, "user = \"Debian-exim\"");
    let (out, err) = exim_be(
        &lmdb_exim(),
        &exim_conf(&w.scratch("opendir")),
        &toml,
        &dlfunc(&lib_path(), "getmta", &[&d]),
    );
    // Root opens no store there, but the answer is right (from the helper) and the log
    // says why.
    assert_eq!(out, "enforce", "{err}");
    assert!(err.contains("belongs to root but others may write it"), "{err}");
    let (uid, _) = exim_ids();
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "mta-sts.toml" {
            assert_eq!(
                e.metadata().unwrap().uid(),
                uid,
                "{:?}: only the helper (the Exim user) made files",
                e.path()
            );
        }
    }
}

#[test]
fn admin_tool_as_root_never_follows_a_planted_link_either() {
    let w = World::get();
    let (uid, _) = exim_ids();
    let scratch = w.scratch("links-tool");
    let (db, toml) = exim_spool(&scratch);
    let target = scratch.join("victim");
    let before = victim(&target);
    for file in ["mta-sts-state.mdb-lock", "mta-sts.mdb-lock"] {
        std::os::unix::fs::symlink(&target, db.join(file)).unwrap();
    }
    let d = w.unique("link-tool");
    w.sts_domain(&d, "a", &policy("enforce", &[&format!("mx.{d}")], 3600));
    // prefetch opens (creates) the store and writes the shared database directly.
    let mut tool = std::process::Command::new(env!("CARGO_BIN_EXE_exim-mta-sts"))
        .arg("--config")
        .arg(&toml)
        .args(["prefetch", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut tool.stdin.take().unwrap(), format!("{d}\n").as_bytes()).unwrap();
    let out = tool.wait_with_output().unwrap();
    assert_untouched(&target, &before, "admin tool");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} {err}", String::from_utf8_lossy(&out.stdout));
    let shared = exim_mta_sts_tool::shared_db::read_all(&db.join("mta-sts.mdb")).unwrap();
    assert_eq!(shared.get(&format!("{d}:mode")).map(String::as_str), Some("enforce"));
    for file in ["mta-sts-state.mdb-lock", "mta-sts.mdb-lock"] {
        let m = std::fs::symlink_metadata(db.join(file)).unwrap();
        assert!(m.is_file() && m.uid() == uid, "{file} rebuilt as a plain file of the Exim user");
    }
}
