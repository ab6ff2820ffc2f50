//! fs-verity digests: the algorithm types, the digest value, and a streaming userspace
//! computation that equals the kernel's `FS_IOC_MEASURE_VERITY` and `fsverity digest`.
//!
//! Parameters follow the composefs convention: 4096-byte Merkle tree blocks and no salt
//! (kernel `Documentation/filesystems/fsverity.rst`, "File digest computation").

pub mod ioctl;
pub mod signature;

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use sha2::Digest as _;

/// log2 of the Merkle tree block size used everywhere in composefs.
pub const LOG_BLOCK_SIZE: u8 = 12;
/// Merkle tree block size (and data block size) in bytes.
pub const BLOCK_SIZE: usize = 1 << LOG_BLOCK_SIZE;

/// A hash algorithm fs-verity supports (values of `FS_VERITY_HASH_ALG_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Algorithm {
    /// `FS_VERITY_HASH_ALG_SHA256` = 1
    #[default]
    Sha256,
    /// `FS_VERITY_HASH_ALG_SHA512` = 2
    Sha512,
}

impl Algorithm {
    /// Length of a digest in bytes.
    pub const fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// The kernel's `FS_VERITY_HASH_ALG_*` number (also the overlay metacopy `digest_algo`).
    pub const fn kernel_id(self) -> u8 {
        match self {
            Algorithm::Sha256 => 1,
            Algorithm::Sha512 => 2,
        }
    }

    /// The algorithm for a kernel `FS_VERITY_HASH_ALG_*` number.
    pub fn from_kernel_id(id: u32) -> Option<Self> {
        match id {
            1 => Some(Algorithm::Sha256),
            2 => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// The algorithm whose digests have this many bytes.
    pub fn from_digest_len(len: usize) -> Option<Self> {
        match len {
            32 => Some(Algorithm::Sha256),
            64 => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// Name as `fsverity digest --hash-alg` spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            _ => Err(DigestParseError::UnknownAlgorithm(s.to_string())),
        }
    }
}

/// Why a textual digest was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestParseError {
    /// Not 64 (sha256) or 128 (sha512) hex characters.
    #[error("digest '{0}' is not 64 or 128 hex characters")]
    BadLength(String),
    /// Contains a character that is not a hex digit.
    #[error("digest '{0}' is not hexadecimal")]
    NotHex(String),
    /// Algorithm name not known.
    #[error("unknown fs-verity hash algorithm '{0}' (expected sha256 or sha512)")]
    UnknownAlgorithm(String),
}

/// An fs-verity digest (the measurement of a file), with its algorithm.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    bytes: [u8; 64],
}

impl Digest {
    /// A digest from raw bytes; the algorithm follows from the length (32 or 64).
    pub fn from_bytes(raw: &[u8]) -> Option<Self> {
        let algorithm = Algorithm::from_digest_len(raw.len())?;
        let mut bytes = [0u8; 64];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Digest { algorithm, bytes })
    }

    /// Parses 64 or 128 hex characters.
    pub fn from_hex(hex_str: &str) -> Result<Self, DigestParseError> {
        let len = match hex_str.len() {
            64 => 32,
            128 => 64,
            _ => return Err(DigestParseError::BadLength(hex_str.to_string())),
        };
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(hex_str, &mut bytes[..len])
            .map_err(|_| DigestParseError::NotHex(hex_str.to_string()))?;
        Ok(Digest {
            algorithm: Algorithm::from_digest_len(len).expect("32 or 64"),
            bytes,
        })
    }

    /// The hash algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The raw digest bytes (32 or 64).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.algorithm.digest_len()]
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        let mut out = [0u8; 128];
        let out = &mut out[..2 * self.as_bytes().len()];
        // encode_to_slice is a table lookup per byte; hex::encode goes through a char
        // iterator (measured: 3% of a cached re-import, which formats two paths per file).
        hex::encode_to_slice(self.as_bytes(), out).expect("output is twice the input");
        String::from_utf8(out.to_vec()).expect("hex is ASCII")
    }

    /// The object path inside a store: `XX/<rest of hex>` (the composefs `basedir` layout,
    /// also what `trusted.overlay.redirect` names relative to the data directory).
    pub fn object_path(&self) -> String {
        let len = self.as_bytes().len();
        let mut out = [0u8; 129];
        hex::encode_to_slice(&self.as_bytes()[..1], &mut out[..2]).expect("two hex digits");
        out[2] = b'/';
        hex::encode_to_slice(&self.as_bytes()[1..], &mut out[3..2 * len + 1])
            .expect("output is twice the input");
        String::from_utf8(out[..2 * len + 1].to_vec()).expect("hex is ASCII")
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.to_hex())
    }
}

