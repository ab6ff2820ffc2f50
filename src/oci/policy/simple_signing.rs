//! "Simple signing" (containers-signature(5)): an OpenPGP signed message (RFC 4880 11.3)
//! whose literal data is a JSON document naming the manifest digest and the identity the
//! signer gives the image. The OpenPGP work is the `pgp` crate's (rpgp); this module checks
//! what containers-signature(5) asks of a consumer: a signed message (not a bare literal),
//! made by a trusted key, cryptographically valid, not expired, and only then is the payload
//! parsed, strictly (any unknown member of `critical` refuses the signature).

use std::io::{BufReader, Cursor, Read};

use anyhow::{Context, Result, bail};
use pgp::composed::{Deserializable, Message, SignedPublicKey};
use pgp::types::KeyDetails;
use serde::Deserialize;

use super::config::{KeySource, MAX_POLICY};
use crate::bounded;

/// The value of `critical.type` (containers-signature(5)).
pub const SIGNATURE_TYPE: &str = "atomic container signature";

/// Bound on the JSON payload inside a signature.
const MAX_PAYLOAD: u64 = 1 << 20;

/// The public keys of one `signedBy` requirement.
#[derive(Debug)]
pub struct Keyring {
    keys: Vec<SignedPublicKey>,
    /// Where they came from (for messages).
    pub origin: String,
}

impl Keyring {
    /// Loads every key of `sources` (binary or ASCII-armored keyrings, as `gpg --export`
    /// writes them).
    pub fn load(sources: &[KeySource]) -> Result<Keyring> {
        let mut keys = Vec::new();
        let mut origin = Vec::new();
        for s in sources {
            let (bytes, what) = match s {
                KeySource::Path(p) => (
                    bounded::read_file(p, MAX_POLICY)
                        .with_context(|| format!("reading keyring {}", p.display()))?,
                    p.display().to_string(),
                ),
                KeySource::Data(d) => (d.clone(), "keyData".to_string()),
            };
            let parsed = parse_keys(&bytes).with_context(|| format!("keyring {what}"))?;
            if parsed.is_empty() {
                bail!("keyring {what} holds no public key");
            }
            keys.extend(parsed);
            origin.push(what);
        }
        Ok(Keyring {
            keys,
            origin: origin.join(", "),
        })
    }

    /// Fingerprints of the keys (upper-case hex, as gpg prints them).
    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| format!("{:X}", k.primary_key.fingerprint()))
            .collect()
    }
}

fn parse_keys(bytes: &[u8]) -> Result<Vec<SignedPublicKey>> {
    let armored = bytes.trim_ascii_start().starts_with(b"-----BEGIN");
    let iter = if armored {
        SignedPublicKey::from_armor_many(Cursor::new(bytes))?.0
    } else {
        SignedPublicKey::from_bytes_many(BufReader::new(Cursor::new(bytes)))?
    };
    let mut out = Vec::new();
    for k in iter {
        let k = k.context("parsing a public key")?;
        // A key whose self-signatures do not verify is not a key of its user ids and
        // subkeys; leave it out rather than trust its subkeys.
        k.verify_bindings()
            .with_context(|| format!("key {:X}", k.primary_key.fingerprint()))?;
        out.push(k);
    }
    Ok(out)
}

/// What a valid signature says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedClaim {
    /// Fingerprint of the key (the primary key) that made it.
    pub signer: String,
    /// `critical.image."docker-manifest-digest"`.
    pub manifest_digest: String,
    /// `critical.identity."docker-reference"`.
    pub docker_reference: String,
}

/// Why a signature was not accepted (each carries what a user needs to see).
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// Not made by any trusted key (or not valid for any).
    #[error("signed by key {issuer}, which is not in {keyring} (trusted: {trusted})")]
    UntrustedKey {
        /// Issuer fingerprint or key id the signature names (unverified), or "unknown".
        issuer: String,
        /// The keyring files.
        keyring: String,
        /// Fingerprints of the trusted keys.
        trusted: String,
    },
    /// Anything else wrong with the OpenPGP message or its payload.
    #[error("{0}")]
    Invalid(String),
}

