fn main() -> std::process::ExitCode {
    cfsctl::cli::main()
}
