//! Images (`images/<hex>` -> `../objects/XX/rest`) and refs (`refs/<name>` -> object).
//!
//! Only files reachable through `images/` may be mounted: an arbitrary object is untrusted
//! content, an image is something this program wrote as an EROFS image. Both kinds of link are
//! published only after `syncfs`, so after a crash a link never names a missing object.

use std::fs::File;

use anyhow::{Context, Result};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::trust::open_nofollow;
use super::{IMAGES, RepoError, Repository, symlink_atomic, validate_ref_name};
use crate::fsverity::Digest;
use crate::fsverity::ioctl::{MeasureError, compute_digest_at, measure_verity, read_signature};

impl Repository {
    /// Stores `bytes` (an EROFS image) as an object and publishes it as `images/<hex>`.
    pub fn write_image(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = self.write_object(bytes)?;
        self.link_image(&digest)?;
        Ok(digest)
    }

    /// Stores the image `produce` writes (streamed, see
    /// [`write_object_with`](Self::write_object_with)) and publishes it as `images/<hex>`.
    pub fn write_image_with(
        &self,
        produce: impl FnOnce(&mut dyn std::io::Write) -> Result<()>,
    ) -> Result<Digest> {
        let digest = self.write_object_with(produce)?;
        self.link_image(&digest)?;
        Ok(digest)
    }

    /// Publishes an already stored object as `images/<hex>` (after making the repository
    /// durable). For writers that stream an image with [`import_file`](Self::import_file).
    pub fn link_image(&self, digest: &Digest) -> Result<()> {
        if !self.has_object(digest) {
            return Err(RepoError::MissingObject(*digest).into());
        }
        self.sync()?;
        let target = format!("../objects/{}", digest.object_path());
        symlink_atomic(&self.images, &digest.to_hex(), &target)
            .with_context(|| format!("linking {}/images/{digest}", self.path().display()))
    }

