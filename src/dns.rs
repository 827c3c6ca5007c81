//! A small synchronous DNS stub resolver over the system's resolver configuration
//! (`/etc/resolv.conf`): the servers, per-try timeout and attempts it names, UDP with TCP
//! on truncation, and an overall deadline. Queries carry RD, AD (RFC 6840 §5.7) and EDNS0,
//! so a validating resolver reports whether the answer was DNSSEC-authenticated.
//!
//! Why not hickory-resolver (README "DNS"): it has no synchronous API, never asks for AD,
//! and brings tokio, whose threads and runtime do not survive Exim's `fork()`. This stub
//! spawns no threads and keeps no sockets between questions, so it is fork-safe.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub use hickory_proto::rr::RecordType as Type;

/// Where the resolver configuration lives.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

pub use crate::cause::DnsError;

/// One TLSA record (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

/// A definite answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// The records of the asked type, after any CNAME chain. Empty for NXDOMAIN or NODATA.
    pub items: Vec<T>,
    /// NXDOMAIN (rather than NODATA or records).
    pub nxdomain: bool,
    /// The answer went through a CNAME (it holds one).
    pub aliased: bool,
    /// The resolver set AD and is trusted to validate (loopback, or `options trust-ad`).
    pub authentic: bool,
    /// The smallest TTL of the records used (0 when there are none).
    pub ttl: u32,
}

#[derive(Debug, Clone)]
pub struct Resolver {
    servers: Vec<SocketAddr>,
    per_try: Duration,
    attempts: u32,
    deadline: Duration,
    trust_ad: bool,
    /// One deadline for a whole cold path, shared by every clone (the HTTPS client's
    /// resolver too): see [`Resolver::set_cutoff`].
    cutoff: Arc<Cutoff>,
}

/// A point in time shared between clones, as milliseconds after a process-wide anchor
/// (0: none). An atomic, so that the HTTPS client's resolver can be `Send + Sync`.
#[derive(Debug, Default)]
struct Cutoff(AtomicU64);

fn anchor() -> Instant {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    *ANCHOR.get_or_init(Instant::now)
}

impl Cutoff {
    fn set(&self, at: Option<Instant>) {
        let ms = at.map_or(0, |t| {
            u64::try_from(t.saturating_duration_since(anchor()).as_millis())
                .unwrap_or(u64::MAX)
                .saturating_add(1)
        });
        self.0.store(ms, Ordering::Relaxed);
    }

    fn remaining(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            ms => Some((anchor() + Duration::from_millis(ms - 1)).saturating_duration_since(Instant::now())),
        }
    }
}

/// Clears the cutoff set by [`Resolver::cutoff_until`] when dropped (also on a panic).
pub struct CutoffGuard(Arc<Cutoff>);

impl Drop for CutoffGuard {
    fn drop(&mut self) {
        self.0.set(None);
    }
}

const EDNS_PAYLOAD: u16 = 1232;

