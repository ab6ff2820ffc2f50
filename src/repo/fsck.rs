//! Consistency check of a repository: every object's content against its name, every image
//! and object list against the objects it names, every ref and `images/` link against its
//! target, `meta.json` against what was opened.
//!
//! Runs under the shared lock (held since `open`), so it may run beside pulls: writers only
//! publish complete objects and name them after `syncfs`, so nothing half-written is seen;
//! `.tmp-*` names are skipped. Problems are values ([`FsckProblem`]), never printed here.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use serde::Serialize;

use super::gc::{LinkError, Links, open_subdir, read_dir_names};
use super::{IMAGES, OBJECTS, REFS, Repository, TMP_PREFIX, algorithm_from_meta, read_meta};
use crate::fsverity::ioctl::{MeasureError, compute_digest_at, measure_verity};
use crate::fsverity::{Algorithm, Digest};

/// The kind of a problem; serialized in kebab-case (`corrupt-object`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FsckKind {
    /// An object whose content does not have the digest it is named by (or cannot be read
    /// back: fs-verity refuses a block).
    CorruptObject,
    /// An object an image or object list names is not stored.
    MissingObject,
    /// An object reached as an image (ref target or `images/` link) that does not parse.
    BrokenImage,
    /// An object list with a malformed body.
    BrokenObjectList,
    /// A ref naming an object that is not stored.
    DanglingRef,
    /// A ref that is not a symlink to `objects/XX/rest`.
    BadRef,
    /// An `images/<hex>` link whose object is not stored.
    DanglingImage,
    /// An `images/` entry that is not a link `<hex> -> ../objects/XX/rest` with matching name.
    BadImageLink,
    /// `meta.json` unreadable, or not what the repository was opened with.
    BadMeta,
    /// A file where only objects, links or directories belong.
    UnexpectedFile,
    /// A top directory of the repository others can write, or owned by another user.
    InsecurePermissions,
    /// An I/O error other than corruption while checking this path.
    IoError,
}

impl FsckKind {
    /// The kebab-case name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            FsckKind::CorruptObject => "corrupt-object",
            FsckKind::MissingObject => "missing-object",
            FsckKind::BrokenImage => "broken-image",
            FsckKind::BrokenObjectList => "broken-object-list",
            FsckKind::DanglingRef => "dangling-ref",
            FsckKind::BadRef => "bad-ref",
            FsckKind::DanglingImage => "dangling-image",
            FsckKind::BadImageLink => "bad-image-link",
            FsckKind::BadMeta => "bad-meta",
            FsckKind::UnexpectedFile => "unexpected-file",
            FsckKind::InsecurePermissions => "insecure-permissions",
            FsckKind::IoError => "io-error",
        }
    }
}

impl std::fmt::Display for FsckKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsckProblem {
    /// What is wrong.
    pub kind: FsckKind,
    /// The path inside the repository (`objects/XX/rest`, `refs/oci/x`, `images/<hex>`).
    pub path: String,
    /// Human detail (expected/actual digest, which image names a missing object, ...).
    pub detail: String,
}

/// What [`Repository::fsck`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FsckReport {
    /// Objects whose digest was checked.
    pub objects_checked: u64,
    /// Bytes of those objects.
    pub bytes_checked: u64,
    /// Images parsed (reached through `images/` or refs).
    pub images_checked: u64,
    /// Refs checked.
    pub refs_checked: u64,
    /// Every problem, sorted by path.
    pub problems: Vec<FsckProblem>,
}

impl FsckReport {
    /// No problem found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What [`Repository::fsck`] should do.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsckOptions {
    /// Threads checking objects (0: one per core).
    pub threads: usize,
    /// Skip reading objects; check only links, refs, images and lists.
    pub metadata_only: bool,
}

