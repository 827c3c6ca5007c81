//! TLS report counters (RFC 8460 §4, SPEC §10): per UTC day, policy domain and policy, the
//! sessions that succeeded and those that failed, with their failure details. Kept in a
//! third LMDB file (config key `reports`), written from inside Exim's transports (the
//! library's `mtasts_event`) and read by `exim-mta-sts report`.
//!
//! The file is opened without `fsync` on commit (`MDB_NOSYNC`): a delivery never waits for a
//! disk, and a system crash can lose the last seconds of counts; LMDB's copy-on-write keeps
//! the file consistent on file systems that keep write order, and a file LMDB rejects is
//! moved aside and started again like the other databases. Counts never touch the state
//! store. One TLS session counts once: a session key (`SENDING-IP:PORT>RECEIVING-IP`) seen
//! before on the same day is not counted again, whichever process delivers over it.
//!
//! Keys (NUL-separated): `t DAY DOMAIN POLICY` → the tally ([`Tally`], text lines);
//! `p DAY DOMAIN POLICY` → the policy as reported ([`PolicySeen`]); `s DAY SESSION` → "".
//! DAY is `YYYY-MM-DD` (UTC); POLICY is `sts:ID`, `tlsa` or `no-policy-found`. `report send`
//! drops days older than a week ([`Tallies::prune`]).
//! The same file keeps the cold path's counters for `exim-mta-sts stats` ([`crate::counters`]).

use crate::cache::CacheError;
use crate::cause::ResultType;
use crate::lmdbfile;
use lmdb::{Cursor, Database, Environment, EnvironmentFlags, Transaction, WriteFlags};
use std::collections::BTreeMap;
use std::path::Path;

/// The policy a session was held to, as its report names it (RFC 8460 §4.4 `policy`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicySeen {
    /// `sts`, `tlsa` or `no-policy-found`.
    pub kind: String,
    /// The sts policy's mode (`enforce` or `testing`).
    pub mode: String,
    /// The policy's `id` (sts).
    pub id: String,
    /// `mx` patterns (sts), colon-separated.
    pub mx: String,
    /// The policy as served (sts), for `policy-string`.
    pub text: String,
}

/// One failure detail's key (RFC 8460 §4.4 `failure-details`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize)]
pub struct Detail {
    pub result: String,
    pub sending_ip: String,
    pub mx: String,
    pub receiving_ip: String,
    pub reason: String,
}

/// What one day's sessions to one policy came to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tally {
    pub successes: u64,
    pub failures: u64,
    pub details: BTreeMap<Detail, u64>,
}

/// One session's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session<'a> {
    pub day: &'a str,
    pub domain: &'a str,
    pub policy: &'a PolicySeen,
    /// `SENDING-IP:PORT>RECEIVING-IP` of the TCP session, when there was one.
    pub key: Option<&'a str>,
    /// `None`: a success.
    pub failure: Option<(ResultType, Detail)>,
}

fn clean(s: &str) -> String {
    s.chars()
        .take(300)
        .map(|c| if c == '\t' || c == '\n' || c == '\r' || c == '\0' { ' ' } else { c })
        .collect()
}

impl Tally {
    /// The stored text form.
    pub fn encode(&self) -> String {
        let mut out = format!("ok\t{}\nfailed\t{}\n", self.successes, self.failures);
        for (d, n) in &self.details {
            out.push_str(&format!(
                "detail\t{n}\t{}\t{}\t{}\t{}\t{}\n",
                clean(&d.result),
                clean(&d.sending_ip),
                clean(&d.mx),
                clean(&d.receiving_ip),
                clean(&d.reason)
            ));
        }
        out
    }

    /// Reads the text form; lines it does not know are skipped.
    pub fn decode(text: &str) -> Tally {
        let mut t = Tally::default();
        for line in text.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            match f.as_slice() {
                ["ok", n] => t.successes = n.parse().unwrap_or(0),
                ["failed", n] => t.failures = n.parse().unwrap_or(0),
                ["detail", n, result, sending_ip, mx, receiving_ip, reason] => {
                    let d = Detail {
                        result: (*result).to_owned(),
                        sending_ip: (*sending_ip).to_owned(),
                        mx: (*mx).to_owned(),
                        receiving_ip: (*receiving_ip).to_owned(),
                        reason: (*reason).to_owned(),
                    };
                    *t.details.entry(d).or_default() += n.parse::<u64>().unwrap_or(0);
                }
                _ => {}
            }
        }
        t
    }
}

impl PolicySeen {
    fn encode(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\n{}",
            clean(&self.kind),
            clean(&self.id),
            clean(&self.mx),
            clean(&self.mode),
            self.text
        )
    }

    fn decode(text: &str) -> PolicySeen {
        let (head, body) = text.split_once('\n').unwrap_or((text, ""));
        let mut f = head.split('\t');
        let mut next = || f.next().unwrap_or("").to_owned();
        let (kind, id, mx, mode) = (next(), next(), next(), next());
        PolicySeen { kind, mode, id, mx, text: body.to_owned() }
    }

    /// Its key part: `sts:ID`, `tlsa` or `no-policy-found`.
    pub fn key(&self) -> String {
        if self.kind == "sts" { format!("sts:{}", self.id) } else { self.kind.clone() }
    }
}

