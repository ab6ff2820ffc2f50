//! Pulling an image into the repository:
//!
//! manifest (digest-checked) -> unchanged since the last pull of this tag? done. ->
//! config (digest-checked) -> layers not yet known by diff_id are fetched and imported in
//! parallel, each streamed `blob -> verify digest -> decompress -> verify diff_id -> tar ->
//! objects + layer tree` -> layer trees merged one at a time -> canonical tree -> EROFS
//! image streamed into an object -> seal check -> image link + record + tag.
//!
//! Nothing is tagged (nor linked under `images/`) unless every check passed. Layers are
//! known by diff_id from the records of existing tags ([`record::known_layers`]) and from the
//! repository's layer index (`layers/`, not a GC root): a layer imported by a pull that then
//! failed is garbage (as is the merged image's object) but stays indexed until a `gc`, so a
//! retry fetches only the layers that did not finish. The caller's [`Repository`] (and with it the shared
//! repository lock) is held for the whole pull, so a concurrent `gc` cannot remove objects
//! imported but not yet tagged.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageConfiguration};
use serde::Serialize;

use super::error::OciError;
pub use super::record::Imported;
use super::record::{self, ImageRecord, LayerRecord};
use super::reference::ImageReference;
use super::source::{self, FetchedManifest, ImageSource, SourceOptions};
use super::{artifact, layer, merge, policy, sealspec};
use crate::erofs::writer;
use crate::fsverity::signature::TrustedCerts;
use crate::fsverity::{self, Digest};
use crate::repo::Repository;
use crate::tree::Tree;
use crate::tree::transform::CanonicalOptions;

/// Where the tag goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Tagging {
    /// Tag with the reference string (`docker://host/x:v1`).
    #[default]
    Reference,
    /// Tag with this name.
    Name(String),
    /// Tag nothing (`oci compute-id`).
    None,
}

impl Tagging {
    /// The tag published for an image pulled from `reference`.
    pub fn name(&self, reference: &str) -> Option<String> {
        match self {
            Tagging::Reference => Some(reference.to_string()),
            Tagging::Name(n) => Some(n.clone()),
            Tagging::None => None,
        }
    }
}

/// Hooks for a progress display (all default to nothing). Called from importer threads.
pub trait PullProgress: Sync {
    /// Layers to fetch and their total (compressed) size, once known.
    fn start(&self, _layers: usize, _bytes: u64) {}
    /// More blob bytes arrived.
    fn fetched(&self, _bytes: u64) {}
    /// The merge and image writing started.
    fn merging(&self) {}
}

/// Options of [`pull`].
#[derive(Default)]
pub struct PullOptions<'a> {
    /// The tag to publish.
    pub tagging: Tagging,
    /// Refuse images without the sealing specification's merged and config annotations of
    /// the repository's algorithm ([`super::sealspec`]).
    pub require_sealed: bool,
    /// How to reach the source.
    pub source: SourceOptions,
    /// Progress display.
    pub progress: Option<&'a dyn PullProgress>,
    /// Require fs-verity signatures of the seal's digests, made by the key of one of these
    /// certificates (`--verity-cert`); implies a sealed image.
    pub verity_certs: Option<&'a TrustedCerts>,
    /// Enable fs-verity on the merged image with its signature, so that the kernel checks it
    /// against its `.fs-verity` keyring (`--kernel-signature`; needs `verity_certs`).
    pub kernel_signature: bool,
}

impl std::fmt::Debug for PullOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullOptions")
            .field("require_sealed", &self.require_sealed)
            .field("progress", &self.progress.is_some())
            .field("verity_certs", &self.verity_certs)
            .field("kernel_signature", &self.kernel_signature)
            .finish_non_exhaustive()
    }
}

