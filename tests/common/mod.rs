//! Shared helpers for the integration tests: the private test world (scripts/in-world),
//! the built library loaded with `dlopen` and called as Exim calls it, and real Exims.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
// Loads the library with dlopen and calls it through its C signature.
#![allow(unsafe_code, clippy::undocumented_unsafe_blocks)]

use std::ffi::{CStr, CString, c_int, c_uchar, c_void};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The test world, or a clear failure saying how to get one.
pub struct World {
    pub dir: PathBuf,
}

impl World {
    pub fn get() -> World {
        let dir = std::env::var_os("MTA_STS_WORLD").map(PathBuf::from).unwrap_or_else(|| {
            panic!("this test needs the private test world: run it with `scripts/test` (as root), which starts it")
        });
        assert!(dir.join("ready").exists(), "test world {} is not running", dir.display());
        World { dir }
    }

    /// A domain name no other test uses.
    pub fn unique(&self, tag: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!("{tag}-{}-{}.test", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
    }

    /// Writes (replaces) the zone file `name`.
    pub fn zone(&self, name: &str, text: &str) {
        let path = self.dir.join("dns").join(format!("{name}.zone"));
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(tmp, path).unwrap();
    }

    pub fn policy_dir(&self, domain: &str) -> PathBuf {
        let d = self.dir.join("https").join(format!("mta-sts.{domain}"));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Serves `body` as the policy of `domain`, with optional `meta` lines.
    pub fn serve_policy(&self, domain: &str, body: &str, meta: &str) {
        let d = self.policy_dir(domain);
        std::fs::write(d.join("meta"), meta).unwrap();
        std::fs::write(d.join("body"), body).unwrap();
    }

    /// How many requests the policy host of `domain` has received.
    pub fn requests(&self, domain: &str) -> usize {
        std::fs::read_to_string(self.policy_dir(domain).join("requests"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// The DNS questions (`NAME TYPE`) the test DNS server has received for `domain` and
    /// the names under it.
    pub fn queries(&self, domain: &str) -> Vec<String> {
        let log = std::fs::read_to_string(self.dir.join("dns/queries.log")).unwrap_or_default();
        let under = format!(".{domain} ");
        let exact = format!("{domain} ");
        log.lines().filter(|l| l.starts_with(&exact) || l.contains(&under)).map(str::to_owned).collect()
    }

    /// A domain with an `_mta-sts` record `id` and its policy host.
    pub fn sts_domain(&self, domain: &str, id: &str, policy: &str) {
        self.zone(
            domain,
            &format!("_mta-sts.{domain} TXT \"v=STSv1; id={id}\"\nmta-sts.{domain} A 127.0.1.1\n"),
        );
        self.serve_policy(domain, policy, "");
    }

    /// A fresh directory for one test's databases and configuration, owned by the Exim
    /// user as `/var/spool/exim4` is: the helper that the library (running as root in the
    /// tests) starts runs as that owner (SPEC §9).
    pub fn scratch(&self, tag: &str) -> PathBuf {
        let d = self.dir.join("scratch").join(format!("{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (uid, gid) = exim_ids();
        std::os::unix::fs::chown(&d, Some(uid), Some(gid)).unwrap();
        d
    }
}

pub fn policy(mode: &str, mx: &[&str], max_age: u64) -> String {
    let mut s = format!("version: STSv1\nmode: {mode}\n");
    for m in mx {
        s.push_str(&format!("mx: {m}\n"));
    }
    s.push_str(&format!("max_age: {max_age}\n"));
    s
}

/// Writes a configuration file in `dir` (databases in `dir` too, plus `extra` lines) and
/// returns its path.
pub fn config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("mta-sts.toml");
    std::fs::write(
        &path,
        format!(
            "database = \"{0}/shared.mdb\"\nstate = \"{0}/state.mdb\"\nreports = \"{0}/reports.mdb\"\n{extra}\n",
            dir.display()
        ),
    )
    .unwrap();
    path
}

fn env_path(var: &str, what: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: run the tests with `scripts/test`, which builds {what}")
    });
    assert!(p.exists(), "{var}={} does not exist", p.display());
    p
}

/// The shipped library (release build).
pub fn lib_path() -> PathBuf {
    env_path("MTA_STS_LIB", "the library")
}

/// The library built with the `fault-injection` feature.
pub fn fault_lib_path() -> PathBuf {
    env_path("MTA_STS_FAULT_LIB", "the fault-injection library")
}

/// Debian's exim4-daemon-heavy.
pub fn debian_exim() -> PathBuf {
    let p = PathBuf::from("/usr/sbin/exim4");
    assert!(p.exists(), "Debian's Exim is missing: apt-get install exim4-daemon-heavy (scripts/setup does)");
    p
}

/// The Exim built with the lmdb lookup (scripts/setup).
pub fn lmdb_exim() -> PathBuf {
    let p = PathBuf::from(
        std::env::var("EXIM_LMDB").unwrap_or_else(|_| "/var/cache/exim-mta-sts/exim-4.96/exim".into()),
    );
    assert!(p.exists(), "the lmdb-capable Exim is missing: run scripts/setup, which builds it");
    p
}

type Dlfunc = unsafe extern "C" fn(*mut *mut c_uchar, c_int, *mut *mut c_uchar) -> c_int;

/// The library loaded with `dlopen`, called exactly as Exim's `${dlfunc}` calls it.
pub struct Lib {
    handle: *mut c_void,
}

impl Lib {
    pub fn open(path: &Path) -> Lib {
        let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: test code loading our own library.
        let handle = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_LAZY) };
        assert!(!handle.is_null(), "dlopen {} failed", path.display());
        Lib { handle }
    }

    /// Calls `func` with `args`; returns (status, yield string).
    pub fn call(&self, func: &str, args: &[&str]) -> (c_int, String) {
        let name = CString::new(func).unwrap();
        // SAFETY: dlsym on our handle.
        let f = unsafe { libc::dlsym(self.handle, name.as_ptr()) };
        assert!(!f.is_null(), "no symbol {func}");
        // SAFETY: the exported functions have Exim's dlfunc signature.
        let f: Dlfunc = unsafe { std::mem::transmute(f) };
        let owned: Vec<CString> = args.iter().map(|a| CString::new(*a).unwrap()).collect();
        let mut argv: Vec<*mut c_uchar> = owned.iter().map(|c| c.as_ptr() as *mut c_uchar).collect();
        let mut out: *mut c_uchar = std::ptr::null_mut();
        // SAFETY: argv holds args.len() valid strings.
        let rc = unsafe { f(&mut out, argv.len() as c_int, argv.as_mut_ptr()) };
        let s = if out.is_null() {
            String::from("<null>")
        } else {
            unsafe { CStr::from_ptr(out.cast()) }.to_string_lossy().into_owned()
        };
        (rc, s)
    }

    /// `getmta` with status OK expected.
    pub fn getmta(&self, args: &[&str]) -> String {
        let (rc, s) = self.call("getmta", args);
        assert_eq!(rc, 0, "getmta {args:?} returned status {rc}: {s}");
        s
    }

    pub fn getmx(&self, domain: &str) -> String {
        let (rc, s) = self.call("getmx", &[domain]);
        assert_eq!(rc, 0, "getmx {domain} returned status {rc}: {s}");
        s
    }
}

/// Loads the shipped library with `config` as its configuration file. Each test runs in
/// its own process (cargo nextest), so each gets a fresh library state.
pub fn lib_with(config: &Path) -> Lib {
    // SAFETY: set before the library reads it; nextest runs one test per process.
    unsafe { std::env::set_var("EXIM_MTA_STS_CONFIG", config) };
    Lib::open(&lib_path())
}

/// Reads the shared database with Debian's `mdb_dump`-free reader of the crate.
pub fn shared(dir: &Path) -> std::collections::BTreeMap<String, String> {
    exim_mta_sts_tool::shared_db::read_all(&dir.join("shared.mdb")).unwrap_or_default()
}

/// A minimal Exim configuration for `-be` runs, with its logs in `dir`.
pub fn exim_conf(dir: &Path) -> PathBuf {
    let conf = dir.join("exim.conf");
    let logs = dir.join("log");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(
        &conf,
        format!(
            "exim_user = Debian-exim\nexim_group = Debian-exim\nkeep_environment = EXIM_MTA_STS_CONFIG\nlog_file_path = {}/%slog\n",
            logs.display()
        ),
    )
    .unwrap();
    conf
}

/// Runs `exim -C conf -be` with `expansion` on standard input; returns (stdout lines
/// without the prompt, stderr).
pub fn exim_be(exim: &Path, conf: &Path, mta_sts_config: &Path, expansion: &str) -> (String, String) {
    exim_be_with(exim, &[], conf, mta_sts_config, expansion)
}

/// [`exim_be`] with extra command-line options (e.g. `-d`).
pub fn exim_be_with(
    exim: &Path,
    opts: &[&str],
    conf: &Path,
    mta_sts_config: &Path,
    expansion: &str,
) -> (String, String) {
    let mut cmd = std::process::Command::new(exim);
    cmd.args(opts);
    be_run(cmd, conf, mta_sts_config, expansion)
}

/// [`exim_be`] with the test world's validating resolver as /etc/resolv.conf (in a
/// mount namespace of its own), so that DNSSEC-signed answers carry the AD bit.
pub fn exim_be_validating(
    exim: &Path,
    conf: &Path,
    mta_sts_config: &Path,
    expansion: &str,
) -> (String, String) {
    be_run(validating(exim), conf, mta_sts_config, expansion)
}

/// `program`, to be run with the validating resolver (see [`exim_be_validating`]).
pub fn validating(program: &Path) -> std::process::Command {
    let w = World::get();
    let mut c = std::process::Command::new("unshare");
    c.args(["-m", "sh", "-c", "mount --bind \"$0\" /etc/resolv.conf && exec \"$@\""])
        .arg(w.dir.join("resolv-validating.conf"))
        .arg(program);
    c
}

fn be_run(
    cmd: std::process::Command,
    conf: &Path,
    mta_sts_config: &Path,
    expansion: &str,
) -> (String, String) {
    let (lines, err) = be_output(be_spawn(cmd, conf, mta_sts_config, &[expansion.to_owned()]));
    (lines.join("\n"), err)
}

/// Starts `CMD -C conf -be` with `lines` on its standard input.
pub fn be_spawn(
    mut cmd: std::process::Command,
    conf: &Path,
    mta_sts_config: &Path,
    lines: &[String],
) -> std::process::Child {
    use std::io::Write;
    let mut child = cmd
        .arg("-C")
        .arg(conf)
        .arg("-be")
        .env("EXIM_MTA_STS_CONFIG", mta_sts_config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = lines.join("\n");
    input.push('\n');
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child
}

/// Waits for an `exim -be` child: (its output lines without the prompt, stderr).
pub fn be_output(child: std::process::Child) -> (Vec<String>, String) {
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("> ").to_owned())
        .filter(|l| !l.is_empty() && l != ">")
        .collect();
    (lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The Exim user's (uid, gid): `Debian-exim`.
pub fn exim_ids() -> (u32, u32) {
    let id = |flag: &str| {
        let out = std::process::Command::new("id").args([flag, "Debian-exim"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().unwrap()
    };
    (id("-u"), id("-g"))
}

/// `${dlfunc{LIB}{FUNC}{ARGS...}}`
pub fn dlfunc(lib: &Path, func: &str, args: &[&str]) -> String {
    let a: String = args.iter().map(|a| format!("{{{a}}}")).collect();
    format!("${{dlfunc{{{}}}{{{func}}}{a}}}", lib.display())
}

/// The test world's helper binary (scripts/test sets TESTWORLD).
pub fn testworld() -> PathBuf {
    env_path("TESTWORLD", "the testworld helper")
}

/// How a run of the admin tool ended.
pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

/// Runs the built `exim-mta-sts --config CFG ARGS...` with `stdin`.
pub fn tool(cfg: &Path, args: &[&str], stdin: &str) -> Run {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_exim-mta-sts"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Parses the tool's JSON output.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

mod mail;
pub mod report;
#[allow(unused_imports)] // not every test binary sends mail
pub use mail::*;
