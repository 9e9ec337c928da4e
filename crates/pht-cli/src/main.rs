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

use clap::{Args, Parser, Subcommand, ValueEnum};
use pht_core::KeyAlgorithm;
use pht_registry::{Credentials, RegistryClient, RegistryOptions};

use crate::exit::CommandResult;
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
  pht train verify 127.0.0.1:5000/trains/my-train:0.1.0 --key ../alice.pub";

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

#[derive(Debug, Subcommand)]
enum Commands {
    /// Signing keys and the age identity that receives results.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Build, push, sign, verify and inspect trains.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Open, decrypt and verify sealed results.
    #[command(subcommand)]
    Results(ResultsCommand),
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
    /// Scaffold a train that builds offline: train.yaml, a Dockerfile FROM scratch and a Rust
    /// program compiled as a static binary.
    Init {
        /// The train's name (lower-case letters, digits, `-`, `_`).
        name: String,
        /// Directory to create (default: NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
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
            TrainCommand::Init { name, dir } => {
                commands::train::init(output, &name, dir.as_deref())
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
        Commands::Results(ResultsCommand::Open {
            bundle,
            identity,
            station_key,
            out,
        }) => commands::results::open(output, &bundle, &identity, &station_key, &out),
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

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
