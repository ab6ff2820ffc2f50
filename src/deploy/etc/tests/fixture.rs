//! Test fixtures: `/etc` trees described as a map of entries, turned into real images
//! (EROFS written and read back, large files as repository objects), into directories on
//! disk, and read back from disk (a merged overlay view) for comparison.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Gid, Mode, Uid, XattrFlags};
use rustix::mount::{MountFlags, UnmountFlags};

use crate::deploy::etc::{
    ConflictPolicy, ImageEtc, Plan, Report, apply, compare::is_overlay_xattr, plan,
};
use crate::erofs::limits::INLINE_RECOMMENDED_MAX as INLINE_CONTENT_MAX;
use crate::erofs::reader::read_image;
use crate::erofs::writer::{WriteOptions, image_bytes};
use crate::fsverity::Algorithm;
use crate::repo::Repository;
use crate::tree::{DirEntry, FileType, Inode, ROOT, Tree, Xattr, mode};

/// True when running as root; otherwise the test says it is skipped.
pub fn root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    eprintln!("SKIP: /etc merge tests need root (owners, whiteouts, trusted xattrs, mounts)");
    false
}

/// What an entry is.
#[derive(Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Vec<u8>),
    Link(Vec<u8>),
    Fifo,
    Char(u64),
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Dir => f.write_str("Dir"),
            Kind::File(c) if c.len() > 80 => {
                write!(
                    f,
                    "File({} bytes: {:?}...)",
                    c.len(),
                    String::from_utf8_lossy(&c[..40])
                )
            }
            Kind::File(c) => write!(f, "File({:?})", String::from_utf8_lossy(c)),
            Kind::Link(t) => write!(f, "Link({:?})", String::from_utf8_lossy(t)),
            Kind::Fifo => f.write_str("Fifo"),
            Kind::Char(d) => write!(f, "Char({d:#x})"),
        }
    }
}

/// One entry with the metadata the merge cares about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub perms: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Entry {
    pub fn new(kind: Kind) -> Self {
        let perms = match kind {
            Kind::Dir => 0o755,
            Kind::Link(_) => 0o777,
            _ => 0o644,
        };
        Entry {
            kind,
            perms,
            uid: 0,
            gid: 0,
            xattrs: BTreeMap::new(),
        }
    }
}

/// An `/etc` tree: paths relative to `/etc` (`b""` is `/etc` itself) to entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    pub entries: BTreeMap<Vec<u8>, Entry>,
    /// The image has no `/etc` at all.
    pub no_etc: bool,
}

/// Content longer than the inline limit: stored as a repository object.
pub fn big(tag: &str) -> Vec<u8> {
    let mut v = Vec::new();
    while v.len() <= INLINE_CONTENT_MAX as usize * 100 {
        v.extend_from_slice(format!("{tag} line {}\n", v.len()).as_bytes());
    }
    v
}

impl Default for Spec {
    fn default() -> Self {
        let mut entries = BTreeMap::new();
        entries.insert(Vec::new(), Entry::new(Kind::Dir));
        Spec {
            entries,
            no_etc: false,
        }
    }
}

