//! Measures single-thread throughput of the userspace fs-verity digest and of plain SHA-256
//! over the same buffer, to tell hashing cost from Merkle-tree overhead. Rates are per
//! second of this thread's CPU time, which other load on the machine disturbs less than
//! wall-clock time.
//!
//! `cargo run --release --example fsverity_throughput [MiB]`

use std::time::Duration;

use cfsctl::fsverity::{Algorithm, FsVerityHasher};
use sha2::Digest as _;

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let chunk = vec![0x5au8; 1 << 20];
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let start = CpuClock::now();
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
    // Unaligned updates go through the partial-block path.
    let start = CpuClock::now();
    let mut h = FsVerityHasher::new(Algorithm::Sha256);
    for _ in 0..mib {
        for piece in chunk.chunks(1000) {
            h.update(piece);
        }
    }
    let _ = h.finish();
    let t = start.elapsed().as_secs_f64();
    println!(
        "fs-verity sha256, 1000-byte updates: {:.2} GB/s",
        (mib << 20) as f64 / t / 1e9
    );
    let start = CpuClock::now();
    let mut h = sha2::Sha256::new();
    for _ in 0..mib {
        h.update(&chunk);
    }
    let _ = h.finalize();
    let t = start.elapsed().as_secs_f64();
    println!("plain sha256: {:.2} GB/s", (mib << 20) as f64 / t / 1e9);
}

/// CPU time of the calling thread (`/proc/thread-self/schedstat`, first field, in ns).
struct CpuClock(Duration);

impl CpuClock {
    fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
        let ns = stat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse().ok())
            .expect("schedstat format");
        CpuClock(Duration::from_nanos(ns))
    }

    fn elapsed(&self) -> Duration {
        CpuClock::now().0 - self.0
    }
}
