//! Command-line interface: parses arguments, calls the library, prints results. No logic of
//! its own beyond choosing defaults.

mod deploy;
mod image;
mod install;
mod maint;
mod oci;
mod repo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Default repository location on a host (ARCHITECTURE.md, "On-disk state of a host").
pub const DEFAULT_REPO: &str = "/sysroot/composefs";

/// cfsctl: composefs images, repositories and mounts.
#[derive(Debug, Parser)]
#[command(name = "cfsctl", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (repeat for debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// The repository to operate on.
#[derive(Debug, clap::Args)]
pub struct RepoArg {
    /// Repository directory.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_REPO)]
    repo: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a composefs image of a directory or dump file (mkcomposefs-compatible).
    CreateImage(image::CreateImage),
    /// Print the fs-verity digest of the image a source would give, writing nothing.
    ComputeId(image::ComputeId),
    /// Print a composefs image as a composefs-dump(5) file.
    Dump(image::Dump),
    /// Create an empty repository.
    Init(repo::Init),
    /// Mount an image (a file, or a digest or ref in the repository) read-only.
    Mount(repo::Mount),
    /// Remove objects no ref reaches, and stale temporary files.
    Gc(maint::Gc),
    /// Check every object, image, ref and link; exit status 1 on any problem.
    Fsck(maint::Fsck),
    /// OCI container images: pull, list, inspect, mount, compute-id, seal.
    Oci(oci::Oci),
    /// Install a bootable image onto a root filesystem and ESP, or as a raw disk image.
    Install(install::Install),
    /// Pull the booted deployment's image again and stage it if it changed (exit 77: none).
    Upgrade(deploy::Upgrade),
    /// Stage the image of another reference, and follow it from now on (exit 77: no change).
    Switch(deploy::Switch),
    /// Make the previous deployment the next boot (again: undo).
    Rollback(deploy::Rollback),
    /// Show the deployments, which boots next, boot counting and host facts.
    Status(deploy::StatusCmd),
    /// Keep a deployment whatever the `keep` setting says.
    Pin(deploy::Pin),
    /// Let pruning remove a pinned deployment again.
    Unpin(deploy::Pin),
    /// Apply the staged deployment: /etc merge and boot order (run at shutdown).
    Finalize(deploy::Finalize),
    /// /etc of the host against its image.
    Etc(deploy::Etc),
    /// Check that the booted system is the verified image (run before boot-complete.target).
    HealthCheck(deploy::HealthCheck),
}

/// Entry point of the `cfsctl` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let done = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::CreateImage(c) => done(c.run()),
        Command::ComputeId(c) => done(c.run()),
        Command::Dump(c) => done(c.run()),
        Command::Init(c) => done(c.run()),
        Command::Mount(c) => done(c.run()),
        Command::Gc(c) => done(c.run()),
        Command::Fsck(c) => done(c.run()),
        Command::Oci(c) => done(c.run()),
        Command::Install(c) => done(c.run()),
        Command::Upgrade(c) => c.run(),
        Command::Switch(c) => c.run(),
        Command::Rollback(c) => c.run(),
        Command::Status(c) => c.run(),
        Command::Pin(c) => c.run(true),
        Command::Unpin(c) => c.run(false),
        Command::Finalize(c) => c.run(),
        Command::Etc(c) => c.run(),
        Command::HealthCheck(c) => c.run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cfsctl: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_target(false)
        .init();
}
