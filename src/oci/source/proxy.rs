//! Every transport but `oci:` through `skopeo experimental-image-proxy` (the
//! `containers-image-proxy` crate), so registries.conf mirrors, auth files and policy.json
//! apply as for podman.
//!
//! The proxy is async; a private tokio runtime lives here and nowhere else. A blob arrives as
//! a pipe: a task pumps it into a bounded channel while awaiting `FinishPipe` at the same time
//! (awaiting one before the other deadlocks skopeo), and the importer threads read the channel
//! as a plain `Read`. skopeo (1.9, protocol 0.2.3) answers one request at a time and its
//! `FinishPipe` returns only once the blob is written, so one proxy streams one blob at a
//! time: each blob in flight gets a proxy of its own ([`Connection`]s are pooled and reused),
//! at most [`MAX_PROXIES`]. Opening the image in a proxy costs a manifest request to a
//! registry (the signature policy is checked on it), which registries such as Docker Hub
//! count against rate limits, hence the cap. Transports that are costly to open
//! (`oci-archive:` and `docker-archive:` unpack the archive, `docker-daemon:` streams the
//! whole image) get one proxy, and their layers stream one at a time.
//! skopeo checks blob digests too, but the bytes are checked again by the caller's [`VerifyingReader`](crate::oci::stream::VerifyingReader) — the proxy is not trusted for that.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use containers_image_proxy::{ImageProxy, ImageProxyConfig, OpenedImage};
use oci_spec::image::{Descriptor, ImageManifest};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::{FetchedManifest, ImageSource, sha256_of};

/// Proxies (blobs streaming at once) for an image whose transport is cheap to open again.
pub const MAX_PROXIES: usize = 4;

/// Chunks in flight per blob (x 256 KiB): bounded memory whatever the layer size.
const CHANNEL_CHUNKS: usize = 8;
const CHUNK: usize = 256 << 10;

/// How long skopeo may leave a request unanswered, or a blob without a byte, before the
/// pull fails: skopeo's HTTP client has connect and TLS-handshake timeouts but none on a
/// response that stops arriving, so a stalled registry would hang the pull for ever.
/// `CFSCTL_STALL_TIMEOUT` (seconds) overrides it (`docs/oci-pull.md`).
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

fn stall_timeout() -> Duration {
    std::env::var("CFSCTL_STALL_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(DEFAULT_STALL_TIMEOUT, Duration::from_secs)
}

/// Runs `fut` on `rt`, failing with an error naming `what` if it takes longer than the
/// stall timeout.
fn block_on_timeout<T>(
    rt: &tokio::runtime::Runtime,
    what: impl FnOnce() -> String,
    fut: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let limit = stall_timeout();
    // The timer must be made inside the runtime (it needs its time driver).
    match rt.block_on(async { tokio::time::timeout(limit, fut).await }) {
        Ok(r) => r,
        Err(_) => anyhow::bail!(
            "{}: no answer from skopeo in {} s (CFSCTL_STALL_TIMEOUT); is the registry stalled?",
            what(),
            limit.as_secs()
        ),
    }
}

/// One skopeo proxy process with the image opened in it.
struct Connection {
    proxy: ImageProxy,
    image: OpenedImage,
}

impl Connection {
    /// Starts a proxy on one of `rt`'s worker threads: skopeo gets SIGTERM when the thread
    /// that started it ends (the crate sets PR_SET_PDEATHSIG, which is per thread), and the
    /// importer threads asking for connections end before the source is closed.
    fn start(rt: &tokio::runtime::Runtime, reference: &str, tls_verify: bool) -> Result<Self> {
        let owned = reference.to_string();
        let started = rt.spawn(async move { Self::open(&owned, tls_verify).await });
        block_on_timeout(rt, || format!("opening {reference}"), async move {
            started.await.map_err(anyhow::Error::from)
        })
        .with_context(|| format!("starting a skopeo proxy for {reference}"))?
    }

    async fn open(reference: &str, tls_verify: bool) -> Result<Self> {
        let mut config = ImageProxyConfig::default();
        if !tls_verify {
            config.insecure_skip_tls_verification = Some(true);
        }
        let proxy = ImageProxy::new_with_config(config)
            .await
            .context("starting `skopeo experimental-image-proxy` (is skopeo installed?)")?;
        let image = proxy
            .open_image(reference)
            .await
            .with_context(|| format!("opening {reference}"))?;
        Ok(Connection { proxy, image })
    }

    async fn close(self) -> Result<()> {
        self.proxy.close_image(&self.image).await?;
        self.proxy.finalize().await?;
        Ok(())
    }
}

/// An image opened in skopeo proxy processes: every request takes an idle connection from
/// the pool, or opens one more when all are busy streaming blobs.
pub struct ProxySource {
    rt: tokio::runtime::Runtime,
    reference: String,
    tls_verify: bool,
    /// Idle connections (a blob's goes back when its pipe is finished).
    idle: Arc<Mutex<Vec<Connection>>>,
    /// skopeo converted the manifest (Docker schema 2 -> OCI): the config it names is the
    /// converted one, which only `GetFullConfig` gives.
    converted: AtomicBool,
}

impl std::fmt::Debug for ProxySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySource")
            .field("reference", &self.reference)
            .field("tls_verify", &self.tls_verify)
            .finish_non_exhaustive()
    }
}

impl ProxySource {
    /// Starts skopeo and opens `reference` (`docker://...`).
    pub fn open(reference: &str, opts: &super::SourceOptions) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime for skopeo")?;
        // Opened now, so a bad reference fails here.
        let first = Connection::start(&rt, reference, opts.tls_verify)?;
        Ok(ProxySource {
            rt,
            reference: reference.to_string(),
            tls_verify: opts.tls_verify,
            idle: Arc::new(Mutex::new(vec![first])),
            converted: AtomicBool::new(false),
        })
    }

    /// An idle connection, or a new one.
    fn take(&self) -> Result<Connection> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match idle {
            Some(c) => Ok(c),
            None => Connection::start(&self.rt, &self.reference, self.tls_verify),
        }
    }

    fn put(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
}

