//! Options naming the signature policy and the signature lookaside configuration, shared by
//! every command that pulls (`oci pull`, `oci compute-id`, `oci seal`, `install`, `upgrade`,
//! `switch`). The names are podman's (`--signature-policy`) and skopeo's (`--registries.d`).

use std::path::PathBuf;

use clap::Args;

use crate::oci::policy::PolicyOptions;

/// `--signature-policy`, `--registries.d`.
#[derive(Debug, Clone, Args)]
pub(crate) struct SignatureArgs {
    /// The containers-policy.json(5) file the image must satisfy (default:
    /// ~/.config/containers/policy.json if it exists, else /etc/containers/policy.json).
    #[arg(long, value_name = "FILE")]
    signature_policy: Option<PathBuf>,
    /// The containers-registries.d(5) directory saying where signatures are (default:
    /// ~/.config/containers/registries.d if it exists, else /etc/containers/registries.d).
    #[arg(long = "registries.d", value_name = "DIR")]
    registries_d: Option<PathBuf>,
}

impl SignatureArgs {
    pub(crate) fn options(&self) -> PolicyOptions {
        PolicyOptions {
            policy: self.signature_policy.clone(),
            registries_d: self.registries_d.clone(),
        }
    }
}
