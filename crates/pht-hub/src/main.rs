//! `pht-hub`: the hub service binary. Parses arguments, reads the config, opens the hub and
//! serves it until interrupted. All behaviour lives in the `pht_hub` library.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use pht_api::v1::{RegisterResearcherRequest, RegisterStationRequest};
use pht_api::{Credentials, HubClient, HubClientError};
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
        /// How log lines look: `text` for people, `json` (one object a line) for a log
        /// collector. Log lines carry request routes, statuses and ids, never a body.
        #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "PHT_LOG_FORMAT")]
        log_format: LogFormat,
        /// The same as `--log-format json` (kept for existing units).
        #[arg(long, hide = true)]
        json_logs: bool,
    },
    /// Check a configuration file and exit.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Register and list the stations and researchers of a running hub, with its admin token.
    ///
    /// The hub's address (`listen`) and admin token are read from its configuration, so on the
    /// hub's own machine `pht-hub admin --config hub.yaml add-station …` is all it takes.
    #[command(after_help = ADMIN_AFTER_HELP)]
    Admin {
        /// The hub's YAML configuration file.
        #[arg(long, env = "PHT_HUB_CONFIG")]
        config: PathBuf,
        /// The hub's URL, when it is not `http://<listen>` (behind a TLS proxy, say).
        #[arg(long, global = true)]
        url: Option<String>,
        /// Print JSON on stdout.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        action: AdminAction,
    },
}

const ADMIN_AFTER_HELP: &str = "\
Examples:
  pht-hub admin --config hub.yaml add-station umc --public-key umc/station.pub --age-recipient umc/station.age.pub
  pht-hub admin --config hub.yaml add-researcher alice --public-key alice.pub
  pht-hub admin --config hub.yaml stations --json

A station's keys come from `pht-station keys init` (station.pub, station.age.pub); a researcher's
from `pht key generate` (NAME.pub). Registering an id again with other keys is refused.

Exit codes: 0 done · 1 the hub refused (an id taken, a bad key) · 2 usage · 3 invalid input (a
configuration or key file) · 4 the hub could not be reached.";

#[derive(Debug, Subcommand)]
enum AdminAction {
    /// Register a station: the key it signs its requests with, and the age recipient the previous
    /// stop of a sequential route encrypts state to.
    AddStation {
        id: String,
        /// The station's station.pub (PEM).
        #[arg(long)]
        public_key: PathBuf,
        /// The station's station.age.pub, or the `age1…` recipient itself.
        #[arg(long)]
        age_recipient: String,
    },
    /// Register a researcher and the key they sign requests and job envelopes with.
    AddResearcher {
        id: String,
        /// The researcher's NAME.pub (PEM).
        #[arg(long)]
        public_key: PathBuf,
    },
    /// List the registered stations.
    Stations,
    /// List the registered researchers.
    Researchers,
}

/// A failed admin command: what to print, and the exit code.
struct AdminFailure {
    code: u8,
    message: String,
}

