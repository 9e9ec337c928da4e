//! Every file in the repository's `policies/` directory is loaded and evaluated here. The directory
//! is read at test time, so a new policy is covered without touching this file. Owns only the
//! checks that hold for any shipped policy; the rules themselves are tested in `evaluation.rs`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use expect_test::expect;
use pht_core::units::format_bytes;
use pht_policy::{AllowList, Approval, Decision, Policy, ResourceRequest, Role, Rule, RunRequest};

fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// Every `*.yaml` / `*.yml` file in `policies/`, sorted, loaded.
fn shipped_policies() -> Vec<(String, Policy)> {
    let mut paths: Vec<PathBuf> = fs::read_dir(policies_dir())
        .expect("the policies directory exists")
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| {
            matches!(
                path.extension().and_then(|ext| ext.to_str()),
                Some("yaml" | "yml")
            )
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = fs::read_to_string(&path).expect("a readable policy file");
            let policy = Policy::from_yaml_str(&text, &path.to_string_lossy())
                .unwrap_or_else(|error| panic!("{error}"));
            (file_name, policy)
        })
        .collect()
}

/// A request this policy should accept from `signer`: its first registry and repository, a purpose
/// and a dataset the signer is allowed, no resource requests.
fn request_within(policy: &Policy, signer: &str) -> RunRequest {
    let trusted = policy.signer(signer).unwrap();
    let registry_rule = &policy.registries()[0];
    let purpose = match trusted.purposes() {
        AllowList::Any => "aggregate statistics".to_string(),
        AllowList::Only(purposes) => purposes[0].clone(),
    };
    let datasets = match trusted.datasets() {
        AllowList::Any => vec!["cohort".to_string()],
        AllowList::Only(datasets) => datasets.iter().take(1).cloned().collect(),
    };
    RunRequest {
        train_signer: Some(signer.to_string()),
        job_signer: Some(signer.to_string()),
        registry: registry_rule.registry().to_string(),
        repository: registry_rule.repository_patterns()[0].replace('*', "cohort-stats"),
        manifest_digest: format!("sha256:{}", "0f".repeat(32)).parse().unwrap(),
        purpose,
        datasets,
        resources: ResourceRequest::default(),
        gpu: false,
        runtime: None,
        parameters_bytes: 100,
        base: None,
    }
}

#[test]
fn the_curated_policies_are_present() {
    let names: Vec<String> = shipped_policies()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for expected in ["strict.yaml", "default.yaml", "permissive-research.yaml"] {
        assert!(
            names.iter().any(|name| name == expected),
            "policies/{expected} is missing: {names:?}"
        );
    }
}

#[test]
fn every_shipped_policy_lets_each_train_signer_run_within_its_scope() {
    for (file_name, policy) in shipped_policies() {
        let train_signers = policy
            .trusted_signers()
            .iter()
            .filter(|signer| signer.may_sign(Role::Trains));
        let mut n_train_signers = 0;
        for signer in train_signers {
            n_train_signers += 1;
            let decision = policy.evaluate(&request_within(&policy, signer.name()));
            let grant = decision.grant().unwrap_or_else(|| {
                panic!("{file_name}: {} is refused:\n{decision}", signer.name())
            });
            // No resources were asked for, so every limit is the ceiling.
            let ceilings = policy.resources();
            assert_eq!(grant.cpus(), ceilings.cpus, "{file_name}");
            assert_eq!(grant.memory_bytes(), ceilings.memory_bytes, "{file_name}");
            assert_eq!(grant.pids(), ceilings.pids, "{file_name}");
            assert_eq!(grant.wall_clock(), ceilings.wall_clock, "{file_name}");
            assert_eq!(grant.output_bytes(), ceilings.output_bytes, "{file_name}");
            assert_eq!(grant.tmp_bytes(), ceilings.tmp_bytes, "{file_name}");
            assert_eq!(grant.log_bytes(), ceilings.log_bytes, "{file_name}");
            assert_eq!(grant.policy_hash(), policy.content_hash(), "{file_name}");
            match signer.approval() {
                Approval::Automatic => assert!(
                    matches!(decision, Decision::Allow(_)),
                    "{file_name}: {decision}"
                ),
                Approval::Manual => {
                    assert!(
                        matches!(decision, Decision::NeedsApproval { .. }),
                        "{file_name}: {decision}"
                    )
                }
            }
        }
        assert!(
            n_train_signers > 0,
            "{file_name}: no signer may sign trains, so nothing can ever run"
        );
    }
}

