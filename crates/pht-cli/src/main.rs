//! `pht`: the researcher's command line. Scaffold, build, sign, push and verify trains; submit
//! jobs and collect their sealed results.
//!
//! Glue only: arguments are parsed here (first what the user typed, then resolved objects), and
//! every piece of logic lives in the library crates.

mod commands;
mod exit;
mod keyfiles;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use pht_core::job::RouteMode;
use pht_core::KeyAlgorithm;
use pht_registry::{Credentials, RegistryClient, RegistryOptions};
use uuid::Uuid;

use crate::commands::jobs::{
    self, HubLogin, JobResultsRequest, ParameterArgument, StationKeyArgument,
    StationParameterArgument, SubmitRequest,
};
use crate::exit::{fail, CommandResult, FailureKind};
use crate::output::Output;

const AFTER_HELP: &str = "\
Exit codes: 0 success · 1 refused (a signature or check said no) · 2 usage error ·
3 invalid input (a file, manifest or key that cannot be used) · 4 unavailable (Docker, a registry
or the hub could not be reached).

A first train, end to end:
  pht key generate --name alice                      # alice.key, alice.pub, alice.age, alice.age.pub
  pht train init my-train && cd my-train             # a train that builds offline (FROM scratch)
  pht train build . --tag 127.0.0.1:5000/trains/my-train:0.1.0
  pht train push 127.0.0.1:5000/trains/my-train:0.1.0
  pht train sign 127.0.0.1:5000/trains/my-train:0.1.0 --key ../alice.key
  pht train verify 127.0.0.1:5000/trains/my-train:0.1.0 --key ../alice.pub

Then through the hub (export PHT_HUB_URL, PHT_RESEARCHER and PHT_KEY=../alice.key once):
  pht submit 127.0.0.1:5000/trains/my-train@sha256:… --route umc,radboud --param n=10
  pht status JOB-ID --watch
  pht results JOB-ID --out results --identity ../alice.age \
      --station-key umc=umc.pub --station-key radboud=radboud.pub";

const SUBMIT_AFTER_HELP: &str = "\
Example:
  pht submit 127.0.0.1:5000/trains/cohort-stats@sha256:3f1c… --route umc,radboud \
      --param min_age=18 --param-for radboud:cohort=adults --expires-in 48h

The job is signed with --key: every station checks that signature against its own policy, so the
hub can neither re-route the job nor swap its train. Results are encrypted to your age recipient
(by default the NAME.age.pub that `pht key generate` wrote next to NAME.key).

Exit codes: 0 submitted · 2 usage · 3 invalid input (a tag instead of a digest, a bad route,
parameter, key or recipient) · 4 the hub could not be reached or refused the job.";

const STATUS_AFTER_HELP: &str = "\
Stop statuses: pending (waits for earlier stops) · ready · leased · running · withheld (waits for
the station operator's review) · done · denied · failed · blocked (output checks) · skipped ·
expired · cancelled.

Exit codes: 0 the job completed, or is still active (without --watch) · 1 the job ended
incomplete or cancelled (some stop denied, failed, blocked, skipped or expired) · 3 invalid input
· 4 the hub could not be reached or answered with an error, or --watch timed out.";

const RESULTS_AFTER_HELP: &str = "\
Two forms:
  pht results JOB --out DIR --identity NAME.age --station-key STATION=PUBKEY …
      fetch every result of a job from the hub, verify each under ITS station's key, and write
      it into DIR/STATION/ (report.json, provenance.json, outputs/).
  pht results open BUNDLE --identity NAME.age --station-key PUBKEY --out DIR
      verify and write one sealed bundle you already have.

A bundle is written only if it decrypts with your identity, is signed by the key given for the
station that delivered it, its files are exactly the signed ones, and its signed provenance names
this job and that station. Anything else is refused and nothing is written for that station.

Exit codes: 0 every result verified · 1 some result refused · 3 invalid input (a key, identity or
a non-empty output directory) · 4 the hub could not be reached, failed, or holds no result yet.";