fn admin_client(config: &HubConfig, url: Option<String>) -> Result<HubClient, AdminFailure> {
    let url = url.unwrap_or_else(|| {
        // A hub listening on every address is reached on loopback from its own machine.
        let mut address = config.listen;
        if address.ip().is_unspecified() {
            address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{address}")
    });
    HubClient::new(
        &url,
        Credentials::Admin {
            token: config.admin_token.expose().to_string(),
        },
    )
    .map_err(|error| AdminFailure {
        code: 3,
        message: error.to_string(),
    })
}

fn read_public_key(path: &std::path::Path) -> Result<(String, String), AdminFailure> {
    let pem = std::fs::read_to_string(path).map_err(|error| AdminFailure {
        code: 3,
        message: format!("cannot read {}: {error}", path.display()),
    })?;
    let key = pht_core::PublicKey::from_pem(&pem).map_err(|error| AdminFailure {
        code: 3,
        message: format!("{}: {error}", path.display()),
    })?;
    Ok((pem, key.key_id()))
}

fn hub_failure(error: HubClientError) -> AdminFailure {
    let code = match &error {
        HubClientError::Transport { .. } => 4,
        _ => 1,
    };
    AdminFailure {
        code,
        message: error.to_string(),
    }
}

async fn admin(
    config: &HubConfig,
    url: Option<String>,
    json: bool,
    action: AdminAction,
) -> Result<(), AdminFailure> {
    let client = admin_client(config, url)?;
    match action {
        AdminAction::AddStation {
            id,
            public_key,
            age_recipient,
        } => {
            let (public_key_pem, key_id) = read_public_key(&public_key)?;
            let (text, origin) = if age_recipient.starts_with("age1") {
                (age_recipient.clone(), "--age-recipient".to_string())
            } else {
                let text =
                    std::fs::read_to_string(&age_recipient).map_err(|error| AdminFailure {
                        code: 3,
                        message: format!("cannot read the age recipient {age_recipient}: {error}"),
                    })?;
                (text, format!("--age-recipient {age_recipient}"))
            };
            let age_recipient = pht_core::recipient::parse_recipient(&text)
                .map_err(|error| AdminFailure {
                    code: 3,
                    message: format!("{origin}: {error}; give the station's station.age.pub"),
                })?
                .to_string();
            let record = client
                .register_station(&RegisterStationRequest {
                    id,
                    public_key_pem,
                    age_recipient,
                })
                .await
                .map_err(hub_failure)?;
            let text = format!("registered station {} (key id {key_id})", record.id);
            print(json, &record, text);
        }
        AdminAction::AddResearcher { id, public_key } => {
            let (public_key_pem, key_id) = read_public_key(&public_key)?;
            let record = client
                .register_researcher(&RegisterResearcherRequest { id, public_key_pem })
                .await
                .map_err(hub_failure)?;
            let text = format!("registered researcher {} (key id {key_id})", record.id);
            print(json, &record, text);
        }
        AdminAction::Stations => {
            let stations = client.list_stations().await.map_err(hub_failure)?;
            let text = if stations.is_empty() {
                "no stations registered".to_string()
            } else {
                stations
                    .iter()
                    .map(|station| {
                        format!(
                            "{}  registered {}  {}",
                            station.id,
                            station.registered_at.format("%Y-%m-%d %H:%M:%S"),
                            station.age_recipient
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            print(json, &stations, text);
        }
        AdminAction::Researchers => {
            let researchers = client.list_researchers().await.map_err(hub_failure)?;
            let text = if researchers.is_empty() {
                "no researchers registered".to_string()
            } else {
                researchers
                    .iter()
                    .map(|researcher| {
                        format!(
                            "{}  registered {}",
                            researcher.id,
                            researcher.registered_at.format("%Y-%m-%d %H:%M:%S")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            print(json, &researchers, text);
        }
    }
    Ok(())
}

/// `value` as JSON with `--json`, otherwise `text`.
fn print<T: serde::Serialize>(json: bool, value: &T, text: String) {
    if json {
        match serde_json::to_string_pretty(value) {
            Ok(value_json) => println!("{value_json}"),
            Err(error) => eprintln!("error: cannot print JSON: {error}"),
        }
    } else {
        println!("{text}");
    }
}

/// How often lapsed leases are offered again and expired work is marked.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The `--log-format` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(json_logs: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json_logs {
        builder.json().flatten_event(true).init();
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
async fn main() -> std::process::ExitCode {
    let arguments = Arguments::parse();
    match run(arguments).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            // The README's exit codes: 3 for a configuration that cannot be used, 4 for what is
            // unavailable (the address taken, the database unreachable).
            let invalid = error
                .downcast_ref::<pht_hub::config::ConfigError>()
                .is_some();
            std::process::ExitCode::from(if invalid { 3 } else { 4 })
        }
    }
}

async fn run(arguments: Arguments) -> anyhow::Result<std::process::ExitCode> {
    match arguments.command {
        Command::Admin {
            config,
            url,
            json,
            action,
        } => {
            let config = match HubConfig::load(&config) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("error: {error}");
                    return Ok(std::process::ExitCode::from(3));
                }
            };
            match admin(&config, url, json, action).await {
                Ok(()) => Ok(std::process::ExitCode::SUCCESS),
                Err(failure) => {
                    eprintln!("error: {}", failure.message);
                    Ok(std::process::ExitCode::from(failure.code))
                }
            }
        }
        Command::Openapi => {
            print!("{}", pht_hub::routes::OPENAPI_DOCUMENT);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => {
            HubConfig::load(&config)?;
            println!("{}: ok", config.display());
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Serve {
            config,
            log_format,
            json_logs,
        } => {
            init_logging(json_logs || log_format == LogFormat::Json);
            let config = HubConfig::load(&config)?;
            let hub = Hub::open(HubOptions::from(&config), Arc::new(SystemClock))
                .await
                .context("cannot open the hub's state")?;
            let sweeper = hub.spawn_sweeper(SWEEP_INTERVAL);
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            let limits = pht_hub::server::ServeLimits {
                header_read_timeout: config.header_read_timeout,
                max_connections: pht_hub::server::fit_connection_limit(config.max_connections),
                // A long-poll ends by itself within its maximum wait.
                shutdown_grace: config.long_poll_max_wait + Duration::from_secs(5),
            };
            tracing::info!(listen = %config.listen, store = %pht_hub::store::redact_url(&config.database_url), store_connections = config.store_connections, max_connections = limits.max_connections, "pht-hub serving");
            // On SIGTERM: /readyz turns 503 and waiting long-polls return at once, so their
            // stations poll again (through a load balancer, on another replica); requests in
            // progress finish.
            let draining = hub.clone();
            let shutdown = async move {
                shutdown_signal().await;
                tracing::info!("shutting down: ending long-polls, finishing requests in progress");
                draining.begin_shutdown();
            };
            pht_hub::server::serve(listener, hub.router(), limits, shutdown).await;
            sweeper.abort();
            hub.close().await;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}