/// What a pull did.
#[derive(Debug, Clone, Serialize)]
pub struct PullResult {
    /// The tag published (`None` for [`Tagging::None`]).
    pub tag: Option<String>,
    /// What the repository now knows about the image.
    pub record: ImageRecord,
    /// The merged image's digest.
    #[serde(serialize_with = "hex_digest")]
    pub image_digest: Digest,
    /// True when the tag already named this manifest and nothing was fetched.
    pub up_to_date: bool,
    /// Layers fetched from the source.
    pub layers_fetched: usize,
    /// Layers already in the repository.
    pub layers_skipped: usize,
    /// Blob bytes read from the source (compressed).
    pub bytes_fetched: u64,
    /// Objects this pull stored (content the repository already had does not count).
    pub objects_written: u64,
}

fn hex_digest<S: serde::Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_hex())
}

/// Pulls `reference` into `repo`.
pub fn pull(
    repo: &Repository,
    reference: &ImageReference,
    opts: &PullOptions<'_>,
) -> Result<PullResult> {
    // A tag that cannot be stored fails now, not after the whole pull.
    if let Some(tag) = opts.tagging.name(&reference.to_string()) {
        record::validate_tag(&tag)?;
    }
    let src = source::open(reference, &opts.source)?;
    let result = pull_from(repo, &*src, &reference.to_string(), opts);
    let closed = src.close();
    let result = result?;
    closed?;
    Ok(result)
}

/// Pulls from an opened source; `name` is the reference string (default tag, messages).
pub fn pull_from(
    repo: &Repository,
    src: &dyn ImageSource,
    name: &str,
    opts: &PullOptions<'_>,
) -> Result<PullResult> {
    let tag = opts.tagging.name(name);
    if let Some(tag) = &tag {
        record::validate_tag(tag)?;
    }
    let manifest = src.manifest()?;
    // The policy judges the manifest that is imported below, before anything is stored.
    policy::check(&opts.source.policy, name, &manifest)?;
    if let Some(tag) = &tag
        && let Some(result) = up_to_date(repo, tag, &manifest, opts)?
    {
        return Ok(result);
    }
    anyhow::ensure!(
        !opts.kernel_signature || opts.verity_certs.is_some(),
        "--kernel-signature needs --verity-cert (the signature is checked here first)"
    );
    // Artifact mode: looked for when a seal is needed and the manifest has none inline.
    let artifacts = if (opts.require_sealed || opts.verity_certs.is_some())
        && !sealspec::has_inline(&manifest.manifest, repo.algorithm())
    {
        match name.parse::<ImageReference>() {
            Ok(r) => artifact::find(&r, &manifest.digest, &opts.source)
                .with_context(|| format!("{name}: looking for composefs artifacts"))?,
            Err(_) => Vec::new(),
        }
    } else {
        Vec::new()
    };
    let objects_before = repo.objects_stored();
    let bootable = match sealspec::wants_bootable(&manifest.manifest, &artifacts, repo.algorithm())
    {
        true => BootVariant::Required,
        false => BootVariant::No,
    };
    let imported = import(
        repo,
        src,
        name,
        manifest,
        tag.is_some(),
        bootable,
        opts.progress,
    )?;
    let sealed = sealspec::verify(
        repo,
        name,
        &imported,
        opts.require_sealed,
        &artifacts,
        opts.verity_certs,
    )?;
    if opts.kernel_signature {
        let sig = sealed
            .merged_signature
            .as_deref()
            .expect("verify requires the merged signature with certificates");
        repo.sign_image(&imported.image_digest, sig)
            .with_context(|| format!("{name}: enabling fs-verity with the image's signature"))?;
    }

    // Stored only when tagging (below); without a tag they would be garbage at once.
    let manifest_object = fsverity::digest_bytes(repo.algorithm(), &imported.manifest.bytes);
    let config_object = fsverity::digest_bytes(repo.algorithm(), &imported.config_bytes);
    let record = ImageRecord {
        reference: name.to_string(),
        manifest_digest: imported.manifest.digest.clone(),
        config_digest: imported.manifest.manifest.config().digest().to_string(),
        manifest_object: manifest_object.to_hex(),
        config_object: config_object.to_hex(),
        image: imported.image_digest.to_hex(),
        erofs_version: crate::repo::OCI_EROFS_VERSION,
        sealed: sealed.merged,
        seal_artifacts: sealed.artifacts,
        signed: sealed.signed,
        layers: imported.layers.clone(),
    };
    if let Some(tag) = &tag {
        repo.link_image(&imported.image_digest)?;
        repo.write_object(&imported.manifest.bytes)?;
        repo.write_object(&imported.config_bytes)?;
        record::publish(repo, tag, &record)?;
    }
    Ok(PullResult {
        tag,
        record,
        image_digest: imported.image_digest,
        up_to_date: false,
        layers_fetched: imported.layers_fetched,
        layers_skipped: imported.layers.len() - imported.layers_fetched,
        bytes_fetched: imported.bytes_fetched,
        objects_written: repo.objects_stored() - objects_before,
    })
}

