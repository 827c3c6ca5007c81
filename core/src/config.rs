//! The library's configuration (SPEC §6): a TOML file, `/etc/exim4/mta-sts.toml` unless
//! the environment variable `EXIM_MTA_STS_CONFIG` names another. A missing file means
//! all defaults; a file that cannot be read or parsed is an error, never a guess, so the
//! caller answers `fail` until it is fixed. Every default lives in this file.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_PATH: &str = "/etc/exim4/mta-sts.toml";
pub const ENV_VAR: &str = "EXIM_MTA_STS_CONFIG";

/// What to answer when a domain publishes a valid `_mta-sts` record but no policy can be
/// fetched and nothing valid is cached (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FetchFailure {
    /// RFC 8461 §3.3: "continue with delivery as though the domain has not implemented
    /// MTA-STS".
    None,
    /// The Perl original's strict behaviour: answer `fail`, so the shipped Exim
    /// configuration defers the mail.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The shared database that Exim's `lmdb` lookup reads (SPEC §3).
    pub database: PathBuf,
    /// The library's own store, read on the hot path (SPEC §3).
    pub state: PathBuf,
    pub fetch_failure: FetchFailure,
    /// Seconds between checks of a cached policy's `_mta-sts` TXT `id` (SPEC §4).
    pub recheck_interval: u64,
    /// Seconds after its fetch when a cached policy is fetched again at its next TXT
    /// check even if the `id` is unchanged (RFC 8461 §3.3: "proactively refresh cached
    /// policies before they expire; a suggested refresh frequency is once per day").
    pub refresh_after: u64,
    /// Check for DNSSEC-authenticated TLSA records before MTA-STS (SPEC §5).
    pub dane: bool,
    /// Shortest time in seconds a DANE answer is cached (the records' TTLs decide, up to a
    /// day, but never less than this).
    pub dane_min_ttl: u64,
    /// Seconds a domain without MTA-STS is remembered before DNS is asked again.
    pub negative_ttl: u64,
    /// Seconds a temporary DNS failure (with nothing cached) is remembered: `fail` is
    /// answered without a new query until then.
    pub tempfail_ttl: u64,
    /// Seconds before a failed policy fetch is retried for the same `id`
    /// (RFC 8461 §3.3: "five minutes or longer per version ID"; lower values are raised).
    pub fetch_backoff: u64,
    /// Whole-fetch deadline in seconds: connecting, TLS, request and body
    /// (RFC 8461 §3.3 suggests one minute).
    pub fetch_timeout: u64,
    /// Largest policy body accepted, in bytes (RFC 8461 §3.3 suggests 64 KB).
    pub max_policy_size: u64,
    /// Require `Content-Type: text/plain` (RFC 8461 §3.2 SHOULD; RFC.md A-01).
    pub require_text_plain: bool,
    /// Deadline in seconds for one DNS question, all servers and retries included.
    pub dns_timeout: u64,
    /// Deadline in seconds for a whole cold path: the TXT query, the fetch (its address
    /// lookups included), the TLSRPT query and the DANE lookups together. A fetch lease
    /// outlives it, so that waiting processes never start a second fetch.
    pub cold_deadline: u64,
    /// The program that runs the cold path for the library (SPEC §9): the `exim-mta-sts`
    /// binary, started as `HELPER --config FILE helper DOMAIN`.
    pub helper: PathBuf,
    /// The user the helper runs as when Exim (or the tool) runs as root (SPEC §9): a name
    /// or a number. Empty: the owner of the state store's directory, else of the shared
    /// database's directory (the Exim user in a Debian install). Never root.
    pub user: String,
    /// The TLS report counters (SPEC §10): a third LMDB file, written from Exim's
    /// transports, read by `exim-mta-sts report`.
    pub reports: PathBuf,
    /// `organization-name` of the TLS reports (RFC 8460 §4.4); empty: this host's name.
    pub report_org: String,
    /// `contact-info` of the TLS reports: an addr-spec (RFC 8460 §4.4). Nothing is sent
    /// without it.
    pub report_contact: String,
    /// The `From:` of report mail; empty: `report_contact`.
    pub report_from: String,
    /// The command report mail is handed to (the message on its standard input).
    pub report_sendmail: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database: PathBuf::from("/var/spool/exim4/mta-sts.mdb"),
            state: PathBuf::from("/var/spool/exim4/mta-sts-state.mdb"),
            fetch_failure: FetchFailure::None,
            recheck_interval: 3600,
            refresh_after: 86400,
            dane: true,
            dane_min_ttl: 60,
            negative_ttl: 3600,
            tempfail_ttl: 60,
            fetch_backoff: 300,
            fetch_timeout: 60,
            max_policy_size: 65_536,
            require_text_plain: true,
            dns_timeout: 10,
            cold_deadline: 90,
            helper: PathBuf::from("/usr/sbin/exim-mta-sts"),
            user: String::new(),
            reports: PathBuf::from("/var/spool/exim4/mta-sts-reports.mdb"),
            report_org: String::new(),
            report_contact: String::new(),
            report_from: String::new(),
            report_sendmail: "/usr/sbin/sendmail -oi -t".to_owned(),
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration file {}: {}", self.path.display(), self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// RFC 8461 §3.3: wait "five minutes or longer per version ID" after a failed fetch.
const MIN_FETCH_BACKOFF: u64 = 300;

impl Config {
    /// The file this process reads: `$EXIM_MTA_STS_CONFIG`, else the default path.
    pub fn path_from_env() -> PathBuf {
        match std::env::var_os(ENV_VAR) {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => PathBuf::from(DEFAULT_PATH),
        }
    }