impl Repository {
    /// Checks the whole repository and returns every problem found. `Err` only when the
    /// check itself cannot proceed (e.g. `objects/` cannot be listed).
    pub fn fsck(&self, opts: FsckOptions) -> Result<FsckReport> {
        let mut report = FsckReport::default();
        self.check_meta(&mut report);
        for (rel, detail) in self.untrusted_dirs() {
            report.problems.push(FsckProblem {
                kind: FsckKind::InsecurePermissions,
                path: if rel.is_empty() {
                    ".".to_string()
                } else {
                    rel.to_string()
                },
                detail,
            });
        }
        if !opts.metadata_only {
            self.check_objects(opts.threads, &mut report)?;
        }
        let mut walked = HashSet::new();
        self.check_images(&mut walked, &mut report)?;
        self.check_refs(&self.refs.try_clone()?, REFS, 1, &mut walked, &mut report)?;
        report
            .problems
            .sort_by(|a, b| (&a.path, a.kind.as_str()).cmp(&(&b.path, b.kind.as_str())));
        report.problems.dedup();
        Ok(report)
    }

    fn check_meta(&self, report: &mut FsckReport) {
        let problem = match read_meta(&self.dir, &self.path) {
            Err(e) => Some(format!("{e:#}")),
            Ok(meta) => match algorithm_from_meta(&meta.algorithm) {
                Some(a) if a == self.algorithm => None,
                _ => Some(format!(
                    "algorithm '{}' differs from {} the repository was opened with",
                    meta.algorithm, self.algorithm
                )),
            },
        };
        if let Some(detail) = problem {
            report.problems.push(FsckProblem {
                kind: FsckKind::BadMeta,
                path: super::META_JSON.to_string(),
                detail,
            });
        }
    }

