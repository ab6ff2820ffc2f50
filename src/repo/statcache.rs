//! The stat cache, `cache/stat-v1`: which fs-verity digest a source file had when it was last
//! imported, keyed by its [`FileKey`] (device, inode, size, mtime and ctime with
//! nanoseconds), so that re-importing an unchanged tree reads no file contents. Git's index
//! does the same for `git status`.
//!
//! Format (little-endian), a second implementation may read or ignore it:
//! ```text
//! magic "CFSSTAT1" | algorithm u8 (1 sha256, 2 sha512) | digest length u8 | 6 zero bytes
//! | entry count u64
//! | entries, sorted by (dev, ino): dev u64, ino u64, size u64, mtime_sec i64,
//!   mtime_nsec u32, ctime_nsec u32, ctime_sec i64, digest
//! | SHA-256 of everything before it
//! ```
//! Anything that does not parse or whose checksum fails is ignored (and replaced by the next
//! import). The file is written atomically (temporary name, rename).
//!
//! Why a hit is safe: a write to a file changes its ctime, which no one can set back. An
//! entry is only written when the file's ctime and mtime are older than the start of the
//! scan that read it minus [`RACY_MARGIN`] (git's "racily clean" rule): otherwise a write
//! right after the read, within the filesystem's timestamp granularity, could leave the
//! same ctime on different content. A hit is used only if the object is still stored.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rustix::fs::{OFlags, RenameFlags};
use sha2::{Digest as _, Sha256};

use super::{Repository, mkdir_exist_ok, write_file_atomic};
use crate::fsverity::{Algorithm, Digest};
use crate::tree::{FileKey, Timestamp};

const CACHE_DIR: &str = "cache";
const STAT_CACHE: &str = "stat-v1";
const MAGIC: &[u8; 8] = b"CFSSTAT1";
const HEADER_LEN: usize = 24;
/// dev, ino, size, mtime_sec, mtime_nsec + ctime_nsec, ctime_sec.
const KEY_LEN: usize = 48;
const CHECKSUM_LEN: usize = 32;

/// Files changed less than this long before a scan started are not cached: more than any
/// filesystem's timestamp granularity (jiffies, or the 1-2 s of some network filesystems).
pub const RACY_MARGIN: Duration = Duration::from_secs(2);

/// A loaded stat cache: the file's bytes, searched in place.
#[derive(Debug, Default)]
pub struct StatCache {
    bytes: Vec<u8>,
    entry_len: usize,
    count: usize,
}

fn algorithm_id(a: Algorithm) -> u8 {
    match a {
        Algorithm::Sha256 => 1,
        Algorithm::Sha512 => 2,
    }
}

