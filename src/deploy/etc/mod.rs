//! `/etc` across upgrades: carrying the host's changes from one deployment to the next.
//!
//! At boot, a deployment's `/etc` is an overlayfs (see [`crate::setup_root`]): lower = the
//! image's `/etc`, upper = `state/deploy/<hex>/etc/upper`, mounted without metacopy,
//! redirect_dir or index. The host's changes are therefore exactly the upper directory:
//! entries copied up or created, whiteouts (0:0 character devices) for deletions,
//! `trusted.overlay.opaque=y` on directories hiding the lower one, and overlayfs
//! bookkeeping (`trusted.overlay.origin`, `impure`, ...) that is ignored and never copied.
//!
//! Moving from the booted image B to a new image N, the new deployment's upper directory
//! is computed so that N's `/etc` under it shows a three-way merge, whole file by whole
//! file (like bootc's and ostree's `/etc` merge; no merging inside files):
//! - what the host did not change (mtime ignored) shows N's version;
//! - what the host changed (content, mode, owner, xattrs, type, added, deleted) and N did
//!   not is kept whole;
//! - what both changed the same way needs nothing;
//! - everything else is a [`Conflict`], all reported at once, and resolved by a
//!   [`ConflictPolicy`].
//!
//! A directory written only to hold carried entries gets N's metadata, since overlayfs
//! shows the upper directory's; one whose metadata the host changed keeps the host's.
//!
//! The work is split into [`plan`] (reads, pure, reports conflicts: staging calls it
//! first) and [`apply`] (writes `dest` atomically); [`diff`] lists the host's changes for
//! `cfsctl etc diff`.

mod apply;
mod compare;
mod conflict;
mod diff;
mod image;
mod path;
mod plan;
mod upper;

#[cfg(test)]
mod tests;

pub use apply::{Report, apply};
pub use compare::{Difference, Meta};
pub use conflict::{
    Conflict, ConflictError, ConflictKind, ConflictPolicy, EntryType, UnknownPolicy,
};
pub use diff::{Change, ChangeKind, diff};
pub use image::ImageEtc;
pub use path::EtcPath;
pub use plan::{Action, Op, Plan, When, plan};
pub use upper::MAX_UPPER_DEPTH;