    /// Every `objects/XX/*` against its name, the `XX` directories shared among threads.
    fn check_objects(&self, threads: usize, report: &mut FsckReport) -> Result<()> {
        let mut dirs = Vec::new();
        for (name, ty) in read_dir_names(&self.objects, self, OBJECTS)? {
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            let is_xx = name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if ty == FileType::Directory && is_xx && name.to_ascii_lowercase() == name {
                dirs.push(name);
            } else {
                report.problems.push(FsckProblem {
                    kind: FsckKind::UnexpectedFile,
                    path: format!("{OBJECTS}/{name}"),
                    detail: "not an object directory (XX, two lower-case hex digits)".into(),
                });
            }
        }
        dirs.sort();
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(dirs.len().max(1));
        let next = AtomicUsize::new(0);
        let merged = Mutex::new(FsckReport::default());
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut local = FsckReport::default();
                    while let Some(xx) = dirs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        self.check_object_dir(xx, &mut local);
                    }
                    let mut m = merged.lock().expect("no panics while locked");
                    m.objects_checked += local.objects_checked;
                    m.bytes_checked += local.bytes_checked;
                    m.problems.append(&mut local.problems);
                });
            }
        });
        let m = merged.into_inner().expect("no panics while locked");
        report.objects_checked += m.objects_checked;
        report.bytes_checked += m.bytes_checked;
        report.problems.extend(m.problems);
        Ok(())
    }

    fn check_object_dir(&self, xx: &str, report: &mut FsckReport) {
        let rel = format!("{OBJECTS}/{xx}");
        let io_problem = |path: String, e: &dyn std::fmt::Display| FsckProblem {
            kind: FsckKind::IoError,
            path,
            detail: e.to_string(),
        };
        let dir = match open_subdir(&self.objects, xx) {
            Ok(d) => d,
            Err(e) => return report.problems.push(io_problem(rel, &e)),
        };
        let entries = match read_dir_names(&dir, self, &rel) {
            Ok(v) => v,
            Err(e) => return report.problems.push(io_problem(rel, &format!("{e:#}"))),
        };
        for (rest, ty) in entries {
            if rest.starts_with(TMP_PREFIX) {
                continue;
            }
            let path = format!("{rel}/{rest}");
            let expected = Digest::from_hex(&format!("{xx}{rest}"))
                .ok()
                .filter(|d| d.algorithm() == self.algorithm && d.to_hex()[2..] == rest);
            let Some(expected) = expected.filter(|_| ty == FileType::RegularFile) else {
                report.problems.push(FsckProblem {
                    kind: FsckKind::UnexpectedFile,
                    path,
                    detail: format!(
                        "not a regular file named by a lower-case {} digest",
                        self.algorithm
                    ),
                });
                continue;
            };
            let file = match rustix::fs::openat(
                &dir,
                rest.as_str(),
                OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
                Mode::empty(),
            ) {
                Ok(fd) => File::from(fd),
                Err(Errno::NOENT) => continue, // removed meanwhile
                Err(e) => {
                    report.problems.push(io_problem(path, &e));
                    continue;
                }
            };
            report.objects_checked += 1;
            report.bytes_checked += file.metadata().map_or(0, |m| m.len());
            match verify_object(&file, self.algorithm) {
                Ok(actual) if actual == expected => {}
                Ok(actual) => report.problems.push(FsckProblem {
                    kind: FsckKind::CorruptObject,
                    path,
                    detail: format!("content has fs-verity digest {actual}"),
                }),
                // EIO on a verity file: the kernel found a block that does not match.
                Err(e) if e.raw_os_error() == Some(Errno::IO.raw_os_error()) => {
                    report.problems.push(FsckProblem {
                        kind: FsckKind::CorruptObject,
                        path,
                        detail: format!("reading failed: {e}"),
                    })
                }
                Err(e) => report.problems.push(io_problem(path, &e)),
            }
        }
    }

    /// Every `images/<hex>`: a link to its own object, which parses as an image whose
    /// objects exist.
    fn check_images(&self, walked: &mut HashSet<Digest>, report: &mut FsckReport) -> Result<()> {
        for (name, ty) in read_dir_names(&self.images, self, IMAGES)? {
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            let path = format!("{IMAGES}/{name}");
            let digest = Digest::from_hex(&name)
                .ok()
                .filter(|d| d.algorithm() == self.algorithm && d.to_hex() == name);
            let Some(digest) = digest.filter(|_| ty == FileType::Symlink) else {
                report.problems.push(FsckProblem {
                    kind: FsckKind::BadImageLink,
                    path,
                    detail: format!(
                        "not a symlink named by a lower-case {} digest",
                        self.algorithm
                    ),
                });
                continue;
            };
            let want = format!("../{OBJECTS}/{}", digest.object_path());
            match rustix::fs::readlinkat(&self.images, name.as_str(), Vec::new()) {
                Ok(t) if t.to_bytes() == want.as_bytes() => {}
                Ok(t) => {
                    report.problems.push(FsckProblem {
                        kind: FsckKind::BadImageLink,
                        path,
                        detail: format!("points to '{}', expected '{want}'", t.to_string_lossy()),
                    });
                    continue;
                }
                Err(e) => {
                    report.problems.push(FsckProblem {
                        kind: FsckKind::IoError,
                        path,
                        detail: e.to_string(),
                    });
                    continue;
                }
            }
            if !self.has_object(&digest) {
                report.problems.push(FsckProblem {
                    kind: FsckKind::DanglingImage,
                    path,
                    detail: format!("object {OBJECTS}/{} is missing", digest.object_path()),
                });
                continue;
            }
            self.check_reachable(digest, true, &path, walked, report);
        }
        Ok(())
    }

    /// Every ref under `dir` (`rel`, `depth` components below the repository root).
    fn check_refs(
        &self,
        dir: &std::os::fd::OwnedFd,
        rel: &str,
        depth: usize,
        walked: &mut HashSet<Digest>,
        report: &mut FsckReport,
    ) -> Result<()> {
        for (name, ty) in read_dir_names(dir, self, rel)? {
            if name.starts_with(TMP_PREFIX) {
                continue;
            }
            let path = format!("{rel}/{name}");
            if ty == FileType::Directory {
                match open_subdir(dir, &name) {
                    Ok(sub) => self.check_refs(&sub, &path, depth + 1, walked, report)?,
                    Err(e) => report.problems.push(FsckProblem {
                        kind: FsckKind::IoError,
                        path,
                        detail: e.to_string(),
                    }),
                }
                continue;
            }
            report.refs_checked += 1;
            let target = match rustix::fs::readlinkat(dir, name.as_str(), Vec::new()) {
                Ok(t) => t.to_string_lossy().into_owned(),
                Err(e) => {
                    let detail = if ty == FileType::Symlink {
                        e.to_string()
                    } else {
                        "not a symlink".to_string()
                    };
                    report.problems.push(FsckProblem {
                        kind: FsckKind::BadRef,
                        path,
                        detail,
                    });
                    continue;
                }
            };
            let digest = target
                .strip_prefix(&"../".repeat(depth))
                .and_then(|t| t.strip_prefix(&format!("{OBJECTS}/")))
                .and_then(|t| super::object_path_digest(self, t));
            let Some(digest) = digest else {
                report.problems.push(FsckProblem {
                    kind: FsckKind::BadRef,
                    path,
                    detail: format!("points to '{target}', not to an object of this repository"),
                });
                continue;
            };
            if !self.has_object(&digest) {
                report.problems.push(FsckProblem {
                    kind: FsckKind::DanglingRef,
                    path,
                    detail: format!("object {OBJECTS}/{} is missing", digest.object_path()),
                });
                continue;
            }
            self.check_reachable(digest, false, &path, walked, report);
        }
        Ok(())
    }

    /// Follows what `root` keeps alive (images, lists), reporting what is missing or broken.
    /// `must_be_image`: reached through `images/`, so plain content is a broken image.
    fn check_reachable(
        &self,
        root: Digest,
        must_be_image: bool,
        via: &str,
        walked: &mut HashSet<Digest>,
        report: &mut FsckReport,
    ) {
        let mut stack = vec![(root, must_be_image, via.to_string())];
        while let Some((d, must_be_image, via)) = stack.pop() {
            if !walked.insert(d) {
                continue;
            }
            let path = format!("{OBJECTS}/{}", d.object_path());
            let problem = |kind, detail| FsckProblem {
                kind,
                path: path.clone(),
                detail,
            };
            match self.object_links(&d) {
                Ok(Links::Leaf) if must_be_image => report.problems.push(problem(
                    FsckKind::BrokenImage,
                    format!("named by {via}, but not a composefs image"),
                )),
                Ok(Links::Leaf) => {}
                Ok(Links::Image(paths)) => {
                    report.images_checked += 1;
                    for p in paths {
                        let present = super::object_path_digest(self, &p)
                            .is_some_and(|o| self.has_object(&o));
                        if !present {
                            report.problems.push(FsckProblem {
                                kind: FsckKind::MissingObject,
                                path: format!("{OBJECTS}/{p}"),
                                detail: format!("named by image {path} (via {via})"),
                            });
                        }
                    }
                }
                Ok(Links::List(members)) => {
                    for m in members {
                        if !self.has_object(&m) {
                            report.problems.push(FsckProblem {
                                kind: FsckKind::MissingObject,
                                path: format!("{OBJECTS}/{}", m.object_path()),
                                detail: format!("named by object list {path} (via {via})"),
                            });
                        } else {
                            stack.push((m, false, format!("{via} -> {path}")));
                        }
                    }
                }
                Err(LinkError::Missing) => report
                    .problems
                    .push(problem(FsckKind::MissingObject, format!("named by {via}"))),
                Err(LinkError::BrokenImage(e)) => report.problems.push(problem(
                    FsckKind::BrokenImage,
                    format!("named by {via}: {e}"),
                )),
                Err(LinkError::BrokenList(e)) => report.problems.push(problem(
                    FsckKind::BrokenObjectList,
                    format!("named by {via}: {e}"),
                )),
                Err(LinkError::Io(e)) => report
                    .problems
                    .push(problem(FsckKind::IoError, e.to_string())),
            }
        }
    }
}

/// The digest of an object's content: with fs-verity on it, the kernel's measurement, after
/// reading every block through the kernel (which checks each against the Merkle tree and
/// fails with EIO on a mismatch); otherwise computed in userspace.
fn verify_object(file: &File, algorithm: Algorithm) -> io::Result<Digest> {
    match measure_verity(file) {
        Ok(d) => {
            let mut buf = vec![0u8; 256 * 1024];
            let mut offset = 0u64;
            loop {
                match file.read_at(&mut buf, offset) {
                    Ok(0) => return Ok(d),
                    Ok(n) => offset += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Err(MeasureError::NoVerity | MeasureError::NotSupported) => {
            compute_digest_at(file, algorithm)
        }
        Err(MeasureError::Io(e)) => Err(e),
    }
}
