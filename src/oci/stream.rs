//! Byte streams of OCI blobs: digest verification as the bytes pass, decompression by media
//! type, and a cap on how much a (decompressed) stream may yield.
//!
//! A layer is read as `blob -> VerifyingReader(blob digest) -> decompress -> VerifyingReader
//! (diff_id) -> LimitedReader -> tar`, all streaming: nothing holds the layer in memory. The
//! digest check happens when the stream reaches its end, so a consumer that stops early
//! (a tar parser at the end-of-archive marker) must drain the rest ([`drain`]) before it
//! trusts what it read.
//!
//! Errors found inside a stream travel through `io::Error` (the `Read` contract); their
//! payload is a [`StreamError`], which [`stream_error`] finds again in an error chain.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256, Sha512};

/// OCI / Docker media types of layer blobs this module decompresses.
pub mod media_type {
    /// Uncompressed tar.
    pub const OCI_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// gzip-compressed tar.
    pub const OCI_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// zstd-compressed tar (also zstd:chunked, which is multi-frame zstd).
    pub const OCI_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Non-distributable variants (deprecated in image-spec 1.1, still readable).
    pub const OCI_NONDIST_TAR: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
    /// Non-distributable gzip.
    pub const OCI_NONDIST_TAR_GZIP: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
    /// Non-distributable zstd.
    pub const OCI_NONDIST_TAR_ZSTD: &str =
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
    /// Docker schema 2 layer (gzip).
    pub const DOCKER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker schema 2 foreign layer (gzip).
    pub const DOCKER_FOREIGN_TAR_GZIP: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}

/// An error found while reading a blob stream; callers decide on these.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The bytes do not hash to the digest the manifest or config promised.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was checked ("blob sha256:..", "layer diff_id sha256:..").
        what: String,
        /// The digest promised, `algorithm:hex`.
        expected: String,
        /// The digest of the bytes read, `algorithm:hex`.
        actual: String,
    },
    /// A digest string that is not `sha256:<64 hex>` or `sha512:<128 hex>`.
    #[error("unsupported or malformed digest '{0}'")]
    BadDigest(String),
    /// A layer media type this program cannot decompress.
    #[error("unsupported layer media type '{0}'")]
    UnsupportedMediaType(String),
    /// A stream longer than allowed (a decompression bomb, or a limit set too low).
    #[error("{what}: more than {limit} bytes after decompression")]
    TooLarge {
        /// The stream (a layer's diff_id).
        what: String,
        /// The cap, in bytes.
        limit: u64,
    },
}

impl StreamError {
    fn into_io(self) -> io::Error {
        io::Error::other(self)
    }
}

/// Finds a [`StreamError`] in an error chain, also when wrapped in an `io::Error`.
pub fn stream_error(err: &anyhow::Error) -> Option<&StreamError> {
    err.chain().find_map(|e| {
        e.downcast_ref::<StreamError>().or_else(|| {
            e.downcast_ref::<io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<StreamError>())
        })
    })
}

/// Turns an `io::Error` carrying a [`StreamError`] into an `anyhow::Error` whose root cause
/// is that `StreamError` (so `downcast_ref` finds it); other errors are kept as they are.
pub fn unwrap_io(err: io::Error) -> anyhow::Error {
    if err
        .get_ref()
        .is_some_and(|e| e.downcast_ref::<StreamError>().is_some())
    {
        match err.into_inner().map(|e| e.downcast::<StreamError>()) {
            Some(Ok(e)) => return anyhow::Error::new(*e),
            Some(Err(e)) => return anyhow::Error::from_boxed(e),
            None => unreachable!("checked: the error has an inner error"),
        }
    }
    anyhow::Error::new(err)
}

