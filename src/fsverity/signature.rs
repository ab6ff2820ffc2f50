//! fs-verity built-in signatures: PKCS#7 (DER, detached, no signed attributes) over the
//! kernel's `struct fsverity_formatted_digest`, what `fsverity sign` writes and what
//! `FS_IOC_ENABLE_VERITY` takes ([`super::ioctl::enable_verity_signed`]). The composefs OCI
//! sealing specification carries them as `.sig` annotations and artifact layers
//! (`docs/oci-conventions.md` section 8).
//!
//! Signing and checking go through OpenSSL (the `openssl` crate); nothing here parses ASN.1.
//! A signature is accepted when it verifies with one of the configured certificates *as
//! signer*: the certificates embedded in a signature are not used to find the signer, and
//! no chain is built. That is the kernel's rule for its `.fs-verity` keyring (the signer's
//! key must be in the keyring itself), so a signature this module accepts is one the kernel
//! accepts with the same certificates loaded.

use std::path::Path;

use anyhow::{Context, Result};
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;

use super::Digest;

/// `struct fsverity_formatted_digest`: `"FSVerity"`, the algorithm number (le16), the digest
/// size (le16), the digest. This is what the signature signs.
pub fn formatted_digest(digest: &Digest) -> Vec<u8> {
    let bytes = digest.as_bytes();
    let mut out = Vec::with_capacity(12 + bytes.len());
    out.extend_from_slice(b"FSVerity");
    out.extend_from_slice(&u16::from(digest.algorithm().kernel_id()).to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Why a signature was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// Not a PKCS#7 DER blob.
    #[error("not a PKCS#7 DER signature: {0}")]
    Malformed(String),
    /// Well-formed, but no configured certificate's key made it over this digest.
    #[error("does not verify with {certs} over fs-verity digest {digest}: {reason}")]
    Rejected {
        /// The configured certificates.
        certs: String,
        /// The digest the signature was checked against (hex).
        digest: String,
        /// OpenSSL's reason.
        reason: String,
    },
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// Certificates from a PEM file (one or more) or a DER file (one).
fn load_certs(path: &Path) -> Result<Vec<X509>> {
    let bytes = read(path, "certificate")?;
    let certs = match X509::stack_from_pem(&bytes) {
        Ok(certs) if !certs.is_empty() => certs,
        _ => vec![X509::from_der(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{}: neither a PEM nor a DER X.509 certificate: {e}",
                path.display()
            )
        })?],
    };
    Ok(certs)
}

/// A private key and the certificate that goes with it.
pub struct SigningKey {
    key: PKey<Private>,
    cert: X509,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("subject", &self.cert.subject_name())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a private key (PEM or DER) and its certificate (PEM or DER); refuses a pair that
    /// does not match.
    pub fn load(key: &Path, cert: &Path) -> Result<SigningKey> {
        let key_bytes = read(key, "signing key")?;
        let pkey = PKey::private_key_from_pem(&key_bytes)
            .or_else(|_| PKey::private_key_from_der(&key_bytes))
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: neither a PEM nor a DER private key: {e}",
                    key.display()
                )
            })?;
        let certs = load_certs(cert)?;
        let cert_x509 = certs
            .into_iter()
            .next()
            .expect("load_certs returns one or more");
        let public = cert_x509
            .public_key()
            .with_context(|| format!("{}: reading the public key", cert.display()))?;
        if !public.public_eq(&pkey) {
            anyhow::bail!(
                "the signing key {} does not belong to the certificate {}",
                key.display(),
                cert.display()
            );
        }
        Ok(SigningKey {
            key: pkey,
            cert: cert_x509,
        })
    }

    /// The PKCS#7 DER signature of `digest`, as `fsverity sign` makes it: detached, binary,
    /// no signed attributes, no certificates (the kernel finds the key by issuer and serial).
    pub fn sign(&self, digest: &Digest) -> Result<Vec<u8>> {
        let certs = Stack::new()?;
        let flags =
            Pkcs7Flags::DETACHED | Pkcs7Flags::BINARY | Pkcs7Flags::NOATTR | Pkcs7Flags::NOCERTS;
        let p7 = Pkcs7::sign(
            &self.cert,
            &self.key,
            &certs,
            &formatted_digest(digest),
            flags,
        )
        .context("PKCS#7 signing")?;
        Ok(p7.to_der()?)
    }
}

/// The certificates signatures are checked against (`--verity-cert`).
pub struct TrustedCerts {
    certs: Vec<X509>,
    what: String,
}

impl std::fmt::Debug for TrustedCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.what)
    }
}

impl TrustedCerts {
    /// Loads every certificate of `paths` (PEM files may hold several).
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<TrustedCerts> {
        let mut certs = Vec::new();
        let mut names = Vec::new();
        for p in paths {
            certs.extend(load_certs(p.as_ref())?);
            names.push(p.as_ref().display().to_string());
        }
        anyhow::ensure!(!certs.is_empty(), "no certificate given");
        Ok(TrustedCerts {
            certs,
            what: format!("the certificates of {}", names.join(", ")),
        })
    }

    /// Checks that `signature` is a PKCS#7 signature of `digest` made by the key of one of
    /// the certificates.
    pub fn verify(&self, signature: &[u8], digest: &Digest) -> Result<(), SignatureError> {
        let p7 =
            Pkcs7::from_der(signature).map_err(|e| SignatureError::Malformed(e.to_string()))?;
        let rejected = |reason: String| SignatureError::Rejected {
            certs: self.what.clone(),
            digest: digest.to_hex(),
            reason,
        };
        let mut stack = Stack::new().map_err(|e| rejected(e.to_string()))?;
        for c in &self.certs {
            stack.push(c.clone()).map_err(|e| rejected(e.to_string()))?;
        }
        let store = X509StoreBuilder::new()
            .map_err(|e| rejected(e.to_string()))?
            .build();
        // NOINTERN: the signer must be one of ours, not a certificate the signature brings;
        // NOVERIFY: no chain to build (the kernel builds none either).
        let flags = Pkcs7Flags::BINARY | Pkcs7Flags::NOINTERN | Pkcs7Flags::NOVERIFY;
        p7.verify(&stack, &store, Some(&formatted_digest(digest)), None, flags)
            .map_err(|e| rejected(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::Algorithm;

    #[test]
    fn formatted_digest_is_the_kernels_struct() {
        let d = Digest::from_hex(&"ab".repeat(32)).unwrap();
        let f = formatted_digest(&d);
        assert_eq!(&f[..8], b"FSVerity");
        assert_eq!(&f[8..12], &[1, 0, 32, 0]);
        assert_eq!(&f[12..], d.as_bytes());
        let d = Digest::from_hex(&"cd".repeat(64)).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha512);
        assert_eq!(&formatted_digest(&d)[8..12], &[2, 0, 64, 0]);
    }
}
