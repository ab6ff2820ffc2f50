//! Reads a directory into a tree like `mkcomposefs` and prints how fast it went.
//!
//! `cargo run --release --example scan_throughput DIR [THREADS] [STORE_DIR]`

use std::path::Path;
use std::time::Instant;

use cfsctl::tree::from_dir::{ContentSink, DigestStoreDir, ScanOptions, read_dir};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .expect("usage: scan_throughput DIR [THREADS] [STORE_DIR]");
    let threads = args.next().map_or(Ok(0), |t| t.parse())?;
    let store = args
        .next()
        .map(|p| DigestStoreDir::open(Path::new(&p)))
        .transpose()?;
    let opts = ScanOptions {
        threads,
        ..ScanOptions::default()
    };
    let start = Instant::now();
    let (tree, report) = read_dir(
        Path::new(&dir),
        &opts,
        store.as_ref().map(|s| s as &dyn ContentSink),
    )?;
    let secs = start.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?");
    println!(
        "{} inodes, {} external files, {:.2} GB hashed in {secs:.2} s = {:.2} GB/s; {hwm}",
        tree.inodes.len(),
        report.external_files,
        report.hashed_bytes as f64 / 1e9,
        report.hashed_bytes as f64 / secs / 1e9,
    );
    println!(
        "stored {}, already present {}",
        report.objects_stored, report.objects_present
    );
    Ok(())
}
