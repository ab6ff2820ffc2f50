//! Measures single-thread throughput of the userspace fs-verity digest and of plain SHA-256
//! over the same buffer, to tell hashing cost from Merkle-tree overhead.
//!
//! `cargo run --release --example fsverity_throughput [MiB]`

use std::time::Instant;

use cfsctl::fsverity::{Algorithm, FsVerityHasher};
use sha2::Digest as _;

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let chunk = vec![0x5au8; 1 << 20];
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let start = Instant::now();
        let mut h = FsVerityHasher::new(algorithm);
        for _ in 0..mib {
            h.update(&chunk);
        }
        let d = h.finish();
        let t = start.elapsed().as_secs_f64();
        println!(
            "fs-verity {algorithm}: {:.2} GB/s ({d:?})",
            (mib << 20) as f64 / t / 1e9
        );
    }
    let start = Instant::now();
    let mut h = sha2::Sha256::new();
    for _ in 0..mib {
        h.update(&chunk);
    }
    let _ = h.finalize();
    let t = start.elapsed().as_secs_f64();
    println!("plain sha256: {:.2} GB/s", (mib << 20) as f64 / t / 1e9);
}
