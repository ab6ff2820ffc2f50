//! Command-line interface: parses arguments and prints; all logic lives in the library.

/// Entry point of the `cfsctl` binary.
pub fn main() -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}