impl FromStr for Digest {
    type Err = DigestParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::from_hex(s)
    }
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Hashes `parts` in one go, writing the result to `out` (digest_len bytes).
    fn hash_into(algorithm: Algorithm, parts: &[&[u8]], out: &mut [u8]) {
        let mut h = Hasher::new(algorithm);
        for p in parts {
            match &mut h {
                Hasher::Sha256(s) => s.update(p),
                Hasher::Sha512(s) => s.update(p),
            }
        }
        match h {
            Hasher::Sha256(s) => out.copy_from_slice(&s.finalize()),
            Hasher::Sha512(s) => out.copy_from_slice(&s.finalize()),
        }
    }
}

/// Streaming fs-verity digest computation.
///
/// Feed the file content in any chunking with [`FsVerityHasher::update`]; memory use is one
/// data block plus one hash block per tree level.
pub struct FsVerityHasher {
    algorithm: Algorithm,
    /// Partial data block.
    block: Box<[u8; BLOCK_SIZE]>,
    block_len: usize,
    /// levels[i]: the hash block being filled at tree level i (level 0 holds data-block hashes).
    levels: Vec<Vec<u8>>,
    data_size: u64,
}

impl std::fmt::Debug for FsVerityHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsVerityHasher")
            .field("algorithm", &self.algorithm)
            .field("data_size", &self.data_size)
            .finish_non_exhaustive()
    }
}

impl FsVerityHasher {
    /// A hasher for `algorithm`, 4096-byte blocks, no salt.
    pub fn new(algorithm: Algorithm) -> Self {
        FsVerityHasher {
            algorithm,
            block: Box::new([0u8; BLOCK_SIZE]),
            block_len: 0,
            levels: Vec::new(),
            data_size: 0,
        }
    }

    /// Adds file content.
    pub fn update(&mut self, mut data: &[u8]) {
        self.data_size += data.len() as u64;
        if self.block_len > 0 {
            let take = (BLOCK_SIZE - self.block_len).min(data.len());
            self.block[self.block_len..self.block_len + take].copy_from_slice(&data[..take]);
            self.block_len += take;
            data = &data[take..];
            if self.block_len == BLOCK_SIZE {
                let block = std::mem::replace(&mut self.block, Box::new([0u8; BLOCK_SIZE]));
                self.push_data_block(&block[..]);
                self.block = block;
                self.block_len = 0;
            }
        }
        while data.len() >= BLOCK_SIZE {
            let (block, rest) = data.split_at(BLOCK_SIZE);
            self.push_data_block(block);
            data = rest;
        }
        if !data.is_empty() {
            self.block[..data.len()].copy_from_slice(data);
            self.block_len = data.len();
        }
    }

    fn push_data_block(&mut self, block: &[u8]) {
        let mut out = [0u8; 64];
        let len = self.algorithm.digest_len();
        Hasher::hash_into(self.algorithm, &[block], &mut out[..len]);
        self.push_hash(0, &out[..len]);
    }

    fn push_hash(&mut self, level: usize, hash: &[u8]) {
        if self.levels.len() <= level {
            self.levels.push(Vec::with_capacity(BLOCK_SIZE));
        }
        self.levels[level].extend_from_slice(hash);
        // A full hash block at this level is hashed eagerly unless it could still turn out
        // to be the root; that is decided in finish(), so keep one full block pending and
        // only hash it when one more hash arrives at this level.
        let len = self.algorithm.digest_len();
        if self.levels[level].len() == BLOCK_SIZE + len {
            let mut out = [0u8; 64];
            let extra: Vec<u8> = self.levels[level][BLOCK_SIZE..].to_vec();
            Hasher::hash_into(
                self.algorithm,
                &[&self.levels[level][..BLOCK_SIZE]],
                &mut out[..len],
            );
            self.levels[level].clear();
            self.levels[level].extend_from_slice(&extra);
            self.push_hash(level + 1, &out[..len]);
        }
    }

