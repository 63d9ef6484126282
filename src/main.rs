//! `pgproxy`: command line entry point.

use clap::Parser;
use pgproxy::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// PostgreSQL wire-protocol middleware: pooling, sharding, replication.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Run with this configuration file.
    #[arg(long, value_name = "FILE", conflicts_with = "check_config")]
    config: Option<PathBuf>,
    /// Validate a configuration file, print every problem with its line, and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(path) = cli.check_config {
        return match Config::load(&path) {
            Ok(_) => {
                println!("{}: configuration is valid", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}", e.render(&path.display().to_string()));
                ExitCode::FAILURE
            }
        };
    }
    let Some(path) = cli.config else {
        eprintln!(
            "usage: pgproxy --config FILE   (or --check-config FILE); see pgproxy.toml.example"
        );
        return ExitCode::from(2);
    };
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.render(&path.display().to_string()));
            return ExitCode::FAILURE;
        }
    };
    pgproxy::telemetry::init();
    let mut rt = if config.general.worker_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    rt.enable_all();
    if config.general.worker_threads > 1 {
        rt.worker_threads(config.general.worker_threads);
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(pgproxy::server::run(config, path));
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "pgproxy stopped");
            eprintln!("pgproxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// mimalloc: per-query buffers are allocated and freed at a high rate; glibc malloc returned
/// memory to the kernel (brk) every few transactions under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