/// Verifies `blob` against `keys` and parses its payload. `now` (Unix seconds) is for the
/// expiry check.
pub fn verify(blob: &[u8], keys: &Keyring, now: u64) -> Result<SignedClaim, SignatureError> {
    let invalid = |m: String| SignatureError::Invalid(m);
    let armored = blob.trim_ascii_start().starts_with(b"-----BEGIN");
    let msg = if armored {
        Message::from_armor(BufReader::new(Cursor::new(blob))).map(|m| m.0)
    } else {
        Message::from_bytes(BufReader::new(Cursor::new(blob)))
    }
    .map_err(|e| invalid(format!("not an OpenPGP message: {e}")))?;
    // gpg compresses what it signs: a compressed packet holding the signed message.
    let mut msg = msg
        .decompress()
        .map_err(|e| invalid(format!("decompressing: {e}")))?;
    if !msg.is_signed() {
        return Err(invalid(
            "not a signed OpenPGP message (containers-signature(5) requires one)".into(),
        ));
    }
    let mut payload = Vec::new();
    (&mut msg)
        .take(MAX_PAYLOAD + 1)
        .read_to_end(&mut payload)
        .map_err(|e| invalid(format!("reading the signed data: {e}")))?;
    if payload.len() as u64 > MAX_PAYLOAD {
        return Err(invalid(format!("payload over {MAX_PAYLOAD} bytes")));
    }
    let mut signer = None;
    'keys: for key in &keys.keys {
        if msg.verify(&key.primary_key).is_ok() {
            signer = Some(key);
            break;
        }
        for sub in &key.public_subkeys {
            if msg.verify(&sub.key).is_ok() {
                signer = Some(key);
                break 'keys;
            }
        }
    }
    let Some(key) = signer else {
        return Err(SignatureError::UntrustedKey {
            issuer: issuer(&msg),
            keyring: keys.origin.clone(),
            trusted: keys.fingerprints().join(", "),
        });
    };
    let signer = format!("{:X}", key.primary_key.fingerprint());
    let sig = msg
        .verify(&key.primary_key)
        .ok()
        .or_else(|| {
            key.public_subkeys
                .iter()
                .find_map(|s| msg.verify(&s.key).ok())
        })
        .ok_or_else(|| invalid("signature vanished".into()))?;
    if let (Some(created), Some(valid_for)) = (sig.created(), sig.signature_expiration_time()) {
        let expires = u64::from(created.as_secs()) + u64::from(valid_for.as_secs());
        if valid_for.as_secs() > 0 && expires <= now {
            return Err(invalid(format!(
                "the signature by key {signer} expired at {expires} (Unix time)"
            )));
        }
    }
    let claim = parse_payload(&payload).map_err(|e| invalid(format!("payload: {e:#}")))?;
    Ok(SignedClaim {
        signer,
        manifest_digest: claim.critical.image.docker_manifest_digest,
        docker_reference: claim.critical.identity.docker_reference,
    })
}

/// The issuer a signature names (unverified; only for the message that refuses it).
fn issuer(msg: &Message<'_>) -> String {
    let Message::Signed { reader, .. } = msg else {
        return "unknown".into();
    };
    let Some(sig) = reader.signature(0) else {
        return "unknown".into();
    };
    if let Some(fp) = sig.issuer_fingerprint().first() {
        return format!("{fp:X}");
    }
    sig.issuer_key_id()
        .first()
        .map_or("unknown".into(), |k| hex::encode_upper(k.as_ref()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    critical: Critical,
    // Members of `optional` are accepted whatever they are (containers-signature(5)).
    #[allow(dead_code)]
    optional: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Critical {
    #[serde(rename = "type")]
    typ: String,
    image: CriticalImage,
    identity: CriticalIdentity,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CriticalImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CriticalIdentity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

fn parse_payload(bytes: &[u8]) -> Result<Payload> {
    let p: Payload = serde_json::from_slice(bytes).context("not a container signature")?;
    if p.critical.typ != SIGNATURE_TYPE {
        bail!(
            "critical.type is '{}', not '{SIGNATURE_TYPE}'",
            p.critical.typ
        );
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_strict() {
        let ok = br#"{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"sha256:ab"},"identity":{"docker-reference":"h.io/x:1"}},"optional":{"creator":"x","timestamp":1}}"#;
        let p = parse_payload(ok).unwrap();
        assert_eq!(p.critical.image.docker_manifest_digest, "sha256:ab");
        for bad in [
            &br#"{"critical":{"type":"other","image":{"docker-manifest-digest":"sha256:ab"},"identity":{"docker-reference":"h.io/x:1"}},"optional":{}}"#[..],
            br#"{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"sha256:ab","x":1},"identity":{"docker-reference":"h.io/x:1"}},"optional":{}}"#,
            br#"{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"sha256:ab"},"identity":{"docker-reference":"h.io/x:1"}}}"#,
            br#"{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"sha256:ab"},"identity":{"docker-reference":"h.io/x:1"}},"optional":{},"extra":{}}"#,
        ] {
            assert!(parse_payload(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