pub(crate) fn key(kind: u8, parts: &[&str]) -> Vec<u8> {
    let mut k = vec![kind];
    for p in parts {
        k.push(0);
        k.extend(p.bytes().filter(|b| *b != 0).take(512));
    }
    k
}

/// The counters file.
pub struct Tallies {
    pub(crate) env: Environment,
    pub(crate) db: Database,
}

impl Tallies {
    /// Opens (creating) the counters file at `path`.
    pub fn open(path: &Path) -> Result<Tallies, CacheError> {
        let flags = EnvironmentFlags::NO_SYNC | EnvironmentFlags::NO_META_SYNC | EnvironmentFlags::NO_TLS;
        let (env, _) = lmdbfile::open(path, flags, |_| Ok(())).map_err(CacheError::Open)?;
        let db = env.open_db(None)?;
        Ok(Tallies { env, db })
    }

    /// In a forked child: forget the file without closing it (the parent's handle).
    pub fn abandon(self) {
        std::mem::forget(self);
    }

    /// Counts one session. Returns false when its session was counted before.
    pub fn record(&self, s: &Session<'_>) -> Result<bool, CacheError> {
        let pk = s.policy.key();
        let (tk, polk) = (key(b't', &[s.day, s.domain, &pk]), key(b'p', &[s.day, s.domain, &pk]));
        let sk = s.key.map(|k| key(b's', &[s.day, k]));
        Ok(lmdbfile::write(&self.env, |t| {
            if let Some(sk) = &sk {
                if t.get(self.db, sk).is_ok() {
                    return Ok(false);
                }
                t.put(self.db, sk, &b"", WriteFlags::empty())?;
            }
            let mut tally = match t.get(self.db, &tk) {
                Ok(v) => Tally::decode(&String::from_utf8_lossy(v)),
                Err(lmdb::Error::NotFound) => Tally::default(),
                Err(e) => return Err(e),
            };
            match &s.failure {
                None => tally.successes += 1,
                Some((rt, d)) => {
                    tally.failures += 1;
                    let d = Detail { result: rt.as_str().to_owned(), ..d.clone() };
                    *tally.details.entry(d).or_default() += 1;
                }
            }
            t.put(self.db, &tk, &tally.encode(), WriteFlags::empty())?;
            // The policy of a (day, domain, id) never changes: written once, not with every
            // session (a policy can be 64 KiB).
            if let Err(lmdb::Error::NotFound) = t.get(self.db, &polk) {
                t.put(self.db, &polk, &s.policy.encode(), WriteFlags::empty())?;
            }
            Ok(true)
        })?)
    }

