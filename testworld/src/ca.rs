//! The test CA (trusted: it is added to the system bundle inside the test namespace) and a
//! rogue CA (never trusted), and certificates they issue.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::Path;

pub struct Ca {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "exim-mta-sts test world");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2099, 1, 1);
    p
}

/// How a leaf certificate should be (wrong on purpose for fault tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    Good,
    WrongName,
    Untrusted,
    Expired,
}

impl Flavour {
    pub fn parse(s: &str) -> Option<Flavour> {
        Some(match s {
            "good" => Flavour::Good,
            "wrong-name" => Flavour::WrongName,
            "untrusted" => Flavour::Untrusted,
            "expired" => Flavour::Expired,
            _ => return None,
        })
    }
}

impl Ca {
    /// Loads the CA of `name` from `dir` (NAME.crt, NAME.key), creating it if absent.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Ca, String> {
        let crt = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        let params = ca_params(name);
        let key_pair = if key.exists() {
            KeyPair::from_pem(&std::fs::read_to_string(&key).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?
        } else {
            let k = KeyPair::generate().map_err(|e| e.to_string())?;
            std::fs::write(&key, k.serialize_pem()).map_err(|e| e.to_string())?;
            k
        };
        let cert = params.self_signed(&key_pair).map_err(|e| e.to_string())?;
        let cert_pem = if crt.exists() {
            std::fs::read_to_string(&crt).map_err(|e| e.to_string())?
        } else {
            std::fs::write(&crt, cert.pem()).map_err(|e| e.to_string())?;
            cert.pem()
        };
        let cert_der = pem_to_der(&cert_pem).ok_or("bad CA certificate file")?;
        Ok(Ca { cert_pem, cert_der, issuer: Issuer::new(params, key_pair) })
    }

    /// A leaf certificate for `name` (its SAN), as (certificate PEM, key PEM, DER).
    pub fn issue(&self, name: &str, flavour: Flavour) -> Result<Leaf, String> {
        let san = match flavour {
            Flavour::WrongName => format!("wrong-name.{name}"),
            _ => name.to_owned(),
        };
        let mut p = CertificateParams::new(vec![san]).map_err(|e| e.to_string())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        p.distinguished_name = dn;
        p.not_before = rcgen::date_time_ymd(2021, 1, 1);
        p.not_after = match flavour {
            Flavour::Expired => rcgen::date_time_ymd(2022, 1, 1),
            _ => rcgen::date_time_ymd(2098, 1, 1),
        };
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = p.signed_by(&key, &self.issuer).map_err(|e| e.to_string())?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).ok().map(|c| c.to_vec())
}