impl Spec {
    pub fn put(mut self, path: impl AsRef<[u8]>, kind: Kind) -> Self {
        self.entries
            .insert(path.as_ref().to_vec(), Entry::new(kind));
        self
    }
    pub fn dir(self, path: impl AsRef<[u8]>) -> Self {
        self.put(path, Kind::Dir)
    }
    pub fn file(self, path: impl AsRef<[u8]>, content: impl AsRef<[u8]>) -> Self {
        self.put(path, Kind::File(content.as_ref().to_vec()))
    }
    pub fn link(self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> Self {
        self.put(path, Kind::Link(target.as_ref().to_vec()))
    }
    pub fn get_mut(&mut self, path: impl AsRef<[u8]>) -> &mut Entry {
        self.entries.get_mut(path.as_ref()).expect("entry in spec")
    }
    pub fn perms(mut self, path: impl AsRef<[u8]>, perms: u32) -> Self {
        self.get_mut(path).perms = perms;
        self
    }
    pub fn owner(mut self, path: impl AsRef<[u8]>, uid: u32, gid: u32) -> Self {
        let e = self.get_mut(path);
        (e.uid, e.gid) = (uid, gid);
        self
    }
    pub fn xattr(mut self, path: impl AsRef<[u8]>, name: &str, value: &[u8]) -> Self {
        let e = self.get_mut(path);
        e.xattrs.insert(name.as_bytes().to_vec(), value.to_vec());
        self
    }
    /// Removes `path` and everything beneath it.
    pub fn remove(mut self, path: impl AsRef<[u8]>) -> Self {
        let p = path.as_ref().to_vec();
        let mut prefix = p.clone();
        prefix.push(b'/');
        self.entries
            .retain(|k, _| *k != p && !k.starts_with(&prefix));
        self
    }

    /// The image of a root filesystem holding this `/etc` (plus `/usr`), written as an EROFS
    /// image and read back, with external files stored in `repo`.
    pub fn tree(&self, repo: &Repository) -> Tree {
        let mut tree = Tree::new(0o755);
        let usr = tree.add_inode(Inode::new(mode::S_IFDIR | 0o755));
        tree.inodes[ROOT]
            .entries
            .insert(b"usr".to_vec().into(), link(usr));
        if !self.no_etc {
            for (path, entry) in &self.entries {
                let inode = self.inode(entry, repo);
                let id = tree.add_inode(inode);
                let (parent, name) = match path.iter().rposition(|&b| b == b'/') {
                    Some(i) => ([b"/etc/", &path[..i]].concat(), &path[i + 1..]),
                    None if path.is_empty() => (b"/".to_vec(), &b"etc"[..]),
                    None => (b"/etc".to_vec(), &path[..]),
                };
                let parent = tree.lookup(&parent).expect("parent listed first");
                tree.inodes[parent].entries.insert(name.into(), link(id));
            }
        }
        let bytes = image_bytes(&tree, &WriteOptions::default()).expect("writing the image");
        read_image(&bytes).expect("reading the image back")
    }

    fn inode(&self, e: &Entry, repo: &Repository) -> Inode {
        let ftype = match e.kind {
            Kind::Dir => FileType::Directory,
            Kind::File(_) => FileType::Regular,
            Kind::Link(_) => FileType::Symlink,
            Kind::Fifo => FileType::Fifo,
            Kind::Char(_) => FileType::CharDevice,
        };
        let mut inode = Inode::new(ftype.mode_bits() | e.perms);
        inode.uid = e.uid;
        inode.gid = e.gid;
        inode.xattrs = e
            .xattrs
            .iter()
            .map(|(n, v)| Xattr {
                name: n.clone().into(),
                value: v.clone().into(),
            })
            .collect();
        match &e.kind {
            Kind::File(c) => {
                inode.size = c.len() as u64;
                if c.len() as u64 > INLINE_CONTENT_MAX {
                    let d = repo.write_object(c).expect("storing content");
                    inode.payload = Some(d.object_path().into_bytes().into());
                    inode.digest = Some(d);
                } else if !c.is_empty() {
                    inode.inline = Some(c.clone().into());
                }
            }
            Kind::Link(t) => {
                inode.size = t.len() as u64;
                inode.payload = Some(t.clone().into());
            }
            Kind::Char(d) => inode.rdev = *d,
            Kind::Dir | Kind::Fifo => {}
        }
        inode
    }

    /// Writes this `/etc` into the directory `dir` (created, or given its metadata).
    pub fn write_to(&self, dir: &Path) {
        for (path, entry) in &self.entries {
            put(&join(dir, path), entry);
        }
    }

    /// Reads a directory tree (an overlay mount) into a spec, without `trusted.overlay.*`.
    pub fn read_from(dir: &Path) -> Spec {
        let mut spec = Spec::default();
        spec.entries.clear();
        read_into(dir, Vec::new(), &mut spec.entries);
        spec
    }
}

fn link(inode: usize) -> DirEntry {
    DirEntry {
        inode,
        hardlink: false,
    }
}

pub fn join(dir: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        dir.to_owned()
    } else {
        dir.join(OsStr::from_bytes(rel))
    }
}

