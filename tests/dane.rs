//! DANE precedence (SPEC §5, RFC 8461 §2) with real DNSSEC: signed zones served by nsd
//! behind a validating unbound (scripts/world-dnssec), the library inside real Exims that
//! use that resolver. The signed domains and their policies are set up with the world:
//!
//! | domain | DNSSEC | TLSA | policy |
//! | --- | --- | --- | --- |
//! | dane.sec.test | signed | DANE-EE for its MX | enforce |
//! | nodane.sec.test | signed | none | testing |
//! | unusable.sec.test | signed | PKIX-EE only (unusable for SMTP) | enforce |
//! | bogus.test | MX RRset's signature broken | DANE-EE | enforce |
//! | change.test | signed; the DANE-change test edits it | DANE-EE | enforce |
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;
use std::path::Path;

fn getmta(dir: &Path, cfg: &Path, args: &[&str]) -> (String, String) {
    exim_be_validating(&debian_exim(), &exim_conf(dir), cfg, &dlfunc(&lib_path(), "getmta", args))
}

#[test]
fn signed_domain_with_usable_tlsa_is_dane() {
    let w = World::get();
    let dir = w.scratch("dane");
    let cfg = config(&dir, "");
    let (out, err) = getmta(&dir, &cfg, &["dane.sec.test"]);
    assert_eq!(out, "dane", "{err}");
    assert!(
        err.contains(
            "domain=dane.sec.test answer=dane: DNSSEC-authenticated TLSA records for MX mx.dane.sec.test"
        ),
        "{err}"
    );
    // DANE governs the host too (Exim's DANE checks it), and getmx still shows the
    // cached MTA-STS patterns.
    let (out, err) = getmta(&dir, &cfg, &["dane.sec.test", "elsewhere.example"]);
    assert_eq!(out, "", "{err}");
    let e = dlfunc(&lib_path(), "getmx", &["dane.sec.test"]);
    let (out, err) = exim_be_validating(&debian_exim(), &exim_conf(&dir), &cfg, &e);
    assert_eq!(out, "mx.dane.sec.test", "{err}");
}

#[test]
fn the_same_domain_without_a_validating_resolver_is_not_dane() {
    // Through testworld's plain DNS (no AD bit) the same records give the MTA-STS mode.
    let w = World::get();
    let dir = w.scratch("dane-plain");
    w.zone(
        "dane-plain",
        "dane.sec.test MX 10 mx.dane.sec.test\n_25._tcp.mx.dane.sec.test TLSA 3 0 1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n_mta-sts.dane.sec.test TXT \"v=STSv1; id=d1\"\nmta-sts.dane.sec.test A 127.0.1.1\n",
    );
    let cfg = config(&dir, "");
    let (out, err) =
        exim_be(&debian_exim(), &exim_conf(&dir), &cfg, &dlfunc(&lib_path(), "getmta", &["dane.sec.test"]));
    w.zone("dane-plain", "");
    assert_eq!(out, "enforce", "{err}");
}

#[test]
fn signed_domain_without_tlsa_gets_its_mta_sts_mode() {
    let w = World::get();
    let dir = w.scratch("nodane");
    let (out, err) = getmta(&dir, &config(&dir, ""), &["nodane.sec.test"]);
    assert_eq!(out, "testing", "{err}");
}

#[test]
fn unsigned_domain_with_tlsa_records_is_not_dane() {
    let w = World::get();
    let d = w.unique("unsigned-tlsa");
    w.sts_domain(&d, "u", &policy("enforce", &[&format!("mx.{d}")], 600));
    let mut zone = std::fs::read_to_string(w.dir.join("dns").join(format!("{d}.zone"))).unwrap();
    zone.push_str(&format!(
        "{d} MX 10 mx.{d}\nmx.{d} A 127.0.4.9\n_25._tcp.mx.{d} TLSA 3 1 1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
    ));
    w.zone(&d, &zone);
    let dir = w.scratch("unsigned-tlsa");
    let (out, err) = getmta(&dir, &config(&dir, ""), &[&d]);
    assert_eq!(out, "enforce", "{err}");
}