/// The Personal Health Train researcher tool: package an analysis as a signed train, send it to
/// the data, and get back sealed, verified results.
#[derive(Debug, Parser)]
#[command(name = "pht", version, after_help = AFTER_HELP, propagate_version = true)]
struct Cli {
    /// Print results as JSON on stdout (for scripts); notes and progress go to stderr.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Args, Clone)]
struct RegistryArgs {
    /// A registry (host:port) that may be reached over plain HTTP. Loopback registries always
    /// may; any other needs this flag. Repeatable.
    #[arg(
        long = "insecure-registry",
        value_name = "HOST:PORT",
        env = "PHT_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure_registries: Vec<String>,
    /// Registry user name (basic auth, or to obtain a bearer token).
    #[arg(long, env = "PHT_REGISTRY_USERNAME", requires = "registry_password")]
    registry_username: Option<String>,
    /// Registry password or token.
    #[arg(long, env = "PHT_REGISTRY_PASSWORD", hide_env_values = true)]
    registry_password: Option<String>,
}

impl RegistryArgs {
    fn client(&self) -> RegistryClient {
        let credentials = match (&self.registry_username, &self.registry_password) {
            (Some(username), Some(password)) => Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }),
            _ => None,
        };
        RegistryClient::new(RegistryOptions {
            insecure_registries: self.insecure_registries.iter().cloned().collect(),
            credentials,
            ..RegistryOptions::default()
        })
    }
}

/// Where the hub is and who you are there; every hub command takes these.
#[derive(Debug, Args, Clone)]
struct HubArgs {
    /// The hub's base URL, e.g. http://127.0.0.1:8080. Several addresses of one hub
    /// (replicas, load balancers) go comma-separated: each request that finds one down, or
    /// answered 502/503/504, is signed again and sent to the next.
    #[arg(
        long = "hub",
        value_name = "URL[,URL…]",
        env = "PHT_HUB_URL",
        required = true
    )]
    hub_url: Option<String>,
    /// Your researcher id, as the hub's operator registered it.
    #[arg(long, value_name = "ID", env = "PHT_RESEARCHER", required = true)]
    researcher: Option<String>,
    /// Your private signing key (NAME.key from `pht key generate`; the hub and the stations
    /// know its NAME.pub). It signs every request and every job. Encrypted keys read
    /// PHT_KEY_PASSWORD or ask.
    #[arg(long, value_name = "PATH", env = "PHT_KEY", required = true)]
    key: Option<PathBuf>,
}

impl HubArgs {
    /// The resolved login. clap requires all three unless a subcommand negated the requirement,
    /// in which case this is not called; the error is for the impossible rest.
    fn login(self) -> CommandResult<HubLogin> {
        match (self.hub_url, self.researcher, self.key) {
            (Some(hub_url), Some(researcher_id), Some(key_path)) => Ok(HubLogin {
                hub_url,
                researcher_id,
                key_path,
            }),
            _ => Err(fail(
                FailureKind::Input,
                "the hub commands need --hub, --researcher and --key (or PHT_HUB_URL, PHT_RESEARCHER and PHT_KEY)",
            )),
        }
    }
}

#[derive(Debug, Args)]
#[command(after_help = SUBMIT_AFTER_HELP)]
struct SubmitArgs {
    /// The train by digest, REPO@sha256:…, as `pht train push` printed it. A tag is refused:
    /// stations run exactly the digest you sign.
    #[arg(value_name = "TRAIN@DIGEST")]
    train: String,
    /// The stations, comma-separated, in visiting order (e.g. umc,radboud).
    #[arg(long, value_name = "STATION,…", value_delimiter = ',', required = true)]
    route: Vec<String>,
    /// Visit the stations one after another, each handing its state to the next. Default:
    /// every station runs the train independently (parallel).
    #[arg(long)]
    sequential: bool,
    /// A train parameter for every station, NAME=VALUE; repeatable. Numbers and true/false
    /// become JSON numbers and booleans; anything else is a string.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = jobs::parse_parameter_argument)]
    parameters: Vec<ParameterArgument>,
    /// A parameter for one station, STATION:NAME=VALUE; repeatable. It overrides a --param of
    /// the same name at that station.
    #[arg(long = "param-for", value_name = "STATION:NAME=VALUE", value_parser = jobs::parse_station_parameter_argument)]
    station_parameters: Vec<StationParameterArgument>,
    /// The age recipient (age1…) that results are encrypted to.
    #[arg(long, value_name = "AGE1…", conflicts_with = "recipient_file")]
    recipient: Option<String>,
    /// A file holding the age recipient (default: NAME.age.pub next to --key's NAME.key).
    #[arg(long, value_name = "FILE")]
    recipient_file: Option<PathBuf>,
    /// How long stations may start the job (30m, 24h, …); after that they refuse it.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = jobs::parse_duration_argument)]
    expires_in: Duration,
    #[command(flatten)]
    hub: HubArgs,
}

