//! End to end: a real Exim configured with the shipped `exim-config/` files delivers real
//! messages to real SMTP receivers (Exim daemons on their own loopback addresses, with
//! good, wrong-name, untrusted or no certificates), in the private test world. Each test
//! asserts on the receivers' mailboxes and connection logs and on the sender's main log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;

/// Publishes `domain` with MX records for `mxs` (preference, receiver) and, when
/// `policy` is given, an `_mta-sts` record and policy host.
fn publish(w: &World, domain: &str, mxs: &[(u16, &Receiver)], policy: Option<&str>) {
    let mut zone = String::new();
    for (pref, rx) in mxs {
        zone.push_str(&format!("{domain} MX {pref} {}\n", rx.name));
        zone.push_str(&rx.a_record());
    }
    if let Some(p) = policy {
        zone.push_str(&format!("_mta-sts.{domain} TXT \"v=STSv1; id=1\"\nmta-sts.{domain} A 127.0.1.1\n"));
        w.serve_policy(domain, p, "");
    }
    w.zone(domain, &zone);
}

fn delivered(log: &str, router: &str, host: &str) -> bool {
    log.lines().any(|l| {
        l.contains(" => ") && l.contains(&format!("R={router} ")) && l.contains(&format!("H={host} "))
    })
}

fn deferred(log: &str) -> bool {
    log.lines().any(|l| l.contains(" == ")) && !log.contains(" => ")
}

#[test]
fn enforce_listed_mx_with_valid_certificate_is_delivered() {
    let w = World::get();
    let d = w.unique("e2e-ok");
    let rx = Receiver::start(&w, &format!("mx1.{d}"), "good");
    publish(&w, &d, &[(10, &rx)], Some(&policy("enforce", &[&format!("mx1.{d}")], 3600)));
    let tx = Sender::new(&w, "e2e-ok");
    let log = tx.send(&format!("bob@{d}"));
    assert!(delivered(&log, "mtasts_enforce", &rx.name), "{log}");
    assert!(
        log.contains("T=remote_smtp_mtasts_enforce") && log.contains("X=TLS") && log.contains("CV=yes"),
        "{log}"
    );
    assert_eq!(rx.received(), 1);

    // The shipped lmdb-lookup example (exim-config/acl.conf), in the lmdb-capable Exim
    // with the same configuration, reads what the library stored during that delivery.
    let e = format!("${{acl{{mta_sts_cached}}{{{d}}}}}|${{acl{{mta_sts_cached}}{{nothing.{d}}}}}");
    let (out, err) = exim_be(&lmdb_exim(), &tx.conf, &tx.toml, &e);
    let (cached, nothing) = out.split_once('|').unwrap_or_else(|| panic!("{out} {err}"));
    assert!(cached.starts_with(&format!("mode=enforce mx=mx1.{d} expires=")), "{out} {err}");
    assert!(cached.ends_with(" report=-"), "{out}");
    assert_eq!(nothing, "mode=none");
}

#[test]
fn enforce_refuses_certificates_for_the_wrong_name_or_from_an_untrusted_ca() {
    let w = World::get();
    for tls in ["wrong-name", "untrusted", "expired"] {
        let d = w.unique(&format!("e2e-{tls}"));
        let rx = Receiver::start(&w, &format!("mx1.{d}"), tls);
        publish(&w, &d, &[(10, &rx)], Some(&policy("enforce", &[&format!("mx1.{d}")], 3600)));
        let tx = Sender::new(&w, &format!("e2e-{tls}"));
        let log = tx.send(&format!("bob@{d}"));
        assert!(deferred(&log), "{tls}: {log}");
        assert!(log.contains("R=mtasts_enforce T=remote_smtp_mtasts_enforce"), "{tls}: {log}");
        assert_eq!(rx.received(), 0, "{tls}: nothing may be received");
        assert!(rx.connections() >= 1, "{tls}: the MX was tried");
    }
}

#[test]
fn enforce_never_falls_back_to_clear_text() {
    let w = World::get();
    let d = w.unique("e2e-notls");
    let rx = Receiver::start(&w, &format!("mx1.{d}"), "none");
    publish(&w, &d, &[(10, &rx)], Some(&policy("enforce", &[&format!("mx1.{d}")], 3600)));
    let tx = Sender::new(&w, "e2e-notls");
    let log = tx.send(&format!("bob@{d}"));
    assert!(deferred(&log), "{log}");
    assert_eq!(rx.received(), 0);
    assert!(!rx.log().contains("<="), "no message may be received in clear: {}", rx.log());
}

