//! The certificate store: TLS certificates for the listeners (and later the console and the
//! Microsoft 365 app), by alias. Certificates are kept as PEM; private keys only sealed with the
//! master key (`certs/<alias>.key.sealed`), never in the clear on disk.

use std::path::PathBuf;

use coffer_store::MasterKey;
use serde::Serialize;
use sha2::Digest;

use crate::ArchiveError;

#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub common_name: String,
    pub organization: Option<String>,
    pub unit: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    pub alias: String,
    pub subject: String,
    pub not_before: String,
    pub not_after: String,
    pub sha1: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyKind {
    #[default]
    EcdsaP256,
    Rsa2048,
}

pub struct CertStore {
    dir: PathBuf,
    master: MasterKey,
}

impl CertStore {
    pub(crate) fn new(dir: PathBuf, master: MasterKey) -> CertStore {
        CertStore { dir, master }
    }

    /// A new self-signed certificate (ECDSA P-256, valid two years) for `subject.common_name`.
    pub fn generate(&self, alias: &str, subject: &Subject) -> Result<CertInfo, ArchiveError> {
        self.generate_with(alias, subject, KeyKind::EcdsaP256)
    }

    /// A new self-signed certificate with the given kind of key (Entra ID app registrations take
    /// RSA keys only).
    pub fn generate_with(&self, alias: &str, subject: &Subject, kind: KeyKind) -> Result<CertInfo, ArchiveError> {
        check_alias(alias)?;
        let bad = |e: rcgen::Error| ArchiveError::Invalid(format!("cannot make the certificate: {e}"));
        let mut names = vec![subject.common_name.clone()];
        if subject.common_name == "localhost" {
            // Clients that connect to the loopback address by number still verify.
            names.extend(["127.0.0.1".to_owned(), "::1".to_owned()]);
        }
        let mut params = rcgen::CertificateParams::new(names).map_err(bad)?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, subject.common_name.as_str());
        for (ty, value) in [
            (rcgen::DnType::OrganizationName, &subject.organization),
            (rcgen::DnType::OrganizationalUnitName, &subject.unit),
            (rcgen::DnType::LocalityName, &subject.city),
            (rcgen::DnType::StateOrProvinceName, &subject.state),
            (rcgen::DnType::CountryName, &subject.country),
        ] {
            if let Some(v) = value {
                dn.push(ty, v.as_str());
            }
        }
        params.distinguished_name = dn;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(730);
        let key = match kind {
            KeyKind::EcdsaP256 => rcgen::KeyPair::generate().map_err(bad)?,
            KeyKind::Rsa2048 => {
                use rsa::pkcs8::EncodePrivateKey;
                let rsa = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                    .map_err(|e| ArchiveError::Internal(format!("RSA key generation: {e}")))?;
                let pem = rsa
                    .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
                    .map_err(|e| ArchiveError::Internal(format!("RSA key encoding: {e}")))?;
                rcgen::KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).map_err(bad)?
            }
        };
        let cert = params.self_signed(&key).map_err(bad)?;
        self.save(alias, cert.pem().as_bytes(), key.serialize_pem().as_bytes())
    }

    /// Imports a PEM file holding the certificate (chain) and its private key.
    pub fn import_pem(&self, alias: &str, pem: &[u8]) -> Result<CertInfo, ArchiveError> {
        check_alias(alias)?;
        let text = std::str::from_utf8(pem).map_err(|_| ArchiveError::Invalid("the file is not PEM text".into()))?;
        let mut certs = String::new();
        let mut key = None;
        for (label, block) in pem_blocks(text) {
            if label == "CERTIFICATE" {
                certs.push_str(&block);
            } else if label.ends_with("PRIVATE KEY") {
                key = Some(block);
            }
        }
        let key = key.ok_or_else(|| {
            ArchiveError::Invalid(
                "no private key in the file: give one PEM file with the certificate and its key".into(),
            )
        })?;
        if certs.is_empty() {
            return Err(ArchiveError::Invalid("no certificate in the file".into()));
        }
        self.save(alias, certs.as_bytes(), key.as_bytes())
    }

    /// Imports a PKCS#12 (.p12/.pfx) file: its private key and certificate chain.
    pub fn import_pkcs12(&self, alias: &str, data: &[u8], password: &str) -> Result<CertInfo, ArchiveError> {
        check_alias(alias)?;
        let store = p12_keystore::KeyStore::from_pkcs12(data, password, p12_keystore::Pkcs12ImportPolicy::Relaxed)
            .map_err(|e| ArchiveError::Invalid(format!("cannot read the PKCS#12 file (wrong password?): {e}")))?;
        let (_, chain) = store
            .private_key_chain()
            .ok_or_else(|| ArchiveError::Invalid("the PKCS#12 file holds no private key with a certificate".into()))?;
        let certs: String =
            chain.certs().iter().map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.as_der().to_vec()))).collect();
        let key = pem::encode(&pem::Pem::new("PRIVATE KEY", chain.key().as_der().to_vec()));
        self.save(alias, certs.as_bytes(), key.as_bytes())
    }

    pub fn list(&self) -> Result<Vec<CertInfo>, ArchiveError> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        let mut names: Vec<String> =
            entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".crt.pem").map(str::to_owned)).collect();
        names.sort();
        for alias in names {
            out.push(info(&alias, self.certificate_pem(&alias)?.as_bytes())?);
        }
        Ok(out)
    }

    /// The public certificate chain (PEM).
    pub fn certificate_pem(&self, alias: &str) -> Result<String, ArchiveError> {
        let path = self.dir.join(format!("{alias}.crt.pem"));
        std::fs::read_to_string(&path)
            .map_err(|_| ArchiveError::Invalid(format!("no certificate {alias:?}; `coffer cert list` shows them")))
    }

    /// The (first) certificate, DER-encoded.
    pub fn certificate_der(&self, alias: &str) -> Result<Vec<u8>, ArchiveError> {
        let pem = self.certificate_pem(alias)?;
        pem::parse_many(pem.as_bytes())
            .ok()
            .and_then(|blocks| blocks.into_iter().find(|b| b.tag() == "CERTIFICATE"))
            .map(|b| b.into_contents())
            .ok_or_else(|| ArchiveError::Invalid(format!("certificate {alias:?} is not readable PEM")))
    }

    /// The private key (PEM), unsealed in memory for the TLS stack.
    pub fn private_key_pem(&self, alias: &str) -> Result<Vec<u8>, ArchiveError> {
        let path = self.dir.join(format!("{alias}.key.sealed"));
        let sealed = std::fs::read(&path).map_err(|e| ArchiveError::Io(path.display().to_string(), e))?;
        Ok(self.master.open_secret(&format!("cert:{alias}"), &sealed)?)
    }

    fn save(&self, alias: &str, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertInfo, ArchiveError> {
        let certificate = info(alias, cert_pem)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| ArchiveError::Io(self.dir.display().to_string(), e))?;
        let write = |name: String, bytes: &[u8]| {
            let path = self.dir.join(name);
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes)
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| ArchiveError::Io(path.display().to_string(), e))
        };
        write(format!("{alias}.key.sealed"), &self.master.seal_secret(&format!("cert:{alias}"), key_pem))?;
        write(format!("{alias}.crt.pem"), cert_pem)?;
        Ok(certificate)
    }
}

