//! `make bench`: the figures the issues ask for, each against a baseline measured in the same
//! run where one exists. Prints one line per figure; asserts nothing (timings on shared machines
//! are for reading, not for failing builds).

use std::process::Command;
use std::time::{Duration, Instant};

mod console;
mod magnitude;
mod station;
mod trains;

use pht_core::cosign;
use pht_core::{Digest, KeyAlgorithm, SigningKey};

/// Runs `work` repeatedly for at least `budget`, returning operations per second.
fn rate(budget: Duration, mut work: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut n_ops = 0u64;
    while start.elapsed() < budget {
        work();
        n_ops += 1;
    }
    n_ops as f64 / start.elapsed().as_secs_f64()
}

/// Median wall time of `runs` runs of a shell command.
fn command_seconds(program: &str, args: &[&str], runs: usize) -> Option<f64> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let status = Command::new(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Some(times[times.len() / 2])
}

fn signature_verification() {
    let digest = Digest::of(b"bench");
    for algorithm in [KeyAlgorithm::Ed25519, KeyAlgorithm::P256] {
        let key = SigningKey::generate(algorithm);
        let public_key = key.public_key();
        let signed = cosign::sign_image(&key, "127.0.0.1:5000/trains/bench", &digest);
        let per_second = rate(Duration::from_secs(2), || {
            cosign::verify_image_signature(&public_key, &signed, &digest)
                .expect("bench signature verifies");
        });
        println!("signature verification ({algorithm}): {per_second:.0} verifications/s (cosign simple-signing payload, one core)");
    }
}

fn digest_hashing() -> anyhow::Result<()> {
    const SIZE: usize = 256 << 20;
    let mut bytes = vec![0u8; SIZE];
    // Not all zeros, so nothing can shortcut; the content does not matter to SHA-256's speed.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for chunk in bytes.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), &bytes)?;
    let path = file.path().to_str().expect("temp paths are UTF-8");

    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let contents = std::fs::read(path)?;
        std::hint::black_box(Digest::of(&contents));
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let ours = times[1];
    let mb = SIZE as f64 / 1e6;
    let mut line = format!(
        "manifest-digest hashing: {:.0} MB/s (pht-core, file read + SHA-256 of {mb:.0} MB)",
        mb / ours
    );
    match command_seconds("sha256sum", &[path], 3) {
        Some(baseline) => line.push_str(&format!(
            "; sha256sum {:.0} MB/s; ratio {:.2}x sha256sum",
            mb / baseline,
            baseline / ours
        )),
        None => line.push_str("; sha256sum not available"),
    }
    if let Some(openssl) = command_seconds("openssl", &["dgst", "-sha256", path], 3) {
        line.push_str(&format!(
            "; openssl {:.0} MB/s; ratio {:.2}x openssl",
            mb / openssl,
            openssl / ours
        ));
    }
    println!("{line}");
    Ok(())
}

fn output_checks() {
    use pht_checks::{
        check_outputs, generate_benchmark_csv, CheckConfig, DeclaredOutput, OutputEntry,
    };
    let csv = generate_benchmark_csv(100_000_000);
    let megabytes = csv.len() as f64 / 1e6;
    let entries = [OutputEntry::regular("counts.csv", csv)];
    let config = CheckConfig::default();
    // Declared count columns, then none declared and none named by the policy: every count
    // column inferred from the table itself.
    let declared = [DeclaredOutput::table("counts.csv", ["n", "n_events"])];
    let undeclared = [DeclaredOutput::new(
        "counts.csv",
        pht_checks::OutputKind::Table,
    )];
    let inferring = CheckConfig {
        count_column_names: Vec::new(),
        ..CheckConfig::default()
    };
    let median_seconds = |declared: &[DeclaredOutput], config: &CheckConfig| {
        let mut times = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            std::hint::black_box(check_outputs(&entries, declared, &[], config));
            times.push(start.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        times[1]
    };
    let with_declarations = median_seconds(&declared, &config);
    let with_inference = median_seconds(&undeclared, &inferring);
    println!(
        "output checks: {:.0} MB/s on a generated {megabytes:.0} MB counts CSV with declared count columns; \
         {:.0} MB/s with every count column inferred ({:.2}x; one core, median of 3; goal >= 200 MB/s)",
        megabytes / with_declarations,
        megabytes / with_inference,
        with_inference / with_declarations
    );
    quasi_identifier_leakage();
}

/// The leakage index of a 1,000,000-row cohort (build time and memory) and the check of a
/// 100 MB output copying four of its columns, renamed and reordered, against it.
fn quasi_identifier_leakage() {
    use pht_checks::{check_outputs, CheckConfig, DatasetIndex, DeclaredOutput, OutputEntry};
    const N_ROWS: u64 = 1_000_000;
    const DIAGNOSES: [&str; 6] = [
        "copd",
        "asthma",
        "diabetes",
        "hypertension",
        "none",
        "cancer",
    ];
    const REGIONS: [&str; 4] = ["north", "east", "south", "west"];
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    let mut rows = Vec::with_capacity(N_ROWS as usize);
    for _ in 0..N_ROWS {
        let random = next();
        rows.push((
            1925 + random % 80,
            ["F", "M"][((random >> 7) % 2) as usize],
            DIAGNOSES[((random >> 8) % 6) as usize],
            format!("{}.{}", 16 + (random >> 11) % 30, (random >> 16) % 10),
            REGIONS[((random >> 20) % 4) as usize],
        ));
    }
    let mut dataset = String::from("patient_id,birth_year,sex,diagnosis,bmi,region\n");
    for (i, (year, sex, diagnosis, bmi, region)) in rows.iter().enumerate() {
        dataset.push_str(&format!(
            "P{i:07},{year},{sex},{diagnosis},{bmi},{region}\n"
        ));
    }
    let start = Instant::now();
    let dataset_index = DatasetIndex::from_csv("cohort", dataset.as_bytes());
    let build_seconds = start.elapsed().as_secs_f64();
    let memory_mib = dataset_index.memory_bytes() as f64 / (1 << 20) as f64;
    let mut output = String::from("bmi_value,gender,condition,yob\n");
    let mut i = 0;
    while output.len() < 100_000_000 {
        let (year, sex, diagnosis, bmi, _) = &rows[i % rows.len()];
        output.push_str(&format!("{bmi},{sex},{diagnosis},{year}\n"));
        i += 1;
    }
    let megabytes = output.len() as f64 / 1e6;
    let entries = [OutputEntry::regular("rows.csv", output.into_bytes())];
    let declared = [DeclaredOutput::new(
        "rows.csv",
        pht_checks::OutputKind::Table,
    )];
    let datasets = [dataset_index];
    let config = CheckConfig::default();
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        std::hint::black_box(check_outputs(&entries, &declared, &datasets, &config));
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "leakage index: {:.2} s to build for a {:.0} MB, {N_ROWS}-row dataset, {memory_mib:.0} MiB in memory; \
         quasi-identifier leakage check: {:.0} MB/s on a {megabytes:.0} MB output of four renamed, reordered columns \
         against it (median of 3; goal >= 50 MB/s)",
        build_seconds,
        dataset.len() as f64 / 1e6,
        megabytes / times[1]
    );
}

