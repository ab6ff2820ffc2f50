//! `create-image`, `compute-id`, `dump`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::output::{self, StdoutError, outln};
use crate::dumpfile::ParseMode;
use crate::erofs::writer::{self, WriteOptions};
use crate::fsverity::Algorithm;
use crate::image::{self, BuildOptions, RepoSink, Source};
use crate::repo::Repository;
use crate::scan::{ContentSink, DigestStoreDir, ScanOptions, ScanReport, XattrFilter};
use crate::tree::transform::CanonicalOptions;

/// Options shared by everything that reads a source.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// SOURCE is a composefs-dump(5) file (`-` for standard input), not a directory.
    #[arg(long, visible_alias = "from-file")]
    from_dump: bool,
    /// Refuse dump files mkcomposefs accepts only leniently (as with CFS_PARSE_STRICT=1).
    #[arg(long)]
    strict: bool,
    /// Lowest EROFS format version to write.
    #[arg(long, value_name = "N", default_value_t = 0)]
    min_version: u32,
    /// Highest format version to write when the content needs it (e.g. whiteouts).
    #[arg(long, value_name = "N", default_value_t = 1)]
    max_version: u32,
    /// Set every modification time to 0.
    #[arg(long)]
    use_epoch: bool,
    /// Leave out device nodes.
    #[arg(long)]
    skip_devices: bool,
    /// Leave out all extended attributes.
    #[arg(long, conflicts_with = "user_xattrs")]
    skip_xattrs: bool,
    /// Keep only `user.*` extended attributes.
    #[arg(long)]
    user_xattrs: bool,
    /// Behave exactly like C mkcomposefs 1.0.8 on directories: one inode per name (hard
    /// links not detected) and sockets kept, giving byte-identical images.
    #[arg(long)]
    mkcomposefs_compat: bool,
    /// Build the image `oci pull` builds from the same image's layers: SOURCE is its root
    /// filesystem unpacked (or `/` in a container build); hard links are folded and the
    /// canonicalization of docs/oci-conventions.md applied (root takes /usr's metadata, /run
    /// emptied, only security.capability xattrs, sockets and whiteouts removed).
    #[arg(long, conflicts_with_all = [
        "use_epoch", "skip_devices", "skip_xattrs", "user_xattrs", "mkcomposefs_compat",
        "min_version", "max_version", "strict",
    ])]
    oci: bool,
    /// Threads hashing file contents (0, the default: all cores; at most 1024).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = super::parse_threads)]
    threads: usize,
    /// The directory or dump file.
    source: PathBuf,
}

impl SourceArgs {
    fn source(&self) -> Source {
        if self.from_dump {
            Source::Dump(self.source.clone())
        } else {
            Source::Directory(self.source.clone())
        }
    }

    fn build_options(&self, algorithm: Algorithm) -> BuildOptions {
        if self.oci {
            return BuildOptions::oci(CanonicalOptions::default(), algorithm, self.threads);
        }
        BuildOptions {
            write: WriteOptions {
                min_version: self.min_version,
                max_version: self.max_version,
            },
            scan: ScanOptions {
                use_epoch: self.use_epoch,
                xattrs: if self.skip_xattrs {
                    XattrFilter::None
                } else if self.user_xattrs {
                    XattrFilter::UserOnly
                } else {
                    XattrFilter::All
                },
                skip_devices: self.skip_devices,
                // cfsctl keeps hard links as one inode and leaves sockets out (an OS image
                // has no use for a socket file); --mkcomposefs-compat restores C's choices.
                hardlinks: !self.mkcomposefs_compat,
                skip_sockets: !self.mkcomposefs_compat,
                algorithm,
                threads: self.threads,
            },
            parse: if self.strict {
                ParseMode::Strict
            } else {
                ParseMode::Lenient
            },
            canonical: None,
        }
    }
}

/// `cfsctl create-image`.
#[derive(Debug, Args)]
pub struct CreateImage {
    #[command(flatten)]
    source: SourceArgs,
    /// Copy file contents into this mkcomposefs-style object directory (`XX/rest-of-digest`).
    #[arg(long, value_name = "DIR", conflicts_with = "repo")]
    digest_store: Option<PathBuf>,
    /// Store file contents and the image in this repository (`images/<digest>`).
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// With --repo: neither use nor update the repository's stat cache (every file is read
    /// and hashed again, even if unchanged since the last import).
    #[arg(long, requires = "repo")]
    no_cache: bool,
    /// Also point this ref (e.g. `local/myimage`) at the image: refs are what `cfsctl gc`
    /// keeps, an image without one is collected.
    #[arg(long = "ref", value_name = "NAME", requires = "repo")]
    ref_name: Option<String>,
    /// Print the image's fs-verity digest.
    #[arg(long)]
    print_digest: bool,
    /// Print the digest and write no image file.
    #[arg(long)]
    print_digest_only: bool,
    /// Print the result as JSON: the digest, the image file and ref written, and with --repo
    /// what the import stored.
    #[arg(long)]
    json: bool,
    /// Where to write the image (`-` for standard output). Optional with --repo.
    image: Option<PathBuf>,
}