#[derive(Debug, Args)]
#[command(after_help = STATUS_AFTER_HELP)]
struct StatusArgs {
    /// The job id `pht submit` printed.
    #[arg(value_name = "JOB")]
    job: Uuid,
    /// Ask again every second until the job is no longer active, printing each change.
    #[arg(long)]
    watch: bool,
    /// With --watch: give up after this long (exit 4).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = jobs::parse_duration_argument)]
    timeout: Duration,
    #[command(flatten)]
    hub: HubArgs,
}

/// `pht results JOB …` or `pht results open BUNDLE …`: the job form's arguments are required
/// only when no subcommand is given, and conflict with one.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = RESULTS_AFTER_HELP
)]
struct ResultsArgs {
    #[command(subcommand)]
    command: Option<ResultsCommand>,
    /// The job id `pht submit` printed.
    #[arg(value_name = "JOB", required = true)]
    job: Option<Uuid>,
    /// Directory to write into: one subdirectory per station, each new or empty.
    #[arg(long, value_name = "DIR", required = true)]
    out: Option<PathBuf>,
    /// Your age identity file (from `pht key generate`: NAME.age).
    #[arg(long, value_name = "NAME.age", required = true)]
    identity: Option<PathBuf>,
    /// A station's public key (PEM), named for the station: STATION=PUBKEY; repeatable. Each
    /// station's bundle must be signed by the key given for that station.
    #[arg(
        long = "station-key",
        value_name = "STATION=PUBKEY",
        required = true,
        value_parser = jobs::parse_station_key_argument
    )]
    station_keys: Vec<StationKeyArgument>,
    #[command(flatten)]
    hub: HubArgs,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Signing keys and the age identity that receives results.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Build, push, sign, verify and inspect trains.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Base images for trains in Python and R, built from Debian's packages.
    #[command(subcommand)]
    Base(BaseCommand),
    /// Sign a job (a train by digest, a route of stations, parameters) and submit it to the hub.
    Submit(SubmitArgs),
    /// Show where a job stands at the hub, stop by stop; --watch follows it to the end.
    Status(StatusArgs),
    /// Fetch a job's sealed results from the hub, verify and write them (or `open` one bundle).
    Results(ResultsArgs),
    /// Sign a file as `cosign sign-blob --key` does (base64 signature on stdout).
    SignBlob {
        /// The private key (PKCS#8 PEM; encrypted keys read PHT_KEY_PASSWORD or ask).
        #[arg(long)]
        key: PathBuf,
        /// Also write the signature to this file.
        #[arg(long = "output-signature", value_name = "FILE")]
        output_signature: Option<PathBuf>,
        /// The file to sign.
        file: PathBuf,
    },
    /// Verify a file's signature as `cosign verify-blob --key --signature` does.
    VerifyBlob {
        /// The signer's public key (PEM SubjectPublicKeyInfo, e.g. cosign.pub).
        #[arg(long)]
        key: PathBuf,
        /// The base64 signature file.
        #[arg(long)]
        signature: PathBuf,
        /// The file that was signed.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BaseCommand {
    /// Build a base from Debian's packages with debootstrap (as root; a few minutes), load it
    /// into Docker, push it to TAG and sign it with the base signer's key. A base Docker already
    /// holds (same kind, same package list) is reused rather than built again (--rebuild).
    ///
    /// The same package versions give the same image digest: times, owners and order in the
    /// layer are fixed, and so is the config. Researchers' Dockerfiles start `FROM` the printed
    /// REPOSITORY@sha256:…; a station's policy can accept bases by that digest or by this key.
    ///
    ///   pht base build python --tag 127.0.0.1:5000/bases/python:bookworm --key base.key
    Build {
        /// Which base: python (numpy, pandas, scipy, statsmodels, scikit-learn) or r (survival,
        /// data.table and the recommended packages).
        #[arg(value_enum)]
        kind: BaseArg,
        /// Where to push it: REGISTRY/REPOSITORY:TAG.
        #[arg(long)]
        tag: String,
        /// The base signer's private key (keep it apart from researchers' keys).
        #[arg(long)]
        key: PathBuf,
        /// A package list to use instead of the built-in trains/base/KIND/packages.txt.
        #[arg(long)]
        packages: Option<PathBuf>,
        /// The Debian mirror.
        #[arg(long, default_value = commands::base::DEFAULT_MIRROR)]
        mirror: String,
        /// Build even when Docker already holds this base (same kind and package list); without
        /// it that image is reused, pushed and signed.
        #[arg(long)]
        rebuild: bool,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LanguageArg {
    Rust,
    Python,
    R,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BaseArg {
    Python,
    R,
}

#[derive(Debug, Subcommand)]
enum ResultsCommand {
    /// Decrypt a sealed result bundle, verify the station's signature and every file's hash,
    /// and write report.json, provenance.json and outputs/ into a new or empty directory.
    ///
    /// Nothing is written unless everything verifies; a changed byte, a missing or extra file,
    /// or a signature by a key not given with --station-key is refused (exit 1).
    Open {
        /// The sealed bundle (age-encrypted), e.g. result.age.
        bundle: PathBuf,
        /// Your age identity file (from `pht key generate`: NAME.age).
        #[arg(long)]
        identity: PathBuf,
        /// A station's public key (PEM); repeatable. The bundle must be signed by one of them.
        #[arg(long = "station-key", required = true)]
        station_key: Vec<PathBuf>,
        /// Directory to write into (created; must be empty if it exists).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AlgorithmArg {
    /// Ed25519 (default): small keys, fast, deterministic signatures.
    Ed25519,
    /// ECDSA P-256 with SHA-256: cosign's default key type.
    P256,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Generate a signing key pair and an age identity.
    ///
    /// Writes NAME.key (private, PKCS#8 PEM, passphrase-encrypted unless the passphrase is
    /// empty), NAME.pub (public, PEM SubjectPublicKeyInfo — give it to station operators),
    /// NAME.age (age identity that decrypts your results) and NAME.age.pub (its recipient).
    /// The passphrase comes from PHT_KEY_PASSWORD, or is asked for on a terminal.
    Generate {
        #[arg(long, value_enum, default_value = "ed25519")]
        algorithm: AlgorithmArg,
        /// File name stem.
        #[arg(long, default_value = "pht")]
        name: String,
        /// Directory to write into.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Replace existing files of the same names.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TrainCommand {
    /// Scaffold a train: train.yaml, a Dockerfile and a program that reads the mounted dataset
    /// and writes aggregates to /output.
    ///
    /// --lang rust (the default: it builds with nothing but the Rust toolchain) compiles a
    /// static binary into an image FROM scratch. --lang python (pandas) and --lang r start FROM
    /// one of the project's base images, named by digest with --base (what `pht base build`
    /// printed).
    ///
    ///   pht train init counts --lang python --base 127.0.0.1:5000/bases/python@sha256:…
    Init {
        /// The train's name (lower-case letters, digits, `-`, `_`).
        name: String,
        /// Directory to create (default: NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The language of the analysis.
        #[arg(long, value_enum, default_value = "rust")]
        lang: LanguageArg,
        /// The base image, REPOSITORY@sha256:… (Python and R trains).
        #[arg(long)]
        base: Option<String>,
    },
    /// Validate train.yaml and build the image through the Docker Engine.
    ///
    /// When the directory holds a Cargo.toml, the train is first compiled as a static binary
    /// into bin/NAME. The manifest is stored in the image label org.pht.train.v1, so signing
    /// the image digest signs the declared contract too.
    Build {
        /// The train directory (with train.yaml and Dockerfile).
        dir: PathBuf,
        /// Image name to tag the build with, e.g. 127.0.0.1:5000/trains/NAME:VERSION
        /// (default pht.local/NAME:VERSION).
        #[arg(long)]
        tag: Option<String>,
        /// Do not compile a Cargo project first; use bin/ as it is.
        #[arg(long)]
        no_compile: bool,
    },
    /// Push a built train to a registry and print REPO@sha256:… (the reference to sign and run).
    Push {
        /// Registry reference with a tag, e.g. 127.0.0.1:5000/trains/cohort-stats:0.1.0.
        reference: String,
        /// The local image to push, if not tagged as REFERENCE.
        #[arg(long)]
        image: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Sign a train's manifest digest, cosign-compatibly (tag sha256-<hex>.sig).
    Sign {
        reference: String,
        /// The private key.
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Verify a train's signature under a public key, and explain any failure.
    Verify {
        reference: String,
        /// The signer's public key (PEM).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Show a train's digest, manifest, labels and signatures.
    Inspect {
        reference: String,
        /// Public keys to check the signatures against (repeatable): each signature shows which
        /// one verified it.
        #[arg(long)]
        key: Vec<PathBuf>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

async fn run(cli: Cli) -> CommandResult {
    let output = Output { json: cli.json };
    match cli.command {
        Commands::Key(KeyCommand::Generate {
            algorithm,
            name,
            dir,
            force,
        }) => {
            let algorithm = match algorithm {
                AlgorithmArg::Ed25519 => KeyAlgorithm::Ed25519,
                AlgorithmArg::P256 => KeyAlgorithm::P256,
            };
            commands::key::generate(output, algorithm, &dir, &name, force)
        }
        Commands::Train(command) => match command {
            TrainCommand::Init {
                name,
                dir,
                lang,
                base,
            } => {
                let language = match lang {
                    LanguageArg::Rust => commands::scaffold::Language::Rust,
                    LanguageArg::Python => commands::scaffold::Language::Python,
                    LanguageArg::R => commands::scaffold::Language::R,
                };
                commands::train::init(output, &name, dir.as_deref(), language, base.as_deref())
            }
            TrainCommand::Build {
                dir,
                tag,
                no_compile,
            } => commands::train::build(output, &dir, tag.as_deref(), !no_compile).await,
            TrainCommand::Push {
                reference,
                image,
                registry,
            } => {
                commands::train::push(output, &registry.client(), &reference, image.as_deref())
                    .await
            }
            TrainCommand::Sign {
                reference,
                key,
                registry,
            } => commands::train::sign(output, &registry.client(), &reference, &key).await,
            TrainCommand::Verify {
                reference,
                key,
                registry,
            } => commands::train::verify(output, &registry.client(), &reference, &key).await,
            TrainCommand::Inspect {
                reference,
                key,
                registry,
            } => commands::train::inspect(output, &registry.client(), &reference, &key).await,
        },
        Commands::Base(BaseCommand::Build {
            kind,
            tag,
            key,
            packages,
            mirror,
            rebuild,
            registry,
        }) => {
            let kind = match kind {
                BaseArg::Python => pht_base::BaseKind::Python,
                BaseArg::R => pht_base::BaseKind::R,
            };
            commands::base::build(
                output,
                &registry.client(),
                commands::base::BaseBuild {
                    kind,
                    tag: &tag,
                    key_path: &key,
                    packages_path: packages.as_deref(),
                    mirror: &mirror,
                    rebuild,
                },
            )
            .await
        }
        Commands::Submit(arguments) => {
            let request = SubmitRequest {
                train_reference: arguments.train,
                route_stations: arguments.route,
                route_mode: if arguments.sequential {
                    RouteMode::Sequential
                } else {
                    RouteMode::Parallel
                },
                parameters: arguments.parameters,
                station_parameters: arguments.station_parameters,
                recipient: arguments.recipient,
                recipient_file: arguments.recipient_file,
                expires_in: arguments.expires_in,
            };
            jobs::submit(output, &arguments.hub.login()?, &request).await
        }
        Commands::Status(arguments) => {
            let watch = arguments.watch.then_some(arguments.timeout);
            jobs::status(output, &arguments.hub.login()?, arguments.job, watch).await
        }
        Commands::Results(ResultsArgs {
            command:
                Some(ResultsCommand::Open {
                    bundle,
                    identity,
                    station_key,
                    out,
                }),
            ..
        }) => commands::results::open(output, &bundle, &identity, &station_key, &out),
        Commands::Results(ResultsArgs {
            command: None,
            job,
            out,
            identity,
            station_keys,
            hub,
        }) => {
            let (Some(job_id), Some(out_dir), Some(identity_path)) = (job, out, identity) else {
                return Err(fail(
                    FailureKind::Input,
                    "pht results needs JOB, --out and --identity (or the `open` subcommand)",
                ));
            };
            let request = JobResultsRequest {
                out_dir,
                identity_path,
                station_keys,
            };
            jobs::results(output, &hub.login()?, job_id, &request).await
        }
        Commands::SignBlob {
            key,
            output_signature,
            file,
        } => commands::blob::sign(output, &key, &file, output_signature.as_deref()),
        Commands::VerifyBlob {
            key,
            signature,
            file,
        } => commands::blob::verify(output, &key, &signature, &file),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("PHT_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if json {
                let error = serde_json::json!({"error": format!("{:#}", failure.error), "kind": failure.kind.label()});
                eprintln!("{error}");
            } else {
                eprintln!("error ({}): {:#}", failure.kind.label(), failure.error);
            }
            failure.kind.exit_code()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;
    use clap::Parser as _;

    use super::*;

    const JOB: &str = "6f1e2d3c-4b5a-4978-8877-665544332211";

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(arguments: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pht").chain(arguments.iter().copied()))
    }

    #[test]
    fn results_with_a_job_id_fetches_from_the_hub() {
        let cli = parse(&[
            "results",
            JOB,
            "--out",
            "r",
            "--identity",
            "a.age",
            "--station-key",
            "umc=umc.pub",
            "--hub",
            "http://127.0.0.1:8080",
            "--researcher",
            "alice",
            "--key",
            "a.key",
        ])
        .unwrap();
        let Commands::Results(arguments) = cli.command else {
            panic!("not results: {cli:?}");
        };
        assert!(arguments.command.is_none());
        assert_eq!(arguments.job.unwrap().to_string(), JOB);
        assert_eq!(arguments.station_keys[0].station, "umc");
    }

    #[test]
    fn results_open_still_opens_one_bundle_without_hub_arguments() {
        let cli = parse(&[
            "results",
            "open",
            "result.age",
            "--identity",
            "a.age",
            "--station-key",
            "umc.pub",
            "--out",
            "r",
        ])
        .unwrap();
        let Commands::Results(ResultsArgs {
            command: Some(ResultsCommand::Open { bundle, .. }),
            ..
        }) = cli.command
        else {
            panic!("not results open: {cli:?}");
        };
        assert_eq!(bundle, PathBuf::from("result.age"));
    }

    #[test]
    fn results_job_needs_its_arguments() {
        assert!(parse(&["results", JOB, "--out", "r"]).is_err());
    }

    #[test]
    fn submit_collects_route_and_parameters() {
        let cli = parse(&[
            "submit",
            "127.0.0.1:5000/trains/x@sha256:00",
            "--route",
            "a,b",
            "--sequential",
            "--param",
            "n=10",
            "--param-for",
            "b:label=x",
            "--hub",
            "http://h",
            "--researcher",
            "alice",
            "--key",
            "a.key",
        ])
        .unwrap();
        let Commands::Submit(arguments) = cli.command else {
            panic!("not submit: {cli:?}");
        };
        assert_eq!(arguments.route, ["a", "b"]);
        assert!(arguments.sequential);
        assert_eq!(arguments.parameters[0].value, serde_json::json!(10));
        assert_eq!(arguments.station_parameters[0].station, "b");
        assert_eq!(arguments.expires_in, Duration::from_secs(24 * 3600));
    }
}
