//! The content half of a scan: a pool of threads that read each external file once, compute
//! its fs-verity digest, and offer it to the [`ContentSink`].
//!
//! The scanner opens the files (so every path lookup stays on one thread, relative to an
//! open directory) and queues the open files on a bounded channel, which caps both the
//! number of open descriptors and how far the scan runs ahead of the hashing.

use std::cell::RefCell;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::{Scope, ScopedJoinHandle};

use anyhow::{Context, Result, anyhow};

use super::{ContentSink, ScanReport, Stored};
use crate::fsverity::{Algorithm, BLOCK_SIZE, Digest, FsVerityHasher, block_hashes};
use crate::tree::{FileKey, InodeId, Tree};

/// Read size. Small enough that a chunk is still in the L2 cache when it is hashed right
/// after the kernel copied it in (measured: 256 KiB and more make the copy from tmpfs
/// cost twice as much), large enough to make the syscall cost negligible.
const READ_CHUNK: usize = 64 * 1024;

/// Files are handed to the workers in batches, to save one wake-up per file (measured: a
/// third less scheduling overhead than one file per message): a batch is sent once it
/// holds this many files or bytes.
const MAX_BATCH_FILES: usize = 32;
const BATCH_BYTES: u64 = 8 << 20;

/// Files larger than this are hashed in parts of [`PART_BYTES`] by several threads at once
/// when there is no sink (compute-id): one 300 MB file found late otherwise kept a single
/// thread busy for 0.2 s after all others were done. Parts are whole batches and a
/// multiple of the Merkle tree's block size.
const SPLIT_MIN: u64 = 2 * PART_BYTES;
const PART_BYTES: u64 = BATCH_BYTES;

/// Queued batches per hashing thread.
const QUEUE_PER_THREAD: usize = 2;

/// Open files waiting in or being hashed from batches, at most: well below the usual
/// 1024-descriptor soft limit whatever the thread count. Batches get smaller as threads
/// are added to stay under it.
const MAX_OPEN_FILES: usize = 512;

/// A file to hash.
pub(super) struct Job {
    pub inode: InodeId,
    pub file: File,
    /// Size from stat: exactly this many bytes are hashed.
    pub size: u64,
    /// For messages.
    pub path: PathBuf,
    /// For the sink's cache.
    pub key: FileKey,
}

/// What a worker is handed: a whole file, or one part of a file split across workers.
enum Work {
    File(Job),
    Part(Arc<SplitFile>, usize),
}

/// A file hashed in parts: each part's data block hashes, and how many parts are left.
struct SplitFile {
    job: Job,
    parts: Box<[OnceLock<Vec<u8>>]>,
    left: AtomicUsize,
}

/// What the sink did with a file.
enum SinkOutcome {
    NoSink,
    AlreadyPresent,
    Stored,
}

struct Outcome {
    inode: InodeId,
    size: u64,
    result: Result<(Digest, SinkOutcome)>,
}

pub(super) struct Pool<'scope> {
    jobs: Option<SyncSender<Vec<Work>>>,
    batch: RefCell<(Vec<Work>, u64)>,
    /// Whether large files are split (only without a sink: importing reads a file once).
    split: bool,
    batch_files: usize,
    results: Receiver<Outcome>,
    workers: Vec<ScopedJoinHandle<'scope, ()>>,
    first_error: Mutex<Option<anyhow::Error>>,
    abort: &'scope AtomicBool,
}

