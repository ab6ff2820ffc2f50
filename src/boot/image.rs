//! What a bootable image (bootc conventions) carries for booting: the kernel at
//! `/usr/lib/modules/$kver/vmlinuz`, the initramfs next to it as `initramfs.img`, and kernel
//! arguments in `/usr/lib/bootc/kargs.d/*.toml`. Read from the stored image and its objects,
//! without mounting.

use std::io::Read;

use anyhow::{Context, Result, bail};

use crate::erofs::reader::read_image;
use crate::fsverity::Digest;
use crate::repo::Repository;
use crate::tree::{FileType, InodeId, Tree};

/// The boot files of one image.
#[derive(Debug)]
pub struct BootableImage {
    /// The image digest.
    pub digest: Digest,
    /// The kernel version (the directory name under `/usr/lib/modules`).
    pub kver: String,
    /// Kernel bytes.
    pub vmlinuz: Vec<u8>,
    /// Initramfs bytes.
    pub initramfs: Vec<u8>,
    /// `kargs.d` files (name, content).
    pub kargs_files: Vec<(String, Vec<u8>)>,
    /// `/usr/lib/systemd/boot/efi/systemd-bootx64.efi`, when the image ships it.
    pub systemd_boot: Option<Vec<u8>>,
    /// Every object the image refers to (its own object not included).
    pub objects: Vec<Digest>,
}

/// Reads the tree of image `name` (hex digest or ref) of `repo`.
pub fn read_tree(repo: &Repository, name: &str) -> Result<(Tree, Digest)> {
    let (mut file, digest) = repo.open_image(name)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("reading image {digest}"))?;
    let tree = read_image(&bytes).with_context(|| format!("parsing image {digest}"))?;
    Ok((tree, digest))
}

impl BootableImage {
    /// Reads image `name` (hex digest or ref) of `repo`.
    pub fn load(repo: &Repository, name: &str) -> Result<BootableImage> {
        let (tree, digest) = read_tree(repo, name)?;
        let reader = Files { repo, tree: &tree };

        let modules = tree
            .lookup(b"/usr/lib/modules")
            .filter(|&i| tree.inodes[i].is_dir())
            .with_context(|| format!("image {digest} has no /usr/lib/modules: not bootable"))?;
        let mut found = Vec::new();
        for (name, entry) in &tree.inodes[modules].entries {
            let kdir = &tree.inodes[entry.inode];
            let has = |f: &[u8]| kdir.entries.contains_key(f);
            if kdir.is_dir() && has(b"vmlinuz") && has(b"initramfs.img") {
                found.push(String::from_utf8_lossy(name).into_owned());
            }
        }
        let kver = match found.as_slice() {
            [one] => one.clone(),
            [] => bail!(
                "image {digest} has no /usr/lib/modules/<kver>/ with both vmlinuz and initramfs.img"
            ),
            many => bail!(
                "image {digest} has several kernels ({}); expected one",
                many.join(", ")
            ),
        };
        let base = format!("/usr/lib/modules/{kver}");
        let vmlinuz = reader.read(&format!("{base}/vmlinuz"))?;
        let initramfs = reader.read(&format!("{base}/initramfs.img"))?;
        let mut kargs_files = Vec::new();
        if let Some(dir) = tree.lookup(b"/usr/lib/bootc/kargs.d") {
            for name in tree.inodes[dir].entries.keys() {
                let name = String::from_utf8_lossy(name).into_owned();
                if name.ends_with(".toml") {
                    let content = reader.read(&format!("/usr/lib/bootc/kargs.d/{name}"))?;
                    kargs_files.push((name, content));
                }
            }
        }
        let systemd_boot = match tree.lookup(b"/usr/lib/systemd/boot/efi/systemd-bootx64.efi") {
            Some(_) => Some(reader.read("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")?),
            None => None,
        };
        let mut objects: Vec<Digest> = tree.inodes.iter().filter_map(|i| i.digest).collect();
        objects.sort();
        objects.dedup();
        Ok(BootableImage {
            digest,
            kver,
            vmlinuz,
            initramfs,
            kargs_files,
            systemd_boot,
            objects,
        })
    }
}

/// Reads regular files of an image tree (inline, or from the object store).
struct Files<'a> {
    repo: &'a Repository,
    tree: &'a Tree,
}

impl Files<'_> {
    fn inode(&self, path: &str) -> Result<InodeId> {
        let mut id = self
            .tree
            .lookup(path.as_bytes())
            .with_context(|| format!("{path} not in the image"))?;
        // One level of symlink, relative to the link's directory (vmlinuz links are common).
        if self.tree.inodes[id].file_type() == Some(FileType::Symlink) {
            let target = self.tree.inodes[id].payload.clone().unwrap_or_default();
            let target = String::from_utf8_lossy(&target).into_owned();
            let resolved = if target.starts_with('/') {
                target
            } else {
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                format!("{dir}/{target}")
            };
            id = self
                .tree
                .lookup(resolved.as_bytes())
                .with_context(|| format!("{path} -> {resolved}: not in the image"))?;
        }
        Ok(id)
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let inode = &self.tree.inodes[self.inode(path)?];
        if inode.file_type() != Some(FileType::Regular) {
            bail!("{path} in the image is not a regular file");
        }
        if let Some(inline) = &inode.inline {
            return Ok(inline.to_vec());
        }
        match inode.digest {
            Some(d) => {
                let mut out = Vec::new();
                self.repo
                    .open_object(&d)?
                    .read_to_end(&mut out)
                    .with_context(|| format!("reading {path} (object {d})"))?;
                Ok(out)
            }
            None if inode.size == 0 => Ok(Vec::new()),
            None => bail!("{path}: external file without a digest"),
        }
    }
}