fn encode_key(k: &FileKey, out: &mut Vec<u8>) {
    out.extend_from_slice(&k.dev.to_le_bytes());
    out.extend_from_slice(&k.ino.to_le_bytes());
    out.extend_from_slice(&k.size.to_le_bytes());
    out.extend_from_slice(&k.mtime.sec.to_le_bytes());
    out.extend_from_slice(&k.mtime.nsec.to_le_bytes());
    out.extend_from_slice(&k.ctime.nsec.to_le_bytes());
    out.extend_from_slice(&k.ctime.sec.to_le_bytes());
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl StatCache {
    /// Reads the repository's stat cache; empty when there is none or it is unusable
    /// (written for another algorithm, truncated, corrupt).
    pub fn load(repo: &Repository) -> StatCache {
        let path = format!("{CACHE_DIR}/{STAT_CACHE}");
        let bytes = match super::trust::open_nofollow(&repo.dir, &path, OFlags::RDONLY) {
            Ok(fd) => {
                let mut bytes = Vec::new();
                match std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut bytes) {
                    Ok(_) => bytes,
                    Err(e) => {
                        tracing::warn!("{}/{path}: {e}; ignored", repo.path.display());
                        return StatCache::default();
                    }
                }
            }
            Err(_) => return StatCache::default(),
        };
        match Self::parse(bytes, repo.algorithm) {
            Some(cache) => cache,
            None => {
                tracing::warn!(
                    "{}/{path} is not a valid stat cache; ignored (the next import rewrites it)",
                    repo.path.display()
                );
                StatCache::default()
            }
        }
    }

    fn parse(bytes: Vec<u8>, algorithm: Algorithm) -> Option<StatCache> {
        let digest_len = algorithm.digest_len();
        let entry_len = KEY_LEN + digest_len;
        if bytes.len() < HEADER_LEN + CHECKSUM_LEN
            || &bytes[..8] != MAGIC
            || bytes[8] != algorithm_id(algorithm)
            || usize::from(bytes[9]) != digest_len
        {
            return None;
        }
        let count = usize::try_from(u64_at(&bytes, 16)).ok()?;
        let body = count.checked_mul(entry_len)?.checked_add(HEADER_LEN)?;
        if bytes.len() != body.checked_add(CHECKSUM_LEN)? {
            return None;
        }
        if Sha256::digest(&bytes[..body]).as_slice() != &bytes[body..] {
            return None;
        }
        Some(StatCache {
            bytes,
            entry_len,
            count,
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The digest recorded for a file with exactly this key.
    pub fn lookup(&self, key: &FileKey) -> Option<Digest> {
        let entry = |i: usize| &self.bytes[HEADER_LEN + i * self.entry_len..][..self.entry_len];
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let e = entry(mid);
            match (u64_at(e, 0), u64_at(e, 8)).cmp(&(key.dev, key.ino)) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    let mut want = Vec::with_capacity(KEY_LEN);
                    encode_key(key, &mut want);
                    return if e[..KEY_LEN] == want[..] {
                        Digest::from_bytes(&e[KEY_LEN..])
                    } else {
                        None
                    };
                }
            }
        }
        None
    }

    /// Replaces the repository's stat cache with `entries`, leaving out those changed after
    /// `scan_start` minus [`RACY_MARGIN`] and those of another algorithm.
    pub fn save(
        repo: &Repository,
        mut entries: Vec<(FileKey, Digest)>,
        scan_start: SystemTime,
    ) -> Result<()> {
        let cutoff = scan_start
            .checked_sub(RACY_MARGIN)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(Timestamp::default(), |d| Timestamp {
                sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                nsec: d.subsec_nanos(),
            });
        entries.retain(|(k, d)| {
            k.mtime < cutoff && k.ctime < cutoff && d.algorithm() == repo.algorithm
        });
        entries.sort_unstable_by_key(|(k, _)| (k.dev, k.ino));
        // Hard links appear once per name; one entry per inode is enough.
        entries.dedup_by_key(|(k, _)| (k.dev, k.ino));
        let digest_len = repo.algorithm.digest_len();
        let mut out =
            Vec::with_capacity(HEADER_LEN + entries.len() * (KEY_LEN + digest_len) + CHECKSUM_LEN);
        out.extend_from_slice(MAGIC);
        out.push(algorithm_id(repo.algorithm));
        out.push(u8::try_from(digest_len).expect("digest length fits a byte"));
        out.extend_from_slice(&[0; 6]);
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for (k, d) in &entries {
            encode_key(k, &mut out);
            out.extend_from_slice(d.as_bytes());
        }
        drop(entries);
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        let what = || format!("writing {}/{CACHE_DIR}/{STAT_CACHE}", repo.path.display());
        mkdir_exist_ok(&repo.dir, CACHE_DIR).with_context(what)?;
        let dir = super::trust::open_child_dir(&repo.dir, CACHE_DIR).with_context(what)?;
        write_file_atomic(&dir, STAT_CACHE, &out, RenameFlags::empty()).with_context(what)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::digest_bytes;

    fn key(ino: u64, sec: i64) -> FileKey {
        let t = Timestamp { sec, nsec: 5 };
        FileKey {
            dev: 1,
            ino,
            size: 10,
            mtime: t,
            ctime: t,
        }
    }

    #[test]
    fn round_trip_racy_and_corrupt() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        assert!(StatCache::load(&repo).is_empty());
        let d = |s: &[u8]| digest_bytes(Algorithm::Sha256, s);
        let start = UNIX_EPOCH + Duration::from_secs(1000);
        let entries = vec![
            (key(3, 500), d(b"three")),
            (key(1, 500), d(b"one")),
            // Changed within the margin before the scan: not trusted, not written.
            (key(2, 999), d(b"two")),
        ];
        StatCache::save(&repo, entries, start).unwrap();
        let cache = StatCache::load(&repo);
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.lookup(&key(1, 500)), Some(d(b"one")));
        assert_eq!(cache.lookup(&key(3, 500)), Some(d(b"three")));
        assert_eq!(cache.lookup(&key(2, 999)), None);
        // Any field changed: a miss.
        let mut k = key(1, 500);
        k.ctime.nsec += 1;
        assert_eq!(cache.lookup(&k), None);
        let mut k = key(1, 500);
        k.size += 1;
        assert_eq!(cache.lookup(&k), None);

        // One flipped byte: the whole cache is ignored.
        let path = td.path().join("cache/stat-v1");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN + 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(StatCache::load(&repo).is_empty());
        std::fs::write(&path, b"CFSSTAT1").unwrap();
        assert!(StatCache::load(&repo).is_empty());
    }
}