#[test]
fn enforce_does_not_even_connect_to_an_mx_the_policy_does_not_list() {
    let w = World::get();
    let d = w.unique("e2e-unlisted");
    let rx = Receiver::start(&w, &format!("mx1.{d}"), "good");
    publish(&w, &d, &[(10, &rx)], Some(&policy("enforce", &[&format!("other.{d}")], 3600)));
    let tx = Sender::new(&w, "e2e-unlisted");
    let log = tx.send(&format!("bob@{d}"));
    assert!(deferred(&log), "{log}");
    assert_eq!(rx.connections(), 0, "no TCP connection: {}", rx.log());
    assert!(
        tx.log().contains(&format!("domain={d} host=mx1.{d} refused: not an mx of the policy")),
        "{}",
        tx.log()
    );
}

#[test]
fn enforce_with_two_mxes_delivers_through_the_listed_one_only() {
    let w = World::get();
    let d = w.unique("e2e-two");
    let unlisted = Receiver::start(&w, &format!("mx1.{d}"), "good");
    let listed = Receiver::start(&w, &format!("mx2.{d}"), "good");
    // The unlisted MX is the preferred one.
    publish(
        &w,
        &d,
        &[(10, &unlisted), (20, &listed)],
        Some(&policy("enforce", &[&format!("mx2.{d}")], 3600)),
    );
    let tx = Sender::new(&w, "e2e-two");
    let log = tx.send(&format!("bob@{d}"));
    assert!(delivered(&log, "mtasts_enforce", &listed.name), "{log}");
    assert_eq!((unlisted.connections(), unlisted.received()), (0, 0));
    assert_eq!(listed.received(), 1);
}

#[test]
fn testing_mode_delivers_despite_a_bad_certificate() {
    let w = World::get();
    let d = w.unique("e2e-testing");
    let rx = Receiver::start(&w, &format!("mx1.{d}"), "untrusted");
    publish(&w, &d, &[(10, &rx)], Some(&policy("testing", &[&format!("mx1.{d}")], 3600)));
    let tx = Sender::new(&w, "e2e-testing");
    let log = tx.send(&format!("bob@{d}"));
    assert!(delivered(&log, "mtasts_testing", &rx.name), "{log}");
    assert!(log.contains("CV=no"), "{log}");
    assert_eq!(rx.received(), 1);
}

#[test]
fn no_mta_sts_and_mode_none_are_delivered_as_usual() {
    let w = World::get();
    let plain = w.unique("e2e-plain");
    let optout = w.unique("e2e-none");
    let rx1 = Receiver::start(&w, &format!("mx.{plain}"), "none");
    let rx2 = Receiver::start(&w, &format!("mx.{optout}"), "untrusted");
    publish(&w, &plain, &[(10, &rx1)], None);
    publish(&w, &optout, &[(10, &rx2)], Some("version: STSv1\nmode: none\nmax_age: 3600\n"));
    let tx = Sender::new(&w, "e2e-none");
    let log = tx.send(&format!("bob@{plain}"));
    assert!(delivered(&log, "dnslookup", &rx1.name), "{log}");
    let log = tx.send(&format!("bob@{optout}"));
    assert!(delivered(&log, "dnslookup", &rx2.name), "{log}");
    assert_eq!((rx1.received(), rx2.received()), (1, 1));
}

#[test]
fn policy_fetch_failure_delivers_as_none_by_default_and_defers_with_fetch_failure_fail() {
    let w = World::get();
    let d = w.unique("e2e-fetchfail");
    let rx = Receiver::start(&w, &format!("mx1.{d}"), "good");
    publish(&w, &d, &[(10, &rx)], Some(&policy("enforce", &[&format!("mx1.{d}")], 3600)));
    w.serve_policy(&d, "broken", "status=500");
    let tx = Sender::new(&w, "e2e-fetchfail");
    let log = tx.send(&format!("bob@{d}"));
    assert!(delivered(&log, "dnslookup", &rx.name), "{log}");
    assert!(
        tx.log().contains(&format!(
            "domain={d} answer=none result=sts-policy-fetch-error: policy fetch refused (HTTP status): id=1: "
        )),
        "{}",
        tx.log()
    );

    let strict = Sender::new(&w, "e2e-fetchfail-strict");
    strict.mta_sts_config("fetch_failure = \"fail\"\n");
    let log = strict.send(&format!("carol@{d}"));
    assert!(
        log.contains(&format!("== carol@{d} R=mtasts_fail defer (-1): MTA-STS policy state unknown")),
        "{log}"
    );
    assert_eq!(rx.received(), 1, "only the first message");
}