impl<'scope> Pool<'scope> {
    pub fn start<'env: 'scope>(
        scope: &'scope Scope<'scope, 'env>,
        threads: usize,
        algorithm: Algorithm,
        sink: Option<&'env dyn ContentSink>,
        abort: &'env AtomicBool,
    ) -> Self {
        let queue = threads * QUEUE_PER_THREAD;
        // Queued batches, one being hashed per thread, one being filled.
        let batch_files = (MAX_OPEN_FILES / (queue + threads + 1)).clamp(1, MAX_BATCH_FILES);
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel::<Vec<Work>>(queue);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (result_tx, results) = std::sync::mpsc::channel();
        let workers = (0..threads)
            .map(|_| {
                let job_rx = Arc::clone(&job_rx);
                let result_tx = result_tx.clone();
                scope.spawn(move || worker(&job_rx, &result_tx, algorithm, sink, abort))
            })
            .collect();
        Pool {
            jobs: Some(job_tx),
            batch: RefCell::new((Vec::with_capacity(batch_files), 0)),
            batch_files,
            split: sink.is_none(),
            results,
            workers,
            first_error: Mutex::new(None),
            abort,
        }
    }

    /// Queues a file, blocking while the queue is full.
    pub fn submit(&self, job: Job) {
        if self.split && job.size > SPLIT_MIN {
            let parts = job.size.div_ceil(PART_BYTES) as usize;
            let split = Arc::new(SplitFile {
                job,
                parts: (0..parts).map(|_| OnceLock::new()).collect(),
                left: AtomicUsize::new(parts),
            });
            for part in 0..parts {
                self.add(Work::Part(Arc::clone(&split), part), PART_BYTES);
            }
        } else {
            let size = job.size;
            self.add(Work::File(job), size);
        }
    }

    fn add(&self, work: Work, size: u64) {
        let mut batch = self.batch.borrow_mut();
        batch.1 += size;
        batch.0.push(work);
        if batch.0.len() >= self.batch_files || batch.1 >= BATCH_BYTES {
            let full = std::mem::replace(&mut batch.0, Vec::with_capacity(self.batch_files));
            batch.1 = 0;
            self.send(full);
        }
    }

    fn send(&self, batch: Vec<Work>) {
        if let Some(jobs) = &self.jobs {
            // Fails only when every worker is gone, which finish() then reports.
            let _ = jobs.send(batch);
        }
    }

