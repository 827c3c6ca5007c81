//! Exims of the test world: SMTP receivers (MX hosts) and the sending Exim that uses the
//! shipped `exim-config/` files.

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const DEBIAN_EXIM: &str = "/usr/sbin/exim4";

fn exim_ids() -> Result<(u32, u32), String> {
    let out = Command::new("id").arg("-u").arg("Debian-exim").output().map_err(|e| e.to_string())?;
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|_| "no Debian-exim user")?;
    let out = Command::new("id").arg("-g").arg("Debian-exim").output().map_err(|e| e.to_string())?;
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|_| "no Debian-exim group")?;
    Ok((uid, gid))
}

/// Creates `dir` and the given subdirectories, owned by the Exim user (Exim drops to it
/// when run with -C). Configuration files stay root's: Exim insists.
fn exim_dirs(dir: &Path, subs: &[&str]) -> Result<(), String> {
    let (uid, gid) = exim_ids()?;
    for sub in std::iter::once("").chain(subs.iter().copied()) {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        chown(&d, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// How a receiver does TLS.
fn tls_lines(world: &Path, name: &str, tls: &str) -> Result<String, String> {
    let flavour = match tls {
        "none" => return Ok("tls_advertise_hosts =\n".into()),
        "good" | "wrong-name" | "untrusted" | "expired" => tls,
        _ => return Err(format!("tls: good, wrong-name, untrusted, expired or none, not {tls}")),
    };
    // A good certificate made earlier (one whose TLSA record is already signed) is kept.
    if !(flavour == "good" && world.join("certs").join(format!("{name}.crt")).exists()) {
        crate::cert(world, name, flavour)?;
    }
    let certs = world.join("certs");
    Ok(format!(
        "tls_advertise_hosts = *\ntls_certificate = {0}/{name}.crt\ntls_privatekey = {0}/{name}.key\n",
        certs.display()
    ))
}

/// Starts an SMTP receiver named `name` (its MX host name) on `ip`:25, delivering every
/// message into WORLD/rx/NAME/mailbox and logging each connection. Returns its directory.
pub fn receiver(world: &Path, name: &str, ip: &str, tls: &str) -> Result<PathBuf, String> {
    let dir = world.join("rx").join(name);
    exim_dirs(&dir, &["log", "spool"])?;
    let conf = dir.join("exim.conf");
    std::fs::write(
        &conf,
        format!(
            r#"exim_user = Debian-exim
exim_group = Debian-exim
primary_hostname = {name}
local_interfaces = {ip}
daemon_smtp_ports = 25
log_file_path = {d}/log/%slog
spool_directory = {d}/spool
pid_file_path = {d}/exim.pid
log_selector = +smtp_connection
host_lookup =
rfc1413_hosts =
keep_environment =
{tls}acl_smtp_rcpt = accept
begin routers
all:
  driver = accept
  transport = box
begin transports
box:
  driver = appendfile
  file = {d}/mailbox
  user = Debian-exim
"#,
            d = dir.display(),
            tls = tls_lines(world, name, tls)?
        ),
    )
    .map_err(|e| e.to_string())?;
    let st = Command::new(DEBIAN_EXIM)
        .arg("-C")
        .arg(&conf)
        .args(["-bd", "-q1h"])
        .status()
        .map_err(|e| e.to_string())?;
    if !st.success() {
        return Err(format!("receiver {name}: exim -bd failed"));
    }
    // Ready once its log says it listens (a probe connection would show in its log).
    for _ in 0..200 {
        let log = std::fs::read_to_string(dir.join("log/mainlog")).unwrap_or_default();
        if log.contains(&format!("listening for SMTP on [{ip}]:25")) {
            return Ok(dir);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err(format!("receiver {name} does not listen on {ip}:25"))
}

/// Writes a sending Exim's configuration in `dir`: the shipped `exim-config/` files
/// (main.conf, acl.conf, routers.conf, transports.conf from `shipped`) with the library at `lib`,
/// followed by an ordinary dnslookup router for everything else. Target hosts on loopback
/// are allowed (the test world lives there).
pub fn sender(dir: &Path, shipped: &Path, lib: &Path) -> Result<PathBuf, String> {
    exim_dirs(dir, &["log", "spool", "db"])?;
    let conf = dir.join("exim.conf");
    std::fs::write(
        &conf,
        format!(
            r#"# A sending Exim of the test world, built from the shipped exim-config/.
MTA_STS_LIB = {lib}
MTA_STS_DB = {d}/db/mta-sts.mdb
MTA_STS_IGNORE_TARGET_HOSTS = 0.0.0.0
.include {s}/main.conf
primary_hostname = origin.test
domainlist local_domains = origin.test
exim_user = Debian-exim
exim_group = Debian-exim
keep_environment = EXIM_MTA_STS_CONFIG
log_file_path = {d}/log/%slog
spool_directory = {d}/spool
log_selector = +smtp_connection +tls_peerdn

begin acl
.include {s}/acl.conf

begin routers
.include {s}/routers.conf
dnslookup:
  driver = dnslookup
  domains = ! +local_domains
  transport = remote_smtp
  ignore_target_hosts = 0.0.0.0
  no_more

begin transports
.include {s}/transports.conf
remote_smtp:
  driver = smtp

begin retry
* * F,1h,10m
"#,
            lib = lib.display(),
            d = dir.display(),
            s = shipped.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(
        dir.join("mta-sts.toml"),
        format!(
            "database = \"{0}/db/mta-sts.mdb\"\nstate = \"{0}/db/mta-sts-state.mdb\"\nreports = \"{0}/db/mta-sts-reports.mdb\"\n",
            dir.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    Ok(conf)
}
