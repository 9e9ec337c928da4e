//! A deliberately hostile train for the sandbox tests.
//!
//! It reads `/input/params.json`, tries the one escape its `mode` names, and reports what it
//! observed as `key=value` lines, both on stdout (as it goes, so a process that gets killed still
//! leaves evidence in the logs) and in `/output/report.txt` (at the end, when it can). It does not
//! judge its own attempts: whether "connected" or "failed" is the right answer is for the tests to
//! say. It is std-only and built as one static binary for a `FROM scratch` image.
//!
//! Modes that attack: `net-tcp`, `net-loopback`, `dns`, `forkbomb`, `memhog`, `spin`,
//! `write-data`, `write-root`, `big-output`, `symlink-passwd`, `symlink-data`, `docker-socket`,
//! `whoami`, `environ` (reads `/proc/1/environ`), `log-flood`, `copy-data` (copies a dataset file to `/output`), `smuggle` (carries
//! rows from one stop of a sequential route to the next in its state and releases them there;
//! see [`mode_smuggle`]). Modes that help the
//! tests: `ok` (a well-behaved train), `exit` (exit with
//! a chosen code) and `listen` (a TCP listener that logs every connection it accepts).
//! `big-output` writes to `/output/big.bin`, or to the `path` its params name.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

const PARAMS_PATH: &str = "/input/params.json";
const REPORT_PATH: &str = "/output/report.txt";

/// Argument a child process receives when `forkbomb` checks whether it may still spawn processes.
const CHILD_SLEEP_ARGUMENT: &str = "--child-sleep";
/// Argument a copy of this binary receives when `write-root` checks whether `/tmp` allows exec.
const CHILD_EXIT_ARGUMENT: &str = "--child-exit";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().collect();
    match arguments.get(1).map(String::as_str) {
        Some(CHILD_SLEEP_ARGUMENT) => {
            std::thread::sleep(Duration::from_secs(60));
            return ExitCode::SUCCESS;
        }
        Some(CHILD_EXIT_ARGUMENT) => return ExitCode::SUCCESS,
        _ => {}
    }

    let params_text = match fs::read_to_string(PARAMS_PATH) {
        Ok(text) => text,
        Err(error) => {
            println!("params=failed: cannot read {PARAMS_PATH}: {error}");
            return ExitCode::from(2);
        }
    };
    let params = match parse_flat_json_object(&params_text) {
        Ok(params) => params,
        Err(message) => {
            println!("params=failed: {PARAMS_PATH} is not a flat JSON object: {message}");
            return ExitCode::from(2);
        }
    };
    let mode = params.get("mode").cloned().unwrap_or_default();
    let mut report = Report::default();
    report.record("mode", &mode);

    let exit_code = match mode.as_str() {
        "ok" => mode_ok(&params, &mut report),
        "exit" => mode_exit(&params, &mut report),
        "listen" => mode_listen(&params, &mut report),
        "net-tcp" => mode_net_tcp(&params, &mut report),
        "net-loopback" => mode_net_loopback(&params, &mut report),
        "dns" => mode_dns(&params, &mut report),
        "forkbomb" => mode_forkbomb(&params, &mut report),
        "memhog" => mode_memhog(&params, &mut report),
        "spin" => mode_spin(&mut report),
        "write-data" => mode_write_data(&params, &mut report),
        "write-root" => mode_write_root(&mut report),
        "big-output" => mode_big_output(&params, &mut report),
        "symlink-passwd" => mode_symlink_passwd(&mut report),
        "symlink-data" => mode_symlink_data(&params, &mut report),
        "docker-socket" => mode_docker_socket(&mut report),
        "copy-data" => mode_copy_data(&params, &mut report),
        "sum" => mode_sum(&params, &mut report),
        "count" => mode_count(&params, &mut report),
        "smuggle" => mode_smuggle(&params, &mut report),
        "whoami" => mode_whoami(&mut report),
        "environ" => mode_environ(&mut report),
        "log-flood" => mode_log_flood(&params, &mut report),
        "print" => mode_print(&params, &mut report),
        unknown => {
            report.record("error", &format!("unknown mode {unknown:?}"));
            2
        }
    };
    report.write_to_output();
    ExitCode::from(exit_code)
}

/// What the program observed, in the order it observed it.
#[derive(Default)]
struct Report {
    lines: Vec<String>,
}

impl Report {
    fn record(&mut self, key: &str, value: &str) {
        let line = format!("{key}={value}");
        println!("{line}");
        self.lines.push(line);
    }

