//! `pht-station`: the station operator's daemon and commands.
//!
//! Glue only: arguments are parsed here, and the pipeline, state and audit log live in the
//! library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pht_core::ImageReference;
use pht_station::audit::AuditLog;
use pht_station::config::OutputStorage;
use pht_station::{
    DockerEngine, GivenParameters, RunRecord, RunStatus, Station, StationConfig, StationError,
    Submission,
};
use serde::Serialize;

const AFTER_HELP: &str = "\
Exit codes: 0 success (a run succeeded) · 1 refused or rejected · 2 usage error ·
3 invalid configuration, policy or input · 4 unavailable (Docker or a registry could not be
reached, or the state directory has no room for the run) · 5 the train ran and failed (non-zero exit, killed at a limit) · 10 awaiting approval.

Running a train by hand:
  pht-station --config station.yaml exec 127.0.0.1:5000/trains/cohort-stats@sha256:… --param group_by=sex
  pht-station --config station.yaml runs                 # what ran, what waits for approval
  pht-station --config station.yaml approve run-…        # or: reject run-… --reason \"…\"
  pht-station --config station.yaml audit verify         # detects any edited, deleted or moved entry
  pht-station --config station.yaml doctor               # Docker, registries, hub, clock, keys, disk";

/// A Personal Health Train station: verifies trains against your policy, runs them sandboxed
/// beside your data, and records every step in a tamper-evident audit log.
#[derive(Debug, Parser)]
#[command(name = "pht-station", version, after_help = AFTER_HELP, propagate_version = true)]
struct Cli {
    /// The station configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "PHT_STATION_CONFIG",
        default_value = "station.yaml"
    )]
    config: PathBuf,
    /// Print results as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Who is operating (recorded in the audit log with approvals and rejections).
    #[arg(long, global = true, env = "PHT_OPERATOR")]
    operator: Option<String>,
    /// How log lines on stderr look: `text` for people, `json` (one object a line) for a log
    /// collector. Log lines never carry data values. The level comes from PHT_LOG (default
    /// `warn`; `pht-station run` logs at `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PHT_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The daemon: long-poll the hub (outbound only), run each job's stop through the pipeline,
    /// and deliver sealed results. Stops cleanly on SIGTERM or Ctrl-C after runs in progress.
    /// Serves the operator console too when the configuration has a `console:` section.
    Run,
    /// Serve only the operator console (a station without a hub, or beside a daemon that
    /// serves none): approvals, output review, runs and the audit log in a browser. Listens
    /// where `console.listen` says (default 127.0.0.1:8470; `unix:/path` for a socket); TLS
    /// with `console.tls`. Operators sign in as added by `pht-station operators add`.
    ///
    /// Example: pht-station --config station.yaml console --listen 127.0.0.1:8470
    Console {
        /// Listen here instead of `console.listen` (ADDRESS:PORT, or unix:/path).
        #[arg(long, value_name = "ADDRESS")]
        listen: Option<String>,
    },
    /// Run the whole pipeline for one train now: verify → policy → approval → run → collect.
    Exec {
        /// The train, by digest: REGISTRY/REPOSITORY@sha256:…
        reference: String,
        /// A parameter for /input/params.json, NAME=VALUE (repeatable; typed as train.yaml declares).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// The researcher's age recipient (`age1…`): released results are sealed for it.
        #[arg(long, value_name = "AGE_RECIPIENT")]
        recipient: Option<String>,
    },
    /// Approve a run that awaits approval, and carry it out (verification and policy run again).
    Approve {
        run_id: String,
        /// Why (recorded in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject a run that awaits approval.
    Reject {
        run_id: String,
        /// Why (required; recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// List runs, oldest first.
    Runs,
    /// Show one run record.
    Show { run_id: String },
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Review what a run wrote: the check report, and releasing or blocking withheld outputs.
    #[command(subcommand)]
    Outputs(OutputsCommand),
    /// Check the configuration, the policy and the keys it names, and report what is wrong.
    CheckConfig,
    /// Everything check-config checks, and what only a live look tells: Docker and its API
    /// version, the sandbox runtime, each registry, the hub (and does it know this station's
    /// key), the clock against the hub's, key file permissions, free space. Each failure says
    /// what to do. Exit 0 only when every check passes, 1 when one fails.
    Doctor,
    /// The station's own keys (provenance signing, and the age identity for handed-over state).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The operators who may sign in to the console: approvers approve runs, reviewers release
    /// and block outputs, admins do both and override failed checks. Passwords are stored as
    /// argon2id hashes in operators.json in the state directory (mode 0600).
    #[command(subcommand)]
    Operators(OperatorsCommand),
    /// Remove this station's spare output slots: the paused holder containers and empty tmpfs
    /// volumes kept ready so the next run starts sooner (`docker.warm_output_slots`). A stopping
    /// daemon removes its own; `exec` leaves one for the next `exec`.
    ///
    /// With --leftovers, also remove the containers, volumes and /output mounts of runs a
    /// crashed station process left behind (runs no live station process is carrying out).
    Cleanup {
        #[arg(long)]
        leftovers: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create station.key, station.pub, station.age and station.age.pub in the key directory.
    /// Give station.pub to researchers: it verifies the provenance of your results. The key is
    /// encrypted when PHT_STATION_KEY_PASSWORD is set.
    Init,
}

#[derive(Debug, Subcommand)]
enum OperatorsCommand {
    /// Add an operator; the password is prompted twice (or read from standard input with
    /// --password-stdin, for scripts). At least 12 characters.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: pht_station::operators::Role,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List operators and their roles (never their password hashes).
    List,
    /// Remove an operator.
    Remove { name: String },
    /// Set a new password for an operator.
    Passwd {
        name: String,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// A new password: prompted twice without echo, or the first line of standard input.
fn new_password(
    name: &str,
    from_stdin: bool,
) -> Result<String, pht_station::operators::OperatorError> {
    use pht_station::operators::{check_new_password, OperatorError};
    let failed = |error: std::io::Error| OperatorError::Hash {
        reason: format!("cannot read the password: {error}"),
    };
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(failed)?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        check_new_password(&password, None)?;
        return Ok(password);
    }
    let password = rpassword::prompt_password(format!("password for {name}: ")).map_err(failed)?;
    check_new_password(&password, None)?;
    let again = rpassword::prompt_password("the same password again: ").map_err(failed)?;
    check_new_password(&password, Some(&again))?;
    Ok(password)
}

#[derive(Debug, Subcommand)]
enum OutputsCommand {
    /// Print the output-check report of a run (positions of what was flagged, never the values).
    Show { run_id: String },
    /// Release withheld outputs (or override blocked ones) and seal them for the researcher.
    Release {
        run_id: String,
        /// Why (required; recorded in the audit log and the provenance).
        #[arg(long)]
        reason: String,
    },
    /// Block withheld outputs: they never leave the station.
    Block {
        run_id: String,
        /// Why (required; recorded in the audit log).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the hash chain across every file: finds any edited, deleted or reordered entry
    /// (exit 1 if broken). With --hub or --checkpoints, also against checkpoints someone else
    /// witnessed, which a log rewritten whole and consistently no longer matches.
    Verify {
        /// Also compare with the checkpoints the hub witnessed for this station.
        #[arg(long)]
        hub: bool,
        /// Also compare with the checkpoints in FILE: signed checkpoints (as the hub serves
        /// them) or `{seq, head_hash, time}` records from sealed provenance (`audit_checkpoint`).
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
    },
    /// Print audit entries.
    Show {
        /// Only the entries of this run.
        #[arg(long)]
        run: Option<String>,
    },
    /// Write a signed extract of the entries of some days for an auditor. It verifies on its
    /// own: `pht-station audit verify-export FILE --key station.pub`.
    Export {
        /// First day included (UTC), e.g. 2026-01-01.
        #[arg(long)]
        since: chrono::NaiveDate,
        /// Last day included (UTC), e.g. 2026-12-31.
        #[arg(long)]
        until: chrono::NaiveDate,
        /// Where to write the extract.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an extract written by `audit export` (needs no station configuration): the
    /// station's signature, the hash chain of its entries, and that not one byte was changed.
    /// Exit 1 if it does not verify.
    VerifyExport {
        /// The extract.
        file: PathBuf,
        /// The station's public key (`station.pub`) to require as signer. Without it, the key
        /// the extract names is used and its id printed for you to compare.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Also compare the extract's entries with witnessed checkpoints in FILE (as for
        /// `audit verify --checkpoints`); signed ones are checked with the extract's key.
        #[arg(long, value_name = "FILE")]
        checkpoints: Option<PathBuf>,
    },
}

struct Failure {
    code: u8,
    message: String,
}

impl From<StationError> for Failure {
    fn from(error: StationError) -> Failure {
        let code = match &error {
            // No room in the state directory: the operator frees space, nothing is wrong with
            // the input.
            error if error.is_disk_full() => 4,
            // Docker, a registry or the hub could not be reached, or there is no room to run.
            StationError::Verify(_)
            | StationError::Pull(_)
            | StationError::Run(_)
            | StationError::Space(_) => 4,
            // The configuration, policy or keys; the operator's input; the station's own files.
            StationError::Config(_)
            | StationError::Trust(_)
            | StationError::Keys(_)
            | StationError::Approve(_)
            | StationError::Release(_)
            | StationError::Audit(_)
            | StationError::Store(_)
            | StationError::StateFile(_)
            | StationError::Seal(_)
            | StationError::Deliver(_) => 3,
        };
        Failure {
            code,
            message: error.to_string(),
        }
    }
}

/// A pull's progress as a bar on stderr, shown only once there is something to fetch, and only
/// on a terminal (indicatif draws nothing elsewhere); never with `--json`.
struct PullBar {
    bar: indicatif::ProgressBar,
}

impl PullBar {
    fn on_terminal(json: bool) -> Option<std::sync::Arc<dyn pht_station::pipeline::PullProgress>> {
        use std::io::IsTerminal as _;
        if json || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = indicatif::ProgressBar::hidden();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        Some(std::sync::Arc::new(PullBar { bar }))
    }
}

impl pht_station::pipeline::PullProgress for PullBar {
    fn fetching(&self, n_layers: usize, n_bytes: u64) {
        if n_layers == 0 {
            // Every layer is present: the engine only registers the image; nothing to show.
            return;
        }
        self.bar.set_length(n_bytes);
        self.bar.set_prefix(match n_layers {
            1 => "pull 1 layer".to_string(),
            n => format!("pull {n} layers"),
        });
        self.bar
            .set_draw_target(indicatif::ProgressDrawTarget::stderr());
    }

    fn fetched(&self, n_bytes: u64) {
        self.bar.inc(n_bytes);
    }

    fn unpacking(&self) {
        self.bar.set_message("unpacking");
    }

    fn finished(&self) {
        self.bar.finish_and_clear();
    }
}

fn print<T: Serialize>(json: bool, value: &T, human: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).expect("outputs always serialise")
        );
    } else {
        println!("{}", human().trim_end());
    }
}

fn render_record(record: &RunRecord) -> String {
    let mut text = format!("run {}: {}\n", record.run_id, status_text(record.status));
    text.push_str(&format!("  train     {}\n", record.train.reference));
    if let (Some(name), Some(version)) = (&record.train.name, &record.train.version) {
        text.push_str(&format!("            {name} {version}\n"));
    }
    if let Some(signer) = &record.signer {
        text.push_str(&format!("  signer    {signer}\n"));
    }
    if let Some(base) = &record.base {
        let signed = match &base.signer {
            Some(base_signer) => format!(" (signed by {base_signer})"),
            None => String::new(),
        };
        text.push_str(&format!("  base      {}{signed}\n", base.reference));
    }
    if let Some(job) = &record.job {
        text.push_str(&format!(
            "  job       {} (stop {}, signed by {})\n",
            job.job_id,
            job.stop_index + 1,
            job.signer
        ));
    }
    if let Some(outcome) = &record.outcome {
        text.push_str(&format!(
            "  outcome   exit {} after {} ms{}{}{}\n",
            outcome
                .exit_code
                .map_or("none".to_string(), |c| c.to_string()),
            outcome.duration_ms,
            if outcome.oom_killed {
                ", killed at the memory limit"
            } else {
                ""
            },
            if outcome.timed_out {
                ", killed at the wall-clock limit"
            } else {
                ""
            },
            if outcome.output_limit_reached {
                ", /output full"
            } else {
                ""
            },
        ));
    }
    for reason in &record.reasons {
        text.push_str(&format!("  reason    {reason}\n"));
    }
    for output in &record.outputs {
        text.push_str(&format!(
            "  output    {} ({}, {} bytes, sha256 {})\n",
            output.path,
            output.kind,
            output.size,
            &output.sha256[..16.min(output.sha256.len())]
        ));
    }
    for refused in &record.refused_outputs {
        text.push_str(&format!("  not collected {refused}\n"));
    }
    if let Some(checks) = &record.checks {
        text.push_str(&format!(
            "  checks    {checks}   (pht-station outputs show {})\n",
            record.run_id
        ));
    }
    if let Some(state_checks) = &record.state_checks {
        text.push_str(&format!(
            "  state     {state_checks} (handed to the next stop)\n"
        ));
    }
    if let Some(received) = &record.received_state {
        text.push_str(&format!(
            "  received  state from {} (sealed bundle sha256 {})\n",
            received.from_station,
            &received.sha256[..16.min(received.sha256.len())]
        ));
    }
    if let Some(decision) = &record.output_decision {
        text.push_str(&format!(
            "  outputs   {:?} by {}{}\n",
            decision.decision,
            decision.by,
            decision
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ));
    }
    for review in &record.reviews {
        text.push_str(&format!(
            "  review    {:?} by {} at {}: {}\n",
            review.decision,
            review.operator,
            review.at.format("%Y-%m-%d %H:%M:%S UTC"),
            review.reason
        ));
    }
    if let Some(sealed) = &record.sealed {
        text.push_str(&format!(
            "  sealed    {} ({} bytes, sha256 {})\n",
            sealed.path,
            sealed.size,
            &sealed.sha256[..16]
        ));
    }
    if record.status == RunStatus::AwaitingApproval {
        text.push_str(&format!(
            "  next      pht-station approve {0}   or   pht-station reject {0} --reason \"…\"\n",
            record.run_id
        ));
    }
    text
}

fn status_text(status: RunStatus) -> &'static str {
    match status {
        RunStatus::AwaitingApproval => "awaiting approval",
        RunStatus::Refused => "refused",
        RunStatus::Rejected => "rejected",
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Error => "error",
    }
}

fn exit_code_of(record: &RunRecord) -> u8 {
    match record.status {
        RunStatus::Succeeded | RunStatus::Running => 0,
        RunStatus::Refused | RunStatus::Rejected => 1,
        RunStatus::Failed => 5,
        RunStatus::Error => 4,
        RunStatus::AwaitingApproval => 10,
    }
}

/// The checkpoints `audit verify` compares the log with: the hub's (`--hub`, fetched as this
/// station) and a file's (`--checkpoints`), signed ones verified with this station's key.
async fn witnessed_checkpoints(
    config: &StationConfig,
    from_hub: bool,
    file: Option<&Path>,
) -> Result<Option<Vec<pht_station::audit::witness::Witnessed>>, Failure> {
    use pht_station::audit::witness;
    if !from_hub && file.is_none() {
        return Ok(None);
    }
    let invalid = |message: String| Failure { code: 3, message };
    let key = pht_station::keys::read_signing_key(&config.key_dir)
        .map_err(StationError::from)?
        .ok_or_else(|| {
            invalid(
                "the station has no key to check its checkpoints with; run `pht-station keys init`"
                    .into(),
            )
        })?;
    let public_key = key.public_key();
    let mut witnessed = Vec::new();
    if let Some(file) = file {
        witnessed
            .extend(witness::read_file(file, &config.station_id, &public_key).map_err(invalid)?);
    }
    if from_hub {
        let hub = config.hub.as_ref().ok_or_else(|| {
            invalid(format!(
                "{}: no `hub:` section to fetch checkpoints from",
                config.source.display()
            ))
        })?;
        let client = pht_api::HubClient::new(
            &hub.client_address(),
            pht_api::Credentials::Station {
                station_id: config.station_id.clone(),
                key,
            },
        )
        .map_err(|e| invalid(e.to_string()))?;
        let envelopes = client
            .checkpoints(&config.station_id)
            .await
            .map_err(|e| Failure {
                code: 4,
                message: format!("cannot fetch the hub's checkpoints: {e}"),
            })?;
        let source = format!("the hub ({})", hub.display_address());
        witnessed.extend(
            witness::from_envelopes(&envelopes, &config.station_id, &public_key, &source)
                .map_err(invalid)?,
        );
    }
    Ok(Some(witnessed))
}

fn export_failure(error: pht_station::audit::ExportError) -> Failure {
    use pht_station::audit::ExportError;
    let code = match &error {
        ExportError::Invalid { .. } | ExportError::Broken { .. } => 1,
        ExportError::Range { .. } => 2,
        _ => 3,
    };
    Failure {
        code,
        message: error.to_string(),
    }
}

fn load_config(path: &Path) -> Result<StationConfig, Failure> {
    StationConfig::load(path).map_err(|e| Failure {
        code: 3,
        message: e.to_string(),
    })
}

/// Resolves on SIGTERM or Ctrl-C: how the daemon and the console are asked to stop.
async fn stop_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler installs");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `--listen` of `pht-station console`: the same rules as `console.listen`.
fn parse_console_listen(
    text: &str,
    tls: bool,
) -> Result<pht_station::config::ConsoleListen, Failure> {
    use pht_station::config::ConsoleListen;
    let failure = |message: String| Failure { code: 2, message };
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(failure("--listen unix: needs a socket path".into()));
        }
        return Ok(ConsoleListen::Unix(PathBuf::from(path)));
    }
    let address: std::net::SocketAddr = text.parse().map_err(|_| {
        failure(format!(
            "--listen: `{text}` is not ADDRESS:PORT (e.g. 127.0.0.1:8470) or unix:/path"
        ))
    })?;
    if !address.ip().is_loopback() && !tls {
        return Err(failure(format!("--listen: {address} is reachable from other machines, and passwords would cross the network in clear; configure console.tls, or listen on 127.0.0.1")));
    }
    Ok(ConsoleListen::Tcp(address))
}

