//! `pht-hub`: the hub service binary. Parses arguments, reads the config, opens the hub and
//! serves it until interrupted. All behaviour lives in the `pht_hub` library.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pht_hub::clock::SystemClock;
use pht_hub::config::HubConfig;
use pht_hub::{Hub, HubOptions};

#[derive(Debug, Parser)]
#[command(
    name = "pht-hub",
    about = "Personal Health Train hub: routes trains between stations"
)]
struct Arguments {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the hub API.
    Serve {
        /// The hub's YAML configuration file.
        #[arg(long, env = "PHT_HUB_CONFIG")]
        config: PathBuf,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
    },
    /// Check a configuration file and exit.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the OpenAPI document.
    Openapi,
}

/// How often lapsed leases are offered again and expired work is marked.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

fn init_logging(json_logs: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments = Arguments::parse();
    match arguments.command {
        Command::Openapi => {
            print!("{}", pht_hub::routes::OPENAPI_DOCUMENT);
            Ok(())
        }
        Command::CheckConfig { config } => {
            HubConfig::load(&config)?;
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::Serve { config, json_logs } => {
            init_logging(json_logs);
            let config = HubConfig::load(&config)?;
            let hub = Hub::open(HubOptions::from(&config), Arc::new(SystemClock))
                .await
                .context("cannot open the hub's state")?;
            let sweeper = hub.spawn_sweeper(SWEEP_INTERVAL);
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            tracing::info!(listen = %config.listen, database = %config.database_url, "pht-hub serving");
            axum::serve(listener, hub.router())
                .with_graceful_shutdown(shutdown_signal())
                .await
                .context("the server failed")?;
            sweeper.abort();
            hub.close().await;
            Ok(())
        }
    }
}
