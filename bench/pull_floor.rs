//! The CPU work no pull of an `oci:` image can skip, done with cfsctl's own parts and
//! nothing else: per layer (biggest first, one thread per core, as `oci pull` schedules
//! them) the blob is read and checked against its digest, inflated, the tar checked against
//! its diff_id and parsed, and the fs-verity digest of every file stored as an object. Nothing is
//! written and no tree is built, so `cfsctl oci pull` of the same image can be compared to
//! it: the gap is the cost of storing objects and building the image.
//!
//! Usage: `pull-floor OCI_DIR[:TAG]`; prints `seconds layers blob_bytes tar_bytes files`.

use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use cfsctl::fsverity::{Algorithm, FsVerityHasher};
use cfsctl::oci::source::ImageSource;
use cfsctl::oci::source::ocidir::OciDir;
use cfsctl::oci::stream::{VerifyingReader, decompress};
use oci_spec::image::{Descriptor, ImageConfiguration};

fn main() -> Result<()> {
    let arg = std::env::args()
        .nth(1)
        .context("usage: pull-floor OCI_DIR[:TAG]")?;
    let (dir, tag) = match arg.rsplit_once(':') {
        Some((d, t)) if !t.contains('/') => (d.to_string(), Some(t.to_string())),
        _ => (arg.clone(), None),
    };
    let src = OciDir::open(Path::new(&dir), tag.as_deref())?;
    let manifest = src.manifest()?;
    let config: ImageConfiguration = serde_json::from_slice(&src.config(&manifest.manifest)?)?;
    let layers: Vec<(&Descriptor, String)> = manifest
        .manifest
        .layers()
        .iter()
        .zip(config.rootfs().diff_ids())
        .map(|(d, id)| (d, id.clone()))
        .collect();
    let mut order: Vec<usize> = (0..layers.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(layers[i].0.size()));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());

    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let totals = Mutex::new((0u64, 0u64, 0u64));
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.min(layers.len()) {
            s.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let (desc, diff_id) = &layers[i];
                    match layer(&src, desc, diff_id) {
                        Ok((b, t, f)) => {
                            let mut tot = totals.lock().unwrap();
                            tot.0 += b;
                            tot.1 += t;
                            tot.2 += f;
                        }
                        Err(e) => errors.lock().unwrap().push(format!("{:#}", e)),
                    }
                }
            });
        }
    });
    if let Some(e) = errors.into_inner()?.first() {
        anyhow::bail!("{e}");
    }
    let (blob, tar, files) = totals.into_inner()?;
    println!(
        "{:.2} {} {blob} {tar} {files}",
        start.elapsed().as_secs_f64(),
        layers.len()
    );
    Ok(())
}

/// One layer: (blob bytes, tar bytes, regular files).
fn layer(src: &OciDir, desc: &Descriptor, diff_id: &str) -> Result<(u64, u64, u64)> {
    let mut blob = VerifyingReader::for_descriptor(src.open_blob(desc)?, desc, "blob")?;
    let media_type = desc.media_type().to_string();
    let mut tar = VerifyingReader::new(
        decompress(&media_type, &mut blob)?,
        &diff_id.parse()?,
        None,
        "diff_id",
    )?;
    let mut files = 0;
    {
        let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(256 << 10, &mut tar));
        let mut buf = vec![0u8; 256 << 10];
        for entry in archive.entries()? {
            let mut entry = entry?;
            // Files up to 64 bytes are kept inline in the image: no object, no digest.
            if !entry.header().entry_type().is_file()
                || entry.size() <= cfsctl::erofs::limits::INLINE_RECOMMENDED_MAX
            {
                continue;
            }
            files += 1;
            let mut h = FsVerityHasher::new(Algorithm::Sha256);
            loop {
                let n = entry.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            h.finish();
        }
    }
    let tar_bytes = tar.finish()?;
    Ok((blob.finish()?, tar_bytes, files))
}