fn seal_throughput() -> anyhow::Result<()> {
    use pht_core::intoto::{CheckVerdict, ResultPredicateV1};
    const FILE_BYTES: usize = 4 << 20;
    const N_FILES: usize = 16;
    let files: Vec<(String, Vec<u8>)> = (0..N_FILES)
        .map(|i| {
            (
                format!("part{i:02}.csv"),
                vec![b'0' + (i as u8 % 10); FILE_BYTES],
            )
        })
        .collect();
    let total_mb = (FILE_BYTES * N_FILES) as f64 / 1e6;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let station_key = SigningKey::generate(KeyAlgorithm::Ed25519);
    let file_verdicts: Vec<(&str, CheckVerdict)> = files
        .iter()
        .map(|(path, _)| (path.as_str(), CheckVerdict::Pass))
        .collect();
    let predicate = ResultPredicateV1::example(CheckVerdict::Pass, &file_verdicts);
    let mut seal_times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        std::hint::black_box(pht_core::seal::seal_bundle(
            &files,
            b"{}",
            predicate.clone(),
            &station_key,
            std::slice::from_ref(&recipient),
        )?);
        seal_times.push(start.elapsed().as_secs_f64());
    }
    seal_times.sort_by(f64::total_cmp);
    let ours = seal_times[1];
    let mut line = format!(
        "seal (hash + sign + encrypt): {:.0} MB/s on {total_mb:.0} MB of outputs",
        total_mb / ours
    );
    let plain = tempfile::NamedTempFile::new()?;
    std::fs::write(
        plain.path(),
        files
            .iter()
            .flat_map(|(_, bytes)| bytes.iter().copied())
            .collect::<Vec<u8>>(),
    )?;
    let encrypted = tempfile::NamedTempFile::new()?;
    let plain_path = plain.path().to_str().expect("UTF-8 temp path");
    let encrypted_path = encrypted.path().to_str().expect("UTF-8 temp path");
    match command_seconds(
        "age",
        &["-r", &recipient, "-o", encrypted_path, plain_path],
        3,
    ) {
        Some(age_seconds) => line.push_str(&format!(
            "; raw `age` CLI {:.0} MB/s; seal runs at {:.2}x raw age",
            total_mb / age_seconds,
            age_seconds / ours
        )),
        None => line.push_str("; `age` CLI not available for the baseline"),
    }
    println!("{line}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    println!(
        "pht bench — {} (release build, one process; figures vary with machine load)",
        env!("CARGO_PKG_VERSION")
    );
    // `pht-bench station` runs only the station and hub figures, and so on.
    let only = std::env::args().nth(1);
    let wanted = |section: &str| only.as_deref().is_none_or(|only| only == section);
    if wanted("crypto") {
        signature_verification();
        digest_hashing()?;
    }
    if wanted("checks") {
        output_checks();
        seal_throughput()?;
    }
    if wanted("checks") || wanted("magnitude") {
        magnitude::recomputation();
        magnitude::ledger();
    }
    if wanted("station") {
        station::overhead()?;
    }
    if wanted("trains") {
        trains::pulls()?;
    }
    if wanted("console") {
        console::response_times()?;
    }
    Ok(())
}