/// The recorded result when tag `tag` already names this manifest and its image is present.
fn up_to_date(
    repo: &Repository,
    tag: &str,
    manifest: &FetchedManifest,
    opts: &PullOptions<'_>,
) -> Result<Option<PullResult>> {
    let record = match record::load(repo, tag) {
        Ok(r) => r,
        Err(e)
            if matches!(
                super::error::find(&e),
                Some(OciError::UnknownTag(_) | OciError::StaleRecord { .. })
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let image = Digest::from_hex(&record.image)?;
    // A record made in an older format (before OCI images were v1) is pulled again: the
    // merged image gets its v1 digest, re-encoded from the kept layers without fetching.
    if record.manifest_digest != manifest.digest
        || record.erofs_version != crate::repo::OCI_EROFS_VERSION
        || !repo.has_image(&image)
    {
        return Ok(None);
    }
    // Signatures asked for now but not checked then: checked again (the layers are here).
    if opts.verity_certs.is_some() && !record.signed {
        return Ok(None);
    }
    if opts.kernel_signature && !repo.image_signed(&image)? {
        return Ok(None);
    }
    if opts.require_sealed && record.sealed.is_none() {
        return Err(OciError::Unsealed {
            reference: record.reference,
            missing: sealspec::key(sealspec::Role::Merged, repo.algorithm()),
        }
        .into());
    }
    Ok(Some(PullResult {
        tag: Some(tag.to_string()),
        layers_skipped: record.layers.len(),
        record,
        image_digest: image,
        up_to_date: true,
        layers_fetched: 0,
        bytes_fetched: 0,
        objects_written: 0,
    }))
}

/// Whether [`import`] computes the boot variant ([`super::bootable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootVariant {
    /// No.
    No,
    /// Yes, and an image that has none ([`super::bootable::BootableError`]) gets none (`oci
    /// seal` of a `containers.bootc=1` image without `/sysroot`, say).
    IfPossible,
    /// Yes; an image that has none is an error.
    Required,
}

/// Fetches the config and the layers the repository lacks, and builds the merged image: with
/// `store_image` streamed into the repository as an object (unreferenced until linked, so
/// garbage if a later check fails, as the layers are), else only hashed. `bootable` says
/// whether the digest of its boot variant is computed too (only hashed).
pub fn import(
    repo: &Repository,
    src: &dyn ImageSource,
    name: &str,
    manifest: FetchedManifest,
    store_image: bool,
    bootable: BootVariant,
    progress: Option<&dyn PullProgress>,
) -> Result<Imported> {
    repo.record_oci_erofs_version()?;
    let config_bytes = source::fetch_config(src, &manifest.manifest)
        .with_context(|| format!("{name}: fetching the config"))?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes).with_context(|| {
        format!(
            "{name}: parsing config {}",
            manifest.manifest.config().digest()
        )
    })?;
    let descs = manifest.manifest.layers();
    let diff_ids = config.rootfs().diff_ids();
    if descs.len() != diff_ids.len() {
        anyhow::bail!(
            "{name}: the manifest has {} layers but the config {} diff_ids",
            descs.len(),
            diff_ids.len()
        );
    }
    // Layers to fetch: diff_ids no tag's record knows, each once. A layer known only in an
    // older format is re-encoded from its kept image (the tree does not depend on it).
    let mut known: HashMap<String, Digest> = HashMap::new();
    let mut todo: Vec<(&Descriptor, &str)> = Vec::new();
    let records = record::known_layers(repo)?;
    for (desc, diff_id) in descs.iter().zip(diff_ids) {
        if known.contains_key(diff_id.as_str()) || todo.iter().any(|t| t.1 == diff_id) {
            continue;
        }
        match records.get(diff_id.as_str()) {
            Some(k) if k.erofs_version == crate::repo::OCI_EROFS_VERSION => {
                known.insert(diff_id.to_string(), k.image);
            }
            Some(k) => {
                let tree = layer::load_layer(repo, &k.image).with_context(|| {
                    format!("{name}: loading layer {diff_id} (image {})", k.image)
                })?;
                let image = layer::store_layer(repo, &tree)
                    .with_context(|| format!("{name}: re-encoding layer {diff_id}"))?;
                known.insert(diff_id.to_string(), image);
            }
            // Imported by a pull that failed later, or by `compute-id`: still there.
            None => match repo.indexed_layer(diff_id)? {
                Some(image) => {
                    known.insert(diff_id.to_string(), image);
                }
                None => todo.push((desc, diff_id)),
            },
        }
    }
    if let Some(p) = progress {
        p.start(todo.len(), todo.iter().map(|t| t.0.size()).sum());
    }
    let bytes = AtomicU64::new(0);
    let fetched = fetch_layers(repo, src, name, &todo, &bytes, progress, store_image)?;
    let layers_fetched = fetched.len();
    known.extend(fetched.into_iter().map(|(k, d)| (k.to_string(), d)));

    let layers: Vec<LayerRecord> = descs
        .iter()
        .zip(diff_ids)
        .map(|(desc, diff_id)| LayerRecord {
            digest: desc.digest().to_string(),
            diff_id: diff_id.clone(),
            media_type: desc.media_type().to_string(),
            size: desc.size(),
            layer_image: known[diff_id.as_str()].to_hex(),
        })
        .collect();
    if let Some(p) = progress {
        p.merging();
    }
    let merged = merge_stored_layers(diff_ids.iter().map(|diff_id| {
        let image = known[diff_id.as_str()];
        layer::load_layer(repo, &image)
            .with_context(|| format!("{name}: loading layer {diff_id} (image {image})"))
    }))?;
    let mut tree = merged
        .map_err(anyhow::Error::from)
        .with_context(|| format!("{name}: building the merged image"))?;
    let opts = super::erofs_options();
    let image_digest = if store_image {
        repo.write_object_with(|mut w| Ok(writer::write_image(&tree, &opts, &mut w)?))
    } else {
        writer::compute_digest(&tree, &opts, repo.algorithm()).map_err(Into::into)
    }
    .with_context(|| format!("{name}: building the merged image"))?;
    let bootable_digest = match bootable {
        BootVariant::No => None,
        mode => match super::bootable::make_bootable(&mut tree, |t, id| read_file(repo, t, id))
            .and_then(|()| Ok(writer::compute_digest(&tree, &opts, repo.algorithm())?))
        {
            Ok(d) => Some(d),
            Err(e)
                if mode == BootVariant::IfPossible
                    && e.downcast_ref::<super::bootable::BootableError>().is_some() =>
            {
                tracing::warn!("{name}: no boot variant: {e:#}");
                None
            }
            Err(e) => return Err(e.context(format!("{name}: building the boot variant"))),
        },
    };
    drop(tree);
    Ok(Imported {
        manifest,
        config_bytes,
        config,
        layers,
        image_digest,
        bootable_digest,
        layers_fetched,
        bytes_fetched: bytes.into_inner(),
    })
}

