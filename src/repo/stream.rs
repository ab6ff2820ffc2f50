//! Storing content that arrives as a stream (a tar entry, a decompressor): the bytes are
//! hashed as they are written into an unnamed temporary file, then linked under their digest.
//!
//! A stream cannot be hashed first and skipped when present, so the content is always
//! written once; when the object turns out to exist already the temporary file is dropped
//! (unnamed: nothing to clean up) instead of linked.

use std::io::{self, Read, Write};

use anyhow::{Context, Result};

use super::Repository;
use super::objects::TmpObject;
use crate::fsverity::{Digest, FsVerityHasher};

/// Size of the copy buffer: large enough that the syscall cost per byte is negligible,
/// small enough for one per importer thread.
const COPY_BUF: usize = 256 * 1024;

/// Why a streamed object could not be stored, when the caller may want to know.
#[derive(Debug, thiserror::Error)]
pub enum StreamObjectError {
    /// The stream ended before `size` bytes.
    #[error("stream ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes announced.
        expected: u64,
        /// Bytes read.
        got: u64,
    },
}

impl Repository {
    /// Stores exactly `size` bytes read from `reader` as an object and returns its digest.
    ///
    /// The content is hashed while it is written to an `O_TMPFILE`; the object is linked
    /// only once complete (a stream that ends early is [`StreamObjectError::Truncated`] and
    /// leaves nothing behind). Reads nothing beyond `size`. Safe to call from several
    /// threads at once.
    pub fn import_reader(&self, mut reader: impl Read, size: u64) -> Result<Digest> {
        let what = || format!("storing a streamed object in {}", self.path().display());
        let mut tmp = TmpObject::create(self).with_context(what)?;
        let mut hasher = FsVerityHasher::new(self.algorithm());
        let mut buf = vec![0u8; COPY_BUF.min(usize::try_from(size).unwrap_or(COPY_BUF))];
        let mut done = 0u64;
        {
            let file = tmp.file();
            while done < size {
                let want = buf
                    .len()
                    .min(usize::try_from(size - done).unwrap_or(usize::MAX));
                let n = match reader.read(&mut buf[..want]) {
                    Ok(0) => {
                        return Err(StreamObjectError::Truncated {
                            expected: size,
                            got: done,
                        }
                        .into());
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                };
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n]).with_context(what)?;
                done += n as u64;
            }
        }
        let digest = hasher.finish();
        tmp.link_or_drop(digest, &what)?;
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::{Algorithm, digest_bytes};

    #[test]
    fn streams_and_dedups() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let d = repo.import_reader(&data[..], data.len() as u64).unwrap();
        assert_eq!(d, digest_bytes(Algorithm::Sha256, &data));
        assert!(repo.has_object(&d));
        assert_eq!(repo.import_reader(&data[..], data.len() as u64).unwrap(), d);
        // Only `size` bytes are consumed.
        let mut r = &data[..];
        let d2 = repo.import_reader(&mut r, 100).unwrap();
        assert_eq!(d2, digest_bytes(Algorithm::Sha256, &data[..100]));
        assert_eq!(r.len(), data.len() - 100);
    }

    #[test]
    fn truncated_stream_stores_nothing() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        let err = repo.import_reader(&b"short"[..], 10).unwrap_err();
        assert!(matches!(
            err.downcast_ref::<StreamObjectError>(),
            Some(StreamObjectError::Truncated {
                expected: 10,
                got: 5
            })
        ));
        let objects: Vec<_> = std::fs::read_dir(td.path().join("objects"))
            .unwrap()
            .collect();
        assert!(objects.is_empty(), "{objects:?}");
    }
}
