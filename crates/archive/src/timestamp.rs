//! Trusted timestamps (RFC 3161). The chain head of each open volume is sent to a time-stamping
//! authority when a segment has been sealed and at least every `every_seconds`; the token that
//! comes back is kept as a record of the volume ([`coffer_store::Timestamp`]). A token proves
//! that every record up to the one it covers existed, exactly as it is, at the token's time:
//! altering one afterwards breaks the chain the TSA signed.
//!
//! `verify` checks each token here: its imprint is the chain head the store found at that record,
//! the signature over its signed attributes holds under the signer's certificate, and that
//! certificate is a time-stamping certificate that chains to the configured CA bundle and was valid
//! at the token's time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier};
use der::asn1::{Int, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use serde::{Deserialize, Serialize};
use x509_cert::Certificate;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

use crate::ArchiveError;
use coffer_store::{Store, StoreError, Timestamp};

/// `[timestamp]` in `coffer.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TimestampConfig {
    /// The TSA's URL (RFC 3161 over HTTP). Unset: no timestamps are taken.
    pub tsa_url: Option<String>,
    /// PEM bundle of the CA certificates the TSA's certificate must chain to; `verify` needs it
    /// to check tokens, and tokens that do not check out are not stored.
    pub ca_file: Option<PathBuf>,
    /// Each open volume's chain head is timestamped at least this often while it grows, and
    /// whenever one of its segments has been sealed.
    pub every_seconds: u64,
    /// How long one request to the TSA may take.
    pub timeout_seconds: u64,
}

impl Default for TimestampConfig {
    fn default() -> Self {
        TimestampConfig { tsa_url: None, ca_file: None, every_seconds: 3600, timeout_seconds: 30 }
    }
}

/// A TSA's answer is small; a larger one is refused rather than read.
const MAX_RESPONSE_BYTES: u64 = 256 << 10;
/// How far a certificate chain is followed.
const MAX_CHAIN: usize = 8;

const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const TIME_STAMPING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");

/// A TimeStampReq (DER) for a SHA-256 digest, asking for the TSA's certificate in the token.
pub fn request(digest: &[u8; 32], nonce: u64) -> Vec<u8> {
    TimeStampReq {
        version: TspVersion::V1,
        message_imprint: MessageImprint {
            hash_algorithm: x509_cert::spki::AlgorithmIdentifier { oid: SHA256, parameters: None },
            hashed_message: OctetString::new(digest.to_vec()).expect("a 32-byte octet string"),
        },
        req_policy: None,
        nonce: Some(nonce_int(nonce)),
        cert_req: true,
        extensions: None,
    }
    .to_der()
    .expect("a TimeStampReq encodes")
}

/// `nonce` as a DER INTEGER in its fewest bytes: a leading zero byte is kept only before a byte
/// whose top bit is set, as DER requires (a TSA rejects the request otherwise).
fn nonce_int(nonce: u64) -> Int {
    let bytes = nonce.to_be_bytes();
    let mut start = 0;
    while start < bytes.len() - 1 && bytes[start] == 0 && bytes[start + 1] < 0x80 {
        start += 1;
    }
    Int::new(&bytes[start..]).expect("at most 8 bytes")
}

/// The token (DER) out of a TimeStampResp, when the TSA granted it.
pub fn token_of_response(response: &[u8]) -> Result<Vec<u8>, String> {
    let resp =
        TimeStampResp::from_der(response).map_err(|e| format!("the TSA's answer is not a TimeStampResp: {e}"))?;
    use cmpv2::status::PkiStatus;
    match resp.status.status {
        PkiStatus::Accepted | PkiStatus::GrantedWithMods => {}
        other => return Err(format!("the TSA refused the request (status {other:?})")),
    }
    let token = resp.time_stamp_token.ok_or("the TSA granted the request but sent no token")?;
    token.to_der().map_err(|e| e.to_string())
}

/// What a token says, once checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// The token's time (genTime), Unix seconds.
    pub time: i64,
    /// The TSA certificate's subject.
    pub tsa: String,
    pub serial: String,
    /// The nonce of the request it answers (a fresh answer carries ours).
    #[serde(skip)]
    pub nonce: Option<Int>,
}