/// The digests of the image at `reference` without tagging anything (`oci compute-id`):
/// layers are imported into `repo` (reused by a later pull until a `gc`), the merged image
/// (and with `bootable` its boot variant) only hashed.
pub fn compute(
    repo: &Repository,
    reference: &ImageReference,
    source: &SourceOptions,
    bootable: bool,
    progress: Option<&dyn PullProgress>,
) -> Result<Imported> {
    let src = source::open(reference, source)?;
    let name = reference.to_string();
    let result = src.manifest().and_then(|m| {
        policy::check(&source.policy, &name, &m)?;
        let boot = match bootable {
            true => BootVariant::Required,
            false => BootVariant::No,
        };
        import(repo, &*src, &name, m, false, boot, progress)
    });
    let closed = src.close();
    let result = result?;
    closed?;
    Ok(result)
}

/// Rebuilds the merged image of tag `name` offline, from the layer images the repository
/// kept (no source needed): the image bytes and their digest, which equals the recorded one
/// unless a layer image or the rules changed. It is written in the format the record says
/// (so a record from before OCI images were v1 still checks).
pub fn rebuild(repo: &Repository, name: &str) -> Result<(Vec<u8>, Digest)> {
    let record = record::load(repo, name)?;
    let merged = merge_stored_layers(record.layers.iter().map(|l| {
        let d = Digest::from_hex(&l.layer_image)?;
        layer::load_layer(repo, &d)
            .with_context(|| format!("{name}: loading layer {} (image {d})", l.diff_id))
    }))?;
    merged
        .map_err(anyhow::Error::from)
        .and_then(|tree| {
            let opts = super::erofs_options_for(record.erofs_version);
            let bytes = writer::image_bytes(&tree, &opts)?;
            drop(tree);
            let digest = fsverity::digest_bytes(repo.algorithm(), &bytes);
            Ok((bytes, digest))
        })
        .with_context(|| format!("{name}: rebuilding"))
}

