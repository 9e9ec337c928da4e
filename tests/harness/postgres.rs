//! A real PostgreSQL server for a test: Debian's `postgresql` binaries, a cluster made by
//! `initdb` in a temporary directory, listening on a free loopback port (and a socket in that
//! directory), stopped and removed when the value is dropped.
//!
//! PostgreSQL refuses to run as root: when the tests run as root (as CI does), the cluster
//! belongs to the `postgres` user that Debian's package creates and every PostgreSQL command
//! runs through `runuser`. The server trusts local connections for the `pht` role and nothing
//! leaves loopback. For tests `fsync` is off: these servers are stopped cleanly or thrown away,
//! never power-cut, and a test suite that fsyncs every commit of every test spends its time
//! waiting on the disk. Benchmarks start a durable one ([`PostgresServer::start_durable`]:
//! PostgreSQL's defaults, fsync and synchronous commit on), to compare like with like.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

/// The role the tests connect as (a superuser of the test cluster).
pub const ROLE: &str = "pht";

/// A running (or stopped) PostgreSQL cluster owned by one test.
#[derive(Debug)]
pub struct PostgresServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    server: Option<Child>,
    durable: bool,
}

/// The directory of Debian's PostgreSQL server binaries (`/usr/lib/postgresql/<major>/bin`),
/// the newest if several are installed.
fn server_binaries() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let major: u32 = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").exists().then_some((major, bin))
            })
            .max()
    });
    match newest {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL's server binaries are missing under {}: install Debian's `postgresql` \
             package (scripts/install-deps.sh does)",
            root.display()
        ),
    }
}

fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `id -u postgres` / `id -g postgres`: the user the cluster runs as under root.
fn postgres_user_ids() -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run `id`");
        assert!(
            output.status.success(),
            "PostgreSQL does not run as root and there is no `postgres` user to run it as: \
             install Debian's `postgresql` package (it creates the user), or run the tests as \
             a user other than root"
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("`id` prints a number")
    };
    (id("-u"), id("-g"))
}

impl PostgresServer {
    /// A new cluster for tests (fsync off), started and accepting connections.
    pub fn start() -> PostgresServer {
        PostgresServer::start_with(false)
    }

    /// A new cluster with PostgreSQL's durable defaults (fsync, synchronous commit), for
    /// benchmarks that compare it with SQLite in FULL synchronous mode.
    pub fn start_durable() -> PostgresServer {
        PostgresServer::start_with(true)
    }

    fn start_with(durable: bool) -> PostgresServer {
        let bin = server_binaries();
        let dir = tempfile::Builder::new()
            .prefix("pht-postgres-")
            .tempdir()
            .expect("make a directory for the PostgreSQL cluster");
        if running_as_root() {
            let (uid, gid) = postgres_user_ids();
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("give the cluster's directory to the postgres user");
        }
        let mut server = PostgresServer {
            dir,
            bin,
            port: 0,
            server: None,
            durable,
        };
        let data = server.data_dir();
        let mut initdb = server.command("initdb");
        initdb.args([
            "--pgdata",
            &data.display().to_string(),
            "--username",
            ROLE,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
        ]);
        if !durable {
            initdb.arg("--no-sync");
        }
        run_quietly(initdb, "initdb");
        server.start_again();
        server
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A PostgreSQL command, as the `postgres` user when the tests run as root.
    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }

    /// Starts the server on this cluster (after [`PostgresServer::stop`]), on the same port,
    /// and waits until it accepts connections.
    pub fn start_again(&mut self) {
        assert!(self.server.is_none(), "the PostgreSQL server is running");
        // A port is chosen once and kept, so that URLs stay valid across a restart; a port taken
        // meanwhile by someone else fails the start, which then tries another.
        for attempt in 0..5 {
            if self.port == 0 || attempt > 0 {
                self.port = free_port();
            }
            let log = self.dir.path().join("server.log");
            let log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("open the PostgreSQL log");
            let child = self
                .command("postgres")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-k"])
                .arg(self.dir.path())
                .args([
                    "-c",
                    if self.durable {
                        "fsync=on"
                    } else {
                        "fsync=off"
                    },
                ])
                .args(["-c", "max_connections=300", "-c", "shared_buffers=128MB"])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("clone the log handle"))
                .stderr(log_file)
                .spawn()
                .expect("start postgres");
            self.server = Some(child);
            if self.wait_until_ready(Duration::from_secs(30)) {
                return;
            }
            self.kill();
            if attempt == 4 {
                panic!(
                    "PostgreSQL did not start; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
    }

    fn wait_until_ready(&mut self, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Some(child) = self.server.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.server = None;
                    return false;
                }
            }
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .stdin(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if ready {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Stops the server cleanly (fast shutdown: connections are closed, transactions in
    /// progress roll back), keeping the cluster for [`PostgresServer::start_again`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        let stopped = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "30", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !stopped {
            let _ = child.kill();
        }
        let _ = child.wait();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `name` on this server.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "database names here are lowercase letters, digits and `_`: {name}"
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|error| panic!("cannot create database {name}: {error}"));
        self.url(name)
    }

    /// Runs `sql` in database `name` and returns what `psql` printed (unaligned, tuples only).
    pub fn query(&self, name: &str, sql: &str) -> String {
        self.psql(name, sql)
            .unwrap_or_else(|error| panic!("query failed in {name}: {error}"))
    }

    /// `psql` as the test role on this server: what it printed, or its error output.
    fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let output = self
            .command("psql")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", ROLE])
            .args(["-d", database, "-v", "ON_ERROR_STOP=1", "-q", "-A", "-t"])
            .args(["-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Immediate shutdown: the cluster is removed with the directory anyway.
        if self.server.is_some() {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "-t", "10", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            self.kill();
        }
    }
}

fn run_quietly(mut command: Command, what: &str) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {what}: {error}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