#[test]
fn temporary_dns_failure_or_broken_config_defers_and_sends_nothing() {
    let w = World::get();
    let d = w.unique("e2e-dnsfail");
    let rx = Receiver::start(&w, &format!("mx1.{d}"), "good");
    w.zone(&d, &format!("{d} MX 10 {}\n{}_mta-sts.{d} SERVFAIL\n", rx.name, rx.a_record()));
    let tx = Sender::new(&w, "e2e-dnsfail");
    let log = tx.send(&format!("bob@{d}"));
    assert!(
        log.contains(&format!("== bob@{d} R=mtasts_fail defer (-1): MTA-STS policy state unknown")),
        "{log}"
    );
    assert!(
        tx.log().contains(&format!("mta-sts: domain={d} answer=fail: temporary DNS failure")),
        "{}",
        tx.log()
    );

    let e = w.unique("e2e-badconf");
    publish(&w, &e, &[(10, &rx)], None);
    let broken = Sender::new(&w, "e2e-badconf");
    broken.mta_sts_config("this is not toml\n");
    let log = broken.send(&format!("bob@{e}"));
    assert!(log.contains(&format!("== bob@{e} R=mtasts_fail defer (-1)")), "{log}");
    assert!(
        broken.log().contains(&format!(
            "configuration unusable: configuration file {}: TOML parse error",
            broken.toml.display()
        )),
        "{}",
        broken.log()
    );
    // An administrator must fix it: it is in the panic log too.
    let paniclog = std::fs::read_to_string(broken.dir.join("log/paniclog")).unwrap_or_default();
    assert!(
        paniclog.contains(&format!("configuration unusable: configuration file {}: ", broken.toml.display())),
        "{paniclog}"
    );
    assert_eq!((rx.connections(), rx.received()), (0, 0), "nothing sent");
}

#[test]
fn cached_enforce_policy_stays_in_force_when_the_policy_host_goes_down() {
    let w = World::get();
    let d = w.unique("e2e-cached");
    let listed = Receiver::start(&w, &format!("mx1.{d}"), "good");
    publish(&w, &d, &[(10, &listed)], Some(&policy("enforce", &[&format!("mx1.{d}")], 3600)));
    let tx = Sender::new(&w, "e2e-cached");
    tx.mta_sts_config("recheck_interval = 0\n");
    let log = tx.send(&format!("bob@{d}"));
    assert!(delivered(&log, "mtasts_enforce", &listed.name), "{log}");

    // Now the policy host is gone, a new id is published, and an attacker's preferred MX
    // appears: the cached enforce policy must keep mail away from it.
    let evil = Receiver::start(&w, &format!("evil.{d}"), "good");
    std::fs::remove_file(w.policy_dir(&d).join("body")).unwrap();
    w.zone(
        &d,
        &format!(
            "{d} MX 5 {}\n{}{d} MX 10 {}\n{}_mta-sts.{d} TXT \"v=STSv1; id=2\"\n",
            evil.name,
            evil.a_record(),
            listed.name,
            listed.a_record()
        ),
    );
    let log = tx.send(&format!("carol@{d}"));
    assert!(delivered(&log, "mtasts_enforce", &listed.name), "{log}");
    assert_eq!(evil.connections(), 0, "{}", evil.log());
    assert_eq!(listed.received(), 2);
}

#[test]
fn databases_created_by_root_stay_writable_by_the_exim_user() {
    use std::os::unix::fs::MetadataExt;
    let w = World::get();
    let first = w.unique("perm-root");
    let second = w.unique("perm-exim");
    let rx = Receiver::start(&w, &format!("mx.{second}"), "good");
    w.sts_domain(&first, "p", &policy("enforce", &[&format!("mx.{first}")], 3600));
    publish(&w, &second, &[(10, &rx)], Some(&policy("enforce", &[&format!("mx.{second}")], 3600)));
    let tx = Sender::new(&w, "perm");
    let db = tx.dir.join("db");
    let (exim_uid, exim_gid) = std::fs::metadata(&db).map(|m| (m.uid(), m.gid())).unwrap();
    assert_ne!(exim_uid, 0, "testworld gives the database directory to the Exim user");

    // Root (Exim routes as root; here `exim -be` as root) creates both databases...
    let (out, err) = exim_be(
        &debian_exim(),
        &exim_conf(&w.scratch("perm-be")),
        &tx.toml,
        &dlfunc(&lib_path(), "getmta", &[&first]),
    );
    assert_eq!(out, "enforce", "{err}");
    for f in ["mta-sts-state.mdb", "mta-sts-state.mdb-lock", "mta-sts.mdb", "mta-sts.mdb-lock"] {
        let m = std::fs::metadata(db.join(f)).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o777), (exim_uid, exim_gid, 0o660), "{f}");
    }
    // ...and Exim running as Debian-exim (it drops privilege under -C) routes and delivers
    // through the shipped configuration for a new domain: it writes both databases.
    let log = tx.send(&format!("bob@{second}"));
    assert!(delivered(&log, "mtasts_enforce", &rx.name), "{log}");
    assert!(
        tx.log().contains(&format!("mta-sts: domain={second} mode=enforce source=fetch")),
        "{}",
        tx.log()
    );
    assert!(!tx.log().contains("cannot") && !tx.log().contains("unusable"), "{}", tx.log());
    let shared = exim_mta_sts_tool::shared_db::read_all(&db.join("mta-sts.mdb")).unwrap();
    assert_eq!(shared[&format!("{second}:mode")], "enforce");
}

