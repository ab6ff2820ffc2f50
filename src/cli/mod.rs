//! Command-line interface: parses arguments, calls the library, prints results. No logic of
//! its own beyond choosing defaults. Global options, exit codes and output rules: docs/cli.md.

mod deploy;
mod image;
mod install;
mod maint;
mod oci;
mod output;
mod repo;
mod signature;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use output::note;

/// Default repository location on a host (ARCHITECTURE.md, "On-disk state of a host").
pub const DEFAULT_REPO: &str = "/sysroot/composefs";

/// Environment variable naming the repository when `--repo` is not given.
pub const REPO_ENV: &str = "CFSCTL_REPO";

/// Exit status: the command did what was asked (also: its standard output was closed early).
pub const EXIT_OK: u8 = 0;
/// Exit status: the command failed; the message on standard error names what is at fault.
/// `fsck`: problems found; `health-check`: a check failed.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status: the command line was wrong (clap's own status for usage errors).
pub const EXIT_USAGE: u8 = 2;
pub use deploy::EXIT_NO_UPDATE;

/// Most threads `--threads` accepts. Hashing threads beyond the cores gain nothing, and an
/// absurd count would only fail (or abort) in the middle of the work when the system refuses
/// to create them.
pub const MAX_THREADS: usize = 1024;

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
    #[arg(long, value_name = "DIR", env = REPO_ENV, default_value = DEFAULT_REPO)]
    repo: PathBuf,
}

/// `--threads N`: 0 (all cores) up to [`MAX_THREADS`].
fn parse_threads(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= MAX_THREADS => Ok(n),
        _ => Err(format!(
            "'{s}' is not a thread count from 0 (all cores) to {MAX_THREADS}"
        )),
    }
}

/// The options accepted before or after any subcommand. Each subcommand that uses one defines
/// it itself (with its own help and default: `--repo` falls back to `$CFSCTL_REPO` only where
/// a repository is required); clap's global-argument propagation carries a value given
/// anywhere on the line to that definition.
fn global_args() -> [Arg; 2] {
    [
        Arg::new("repo")
            .long("repo")
            .value_name("DIR")
            .value_parser(clap::value_parser!(PathBuf))
            .help(format!(
                "Repository directory, for the commands that use one [default: ${REPO_ENV}, \
                 else {DEFAULT_REPO}]"
            )),
        Arg::new("json")
            .long("json")
            .action(ArgAction::SetTrue)
            .help("Print the result as JSON, for the commands that report one"),
    ]
}

/// The complete command-line definition, as parsed and as documented (man pages and shell
/// completions are generated from it: docs/cli.md).
///
/// A subcommand that does not define a global option gets a hidden copy of it, so that the
/// value still parses there (and is refused with a message by [`misplaced_global`]) while its
/// help and man page do not offer an option it ignores.
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    for arg in global_args() {
        cmd = cmd.arg(arg.global(true));
    }
    hide_unused_globals(&mut cmd);
    cmd
}

fn hide_unused_globals(cmd: &mut clap::Command) {
    for sub in cmd.get_subcommands_mut() {
        let mut s = std::mem::take(sub);
        for arg in global_args() {
            if s.get_arguments().all(|a| a.get_id() != arg.get_id()) {
                s = s.arg(arg.hide(true));
            }
        }
        hide_unused_globals(&mut s);
        *sub = s;
    }
}

/// A global option given on the command line to a subcommand that has no use for it:
/// `(option, "cfsctl dump")`.
fn misplaced_global(cmd: &clap::Command, matches: &ArgMatches) -> Option<(String, String)> {
    let (mut cmd, mut matches) = (cmd, matches);
    let mut path = vec![cmd.get_name().to_string()];
    while let Some((name, sub)) = matches.subcommand() {
        cmd = cmd.find_subcommand(name)?;
        matches = sub;
        path.push(name.to_string());
    }
    global_args().iter().find_map(|g| {
        let id = g.get_id().as_str();
        let ours = cmd.get_arguments().find(|a| a.get_id() == id)?;
        (ours.is_hide_set() && matches.value_source(id) == Some(ValueSource::CommandLine))
            .then(|| (format!("--{id}"), path.join(" ")))
    })
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

/// Entry point of the `cfsctl` binary. Exit codes: docs/cli.md.
pub fn main() -> ExitCode {
    let mut cmd = command();
    let matches = cmd.get_matches_mut();
    if let Some((option, command)) = misplaced_global(&cmd, &matches) {
        cmd.error(
            clap::error::ErrorKind::ArgumentConflict,
            format!("{option} does not apply to `{command}`"),
        )
        .exit();
    }
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut cmd).exit(),
    };
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
    match result.and_then(|code| output::flush().map(|()| code).map_err(Into::into)) {
        Ok(code) => code,
        Err(e) if output::is_closed_stdout(&e) => ExitCode::from(EXIT_OK),
        Err(e) => {
            note!("cfsctl: error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
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
