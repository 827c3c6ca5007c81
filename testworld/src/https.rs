//! HTTPS policy hosts: one TLS listener serves every `mta-sts.*` name, choosing the
//! certificate by SNI (issued on the fly by the test CA) and the response from
//! `WORLD/https/<sni>/`:
//! - `body`: the response body (absent: 404);
//! - `meta`: optional `key=value` lines: `status=`, `content_type=` (default text/plain;
//!   `none` sends no header), `location=`, `delay_ms=` (before the response),
//!   `trickle_ms=` (one body byte per interval), `pad_to=` (body padded with `#` lines
//!   to this many bytes), `chunked=1`, `cert=good|wrong-name|untrusted|expired`.
//!
//! A POST (a TLS report) is kept in `WORLD/https/<sni>/posts/`.
//!
//! Each request is appended to `WORLD/https/<sni>/requests`, so tests can count fetches,
//! and the uid owning the client's socket (from `/proc/net/tcp`: who really connected,
//! whatever the client says) to `WORLD/https/<sni>/clients`.

use crate::ca::{Ca, Flavour};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::io::{Read, Write};

mod rw {
    /// A stream that can be read, written and flushed.
    pub trait ReadWriteFlush: std::io::Read + std::io::Write {}
    impl<T: std::io::Read + std::io::Write> ReadWriteFlush for T {}
}
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn meta(dir: &Path) -> HashMap<String, String> {
    std::fs::read_to_string(dir.join("meta"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())))
        .collect()
}

pub struct Certs {
    root: PathBuf,
    good: Ca,
    rogue: Ca,
    provider: Arc<CryptoProvider>,
    cache: Mutex<HashMap<(String, Flavour), Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Certs")
    }
}

impl Certs {
    fn key_for(&self, name: &str, flavour: Flavour) -> Option<Arc<CertifiedKey>> {
        let mut cache = self.cache.lock().ok()?;
        if let Some(k) = cache.get(&(name.to_owned(), flavour)) {
            return Some(k.clone());
        }
        let ca = if flavour == Flavour::Untrusted { &self.rogue } else { &self.good };
        let leaf = ca.issue(name, flavour).ok()?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key_der));
        let signing = self.provider.key_provider.load_private_key(key).ok()?;
        let chain = vec![CertificateDer::from(leaf.cert_der), CertificateDer::from(ca.cert_der.clone())];
        let ck = Arc::new(CertifiedKey::new(chain, signing));
        cache.insert((name.to_owned(), flavour), ck.clone());
        Some(ck)
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = hello.server_name()?.to_ascii_lowercase();
        let m = meta(&self.root.join(&name));
        let flavour = m.get("cert").and_then(|c| Flavour::parse(c)).unwrap_or(Flavour::Good);
        self.key_for(&name, flavour)
    }
}

/// The uid owning the local socket bound to `peer` (a client on this machine), from the
/// kernel's socket table (`/proc/net/tcp`, or `tcp6`).
fn socket_uid(peer: SocketAddr) -> Option<u32> {
    let (table, local) = match peer {
        SocketAddr::V4(a) => {
            ("/proc/net/tcp", format!("{:08X}:{:04X}", u32::from_le_bytes(a.ip().octets()), a.port()))
        }
        SocketAddr::V6(a) => {
            let words: String = a
                .ip()
                .octets()
                .chunks(4)
                .map(|w| format!("{:08X}", u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
                .collect();
            ("/proc/net/tcp6", format!("{words}:{:04X}", a.port()))
        }
    };
    let text = std::fs::read_to_string(table).ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&local.as_str())).then(|| f.get(7)?.parse().ok())?
    })
}

