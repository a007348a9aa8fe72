fn main() -> std::process::ExitCode {
    djauth::cli::main()
}
