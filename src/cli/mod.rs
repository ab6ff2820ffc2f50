//! Command-line interface: parses arguments, calls the library, prints results. No logic of
//! its own beyond choosing defaults.

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
}

/// Entry point of the `cfsctl` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::CreateImage(c) => c.run(),
        Command::ComputeId(c) => c.run(),
        Command::Dump(c) => c.run(),
        Command::Init(c) => c.run(),
        Command::Mount(c) => c.run(),
        Command::Gc(c) => c.run(),
        Command::Fsck(c) => c.run(),
        Command::Oci(c) => c.run(),
        Command::Install(c) => c.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
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
