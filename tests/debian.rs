//! Debian's split configuration (issue 8 item 2): the shipped snippets installed where
//! exim-config/README.md says, turned into a configuration by Debian's real
//! `update-exim4.conf` (package exim4-config), and routed by Debian's stock Exim (`-bt`).
//! MTA-STS must route only where Exim itself looks up the recipient's MX (configtype
//! internet), and never bypass a smarthost or a hubbed_hosts entry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;
use std::path::{Path, PathBuf};

/// Where exim-config/README.md says each file goes in Debian's split configuration,
/// relative to /etc/exim4 (the test follows the documentation, not its own idea).
fn split_places(shipped: &Path) -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(shipped.join("README.md")).unwrap();
    let places: Vec<(String, String)> = readme
        .lines()
        .filter(|l| l.starts_with("| `") && l.contains("`/etc/exim4/conf.d/"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(|c| c.trim().trim_matches('`')).collect();
            (
                cells[1].split_whitespace().next().unwrap().trim_matches('`').to_owned(),
                cells[3].trim_start_matches("/etc/exim4/").to_owned(),
            )
        })
        // acl.conf needs the lmdb lookup, which Debian's Exim lacks.
        .filter(|(f, _)| f != "acl.conf")
        .collect();
    assert_eq!(places.len(), 3, "{places:?}");
    places
}

/// A copy of Debian's /etc/exim4 with our files installed, `update-exim4.conf.conf` set up
/// with `settings`, and the configuration generated from it. Returns the generated file.
fn debian_config(dir: &Path, settings: &[(&str, &str)], hubbed: &str) -> PathBuf {
    assert!(
        Path::new("/usr/sbin/update-exim4.conf").exists(),
        "needs Debian's exim4-config package (scripts/setup installs it)"
    );
    let etc = dir.join("etc-exim4");
    std::fs::create_dir_all(&etc).unwrap();
    let st = std::process::Command::new("cp").args(["-a", "/etc/exim4/."]).arg(&etc).status().unwrap();
    assert!(st.success(), "copy /etc/exim4");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("exim-config");
    for (file, place) in split_places(&shipped) {
        std::fs::copy(shipped.join(file), etc.join(place)).unwrap();
    }
    let mut conf = String::new();
    for (k, v) in settings {
        conf.push_str(&format!("{k}='{v}'\n"));
    }
    conf.push_str("dc_use_split_config='true'\ndc_other_hostnames=''\ndc_local_interfaces='127.0.0.1'\n");
    conf.push_str(
        "dc_relay_domains=''\ndc_relay_nets=''\ndc_minimaldns='false'\ndc_localdelivery='mail_spool'\n",
    );
    std::fs::write(etc.join("update-exim4.conf.conf"), conf).unwrap();
    std::fs::write(etc.join("hubbed_hosts"), hubbed).unwrap();
    let out = dir.join("exim4.conf");
    let run = std::process::Command::new("/usr/sbin/update-exim4.conf")
        .arg("-d")
        .arg(&etc)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "update-exim4.conf: {}", String::from_utf8_lossy(&run.stderr));
    out
}

/// `exim4 -bt ADDRESS` with the generated configuration: the router that takes it.
fn route(conf: &Path, toml: &Path, address: &str) -> String {
    let etc = conf.parent().unwrap().join("etc-exim4");
    let out = std::process::Command::new(debian_exim())
        .arg("-C")
        .arg(conf)
        .arg(format!("-DCONFDIR={}", etc.display()))
        .arg(format!("-DMTA_STS_LIB={}", lib_path().display()))
        .arg("-DMTA_STS_IGNORE_TARGET_HOSTS=0.0.0.0")
        .arg("-DMAIN_KEEP_ENVIRONMENT=EXIM_MTA_STS_CONFIG")
        .args(["-bt", address])
        .env("EXIM_MTA_STS_CONFIG", toml)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .find_map(|l| l.trim().strip_prefix("router = "))
        .map(|r| r.split(',').next().unwrap_or("").to_owned())
        .unwrap_or_else(|| panic!("no router for {address}: {text}"))
}

#[test]
fn debian_split_config_routes_mta_sts_only_where_exim_looks_up_the_mx() {
    let w = World::get();
    let d = w.unique("deb-enforce");
    let hub = w.unique("deb-hub");
    for x in [&d, &hub] {
        w.zone(
            x,
            &format!("{x} MX 10 mx.{x}\nmx.{x} A 127.0.0.9\n_mta-sts.{x} TXT \"v=STSv1; id=1\"\nmta-sts.{x} A 127.0.1.1\n"),
        );
        w.serve_policy(x, &policy("enforce", &[&format!("mx.{x}")], 3600), "");
    }
    let scratch = w.scratch("debian");
    let toml = config(&scratch, "");
    let hubbed = format!("{hub}: 127.0.0.7\n");

    let internet = scratch.join("internet");
    std::fs::create_dir_all(&internet).unwrap();
    let conf = debian_config(&internet, &[("dc_eximconfig_configtype", "internet")], &hubbed);
    assert_eq!(route(&conf, &toml, &format!("bob@{d}")), "mtasts_enforce", "configtype internet");
    assert_eq!(
        route(&conf, &toml, &format!("bob@{hub}")),
        "hubbed_hosts",
        "a hubbed_hosts entry goes to its hub"
    );

    for configtype in ["smarthost", "satellite"] {
        let dir = scratch.join(configtype);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = debian_config(
            &dir,
            &[("dc_eximconfig_configtype", configtype), ("dc_smarthost", "127.0.0.8::25")],
            &hubbed,
        );
        assert_eq!(route(&conf, &toml, &format!("bob@{d}")), "smarthost", "configtype {configtype}");
        assert_eq!(route(&conf, &toml, &format!("bob@{hub}")), "hubbed_hosts", "configtype {configtype}");
    }
}
