//! `cfsctl`: composefs images, repositories, OCI images and the host lifecycle; the commands are
//! in `cfsctl::cli` (docs/cli.md).

fn main() -> std::process::ExitCode {
    cfsctl::cli::main()
}