#[test]
fn unloadable_library_defers_mail_until_it_is_back() {
    // SPEC §2: with the library missing, unreadable or not a shared object, every
    // ${dlfunc} fails to expand. The shipped routers must defer (never skip to dnslookup
    // and deliver in clear); once the library is back, a queue run delivers over TLS.
    let w = World::get();
    let scratch = w.scratch("e2e-nolib");
    let unreadable = scratch.join("unreadable.so");
    std::fs::copy(lib_path(), &unreadable).unwrap();
    std::fs::set_permissions(&unreadable, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let not_elf = scratch.join("text.so");
    std::fs::write(&not_elf, "this is not a shared object\n".repeat(100)).unwrap();
    let broken = [
        (scratch.join("missing.so"), "cannot open shared object file"),
        (unreadable, "ermission denied"),
        (not_elf, "invalid ELF header"),
    ];
    for (lib, why) in &broken {
        let d = w.unique("e2e-nolib");
        let rx = Receiver::start(&w, &format!("mx1.{d}"), "good");
        publish(&w, &d, &[(10, &rx)], Some(&policy("enforce", &[&format!("mx1.{d}")], 3600)));
        let tx = Sender::new(&w, "e2e-nolib");
        tx.set_lib(lib);
        let log = tx.send(&format!("bob@{d}"));
        assert!(
            log.contains(&format!("== bob@{d} R=mtasts_fail defer (-1): failed to expand")),
            "{lib:?}: {log}"
        );
        assert!(log.contains(why), "{lib:?}: the main log says why: {log}");
        assert_eq!((rx.connections(), rx.received()), (0, 0), "{lib:?}: nothing sent");
        assert_eq!(tx.queued(), 1, "{lib:?}: the message stays in the queue");

        tx.set_lib(&lib_path());
        tx.queue_run();
        assert!(delivered(&tx.log(), "mtasts_enforce", &rx.name), "{lib:?}: {}", tx.log());
        assert!(tx.log().contains("X=TLS"), "{}", tx.log());
        assert_eq!((rx.received_after_waiting_for(1), tx.queued()), (1, 0), "{lib:?}: {}", tx.log());
    }
}

#[test]
fn a_domain_that_moved_its_mx_is_delivered_at_the_next_queue_run_after_a_recheck() {
    // RFC 8461 §5.1: after a failure under enforce, check for a new policy before giving up,
    // not only when recheck_interval (an hour) has passed.
    let w = World::get();
    let d = w.unique("e2e-moved");
    let old = Receiver::start(&w, &format!("mx1.{d}"), "good");
    let new = Receiver::start(&w, &format!("mx2.{d}"), "good");
    publish(&w, &d, &[(10, &old)], Some(&policy("enforce", &[&old.name], 86400)));
    let tx = Sender::new(&w, "e2e-moved");
    assert!(delivered(&tx.send(&format!("a@{d}")), "mtasts_enforce", &old.name));
    // The domain moves to mx2 and publishes a new policy under a new id.
    w.zone(
        &d,
        &format!(
            "{d} MX 10 {}\n{}_mta-sts.{d} TXT \"v=STSv1; id=2\"\nmta-sts.{d} A 127.0.1.1\n",
            new.name,
            new.a_record()
        ),
    );
    w.serve_policy(&d, &policy("enforce", &[&new.name], 86400), "");
    // The cached policy (id 1, fresh) refuses mx2: the attempt defers, nothing is sent.
    let log = tx.send(&format!("b@{d}"));
    assert!(log.contains(&format!("== b@{d} ")), "{log}");
    assert_eq!((new.connections(), tx.queued()), (0, 1));
    assert!(
        tx.log().contains(&format!(
            "mta-sts: domain={d}: a delivery failed under the enforce policy; its _mta-sts id is re-checked"
        )),
        "{}",
        tx.log()
    );
    // The next queue run re-checks the id, fetches the new policy and delivers to mx2.
    tx.queue_run();
    assert_eq!(tx.queued(), 0, "{}", tx.log());
    assert!(delivered(&tx.log(), "mtasts_enforce", &new.name), "{}", tx.log());
    assert_eq!(new.received_after_waiting_for(1), 1);
    assert_eq!(w.requests(&d), 2, "one fetch per policy id");
}