async fn open_station(config: StationConfig) -> Result<Station<DockerEngine>, Failure> {
    let docker = match &config.docker_socket {
        Some(socket) => pht_docker::connect_to_socket(socket).await,
        None => pht_docker::connect().await,
    }
    .map_err(|e| Failure {
        code: 4,
        message: e.to_string(),
    })?;
    let (host_outputs, storage) = output_storage(&config)?;
    tracing::info!(%storage, "where /output lives");
    let engine = DockerEngine::new(
        docker,
        &config.station_id,
        config.warm_output_slots,
        host_outputs,
    );
    Ok(Station::open(config, engine)?)
}

/// [`output_storage`] as a check-config and doctor line.
fn output_check(config: &StationConfig) -> pht_station::readiness::Check {
    let (ok, detail) = match output_storage(config) {
        Ok((_, description)) => (true, description),
        Err(failure) => (false, failure.message),
    };
    pht_station::readiness::Check {
        name: "/output",
        ok,
        detail,
    }
}

/// Where trains' `/output` lives for this configuration, and the same in words.
fn output_storage(
    config: &StationConfig,
) -> Result<(Option<pht_docker::HostOutputs>, String), Failure> {
    let output_root = config.state_dir.join("outputs");
    let volumes = |why: &str| {
        format!(
            "tmpfs volumes kept by a holder container, {} spare(s) ready ({why})",
            config.warm_output_slots
        )
    };
    Ok(match config.output_storage {
        OutputStorage::Volume => (None, volumes("docker.output_storage: volume")),
        OutputStorage::Auto => match pht_docker::HostOutputs::probe(&output_root) {
            Ok(outputs) => {
                let description = format!("host tmpfs under {}", outputs.root().display());
                (Some(outputs), description)
            }
            Err(why) => (None, volumes(&why)),
        },
        OutputStorage::HostTmpfs => {
            let outputs = pht_docker::HostOutputs::probe(&output_root).map_err(|why| Failure {
                code: 3,
                message: format!(
                    "{}: docker.output_storage is host-tmpfs, but {why}; use `auto` or `volume`",
                    config.source.display()
                ),
            })?;
            let description = format!("host tmpfs under {}", outputs.root().display());
            (Some(outputs), description)
        }
    })
}

