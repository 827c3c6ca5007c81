//! The Debian package on a clean system (issue 12): `scripts/package`'s .deb is installed
//! with dpkg into a clean Debian 12 root (`scripts/debian-root`: mmdebstrap's minbase with
//! Debian's stock exim4-daemon-heavy, nothing of ours), entered with chroot inside the test
//! world's namespaces, with Debian's split configuration and configtype `internet`. That
//! stock Exim then delivers to the world's receivers through the package's snippets and
//! library, the package's helper fetches as the Exim user, `lintian` finds no error, and
//! removing and purging the package leave a working Exim with nothing of ours behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The clean root, mounted for use; unmounted when dropped.
struct Root {
    dir: PathBuf,
}

impl Root {
    fn new(w: &World) -> Root {
        let tar = std::env::var_os("MTA_STS_DEBROOT").expect("MTA_STS_DEBROOT: run scripts/test");
        let dir = w.dir.join("scratch").join(format!("debroot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&dir).status().unwrap();
        assert!(st.success(), "extract {tar:?}");
        let root = Root { dir };
        // Inside the test world's own mount namespace (scripts/in-world): nothing leaks.
        for (args, what) in [(vec!["--bind", "/dev"], "dev"), (vec!["-t", "proc", "proc"], "proc")] {
            let st = Command::new("mount").args(&args).arg(root.dir.join(what)).status().unwrap();
            assert!(st.success(), "mount {what}");
        }
        // The world's resolver and CA, as an administrator's would be.
        let resolv = root.dir.join("etc/resolv.conf");
        let _ = std::fs::remove_file(&resolv);
        std::fs::write(&resolv, "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n").unwrap();
        std::fs::copy(
            w.dir.join("test-ca.crt"),
            root.dir.join("usr/local/share/ca-certificates/test-world.crt"),
        )
        .unwrap();
        root.ok("update-ca-certificates >/dev/null");
        // No service starts in a chroot (Debian's usual policy-rc.d): the test starts its own.
        root.write("usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n");
        root.ok("chmod 755 /usr/sbin/policy-rc.d");
        root
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p.trim_start_matches('/'))
    }

    fn write(&self, p: &str, text: &str) {
        std::fs::write(self.path(p), text).unwrap();
    }

    fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.path(p)).unwrap_or_default()
    }

    /// `sh -c CMD` in the root with `stdin`: (status, stdout + stderr).
    fn sh(&self, cmd: &str, stdin: &str) -> (i32, String) {
        use std::io::Write;
        let mut child = Command::new("chroot")
            .arg(&self.dir)
            .args(["/bin/sh", "-c", cmd])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        (o.status.code().unwrap_or(-1), text)
    }

    fn ok(&self, cmd: &str) -> String {
        let (code, out) = self.sh(cmd, "");
        assert_eq!(code, 0, "{cmd}: {out}");
        out
    }

    /// Sends one message with the root's Exim, delivering in the foreground.
    fn send(&self, rcpt: &str) {
        let msg = format!("From: root@sender.test\nTo: {rcpt}\nSubject: package test\n\nhello\n");
        let (code, out) = self.sh(&format!("exim4 -odf -f root@sender.test {rcpt}"), &msg);
        assert_eq!(code, 0, "exim4 -odf {rcpt}: {out}");
    }

    /// Files of the root (below /etc, /usr, /lib, /var) whose path mentions `word`.
    fn files_named(&self, word: &str) -> Vec<String> {
        let (_, out) = self.sh(&format!("find /etc /usr /lib /var -name '*{word}*' 2>/dev/null"), "");
        out.lines().map(str::to_owned).collect()
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        for what in ["proc", "dev"] {
            let _ = Command::new("umount").arg("-l").arg(self.dir.join(what)).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Debian's split configuration, configtype internet (what `dpkg-reconfigure exim4-config`
/// writes when asked for "internet site"), and the world's loopback MX hosts allowed.
fn configure_exim(root: &Root) {
    root.write(
        "etc/exim4/update-exim4.conf.conf",
        "dc_eximconfig_configtype='internet'\ndc_other_hostnames=''\ndc_local_interfaces='127.0.0.1'\n\
         dc_readhost=''\ndc_relay_domains=''\ndc_minimaldns='false'\ndc_relay_nets=''\ndc_smarthost=''\n\
         CFILEMODE='644'\ndc_use_split_config='true'\ndc_hide_mailname=''\ndc_mailname_in_oh='true'\n\
         dc_localdelivery='mail_spool'\n",
    );
    root.write("etc/mailname", "sender.test\n");
    // The test world's MX hosts live on 127.0.0.0/8, which the shipped routers ignore by
    // default: the documented macro, set where Debian reads local macros first.
    root.write("etc/exim4/conf.d/main/000_localmacros", "MTA_STS_IGNORE_TARGET_HOSTS = 0.0.0.0\n");
    root.ok("update-exim4.conf");
}

fn publish(w: &World, d: &str, rx: &Receiver, listed: &str) {
    w.zone(
        d,
        &format!(
            "{d} MX 10 {}\n{}_mta-sts.{d} TXT \"v=STSv1; id=1\"\nmta-sts.{d} A 127.0.1.1\n",
            rx.name,
            rx.a_record()
        ),
    );
    w.serve_policy(d, &policy("enforce", &[listed], 86_400), "");
}

#[test]
fn the_package_installs_on_a_clean_debian_protects_mail_and_purges_cleanly() {
    let w = World::get();
    let deb = PathBuf::from(std::env::var_os("MTA_STS_DEB").expect("MTA_STS_DEB: run scripts/test"));

    // lintian: no error (warnings are printed for the record).
    let lint = Command::new("lintian").args(["--fail-on", "error"]).arg(&deb).output().unwrap();
    let said = String::from_utf8_lossy(&lint.stdout);
    assert!(lint.status.success(), "lintian: {said}{}", String::from_utf8_lossy(&lint.stderr));
    assert!(!said.lines().any(|l| l.starts_with("E:")), "{said}");

    let root = Root::new(&w);
    configure_exim(&root);
    let stock = root.ok("exim4 -bV");
    assert!(stock.contains("Expand_dlfunc") && stock.contains("Event"), "stock heavy Exim: {stock}");
    std::fs::copy(&deb, root.path("tmp/exim-mta-sts.deb")).unwrap();
    let out = root.ok("dpkg -i /tmp/exim-mta-sts.deb");
    assert!(!out.contains("update-exim4.conf failed"), "{out}");
    assert!(!out.contains("single configuration file"), "split configuration: no notice: {out}");

    // What it installed, and where.
    for f in [
        "usr/lib/exim4/libexim_mta_sts.so",
        "usr/sbin/exim-mta-sts",
        "usr/share/exim-mta-sts/routers.conf",
        "etc/exim4/mta-sts.toml",
        "etc/cron.d/exim-mta-sts",
        "lib/systemd/system/exim-mta-sts-refresh.timer",
        "lib/systemd/system/exim-mta-sts-stats.timer",
        "usr/share/man/man8/exim-mta-sts-stats.8.gz",
        "usr/share/man/man5/mta-sts.toml.5.gz",
        "usr/share/doc/exim-mta-sts/README.md",
    ] {
        assert!(root.path(f).exists(), "{f} not installed");
    }
    let conffiles = root.read("var/lib/dpkg/info/exim-mta-sts.conffiles");
    for f in [
        "/etc/exim4/conf.d/main/00_exim-mta-sts_macros",
        "/etc/exim4/conf.d/router/190_exim-mta-sts",
        "/etc/exim4/conf.d/transport/30_exim-mta-sts",
        "/etc/exim4/mta-sts.toml",
    ] {
        assert!(conffiles.lines().any(|l| l == f), "{f} is not a conffile: {conffiles}");
    }
    // The postinst ran update-exim4.conf: the generated configuration has the snippets.
    let generated = root.read("var/lib/exim4/config.autogenerated");
    assert!(generated.contains(".include_if_exists /usr/share/exim-mta-sts/routers.conf"), "{generated}");
    let exim_uid: u32 = root.ok("id -u Debian-exim").trim().parse().unwrap();
    assert_eq!(std::fs::metadata(root.path("var/spool/exim4")).unwrap().uid(), exim_uid);

    // Real mail: an enforce domain whose listed MX has a good certificate, and one whose MX
    // is not in its policy.
    let (d, unl) = (w.unique("pkg-enforce"), w.unique("pkg-unlisted"));
    let rx = Receiver::start(&w, &format!("mx.{d}"), "good");
    publish(&w, &d, &rx, &format!("mx.{d}"));
    let rx2 = Receiver::start(&w, &format!("mx.{unl}"), "good");
    publish(&w, &unl, &rx2, &format!("mx.elsewhere.{unl}"));
    root.send(&format!("bob@{d}"));
    root.send(&format!("bob@{unl}"));
    let log = root.read("var/log/exim4/mainlog");
    assert_eq!(rx.received_after_waiting_for(1), 1, "{log}");
    let line = log.lines().find(|l| l.contains(" => ") && l.contains(&format!("bob@{d}"))).unwrap_or("");
    assert!(
        line.contains("R=mtasts_enforce T=remote_smtp_mtasts_enforce")
            && line.contains("X=TLS")
            && line.contains("CV=yes"),
        "not delivered over verified TLS by the MTA-STS route: {log}"
    );
    assert!(log.lines().any(|l| l.contains(" == ") && l.contains(&format!("bob@{unl}"))), "{log}");
    assert_eq!((rx2.connections(), rx2.received()), (0, 0), "the unlisted MX was not even connected to");
    assert!(log.contains("not an mx of the policy"), "{log}");
    // The helper fetched the policy as the Exim user of that system, never as root.
    let clients = std::fs::read_to_string(w.policy_dir(&d).join("clients")).unwrap();
    assert_eq!(clients.trim(), format!("uid={exim_uid}"));

    // The admin tool of the package sees the cached policy.
    let show = root.ok(&format!("exim-mta-sts show {d}"));
    assert!(show.contains("(mode enforce)") && show.contains(&format!("mx:          mx.{d}")), "{show}");
    let stats = json(&root.ok("exim-mta-sts stats --json"));
    assert_eq!(stats["policies"]["enforce"], 2, "{stats}");
    assert_eq!(stats["fetches_total"]["ok"], 2, "{stats}");

    // Installed again over itself (an upgrade's path through the maintainer scripts): the
    // cache and the administrator's conffiles stay, Exim still answers from the cache.
    root.write("etc/exim4/mta-sts.toml", "# the administrator's own\nnegative_ttl = 600\n");
    // ... here with Debian's default single configuration file, which the snippets do not
    // reach: the postinst says so.
    let ue4cc = root.read("etc/exim4/update-exim4.conf.conf");
    root.write(
        "etc/exim4/update-exim4.conf.conf",
        &ue4cc.replace("dc_use_split_config='true'", "dc_use_split_config='false'"),
    );
    let out = root.ok("dpkg -i /tmp/exim-mta-sts.deb");
    assert!(out.contains("Exim uses a single configuration file here: MTA-STS is not in force"), "{out}");
    root.write("etc/exim4/update-exim4.conf.conf", &ue4cc);
    root.ok("update-exim4.conf");
    assert_eq!(root.read("etc/exim4/mta-sts.toml"), "# the administrator's own\nnegative_ttl = 600\n");
    let show = root.ok(&format!("exim-mta-sts show {d}"));
    assert!(show.contains("(mode enforce)"), "{show}");
    root.ok("exim4 -bV");

    // Removed (not purged): the snippets stay as conffiles but include nothing, and Exim
    // routes as it did before the package.
    root.ok("dpkg -r exim-mta-sts");
    assert!(root.path("etc/exim4/conf.d/router/190_exim-mta-sts").exists());
    assert!(!root.path("usr/share/exim-mta-sts").exists());
    root.ok("exim4 -bV");
    let routed = root.sh(&format!("exim4 -bt bob@{d}"), "").1;
    assert!(!routed.contains("mtasts"), "{routed}");

    // Purged: nothing of ours is left (snippets, configuration, databases), and Exim starts.
    root.ok("apt-get purge -y -q exim-mta-sts");
    let left: Vec<String> = [root.files_named("mta-sts"), root.files_named("mta_sts")]
        .concat()
        .into_iter()
        .filter(|f| !f.starts_with("/tmp"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let generated = root.read("var/lib/exim4/config.autogenerated");
    let ours: Vec<&str> =
        generated.lines().filter(|l| l.to_lowercase().contains("mta-sts") || l.contains("MTA_STS")).collect();
    // Only the administrator's own macro (000_localmacros, not the package's) is left.
    assert_eq!(ours, ["MTA_STS_IGNORE_TARGET_HOSTS = 0.0.0.0"]);
    root.ok("exim4 -bV");
    assert_daemon_starts(&root);
}

/// Exim's daemon starts with the configuration left behind and says hello on its port.
fn assert_daemon_starts(root: &Root) {
    use std::io::Read;
    let ip = next_ip();
    let mut daemon = Command::new("chroot")
        .arg(&root.dir)
        .args(["exim4", "-bdf", "-oX", &format!("<; {ip}.2525"), "-oP", "/tmp/exim-test.pid"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect((ip.as_str(), 2525)) {
            s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).unwrap_or(0);
            banner = String::from_utf8_lossy(&buf[..n]).into_owned();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = daemon.kill();
    let err = daemon
        .wait_with_output()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .unwrap_or_default();
    assert!(banner.starts_with("220 "), "Exim's daemon did not start: {banner:?} {err}");
}