impl CreateImage {
    pub fn run(self) -> Result<()> {
        if let Some(name) = &self.ref_name {
            crate::repo::validate_ref_name(name)?;
        }
        let repo = self.repo.as_deref().map(Repository::open).transpose()?;
        if self.image.is_none() && repo.is_none() && !self.print_digest_only {
            bail!("no IMAGE given: name an output file, or use --repo or --print-digest-only");
        }
        let store = self
            .digest_store
            .as_deref()
            .map(DigestStoreDir::open)
            .transpose()?;
        let repo_sink = repo
            .as_ref()
            .filter(|_| !self.source.from_dump)
            .map(|r| RepoSink::new(r, !self.no_cache));
        let sink: Option<&dyn ContentSink> = match (&repo_sink, &store) {
            (Some(r), _) => Some(r),
            (None, Some(s)) => Some(s),
            (None, None) => None,
        };
        let algorithm = repo
            .as_ref()
            .map_or(Algorithm::Sha256, Repository::algorithm);
        let opts = self.source.build_options(algorithm);
        let loaded = image::load(&self.source.source(), &opts, sink)?;
        if let Some(report) = &loaded.report {
            warn_skipped(report);
        }
        if let Some(sink) = repo_sink {
            // Every object is stored once the scan succeeded: the cache can be written, and
            // its memory is freed before the image is built.
            if let Err(e) = sink.save_cache() {
                tracing::warn!("{e:#}");
            }
        }
        let (tree, write) = (&loaded.tree, &opts.write);
        let file = self.image.as_deref().filter(|_| !self.print_digest_only);
        let mut digest = match file {
            Some(path) => Some(image::write_image_file(path, tree, write, algorithm)?),
            None => None,
        };
        if let Some(repo) = &repo {
            // A directory scan stored (or found) every object already; a dump names objects
            // that may never have been imported.
            let missing = match loaded.report {
                Some(_) => Vec::new(),
                None => image::missing_objects(tree, repo),
            };
            if let Some(first) = missing.first() {
                tracing::warn!(
                    "{} objects the image names are not in {} (first: {first}); mounting it will \
                     fail on those files until they are imported",
                    missing.len(),
                    repo.path().display()
                );
            }
            let stored =
                repo.write_image_with(|mut w| Ok(writer::write_image(tree, write, &mut w)?))?;
            debug_assert!(digest.is_none_or(|d| d == stored));
            digest = Some(stored);
            if let Some(name) = &self.ref_name {
                repo.set_ref(name, &stored)?;
            }
            if let Some(report) = &loaded.report {
                tracing::info!(
                    "{} external files: {} stored, {} already present ({} known from the stat \
                     cache)",
                    report.external_files,
                    report.objects_stored,
                    report.objects_present,
                    report.cached_files
                );
            }
        }
        let digest = match digest {
            Some(d) => d,
            None => image::compute_id(tree, write, algorithm)?,
        };
        if self.json {
            let files = loaded.report.as_ref().filter(|_| repo.is_some()).map(|r| {
                serde_json::json!({
                    "external": r.external_files,
                    "stored": r.objects_stored,
                    "present": r.objects_present,
                    "cached": r.cached_files,
                })
            });
            return output::json(&serde_json::json!({
                "digest": digest.to_hex(),
                "image": file,
                "repository": repo.as_ref().map(Repository::path),
                "ref": self.ref_name,
                "files": files,
            }));
        }
        let show =
            self.print_digest || self.print_digest_only || (repo.is_some() && self.image.is_none());
        if show {
            outln!("{digest}")?;
        }
        Ok(())
    }
}

fn warn_skipped(report: &ScanReport) {
    for (path, reason) in &report.skipped {
        tracing::warn!(
            "skipped {} ({reason:?}: an image cannot hold it)",
            path.display()
        );
    }
}

/// `cfsctl compute-id`.
#[derive(Debug, Args)]
pub struct ComputeId {
    #[command(flatten)]
    source: SourceArgs,
    /// fs-verity hash algorithm of the digests.
    #[arg(long, default_value = "sha256")]
    algorithm: Algorithm,
    /// Print the result as JSON (`{"digest": HEX}`).
    #[arg(long)]
    json: bool,
}

impl ComputeId {
    pub fn run(self) -> Result<()> {
        let opts = self.source.build_options(self.algorithm);
        let loaded = image::load(&self.source.source(), &opts, None)?;
        if let Some(report) = &loaded.report {
            warn_skipped(report);
        }
        let digest = image::compute_id(&loaded.tree, &opts.write, self.algorithm)?;
        if self.json {
            return output::json(&serde_json::json!({ "digest": digest.to_hex() }));
        }
        outln!("{digest}")?;
        Ok(())
    }
}

/// `cfsctl dump`.
#[derive(Debug, Args)]
pub struct Dump {
    /// A composefs image file (ours or one mkcomposefs wrote).
    image: PathBuf,
}

impl Dump {
    pub fn run(self) -> Result<()> {
        let bytes = image::read_image_file(&self.image)?;
        let tree = crate::erofs::reader::read_image(&bytes)
            .with_context(|| format!("reading composefs image {}", self.image.display()))?;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        crate::dumpfile::print::print(&tree, &mut out)
            .and_then(|_| out.flush())
            .map_err(StdoutError)?;
        Ok(())
    }
}
