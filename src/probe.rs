//! `exim-mta-sts check`'s probe of an MX host (issue 11): SMTP on port 25, `EHLO`,
//! `STARTTLS` with SNI, and the certificate verified as the enforce transport verifies it
//! (the system's roots, the MX host name with RFC 8461 §4.2's wildcard rule, the validity
//! dates), giving the RFC 8460 result type a delivery would record ([`TlsFailure`], turned
//! into its type by [`crate::cause::Cause::verdict`]). Nothing is sent but `EHLO`,
//! `STARTTLS` and `QUIT`.

use crate::cause::TlsFailure;
use crate::dns::{Resolver, Tlsa};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How a probe of one MX host went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// TLS as the policy requires: the protocol and cipher suite.
    Ok { address: String, tls: String },
    /// TLS fell short: how, and the details.
    Failed { address: String, failure: TlsFailure, reason: String },
    /// No SMTP session (no address, no connection, no greeting): nothing TLS can be said of.
    Unreachable(String),
}

/// Longest SMTP reply accepted, in bytes.
const MAX_REPLY: usize = 16 << 10;

/// How the probe checks the certificate.
#[derive(Clone, Copy)]
enum Check<'a> {
    /// As the enforce transport: the system's roots, the MX name, the dates.
    WebPki,
    /// As Exim's DANE: a TLSA record must match the chain (RFC 7672).
    Dane(&'a [Tlsa]),
}

/// Probes `host` (A-label form), giving up at `deadline`.
pub fn probe(resolver: &Resolver, host: &str, deadline: Instant) -> Probe {
    probe_with(resolver, host, deadline, Check::WebPki)
}

/// Probes the DANE host `host` against its (DNSSEC-authenticated) TLSA records: usable
/// DANE-EE(3) records are matched against the server's certificate, DANE-TA(2) ones against
/// the rest of its chain (RFC 7672 §3.1; the name check DANE-TA also asks is not made here).
pub fn probe_dane(resolver: &Resolver, host: &str, deadline: Instant, tlsa: &[Tlsa]) -> Probe {
    probe_with(resolver, host, deadline, Check::Dane(tlsa))
}

fn probe_with(resolver: &Resolver, host: &str, deadline: Instant, check: Check<'_>) -> Probe {
    let addrs = match resolver.addrs(host) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => return Probe::Unreachable(format!("{host} has no address")),
        Err(e) => return Probe::Unreachable(e.to_string()),
    };
    let mut last = String::new();
    for ip in addrs.into_iter().take(4) {
        let addr = SocketAddr::new(ip, 25);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Probe::Unreachable(format!("not probed within the deadline ({last})"));
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(sock) => return session(sock, host, &addr.ip().to_string(), deadline, check),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Probe::Unreachable(last)
}

/// Reads one SMTP reply: its code and its lines' text.
fn reply(r: &mut impl BufRead) -> Result<(u16, Vec<String>), String> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = r.by_ref().take(1024).read_line(&mut line).map_err(|e| e.to_string())?;
        total += n;
        if n == 0 || total > MAX_REPLY {
            return Err("no complete SMTP reply".to_owned());
        }
        let line = line.trim_end();
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).ok_or("not an SMTP reply")?;
        lines.push(line.get(4..).unwrap_or("").to_owned());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, lines));
        }
    }
}

fn session(sock: TcpStream, host: &str, address: &str, deadline: Instant, check: Check<'_>) -> Probe {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    let _ = sock.set_read_timeout(Some(left));
    let _ = sock.set_write_timeout(Some(left));
    let failed = |failure, reason: String| Probe::Failed { address: address.to_owned(), failure, reason };
    let Ok(mut writer) = sock.try_clone() else {
        return Probe::Unreachable(format!("{address}: cannot use the connection"));
    };
    let mut reader = BufReader::new(sock);
    let mut say = |line: &str| writer.write_all(format!("{line}\r\n").as_bytes()).map_err(|e| e.to_string());
    let greeting = reply(&mut reader);
    let ehlo = match greeting {
        Ok((220, _)) => say(&format!("EHLO {}", local_name())).and_then(|()| reply(&mut reader)),
        Ok((code, text)) => {
            return Probe::Unreachable(format!("{address}: greeting {code} {}", text.join(" ")));
        }
        Err(e) => return Probe::Unreachable(format!("{address}: {e}")),
    };
    let offers_starttls = match ehlo {
        Ok((250, lines)) => lines
            .iter()
            .any(|l| l.split_whitespace().next().is_some_and(|k| k.eq_ignore_ascii_case("STARTTLS"))),
        Ok((code, text)) => {
            return Probe::Unreachable(format!("{address}: EHLO answered {code} {}", text.join(" ")));
        }
        Err(e) => return Probe::Unreachable(format!("{address}: {e}")),
    };
    if !offers_starttls {
        let _ = say("QUIT");
        return failed(TlsFailure::NoStarttls, format!("{address}: STARTTLS not in the EHLO reply"));
    }
    match say("STARTTLS").and_then(|()| reply(&mut reader)) {
        Ok((220, _)) => {}
        Ok((code, text)) => {
            return failed(
                TlsFailure::NoStarttls,
                format!("{address}: STARTTLS answered {code} {}", text.join(" ")),
            );
        }
        Err(e) => return Probe::Unreachable(format!("{address}: {e}")),
    }
    if !reader.buffer().is_empty() {
        return failed(TlsFailure::Other, format!("{address}: data sent before the TLS handshake"));
    }
    match handshake(reader.into_inner(), host, check) {
        Ok(tls) => Probe::Ok { address: address.to_owned(), tls },
        Err((failure, reason)) => failed(failure, format!("{address}: {reason}")),
    }
}