    /// Whether the object of image `digest` has fs-verity enabled with a built-in signature.
    pub fn image_signed(&self, digest: &Digest) -> Result<bool> {
        if !self.verity_supported() {
            return Ok(false);
        }
        let file = self.open_object(digest)?;
        match read_signature(&file) {
            Ok(sig) => Ok(sig.is_some()),
            Err(MeasureError::NoVerity) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("reading the signature of image {digest}")),
        }
    }

    /// Gives the stored image `digest` its fs-verity signature `signature` (PKCS#7 DER over
    /// its `fsverity_formatted_digest`), which the kernel checks against its `.fs-verity`
    /// keyring: the object is copied, verity is enabled on the copy with the signature, the
    /// copy is measured and renamed over the object (same bytes, same digest; a mounted image
    /// keeps its old inode). An object signed already is left alone. A refusal by the kernel
    /// leaves the object as it was.
    pub fn sign_image(&self, digest: &Digest, signature: &[u8]) -> Result<()> {
        if !self.verity_supported() {
            anyhow::bail!(
                "{}: the filesystem has no fs-verity, so the kernel cannot check the image's \
                 signature",
                self.path().display()
            );
        }
        if self.image_signed(digest)? {
            return Ok(());
        }
        self.replace_object_signed(digest, signature)
    }

    /// Whether `images/<hex>` exists.
    pub fn has_image(&self, digest: &Digest) -> bool {
        rustix::fs::statat(&self.images, digest.to_hex(), AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// Opens an image by digest (hex) or by ref name, and checks its fs-verity digest: the
    /// kernel's measurement when verity is on, a userspace computation otherwise. A wrong
    /// digest is [`RepoError::DigestMismatch`]; an unknown name [`RepoError::MissingImage`].
    pub fn open_image(&self, name: &str) -> Result<(File, Digest)> {
        let digest = match Digest::from_hex(name) {
            Ok(d) => d,
            Err(_) => match self.resolve_ref(name) {
                Ok(d) => d,
                Err(e) if matches!(e.downcast_ref(), Some(RepoError::MissingRef(_))) => {
                    return Err(RepoError::MissingImage(name.to_string()).into());
                }
                Err(e) => return Err(e),
            },
        };
        self.check_algorithm(&digest)?;
        // `images/<hex>` says the object may be mounted.
        let rel = format!("{IMAGES}/{}", digest.to_hex());
        match rustix::fs::statat(&self.images, digest.to_hex(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => {}
            Err(Errno::NOENT) => return Err(RepoError::MissingImage(name.to_string()).into()),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}/{rel}", self.path().display()));
            }
        }
        // The object is opened by its name, without following any link.
        let open = || open_nofollow(&self.objects, &digest.object_path(), OFlags::RDONLY);
        let file = open_verified(open, &digest, self.algorithm(), |e| {
            if self.verity_supported() {
                tracing::warn!(
                    "image {digest} has no fs-verity although the repository supports it ({e})"
                );
            }
            Ok(())
        })
        .map_err(|e| match e {
            OpenError::Missing => RepoError::MissingImage(name.to_string()).into(),
            OpenError::Mismatch { measured } => RepoError::DigestMismatch {
                what: format!("image {name}"),
                expected: digest,
                actual: measured,
            }
            .into(),
            OpenError::Other(e) => {
                e.context(format!("image {}", self.object_path(&digest).display()))
            }
        })?;
        Ok((file, digest))
    }

    /// Points ref `name` (e.g. `oci/fedora/latest`) at a stored object, atomically.
    pub fn set_ref(&self, name: &str, digest: &Digest) -> Result<()> {
        validate_ref_name(name)?;
        self.check_algorithm(digest)?;
        if !self.has_object(digest) {
            return Err(RepoError::MissingObject(*digest).into());
        }
        let depth = name.split('/').count();
        let (parent, leaf) = match name.rsplit_once('/') {
            Some((p, l)) => (Some(p), l),
            None => (None, name),
        };
        let dir = match parent {
            None => self.refs.try_clone()?,
            Some(p) => self.open_ref_dir(p, true)?,
        };
        self.sync()?;
        let target = format!("{}objects/{}", "../".repeat(depth), digest.object_path());
        symlink_atomic(&dir, leaf, &target)
            .with_context(|| format!("setting ref {name} in {}", self.path().display()))
    }

    /// The object a ref points to ([`RepoError::MissingRef`] if there is no such ref).
    pub fn resolve_ref(&self, name: &str) -> Result<Digest> {
        validate_ref_name(name)?;
        let (dir, leaf) = match self.ref_parent(name) {
            Ok(p) => p,
            Err(Errno::NOENT | Errno::NOTDIR) => {
                return Err(RepoError::MissingRef(name.to_string()).into());
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "opening the directory of ref {name} in {}",
                        self.path().display()
                    )
                });
            }
        };
        let target = match rustix::fs::readlinkat(&dir, leaf, Vec::new()) {
            Ok(t) => t,
            Err(Errno::NOENT | Errno::NOTDIR) => {
                return Err(RepoError::MissingRef(name.to_string()).into());
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading ref {name} in {}", self.path().display()));
            }
        };
        let target = target.to_string_lossy();
        let mut parts = target.rsplit('/');
        let (rest, xx) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        Digest::from_hex(&format!("{xx}{rest}"))
            .with_context(|| format!("ref {name} points to '{target}', not an object"))
    }

    /// Removes a ref (the objects stay until garbage collection).
    pub fn remove_ref(&self, name: &str) -> Result<()> {
        validate_ref_name(name)?;
        let removed = self
            .ref_parent(name)
            .and_then(|(dir, leaf)| rustix::fs::unlinkat(&dir, leaf, AtFlags::empty()));
        match removed {
            Ok(()) => Ok(()),
            Err(Errno::NOENT | Errno::NOTDIR) => {
                Err(RepoError::MissingRef(name.to_string()).into())
            }
            Err(e) => {
                Err(e).with_context(|| format!("removing ref {name} in {}", self.path().display()))
            }
        }
    }

    /// The directory holding ref `name` (reached without following any symlink: a planted
    /// `refs/oci -> /etc` must not lead a removal outside) and the leaf name in it.
    fn ref_parent<'n>(&self, name: &'n str) -> rustix::io::Result<(OwnedFd, &'n str)> {
        match name.rsplit_once('/') {
            None => Ok((rustix::io::fcntl_dupfd_cloexec(&self.refs, 0)?, name)),
            Some((parent, leaf)) => Ok((
                open_nofollow(&self.refs, parent, OFlags::RDONLY | OFlags::DIRECTORY)?,
                leaf,
            )),
        }
    }

    /// Every image (`images/<hex>`), sorted. These are not GC roots: only refs are
    /// (`docs/repository.md`, "What keeps an object alive").
    pub fn list_images(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for (name, _) in read_dir_names(&self.images).context("listing images/")? {
            match Digest::from_hex(&name) {
                Ok(d) if d.algorithm() == self.algorithm() => out.push(d),
                _ => tracing::debug!("images/{name}: not an image name, ignored"),
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every ref with the object it points to, sorted by name.
    pub fn list_refs(&self) -> Result<Vec<(String, Digest)>> {
        let mut out = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(prefix) = pending.pop() {
            let dir = if prefix.is_empty() {
                self.refs.try_clone()?
            } else {
                self.open_ref_dir(&prefix, false)?
            };
            for (name, ty) in
                read_dir_names(&dir).with_context(|| format!("listing refs/{prefix}"))?
            {
                let full = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                if ty.is_dir() {
                    pending.push(full);
                } else if validate_ref_name(&full).is_ok() {
                    let digest = self.resolve_ref(&full)?;
                    out.push((full, digest));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Opens (optionally creating) the directory `refs/<rel>`, one component at a time
    /// without following symlinks, so a planted link cannot lead outside `refs/`.
    fn open_ref_dir(&self, rel: &str, create: bool) -> Result<OwnedFd> {
        let mut dir = self.refs.try_clone()?;
        for comp in rel.split('/') {
            if create {
                super::mkdir_exist_ok(&dir, comp)
                    .with_context(|| format!("creating refs/{rel}"))?;
            }
            dir = rustix::fs::openat(
                &dir,
                comp,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .with_context(|| format!("opening refs/{rel}"))?;
        }
        Ok(dir)
    }
}

/// Names and types in a directory, without `.` and `..`.
fn read_dir_names(dir: &OwnedFd) -> std::io::Result<Vec<(String, FileType)>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != "." && name != ".." {
            out.push((name, entry.file_type()));
        }
    }
    Ok(out)
}

/// Why [`open_verified`] refused an image.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// There is no such file (ENOENT).
    #[error("no such image")]
    Missing,
    /// The file's fs-verity digest is not the one asked for.
    #[error("its fs-verity digest is {measured}")]
    Mismatch {
        /// What the kernel measured (or userspace computed).
        measured: Digest,
    },
    /// Anything else: not a regular file, no verity refused by the caller, I/O.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Opens an image with `open` and checks that its fs-verity digest is `expected`: the
/// kernel's measurement when verity is on; when it is off (or the filesystem has none),
/// `without_verity` decides: an error refuses the image, `Ok` has the digest computed in
/// userspace with `algorithm`. The one place that turns an image file into a trusted one,
/// for the repository ([`Repository::open_image`]) and for `cfs-setup-root`.
pub fn open_verified(
    open: impl FnOnce() -> rustix::io::Result<OwnedFd>,
    expected: &Digest,
    algorithm: crate::fsverity::Algorithm,
    without_verity: impl FnOnce(&MeasureError) -> Result<()>,
) -> Result<File, OpenError> {
    let file = match open() {
        Ok(fd) => File::from(fd),
        Err(Errno::NOENT) => return Err(OpenError::Missing),
        Err(e) => return Err(anyhow::Error::from(e).context("opening").into()),
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Err(anyhow::anyhow!("image {expected} is not a regular file").into());
    }
    let measured = match measure_verity(&file) {
        Ok(d) => d,
        Err(e @ (MeasureError::NoVerity | MeasureError::NotSupported)) => {
            without_verity(&e)?;
            compute_digest_at(&file, algorithm)
                .with_context(|| format!("reading image {expected}"))?
        }
        Err(MeasureError::Io(e)) => {
            return Err(anyhow::Error::from(e)
                .context(format!("measuring image {expected}"))
                .into());
        }
    };
    if &measured != expected {
        return Err(OpenError::Mismatch { measured });
    }
    Ok(file)
}

/// Opens `rel` (read-only) below `dir` with `RESOLVE_BENEATH`: an image link, and anything
/// it points to, must stay inside the repository. The kernel answers EAGAIN when a rename or
/// mount anywhere raced with resolving the link's `..` (`openat2(2)`: retry). Kernels
/// without `openat2` (before 5.6) give ENOSYS: the caller decides whether a plain `openat`
/// will do (`cfs-setup-root` refuses).
pub fn open_beneath(dir: impl AsFd, rel: &str) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(&dir, rel, flags, Mode::empty(), resolve) {
            Err(Errno::AGAIN) if tries < 100 => tries += 1,
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsverity::{Algorithm, digest_bytes};

    #[test]
    fn image_link_and_refs() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        let d = repo.write_image(b"not really erofs").unwrap();
        let link = std::fs::read_link(td.path().join("images").join(d.to_hex())).unwrap();
        assert_eq!(
            link.to_str().unwrap(),
            format!("../objects/{}", d.object_path())
        );
        let (_, got) = repo.open_image(&d.to_hex()).unwrap();
        assert_eq!(got, d);

        repo.set_ref("deploy/a/current", &d).unwrap();
        assert_eq!(repo.resolve_ref("deploy/a/current").unwrap(), d);
        // The ref link resolves on disk too.
        let via_fs = std::fs::read(td.path().join("refs/deploy/a/current")).unwrap();
        assert_eq!(via_fs, b"not really erofs");
        let (_, by_ref) = repo.open_image("deploy/a/current").unwrap();
        assert_eq!(by_ref, d);

        repo.set_ref("top", &d).unwrap();
        assert_eq!(
            repo.list_refs().unwrap(),
            vec![("deploy/a/current".to_string(), d), ("top".to_string(), d)]
        );
        assert_eq!(repo.list_images().unwrap(), vec![d]);
        repo.remove_ref("deploy/a/current").unwrap();
        let err = repo.resolve_ref("deploy/a/current").unwrap_err();
        assert!(matches!(err.downcast_ref(), Some(RepoError::MissingRef(_))));
        assert!(repo.set_ref("../x", &d).is_err());
        let missing = digest_bytes(Algorithm::Sha256, b"missing");
        assert!(matches!(
            repo.set_ref("x", &missing).unwrap_err().downcast_ref(),
            Some(RepoError::MissingObject(_))
        ));
        assert!(matches!(
            repo.open_image(&missing.to_hex())
                .unwrap_err()
                .downcast_ref(),
            Some(RepoError::MissingImage(_))
        ));
    }

    #[test]
    fn tampered_image_is_a_typed_mismatch() {
        let td = tempfile::tempdir().unwrap();
        let repo = Repository::init(td.path(), Algorithm::Sha256).unwrap();
        let d = repo.write_image(b"image bytes").unwrap();
        if repo.verity_supported() {
            eprintln!("note: fs-verity on; objects are immutable, skipping tamper test");
            return;
        }
        std::fs::write(repo.object_path(&d), b"evil bytes!").unwrap();
        let err = repo.open_image(&d.to_hex()).unwrap_err();
        match err.downcast_ref() {
            Some(RepoError::DigestMismatch {
                expected, actual, ..
            }) => {
                assert_eq!(*expected, d);
                assert_eq!(*actual, digest_bytes(Algorithm::Sha256, b"evil bytes!"));
            }
            other => panic!("{other:?}"),
        }
    }
}