impl Resolver {
    /// Reads `/etc/resolv.conf` as glibc does: no servers means 127.0.0.1; AD is trusted
    /// only from loopback servers or with `options trust-ad`.
    pub fn from_system(deadline: Duration) -> Resolver {
        let text = std::fs::read(RESOLV_CONF).unwrap_or_default();
        let (conf, _errors) = resolv_conf::Config::parse_with_errors(&text);
        let mut servers: Vec<SocketAddr> =
            conf.nameservers.iter().map(|ip| SocketAddr::new(IpAddr::from(ip.clone()), 53)).collect();
        if servers.is_empty() {
            servers.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53));
        }
        let trust_ad = conf.trust_ad || servers.iter().all(|s| s.ip().is_loopback());
        Resolver {
            servers,
            per_try: Duration::from_secs(u64::from(conf.timeout.clamp(1, 30))),
            attempts: conf.attempts.clamp(1, 5),
            deadline,
            trust_ad,
            cutoff: Arc::default(),
        }
    }

    /// Asks no question after `at`, on this resolver and all its clones (the HTTPS client's
    /// too), until the returned guard is dropped: the cold path's one deadline.
    pub fn cutoff_until(&self, at: Instant) -> CutoffGuard {
        self.cutoff.set(Some(at));
        CutoffGuard(Arc::clone(&self.cutoff))
    }

    /// Time left before the cutoff; `None` when there is none.
    pub fn remaining(&self) -> Option<Duration> {
        self.cutoff.remaining()
    }

    /// TXT records of `name`, each with its strings concatenated without separator
    /// (RFC 8461 §3.1, RFC 8460 §3). Bytes that are not UTF-8 become U+FFFD, which
    /// the US-ASCII parsers then reject.
    pub fn txt(&self, name: &str) -> Result<Answer<String>, DnsError> {
        self.lookup(name, RecordType::TXT, |data| match data {
            RData::TXT(txt) => {
                let bytes: Vec<u8> = txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect();
                Some(String::from_utf8_lossy(&bytes).into_owned())
            }
            _ => None,
        })
    }

    /// MX records of `name` as (preference, host without the trailing dot).
    pub fn mx(&self, name: &str) -> Result<Answer<(u16, String)>, DnsError> {
        self.lookup(name, RecordType::MX, |data| match data {
            RData::MX(mx) => Some((mx.preference, trim_dot(mx.exchange.to_ascii()))),
            _ => None,
        })
    }

    /// IPv4 and IPv6 addresses of `name`.
    pub fn addrs(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let v4 = self.lookup(name, RecordType::A, |d| match d {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        });
        let v6 = self.lookup(name, RecordType::AAAA, |d| match d {
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        });
        match (v4, v6) {
            (Ok(a), Ok(b)) => Ok(a.items.into_iter().chain(b.items).collect()),
            (Ok(a), Err(_)) if !a.items.is_empty() => Ok(a.items),
            (Err(_), Ok(b)) if !b.items.is_empty() => Ok(b.items),
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }

    /// TLSA records of `name` as (usage, selector, matching type) (RFC 6698 §2.1).
    pub fn tlsa(&self, name: &str) -> Result<Answer<(u8, u8, u8)>, DnsError> {
        self.lookup(name, RecordType::TLSA, |data| match data {
            RData::TLSA(t) => Some((u8::from(t.cert_usage), u8::from(t.selector), u8::from(t.matching))),
            _ => None,
        })
    }

    /// TLSA records of `name` with their association data (for `check`'s DANE probe).
    pub fn tlsa_data(&self, name: &str) -> Result<Answer<Tlsa>, DnsError> {
        self.lookup(name, RecordType::TLSA, |data| match data {
            RData::TLSA(t) => Some(Tlsa {
                usage: u8::from(t.cert_usage),
                selector: u8::from(t.selector),
                matching: u8::from(t.matching),
                data: t.cert_data.clone(),
            }),
            _ => None,
        })
    }

    /// Asks for `name`/`rtype` and maps each record of that type with `pick`.
    pub fn lookup<T>(
        &self,
        name: &str,
        rtype: RecordType,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Answer<T>, DnsError> {
        self.lookup_with(name, rtype, false, pick)
    }

    /// [`Resolver::lookup`] with the CD (checking disabled) bit: a validating resolver
    /// then answers even when validation fails, which tells a bogus answer (data with CD,
    /// SERVFAIL without) from an unreachable one.
    pub fn lookup_unchecked<T>(
        &self,
        name: &str,
        rtype: RecordType,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Answer<T>, DnsError> {
        self.lookup_with(name, rtype, true, pick)
    }

    fn lookup_with<T>(
        &self,
        name: &str,
        rtype: RecordType,
        checking_disabled: bool,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Answer<T>, DnsError> {
        let qname =
            Name::from_ascii(name).map_err(|e| DnsError::BadName(format!("bad name {name:?}: {e}")))?;
        let response = self.ask(&qname, rtype, checking_disabled)?;
        Ok(answer_of(&response, &qname, rtype, self.trust_ad && !checking_disabled, pick))
    }

    /// One question to the configured servers, in order, `attempts` rounds, within the
    /// deadline. Returns the first NOERROR or NXDOMAIN response.
    fn ask(&self, qname: &Name, rtype: RecordType, checking_disabled: bool) -> Result<Message, DnsError> {
        let start = Instant::now();
        let mut last = String::from("no server answered");
        for _ in 0..self.attempts {
            for server in &self.servers {
                let cutoff = self.remaining();
                if cutoff.is_some_and(|r| r.is_zero()) {
                    return Err(DnsError::Deadline(format!(
                        "{qname} {rtype}: not asked, the lookup's overall deadline has passed"
                    )));
                }
                let left = self.deadline.saturating_sub(start.elapsed());
                let left = cutoff.map_or(left, |r| r.min(left));
                if left.is_zero() {
                    return Err(DnsError::NoAnswer(format!(
                        "{qname} {rtype}: no answer within {:?} ({last})",
                        self.deadline
                    )));
                }
                match self.ask_server(*server, qname, rtype, checking_disabled, self.per_try.min(left)) {
                    Ok(m) => match m.metadata.response_code {
                        ResponseCode::NoError | ResponseCode::NXDomain => return Ok(m),
                        rc => last = format!("{server} answered {rc}"),
                    },
                    Err(e) => last = format!("{server}: {e}"),
                }
            }
        }
        Err(DnsError::NoAnswer(format!("{qname} {rtype}: {last}")))
    }

    fn ask_server(
        &self,
        server: SocketAddr,
        qname: &Name,
        rtype: RecordType,
        checking_disabled: bool,
        wait: Duration,
    ) -> Result<Message, String> {
        let mut id = [0u8; 2];
        getrandom::fill(&mut id).map_err(|e| format!("no random query id: {e}"))?;
        let id = u16::from_ne_bytes(id);
        let mut query = Message::new(id, MessageType::Query, OpCode::Query);
        query.metadata.recursion_desired = true;
        query.metadata.authentic_data = true;
        query.metadata.checking_disabled = checking_disabled;
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        query.set_edns(edns);
        query.add_query(Query::query(qname.clone(), rtype));
        let wire = query.to_vec().map_err(|e| e.to_string())?;

        let q = Question { wire: &wire, id, qname, rtype };
        let response = udp_exchange(server, &q, wait)?;
        if !response.metadata.truncation {
            return Ok(response);
        }
        tcp_exchange(server, &q, wait)
    }
}

/// At most this many CNAMEs are followed from the question's name (a loop ends there).
pub const MAX_CNAME_HOPS: usize = 8;

/// The records of `rtype` that answer `qname` in `response`: those owned by `qname`, or by
/// the end of the CNAME chain that starts there (RFC 8461 §3.1 follows CNAMEs). Records
/// owned by any other name are ignored, whatever the resolver put in the answer section.
/// Returns them, and whether a CNAME was followed.
pub fn chain_records<'m>(response: &'m Message, qname: &Name, rtype: RecordType) -> (Vec<&'m Record>, bool) {
    let mut name = qname.clone();
    let mut aliased = false;
    for _ in 0..=MAX_CNAME_HOPS {
        let here: Vec<&Record> = response.answers.iter().filter(|r| r.name.eq_ignore_root(&name)).collect();
        let wanted: Vec<&Record> = here.iter().copied().filter(|r| r.record_type() == rtype).collect();
        if !wanted.is_empty() {
            return (wanted, aliased);
        }
        match here.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if rtype != RecordType::CNAME => Some(target.0.clone()),
            _ => None,
        }) {
            Some(target) => {
                name = target;
                aliased = true;
            }
            None => return (Vec::new(), aliased),
        }
    }
    (Vec::new(), aliased)
}