    fn write_to_output(&self) {
        let mut text = self.lines.join("\n");
        text.push('\n');
        if let Err(error) = fs::write(REPORT_PATH, text) {
            println!("report_write=failed: {error}");
        }
    }
}

/// "ok" for success, "failed: <error>" otherwise: the one vocabulary the tests match on.
fn describe<T>(result: io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(error) => format!("failed: {error}"),
    }
}

fn required<'a>(params: &'a BTreeMap<String, String>, key: &str) -> Result<&'a str, String> {
    params
        .get(key)
        .map(String::as_str)
        .ok_or_else(|| format!("params.json has no {key:?}"))
}

fn number_or(params: &BTreeMap<String, String>, key: &str, default: u64) -> u64 {
    params
        .get(key)
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn mode_ok(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    // A well-behaved train: reads its dataset, writes a result and a nested file.
    if let (Ok(dataset), Ok(file)) = (required(params, "dataset"), required(params, "file")) {
        let dataset_path = format!("/data/{dataset}/{file}");
        match fs::read_to_string(&dataset_path) {
            Ok(text) => {
                let n_rows = text.lines().count();
                report.record("dataset_read", &format!("ok rows={n_rows}"));
                report.record(
                    "result_write",
                    &describe(fs::write("/output/result.txt", format!("rows={n_rows}\n"))),
                );
            }
            Err(error) => report.record("dataset_read", &format!("failed: {error}")),
        }
    }
    let nested = fs::create_dir_all("/output/tables")
        .and_then(|()| fs::write("/output/tables/summary.csv", "group,count\na,12\nb,15\n"));
    report.record("nested_write", &describe(nested));
    eprintln!("a line on stderr");
    0
}

fn mode_exit(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let code = number_or(params, "code", 3).min(255) as u8;
    report.record("exiting_with", &code.to_string());
    eprintln!("exiting with {code}");
    code
}

fn mode_listen(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let port = number_or(params, "port", 7000) as u16;
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(listener) => listener,
        Err(error) => {
            report.record("listen", &format!("failed: {error}"));
            return 1;
        }
    };
    report.record("listen", &format!("ok port={port}"));
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let peer = stream
                    .peer_addr()
                    .map(|address| address.to_string())
                    .unwrap_or_else(|error| format!("unknown ({error})"));
                report.record("accepted", &peer);
            }
            Err(error) => report.record("accept", &format!("failed: {error}")),
        }
    }
    0
}

fn connect_and_report(address: SocketAddr, report: &mut Report) -> u8 {
    report.record("tcp_target", &address.to_string());
    match TcpStream::connect_timeout(&address, Duration::from_secs(3)) {
        Ok(mut stream) => {
            let _ = stream.write_all(b"hello from inside the sandbox\n");
            report.record("tcp_connect", "connected");
        }
        Err(error) => report.record("tcp_connect", &format!("failed: {error}")),
    }
    0
}

fn mode_net_tcp(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let host = match required(params, "host").map(str::parse::<IpAddr>) {
        Ok(Ok(host)) => host,
        Ok(Err(error)) => {
            report.record("error", &format!("host is not an IP address: {error}"));
            return 2;
        }
        Err(message) => {
            report.record("error", &message);
            return 2;
        }
    };
    let port = number_or(params, "port", 7000) as u16;
    connect_and_report(SocketAddr::new(host, port), report)
}

fn mode_net_loopback(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let port = number_or(params, "port", 7000) as u16;
    connect_and_report(SocketAddr::from(([127, 0, 0, 1], port)), report)
}

fn mode_dns(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let name = params
        .get("name")
        .cloned()
        .unwrap_or_else(|| "example.com".to_string());
    report.record("dns_name", &name);
    match (name.as_str(), 80).to_socket_addrs() {
        Ok(addresses) => {
            let addresses: Vec<String> = addresses.map(|address| address.to_string()).collect();
            report.record("dns", &format!("resolved {}", addresses.join(" ")));
        }
        Err(error) => report.record("dns", &format!("failed: {error}")),
    }
    0
}