/// The `-----BEGIN X-----` … `-----END X-----` blocks of a PEM text, with their labels.
fn pem_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(label) = line.strip_prefix("-----BEGIN ").and_then(|l| l.strip_suffix("-----")) {
            current = Some((label.to_owned(), format!("{line}\n")));
        } else if let Some((_, block)) = current.as_mut() {
            block.push_str(line);
            block.push('\n');
            if line.starts_with("-----END ") {
                blocks.extend(current.take());
            }
        }
    }
    blocks
}

fn check_alias(alias: &str) -> Result<(), ArchiveError> {
    let ok = !alias.is_empty()
        && alias.len() <= 64
        && alias.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !alias.starts_with('.');
    if ok { Ok(()) } else { Err(ArchiveError::Invalid("an alias is 1-64 letters, digits, '-', '_' or '.'".into())) }
}

fn info(alias: &str, pem: &[u8]) -> Result<CertInfo, ArchiveError> {
    let bad = || ArchiveError::Invalid(format!("certificate {alias:?} is not a readable PEM X.509 certificate"));
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| bad())?;
    let cert = block.parse_x509().map_err(|_| bad())?;
    let date = |t: x509_parser::time::ASN1Time| crate::service::rfc3339(t.timestamp());
    Ok(CertInfo {
        alias: alias.to_owned(),
        subject: cert.subject().to_string(),
        not_before: date(cert.validity().not_before),
        not_after: date(cert.validity().not_after),
        sha1: hex::encode(sha1::Sha1::digest(&block.contents)),
        sha256: hex::encode(sha2::Sha256::digest(&block.contents)),
    })
}