/// Which sandbox leftovers are this station's to remove: runs its records name that no live
/// station process is carrying out. Another station's runs (one given the same id by mistake)
/// and a concurrent `exec`'s stay.
fn stale_run(store: &pht_station::store::RunStore) -> impl Fn(&str) -> bool + Sync + '_ {
    move |run_id| store.knows(run_id) && !store.is_live(run_id)
}

fn operator_name(cli_operator: Option<String>) -> String {
    cli_operator
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".to_string())
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let json = cli.json;
    let operator = operator_name(cli.operator);
    match cli.command {
        Command::Exec {
            reference,
            params,
            recipient,
        } => {
            let reference: ImageReference =
                reference
                    .parse()
                    .map_err(|e: pht_core::reference::ReferenceError| Failure {
                        code: 3,
                        message: e.to_string(),
                    })?;
            let mut station = open_station(load_config(&cli.config)?).await?;
            if let Some(bar) = PullBar::on_terminal(json) {
                station = station.with_pull_progress(bar);
            }
            let submitted = station
                .submit(Submission {
                    reference,
                    parameters: GivenParameters::CommandLine(params),
                    job: None,
                    recipient,
                    input_state: Vec::new(),
                    received_state: None,
                    actor: format!("operator:{operator}"),
                })
                .await;
            // The spare output slot for the next run is made while this one runs; leave it
            // whole, not half made.
            station.engine().sandbox().settle().await;
            let record = submitted?;
            print(json, &record, || render_record(&record));
            Ok(exit_code_of(&record))
        }
        Command::Approve { run_id, reason } => {
            let mut station = open_station(load_config(&cli.config)?).await?;
            if let Some(bar) = PullBar::on_terminal(json) {
                station = station.with_pull_progress(bar);
            }
            let approved = station.approve(&run_id, &operator, reason).await;
            station.engine().sandbox().settle().await;
            let record = approved?;
            print(json, &record, || render_record(&record));
            Ok(exit_code_of(&record))
        }
        Command::Reject { run_id, reason } => {
            let station = open_station(load_config(&cli.config)?).await?;
            let record = station.reject(&run_id, &operator, &reason)?;
            print(json, &record, || render_record(&record));
            Ok(0)
        }
        Command::Runs => {
            let config = load_config(&cli.config)?;
            let store = pht_station::store::RunStore::open(&config.state_dir)
                .map_err(StationError::from)?;
            let records = store.list().map_err(StationError::from)?;
            print(json, &records, || {
                if records.is_empty() {
                    return "no runs yet".to_string();
                }
                records
                    .iter()
                    .map(|r| {
                        format!(
                            "{}  {:<17}  {}  {}",
                            r.run_id,
                            status_text(r.status),
                            r.created_at.format("%Y-%m-%d %H:%M:%S"),
                            r.train.reference
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(0)
        }
        Command::Show { run_id } => {
            let config = load_config(&cli.config)?;
            let store = pht_station::store::RunStore::open(&config.state_dir)
                .map_err(StationError::from)?;
            let record = store.load(&run_id).map_err(StationError::from)?;
            print(json, &record, || render_record(&record));
            Ok(0)
        }
        Command::Outputs(OutputsCommand::Show { run_id }) => {
            let config = load_config(&cli.config)?;
            let store = pht_station::store::RunStore::open(&config.state_dir)
                .map_err(StationError::from)?;
            let record = store.load(&run_id).map_err(StationError::from)?;
            let report_path = store.run_dir(&run_id).join("report.json");
            let report_bytes = std::fs::read(&report_path).map_err(|_| Failure {
                code: 3,
                message: format!(
                    "run {run_id} has no check report (status {}): only succeeded runs are checked",
                    status_text(record.status)
                ),
            })?;
            let report: pht_checks::CheckReport =
                serde_json::from_slice(&report_bytes).map_err(|e| Failure {
                    code: 3,
                    message: format!("{}: {e}", report_path.display()),
                })?;
            print(json, &report, || {
                let decision =
                    record
                        .output_decision
                        .as_ref()
                        .map_or("undecided".to_string(), |d| {
                            format!(
                                "{:?} by {}{}",
                                d.decision,
                                d.by,
                                d.reason
                                    .as_deref()
                                    .map(|r| format!(": {r}"))
                                    .unwrap_or_default()
                            )
                            .to_lowercase()
                        });
                let state_report = std::fs::read(
                    store
                        .run_dir(&run_id)
                        .join(pht_station::pipeline::check::STATE_REPORT_FILE),
                )
                .ok()
                .and_then(|bytes| serde_json::from_slice::<pht_checks::CheckReport>(&bytes).ok())
                .map(|state| {
                    format!(
                        "\nstate for the next stop (checked like an output; it goes to that station):\n{}",
                        state.render_text()
                    )
                })
                .unwrap_or_default();
                format!(
                    "{}{state_report}\noutputs: {decision}",
                    report.render_text()
                )
            });
            Ok(0)
        }
        Command::Outputs(OutputsCommand::Release { run_id, reason }) => {
            let station = open_station(load_config(&cli.config)?).await?;
            let record = station.release_outputs(&run_id, &operator, &reason)?;
            print(json, &record, || render_record(&record));
            Ok(0)
        }
        Command::Outputs(OutputsCommand::Block { run_id, reason }) => {
            let station = open_station(load_config(&cli.config)?).await?;
            let record = station.block_outputs(&run_id, &operator, &reason)?;
            print(json, &record, || render_record(&record));
            Ok(0)
        }
        Command::Audit(AuditCommand::Verify { hub, checkpoints }) => {
            let config = load_config(&cli.config)?;
            let path = config.state_dir.join("audit.log");
            let verification = AuditLog::verify_file(&path).map_err(StationError::from)?;
            let witnessed = witnessed_checkpoints(&config, hub, checkpoints.as_deref()).await?;
            let witness = match &witnessed {
                Some(witnessed) if verification.problem.is_none() => Some(
                    pht_station::audit::witness::check(&path, witnessed)
                        .map_err(StationError::from)?,
                ),
                _ => None,
            };
            #[derive(Serialize)]
            struct Verified<'a> {
                #[serde(flatten)]
                chain: &'a pht_station::audit::Verification,
                #[serde(skip_serializing_if = "Option::is_none")]
                witnessed: Option<&'a pht_station::audit::witness::WitnessCheck>,
            }
            let verified = Verified {
                chain: &verification,
                witnessed: witness.as_ref(),
            };
            print(json, &verified, || {
                let mut text = match &verification.problem {
                    None => format!(
                        "audit log {} verifies: {} entries in {} file(s), last hash {}{}",
                        path.display(),
                        verification.entries,
                        verification.files.len(),
                        verification.last_hash,
                        verification
                            .interrupted_append
                            .as_deref()
                            .map(|note| format!("\n  note: {note}"))
                            .unwrap_or_default()
                    ),
                    Some((line, problem)) => format!(
                        "audit log {} is BROKEN in {} at line {line}: {problem}",
                        path.display(),
                        verification.problem_file.as_deref().unwrap_or("audit.log")
                    ),
                };
                if let Some(witness) = &witness {
                    if witness.problems.is_empty() {
                        text.push_str(&format!(
                            "\nit agrees with {} witnessed checkpoint(s){}",
                            witness.agreed,
                            if witness.pruned > 0 {
                                format!(" ({} of entries retention has deleted)", witness.pruned)
                            } else {
                                String::new()
                            }
                        ));
                    } else {
                        text.push_str(&format!(
                            "\nit CONTRADICTS {} witnessed checkpoint(s): investigate; the chain alone cannot show a log rewritten whole",
                            witness.problems.len()
                        ));
                        for problem in &witness.problems {
                            text.push_str(&format!("\n  {problem}"));
                        }
                    }
                }
                text
            });
            let contradicted = witness.as_ref().is_some_and(|w| !w.problems.is_empty());
            Ok(if verification.problem.is_some() || contradicted {
                1
            } else {
                0
            })
        }
        Command::Audit(AuditCommand::Export { since, until, out }) => {
            let config = load_config(&cli.config)?;
            let key = pht_station::keys::read_signing_key(&config.key_dir)
                .map_err(StationError::from)?
                .ok_or_else(|| export_failure(pht_station::audit::ExportError::NoKey))?;
            let summary = pht_station::audit::write_export(
                &config.state_dir.join("audit.log"),
                &out,
                &config.station_id,
                &key,
                since,
                until,
            )
            .map_err(export_failure)?;
            print(json, &summary, || {
                format!(
                    "wrote {}: {} entries of {} to {} ({}), signed by station key {}",
                    summary.file.display(),
                    summary.entries,
                    summary.since,
                    summary.until,
                    match (summary.first_seq, summary.last_seq) {
                        (Some(first), Some(last)) => format!("entries {first} to {last}"),
                        _ => "none in that range".into(),
                    },
                    summary.key_id
                )
            });
            Ok(0)
        }
        Command::Audit(AuditCommand::VerifyExport {
            file,
            key,
            checkpoints,
        }) => {
            let pinned = match &key {
                None => None,
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| e.to_string())
                        .and_then(|pem| {
                            pht_core::PublicKey::from_pem(&pem).map_err(|e| e.to_string())
                        })
                        .map_err(|e| Failure {
                            code: 2,
                            message: format!("{}: not a public key: {e}", path.display()),
                        })?,
                ),
            };
            match pht_station::audit::verify_export(&file, pinned.as_ref()) {
                Ok((summary, export)) => {
                    if let Some(checkpoints) = &checkpoints {
                        use pht_station::audit::witness;
                        let key =
                            pht_core::PublicKey::from_pem(&export.station_key).map_err(|e| {
                                Failure {
                                    code: 1,
                                    message: e.to_string(),
                                }
                            })?;
                        let witnessed = witness::read_file(checkpoints, &export.station_id, &key)
                            .map_err(|message| Failure { code: 3, message })?;
                        let found = witness::check_entries(&export.entries, &witnessed, false);
                        if !found.problems.is_empty() {
                            return Err(Failure {
                                code: 1,
                                message: format!(
                                    "the audit export {} contradicts {} witnessed checkpoint(s): {}",
                                    file.display(),
                                    found.problems.len(),
                                    found.problems.join("; ")
                                ),
                            });
                        }
                        eprintln!(
                            "it agrees with {} witnessed checkpoint(s) within its range",
                            found.agreed
                        );
                    }
                    print(json, &summary, || {
                        format!(
                            "audit export {} verifies: {} entries of station {} from {} to {}, signed by key {}{}",
                            summary.file.display(),
                            summary.entries,
                            summary.station_id,
                            summary.since,
                            summary.until,
                            summary.key_id,
                            if summary.key_pinned { " (the key you gave)" } else { "; compare this id with the station's published station.pub, or pass --key" }
                        )
                    });
                    Ok(0)
                }
                Err(error @ pht_station::audit::ExportError::Invalid { .. }) => Err(Failure {
                    code: 1,
                    message: error.to_string(),
                }),
                Err(error) => Err(export_failure(error)),
            }
        }
        Command::Audit(AuditCommand::Show { run }) => {
            let config = load_config(&cli.config)?;
            let entries =
                AuditLog::read_entries(&config.state_dir.join("audit.log"), run.as_deref())
                    .map_err(StationError::from)?;
            print(json, &entries, || {
                entries
                    .iter()
                    .map(|e| {
                        let mut line = format!(
                            "{:>5} {} {:<18} {:<22}",
                            e.seq,
                            e.time.format("%Y-%m-%d %H:%M:%S"),
                            e.event,
                            e.actor
                        );
                        if let Some(run_id) = &e.run_id {
                            line.push_str(&format!(" {run_id}"));
                        }
                        if let Some(decision) = &e.decision {
                            line.push_str(&format!(" [{decision}]"));
                        }
                        for reason in &e.reasons {
                            line.push_str(&format!("\n        - {reason}"));
                        }
                        line
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            Ok(0)
        }
        Command::Run => {
            // With JSON logs every line on stderr is a JSON object, these notices too.
            let log_json = cli.log_format == LogFormat::Json;
            let say = move |text: &str| {
                if log_json {
                    tracing::info!("{text}");
                } else {
                    eprintln!("{text}");
                }
            };
            let config = load_config(&cli.config)?;
            let hub_access = config.hub.clone().ok_or_else(|| Failure {
                code: 3,
                message: format!(
                    "{}: no `hub:` section; the daemon needs the hub's url",
                    config.source.display()
                ),
            })?;
            let hub_key = pht_station::keys::read_signing_key(&config.key_dir)
                .map_err(StationError::from)?
                .ok_or_else(|| Failure { code: 3, message: "the station has no key: run `pht-station keys init` and register station.pub with the hub".into() })?;
            let credentials = pht_api::Credentials::Station {
                station_id: config.station_id.clone(),
                key: hub_key,
            };
            let hub = pht_api::HubClient::new(&hub_access.client_address(), credentials).map_err(
                |e| Failure {
                    code: 3,
                    message: e.to_string(),
                },
            )?;
            let station = open_station(config).await?;
            // One daemon per state directory, and per station id on this host.
            let _claim = station
                .store()
                .claim_daemon(&station.config().station_id)
                .map_err(StationError::from)?;
            let cleaned = station
                .engine()
                .sandbox()
                .cleanup_stale_runs(&stale_run(station.store()))
                .await
                .map_err(|e| Failure {
                    code: 4,
                    message: e.to_string(),
                })?;
            if !cleaned.removed_containers.is_empty() {
                tracing::warn!(containers = ?cleaned.removed_containers, "removed containers left by an earlier stop");
            }
            say(&format!(
                "pht-station {}: polling {} (up to {} run(s) at once)",
                station.config().station_id,
                hub_access.display_address(),
                hub_access.concurrency
            ));
            let shutdown = async {
                stop_signal().await;
                say("stopping: finishing runs in progress");
            };
            let sandbox = station.engine().sandbox().clone();
            let station = std::sync::Arc::new(station);
            let (stop_console, console_stopped) = tokio::sync::watch::channel(false);
            // Both listeners stop when the daemon does.
            let stopped = || {
                let mut stopped = console_stopped.clone();
                async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                }
            };
            let metrics = station.config().metrics.clone().map(|listen| {
                let (station, stopped) = (station.clone(), stopped());
                tokio::spawn(async move {
                    let announce = move |address: &str| say(&format!("metrics: {address}"));
                    pht_station::metrics::serve(station, &listen, announce, stopped).await
                })
            });
            let console = station.config().console.clone().map(|console_config| {
                let (station, stopped) = (station.clone(), stopped());
                tokio::spawn(async move {
                    let announce =
                        move |address: String| say(&format!("operator console: {address}"));
                    pht_station::console::serve(station, &console_config, announce, stopped).await
                })
            });
            let served = pht_station::daemon::run(
                station,
                std::sync::Arc::new(hub),
                hub_access.poll_wait,
                hub_access.concurrency,
                shutdown,
            )
            .await;
            let _ = stop_console.send(true);
            if let Some(metrics) = metrics {
                match metrics.await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(%error, "serving metrics failed"),
                    Err(error) => tracing::error!(%error, "the metrics task failed"),
                }
            }
            if let Some(console) = console {
                match console.await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(%error, "the operator console stopped"),
                    Err(error) => tracing::error!(%error, "the operator console stopped"),
                }
            }
            // A stopped daemon leaves nothing running behind.
            if let Err(error) = sandbox.remove_spares().await {
                tracing::warn!(%error, "could not remove the spare output slots");
            }
            served?;
            Ok(0)
        }
        Command::Console { listen } => {
            let mut config = load_config(&cli.config)?;
            let mut console_config = config.console.clone().unwrap_or_default();
            if let Some(listen) = listen {
                console_config.listen =
                    parse_console_listen(&listen, console_config.tls.is_some())?;
            }
            config.console = Some(console_config.clone());
            let station = std::sync::Arc::new(open_station(config).await?);
            let shutdown = stop_signal();
            pht_station::console::serve(
                station,
                &console_config,
                |address| {
                    println!("operator console: {address}");
                    use std::io::Write as _;
                    let _ = std::io::stdout().flush();
                },
                shutdown,
            )
            .await
            .map_err(|error| Failure {
                code: 3,
                message: error.to_string(),
            })?;
            Ok(0)
        }
        Command::Cleanup { leftovers } => {
            let station = open_station(load_config(&cli.config)?).await?;
            let sandbox = station.engine().sandbox();
            let failure = |e: pht_docker::SandboxError| Failure {
                code: 4,
                message: e.to_string(),
            };
            let mut removed = sandbox.remove_spares().await.map_err(failure)?;
            if leftovers {
                let stale = sandbox
                    .cleanup_stale_runs(&stale_run(station.store()))
                    .await
                    .map_err(failure)?;
                removed.removed_containers.extend(stale.removed_containers);
                removed.removed_volumes.extend(stale.removed_volumes);
            }
            #[derive(Serialize)]
            struct Removed {
                containers: Vec<String>,
                volumes: Vec<String>,
            }
            let removed = Removed {
                containers: removed.removed_containers,
                volumes: removed.removed_volumes,
            };
            print(json, &removed, || {
                format!(
                    "removed {} container(s) and {} volume(s) of station {}",
                    removed.containers.len(),
                    removed.volumes.len(),
                    station.config().station_id
                )
            });
            Ok(0)
        }
        Command::Operators(command) => {
            use pht_station::operators::Operators;
            let config = load_config(&cli.config)?;
            let operator_failure = |error: pht_station::operators::OperatorError| Failure {
                code: 3,
                message: error.to_string(),
            };
            let mut operators = Operators::load(&config.state_dir).map_err(operator_failure)?;
            let audit_path = config.state_dir.join("audit.log");
            let audit = |event: &str, name: &str| -> Result<(), Failure> {
                let log =
                    pht_station::audit::AuditLog::open_with(&audit_path, config.audit.clone())
                        .map_err(StationError::from)?;
                let mut entry =
                    pht_station::audit::AuditEvent::new(&format!("operator:{operator}"), event);
                entry.details.insert("operator".into(), name.into());
                log.append(entry).map_err(StationError::from)?;
                Ok(())
            };
            match command {
                OperatorsCommand::Add {
                    name,
                    role,
                    password_stdin,
                } => {
                    let password = new_password(&name, password_stdin).map_err(operator_failure)?;
                    operators
                        .add(&name, role, &password)
                        .map_err(operator_failure)?;
                    audit("operator_added", &name)?;
                    print(json, &operators.list(), || {
                        format!(
                            "added operator {name} ({})",
                            format!("{role:?}").to_lowercase()
                        )
                    });
                }
                OperatorsCommand::List => {
                    let listed = operators.list();
                    print(json, &listed, || {
                        if listed.is_empty() {
                            "no operators yet: `pht-station operators add NAME --role reviewer`"
                                .to_string()
                        } else {
                            listed
                                .iter()
                                .map(|operator| {
                                    format!(
                                        "{:<24} {:<9} added {}",
                                        operator.name,
                                        format!("{:?}", operator.role).to_lowercase(),
                                        operator.created_at.format("%Y-%m-%d")
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join("\n")
                        }
                    });
                }
                OperatorsCommand::Remove { name } => {
                    operators.remove(&name).map_err(operator_failure)?;
                    audit("operator_removed", &name)?;
                    print(json, &operators.list(), || {
                        format!("removed operator {name}")
                    });
                }
                OperatorsCommand::Passwd {
                    name,
                    password_stdin,
                } => {
                    if operators.get(&name).is_none() {
                        return Err(operator_failure(
                            pht_station::operators::OperatorError::Unknown { name },
                        ));
                    }
                    let password = new_password(&name, password_stdin).map_err(operator_failure)?;
                    operators
                        .set_password(&name, &password)
                        .map_err(operator_failure)?;
                    audit("operator_password_changed", &name)?;
                    print(json, &operators.list(), || {
                        format!("changed the password of {name}")
                    });
                }
            }
            Ok(0)
        }
        Command::Keys(KeysCommand::Init) => {
            let config = load_config(&cli.config)?;
            let files = pht_station::keys::init(&config.key_dir).map_err(StationError::from)?;
            print(json, &files, || {
                format!(
                    "created the keys of station {}\n  signing key  {}\n  public key   {}  (give this to researchers)\n  age identity {}\n  age recipient {}",
                    config.station_id,
                    files.signing_key.display(),
                    files.public_key.display(),
                    files.age_identity.display(),
                    files.age_recipient.display()
                )
            });
            Ok(0)
        }
        Command::Doctor => {
            let config = load_config(&cli.config)?;
            let outputs = output_check(&config);
            let diagnosis = pht_station::doctor::diagnose(&config, outputs).await;
            print(json, &diagnosis, || {
                let mut text = String::new();
                for check in &diagnosis.checks {
                    text.push_str(&format!(
                        "{} {:<16} {}\n",
                        if check.ok { "ok  " } else { "FAIL" },
                        check.name,
                        check.detail
                    ));
                }
                let failed = diagnosis.checks.iter().filter(|c| !c.ok).count();
                text.push_str(&if failed == 0 {
                    format!("station {}: every check passed", diagnosis.station_id)
                } else {
                    format!(
                        "station {}: {failed} check(s) failed; each says what to do",
                        diagnosis.station_id
                    )
                });
                text
            });
            Ok(if diagnosis.ok { 0 } else { 1 })
        }
        Command::CheckConfig => {
            let config = load_config(&cli.config)?;
            let (mut checks, trust) = pht_station::readiness::check(&config);
            let outputs = output_check(&config);
            checks.push(outputs);
            #[derive(Serialize)]
            struct Checked {
                station_id: String,
                ok: bool,
                train_signers: Vec<String>,
                job_signers: Vec<String>,
                base_signers: Vec<String>,
                checks: Vec<pht_station::readiness::Check>,
            }
            let signers = |keys: &[(String, pht_core::PublicKey)]| -> Vec<String> {
                keys.iter()
                    .map(|(name, key)| format!("{name} ({})", key.key_id()))
                    .collect()
            };
            let checked = Checked {
                station_id: config.station_id.clone(),
                ok: checks.iter().all(|check| check.ok),
                train_signers: trust
                    .as_ref()
                    .map(|t| signers(&t.train_keys))
                    .unwrap_or_default(),
                job_signers: trust
                    .as_ref()
                    .map(|t| signers(&t.job_keys))
                    .unwrap_or_default(),
                base_signers: trust
                    .as_ref()
                    .map(|t| signers(&t.base_keys))
                    .unwrap_or_default(),
                checks,
            };
            print(json, &checked, || {
                let mut text = if checked.ok {
                    format!("station {} is configured\n", checked.station_id)
                } else {
                    format!(
                        "station {} is NOT ready: fix what is marked FAIL\n",
                        checked.station_id
                    )
                };
                for check in &checked.checks {
                    let mark = if check.ok { "  ok  " } else { "  FAIL" };
                    text.push_str(&format!("{mark} {:<13} {}\n", check.name, check.detail));
                }
                if !checked.train_signers.is_empty() {
                    text.push_str(&format!(
                        "       train signers {}\n       job signers   {}\n",
                        checked.train_signers.join(", "),
                        checked.job_signers.join(", ")
                    ));
                }
                if !checked.base_signers.is_empty() {
                    text.push_str(&format!(
                        "       base signers  {}\n",
                        checked.base_signers.join(", ")
                    ));
                }
                text
            });
            Ok(if checked.ok { 0 } else { 3 })
        }
    }
}

/// The `--log-format` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PHT_LOG")
        .unwrap_or_else(|_| default_level.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemons say what they do at `info`; one-shot commands only warn.
    let default_level = match cli.command {
        Command::Run | Command::Console { .. } => "info",
        _ => "warn",
    };
    init_logging(cli.log_format, default_level);
    let json = cli.json || cli.log_format == LogFormat::Json;
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            if json {
                eprintln!(
                    "{}",
                    serde_json::json!({"error": failure.message, "exit_code": failure.code})
                );
            } else {
                eprintln!("error: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
