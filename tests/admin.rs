//! The admin tool `exim-mta-sts`, run as a program against the real test world and the
//! same databases the library uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;
use exim_mta_sts_tool::cache::{Kind, OwnedEntry, Store};
use exim_mta_sts_tool::policy::Mode;
use std::path::Path;

#[test]
fn check_diagnoses_a_healthy_domain_and_exits_zero() {
    let w = World::get();
    let d = w.unique("chk-ok");
    w.zone(
        &d,
        &format!(
            "_mta-sts.{d} TXT \"v=STSv1; id=ok1\"\nmta-sts.{d} A 127.0.1.1\n_smtp._tls.{d} TXT \"v=TLSRPTv1; rua=mailto:tls@{d}\"\n{d} MX 10 mx1.{d}\n{d} MX 20 mx2.{d}\n"
        ),
    );
    w.serve_policy(&d, &policy("enforce", &[&format!("mx1.{d}"), &format!("*.{d}")], 86400), "");
    let cfg = config(&w.scratch("chk-ok"), "");
    let r = tool(&cfg, &["check", &d], "");
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    for want in [
        "_mta-sts TXT: valid",
        "certificate: valid",
        "status: 200",
        "content-type: text/plain",
        "policy: mode enforce, max_age 86400",
        &format!("TLSRPT: mailto:tls@{d}"),
        &format!("10 mx1.{d}  allowed by the policy"),
        "getmta answers: enforce (policy id ok1 fetched, mode enforce)",
        "no problems found",
    ] {
        assert!(r.out.contains(want), "{want:?} missing:\n{}", r.out);
    }
    // Run by root, the tool left root before touching the network (SPEC §9): the policy
    // host saw the Exim user's socket.
    let clients = std::fs::read_to_string(w.policy_dir(&d).join("clients")).unwrap();
    assert_eq!(clients, format!("uid={}\n", exim_ids().0));
    let r = tool(&cfg, &["check", &d, "--json"], "");
    let v = json(&r.out);
    assert_eq!(v["answer"], "enforce");
    assert_eq!(v["sts_record"]["id"], "ok1");
    assert_eq!(v["fetch"]["status"], 200);
    assert_eq!(v["policy"]["mx"][1], format!("*.{d}"));
    assert_eq!(v["tlsrpt"]["rua"][0], format!("mailto:tls@{d}"));
    assert_eq!(v["mx_hosts"][1]["allowed"], true);
    assert_eq!(v["dane"]["applies"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn check_names_the_problems_and_exits_non_zero() {
    let w = World::get();
    let cfg = config(&w.scratch("chk-bad"), "");
    // An untrusted certificate on the policy host.
    let d = w.unique("chk-cert");
    w.zone(&d, &format!("_mta-sts.{d} TXT \"v=STSv1; id=c\"\nmta-sts.{d} A 127.0.1.1\n"));
    w.serve_policy(&d, &policy("enforce", &[&format!("mx.{d}")], 600), "cert=untrusted");
    let r = tool(&cfg, &["check", &d], "");
    assert_eq!(r.code, 1, "{}", r.out);
    assert!(r.out.contains("certificate: invalid peer certificate: UnknownIssuer"), "{}", r.out);
    assert!(r.out.contains("getmta answers: none"), "{}", r.out);
    assert!(r.out.contains("- policy fetch failed:"), "{}", r.out);
    // An MX the enforce policy does not allow, and two STS records elsewhere.
    let d = w.unique("chk-mx");
    w.zone(
        &d,
        &format!(
            "_mta-sts.{d} TXT \"v=STSv1; id=m\"\nmta-sts.{d} A 127.0.1.1\n{d} MX 10 mx.elsewhere.example\n"
        ),
    );
    w.serve_policy(&d, &policy("enforce", &[&format!("mx.{d}")], 600), "");
    let r = tool(&cfg, &["check", &d, "--json"], "");
    assert_eq!(r.code, 1);
    let v = json(&r.out);
    let problems = v["problems"].to_string();
    assert!(problems.contains("mx.elsewhere.example not allowed"), "{problems}");
    assert!(problems.contains("cannot be delivered"), "{problems}");
    let d = w.unique("chk-two");
    w.zone(&d, &format!("_mta-sts.{d} TXT \"v=STSv1; id=a\"\n_mta-sts.{d} TXT \"v=STSv1; id=b\"\n"));
    let r = tool(&cfg, &["check", &d], "");
    assert_eq!(r.code, 1);
    assert!(r.out.contains("2 STS records: RFC 8461 §3.1 requires exactly one"), "{}", r.out);
}

#[test]
fn prefetch_show_and_list_share_the_cache_with_the_library() {
    let w = World::get();
    let a = w.unique("pf-a");
    let b = w.unique("pf-b");
    w.sts_domain(&a, "pa", &policy("testing", &[&format!("mx.{a}")], 3600));
    let dir = w.scratch("prefetch");
    let cfg = config(&dir, "");
    let r = tool(&cfg, &["prefetch", "-"], &format!("# recipients\n{a}\n\n{b}\nnot a domain\n"));
    assert_eq!(r.code, 1, "one bad line: {}{}", r.out, r.err);
    assert!(r.out.contains(&format!("{a}: testing")) && r.out.contains(&format!("{b}: none")), "{}", r.out);
    assert!(r.out.contains("prefetch: 2 looked up, 0 already cached, 1 not domain names"), "{}", r.out);
    assert!(r.err.contains("\"not a domain\": not a domain name"), "{}", r.err);
    // Again, from a file: both are cached now, and nothing is fetched.
    let list = dir.join("domains");
    std::fs::write(&list, format!("{a}\n{b}\n")).unwrap();
    let r = tool(&cfg, &["prefetch", list.to_str().unwrap()], "");
    assert!(r.out.contains("0 looked up, 2 already cached"), "{}", r.out);
    assert_eq!(w.requests(&a), 1);

    // The library (here inside Exim) answers from what prefetch stored: no new fetch.
    let (out, err) = exim_be(&debian_exim(), &exim_conf(&dir), &cfg, &dlfunc(&lib_path(), "getmta", &[&a]));
    assert_eq!(out, "testing", "{err}");
    assert_eq!(w.requests(&a), 1);
    assert_eq!(shared(&dir)[&format!("{a}:mode")], "testing");

    let r = tool(&cfg, &["show", &a], "");
    assert_eq!(r.code, 0);
    for want in [
        "state:       policy (mode testing)",
        "getmta now:  testing",
        &format!("mx:          mx.{a}"),
        "id:          pa",
        "expires:     in ",
        "last used:   ",
    ] {
        assert!(r.out.contains(want), "{want:?} missing:\n{}", r.out);
    }
    let v = json(&tool(&cfg, &["show", &a, "--json"], "").out);
    let left = v["expires_in"].as_i64().unwrap();
    assert!((3500..=3600).contains(&left), "max_age 3600 from the fetch: {v}");
    let v = json(&tool(&cfg, &["show", &b, "--json"], "").out);
    assert_eq!((v["state"].as_str(), v["getmta_now"].as_str()), (Some("no-mta-sts"), Some("none")));
    let v = json(&tool(&cfg, &["list", "--json"], "").out);
    let domains: Vec<&str> = v.as_array().unwrap().iter().map(|e| e["domain"].as_str().unwrap()).collect();
    assert_eq!(domains, [a.as_str(), b.as_str()]);
    let r = tool(&cfg, &["list"], "");
    assert!(r.out.lines().next().unwrap().starts_with("DOMAIN"), "{}", r.out);
    assert!(r.out.contains("2 domain(s)"));
    let r = tool(&cfg, &["show", "unknown.example"], "");
    assert_eq!(
        (r.code, r.err.trim()),
        (1, "exim-mta-sts: unknown.example is not cached (try: exim-mta-sts check unknown.example)")
    );
}

#[test]
fn refresh_fetches_recently_used_policies_and_keeps_them_when_it_fails() {
    let w = World::get();
    let changed = w.unique("rf-changed");
    let broken = w.unique("rf-broken");
    let idle = w.unique("rf-idle");
    let busy = w.unique("rf-busy");
    for d in [&changed, &broken, &idle, &busy] {
        w.sts_domain(d, "r1", &policy("enforce", &[&format!("mx.{d}")], 86400));
    }
    let dir = w.scratch("refresh");
    let cfg = config(&dir, "");
    let r = tool(&cfg, &["prefetch", "-"], &format!("{changed}\n{broken}\n{busy}\n"));
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    // A policy not used for 40 days (written as the library would have).
    let now = exim_mta_sts_tool::clock::now();
    let mut old = OwnedEntry::bare(Kind::Policy, now + 86400, now - 40 * 86400);
    (old.mode, old.id, old.mx, old.fetched, old.used) =
        (Mode::Enforce, "r1".into(), format!("mx.{idle}"), now - 40 * 86400, now - 40 * 86400);
    // Written from this test process, which never loads the library (and opens the file
    // once: LMDB forbids two environments on one file in one process).
    let store = Store::open(&dir.join("state.mdb")).unwrap();
    store.put(&idle, &old.view()).unwrap();
    // Another process (this test) is fetching `busy` right now.
    assert!(store.take_lease(&busy, now, now + 600).unwrap());

    w.serve_policy(&changed, &policy("enforce", &[&format!("mx2.{changed}")], 86400), "");
    w.serve_policy(&broken, "down", "status=503");
    let r = tool(&cfg, &["refresh", "--min-age", "0", "--jobs", "2"], "");
    assert_eq!(r.code, 1, "a refresh failed: {}{}", r.out, r.err);
    assert!(r.out.contains("refreshed 3 policies: 0 unchanged, 1 changed, 1 failed (cached policy kept), 1 being fetched by Exim; 1 skipped"), "{}", r.out);
    assert!(
        r.err.contains(&format!("{changed}: policy changed: id r1 mode enforce mx mx2.{changed}")),
        "{}",
        r.err
    );
    assert!(
        r.err.contains(&format!("{broken}: refresh failed, cached policy kept"))
            && r.err.contains("HTTP status 503"),
        "{}",
        r.err
    );
    assert_eq!(w.requests(&idle), 0, "not used recently: not fetched");
    assert_eq!(w.requests(&busy), 1, "only the prefetch");
    assert_eq!(shared(&dir)[&format!("{changed}:mx")], format!("mx2.{changed}"));
    assert_eq!(shared(&dir)[&format!("{broken}:mx")], format!("mx.{broken}"), "kept");
    let v = json(&tool(&cfg, &["show", &broken, "--json"], "").out);
    assert_eq!(v["getmta_now"], "enforce");
    assert!(v["note"].as_str().unwrap().contains("503"), "{v}");
    // The cause is kept typed, with its RFC 8460 result type.
    assert_eq!(
        (v["cause"].as_str(), v["result_type"].as_str()),
        (Some("fetch-status"), Some("sts-policy-fetch-error")),
        "{v}"
    );
    let text = tool(&cfg, &["show", &broken], "").out;
    assert!(text.contains("last problem: fetch-status (TLSRPT: sts-policy-fetch-error)"), "{text}");
}

#[test]
fn run_by_root_without_a_user_to_become_the_tool_refuses() {
    let w = World::get();
    let dir = w.scratch("rootdir").join("root-owned");
    std::fs::create_dir(&dir).unwrap();
    let r = tool(&config(&dir, ""), &["check", "example.test"], "");
    assert_eq!(r.code, 2, "{}{}", r.out, r.err);
    assert!(r.err.contains("refusing to run as root: no user to run the cold path as"), "{}", r.err);
    assert!(r.err.contains("belongs to root"), "{}", r.err);
}

#[test]
fn purge_drops_expired_entries_and_forget_drops_one_domain() {
    let w = World::get();
    let live = w.unique("pg-live");
    let gone = w.unique("pg-gone");
    w.sts_domain(&live, "l", &policy("enforce", &[&format!("mx.{live}")], 86400));
    w.sts_domain(&gone, "g", &policy("enforce", &[&format!("mx.{gone}")], 1));
    let dir = w.scratch("purge");
    let cfg = config(&dir, "");
    assert_eq!(tool(&cfg, &["prefetch", "-"], &format!("{live}\n{gone}\n")).code, 0);
    assert!(shared(&dir).contains_key(&format!("{gone}:mode")));
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = tool(&cfg, &["purge"], "");
    assert_eq!(r.code, 0);
    assert!(
        r.out.contains(&format!("dropped {gone}")) && r.out.contains("purge: 1 expired entry dropped"),
        "{}",
        r.out
    );
    let keys = shared(&dir);
    assert!(!keys.keys().any(|k| k.starts_with(&gone)), "{keys:?}");
    assert!(keys.contains_key(&format!("{live}:mode")));

    let r = tool(&cfg, &["forget", &live.to_uppercase()], "");
    assert_eq!((r.code, r.out.trim()), (0, format!("forgot {live}").as_str()));
    assert!(shared(&dir).is_empty());
    let r = tool(&cfg, &["forget", &live], "");
    assert_eq!((r.code, r.err.trim()), (1, format!("exim-mta-sts: {live} is not cached").as_str()));
}

#[test]
fn files_the_tool_creates_as_root_belong_to_the_exim_user() {
    use std::os::unix::fs::MetadataExt;
    let w = World::get();
    let d = w.unique("own");
    w.sts_domain(&d, "o", &policy("enforce", &[&format!("mx.{d}")], 600));
    let dir = w.scratch("own").join("spool");
    std::fs::create_dir_all(&dir).unwrap();
    let (uid, gid) = exim_ids();
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    let cfg = config(&dir, "");
    assert_eq!(tool(&cfg, &["prefetch", "-"], &format!("{d}\n")).code, 0);
    for f in ["state.mdb", "state.mdb-lock", "shared.mdb", "shared.mdb-lock"] {
        assert_eq!(std::fs::metadata(dir.join(f)).unwrap().uid(), uid, "{f}");
    }
}

#[test]
fn errors_are_clear() {
    let w = World::get();
    let dir = w.scratch("errors");
    // A broken configuration file: usage error, naming the file.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "fetch_timeout = \"soon\"\n").unwrap();
    let r = tool(&bad, &["list"], "");
    assert_eq!(r.code, 2);
    assert!(r.err.starts_with(&format!("exim-mta-sts: configuration file {}: ", bad.display())), "{}", r.err);
    // Nothing cached yet.
    let cfg = config(&dir, "");
    let r = tool(&cfg, &["list"], "");
    assert_eq!(r.code, 1);
    assert!(r.err.contains("no state database at") && r.err.contains("nothing is cached"), "{}", r.err);
    // Not a domain.
    let r = tool(&cfg, &["check", "exa mple"], "");
    assert_eq!((r.code, r.err.trim()), (2, "exim-mta-sts: \"exa mple\" is not a domain name"));
    // A database the user may not read.
    assert_eq!(tool(&cfg, &["prefetch", "-"], "example.test\n").code, 0);
    std::fs::set_permissions(dir.join("state.mdb"), std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_exim-mta-sts"))
        .arg("--config")
        .arg(&cfg)
        .arg("list")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains(&format!("database {}", dir.join("state.mdb").display()))
            && err.contains("Permission denied"),
        "{err}"
    );
}

#[test]
fn help_reads_well() {
    let cfg = Path::new("/nonexistent/mta-sts.toml");
    let r = tool(cfg, &["--help"], "");
    assert_eq!(r.code, 0);
    for cmd in ["check", "show", "list", "refresh", "prefetch", "purge", "forget"] {
        assert!(r.out.lines().any(|l| l.trim_start().starts_with(cmd)), "{cmd} missing:\n{}", r.out);
    }
    assert!(r.out.contains("Exit status: 0 when all is well"), "{}", r.out);
    let r = tool(cfg, &["refresh", "--help"], "");
    for opt in
        ["--used-within <DAYS>", "--min-age <HOURS>", "--jobs <JOBS>", "--jitter <SECONDS>", "[default: 30]"]
    {
        assert!(r.out.contains(opt), "{opt} missing:\n{}", r.out);
    }
}

#[test]
fn shipped_timer_and_cron_line_run_the_refresh() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let service = std::fs::read_to_string(here.join("exim-mta-sts-refresh.service")).unwrap();
    assert!(service.lines().any(|l| l.starts_with("ExecStart=") && l.contains("exim-mta-sts refresh")));
    assert!(service.contains("User=Debian-exim"));
    let timer = std::fs::read_to_string(here.join("exim-mta-sts-refresh.timer")).unwrap();
    assert!(timer.contains("OnCalendar=daily"));
    let cron = std::fs::read_to_string(here.join("exim-mta-sts.cron")).unwrap();
    let line = cron.lines().find(|l| !l.starts_with('#') && !l.trim().is_empty()).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[5], "Debian-exim");
    assert!(line.contains("|| /usr/sbin/exim-mta-sts refresh --jitter 600"), "{line}");
    // Without systemd only: with it, the package's timers run the same commands.
    assert!(line.contains("[ -d /run/systemd/system ] ||"), "{line}");
    // The options they pass exist.
    let r = tool(Path::new("/nonexistent"), &["refresh", "--jitter", "600", "--help"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    // And the daily TLS reports: a timer after midnight UTC and a cron line.
    let service = std::fs::read_to_string(here.join("exim-mta-sts-report.service")).unwrap();
    assert!(service.lines().any(|l| l == "ExecStart=/usr/sbin/exim-mta-sts report send"), "{service}");
    assert!(service.contains("User=Debian-exim"));
    let timer = std::fs::read_to_string(here.join("exim-mta-sts-report.timer")).unwrap();
    assert!(
        timer.contains("OnCalendar=*-*-* *:15:00 UTC") && timer.contains("RandomizedDelaySec="),
        "{timer}"
    );
    assert!(cron.lines().any(
        |l| l.starts_with("23 * * * * Debian-exim ") && l.contains("/usr/sbin/exim-mta-sts report send;")
    ));
    let r = tool(Path::new("/nonexistent"), &["report", "send", "--help"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    // The figures for node_exporter: every 5 minutes, and after each refresh; root only
    // writes the file (tests/stats.rs).
    let textfile = "stats --textfile /var/lib/prometheus/node-exporter/exim-mta-sts.prom";
    let service = std::fs::read_to_string(here.join("exim-mta-sts-stats.service")).unwrap();
    assert!(
        service.lines().any(|l| l.starts_with("ExecStart=/usr/sbin/exim-mta-sts ") && l.ends_with(textfile))
    );
    let timer = std::fs::read_to_string(here.join("exim-mta-sts-stats.timer")).unwrap();
    assert!(timer.contains("OnCalendar=*:0/5"), "{timer}");
    let refresh = std::fs::read_to_string(here.join("exim-mta-sts-refresh.service")).unwrap();
    assert!(
        refresh
            .lines()
            .any(|l| l.starts_with("ExecStartPost=-+/usr/sbin/exim-mta-sts ") && l.ends_with(textfile))
    );
    assert!(cron.lines().any(|l| l.starts_with("*/5 * * * * root ") && l.ends_with(textfile)));
    let r = tool(Path::new("/nonexistent"), &["stats", "--textfile", "/x", "--help"], "");
    assert_eq!(r.code, 0, "{}", r.err);
    // systemd itself finds nothing wrong in any unit (unknown keys, bad prefixes such as
    // `-+`, a command that is not there: the test world has the tool at /usr/sbin).
    for unit in std::fs::read_dir(&here).unwrap().map(|e| e.unwrap().path()) {
        if !unit.extension().is_some_and(|x| x == "service" || x == "timer") {
            continue;
        }
        let o = std::process::Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&unit)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success() && said.trim().is_empty(), "{unit:?}: {said}");
    }
}

#[test]
fn refresh_shows_progress_on_a_terminal() {
    let w = World::get();
    let d = w.unique("rf-tty");
    w.sts_domain(&d, "t", &policy("enforce", &[&format!("mx.{d}")], 86400));
    let dir = w.scratch("refresh-tty");
    let cfg = config(&dir, "");
    assert_eq!(tool(&cfg, &["prefetch", "-"], &format!("{d}\n")).code, 0);
    // `script` runs the tool on a pseudo-terminal and records what it drew there.
    let cmd =
        format!("{} --config {} refresh --min-age 0", env!("CARGO_BIN_EXE_exim-mta-sts"), cfg.display());
    let out = std::process::Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("0/1") || screen.contains("1/1"), "no progress bar drawn: {screen:?}");
    assert!(screen.contains("refreshed 1 policies: 1 unchanged"), "{screen:?}");
}
