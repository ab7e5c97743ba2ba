//! # durable-cli
//!
//! The `durable` binary: parses the command line ([`args`]) and runs the
//! verb ([`commands`]). Messages and shared steps of the verbs are in
//! [`common`] and [`driving`], what people see in [`output`], the exit
//! codes in [`exit`], `durable check`'s trace files in [`trace`]. The work
//! is in the libraries: `durable` (the runtime), `durable-store`,
//! `durable-api-model`, and `durable-server` behind the `serve` feature.

mod args;
mod commands;
mod common;
mod driving;
mod exit;
mod otlp;
mod output;
mod trace;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with success, errors to stderr.
            let _ = e.print();
            return if e.use_stderr() {
                exit::ExitCode::Usage.into()
            } else {
                exit::ExitCode::Success.into()
            };
        }
    };
    if let Err(e) = durable::compile_cache::max_bytes_from_env() {
        eprintln!("durable: {e}");
        return exit::ExitCode::Usage.into();
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
            return exit::ExitCode::Failure.into();
        }
    };
    let code = runtime.block_on(async {
        let code = commands::main(cli).await;
        // Spans of what the command drove go out before it exits.
        otlp::finish().await;
        code
    });
    // Everything the command did is committed by now. A step's file call
    // stuck in the kernel (an open of a FIFO nobody reads) still holds a
    // thread of the blocking pool, which dropping the runtime would wait for
    // without end.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code.into()
}
