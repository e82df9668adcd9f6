//! The `josefine` binary: parse configuration, set up logging, start the broker, wait for
//! SIGTERM/SIGINT, shut down cleanly (close every partition log). `josefine api-table` and
//! `josefine cluster-status --raft ADDR` print and exit without starting anything.
//! Logs go to stderr: `--log-format text` (ANSI colours only on a terminal without NO_COLOR)
//! or `json` (one object per line: UTC timestamp, level, target, fields with the message).

use std::io::IsTerminal;

use clap::Parser;
use josefine::config::{Cli, Config, LogFormat};
use tracing::info;
use tracing_subscriber::EnvFilter;

/// Installs the global logger: `filter` (`--log`, already validated) beats RUST_LOG, which
/// beats `info`.
fn init_logging(format: LogFormat, filter: Option<&str>) {
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colour).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if cli.command.is_some() && !matches!(cli.command, Some(josefine::config::Command::Serve(_))) {
        init_logging(LogFormat::Text, None);
    }
    if matches!(cli.command, Some(josefine::config::Command::ApiTable)) {
        print!("{}", josefine::api_versions::readme_table());
        return std::process::ExitCode::SUCCESS;
    }
    if let Some(josefine::config::Command::ClusterStatus { raft }) = &cli.command {
        return cluster_status(raft);
    }
    let config = match Config::resolve(cli.serve_args()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("josefine: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(config.log_format, config.log_filter.as_deref());
    // Before any port is bound: a data directory of another node, voter set or cluster.
    if let Err(e) = josefine::metadata::identity::check_and_record(&config) {
        eprintln!("josefine: configuration error: {e}");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("josefine: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("josefine: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `josefine cluster-status --raft ADDR`: prints the node's status document; one line and exit
/// code 1 when it cannot be fetched.
fn cluster_status(raft: &str) -> std::process::ExitCode {
    let fetched = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(josefine::control::fetch_status(raft))
                .map_err(|e| e.to_string())
        });
    match fetched {
        Ok(document) => {
            print!("{document}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("josefine cluster-status: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let running = josefine::server::start(config).await?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = sigterm.recv() => info!("SIGTERM received; shutting down"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received; shutting down"),
    }
    running.shutdown().await;
    info!("josefine stopped cleanly");
    Ok(())
}
