//! The Entra ID app manifest (JSON, as the Azure portal downloads it): Coffer adds its certificate
//! to `keyCredentials` and keeps every entry already there.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

use crate::ArchiveError;

/// Returns the manifest with a `keyCredentials` entry for the certificate (DER): key = base64
/// DER, customKeyIdentifier = base64 SHA-1 of it (the thumbprint Entra ID shows), a new keyId.
/// A certificate already present is not added twice.
pub fn add_certificate(manifest: &[u8], certificate_der: &[u8], display_name: &str) -> Result<Value, ArchiveError> {
    let mut m = parse(manifest)?;
    let object = m.as_object_mut().ok_or_else(|| ArchiveError::Invalid("the manifest is not a JSON object".into()))?;
    let key = STANDARD.encode(certificate_der);
    let thumbprint = STANDARD.encode(Sha1::digest(certificate_der));
    let list = object.entry("keyCredentials").or_insert_with(|| json!([]));
    let entries = list.as_array_mut().ok_or_else(|| ArchiveError::Invalid("keyCredentials is not a list".into()))?;
    if !entries.iter().any(|e| e["customKeyIdentifier"] == thumbprint.as_str()) {
        entries.push(json!({
            "customKeyIdentifier": thumbprint,
            "displayName": display_name,
            "keyId": new_guid(),
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
            "key": key,
        }));
    }
    Ok(m)
}

/// An app registration manifest, checked: JSON, an object, with an app id and a list of key
/// credentials if any. Checked before anything is made for it.
pub fn parse(manifest: &[u8]) -> Result<Value, ArchiveError> {
    let m: Value = serde_json::from_slice(manifest).map_err(|e| {
        ArchiveError::Invalid(format!("the manifest is not JSON ({e}); download it again from the app's Manifest page"))
    })?;
    let object = m.as_object().ok_or_else(|| ArchiveError::Invalid("the manifest is not a JSON object".into()))?;
    if !object.contains_key("appId") && !object.contains_key("id") {
        return Err(ArchiveError::Invalid(
            "this JSON has no appId: it is not an app registration manifest (Azure portal → App registrations → the app → Manifest → Download)".into(),
        ));
    }
    if object.get("keyCredentials").is_some_and(|k| !k.is_array()) {
        return Err(ArchiveError::Invalid("keyCredentials is not a list".into()));
    }
    Ok(m)
}

/// A random (version 4) GUID.
pub fn new_guid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_added_beside_the_existing_entries_once() {
        let manifest = br#"{"appId": "11111111-2222-3333-4444-555555555555", "keyCredentials": [
            {"customKeyIdentifier": "OLD", "keyId": "a", "type": "AsymmetricX509Cert", "usage": "Verify", "key": "AAAA"}]}"#;
        let der = b"not really DER but bytes";
        let updated = add_certificate(manifest, der, "CN=coffer").unwrap();
        let list = updated["keyCredentials"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["customKeyIdentifier"], "OLD");
        assert_eq!(list[1]["type"], "AsymmetricX509Cert");
        assert_eq!(list[1]["usage"], "Verify");
        assert_eq!(list[1]["key"], STANDARD.encode(der));
        assert_eq!(list[1]["customKeyIdentifier"], STANDARD.encode(Sha1::digest(der)));
        assert_eq!(list[1]["keyId"].as_str().unwrap().len(), 36);
        let again = add_certificate(serde_json::to_vec(&updated).unwrap().as_slice(), der, "CN=coffer").unwrap();
        assert_eq!(again["keyCredentials"].as_array().unwrap().len(), 2);
        assert!(
            matches!(add_certificate(b"{\"x\": 1}", der, "x"), Err(ArchiveError::Invalid(m)) if m.contains("appId"))
        );
    }
}
