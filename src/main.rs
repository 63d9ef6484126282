//! `pgproxy`: command line entry point.

use clap::{Parser, Subcommand};
use pgproxy::config::Config;
use pgproxy::replication::verify::verify_all;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// PostgreSQL wire-protocol middleware: pooling, sharding, replication.
#[derive(Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Run with this configuration file.
    #[arg(long, value_name = "FILE", conflicts_with = "check_config")]
    config: Option<PathBuf>,
    /// Validate a configuration file, print every problem with its line, and exit.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Compare the nodes of each shard (tables, row counts, checksums, sequences). Exit code 0:
    /// identical, 1: something differs, 2: could not compare.
    Verify {
        /// The pgproxy configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Only this shard.
        #[arg(long, value_name = "NAME")]
        shard: Option<String>,
        /// Only this database (default: every configured database).
        #[arg(long, value_name = "DB")]
        database: Option<String>,
    },
    /// Print which shard(s) and nodes a statement would go to, and why.
    Route {
        /// The pgproxy configuration file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The SQL statement(s).
        sql: String,
        /// Bind parameter values for $1, $2, … (text form).
        #[arg(long = "param", value_name = "VALUE")]
        params: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Route {
        config,
        sql,
        params,
    }) = &cli.command
    {
        return route(config, sql, params);
    }
    if let Some(Command::Verify {
        config,
        shard,
        database,
    }) = cli.command
    {
        return verify(&config, shard.as_deref(), database.as_deref());
    }
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

/// `pgproxy route`: prints the route of a statement; exit 1 if it would be refused.
fn route(path: &Path, sql: &str, params: &[String]) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.render(&path.display().to_string()));
            return ExitCode::from(2);
        }
    };
    let map = match pgproxy::shard::ShardMap::from_config(&config) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("pgproxy route: {e}");
            return ExitCode::from(2);
        }
    };
    let lines = pgproxy::router::route::explain(sql, &map, &config, params);
    let refused = lines.first().is_some_and(|l| l.starts_with("refused"));
    for l in lines {
        println!("{l}");
    }
    if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `pgproxy verify`: prints each shard's report; exit 2 on any trouble, else 1 if anything differs.
fn verify(path: &Path, shard: Option<&str>, database: Option<&str>) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}", e.render(&path.display().to_string()));
            return ExitCode::from(2);
        }
    };
    pgproxy::telemetry::init();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let reports = match rt.block_on(verify_all(&config, shard, database)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pgproxy verify: {e}");
            return ExitCode::from(2);
        }
    };
    let (mut trouble, mut differs) = (false, false);
    for report in reports {
        match report {
            Ok(r) => {
                println!("{r}");
                trouble |= r.has_errors();
                differs |= !r.is_identical();
            }
            Err(e) => {
                eprintln!("pgproxy verify: {e}");
                trouble = true;
            }
        }
    }
    ExitCode::from(if trouble { 2 } else { u8::from(differs) })
}

/// mimalloc: per-query buffers are allocated and freed at a high rate; glibc malloc returned
/// memory to the kernel (brk) every few transactions under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