fn mode_forkbomb(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    // Threads count against the pids limit like processes do; they are cheaper to make in bulk.
    let max_tasks = number_or(params, "max", 10_000);
    let mut n_threads_spawned: u64 = 0;
    let mut thread_error = String::from("none");
    while n_threads_spawned < max_tasks {
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| loop {
                std::thread::park();
            });
        match spawned {
            Ok(_) => n_threads_spawned += 1,
            Err(error) => {
                thread_error = error.to_string();
                break;
            }
        }
    }
    report.record("threads_spawned", &n_threads_spawned.to_string());
    report.record("thread_error", &thread_error);
    // Once threads are exhausted, a whole new process must be refused too.
    match Command::new("/proc/self/exe")
        .arg(CHILD_SLEEP_ARGUMENT)
        .spawn()
    {
        Ok(mut child) => {
            report.record("process_spawn", "ok");
            let _ = child.kill();
            let _ = child.wait();
        }
        Err(error) => report.record("process_spawn", &format!("failed: {error}")),
    }
    0
}

fn mode_memhog(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    const CHUNK_BYTES: usize = 1024 * 1024;
    let max_mib = number_or(params, "max_mib", 4096);
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for mib_idx in 1..=max_mib {
        let mut chunk = vec![0u8; CHUNK_BYTES];
        // Touch every page so the memory is really committed, not just reserved.
        for byte_idx in (0..CHUNK_BYTES).step_by(4096) {
            chunk[byte_idx] = (mib_idx % 251) as u8 + 1;
        }
        chunks.push(chunk);
        if mib_idx % 16 == 0 {
            println!("allocated_mib={mib_idx}");
        }
    }
    report.record(
        "memhog",
        &format!("not killed after allocating {} MiB", chunks.len()),
    );
    0
}

fn mode_spin(report: &mut Report) -> u8 {
    report.record("spin", "started");
    let mut counter: u64 = 0;
    loop {
        counter = std::hint::black_box(counter.wrapping_add(1));
    }
}

fn mode_write_data(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let (dataset, file) = match (required(params, "dataset"), required(params, "file")) {
        (Ok(dataset), Ok(file)) => (dataset, file),
        (Err(message), _) | (_, Err(message)) => {
            report.record("error", &message);
            return 2;
        }
    };
    let new_file = format!("/data/{dataset}/x");
    report.record(
        "write_data_create",
        &describe(fs::write(&new_file, "pwned")),
    );
    let existing_file = format!("/data/{dataset}/{file}");
    let append = fs::OpenOptions::new()
        .append(true)
        .open(&existing_file)
        .and_then(|mut handle| handle.write_all(b"pwned\n"));
    report.record("write_data_append", &describe(append));
    report.record(
        "write_data_remove",
        &describe(fs::remove_file(&existing_file)),
    );
    0
}

fn mode_write_root(report: &mut Report) -> u8 {
    report.record("write_root", &describe(fs::write("/pwned", "pwned")));
    report.record("write_input", &describe(fs::write(PARAMS_PATH, "{}")));
    report.record("tmp_write", &describe(fs::write("/tmp/probe", "scratch")));
    // /tmp is writable scratch space, but nothing written there may be executed.
    let copy_then_exec = fs::copy("/proc/self/exe", "/tmp/hostile-copy")
        .and_then(|_| fs::set_permissions("/tmp/hostile-copy", fs::Permissions::from_mode(0o755)))
        .and_then(|()| {
            Command::new("/tmp/hostile-copy")
                .arg(CHILD_EXIT_ARGUMENT)
                .status()
        });
    report.record("tmp_exec", &describe(copy_then_exec));
    0
}

fn mode_big_output(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let bytes_to_try = number_or(params, "bytes", 64 * 1024 * 1024);
    let path = params
        .get("path")
        .cloned()
        .unwrap_or_else(|| "/output/big.bin".to_string());
    report.record("big_output_path", &path);
    let chunk = vec![b'x'; 64 * 1024];
    let mut n_bytes_written: u64 = 0;
    let mut write_error = String::from("none");
    match fs::File::create(&path) {
        Ok(mut handle) => {
            while n_bytes_written < bytes_to_try {
                match handle.write(&chunk) {
                    Ok(0) => {
                        write_error = "wrote zero bytes".to_string();
                        break;
                    }
                    Ok(n_bytes) => n_bytes_written += n_bytes as u64,
                    Err(error) => {
                        write_error = error.to_string();
                        break;
                    }
                }
            }
        }
        Err(error) => write_error = format!("create failed: {error}"),
    }
    report.record("big_output_written", &n_bytes_written.to_string());
    report.record("big_output_error", &write_error);
    0
}