/// A POST (a TLS report, RFC 8460 §5.4): the body (`Content-Length`, at most 1 MB) is kept
/// as `WORLD/https/<sni>/posts/N` with its path and Content-Type in `N.meta`; 201 answers.
fn post(tls: &mut impl rw::ReadWriteFlush, head: &str, dir: &Path, path: &str) -> Option<()> {
    let header = |name: &str| {
        head.lines().find_map(|l| {
            l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_owned())
        })
    };
    let len: usize = header("content-length")?.parse().ok().filter(|n| *n <= 1 << 20)?;
    let mut body = vec![0u8; len];
    tls.read_exact(&mut body).ok()?;
    let posts = dir.join("posts");
    std::fs::create_dir_all(&posts).ok()?;
    let n = std::fs::read_dir(&posts).map(|d| d.count()).unwrap_or(0) / 2;
    std::fs::write(
        posts.join(format!("{n}.meta")),
        format!("{path}\n{}\n", header("content-type").unwrap_or_default()),
    )
    .ok()?;
    std::fs::write(posts.join(n.to_string()), body).ok()?;
    tls.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
    tls.flush().ok()
}

fn handle(stream: TcpStream, config: Arc<ServerConfig>, root: PathBuf) -> Option<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let client_uid = stream.peer_addr().ok().and_then(socket_uid);
    let conn = rustls::ServerConnection::new(config).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        if tls.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let sni = tls.conn.server_name()?.to_ascii_lowercase();
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let dir = root.join(&sni);
    if head.starts_with("POST ") {
        return post(&mut tls, &head, &dir, &path);
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("requests")) {
        let _ = writeln!(f, "GET {path}");
    }
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("clients")) {
        let uid = client_uid.map_or_else(|| "unknown".to_owned(), |u| u.to_string());
        let _ = writeln!(f, "uid={uid}");
    }
    let m = meta(&dir);
    let body_file = std::fs::read(dir.join("body")).ok();
    let (status, mut body) = match (&body_file, path.as_str()) {
        (Some(b), "/.well-known/mta-sts.txt") => {
            (m.get("status").and_then(|s| s.parse().ok()).unwrap_or(200u16), b.clone())
        }
        _ => (404, b"not found\n".to_vec()),
    };
    if let Some(n) = m.get("pad_to").and_then(|n| n.parse::<usize>().ok()) {
        while body.len() < n {
            body.extend_from_slice(b"# padding padding padding padding padding padding padding\n");
        }
    }
    if let Some(ms) = m.get("delay_ms").and_then(|n| n.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let chunked = m.get("chunked").is_some_and(|v| v == "1");
    let mut resp = format!("HTTP/1.1 {status} Status\r\nConnection: close\r\n");
    match m.get("content_type").map(String::as_str) {
        Some("none") => {}
        Some(ct) => resp.push_str(&format!("Content-Type: {ct}\r\n")),
        None => resp.push_str("Content-Type: text/plain\r\n"),
    }
    if let Some(loc) = m.get("location") {
        resp.push_str(&format!("Location: {loc}\r\n"));
    }
    if chunked {
        resp.push_str("Transfer-Encoding: chunked\r\n\r\n");
    } else {
        resp.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    }
    tls.write_all(resp.as_bytes()).ok()?;
    if let Some(ms) = m.get("trickle_ms").and_then(|n| n.parse().ok()) {
        for b in &body {
            tls.write_all(&[*b]).ok()?;
            tls.flush().ok()?;
            std::thread::sleep(Duration::from_millis(ms));
        }
    } else if chunked {
        for chunk in body.chunks(4096) {
            tls.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).ok()?;
            tls.write_all(chunk).ok()?;
            tls.write_all(b"\r\n").ok()?;
        }
        tls.write_all(b"0\r\n\r\n").ok()?;
    } else {
        tls.write_all(&body).ok()?;
    }
    tls.flush().ok()?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Some(())
}

pub fn start(addr: SocketAddr, root: PathBuf, good: Ca, rogue: Ca) -> std::io::Result<()> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = Arc::new(Certs {
        root: root.clone(),
        good,
        rogue,
        provider: provider.clone(),
        cache: Mutex::new(HashMap::new()),
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    let config = Arc::new(config);
    let listener = TcpListener::bind(addr)?;
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let (c, r) = (config.clone(), root.clone());
            std::thread::spawn(move || handle(s, c, r));
        }
    });
    Ok(())
}