/// Checks a token (DER ContentInfo) against the digest it must carry and the trust anchors.
pub fn check(token: &[u8], digest: &[u8; 32], anchors: &[Certificate]) -> Result<Checked, String> {
    let info = ContentInfo::from_der(token).map_err(|e| format!("not a CMS ContentInfo: {e}"))?;
    if info.content_type != SIGNED_DATA {
        return Err("not a signed token".into());
    }
    let signed: SignedData = info.content.decode_as().map_err(|e| format!("SignedData unreadable: {e}"))?;
    if signed.encap_content_info.econtent_type != TST_INFO {
        return Err("the signed content is not a TSTInfo".into());
    }
    let content: OctetString = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or("the token holds no TSTInfo")?
        .decode_as()
        .map_err(|e| format!("TSTInfo unreadable: {e}"))?;
    let tst = TstInfo::from_der(content.as_bytes()).map_err(|e| format!("TSTInfo unreadable: {e}"))?;
    if tst.message_imprint.hash_algorithm.oid != SHA256 || tst.message_imprint.hashed_message.as_bytes() != digest {
        return Err(format!(
            "its imprint is {}, not the chain head {}",
            hex::encode(tst.message_imprint.hashed_message.as_bytes()),
            hex::encode(digest)
        ));
    }
    let time = tst.gen_time.to_unix_duration().as_secs() as i64;

    let certs: Vec<Certificate> = signed
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|c| match c {
            cms::cert::CertificateChoices::Certificate(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    let [signer] = signed.signer_infos.0.as_slice() else {
        return Err("the token must have exactly one signer".into());
    };
    let signer_cert = certs
        .iter()
        .chain(anchors)
        .find(|c| match &signer.sid {
            SignerIdentifier::IssuerAndSerialNumber(id) => {
                c.tbs_certificate.issuer == id.issuer && c.tbs_certificate.serial_number == id.serial_number
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => subject_key_id(c).as_deref() == Some(ski.0.as_bytes()),
        })
        .ok_or("the signer's certificate is not in the token (the request asks for it)")?;

    // The signature covers the signed attributes, which bind the content by its digest.
    let attrs = signer.signed_attrs.as_ref().ok_or("the signer has no signed attributes")?;
    let attr = |oid: ObjectIdentifier| attrs.iter().find(|a| a.oid == oid).and_then(|a| a.values.get(0));
    let content_type: ObjectIdentifier =
        attr(CONTENT_TYPE).ok_or("no content-type attribute")?.decode_as().map_err(|e| e.to_string())?;
    if content_type != TST_INFO {
        return Err("the signed content-type is not TSTInfo".into());
    }
    let message_digest: OctetString =
        attr(MESSAGE_DIGEST).ok_or("no message-digest attribute")?.decode_as().map_err(|e| e.to_string())?;
    if digest_with(&signer.digest_alg.oid, content.as_bytes())?.as_slice() != message_digest.as_bytes() {
        return Err("the TSTInfo does not match the digest the TSA signed (the token was altered)".into());
    }
    let signed_bytes = attrs.to_der().map_err(|e| e.to_string())?;
    verify_signature(
        &signer.signature_algorithm.oid,
        Some(&signer.digest_alg.oid),
        signer_cert,
        &signed_bytes,
        signer.signature.as_bytes(),
    )
    .map_err(|e| format!("the TSA's signature does not hold: {e}"))?;

    if !extended_key_usage(signer_cert).contains(&TIME_STAMPING) {
        return Err("the signer's certificate is not for time-stamping (extendedKeyUsage)".into());
    }
    check_chain(signer_cert, &certs, anchors, time)?;
    Ok(Checked {
        time,
        tsa: signer_cert.tbs_certificate.subject.to_string(),
        serial: hex::encode(tst.serial_number.as_bytes()),
        nonce: tst.nonce,
    })
}

/// Follows issuers from `cert` to one of `anchors`, each signature checked and each certificate
/// valid at `time`.
fn check_chain(
    cert: &Certificate,
    intermediates: &[Certificate],
    anchors: &[Certificate],
    time: i64,
) -> Result<(), String> {
    if anchors.is_empty() {
        return Err("no CA bundle to check the TSA's certificate against (set timestamp.ca_file)".into());
    }
    let mut current = cert;
    for _ in 0..MAX_CHAIN {
        valid_at(current, time)?;
        if anchors.contains(current) {
            return Ok(());
        }
        let issued_by = |c: &&Certificate| {
            c.tbs_certificate.subject == current.tbs_certificate.issuer
                && current
                    .tbs_certificate
                    .to_der()
                    .ok()
                    .and_then(|tbs| {
                        verify_signature(&current.signature_algorithm.oid, None, c, &tbs, current.signature.raw_bytes())
                            .ok()
                    })
                    .is_some()
        };
        if let Some(anchor) = anchors.iter().find(issued_by) {
            return valid_at(anchor, time);
        }
        current = intermediates.iter().filter(|c| *c != current).find(issued_by).ok_or_else(|| {
            format!("the certificate of {} does not chain to the CA bundle", current.tbs_certificate.subject)
        })?;
    }
    Err("the TSA's certificate chain is too long".into())
}

fn valid_at(cert: &Certificate, time: i64) -> Result<(), String> {
    let v = &cert.tbs_certificate.validity;
    let (from, until) =
        (v.not_before.to_unix_duration().as_secs() as i64, v.not_after.to_unix_duration().as_secs() as i64);
    if time < from || time > until {
        return Err(format!("the certificate of {} was not valid at the token's time", cert.tbs_certificate.subject));
    }
    Ok(())
}

fn extended_key_usage(cert: &Certificate) -> Vec<ObjectIdentifier> {
    cert.tbs_certificate
        .extensions
        .iter()
        .flatten()
        .filter(|e| e.extn_id == EXTENDED_KEY_USAGE)
        .filter_map(|e| Vec::<ObjectIdentifier>::from_der(e.extn_value.as_bytes()).ok())
        .flatten()
        .collect()
}

fn subject_key_id(cert: &Certificate) -> Option<Vec<u8>> {
    const SKI: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
    let ext = cert.tbs_certificate.extensions.iter().flatten().find(|e| e.extn_id == SKI)?;
    Some(OctetString::from_der(ext.extn_value.as_bytes()).ok()?.as_bytes().to_vec())
}

fn digest_with(algorithm: &ObjectIdentifier, data: &[u8]) -> Result<Vec<u8>, String> {
    use sha2::Digest;
    Ok(match *algorithm {
        SHA256 => sha2::Sha256::digest(data).to_vec(),
        SHA384 => sha2::Sha384::digest(data).to_vec(),
        SHA512 => sha2::Sha512::digest(data).to_vec(),
        other => return Err(format!("unsupported digest algorithm {other}")),
    })
}

/// Checks `signature` over `message` with `signer`'s public key. `digest` is the SignerInfo's
/// digest algorithm, which picks the hash when the signature algorithm is bare `rsaEncryption`.
fn verify_signature(
    algorithm: &ObjectIdentifier,
    digest: Option<&ObjectIdentifier>,
    signer: &Certificate,
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    use ring::signature as sig;
    let scheme: &dyn sig::VerificationAlgorithm = match (*algorithm, digest.copied()) {
        (RSA_SHA256, _) | (RSA, Some(SHA256)) => &sig::RSA_PKCS1_2048_8192_SHA256,
        (RSA_SHA384, _) | (RSA, Some(SHA384)) => &sig::RSA_PKCS1_2048_8192_SHA384,
        (RSA_SHA512, _) | (RSA, Some(SHA512)) => &sig::RSA_PKCS1_2048_8192_SHA512,
        (ECDSA_SHA256, _) => &sig::ECDSA_P256_SHA256_ASN1,
        (ECDSA_SHA384, _) => &sig::ECDSA_P384_SHA384_ASN1,
        (other, _) => return Err(format!("unsupported signature algorithm {other}")),
    };
    let key = signer.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
    sig::UnparsedPublicKey::new(scheme, key).verify(message, signature).map_err(|_| "bad signature".to_owned())
}

/// The CA bundle's certificates.
pub fn load_anchors(path: &std::path::Path) -> Result<Vec<Certificate>, ArchiveError> {
    let text = std::fs::read(path).map_err(|e| ArchiveError::Io(format!("timestamp.ca_file {}", path.display()), e))?;
    let mut anchors = Vec::new();
    for block in pem::parse_many(&text).map_err(|e| ArchiveError::Invalid(format!("{}: {e}", path.display())))? {
        if block.tag() == "CERTIFICATE" {
            anchors.push(Certificate::from_der(block.contents()).map_err(|e| {
                ArchiveError::Invalid(format!(
                    "timestamp.ca_file {}: a certificate does not parse: {e}",
                    path.display()
                ))
            })?);
        }
    }
    if anchors.is_empty() {
        return Err(ArchiveError::Invalid(format!("timestamp.ca_file {} holds no certificate", path.display())));
    }
    Ok(anchors)
}

/// Asks the TSA for a token over `digest`, and checks it before it is kept.
fn fetch(config: &TimestampConfig, url: &str, anchors: &[Certificate], digest: &[u8; 32]) -> Result<Vec<u8>, String> {
    fetch_with_nonce(config, url, anchors, digest, rand::random::<u64>() >> 1) // positive as a DER INTEGER
}

fn fetch_with_nonce(
    config: &TimestampConfig,
    url: &str,
    anchors: &[Certificate],
    digest: &[u8; 32],
    nonce: u64,
) -> Result<Vec<u8>, String> {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(config.timeout_seconds.max(1))).build();
    let response = agent
        .post(url)
        .set("Content-Type", "application/timestamp-query")
        .send_bytes(&request(digest, nonce))
        .map_err(|e| format!("the TSA at {url} did not answer: {e}"))?;
    let mut body = Vec::new();
    use std::io::Read;
    response
        .into_reader()
        .take(MAX_RESPONSE_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("reading the TSA's answer: {e}"))?;
    if body.len() as u64 > MAX_RESPONSE_BYTES {
        return Err("the TSA's answer is too large".into());
    }
    let token = token_of_response(&body)?;
    let checked = check(&token, digest, anchors)?;
    if checked.nonce != Some(nonce_int(nonce)) {
        return Err("the token does not carry the nonce of our request (a replayed answer)".into());
    }
    Ok(token)
}

/// Timestamps the open volumes' chain heads: when a head has moved since its last token and a
/// segment was sealed since, or `every_seconds` have passed.
pub struct Timestamper {
    store: Arc<Store>,
    config: TimestampConfig,
    url: String,
    anchors: Vec<Certificate>,
    /// Per volume: the segment its last token went to, and when.
    last: HashMap<String, (u32, Instant)>,
}

impl Timestamper {
    /// None when no TSA is configured.
    pub fn new(store: Arc<Store>, config: &TimestampConfig) -> Result<Option<Timestamper>, ArchiveError> {
        let Some(url) = config.tsa_url.clone() else { return Ok(None) };
        let ca = config.ca_file.as_ref().ok_or_else(|| {
            ArchiveError::Invalid(
                "timestamp.tsa_url is set but timestamp.ca_file is not: name the PEM bundle of the CA certificates \
                 the TSA's certificate chains to, so its tokens can be checked"
                    .into(),
            )
        })?;
        let anchors = load_anchors(ca)?;
        Ok(Some(Timestamper { store, config: config.clone(), url, anchors, last: HashMap::new() }))
    }

    /// One pass over the open volumes; `all` timestamps every head that moved, due or not.
    /// Returns how many tokens were stored. A TSA that fails is logged and asked again next pass.
    pub fn pass(&mut self, all: bool) -> Result<usize, ArchiveError> {
        let mut stored = 0;
        for head in self.store.chain_heads() {
            let covers = head.next_seq - 1;
            if head.last_is_timestamp {
                continue; // nothing since the last token
            }
            let due = match self.last.get(&head.volume) {
                Some(&(segment, at)) => {
                    all || segment < head.segment || at.elapsed() >= Duration::from_secs(self.config.every_seconds)
                }
                None => true,
            };
            if !due {
                continue;
            }
            let token = match fetch(&self.config, &self.url, &self.anchors, &head.chain) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(volume = %head.volume, error = %e, "could not timestamp the volume's chain head");
                    continue;
                }
            };
            let timestamp = Timestamp { covers, chain_head: head.chain, token };
            match self.store.append_timestamp(&head.volume, &timestamp) {
                Ok(at) => {
                    self.last.insert(head.volume.clone(), (at.segment, Instant::now()));
                    stored += 1;
                    tracing::info!(volume = %head.volume, covers, "timestamped the volume's chain head");
                }
                // Closed meanwhile: its records are proven by its earlier tokens.
                Err(StoreError::Closed(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(stored)
    }

    /// Runs passes until the task is aborted: every minute, or as often as `every_seconds` asks.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let tick = Duration::from_secs(self.config.every_seconds.clamp(1, 60));
        tokio::spawn(async move {
            let mut timestamper = self;
            loop {
                // The TSA is asked with a blocking client, off the async threads.
                let Ok(back) = tokio::task::spawn_blocking(move || {
                    if let Err(e) = timestamper.pass(false) {
                        tracing::error!(error = %e, "timestamping stopped for this pass");
                    }
                    timestamper
                })
                .await
                else {
                    return;
                };
                timestamper = back;
                tokio::time::sleep(tick).await;
            }
        })
    }
}

/// What `verify` says about one volume's timestamps.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VolumeProof {
    pub volume: String,
    pub tokens: usize,
    /// The latest token's time (Unix seconds) and the record up to which it proves the volume.
    pub proven_at: Option<i64>,
    pub proven_through_record: Option<u64>,
}

/// Checks every token `Store::verify` found; returns each volume's proof and the problems.
pub fn check_all(found: &[coffer_store::FoundTimestamp], config: &TimestampConfig) -> (Vec<VolumeProof>, Vec<String>) {
    let mut problems = Vec::new();
    if found.is_empty() {
        return (Vec::new(), problems);
    }
    let anchors = match config.ca_file.as_ref().map(|p| load_anchors(p)) {
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            problems.push(format!("timestamp tokens cannot be checked: {e}"));
            Vec::new()
        }
        None => {
            problems.push(format!(
                "{} timestamp tokens cannot be checked: set timestamp.ca_file to the TSA's CA bundle",
                found.len()
            ));
            return (Vec::new(), problems);
        }
    };
    let mut proofs: Vec<VolumeProof> = Vec::new();
    for f in found {
        if proofs.last().is_none_or(|p| p.volume != f.volume) {
            proofs.push(VolumeProof { volume: f.volume.clone(), ..Default::default() });
        }
        let proof = proofs.last_mut().unwrap();
        proof.tokens += 1;
        match check(&f.timestamp.token, &f.timestamp.chain_head, &anchors) {
            Ok(c) => {
                if proof.proven_through_record.is_none_or(|r| r <= f.timestamp.covers) {
                    proof.proven_at = Some(c.time);
                    proof.proven_through_record = Some(f.timestamp.covers);
                }
            }
            Err(e) => problems.push(format!(
                "volume {} record {}: the timestamp token over record {} does not check out: {e}",
                f.volume, f.seq, f.timestamp.covers
            )),
        }
    }
    (proofs, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_whose_first_byte_is_zero_is_matched_in_the_tsas_token() {
        let tsa = coffer_testkit::tsa::LocalTsa::start();
        let config = TimestampConfig {
            tsa_url: Some(tsa.url.clone()),
            ca_file: Some(tsa.ca_file.clone()),
            ..TimestampConfig::default()
        };
        let anchors = load_anchors(&tsa.ca_file).unwrap();
        for nonce in [0x0012_3456_789a_bcde, 0x0000_0000_0000_0001, 0x0080_0000_0000_0000, 0x7fff_ffff_ffff_ffff] {
            let token = fetch_with_nonce(&config, &tsa.url, &anchors, &[7; 32], nonce);
            assert!(token.is_ok(), "nonce {nonce:#x}: {token:?}");
        }
    }
}
