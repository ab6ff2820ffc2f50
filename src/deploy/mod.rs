//! The host: its deployments and their lifecycle (docs/lifecycle.md).

pub mod etc;