    /// Reads the configuration this process should use.
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_from(&Self::path_from_env())
    }

    /// Reads `path`; a missing file gives the defaults.
    pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
        let err = |problem: String| ConfigError { path: path.to_owned(), problem };
        let text = match std::fs::read(path) {
            Ok(bytes) => String::from_utf8(bytes).map_err(|_| err("not UTF-8".into()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(e) => return Err(err(format!("cannot read: {e}"))),
        };
        Self::parse(&text).map_err(err)
    }

    /// Parses TOML text and checks the values.
    pub fn parse(text: &str) -> Result<Config, String> {
        let cfg: Config = toml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), String> {
        for (key, path) in [("database", &self.database), ("state", &self.state)] {
            if !path.is_absolute() {
                return Err(format!("{key} must be an absolute path, not {:?}", path.display().to_string()));
            }
        }
        if self.database == self.state {
            return Err("database and state must be different files (SPEC §3)".into());
        }
        for (key, v, min) in [
            ("fetch_timeout", self.fetch_timeout, 1),
            ("dns_timeout", self.dns_timeout, 1),
            ("cold_deadline", self.cold_deadline, 1),
            ("max_policy_size", self.max_policy_size, 1024),
        ] {
            if v < min {
                return Err(format!("{key} must be at least {min}, not {v}"));
            }
        }
        Ok(())
    }

    pub fn fetch_backoff(&self) -> u64 {
        self.fetch_backoff.max(MIN_FETCH_BACKOFF)
    }

    pub fn fetch_timeout(&self) -> Duration {
        Duration::from_secs(self.fetch_timeout)
    }

    /// How long the library waits for the helper before killing it: a wait for another
    /// process's fetch lease (`cold_deadline` + 15 s), then a whole cold path of its own
    /// and its shared-database update (at most 10 s), with 5 s to spare.
    pub fn helper_deadline(&self) -> Duration {
        Duration::from_secs(self.cold_deadline.saturating_mul(2).saturating_add(30))
    }

    pub fn dns_timeout(&self) -> Duration {
        Duration::from_secs(self.dns_timeout)
    }
}

/// toml's messages span several lines with a caret diagram; a log line needs one.
fn one_line(msg: &str) -> String {
    let mut parts = Vec::new();
    for line in msg.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let rest = line.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start();
        match rest.strip_prefix('|').map(str::trim) {
            // A source excerpt ("1 | key = value"): keep the text, it names the key.
            Some(text) if !text.is_empty() && !text.starts_with('^') => parts.push(format!("`{text}`")),
            Some(_) => {}
            None => parts.push(line.to_owned()),
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn missing_file_is_all_defaults() {
        let cfg = Config::load_from(Path::new("/nonexistent/mta-sts.toml")).unwrap();
        assert_eq!(cfg, Config::default());
        assert_eq!(cfg.database, Path::new("/var/spool/exim4/mta-sts.mdb"));
        assert_eq!(cfg.fetch_failure, FetchFailure::None);
    }

    #[test]
    fn keys_are_read() {
        let cfg = Config::parse(
            "database = \"/tmp/a.mdb\"\nstate = \"/tmp/b.mdb\"\nfetch_failure = \"fail\"\nrecheck_interval = 10\ndane = false\n",
        )
        .unwrap();
        assert_eq!(cfg.database, Path::new("/tmp/a.mdb"));
        assert_eq!(cfg.fetch_failure, FetchFailure::Fail);
        assert_eq!(cfg.recheck_interval, 10);
        assert!(!cfg.dane);
        assert_eq!(cfg.negative_ttl, Config::default().negative_ttl);
    }

    #[test]
    fn bad_files_are_errors_not_guesses() {
        for (text, needle) in [
            ("bogus = 1", "unknown field `bogus`"),
            ("fetch_failure = \"maybe\"", "unknown variant `maybe`"),
            ("recheck_interval = -1", "recheck_interval"),
            ("recheck_interval = \"10\"", "recheck_interval"),
            ("database = \"relative.mdb\"", "absolute"),
            ("database = \"/x.mdb\"\nstate = \"/x.mdb\"", "different"),
            ("fetch_timeout = 0", "fetch_timeout"),
            ("[section", "TOML parse error"),
        ] {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn unreadable_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let e = Config::load_from(dir.path()).unwrap_err();
        assert_eq!(e.path, dir.path());
        assert!(e.to_string().contains("cannot read"), "{e}");
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "dane = maybe").unwrap();
        let e = Config::load_from(&f).unwrap_err();
        assert!(e.to_string().starts_with(&format!("configuration file {}: ", f.display())), "{e}");
    }

    #[test]
    fn fetch_backoff_respects_rfc_minimum() {
        let cfg = Config::parse("fetch_backoff = 10").unwrap();
        assert_eq!(cfg.fetch_backoff(), 300);
    }
}

#[cfg(test)]
mod shipped_example {
    use super::*;

    /// The example file in exim-config/ parses, names every key, and shows the defaults.
    #[test]
    fn example_file_documents_every_key_with_its_default() {
        let text = include_str!("../../exim-config/mta-sts.toml");
        assert_eq!(Config::parse(text).unwrap(), Config::default());
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(" = "))
            .filter_map(|l| l.split(" = ").next())
            .collect();
        assert_eq!(
            keys,
            [
                "database",
                "state",
                "fetch_failure",
                "recheck_interval",
                "refresh_after",
                "dane",
                "dane_min_ttl",
                "negative_ttl",
                "tempfail_ttl",
                "fetch_backoff",
                "fetch_timeout",
                "max_policy_size",
                "require_text_plain",
                "dns_timeout",
                "cold_deadline",
                "helper",
                "user",
                "reports",
                "report_org",
                "report_contact",
                "report_from",
                "report_sendmail"
            ]
        );
    }
}
