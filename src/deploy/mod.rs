//! The host: its deployments and their lifecycle. A deployment is a composefs image digest
//! plus a record on the physical root; its BLS entry on the ESP decides whether and when it
//! boots. This module owns the host's layout ([`layout`]) and every command that reads or
//! changes deployments: `install` (the first one), `upgrade` / `switch` (pull and stage),
//! `finalize` (at shutdown: `/etc` merge and the atomic boot-order change), `rollback`,
//! `pin`, `status`, `gc`/`fsck` of the host, `etc diff`, and the health check that boot
//! counting relies on. See docs/lifecycle.md.

pub mod config;
pub mod disk;
pub mod esp;
pub mod etc;
pub mod finalize;
pub mod health;
pub mod host;
pub mod install;
pub mod layout;
pub mod maint;
pub mod prune;
pub mod record;
pub mod rollback;
pub mod setup_conf;
pub mod stage;
pub mod status;
pub mod upgrade;

pub use host::{Host, HostOptions};

use crate::fsverity::Digest;

/// Serializes a digest as plain hex (JSON output).
fn hex<S: serde::Serializer>(d: &Digest, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_hex())
}

fn hex_opt<S: serde::Serializer>(d: &Option<Digest>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&d.to_hex()),
        None => s.serialize_none(),
    }
}

fn hex_list<S: serde::Serializer>(d: &[Digest], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(d.iter().map(Digest::to_hex))
}