/// What `response` (already matched to the question) says about `qname`/`rtype`. Pure: the
/// part of a lookup that reads bytes from the network (fuzzed, see `fuzz/`).
pub fn answer_of<T>(
    response: &Message,
    qname: &Name,
    rtype: RecordType,
    trust_ad: bool,
    pick: impl Fn(&RData) -> Option<T>,
) -> Answer<T> {
    let (used, aliased) = chain_records(response, qname, rtype);
    Answer {
        items: used.iter().filter_map(|r| pick(&r.data)).collect(),
        nxdomain: response.metadata.response_code == ResponseCode::NXDomain,
        aliased,
        authentic: trust_ad && response.metadata.authentic_data,
        ttl: used.iter().map(|r| r.ttl).min().unwrap_or(0),
    }
}

/// Decodes a response to the question (`id`, `qname`, `rtype`) from the wire, or says why
/// it is not one: undecodable, another id, not a response, another question.
pub fn decode_response(bytes: &[u8], id: u16, qname: &Name, rtype: RecordType) -> Result<Message, String> {
    let m = Message::from_vec(bytes).map_err(|e| format!("bad response: {e}"))?;
    let q = Question { wire: &[], id, qname, rtype };
    if q.answered_by(&m) { Ok(m) } else { Err("response does not match the question".into()) }
}

