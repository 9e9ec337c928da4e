//! `make bench`: the figures the issues ask for, each against a baseline measured in the same
//! run where one exists. Prints one line per figure; asserts nothing (timings on shared machines
//! are for reading, not for failing builds).

use std::process::Command;
use std::time::{Duration, Instant};

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

fn main() -> anyhow::Result<()> {
    println!(
        "pht bench — {} (release build, one process; figures vary with machine load)",
        env!("CARGO_PKG_VERSION")
    );
    signature_verification();
    digest_hashing()?;
    Ok(())
}