    /// The fs-verity digest of a file of `data_size` bytes from the hashes of its data
    /// blocks, in order (what [`block_hashes`] returns for consecutive block-aligned
    /// parts). Lets several threads hash parts of one large file.
    pub fn from_block_hashes(algorithm: Algorithm, data_size: u64, hashes: &[u8]) -> Digest {
        let mut hasher = FsVerityHasher::new(algorithm);
        for hash in hashes.chunks_exact(algorithm.digest_len()) {
            hasher.push_hash(0, hash);
        }
        hasher.data_size = data_size;
        hasher.finish()
    }

    /// The fs-verity digest of everything passed to [`update`](Self::update).
    pub fn finish(mut self) -> Digest {
        if self.block_len > 0 {
            let block_len = self.block_len;
            let mut block = std::mem::replace(&mut self.block, Box::new([0u8; BLOCK_SIZE]));
            block[block_len..].fill(0);
            self.push_data_block(&block[..]);
        }
        let len = self.algorithm.digest_len();
        let mut root = [0u8; 64];
        // Walk up: the root is the single hash left at the top level.
        let mut level = 0;
        while level < self.levels.len() {
            let is_top = level + 1 == self.levels.len();
            let pending = std::mem::take(&mut self.levels[level]);
            if is_top && pending.len() == len {
                root[..len].copy_from_slice(&pending);
                break;
            }
            if !pending.is_empty() {
                let mut padded = pending;
                padded.resize(padded.len().div_ceil(BLOCK_SIZE) * BLOCK_SIZE, 0);
                let mut out = [0u8; 64];
                Hasher::hash_into(self.algorithm, &[&padded], &mut out[..len]);
                // Through push_hash: the level above may already hold a full block, which
                // must be hashed on its own before this hash starts the next one.
                self.push_hash(level + 1, &out[..len]);
            }
            level += 1;
        }
        // struct fsverity_descriptor (include/uapi/linux/fsverity.h, 256 bytes):
        // version, hash_algorithm, log_blocksize, salt_size, __reserved_0x04[4],
        // __le64 data_size, root_hash[64], salt[32], __reserved[144].
        let mut desc = [0u8; 256];
        desc[0] = 1;
        desc[1] = self.algorithm.kernel_id();
        desc[2] = LOG_BLOCK_SIZE;
        desc[8..16].copy_from_slice(&self.data_size.to_le_bytes());
        desc[16..16 + len].copy_from_slice(&root[..len]);
        let mut out = [0u8; 64];
        Hasher::hash_into(self.algorithm, &[&desc], &mut out[..len]);
        Digest::from_bytes(&out[..len]).expect("digest length")
    }
}

/// Appends to `out` the hash of each [`BLOCK_SIZE`] block of `data`, a last partial block
/// zero-padded (level 0 of the Merkle tree; see [`FsVerityHasher::from_block_hashes`]).
pub fn block_hashes(algorithm: Algorithm, data: &[u8], out: &mut Vec<u8>) {
    let len = algorithm.digest_len();
    let mut hash = [0u8; 64];
    for block in data.chunks(BLOCK_SIZE) {
        if block.len() == BLOCK_SIZE {
            Hasher::hash_into(algorithm, &[block], &mut hash[..len]);
        } else {
            let mut padded = [0u8; BLOCK_SIZE];
            padded[..block.len()].copy_from_slice(block);
            Hasher::hash_into(algorithm, &[&padded], &mut hash[..len]);
        }
        out.extend_from_slice(&hash[..len]);
    }
}

/// Hashes what it passes on to `inner`.
pub struct HashingWriter<W> {
    /// Where the bytes go.
    pub inner: W,
    /// What they hash to so far.
    pub hasher: FsVerityHasher,
}

impl<W> std::fmt::Debug for HashingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingWriter")
            .field("hasher", &self.hasher)
            .finish_non_exhaustive()
    }
}

impl<W: io::Write> io::Write for HashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The fs-verity digest of a byte slice.
pub fn digest_bytes(algorithm: Algorithm, data: &[u8]) -> Digest {
    let mut h = FsVerityHasher::new(algorithm);
    h.update(data);
    h.finish()
}

