//! `rampart`: the server, its admin commands, the client CLI, the demo and the
//! benchmarks, in one binary. `main` stays thin: it parses arguments, runs the
//! command and turns its outcome into an exit code.

mod account_cmd;
mod admin_cmd;
mod audit_cmd;
mod bench;
mod bench_audit;
mod bench_dlp;
mod bench_files;
mod bench_handshakes;
mod cli;
mod demo;
mod dlp_cmd;
mod files_cmd;
mod messages_cmd;
mod server_cmd;

use clap::Parser as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (e.g. `rampart inbox | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