fn mode_symlink_passwd(report: &mut Report) -> u8 {
    let absolute = std::os::unix::fs::symlink("/etc/passwd", "/output/leak");
    report.record("symlink_passwd", &describe(absolute));
    let relative = std::os::unix::fs::symlink("../../../../etc/passwd", "/output/leak-relative");
    report.record("symlink_passwd_relative", &describe(relative));
    let directory = std::os::unix::fs::symlink("/etc", "/output/etc");
    report.record("symlink_etc_directory", &describe(directory));
    0
}

fn mode_symlink_data(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let (dataset, file) = match (required(params, "dataset"), required(params, "file")) {
        (Ok(dataset), Ok(file)) => (dataset, file),
        (Err(message), _) | (_, Err(message)) => {
            report.record("error", &message);
            return 2;
        }
    };
    let target = format!("/data/{dataset}/{file}");
    report.record(
        "symlink_data",
        &describe(std::os::unix::fs::symlink(&target, "/output/leak")),
    );
    report.record(
        "symlink_data_directory",
        &describe(std::os::unix::fs::symlink(
            format!("/data/{dataset}"),
            "/output/dataset",
        )),
    );
    // A hard link would carry the bytes themselves; it must fail across file systems.
    report.record(
        "hardlink_data",
        &describe(fs::hard_link(&target, "/output/hard")),
    );
    0
}

/// Copies a dataset file to `/output` unchanged: the leak the output checks must block.
fn mode_copy_data(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let (dataset, file) = match (required(params, "dataset"), required(params, "file")) {
        (Ok(dataset), Ok(file)) => (dataset, file),
        (Err(message), _) | (_, Err(message)) => {
            report.record("error", &message);
            return 2;
        }
    };
    let copied = fs::copy(format!("/data/{dataset}/{file}"), format!("/output/{file}"));
    report.record("copy_data", &describe(copied));
    0
}

