//! Reads a directory into a tree like `mkcomposefs` and prints how fast it went; optionally
//! writes the image, to compare with `mkcomposefs DIR IMAGE`.
//!
//! `cargo run --release --example scan_throughput -- DIR [--threads N] [--store DIR]
//! [--image FILE] [--use-epoch]`

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use cfsctl::erofs::writer::{WriteOptions, write_image};
use cfsctl::scan::{ContentSink, DigestStoreDir, ScanOptions, read_dir};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut store = None;
    let mut image = None;
    let mut opts = ScanOptions::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--threads" => opts.threads = args.next().context("--threads N")?.parse()?,
            "--store" => {
                store = Some(DigestStoreDir::open(Path::new(
                    &args.next().context("--store DIR")?,
                ))?)
            }
            "--image" => image = Some(PathBuf::from(args.next().context("--image FILE")?)),
            "--use-epoch" => opts.use_epoch = true,
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    let dir = dir.context(
        "usage: scan_throughput DIR [--threads N] [--store DIR] [--image FILE] [--use-epoch]",
    )?;
    let start = Instant::now();
    let cpu_start = cpu_seconds()?;
    let (tree, report) = read_dir(&dir, &opts, store.as_ref().map(|s| s as &dyn ContentSink))?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds()? - cpu_start;
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
        "CPU time {cpu:.2} s (all threads) = {:.2} GB per CPU-second",
        report.hashed_bytes as f64 / cpu / 1e9
    );
    println!(
        "stored {}, already present {}, skipped {}",
        report.objects_stored,
        report.objects_present,
        report.skipped.len()
    );
    if let Some(image) = image {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&image)?);
        write_image(&tree, &WriteOptions::default(), &mut out)?;
    }
    Ok(())
}

/// User + system CPU time of this process so far (`/proc/self/stat` fields 14 and 15, in
/// clock ticks of 1/100 s).
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name, which may contain spaces.
    let rest = &stat[stat.rfind(')').context("stat format")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}