/// Merges the layer trees `layers` yields, bottom first, into the canonical tree with the
/// options `oci seal` publishes. Each layer tree is dropped once added, so that
/// only one layer tree is in memory besides the merged tree. An error of `layers` is
/// returned at once; a merge error only after every layer loaded, so that a layer that
/// cannot be read is reported first wherever it is in the stack (as when every layer was
/// loaded before merging).
fn merge_stored_layers(
    layers: impl Iterator<Item = Result<layer::LayerTree>>,
) -> Result<Result<Tree, merge::MergeError>> {
    let mut merger = merge::LayerMerger::new();
    let mut failed = None;
    for tree in layers {
        let tree = tree?;
        if failed.is_none() {
            failed = merger.add(tree).err();
        }
    }
    Ok(match failed {
        Some(e) => Err(e),
        None => Ok(merger.finish_canonical(&CanonicalOptions::default())),
    })
}

/// Fetches and imports `todo` with up to one thread per core; the first error stops the
/// others from starting new layers. Returns diff_id -> layer image.
fn fetch_layers<'d>(
    repo: &Repository,
    src: &dyn ImageSource,
    name: &str,
    todo: &[(&Descriptor, &'d str)],
    bytes: &AtomicU64,
    progress: Option<&dyn PullProgress>,
    write_back: bool,
) -> Result<Vec<(&'d str, Digest)>> {
    // Biggest first: the longest fetch starts earliest.
    let mut order: Vec<usize> = (0..todo.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(todo[i].0.size()));
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(src.max_parallel_blobs())
        .min(todo.len());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, Result<Digest>)>> = Mutex::new(Vec::new());
    let (next, failed, results, order) = (&next, &failed, &results, &order);
    // Write-back while importing (when the pull will tag): after each layer a syncer thread
    // runs `syncfs`, so the disk works while the importers compute, and the `syncfs` before
    // tagging waits only for the tail (git's batch fsync does the same per object). A
    // write-back error is reported once per open file, to whichever `syncfs` comes first,
    // so the syncer's error fails the pull like the final one would.
    let (want_sync, sync_requests) = std::sync::mpsc::channel::<()>();
    let sync_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let sync_error = &sync_error;
    std::thread::scope(|s| {
        if write_back {
            s.spawn(move || {
                while sync_requests.recv().is_ok() {
                    while sync_requests.try_recv().is_ok() {}
                    if let Err(e) = repo.sync() {
                        failed.store(true, Ordering::Relaxed);
                        let mut first = sync_error.lock().unwrap_or_else(|e| e.into_inner());
                        first.get_or_insert(e.context(format!("{name}: writing layers back")));
                        return;
                    }
                }
            });
        }
        for _ in 0..threads {
            let want_sync = want_sync.clone();
            s.spawn(move || {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { return };
                    let (desc, diff_id) = todo[i];
                    let r = fetch_layer(repo, src, desc, diff_id, bytes, progress)
                        .with_context(|| format!("{name}: layer {}", desc.digest()));
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    } else {
                        let _ = want_sync.send(());
                    }
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((i, r));
                }
            });
        }
        drop(want_sync);
    });
    if let Some(e) = sync_error.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(e);
    }
    let mut results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    results.sort_by_key(|r| r.0);
    index_layers(repo, name, todo, &results);
    results
        .into_iter()
        .map(|(i, r)| r.map(|d| (todo[i].1, d)))
        .collect()
}