/// The TLS handshake (SNI `host`), the certificate checked as `check` says.
fn handshake(sock: TcpStream, host: &str, check: Check<'_>) -> Result<String, (TlsFailure, String)> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let other = |e: String| (TlsFailure::Other, e);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| other(e.to_string()))?;
    let capture = Arc::new(Capture { provider, chain: Mutex::new(Vec::new()) });
    let config = match check {
        Check::WebPki => {
            builder.with_platform_verifier().map_err(|e| other(e.to_string()))?.with_no_client_auth()
        }
        Check::Dane(_) => {
            builder.dangerous().with_custom_certificate_verifier(capture.clone()).with_no_client_auth()
        }
    };
    let name = ServerName::try_from(host.to_owned()).map_err(|e| other(format!("{host}: {e}")))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| other(e.to_string()))?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            return Err(classify(&e));
        }
    }
    let _ = tls.write_all(b"QUIT\r\n");
    let _ = tls.flush();
    let version = tls.conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
    let suite = tls.conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
    if let Check::Dane(records) = check {
        let chain = capture.chain.lock().map(|c| c.clone()).unwrap_or_default();
        if !tlsa_matches(&chain, records) {
            return Err((
                TlsFailure::TlsaMismatch,
                format!("no TLSA record matches the certificate ({} records)", records.len()),
            ));
        }
        return Ok(format!("{version} {suite}, TLSA match"));
    }
    Ok(format!("{version} {suite}"))
}

/// Keeps the chain the server presented (DANE decides after the handshake); handshake
/// signatures are still verified.
#[derive(Debug)]
struct Capture {
    provider: Arc<CryptoProvider>,
    chain: Mutex<Vec<Vec<u8>>>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut c) = self.chain.lock() {
            c.push(end_entity.to_vec());
            c.extend(intermediates.iter().map(|i| i.to_vec()));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Does a usable TLSA record match the chain (end entity first)? RFC 7672 §3.1: DANE-EE(3)
/// on the end entity, DANE-TA(2) on the rest; selector 0 (certificate) or 1 (SPKI);
/// matching 0 (exact), 1 (SHA-256) or 2 (SHA-512).
pub fn tlsa_matches(chain: &[Vec<u8>], records: &[Tlsa]) -> bool {
    use ring::digest::{SHA256, SHA512, digest};
    records.iter().any(|r| {
        let certs = match r.usage {
            3 => chain.get(..1),
            2 => chain.get(1..),
            _ => None,
        };
        certs.unwrap_or_default().iter().any(|der| {
            let selected = match r.selector {
                0 => der.clone(),
                1 => match x509_parser::parse_x509_certificate(der) {
                    Ok((_, c)) => c.tbs_certificate.subject_pki.raw.to_vec(),
                    Err(_) => return false,
                },
                _ => return false,
            };
            let value = match r.matching {
                0 => selected,
                1 => digest(&SHA256, &selected).as_ref().to_vec(),
                2 => digest(&SHA512, &selected).as_ref().to_vec(),
                _ => return false,
            };
            value == r.data
        })
    })
}

/// Sorts a handshake error into what RFC 8460 §4.3.1 calls it.
fn classify(e: &std::io::Error) -> (TlsFailure, String) {
    use rustls::CertificateError as C;
    let Some(r) = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) else {
        return (TlsFailure::Other, e.to_string());
    };
    let failure = match r {
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. } => {
                TlsFailure::Expired
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsFailure::HostMismatch,
            C::UnknownIssuer | C::BadSignature | C::UnhandledCriticalExtension => TlsFailure::NotTrusted,
            _ => TlsFailure::Other,
        },
        _ => TlsFailure::Other,
    };
    (failure, r.to_string())
}

/// This machine's name for `EHLO`.
fn local_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
        .unwrap_or_else(|| "localhost".to_owned())
}
