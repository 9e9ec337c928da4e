//! Witnessed audit checkpoints, end to end: a station's log, rewritten whole and consistently
//! after a job (every hash and the head file recomputed, as root at the station could), still
//! passes `audit verify`, but fails against the checkpoints the hub witnessed and against the
//! checkpoint in the sealed provenance the researcher holds.

use std::collections::BTreeMap;
use std::path::Path;

use pht_core::job::RouteMode;
use pht_e2e::routes::HubWorld;
use pht_e2e::{publish_train, workspace_root};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// An audit entry as the station writes it, field for field in its order: what a forger
/// needs to recompute hashes.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    version: String,
    seq: u64,
    time: String,
    actor: String,
    event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    train_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    decision: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    datasets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    outputs: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    details: serde_json::Map<String, serde_json::Value>,
    prev_hash: String,
    hash: String,
}

/// Rewrites the log at `path` with `forge` applied to every entry, recomputing every hash, the
/// chain and the head file: consistent throughout.
fn rewrite_whole_log(path: &Path, forge: impl Fn(&mut Entry)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut previous = "0".repeat(64);
    let mut lines = String::new();
    let mut last = (0, String::new());
    for line in text.lines() {
        let mut entry: Entry = serde_json::from_str(line).unwrap();
        forge(&mut entry);
        entry.prev_hash = previous.clone();
        entry.hash = String::new();
        entry.hash = hex::encode(sha2::Sha256::digest(serde_json::to_vec(&entry).unwrap()));
        previous = entry.hash.clone();
        last = (entry.seq, entry.hash.clone());
        lines.push_str(&serde_json::to_string(&entry).unwrap());
        lines.push('\n');
    }
    std::fs::write(path, &lines).unwrap();
    std::fs::write(
        path.with_extension("head"),
        format!("{} {} {}\n", last.0, last.1, lines.len()),
    )
    .unwrap();
}

#[test]
fn a_log_rewritten_whole_passes_the_chain_but_not_the_hub_or_the_provenance() {
    let world = HubWorld::with(
        "witness",
        1,
        "automatic",
        "outputs:\n  release: automatic\n",
        false,
    );
    let reference = format!("{}/trains/cohort-stats:witness", world.registry.address());
    let train = publish_train(
        &workspace_root().join("trains/cohort-stats"),
        &reference,
        &[],
    );
    world.alice.sign(&train);
    let daemons = world.daemons();
    let parameters = BTreeMap::from([("group_by".to_string(), serde_json::json!("sex"))]);
    let job_id = world.submit(RouteMode::Parallel, &train, parameters);
    let status = world.wait_for_end(job_id, &daemons, std::time::Duration::from_secs(240));
    world.assert_completed(&status);
    let results = tempfile::tempdir().unwrap();
    world.results(job_id, results.path());
    drop(daemons);

    let station = &world.stations[0];
    // The researcher's verified provenance names the log's head at release.
    let provenance: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(results.path().join(&world.ids[0]).join("provenance.json"))
            .unwrap(),
    )
    .unwrap();
    let at_release = provenance["predicate"]["audit_checkpoint"].clone();
    assert!(at_release["seq"].as_u64().is_some(), "{provenance:#}");
    let from_provenance = results.path().join("checkpoint.json");
    std::fs::write(&from_provenance, at_release.to_string()).unwrap();
    // Untouched, the log agrees with every witness.
    let untouched = station
        .station(&[
            "--json",
            "audit",
            "verify",
            "--hub",
            "--checkpoints",
            from_provenance.to_str().unwrap(),
        ])
        .success()
        .json();
    assert!(
        untouched["witnessed"]["agreed"].as_u64().unwrap() >= 2,
        "{untouched:#}"
    );
    assert_eq!(untouched["witnessed"]["problems"], serde_json::json!([]));

    // An export for an auditor agrees with the provenance's checkpoint too.
    let today = chrono::Utc::now().date_naive().to_string();
    let export = |name: &str| {
        let out = results.path().join(name);
        station
            .station(&[
                "audit",
                "export",
                "--since",
                &today,
                "--until",
                &today,
                "--out",
                out.to_str().unwrap(),
            ])
            .success();
        out
    };
    let honest = export("honest-export.json");
    let verify_export = |file: &Path| {
        station.station(&[
            "audit",
            "verify-export",
            file.to_str().unwrap(),
            "--checkpoints",
            from_provenance.to_str().unwrap(),
        ])
    };
    verify_export(&honest).success();

    // Root rewrites history: the run was never approved by the policy but by "someone else".
    rewrite_whole_log(&station.audit_log(), |entry| {
        if entry.actor.starts_with("station:") && entry.event == "approved" {
            entry.actor = "operator:someone-else".into();
        }
        entry.details.remove("policy_sha256");
        if entry.seq == 1 {
            entry.details.insert("note".into(), "rewritten".into());
        }
    });
    let plain = station
        .station(&["--json", "audit", "verify"])
        .success()
        .json();
    assert_eq!(plain["problem"], serde_json::Value::Null, "{plain:#}");

    let against_hub = station
        .station(&["--json", "audit", "verify", "--hub"])
        .code(1)
        .json();
    let problems = against_hub["witnessed"]["problems"].as_array().unwrap();
    assert!(!problems.is_empty(), "{against_hub:#}");
    assert!(
        problems
            .iter()
            .all(|p| p.as_str().unwrap().contains("the log was rewritten")),
        "{against_hub:#}"
    );
    let text = station.station(&["audit", "verify", "--hub"]).code(1);
    assert!(text.stdout.contains("CONTRADICTS"), "{}", text.stdout);

    let against_provenance = station
        .station(&[
            "--json",
            "audit",
            "verify",
            "--checkpoints",
            from_provenance.to_str().unwrap(),
        ])
        .code(1)
        .json();
    let problem = against_provenance["witnessed"]["problems"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        problem.contains(&format!("entry {}", at_release["seq"])),
        "{problem}"
    );

    // An export of the rewritten log is signed and self-consistent, but contradicts the
    // provenance.
    let forged = export("forged-export.json");
    station
        .station(&["audit", "verify-export", forged.to_str().unwrap()])
        .success();
    let refused = verify_export(&forged).code(1);
    assert!(refused.stderr.contains("contradicts"), "{}", refused.stderr);

    // The hub's operator and auditors read the same witnesses with the admin token.
    let witnessed = world
        .runtime
        .block_on(world.hub.admin().checkpoints(&world.ids[0]))
        .unwrap();
    assert!(witnessed.len() >= 2, "{witnessed:?}");
}
