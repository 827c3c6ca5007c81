//! A lost or damaged state store must not forget enforce policies (issue 8 item 6): with
//! the policy host unreachable (the attack MTA-STS exists for), the rebuilt store is seeded
//! from the shared database, so an `enforce` domain stays `enforce` inside a real Exim.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;

#[test]
fn rebuilt_state_store_keeps_enforcing_cached_policies() {
    let w = World::get();
    for damage in ["deleted", "garbage"] {
        let d = w.unique(&format!("reseed-{damage}"));
        w.sts_domain(&d, "a", &policy("enforce", &[&format!("mx.{d}")], 3600));
        let dir = w.scratch(&format!("reseed-{damage}"));
        let toml = config(&dir, "");
        let conf = exim_conf(&dir);
        let lib = lib_path();
        let (out, err) = exim_be(&lmdb_exim(), &conf, &toml, &dlfunc(&lib, "getmta", &[&d]));
        assert_eq!(out, "enforce", "{err}");

        // The policy host goes away (and a new id is published: a refetch is due), and the
        // state store is lost.
        std::fs::remove_file(w.policy_dir(&d).join("body")).unwrap();
        w.sts_domain(&d, "b", "");
        std::fs::remove_file(w.policy_dir(&d).join("body")).unwrap();
        match damage {
            "deleted" => {
                std::fs::remove_file(dir.join("state.mdb")).unwrap();
                std::fs::remove_file(dir.join("state.mdb-lock")).unwrap();
            }
            _ => std::fs::write(dir.join("state.mdb"), vec![0x5a; 20_000]).unwrap(),
        }

        let ask = format!(
            "{}|{}|{}|{}",
            dlfunc(&lib, "getmta", &[&d]),
            dlfunc(&lib, "getmta", &[&d, "evil.example"]),
            dlfunc(&lib, "getmta", &[&d, &format!("mx.{d}")]),
            dlfunc(&lib, "getmx", &[&d]),
        );
        let (out, err) = exim_be(&lmdb_exim(), &conf, &toml, &ask);
        assert_eq!(out, format!("enforce|0||mx.{d}"), "{damage}: {err}");
        assert!(err.contains("unexpired policies re-seeded from the shared database"), "{damage}: {err}");
        // And the next process answers from the store (no fetch possible) just the same.
        let (out, err) = exim_be(&lmdb_exim(), &conf, &toml, &dlfunc(&lib, "getmta", &[&d]));
        assert_eq!(out, "enforce", "{damage}: {err}");
    }
}

#[test]
fn admin_tool_reseeds_a_missing_state_store_too() {
    let w = World::get();
    let d = w.unique("reseed-tool");
    w.sts_domain(&d, "a", &policy("testing", &[&format!("mx.{d}")], 3600));
    let dir = w.scratch("reseed-tool");
    let toml = config(&dir, "");
    assert_eq!(lib_with(&toml).getmta(&[&d]), "testing");
    std::fs::remove_file(dir.join("state.mdb")).unwrap();
    std::fs::remove_file(dir.join("state.mdb-lock")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_exim-mta-sts"))
        .args(["--config"])
        .arg(&toml)
        .args(["show", &d])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("testing"), "{text} {}", String::from_utf8_lossy(&out.stderr));
}
