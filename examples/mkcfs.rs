//! Development aid: `mkcfs [--strict] [--min-version=N] [--max-version=N] DUMP IMAGE`,
//! the Rust writer with mkcomposefs's `--from-file` interface, for comparing with the C tool.

use cfsctl::dumpfile::{ParseMode, parse_reader};
use cfsctl::erofs::writer::{WriteOptions, write_image};

fn main() -> anyhow::Result<()> {
    let mut opts = WriteOptions::default();
    let mut mode = ParseMode::Lenient;
    let mut files = Vec::new();
    for arg in std::env::args().skip(1) {
        if let Some(v) = arg.strip_prefix("--min-version=") {
            opts.min_version = v.parse()?;
        } else if let Some(v) = arg.strip_prefix("--max-version=") {
            opts.max_version = v.parse()?;
        } else if arg == "--strict" {
            mode = ParseMode::Strict;
        } else {
            files.push(arg);
        }
    }
    let [input, output] = &files[..] else {
        anyhow::bail!("usage: mkcfs [--strict] [--min-version=N] [--max-version=N] DUMP IMAGE");
    };
    let tree = if input == "-" {
        parse_reader(std::io::stdin().lock(), mode)?
    } else {
        parse_reader(std::io::BufReader::new(std::fs::File::open(input)?), mode)?
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(output)?);
    write_image(&tree, &opts, &mut out)?;
    Ok(())
}
