//! A real DNS server (UDP and TCP) answering from the zone files in `WORLD/dns/*.zone`,
//! read afresh for every question so that tests can add their own names at any time.
//!
//! One record per line: `NAME TYPE DATA`, where TYPE is A, AAAA, TXT (one or more
//! "quoted" strings), MX (`PREF HOST`), CNAME or TLSA (`USAGE SELECTOR MATCHING HEX`).
//! Faults: `NAME SERVFAIL`, `NAME REFUSED`, `NAME TIMEOUT` (never answered). `NAME AD` sets
//! the AD bit on answers for NAME and below (a stand-in for validation; see [`Entry`]).
//! Lines starting with `#` are comments. Every answer has TTL 60. Every question is logged
//! to `WORLD/dns/queries.log` as `NAME TYPE`.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};

const TTL: u32 = 60;

#[derive(Debug, Clone)]
enum Entry {
    Record(String, RData),
    Fault(String, Fault),
    /// `NAME AD`: answers for NAME and the names under it carry the AD bit. A stand-in for
    /// a validating resolver (this server signs nothing), for tests that need DANE lookups
    /// to happen but test something else (the cold path's deadline); DNSSEC itself is
    /// tested against the real signed world (scripts/world-dnssec).
    Authentic(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    ServFail,
    Refused,
    Timeout,
}

fn unquote_strings(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let body = rest.strip_prefix('"')?;
        let mut cur = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => cur.push(chars.next()?.1),
                '"' => break i,
                c => cur.push(c),
            }
        };
        out.push(cur);
        rest = body.get(end + 1..)?.trim_start();
    }
    Some(out)
}

fn parse_line(line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest) = line.split_once(char::is_whitespace)?;
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let rest = rest.trim();
    let (rtype, data) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    let data = data.trim();
    let rdata = match rtype.to_ascii_uppercase().as_str() {
        "SERVFAIL" => return Some(Entry::Fault(name, Fault::ServFail)),
        "REFUSED" => return Some(Entry::Fault(name, Fault::Refused)),
        "TIMEOUT" => return Some(Entry::Fault(name, Fault::Timeout)),
        "AD" => return Some(Entry::Authentic(name)),
        "A" => RData::A(A(data.parse().ok()?)),
        "AAAA" => RData::AAAA(AAAA(data.parse().ok()?)),
        "TXT" => RData::TXT(TXT::new(unquote_strings(data)?)),
        "CNAME" => RData::CNAME(CNAME(Name::from_ascii(format!("{}.", data.trim_end_matches('.'))).ok()?)),
        "MX" => {
            let (pref, host) = data.split_once(char::is_whitespace)?;
            RData::MX(MX::new(
                pref.parse().ok()?,
                Name::from_ascii(format!("{}.", host.trim().trim_end_matches('.'))).ok()?,
            ))
        }
        "TLSA" => {
            let f: Vec<&str> = data.split_whitespace().collect();
            let [u, s, m, hex] = f.as_slice() else { return None };
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            RData::TLSA(hickory_proto::rr::rdata::TLSA::new(
                u.parse::<u8>().ok()?.into(),
                s.parse::<u8>().ok()?.into(),
                m.parse::<u8>().ok()?.into(),
                bytes,
            ))
        }
        _ => return None,
    };
    Some(Entry::Record(name, rdata))
}

fn load(dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "zone"))
        .collect();
    files.sort();
    for f in files {
        if let Ok(text) = std::fs::read_to_string(&f) {
            out.extend(text.lines().filter_map(parse_line));
        }
    }
    out
}

/// Appends `NAME TYPE` to `WORLD/dns/queries.log`, one line per question received, so that
/// tests can count the DNS queries a domain costs.
fn log_query(zones: &Path, name: &str, rtype: RecordType) {
    use std::io::Write as _;
    let line = format!("{} {rtype}\n", name.trim_end_matches('.').to_ascii_lowercase());
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(zones.join("queries.log")) {
        let _ = f.write_all(line.as_bytes());
    }
}