#[test]
fn unusable_tlsa_records_are_not_dane() {
    let w = World::get();
    let dir = w.scratch("unusable");
    let cfg = config(&dir, "");
    let (out, err) = getmta(&dir, &cfg, &["unusable.sec.test"]);
    assert_eq!(out, "enforce", "{err}");
    // Why: the admin tool's diagnosis, with the same resolver.
    let out = validating(Path::new(env!("CARGO_BIN_EXE_exim-mta-sts")))
        .arg("--config")
        .arg(&cfg)
        .args(["check", "unusable.sec.test", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dane"]["applies"], false, "{v}");
    let why = v["dane"]["why"].as_str().unwrap_or("");
    assert!(why.contains("_25._tcp.mx.unusable.sec.test: no usable TLSA record (RFC 7672 §3.1)"), "{why}");
}

#[test]
fn bogus_signatures_are_not_dane_and_the_log_says_why() {
    let w = World::get();
    let dir = w.scratch("bogus");
    let (out, err) = getmta(&dir, &config(&dir, ""), &["bogus.test"]);
    assert_ne!(out, "dane", "{err}");
    assert_eq!(out, "enforce", "its (validly signed) MTA-STS record still applies: {err}");
    assert!(
        err.contains(
            "domain=bogus.test not dane: DNSSEC validation of bogus.test MX failed (bogus signatures"
        ),
        "{err}"
    );
}

#[test]
fn dane_false_gives_the_mta_sts_mode() {
    let w = World::get();
    let dir = w.scratch("dane-off");
    let (out, err) = getmta(&dir, &config(&dir, "dane = false"), &["dane.sec.test"]);
    assert_eq!(out, "enforce", "{err}");
    assert!(!err.contains("answer=dane"), "{err}");
}

fn resign(zone: &str) {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let st = std::process::Command::new(here.join("scripts/world-dnssec"))
        .args(["resign", zone])
        .env("TESTWORLD", testworld())
        .status()
        .unwrap();
    assert!(st.success(), "resign {zone}");
}

#[test]
fn dane_state_changes_are_picked_up_after_the_ttl() {
    use std::time::{Duration, Instant};
    let w = World::get();
    let zone_file = w.dir.join("dnssec/change.test.zone");
    let original = std::fs::read_to_string(&zone_file).unwrap();
    let dir = w.scratch("dane-change");
    // The test world's resolver does not cache and answers with TTL 0, so the floor
    // `dane_min_ttl` is the TTL the library keeps its DANE answer for.
    let cfg = config(&dir, "dane_min_ttl = 6");
    let ttl = Duration::from_secs(6);
    let start = Instant::now();
    let (out, err) = getmta(&dir, &cfg, &["change.test"]);
    assert_eq!(out, "dane", "{err}");

    // The TLSA record goes (a new serial, re-signed): cached until the TTL has passed.
    let with_serial = |text: &str, serial: u32| text.replacen(" 1 3600 ", &format!(" {serial} 3600 "), 1);
    let without: String =
        original.lines().filter(|l| !l.contains("TLSA")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&zone_file, with_serial(&without, 2)).unwrap();
    resign("change.test");
    let (out, err) = getmta(&dir, &cfg, &["change.test"]);
    assert!(start.elapsed() < ttl, "re-signing took longer than the TTL: {:?}", start.elapsed());
    assert_eq!(out, "dane", "still cached: {err}");
    std::thread::sleep((ttl + Duration::from_millis(500)).saturating_sub(start.elapsed()));
    let (out, err) = getmta(&dir, &cfg, &["change.test"]);
    assert_eq!(out, "enforce", "{err}");
    assert!(err.contains("domain=change.test: DANE no longer applies"), "{err}");

    // And back.
    let again = Instant::now();
    std::fs::write(&zone_file, with_serial(&original, 3)).unwrap();
    resign("change.test");
    std::thread::sleep((ttl + Duration::from_millis(500)).saturating_sub(again.elapsed()));
    let (out, err) = getmta(&dir, &cfg, &["change.test"]);
    assert_eq!(out, "dane", "{err}");
}

#[test]
fn delivery_to_a_dane_domain_goes_through_exims_dane() {
    let w = World::get();
    // mx.dane.sec.test's certificate was made (and its TLSA record signed) with the world;
    // the zone gives it 127.0.4.1.
    let rx = Receiver::start_at(&w, "mx.dane.sec.test", "127.0.4.1", "good");
    let mut tx = Sender::new(&w, "dane-delivery");
    tx.validating = true;
    let log = tx.send("bob@dane.sec.test");
    assert!(
        log.contains(
            "=> bob@dane.sec.test R=mtasts_dane T=remote_smtp_mtasts_dane H=mx.dane.sec.test [127.0.4.1]"
        ),
        "{log}\n{}",
        tx.log()
    );
    assert!(log.contains("CV=dane"), "Exim's DANE verified the certificate: {log}");
    assert_eq!(rx.received(), 1);
}

#[test]
fn check_probes_a_dane_mx_against_its_tlsa_records() {
    // probe.sec.test (scripts/world-dnssec): mx.probe's TLSA record matches its certificate,
    // mx.probebad's matches another host's.
    let w = World::get();
    let _good = Receiver::start_at(&w, "mx.probe.sec.test", "127.0.4.7", "good");
    let _bad = Receiver::start_at(&w, "mx.probebad.sec.test", "127.0.4.8", "good");
    let cfg = config(&w.scratch("dane-probe"), "");
    let out = validating(Path::new(env!("CARGO_BIN_EXE_exim-mta-sts")))
        .arg("--config")
        .arg(&cfg)
        .args(["check", "probe.sec.test", "--json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["dane"]["applies"], true, "{v:#}");
    let hosts = v["mx_hosts"].as_array().unwrap();
    let probe =
        |i: usize| (hosts[i]["host"].as_str().unwrap(), hosts[i]["probe"]["result"].as_str().unwrap());
    assert_eq!(probe(0), ("mx.probe.sec.test", "ok"), "{v:#}");
    assert!(hosts[0]["probe"]["detail"].as_str().unwrap().ends_with("TLSA match"), "{v:#}");
    assert_eq!(probe(1), ("mx.probebad.sec.test", "tlsa-invalid"), "{v:#}");
    assert_eq!(out.status.code(), Some(1), "a problem was found");
    let problems = v["problems"].to_string();
    assert!(problems.contains("MX host mx.probebad.sec.test: tlsa-invalid: "), "{problems}");
    assert!(problems.contains("a DANE delivery there defers"), "{problems}");
}