enum Hash {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// A `Read` that hashes everything passing through and, at end of stream, fails with
/// [`StreamError::DigestMismatch`] unless the hash equals the expected digest.
pub struct VerifyingReader<R> {
    inner: R,
    hash: Option<Hash>,
    expected: String,
    what: String,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`, expecting the OCI digest `expected` (`sha256:<hex>` or `sha512:<hex>`);
    /// `what` names the stream in the error.
    pub fn new(inner: R, expected: &str, what: impl Into<String>) -> Result<Self, StreamError> {
        let bad = || StreamError::BadDigest(expected.to_string());
        let (alg, hex_part) = expected.split_once(':').ok_or_else(bad)?;
        let (hash, len) = match alg {
            "sha256" => (Hash::Sha256(Sha256::new()), 64),
            "sha512" => (Hash::Sha512(Sha512::new()), 128),
            _ => return Err(bad()),
        };
        // The OCI spec allows only lowercase hex for these algorithms.
        if hex_part.len() != len
            || !hex_part
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad());
        }
        Ok(VerifyingReader {
            inner,
            hash: Some(hash),
            expected: expected.to_string(),
            what: what.into(),
        })
    }

    fn check(&mut self) -> io::Result<()> {
        let Some(hash) = self.hash.take() else {
            return Ok(());
        };
        let actual = match hash {
            Hash::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hash::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        };
        if actual != self.expected {
            return Err(StreamError::DigestMismatch {
                what: self.what.clone(),
                expected: self.expected.clone(),
                actual,
            }
            .into_io());
        }
        Ok(())
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        match &mut self.hash {
            _ if n == 0 => self.check()?,
            Some(Hash::Sha256(h)) => h.update(&buf[..n]),
            Some(Hash::Sha512(h)) => h.update(&buf[..n]),
            None => {}
        }
        Ok(n)
    }
}

/// A `Read` that fails with [`StreamError::TooLarge`] once more than `limit` bytes passed.
pub struct LimitedReader<R> {
    inner: R,
    left: u64,
    limit: u64,
    what: String,
}

impl<R: Read> LimitedReader<R> {
    /// Wraps `inner`, allowing at most `limit` bytes; `what` names the stream in the error.
    pub fn new(inner: R, limit: u64, what: impl Into<String>) -> Self {
        LimitedReader {
            inner,
            left: limit,
            limit,
            what: what.into(),
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Ask for one byte more than allowed, so a stream of exactly `limit` bytes passes
        // and one byte more is noticed.
        let want = buf
            .len()
            .min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(StreamError::TooLarge {
                what: self.what.clone(),
                limit: self.limit,
            }
            .into_io());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Decompresses a layer blob according to its media type: gzip (all members), zstd (all
/// frames, skippable frames ignored: zstd:chunked), or none.
pub fn decompress<'a>(
    media_type: &str,
    reader: impl Read + Send + 'a,
) -> Result<Box<dyn Read + Send + 'a>, StreamError> {
    use media_type::*;
    Ok(match media_type {
        OCI_TAR | OCI_NONDIST_TAR => Box::new(reader),
        OCI_TAR_GZIP | OCI_NONDIST_TAR_GZIP | DOCKER_TAR_GZIP | DOCKER_FOREIGN_TAR_GZIP => {
            Box::new(flate2::read::MultiGzDecoder::new(
                io::BufReader::with_capacity(READ_BUF, reader),
            ))
        }
        OCI_TAR_ZSTD | OCI_NONDIST_TAR_ZSTD => {
            // Decoder reads every frame until the input ends unless `single_frame()` is set.
            let dec = zstd::stream::read::Decoder::with_buffer(io::BufReader::with_capacity(
                READ_BUF, reader,
            ))
            .map_err(|_| StreamError::UnsupportedMediaType(media_type.to_string()))?;
            Box::new(dec)
        }
        other => return Err(StreamError::UnsupportedMediaType(other.to_string())),
    })
}

/// The whole read side of a layer blob: `blob` is checked against `blob_digest` (the
/// manifest's descriptor digest), decompressed by `media_type`, and the tar checked against
/// `diff_id` (the config's `rootfs.diff_ids` entry). Feed the result to
/// [`import_layer`](crate::oci::layer::import_layer), which reads it to the end so both
/// checks run; a mismatch is then the import's root cause.
pub fn layer_stream<'a>(
    blob: impl Read + Send + 'a,
    media_type: &str,
    blob_digest: &str,
    diff_id: &str,
) -> Result<Box<dyn Read + Send + 'a>, StreamError> {
    let blob = VerifyingReader::new(blob, blob_digest, format!("layer blob {blob_digest}"))?;
    let tar = decompress(media_type, blob)?;
    Ok(Box::new(VerifyingReader::new(
        tar,
        diff_id,
        format!("layer diff_id {diff_id}"),
    )?))
}

/// Read buffer in front of decompressors.
const READ_BUF: usize = 256 * 1024;

/// Reads `reader` to its end, discarding the bytes (so verifying readers below it check
/// their digest). Returns how many bytes were left.
pub fn drain(mut reader: impl Read) -> io::Result<u64> {
    io::copy(&mut reader, &mut io::sink())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sha256(data: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(data)))
    }

    #[test]
    fn verifying_reader_accepts_and_rejects() {
        let data = b"hello layer";
        let mut ok = VerifyingReader::new(&data[..], &sha256(data), "blob").unwrap();
        let mut out = Vec::new();
        ok.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);

        let wrong = sha256(b"other");
        let mut bad = VerifyingReader::new(&data[..], &wrong, "blob x").unwrap();
        let err = bad.read_to_end(&mut Vec::new()).unwrap_err();
        let err = unwrap_io(err);
        match err.downcast_ref::<StreamError>() {
            Some(StreamError::DigestMismatch {
                what,
                expected,
                actual,
            }) => {
                assert_eq!(what, "blob x");
                assert_eq!(*expected, wrong);
                assert_eq!(*actual, sha256(data));
            }
            other => panic!("{other:?}"),
        }
        assert!(VerifyingReader::new(&data[..], "md5:abc", "x").is_err());
        assert!(VerifyingReader::new(&data[..], "sha256:ABC", "x").is_err());
    }

    #[test]
    fn limited_reader_allows_exactly_the_limit() {
        let data = vec![7u8; 1000];
        let mut r = LimitedReader::new(&data[..], 1000, "l");
        assert_eq!(drain(&mut r).unwrap(), 1000);
        let mut r = LimitedReader::new(&data[..], 999, "l");
        let err = unwrap_io(drain(&mut r).unwrap_err());
        assert!(matches!(
            err.downcast_ref::<StreamError>(),
            Some(StreamError::TooLarge { limit: 999, .. })
        ));
    }

    #[test]
    fn decompresses_gzip_members_and_zstd_frames() {
        let mut gz = Vec::new();
        for part in [&b"first "[..], b"second"] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            gz.extend(e.finish().unwrap());
        }
        let mut out = String::new();
        decompress(media_type::OCI_TAR_GZIP, &gz[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "first second");

        // zstd:chunked: several frames with skippable frames between them.
        let mut zst = Vec::new();
        for part in [&b"one "[..], b"two ", b"three"] {
            zst.extend(zstd::encode_all(part, 3).unwrap());
            // Skippable frame: magic 0x184D2A50, little-endian length, payload.
            zst.extend(0x184D_2A50u32.to_le_bytes());
            zst.extend(4u32.to_le_bytes());
            zst.extend(b"TOC!");
        }
        let mut out = String::new();
        decompress(media_type::OCI_TAR_ZSTD, &zst[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "one two three");

        let mut out = String::new();
        decompress(media_type::OCI_TAR, &b"plain"[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "plain");
        assert!(matches!(
            decompress("application/x-rar", &b""[..]),
            Err(StreamError::UnsupportedMediaType(_))
        ));
    }
}
