//! The `durable` binary: parses the command line and hands over to [`cli`].

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with success, errors to stderr.
            let _ = e.print();
            return if e.use_stderr() {
                cli::ExitCode::Usage.into()
            } else {
                cli::ExitCode::Success.into()
            };
        }
    };
    if let Err(e) = durable::compile_cache::max_bytes_from_env() {
        eprintln!("durable: {e}");
        return cli::ExitCode::Usage.into();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("durable: cannot start the async runtime: {e}");
            return cli::ExitCode::Failure.into();
        }
    };
    runtime.block_on(cli::main(cli)).into()
}