/// Enters the layers that were imported in the layer index, also when others failed: a retry
/// then fetches only what is missing. Durable first (the index must never name an object a
/// power cut could lose). Only an optimisation: a failure is logged, the pull goes on.
fn index_layers(
    repo: &Repository,
    name: &str,
    todo: &[(&Descriptor, &str)],
    results: &[(usize, Result<Digest>)],
) {
    let done: Vec<(&str, &Digest)> = results
        .iter()
        .filter_map(|(i, r)| r.as_ref().ok().map(|d| (todo[*i].1, d)))
        .collect();
    if done.is_empty() {
        return;
    }
    let r = repo.sync().and_then(|()| {
        done.iter()
            .try_for_each(|(diff_id, image)| repo.index_layer(diff_id, image))
    });
    if let Err(e) = r {
        tracing::warn!("{name}: not indexing the imported layers: {e:#}");
    }
}

/// Counts bytes for the progress display and the result.
struct Counting<'a, R> {
    inner: R,
    total: &'a AtomicU64,
    progress: Option<&'a dyn PullProgress>,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.total.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(p) = self.progress {
            p.fetched(n as u64);
        }
        Ok(n)
    }
}

/// One layer: stream, verify both digests, import, keep its tree as a layer image.
fn fetch_layer(
    repo: &Repository,
    src: &dyn ImageSource,
    desc: &Descriptor,
    diff_id: &str,
    bytes: &AtomicU64,
    progress: Option<&dyn PullProgress>,
) -> Result<Digest> {
    let diff: oci_spec::image::Digest = diff_id
        .parse()
        .with_context(|| format!("diff_id '{diff_id}'"))?;
    let raw = Counting {
        inner: src.open_blob(desc)?,
        total: bytes,
        progress,
    };
    let opts = layer::ImportOptions {
        layer: diff_id.to_string(),
        ..Default::default()
    };
    let tree = layer::import_blob(raw, desc, &diff, repo, &opts)?;
    layer::store_layer(repo, &tree)
}

/// The content of regular file `id` of a tree whose file objects are in `repo`.
fn read_file(repo: &Repository, tree: &Tree, id: usize) -> Result<Vec<u8>> {
    let inode = &tree.inodes[id];
    if let Some(inline) = &inode.inline {
        return Ok(inline.to_vec());
    }
    let mut out = Vec::new();
    if let Some(d) = inode.digest {
        repo.open_object(&d)?
            .read_to_end(&mut out)
            .with_context(|| format!("reading object {d}"))?;
    }
    Ok(out)
}