/// Counts the rows of `/data/<dataset>/<file>` per value of column `name` into
/// `/output/counts.csv` (`<name>,n`), leaving out the first `offset` data rows: two such tables
/// differ by exactly the rows left out (a differencing attack).
fn mode_count(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let wanted = ["dataset", "file", "name"].map(|key| required(params, key));
    let [Ok(dataset), Ok(file), Ok(group)] = wanted else {
        report.record("error", "count needs dataset, file and name");
        return 2;
    };
    let text = match fs::read_to_string(format!("/data/{dataset}/{file}")) {
        Ok(text) => text,
        Err(error) => {
            report.record("dataset_read", &format!("failed: {error}"));
            return 1;
        }
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let Some(group_index) = header.iter().position(|name| name == &group) else {
        report.record("error", "the dataset lacks the named column");
        return 2;
    };
    let offset = number_or(params, "offset", 0) as usize;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for line in lines.skip(offset) {
        if let Some(key) = line.split(',').nth(group_index) {
            *counts.entry(key.to_string()).or_default() += 1;
        }
    }
    let mut table = format!("{group},n\n");
    for (key, count) in &counts {
        table.push_str(&format!("{key},{count}\n"));
    }
    report.record("write_counts", &describe(fs::write("/output/counts.csv", table)));
    0
}

/// Sums column `column` of `/data/<dataset>/<file>` per value of column `name` into
/// `/output/sums.csv` (`<name>,<column>`), adding `offset` to the first group's sum: a train
/// whose magnitude table does (offset 0) or does not match what it declares.
fn mode_sum(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let wanted = ["dataset", "file", "name", "column"].map(|key| required(params, key));
    let [Ok(dataset), Ok(file), Ok(group), Ok(column)] = wanted else {
        report.record("error", "sum needs dataset, file, name and column");
        return 2;
    };
    let text = match fs::read_to_string(format!("/data/{dataset}/{file}")) {
        Ok(text) => text,
        Err(error) => {
            report.record("dataset_read", &format!("failed: {error}"));
            return 1;
        }
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let (Some(group_index), Some(column_index)) = (
        header.iter().position(|name| name == &group),
        header.iter().position(|name| name == &column),
    ) else {
        report.record("error", "the dataset lacks the named columns");
        return 2;
    };
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        if let (Some(key), Some(value)) = (cells.get(group_index), cells.get(column_index)) {
            *sums.entry(key.to_string()).or_default() += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    let offset = number_or(params, "offset", 0) as f64;
    let mut table = format!("{group},{column}\n");
    for (index, (key, sum)) in sums.iter().enumerate() {
        let sum = if index == 0 { sum + offset } else { *sum };
        table.push_str(&format!("{key},{sum}\n"));
    }
    report.record("write_sums", &describe(fs::write("/output/sums.csv", table)));
    0
}

/// At a stop that received no state: copies `rows` rows (0: all) of `/data/<dataset>/<file>`
/// into the declared state `/output/state.csv` — verbatim, or with every cell reversed when
/// `disguise` is `true`, so they no longer look like this station's rows. At a stop that
/// received `/input/state/state.csv`: writes its rows, verbatim, split over `parts` declared
/// tables `/output/part-<n>.csv` — releasing the previous station's rows here.
fn mode_smuggle(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    if let Ok(state) = fs::read_to_string("/input/state/state.csv") {
        let mut lines = state.lines();
        let header = lines.next().unwrap_or_default();
        let rows: Vec<&str> = lines.collect();
        let parts = number_or(params, "parts", 2).max(1) as usize;
        let per_part = rows.len().div_ceil(parts).max(1);
        for (part_index, chunk) in rows.chunks(per_part).enumerate() {
            let mut text = format!("{header}\n");
            for row in chunk {
                text.push_str(row);
                text.push('\n');
            }
            let written = fs::write(format!("/output/part-{}.csv", part_index + 1), text);
            report.record(&format!("release_part_{}", part_index + 1), &describe(written));
        }
        report.record("released_rows", &rows.len().to_string());
        return 0;
    }
    let (dataset, file) = match (required(params, "dataset"), required(params, "file")) {
        (Ok(dataset), Ok(file)) => (dataset, file),
        (Err(message), _) | (_, Err(message)) => {
            report.record("error", &message);
            return 2;
        }
    };
    let text = match fs::read_to_string(format!("/data/{dataset}/{file}")) {
        Ok(text) => text,
        Err(error) => {
            report.record("read_data", &format!("failed: {error}"));
            return 2;
        }
    };
    let disguise = params.get("disguise").is_some_and(|value| value == "true");
    let wanted = number_or(params, "rows", 0) as usize;
    let mut lines = text.lines();
    let mut state = format!("{}\n", lines.next().unwrap_or_default());
    let mut n_rows = 0;
    for line in lines.take(if wanted == 0 { usize::MAX } else { wanted }) {
        let row = if disguise {
            line.split(',')
                .map(|cell| cell.chars().rev().collect::<String>())
                .collect::<Vec<_>>()
                .join(",")
        } else {
            line.to_string()
        };
        state.push_str(&row);
        state.push('\n');
        n_rows += 1;
    }
    let written = fs::write("/output/state.csv", state);
    report.record("smuggle_rows", &format!("{n_rows} {}", describe(written)));
    0
}

fn mode_docker_socket(report: &mut Report) -> u8 {
    for (key, path) in [
        ("docker_sock_var_run", "/var/run/docker.sock"),
        ("docker_sock_run", "/run/docker.sock"),
    ] {
        let state = match fs::symlink_metadata(path) {
            Ok(_) => "present".to_string(),
            Err(error) if error.kind() == io::ErrorKind::NotFound => "absent".to_string(),
            Err(error) => format!("unknown: {error}"),
        };
        report.record(key, &state);
        let connect = std::os::unix::net::UnixStream::connect(path);
        report.record(&format!("{key}_connect"), &describe(connect));
    }
    0
}

/// Reads the environment of process 1 (in the sandbox's own PID namespace, the train itself)
/// and reports it whole: the test says whether anything of the station's leaked into it.
fn mode_environ(report: &mut Report) -> u8 {
    match fs::read("/proc/1/environ") {
        Ok(bytes) => {
            let mut entries: Vec<String> = bytes
                .split(|&byte| byte == 0)
                .filter(|entry| !entry.is_empty())
                .map(|entry| String::from_utf8_lossy(entry).into_owned())
                .collect();
            entries.sort();
            let names: Vec<&str> = entries
                .iter()
                .map(|entry| entry.split('=').next().unwrap_or_default())
                .collect();
            report.record("environ_pid1", "read");
            report.record("environ_names", &names.join(","));
            report.record("environ", &entries.join(" "));
        }
        Err(error) => report.record("environ_pid1", &format!("failed: {error}")),
    }
    0
}

fn mode_whoami(report: &mut Report) -> u8 {
    let mut status_text = String::new();
    match fs::File::open("/proc/self/status").and_then(|mut f| f.read_to_string(&mut status_text)) {
        Ok(_) => {
            for line in status_text.lines() {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                if matches!(
                    name,
                    "Uid"
                        | "Gid"
                        | "Groups"
                        | "CapInh"
                        | "CapPrm"
                        | "CapEff"
                        | "CapBnd"
                        | "CapAmb"
                        | "NoNewPrivs"
                        | "Seccomp"
                ) {
                    let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
                    report.record(name, &value);
                }
            }
        }
        Err(error) => report.record("status", &format!("failed: {error}")),
    }
    report.record(
        "root_fs_writable",
        &describe(fs::write("/whoami-probe", "x")),
    );
    report.record("output_dir", &describe(Path::new("/output").metadata()));
    0
}

/// Says `text` everywhere a train can: stdout, stderr and its report, then exits with `code`
/// (default 0). Tests feed it a personal identifier and look for it where it must not be.
fn mode_print(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let text = params.get("text").cloned().unwrap_or_default();
    println!("stdout: {text}");
    eprintln!("stderr: {text}");
    report.record("text", &text);
    number_or(params, "code", 0).min(255) as u8
}

fn mode_log_flood(params: &BTreeMap<String, String>, report: &mut Report) -> u8 {
    let bytes_to_write = number_or(params, "bytes", 1024 * 1024);
    let mut n_bytes_written: u64 = 0;
    let stdout = io::stdout();
    let mut stdout = stdout.lock();
    let mut line_idx: u64 = 0;
    while n_bytes_written < bytes_to_write {
        let line =
            format!("flood line {line_idx:08} ................................................\n");
        if stdout.write_all(line.as_bytes()).is_err() {
            break;
        }
        n_bytes_written += line.len() as u64;
        line_idx += 1;
    }
    drop(stdout);
    report.record("log_flood_bytes", &n_bytes_written.to_string());
    0
}

/// Parses `{"key": "string" | number | true | false | null, ...}` into strings. Nested values are
/// refused: params for this program are flat by construction.
fn parse_flat_json_object(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut parser = FlatJsonParser {
        chars: text.chars().collect(),
        position: 0,
    };
    let mut object = BTreeMap::new();
    parser.skip_whitespace();
    parser.expect('{')?;
    parser.skip_whitespace();
    if parser.peek() == Some('}') {
        return Ok(object);
    }
    loop {
        parser.skip_whitespace();
        let key = parser.string()?;
        parser.skip_whitespace();
        parser.expect(':')?;
        parser.skip_whitespace();
        let value = match parser.peek() {
            Some('"') => parser.string()?,
            Some(_) => parser.bare_token()?,
            None => return Err("unexpected end after ':'".to_string()),
        };
        object.insert(key, value);
        parser.skip_whitespace();
        match parser.next() {
            Some(',') => continue,
            Some('}') => return Ok(object),
            other => return Err(format!("expected ',' or '}}', found {other:?}")),
        }
    }
}

struct FlatJsonParser {
    chars: Vec<char>,
    position: usize,
}

impl FlatJsonParser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.position).copied()
    }

    fn next(&mut self) -> Option<char> {
        let character = self.peek();
        self.position += 1;
        character
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.position += 1;
        }
    }

    fn expect(&mut self, expected: char) -> Result<(), String> {
        match self.next() {
            Some(found) if found == expected => Ok(()),
            other => Err(format!("expected {expected:?}, found {other:?}")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut value = String::new();
        loop {
            match self.next() {
                Some('"') => return Ok(value),
                Some('\\') => match self.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some('r') => value.push('\r'),
                    Some('u') => {
                        let hex: String = (0..4).filter_map(|_| self.next()).collect();
                        let code = u32::from_str_radix(&hex, 16)
                            .map_err(|error| format!("bad \\u escape {hex:?}: {error}"))?;
                        value.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                    }
                    Some(other) => value.push(other),
                    None => return Err("unterminated escape".to_string()),
                },
                Some(other) => value.push(other),
                None => return Err("unterminated string".to_string()),
            }
        }
    }

    fn bare_token(&mut self) -> Result<String, String> {
        let mut token = String::new();
        while let Some(character) = self.peek() {
            if character == ',' || character == '}' || character.is_whitespace() {
                break;
            }
            if character == '{' || character == '[' {
                return Err("nested values are not supported".to_string());
            }
            token.push(character);
            self.position += 1;
        }
        if token.is_empty() {
            return Err("empty value".to_string());
        }
        Ok(token)
    }
}