    /// Records the results that are ready, without waiting.
    pub fn collect_ready(&self, tree: &mut Tree, report: &mut ScanReport) {
        loop {
            match self.results.try_recv() {
                Ok(outcome) => self.record(outcome, tree, report),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Waits for every queued file and records the results; the first error wins.
    pub fn finish(mut self, tree: &mut Tree, report: &mut ScanReport) -> Result<()> {
        let last = std::mem::take(&mut self.batch.get_mut().0);
        if !last.is_empty() {
            self.send(last);
        }
        drop(self.jobs.take());
        let mut panicked = false;
        for worker in std::mem::take(&mut self.workers) {
            panicked |= worker.join().is_err();
        }
        while let Ok(outcome) = self.results.try_recv() {
            self.record(outcome, tree, report);
        }
        if let Some(err) = self
            .first_error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            return Err(err);
        }
        if panicked {
            return Err(anyhow!("a hashing thread panicked"));
        }
        Ok(())
    }

    fn record(&self, outcome: Outcome, tree: &mut Tree, report: &mut ScanReport) {
        match outcome.result {
            Ok((digest, stored)) => {
                let inode = &mut tree.inodes[outcome.inode];
                inode.payload = Some(digest.object_path().into_bytes().into_boxed_slice());
                inode.digest = Some(digest);
                report.hashed_bytes += outcome.size;
                match stored {
                    SinkOutcome::NoSink => {}
                    SinkOutcome::AlreadyPresent => report.objects_present += 1,
                    SinkOutcome::Stored => report.objects_stored += 1,
                }
            }
            Err(err) => {
                self.abort.store(true, Ordering::Relaxed);
                let mut first = self
                    .first_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                first.get_or_insert(err);
            }
        }
    }
}

fn worker(
    jobs: &Mutex<Receiver<Vec<Work>>>,
    results: &std::sync::mpsc::Sender<Outcome>,
    algorithm: Algorithm,
    sink: Option<&dyn ContentSink>,
    abort: &AtomicBool,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let batch = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(batch) = batch else { return };
        for work in batch {
            if abort.load(Ordering::Relaxed) {
                // Keep draining so the scanner never blocks on a full queue.
                continue;
            }
            let (inode, size, result) = match work {
                Work::File(job) => {
                    let result = process(&job, algorithm, sink, &mut buf);
                    (job.inode, job.size, result)
                }
                Work::Part(split, part) => {
                    let result = match hash_part(&split, part, algorithm, &mut buf) {
                        // Other parts are still being hashed.
                        Ok(None) => continue,
                        Ok(Some(digest)) => Ok((digest, SinkOutcome::NoSink)),
                        Err(e) => Err(e),
                    };
                    (split.job.inode, split.job.size, result)
                }
            };
            if result.is_err() {
                abort.store(true, Ordering::Relaxed);
            }
            let outcome = Outcome {
                inode,
                size,
                result,
            };
            if results.send(outcome).is_err() {
                return;
            }
        }
    }
}

/// Hashes part `part` of a split file; the digest once it was the last part left.
fn hash_part(
    split: &SplitFile,
    part: usize,
    algorithm: Algorithm,
    buf: &mut [u8],
) -> Result<Option<Digest>> {
    let job = &split.job;
    let start = part as u64 * PART_BYTES;
    let end = (start + PART_BYTES).min(job.size);
    let mut hashes = Vec::with_capacity(
        (end - start).div_ceil(BLOCK_SIZE as u64) as usize * algorithm.digest_len(),
    );
    let mut offset = start;
    while offset < end {
        // Whole buffers (a multiple of the block size) until the end of the part.
        let want = buf.len().min((end - offset) as usize);
        read_exact_at(&job.file, &mut buf[..want], offset)
            .with_context(|| format!("reading {}", job.path.display()))?;
        block_hashes(algorithm, &buf[..want], &mut hashes);
        offset += want as u64;
    }
    split.parts[part]
        .set(hashes)
        .expect("each part is hashed once");
    if split.left.fetch_sub(1, Ordering::AcqRel) != 1 {
        return Ok(None);
    }
    let all: Vec<u8> = split
        .parts
        .iter()
        .flat_map(|p| p.get().expect("every part is done").iter().copied())
        .collect();
    Ok(Some(FsVerityHasher::from_block_hashes(
        algorithm, job.size, &all,
    )))
}

/// Fills `buf` from `offset` of `fd`; a file shorter than its stat size is an error.
pub(super) fn read_exact_at(
    fd: impl std::os::fd::AsFd,
    buf: &mut [u8],
    offset: u64,
) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(&fd, &mut buf[done..], offset + done as u64) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank while being read",
                ));
            }
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn process(
    job: &Job,
    algorithm: Algorithm,
    sink: Option<&dyn ContentSink>,
    buf: &mut [u8],
) -> Result<(Digest, SinkOutcome)> {
    let Some(sink) = sink else {
        let digest = digest_file(&job.file, job.size, algorithm, buf)
            .with_context(|| format!("reading {}", job.path.display()))?;
        return Ok((digest, SinkOutcome::NoSink));
    };
    let (digest, stored) = sink
        .import(&job.file, job.size, algorithm, buf)
        .with_context(|| format!("importing {}", job.path.display()))?;
    sink.remember(&job.key, &digest);
    Ok((
        digest,
        match stored {
            Stored::New => SinkOutcome::Stored,
            Stored::AlreadyPresent => SinkOutcome::AlreadyPresent,
        },
    ))
}

/// The fs-verity digest of the first `size` bytes of `file`, read with `pread` into `buf`
/// and hashed in place. A file shorter than `size` is an error.
pub fn digest_file(
    file: &File,
    size: u64,
    algorithm: Algorithm,
    buf: &mut [u8],
) -> std::io::Result<Digest> {
    let mut hasher = FsVerityHasher::new(algorithm);
    let mut offset = 0u64;
    while offset < size {
        let want = buf.len().min((size - offset) as usize);
        match rustix::io::pread(file, &mut buf[..want], offset) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank while being read",
                ));
            }
            Ok(n) => {
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(hasher.finish())
}