#[test]
fn every_shipped_policy_refuses_unsigned_trains_and_requests_above_its_ceilings() {
    for (file_name, policy) in shipped_policies() {
        let signer = policy
            .trusted_signers()
            .iter()
            .find(|signer| signer.may_sign(Role::Trains))
            .unwrap();
        let within = request_within(&policy, signer.name());

        let unsigned = RunRequest {
            train_signer: None,
            ..within.clone()
        };
        let rules: Vec<Rule> = policy
            .evaluate(&unsigned)
            .reasons()
            .iter()
            .map(|reason| reason.rule)
            .collect();
        assert_eq!(rules, [Rule::SignerTrusted], "{file_name}");

        let greedy = RunRequest {
            resources: ResourceRequest {
                cpus: Some(policy.resources().cpus + 0.5),
                memory_bytes: Some(policy.resources().memory_bytes + 1),
                wall_clock: Some(policy.resources().wall_clock * 2),
            },
            ..within
        };
        let decision = policy.evaluate(&greedy);
        let rules: Vec<Rule> = decision
            .reasons()
            .iter()
            .map(|reason| reason.rule)
            .collect();
        assert!(
            matches!(decision, Decision::Deny { .. }),
            "{file_name}: {decision}"
        );
        assert_eq!(
            rules,
            [
                Rule::ResourcesCpus,
                Rule::ResourcesMemory,
                Rule::ResourcesWallClock
            ],
            "{file_name}"
        );
    }
}

#[test]
fn shipped_key_paths_point_into_examples_keys_relative_to_the_policy() {
    for (file_name, policy) in shipped_policies() {
        for signer in policy.trusted_signers() {
            let expected = policies_dir().join(format!("../examples/keys/{}.pub", signer.name()));
            assert_eq!(
                signer.public_key_path(),
                expected,
                "{file_name}: signer {}",
                signer.name()
            );
        }
    }
}

/// What each shipped policy allows, for a reviewer to see change. Of the output-check thresholds
/// only a few are shown: the rest belong to `pht-checks`, whose settings may grow.
#[test]
fn shipped_policies_summary() {
    let mut summary = String::new();
    for (file_name, policy) in shipped_policies() {
        let ceilings = policy.resources();
        writeln!(summary, "{file_name}").unwrap();
        for signer in policy.trusted_signers() {
            let roles: Vec<&str> = signer.roles().iter().map(|role| role.as_str()).collect();
            writeln!(
                summary,
                "  signer {} may sign {:?}, approval {}, purposes {}, datasets {}",
                signer.name(),
                roles,
                signer.approval(),
                signer.purposes(),
                signer.datasets()
            )
            .unwrap();
        }
        for rule in policy.registries() {
            writeln!(
                summary,
                "  registry {} repositories {:?}",
                rule.registry(),
                rule.repository_patterns()
            )
            .unwrap();
        }
        writeln!(
            summary,
            "  ceilings cpus {} memory {} pids {} wall_clock {:?} output {} tmp {} logs {}",
            ceilings.cpus,
            format_bytes(ceilings.memory_bytes),
            ceilings.pids,
            ceilings.wall_clock,
            format_bytes(ceilings.output_bytes),
            format_bytes(ceilings.tmp_bytes),
            format_bytes(ceilings.log_bytes)
        )
        .unwrap();
        writeln!(
            summary,
            "  runtime {} gpu {} release {} max_parameters {}",
            policy.runtime(),
            policy.gpu_allowed(),
            policy.outputs().release(),
            format_bytes(policy.max_parameters_bytes())
        )
        .unwrap();
        let checks = policy.outputs().checks();
        writeln!(
            summary,
            "  checks max_files {} max_total {} min_cell_count {} extensions {:?}",
            checks.max_files,
            format_bytes(checks.max_total_bytes),
            checks.min_cell_count,
            checks.allowed_extensions
        )
        .unwrap();
    }
    expect![[r#"
        default.yaml
          signer alice may sign ["trains", "jobs"], approval manual, purposes one of `aggregate statistics`, `quality indicators`, datasets one of `cohort`
          signer bob may sign ["jobs"], approval manual, purposes one of `aggregate statistics`, datasets one of `cohort`
          registry 127.0.0.1:5000 repositories ["trains/*"]
          ceilings cpus 1 memory 1GiB pids 256 wall_clock 600s output 100MiB tmp 64MiB logs 1MiB
          runtime runc gpu false release manual max_parameters 64KiB
          checks max_files 50 max_total 100MiB min_cell_count 10 extensions ["csv", "tsv", "json", "txt", "png"]
        permissive-research.yaml
          signer alice may sign ["trains", "jobs"], approval automatic, purposes any, datasets any
          signer bob may sign ["trains", "jobs"], approval manual, purposes one of `aggregate statistics`, `survival analysis`, datasets one of `cohort`
          registry 127.0.0.1:5000 repositories ["*"]
          registry registry.example.org repositories ["pht/trains/*", "pht/shared/*"]
          ceilings cpus 4 memory 8GiB pids 1024 wall_clock 7200s output 1GiB tmp 1GiB logs 16MiB
          runtime runc gpu true release automatic max_parameters 1MiB
          checks max_files 200 max_total 1GiB min_cell_count 10 extensions ["csv", "tsv", "json", "txt", "png", "svg", "pdf"]
        strict.yaml
          signer alice may sign ["trains", "jobs"], approval manual, purposes one of `aggregate statistics`, datasets one of `cohort`
          registry 127.0.0.1:5000 repositories ["trains/cohort-stats"]
          ceilings cpus 0.5 memory 256MiB pids 64 wall_clock 120s output 10MiB tmp 16MiB logs 256KiB
          runtime runc gpu false release manual max_parameters 16KiB
          checks max_files 10 max_total 10MiB min_cell_count 20 extensions ["csv", "json", "txt"]
    "#]].assert_eq(&summary);
}