    /// What `report send` remembers of sending `day`'s report of `domain` to `dest`:
    /// `ok TIME`, or `failed FIRST-TIME ATTEMPTS REASON`.
    pub fn sent(&self, day: &str, domain: &str, dest: &str) -> Result<Option<String>, CacheError> {
        let txn = self.env.begin_ro_txn()?;
        let r = match txn.get(self.db, &key(b'x', &[day, domain, dest])) {
            Ok(v) => Some(String::from_utf8_lossy(v).into_owned()),
            Err(lmdb::Error::NotFound) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(r)
    }

    /// Remembers how sending went (see [`Tallies::sent`]), and flushes the file to disk.
    pub fn mark_sent(&self, day: &str, domain: &str, dest: &str, what: &str) -> Result<(), CacheError> {
        let k = key(b'x', &[day, domain, dest]);
        lmdbfile::write(&self.env, |t| t.put(self.db, &k, &what, WriteFlags::empty()))?;
        Ok(self.env.sync(true)?)
    }

    /// Drops everything recorded for the days before `first_kept` (`YYYY-MM-DD`): tallies,
    /// policies, session keys and sent marks. Without it the file would grow by a session
    /// key per TLS session for ever. Returns how many keys went.
    pub fn prune(&self, first_kept: &str) -> Result<usize, CacheError> {
        Ok(lmdbfile::write(&self.env, |t| {
            let mut old = Vec::new();
            for kind in [b't', b'p', b's', b'x'] {
                let prefix = [kind, 0];
                let mut cur = t.open_ro_cursor(self.db)?;
                for (k, _) in cur.iter_from(prefix).map_while(Result::ok) {
                    let Some(rest) = k.strip_prefix(prefix.as_slice()) else { break };
                    if rest.get(..first_kept.len()).is_some_and(|day| day >= first_kept.as_bytes()) {
                        break;
                    }
                    old.push(k.to_vec());
                }
            }
            for k in &old {
                t.del(self.db, k, None)?;
            }
            Ok(old.len())
        })?)
    }

    /// Every (domain, policy, tally) of `day`.
    pub fn day(&self, day: &str) -> Result<Vec<(String, PolicySeen, Tally)>, CacheError> {
        let txn = self.env.begin_ro_txn()?;
        let prefix = key(b't', &[day]);
        let mut out = Vec::new();
        let mut cur = txn.open_ro_cursor(self.db)?;
        for item in cur.iter_from(&prefix) {
            let (k, v) = item?;
            if !k.starts_with(&prefix) {
                break;
            }
            let parts: Vec<&[u8]> = k.split(|b| *b == 0).collect();
            let [_, _, domain, pk] = parts.as_slice() else { continue };
            let policy = txn
                .get(self.db, &[b"p".as_slice(), k.get(1..).unwrap_or_default()].concat())
                .map(|p| PolicySeen::decode(&String::from_utf8_lossy(p)))
                .unwrap_or_else(|_| PolicySeen {
                    kind: String::from_utf8_lossy(pk).into_owned(),
                    ..Default::default()
                });
            out.push((
                String::from_utf8_lossy(domain).into_owned(),
                policy,
                Tally::decode(&String::from_utf8_lossy(v)),
            ));
        }
        Ok(out)
    }
}

/// The Unix time at which UTC day `day` (`YYYY-MM-DD`) starts.
pub fn day_start(day: &str) -> Option<u64> {
    let mut f = day.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (f.next()??, f.next()??, f.next()??);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || day.len() != 10 {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days).ok().map(|d| d * 86_400).filter(|t| day_of(*t) == day)
}

/// The UTC day (`YYYY-MM-DD`) of a Unix time.
pub fn day_of(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_days() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(86_399), "1970-01-01");
        assert_eq!(day_of(951_782_400), "2000-02-29");
        assert_eq!(day_of(1_796_169_600), "2026-12-02");
        assert_eq!(day_of(1_796_256_000), "2026-12-03");
        for t in [0, 951_782_400, 1_796_169_600] {
            assert_eq!(day_start(&day_of(t)), Some(t));
        }
        assert_eq!(day_start("2026-02-30"), None);
        assert_eq!(day_start("2026-1-01"), None);
    }

    #[test]
    fn sessions_count_once_and_details_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tallies::open(&dir.path().join("reports.mdb")).unwrap();
        let p = PolicySeen {
            kind: "sts".into(),
            mode: "enforce".into(),
            id: "1".into(),
            mx: "mx.a.example".into(),
            text: "version: STSv1\n".into(),
        };
        let ok = |key| Session { day: "2026-12-02", domain: "a.example", policy: &p, key, failure: None };
        assert!(t.record(&ok(Some("192.0.2.1:1000>198.51.100.1"))).unwrap());
        assert!(!t.record(&ok(Some("192.0.2.1:1000>198.51.100.1"))).unwrap(), "same session");
        assert!(t.record(&ok(None)).unwrap());
        let d = Detail {
            result: String::new(),
            sending_ip: "192.0.2.1".into(),
            mx: "mx.a.example".into(),
            receiving_ip: "198.51.100.1".into(),
            reason: "x\ty".into(),
        };
        for port in ["1", "2"] {
            let k = format!("192.0.2.1:{port}>198.51.100.1");
            let f = Session {
                failure: Some((ResultType::CertificateExpired, d.clone())),
                key: Some(&k),
                ..ok(None)
            };
            assert!(t.record(&f).unwrap());
        }
        let day = t.day("2026-12-02").unwrap();
        assert_eq!(day.len(), 1);
        let (domain, policy, tally) = &day[0];
        assert_eq!((domain.as_str(), policy), ("a.example", &p));
        assert_eq!((tally.successes, tally.failures), (2, 2));
        let (detail, n) = tally.details.iter().next().unwrap();
        assert_eq!((detail.result.as_str(), detail.reason.as_str(), *n), ("certificate-expired", "x y", 2));
        assert!(t.day("2026-12-01").unwrap().is_empty());

        // Pruning keeps the days from the given one on, and drops all of earlier days.
        let older = Session { day: "2026-11-20", ..ok(Some("192.0.2.1:1000>198.51.100.1")) };
        assert!(t.record(&older).unwrap());
        t.mark_sent("2026-11-20", "a.example", "r@a.example", "ok 1").unwrap();
        assert_eq!(t.prune("2026-11-25").unwrap(), 4, "tally, policy, session key, sent mark");
        assert!(t.day("2026-11-20").unwrap().is_empty());
        assert_eq!(t.sent("2026-11-20", "a.example", "r@a.example").unwrap(), None);
        assert!(t.record(&older).unwrap(), "its session key went too");
        assert_eq!(t.day("2026-12-02").unwrap().len(), 1, "later days stay");
        assert!(!t.record(&ok(Some("192.0.2.1:1000>198.51.100.1"))).unwrap(), "and their session keys");
    }
}