/// Creates (or for an existing directory, updates) `path` as `entry`.
pub fn put(path: &Path, e: &Entry) {
    match &e.kind {
        Kind::Dir => match std::fs::create_dir(path) {
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            r => r.unwrap(),
        },
        Kind::File(c) => std::fs::write(path, c).unwrap(),
        Kind::Link(t) => std::os::unix::fs::symlink(OsStr::from_bytes(t), path).unwrap(),
        Kind::Fifo => mknod(path, rustix::fs::FileType::Fifo, 0),
        Kind::Char(d) => mknod(path, rustix::fs::FileType::CharacterDevice, *d),
    }
    rustix::fs::chownat(
        CWD,
        path,
        Some(Uid::from_raw(e.uid)),
        Some(Gid::from_raw(e.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
    if !matches!(e.kind, Kind::Link(_)) {
        rustix::fs::chmod(path, Mode::from_raw_mode(e.perms)).unwrap();
    }
    for (n, v) in &e.xattrs {
        rustix::fs::lsetxattr(path, &n[..], v, XattrFlags::empty()).unwrap();
    }
}

pub fn mknod(path: &Path, t: rustix::fs::FileType, dev: u64) {
    rustix::fs::mknodat(CWD, path, t, Mode::from_raw_mode(0o644), dev).unwrap();
}

/// Makes `path` a whiteout, as overlayfs does.
pub fn whiteout(path: &Path) {
    rustix::fs::mknodat(
        CWD,
        path,
        rustix::fs::FileType::CharacterDevice,
        Mode::empty(),
        0,
    )
    .unwrap();
}

/// Sets an xattr on `path` itself.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

/// All xattrs of `path` itself.
pub fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut names = vec![0u8; 65536];
    let n = rustix::fs::llistxattr(path, &mut names[..]).unwrap();
    let mut out = BTreeMap::new();
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let mut v = vec![0u8; 65536];
        let len = rustix::fs::lgetxattr(path, name, &mut v[..]).unwrap();
        out.insert(name.to_vec(), v[..len].to_vec());
    }
    out
}

fn read_into(path: &Path, rel: Vec<u8>, out: &mut BTreeMap<Vec<u8>, Entry>) {
    let st = rustix::fs::lstat(path).unwrap();
    let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::Directory => Kind::Dir,
        rustix::fs::FileType::RegularFile => Kind::File(std::fs::read(path).unwrap()),
        rustix::fs::FileType::Symlink => Kind::Link(
            std::fs::read_link(path)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec(),
        ),
        rustix::fs::FileType::Fifo => Kind::Fifo,
        rustix::fs::FileType::CharacterDevice => Kind::Char(st.st_rdev),
        t => panic!("{}: unexpected {t:?}", path.display()),
    };
    let is_dir = kind == Kind::Dir;
    let mut xattrs = xattrs(path);
    xattrs.retain(|n, _| !is_overlay_xattr(n));
    out.insert(
        rel.clone(),
        Entry {
            kind,
            perms: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            xattrs,
        },
    );
    if is_dir {
        for e in std::fs::read_dir(path).unwrap() {
            let e = e.unwrap();
            let name = e.file_name();
            let child = if rel.is_empty() {
                name.as_bytes().to_vec()
            } else {
                [&rel[..], b"/", name.as_bytes()].concat()
            };
            read_into(&e.path(), child, out);
        }
    }
}

/// A scratch area on a disk filesystem (trusted xattrs and whiteouts need one) with a
/// repository.
pub struct Fx {
    pub td: tempfile::TempDir,
    pub repo: Repository,
}

impl Fx {
    pub fn new() -> Fx {
        let td = tempfile::tempdir_in("/var/tmp").unwrap();
        let repo = Repository::init(td.path().join("repo"), Algorithm::Sha256).unwrap();
        Fx { td, repo }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.td.path().join(name)
    }

    /// An empty upper directory as `cfs-setup-root` makes it (0755).
    pub fn upper(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::create_dir(&p).unwrap();
        rustix::fs::chmod(&p, Mode::from_raw_mode(0o755)).unwrap();
        p
    }

    /// Plans with `base` and `new` as images.
    pub fn plan_with<R>(
        &self,
        base: &Spec,
        new: &Spec,
        upper: &Path,
        f: impl FnOnce(&Plan) -> R,
    ) -> R {
        let (bt, nt) = (base.tree(&self.repo), new.tree(&self.repo));
        let b = ImageEtc::new(&bt, &self.repo).unwrap();
        let n = ImageEtc::new(&nt, &self.repo).unwrap();
        let plan = plan(&b, upper, &n).unwrap();
        f(&plan)
    }

    /// Plans and applies into `dest`.
    pub fn merge(
        &self,
        base: &Spec,
        new: &Spec,
        upper: &Path,
        policy: ConflictPolicy,
        dest: &Path,
    ) -> anyhow::Result<Report> {
        self.plan_with(base, new, upper, |p| apply(p, policy, upper, dest))
    }

    /// What `/etc` shows with `lower` (written from `spec`) under `upper`: mounts an
    /// overlay, reads it, unmounts.
    pub fn merged_view(&self, spec: &Spec, upper: &Path) -> Spec {
        let tag = upper.file_name().unwrap().to_string_lossy().into_owned();
        let lower = self.path(&format!("view-lower-{tag}"));
        std::fs::create_dir(&lower).unwrap();
        spec.write_to(&lower);
        let work = self.path(&format!("view-work-{tag}"));
        let mnt = self.path(&format!("view-mnt-{tag}"));
        let m = Mounted::overlay(&lower, upper, &work, &mnt);
        let view = Spec::read_from(&m.0);
        drop(m);
        view
    }
}

/// An overlay mount, unmounted on drop.
pub struct Mounted(pub PathBuf);

impl Mounted {
    /// Mounts an overlay the way `cfs-setup-root` mounts `/etc`, with the features that
    /// would record state elsewhere turned off explicitly.
    pub fn overlay(lower: &Path, upper: &Path, work: &Path, at: &Path) -> Mounted {
        for d in [work, at] {
            std::fs::create_dir_all(d).unwrap();
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off,index=off",
            lower.display(),
            upper.display(),
            work.display()
        );
        let data = CString::new(data).unwrap();
        rustix::mount::mount(
            "overlay",
            at,
            "overlay",
            MountFlags::empty(),
            data.as_c_str(),
        )
        .unwrap();
        Mounted(at.to_owned())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        rustix::mount::unmount(&self.0, UnmountFlags::empty()).unwrap();
    }
}