/// Builds the response to `query`, or `None` to stay silent.
fn respond(zones: &Path, query: &Message) -> Option<Message> {
    let q = query.queries.first()?;
    log_query(zones, &q.name().to_ascii(), q.query_type());
    let qname = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let qtype = q.query_type();
    let entries = load(zones);
    let mut resp = Message::response(query.metadata.id, OpCode::Query);
    resp.metadata.message_type = MessageType::Response;
    resp.metadata.recursion_desired = query.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.authoritative = true;
    resp.add_query(q.clone());
    if let Some(edns) = query.edns.as_ref() {
        let mut e = hickory_proto::op::Edns::new();
        e.set_max_payload(edns.max_payload().max(512));
        resp.set_edns(e);
    }

    resp.metadata.authentic_data = entries
        .iter()
        .any(|e| matches!(e, Entry::Authentic(n) if qname == *n || qname.ends_with(&format!(".{n}"))));
    let mut name = qname.clone();
    for _ in 0..8 {
        for e in &entries {
            if let Entry::Fault(n, f) = e
                && *n == name
            {
                return match f {
                    Fault::Timeout => None,
                    Fault::ServFail => Some(with_rcode(resp, ResponseCode::ServFail)),
                    Fault::Refused => Some(with_rcode(resp, ResponseCode::Refused)),
                };
            }
        }
        let here: Vec<&RData> = entries
            .iter()
            .filter_map(|e| match e {
                Entry::Record(n, d) if *n == name => Some(d),
                _ => None,
            })
            .collect();
        let owner = Name::from_ascii(format!("{name}.")).ok()?;
        let wanted: Vec<&RData> = here.iter().copied().filter(|d| d.record_type() == qtype).collect();
        if !wanted.is_empty() {
            for d in wanted {
                resp.add_answer(Record::from_rdata(owner.clone(), TTL, d.clone()));
            }
            return Some(resp);
        }
        if let Some(RData::CNAME(target)) =
            here.iter().find(|d| d.record_type() == RecordType::CNAME).copied()
            && qtype != RecordType::CNAME
        {
            resp.add_answer(Record::from_rdata(owner, TTL, RData::CNAME(target.clone())));
            name = target.0.to_ascii().trim_end_matches('.').to_ascii_lowercase();
            continue;
        }
        let exists = !here.is_empty()
            || entries.iter().any(|e| matches!(e, Entry::Record(n, _) if n.ends_with(&format!(".{name}"))));
        if !exists {
            resp.metadata.response_code = ResponseCode::NXDomain;
        }
        return Some(resp);
    }
    Some(with_rcode(resp, ResponseCode::ServFail))
}

fn with_rcode(mut m: Message, rc: ResponseCode) -> Message {
    m.answers.clear();
    m.metadata.response_code = rc;
    m
}

pub fn serve_udp(sock: UdpSocket, zones: PathBuf) {
    let mut buf = [0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf) else { continue };
        let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
        let Some(resp) = respond(&zones, &query) else { continue };
        let limit = query.edns.as_ref().map(|e| usize::from(e.max_payload())).unwrap_or(512).max(512);
        let mut wire = resp.to_vec().unwrap_or_default();
        if wire.len() > limit {
            let t = resp.truncate();
            let mut t = t;
            t.metadata.truncation = true;
            wire = t.to_vec().unwrap_or_default();
        }
        let _ = sock.send_to(&wire, peer);
    }
}

fn serve_tcp_conn(mut s: TcpStream, zones: PathBuf) {
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut len = [0u8; 2];
    while s.read_exact(&mut len).is_ok() {
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if s.read_exact(&mut buf).is_err() {
            return;
        }
        let Ok(query) = Message::from_vec(&buf) else { return };
        let Some(resp) = respond(&zones, &query) else { return };
        let wire = resp.to_vec().unwrap_or_default();
        let mut out = (wire.len() as u16).to_be_bytes().to_vec();
        out.extend(wire);
        if s.write_all(&out).is_err() {
            return;
        }
    }
}

pub fn serve_tcp(l: TcpListener, zones: PathBuf) {
    for s in l.incoming().flatten() {
        let z = zones.clone();
        std::thread::spawn(move || serve_tcp_conn(s, z));
    }
}

pub fn start(addr: SocketAddr, zones: PathBuf) -> std::io::Result<()> {
    let udp = UdpSocket::bind(addr)?;
    let tcp = TcpListener::bind(addr)?;
    let z = zones.clone();
    std::thread::spawn(move || serve_udp(udp, z));
    std::thread::spawn(move || serve_tcp(tcp, zones));
    Ok(())
}
