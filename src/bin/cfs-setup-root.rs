//! `cfs-setup-root`: mounts the composefs image named on the kernel command line as the new
//! root (run in the initramfs by `cfs-setup-root.service`). See `cfsctl::setup_root`.
//!
//! Arguments are parsed by hand: this binary lives in every initramfs, so it stays small.

use std::process::ExitCode;

use anyhow::{Context, Result};
use cfsctl::setup_root::{self, Config, Options, cmdline, config};

const USAGE: &str = "usage: cfs-setup-root [--cmdline STR] [--config FILE] [--sysroot DIR] [--target DIR] [--enable-verity]

Mounts the composefs image named by composefs=<hex> / composefs.digest=v1-sha256-12:<hex> on the
kernel command line (or --cmdline) from <sysroot>/composefs on top of <sysroot> (or --target),
refusing an image whose fs-verity digest differs from the argument or that has no fs-verity.";

struct Args {
    cmdline: Option<String>,
    config: String,
    options: Options,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        cmdline: None,
        config: config::DEFAULT_PATH.to_string(),
        options: Options::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--cmdline" => args.cmdline = Some(value("--cmdline")?),
            "--config" => args.config = value("--config")?,
            "--sysroot" => args.options.sysroot = value("--sysroot")?.into(),
            "--target" => args.options.target = Some(value("--target")?.into()),
            "--enable-verity" => args.options.enable_verity = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument '{other}'\n{USAGE}"),
        }
    }
    Ok(args)
}

fn run() -> Result<()> {
    let args = parse_args()?;
    let line = match args.cmdline {
        Some(c) => c,
        None => std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?,
    };
    let Some(image) = cmdline::parse(&line)? else {
        eprintln!(
            "cfs-setup-root: no composefs= argument on the kernel command line; nothing to do"
        );
        return Ok(());
    };
    let config = Config::load(std::path::Path::new(&args.config))?;
    let start = std::time::Instant::now();
    let out = setup_root::setup_root(&image, &config, &args.options)?;
    eprintln!(
        "cfs-setup-root: mounted composefs image {} on {} (verity {}; expected digest {}, measured digest {}; {} ms{}{})",
        out.digest,
        out.target.display(),
        match out.verity {
            cfsctl::mount::VerityMode::Require => "require",
            cfsctl::mount::VerityMode::Off => "OFF",
        },
        out.digest,
        out.measured,
        start.elapsed().as_millis(),
        if out.verity_enabled > 0 {
            format!("; enabled fs-verity on {} objects", out.verity_enabled)
        } else {
            String::new()
        },
        if out.var_seeded { "; seeded /var" } else { "" },
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The console is what a person sees when the boot stops: make it unmissable.
            eprintln!("\ncfs-setup-root: REFUSING TO BOOT: {e:#}\n");
            ExitCode::FAILURE
        }
    }
}