/// The fs-verity digest of everything a reader yields.
pub fn digest_reader(algorithm: Algorithm, mut reader: impl Read) -> io::Result<Digest> {
    let mut h = FsVerityHasher::new(algorithm);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_hashes_in_parts_equal_streaming() {
        let data: Vec<u8> = (0..(130 * 128 + 3) * BLOCK_SIZE + 77)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            // Around every tree-shape boundary: one block, one full hash block, two levels.
            let blocks = BLOCK_SIZE / algorithm.digest_len();
            for size in [
                1,
                BLOCK_SIZE,
                BLOCK_SIZE + 1,
                blocks * BLOCK_SIZE,
                blocks * BLOCK_SIZE + 1,
                blocks * blocks * BLOCK_SIZE + 5,
                data.len(),
            ] {
                let size = size.min(data.len());
                let data = &data[..size];
                let mut hashes = Vec::new();
                // Parts of 3 blocks, the last one shorter.
                for part in data.chunks(3 * BLOCK_SIZE) {
                    block_hashes(algorithm, part, &mut hashes);
                }
                assert_eq!(
                    FsVerityHasher::from_block_hashes(algorithm, size as u64, &hashes),
                    digest_bytes(algorithm, data),
                    "{algorithm} size {size}"
                );
            }
        }
    }

    #[test]
    fn hello_world_vector() {
        // composefs-rs and `fsverity digest` agree on this value.
        let d = digest_bytes(Algorithm::Sha256, b"hello world");
        assert_eq!(
            d.to_hex(),
            "1e2eaa4202d750a41174ee454970b92c1bc2f925b1e35076d8c7d5f56362ba64"
        );
    }

    #[test]
    fn empty_file_sha256() {
        // `fsverity digest --hash-alg=sha256` of an empty file.
        let d = digest_bytes(Algorithm::Sha256, b"");
        assert_eq!(
            d.to_hex(),
            "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"
        );
    }

    #[test]
    fn chunking_does_not_matter() {
        let data: Vec<u8> = (0..(130 * 4096 + 17))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let whole = digest_bytes(Algorithm::Sha512, &data);
        let mut h = FsVerityHasher::new(Algorithm::Sha512);
        for chunk in data.chunks(1000) {
            h.update(chunk);
        }
        assert_eq!(h.finish(), whole);
    }

    /// Compares with the `fsverity` tool (fsverity-utils) where it is installed, around
    /// every block and Merkle-level boundary.
    #[test]
    fn matches_fsverity_tool() {
        let tool = std::process::Command::new("fsverity")
            .arg("--version")
            .output();
        if !tool.is_ok_and(|o| o.status.success()) {
            eprintln!("note: `fsverity` tool missing, comparison skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let cases: &[(Algorithm, usize)] = &[
            (Algorithm::Sha256, 0),
            (Algorithm::Sha256, 1),
            (Algorithm::Sha256, 4095),
            (Algorithm::Sha256, 4096),
            (Algorithm::Sha256, 4097),
            (Algorithm::Sha256, 128 * 4096),
            (Algorithm::Sha256, 128 * 4096 + 1),
            (Algorithm::Sha256, 5_000_000),
            (Algorithm::Sha512, 64 * 4096 + 1),
            // Three Merkle levels with SHA-512 (64 hashes per block).
            (Algorithm::Sha512, 64 * 64 * 4096 + 1),
        ];
        for &(algorithm, len) in cases {
            let data: Vec<u8> = (0..len)
                .map(|i| (i % 251) as u8 ^ (i >> 12) as u8)
                .collect();
            std::fs::write(&path, &data).unwrap();
            let out = std::process::Command::new("fsverity")
                .arg("digest")
                .arg(format!("--hash-alg={algorithm}"))
                .arg("--compact")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let expected = String::from_utf8(out.stdout).unwrap();
            assert_eq!(
                digest_bytes(algorithm, &data).to_hex(),
                expected.trim(),
                "{algorithm}, {len} bytes"
            );
        }
    }

    #[test]
    fn hex_round_trip_and_object_path() {
        let d = digest_bytes(Algorithm::Sha256, b"x");
        assert_eq!(Digest::from_hex(&d.to_hex()).unwrap(), d);
        assert_eq!(
            d.object_path(),
            format!("{}/{}", &d.to_hex()[..2], &d.to_hex()[2..])
        );
        assert!(Digest::from_hex("abc").is_err());
        assert!(Digest::from_hex(&"zz".repeat(32)).is_err());
    }
}
