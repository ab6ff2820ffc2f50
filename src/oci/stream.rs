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
//! payload is a [`StreamError`] (found again by [`stream_error`]) or, for a digest or size
//! mismatch, an [`OciError`] (found by [`crate::oci::error::find`]); [`unwrap_io`] makes
//! either the root cause.

use std::io::{self, Read};

use oci_spec::image::{Descriptor, DigestAlgorithm};
use sha2::{Digest as _, Sha256, Sha512};

use super::error::OciError;

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
    /// A digest of an algorithm other than sha256 / sha512.
    #[error("unsupported digest algorithm in '{0}'")]
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

/// Turns an `io::Error` carrying a [`StreamError`] or an [`OciError`] into an
/// `anyhow::Error` whose root cause is that error (so `downcast_ref` finds it); other
/// errors are kept as they are.
pub fn unwrap_io(err: io::Error) -> anyhow::Error {
    let typed = err
        .get_ref()
        .is_some_and(|e| e.is::<StreamError>() || e.is::<OciError>());
    if !typed {
        return anyhow::Error::new(err);
    }
    let inner = err
        .into_inner()
        .expect("checked: the error has an inner error");
    match inner.downcast::<StreamError>() {
        Ok(e) => anyhow::Error::new(*e),
        Err(inner) => match inner.downcast::<OciError>() {
            Ok(e) => anyhow::Error::new(*e),
            Err(e) => anyhow::Error::from_boxed(e),
        },
    }
}

enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

/// Passes bytes through while hashing and counting them. At end of stream a wrong digest or
/// size is an `io::Error` carrying [`OciError::BlobDigestMismatch`] /
/// [`OciError::BlobSizeMismatch`] (find it with [`crate::oci::error::find`]), so no consumer
/// can mistake a damaged blob for a complete one. Reading past the expected size fails at
/// once: a source cannot make us download without bound.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: String,
    size: Option<u64>,
    read: u64,
    what: String,
}

impl<R> std::fmt::Debug for VerifyingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingReader")
            .field("what", &self.what)
            .field("expected", &self.expected)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl<R: Read> VerifyingReader<R> {
    /// Checks against a descriptor's digest and size; `what` names the blob in errors.
    pub fn for_descriptor(
        inner: R,
        desc: &Descriptor,
        what: impl Into<String>,
    ) -> Result<Self, StreamError> {
        Self::new(inner, desc.digest(), Some(desc.size()), what)
    }

    /// Checks against `digest` and, when known, `size` (a layer's diff_id has none).
    pub fn new(
        inner: R,
        digest: &oci_spec::image::Digest,
        size: Option<u64>,
        what: impl Into<String>,
    ) -> Result<Self, StreamError> {
        let hasher = match digest.algorithm() {
            DigestAlgorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            DigestAlgorithm::Sha512 => Hasher::Sha512(Sha512::new()),
            _ => return Err(StreamError::BadDigest(digest.to_string())),
        };
        Ok(VerifyingReader {
            inner,
            hasher: Some(hasher),
            expected: digest.to_string(),
            size,
            read: 0,
            what: what.into(),
        })
    }

    /// Bytes passed through so far.
    pub fn bytes_read(&self) -> u64 {
        self.read
    }

    /// Reads what is left (a decompressor or tar parser may stop before the end), checks,
    /// and returns the stream's length.
    pub fn finish(mut self) -> io::Result<u64> {
        drain(&mut self)?;
        Ok(self.read)
    }

    fn size_mismatch(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            OciError::BlobSizeMismatch {
                what: self.what.clone(),
                expected: self.size.unwrap_or_default(),
                actual: self.read,
            },
        )
    }

    fn check(&mut self) -> io::Result<()> {
        let Some(h) = self.hasher.take() else {
            return Ok(());
        };
        if self.size.is_some_and(|size| size != self.read) {
            return Err(self.size_mismatch());
        }
        let actual = match h {
            Hasher::Sha256(h) => format!("sha256:{}", hex::encode(h.finalize())),
            Hasher::Sha512(h) => format!("sha512:{}", hex::encode(h.finalize())),
        };
        if actual != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                OciError::BlobDigestMismatch {
                    what: self.what.clone(),
                    expected: self.expected.clone(),
                    actual,
                },
            ));
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
        if n == 0 {
            self.check()?;
            return Ok(0);
        }
        self.read += n as u64;
        if self.size.is_some_and(|size| self.read > size) {
            return Err(self.size_mismatch());
        }
        match &mut self.hasher {
            Some(Hasher::Sha256(h)) => h.update(&buf[..n]),
            Some(Hasher::Sha512(h)) => h.update(&buf[..n]),
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

impl<R> std::fmt::Debug for LimitedReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LimitedReader")
            .field("what", &self.what)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
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

    fn digest(s: &str) -> oci_spec::image::Digest {
        s.parse().unwrap()
    }

    #[test]
    fn verifying_reader_checks_digest_and_size() {
        let data = b"hello layer";
        let good = digest(&sha256(data));
        let mut ok = VerifyingReader::new(&data[..], &good, Some(11), "blob").unwrap();
        let mut out = Vec::new();
        ok.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        assert_eq!(ok.bytes_read(), 11);

        let wrong = digest(&sha256(b"other"));
        let bad = VerifyingReader::new(&data[..], &wrong, None, "blob x").unwrap();
        let err = unwrap_io(bad.finish().unwrap_err());
        match err.downcast_ref::<OciError>() {
            Some(OciError::BlobDigestMismatch {
                what,
                expected,
                actual,
            }) => {
                assert_eq!(what, "blob x");
                assert_eq!(*expected, wrong.to_string());
                assert_eq!(*actual, sha256(data));
            }
            other => panic!("{other:?}"),
        }
        // Short and long streams are refused by size, the long one before its end.
        for (size, actual) in [(12, 11), (10, 11)] {
            let r = VerifyingReader::new(&data[..], &good, Some(size), "blob y").unwrap();
            let err = unwrap_io(r.finish().unwrap_err());
            assert!(
                matches!(
                    err.downcast_ref::<OciError>(),
                    Some(OciError::BlobSizeMismatch { expected, actual: a, .. })
                        if *expected == size && *a == actual
                ),
                "{err:#}"
            );
        }
        let sha384: oci_spec::image::Digest = format!("sha384:{}", "0".repeat(96)).parse().unwrap();
        assert!(matches!(
            VerifyingReader::new(&data[..], &sha384, None, "x"),
            Err(StreamError::BadDigest(_))
        ));
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