impl ImageSource for ProxySource {
    fn max_parallel_blobs(&self) -> usize {
        // Transports whose open is cheap; an archive would be unpacked once per proxy.
        let cheap = ["docker://", "dir:", "containers-storage:"];
        if cheap.iter().any(|t| self.reference.starts_with(t)) {
            MAX_PROXIES
        } else {
            1
        }
    }

    fn manifest(&self) -> Result<FetchedManifest> {
        let conn = self.take()?;
        let (digest, bytes) = block_on_timeout(
            &self.rt,
            || format!("{}: fetching the manifest", self.reference),
            async { Ok(conn.proxy.fetch_manifest_raw_oci(&conn.image).await?) },
        )
        .with_context(|| format!("{}: fetching the manifest", self.reference))?;
        // Only a proxy that answered goes back (a failed one is dropped, ending skopeo).
        self.put(conn);
        let manifest: ImageManifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: parsing manifest {digest}", self.reference))?;
        // The digest is skopeo's, of the raw manifest it received (and checked against the
        // reference when that names a digest). skopeo converts Docker schema 2 manifests to
        // OCI before handing them over, so the bytes here hash to it only when no conversion
        // happened: no second check is possible. The config and every blob are checked by
        // us against this manifest.
        if sha256_of(&bytes) != digest {
            tracing::debug!(
                "{}: manifest {digest} converted to OCI by skopeo",
                self.reference
            );
            self.converted.store(true, Ordering::Relaxed);
        }
        Ok(FetchedManifest {
            digest,
            bytes,
            manifest,
        })
    }

    fn config(&self, manifest: &ImageManifest) -> Result<Vec<u8>> {
        if !self.converted.load(Ordering::Relaxed) {
            return super::config_blob(self, manifest);
        }
        let desc = manifest.config();
        let conn = self.take()?;
        let bytes = block_on_timeout(
            &self.rt,
            || format!("{}: fetching the config", self.reference),
            async { Ok(conn.proxy.fetch_config_raw(&conn.image).await?) },
        )
        .with_context(|| format!("{}: fetching the config", self.reference))?;
        self.put(conn);
        super::verify_bytes(&format!("config {}", desc.digest()), desc.digest(), &bytes)?;
        Ok(bytes)
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let conn = self.take()?;
        let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(CHANNEL_CHUNKS);
        let pool = Arc::clone(&self.idle);
        let digest = desc.digest().clone();
        let size = desc.size();
        self.rt.spawn(async move {
            let result = async {
                let (mut reader, finish) = conn
                    .proxy
                    .get_blob(&conn.image, &digest, size)
                    .await
                    .map_err(io::Error::other)?;
                let tx = &tx;
                // Owning `reader`: when the pump stops, the pipe closes and skopeo's side
                // of FinishPipe can return.
                let pump = async move {
                    loop {
                        // `read_buf` fills spare capacity: no zeroing of every chunk.
                        let mut buf = Vec::with_capacity(CHUNK);
                        if reader.read_buf(&mut buf).await? == 0 {
                            return Ok(());
                        }
                        if tx.send(Ok(buf)).await.is_err() {
                            // The consumer gave up (an error of its own); stop reading so
                            // skopeo sees EPIPE and FinishPipe returns.
                            return Err(io::Error::other("blob reader dropped"));
                        }
                    }
                };
                let (pumped, finished) = tokio::join!(pump, finish);
                pumped?;
                finished.map_err(io::Error::other)
            }
            .await;
            match result {
                // The proxy is idle again: back to the pool.
                Ok(()) => pool.lock().unwrap_or_else(|e| e.into_inner()).push(conn),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    // A proxy whose blob failed is not reused; dropping it ends skopeo.
                    drop(conn);
                }
            }
        });
        Ok(Box::new(ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
            rt: self.rt.handle().clone(),
            stall: stall_timeout(),
            what: format!("{}: blob {}", self.reference, desc.digest()),
        }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        let ProxySource { rt, idle, .. } = *self;
        let result = rt
            .block_on(async move {
                let conns = std::mem::take(&mut *idle.lock().unwrap_or_else(|e| e.into_inner()));
                // Every proxy is closed; the first failure is reported.
                let mut first = None;
                for c in conns {
                    if let Err(e) = c.close().await {
                        first.get_or_insert(e);
                    }
                }
                first.map_or(Ok(()), Err)
            })
            .context("closing the skopeo proxy");
        // Blob tasks abandoned after an error still own their proxies; dropping the runtime
        // cancels them, which closes their sockets and ends those skopeo processes. Do not
        // wait forever for the threads reaping them.
        rt.shutdown_timeout(std::time::Duration::from_secs(10));
        result
    }
}

/// The consumer side of a blob pump.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    /// For the stall timer (the importer threads are not runtime threads).
    rt: tokio::runtime::Handle,
    stall: Duration,
    /// `REFERENCE: blob DIGEST`, for errors.
    what: String,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            let next = self
                .rt
                .block_on(async { tokio::time::timeout(self.stall, self.rx.recv()).await })
                .map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "{}: no data for {} s (CFSCTL_STALL_TIMEOUT); the registry stalled",
                            self.what,
                            self.stall.as_secs()
                        ),
                    )
                })?;
            match next {
                None => return Ok(0),
                Some(Err(e)) => {
                    return Err(io::Error::new(e.kind(), format!("{}: {e}", self.what)));
                }
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