fn trim_dot(mut s: String) -> String {
    if s.ends_with('.') {
        s.pop();
    }
    s
}

/// One question on the wire, and what its answer must match.
struct Question<'a> {
    wire: &'a [u8],
    id: u16,
    qname: &'a Name,
    rtype: RecordType,
}

impl Question<'_> {
    /// Is `m` the answer to this question (id, QR bit, question section)?
    fn answered_by(&self, m: &Message) -> bool {
        m.metadata.id == self.id
            && m.metadata.message_type == MessageType::Response
            && m.queries.len() == 1
            && m.queries
                .first()
                .is_some_and(|q| q.query_type() == self.rtype && q.name().eq_ignore_root(self.qname))
    }
}

fn udp_exchange(server: SocketAddr, q: &Question<'_>, wait: Duration) -> Result<Message, String> {
    let bind: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(bind).map_err(|e| format!("udp: {e}"))?;
    // connect(): the kernel drops datagrams from any other address.
    sock.connect(server).map_err(|e| format!("udp: {e}"))?;
    sock.send(q.wire).map_err(|e| format!("udp: {e}"))?;
    let until = Instant::now() + wait;
    let mut buf = vec![0u8; usize::from(EDNS_PAYLOAD).max(512) + 512];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("udp: timed out after {wait:?}"));
        }
        sock.set_read_timeout(Some(left)).map_err(|e| format!("udp: {e}"))?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("udp: timed out after {wait:?}"));
            }
            Err(e) => return Err(format!("udp: {e}")),
        };
        // A stray or forged datagram is skipped, not taken as the answer.
        if let Ok(m) = decode_response(buf.get(..n).unwrap_or_default(), q.id, q.qname, q.rtype) {
            return Ok(m);
        }
    }
}

fn tcp_exchange(server: SocketAddr, q: &Question<'_>, wait: Duration) -> Result<Message, String> {
    let until = Instant::now() + wait;
    let mut s = TcpStream::connect_timeout(&server, wait).map_err(|e| format!("tcp: {e}"))?;
    let left = || until.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    s.set_write_timeout(Some(left())).map_err(|e| format!("tcp: {e}"))?;
    let len = u16::try_from(q.wire.len()).map_err(|_| "tcp: query too long".to_string())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(q.wire);
    s.write_all(&framed).map_err(|e| format!("tcp: {e}"))?;
    s.set_read_timeout(Some(left())).map_err(|e| format!("tcp: {e}"))?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(|e| format!("tcp: {e}"))?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.set_read_timeout(Some(left())).map_err(|e| format!("tcp: {e}"))?;
    s.read_exact(&mut buf).map_err(|e| format!("tcp: {e}"))?;
    decode_response(&buf, q.id, q.qname, q.rtype).map_err(|e| format!("tcp: {e}"))
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
