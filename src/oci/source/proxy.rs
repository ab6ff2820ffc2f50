//! Every transport but `oci:` through `skopeo experimental-image-proxy` (the
//! `containers-image-proxy` crate), so registries.conf mirrors, auth files and policy.json
//! apply as for podman.
//!
//! The proxy is async; a private tokio runtime lives here and nowhere else. A blob arrives as
//! a pipe: a task pumps it into a bounded channel while awaiting `FinishPipe` at the same time
//! (awaiting one before the other deadlocks skopeo), and the importer threads read the channel
//! as a plain `Read`. skopeo checks blob digests too, but the bytes are checked again by the
//! caller's [`VerifyingReader`](crate::oci::stream::VerifyingReader) — the proxy is not trusted for that.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use containers_image_proxy::{ImageProxy, ImageProxyConfig, OpenedImage};
use oci_spec::image::{Descriptor, ImageManifest};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::{FetchedManifest, ImageSource, sha256_of};

/// Chunks in flight per blob (x 256 KiB): bounded memory whatever the layer size.
const CHANNEL_CHUNKS: usize = 8;
const CHUNK: usize = 256 << 10;

/// An image opened in a skopeo proxy process.
pub struct ProxySource {
    rt: tokio::runtime::Runtime,
    proxy: Arc<ImageProxy>,
    image: Arc<OpenedImage>,
    reference: String,
    /// skopeo converted the manifest (Docker schema 2 -> OCI): the config it names is the
    /// converted one, which only `GetFullConfig` gives.
    converted: AtomicBool,
}

impl ProxySource {
    /// Starts skopeo and opens `reference` (`docker://...`).
    pub fn open(reference: &str, opts: &super::SourceOptions) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the async runtime for skopeo")?;
        let mut config = ImageProxyConfig::default();
        if !opts.tls_verify {
            config.insecure_skip_tls_verification = Some(true);
        }
        let (proxy, image) = rt
            .block_on(async {
                let proxy = ImageProxy::new_with_config(config)
                    .await
                    .context("starting `skopeo experimental-image-proxy` (is skopeo installed?)")?;
                let image = proxy.open_image(reference).await?;
                anyhow::Ok((proxy, image))
            })
            .with_context(|| format!("opening {reference}"))?;
        Ok(ProxySource {
            rt,
            proxy: Arc::new(proxy),
            image: Arc::new(image),
            reference: reference.to_string(),
            converted: AtomicBool::new(false),
        })
    }
}

impl ImageSource for ProxySource {
    fn manifest(&self) -> Result<FetchedManifest> {
        let (digest, bytes) = self
            .rt
            .block_on(self.proxy.fetch_manifest_raw_oci(&self.image))
            .with_context(|| format!("{}: fetching the manifest", self.reference))?;
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
        let bytes = self
            .rt
            .block_on(self.proxy.fetch_config_raw(&self.image))
            .with_context(|| format!("{}: fetching the config", self.reference))?;
        super::verify_bytes(&format!("config {}", desc.digest()), desc.digest(), &bytes)?;
        Ok(bytes)
    }

    fn open_blob(&self, desc: &Descriptor) -> Result<Box<dyn Read + Send + '_>> {
        let (tx, rx) = mpsc::channel::<io::Result<Vec<u8>>>(CHANNEL_CHUNKS);
        let proxy = Arc::clone(&self.proxy);
        let image = Arc::clone(&self.image);
        let digest = desc.digest().clone();
        let size = desc.size();
        self.rt.spawn(async move {
            let result = async {
                let (mut reader, finish) = proxy
                    .get_blob(&image, &digest, size)
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
            if let Err(e) = result {
                let _ = tx.send(Err(e)).await;
            }
        });
        Ok(Box::new(ChannelReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
        }))
    }

    fn close(self: Box<Self>) -> Result<()> {
        let ProxySource {
            rt, proxy, image, ..
        } = *self;
        let result = rt
            .block_on(async move {
                proxy.close_image(&image).await?;
                match Arc::try_unwrap(proxy) {
                    Ok(p) => p.finalize().await?,
                    // A blob task abandoned after an error still holds it; dropping the
                    // runtime cancels that task, which closes the socket and ends skopeo.
                    Err(_) => tracing::debug!("skopeo proxy still referenced; not finalized"),
                }
                anyhow::Ok(())
            })
            .context("closing the skopeo proxy");
        // Do not wait forever for the thread reaping skopeo.
        rt.shutdown_timeout(std::time::Duration::from_secs(10));
        result
    }
}

/// The consumer side of a blob pump.
struct ChannelReader {
    rx: mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
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
