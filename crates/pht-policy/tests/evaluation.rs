//! Evaluation: each rule's refusal, approval versus allow, the limits a grant carries, and the JSON
//! the station writes to its audit log. One policy, one in-scope request; each test changes what
//! it is about and snapshots the decision.

use std::time::Duration;

use expect_test::{expect, Expect};
use pht_core::units::format_bytes;
use pht_policy::{BaseRequest, Decision, Policy, ResourceRequest, Rule, RunRequest, Runtime};

const POLICY: &str = r#"version: 1
trusted_signers:
  - name: alice
    public_key: keys/alice.pub
    purposes: ["aggregate statistics"]
    datasets: [cohort, registry-2020]
    approval: automatic
  - name: bob
    public_key: keys/bob.pub
    purposes: ["aggregate statistics", "survival analysis"]
    datasets: [cohort]
  - name: ci
    public_key: keys/ci.pub
    may_sign: [jobs]
    purposes: ["*"]
    datasets: ["*"]
    approval: automatic
registries:
  - registry: "127.0.0.1:5000"
    repositories: ["trains/*"]
  - registry: registry.example.org
    repositories: ["pht/cohort-stats"]
resources:
  cpus: 2
  memory: 1GiB
  wall_clock: 10m
"#;

fn policy() -> Policy {
    Policy::from_yaml_str(POLICY, "policies/test.yaml").unwrap()
}

/// Alice's train, submitted by alice, within every rule.
fn request() -> RunRequest {
    RunRequest {
        train_signer: Some("alice".to_string()),
        job_signer: Some("alice".to_string()),
        registry: "127.0.0.1:5000".to_string(),
        repository: "trains/cohort-stats".to_string(),
        manifest_digest: format!("sha256:{}", "ab".repeat(32)).parse().unwrap(),
        purpose: "aggregate statistics".to_string(),
        datasets: vec!["cohort".to_string()],
        resources: ResourceRequest::default(),
        gpu: false,
        runtime: None,
        parameters_bytes: 512,
        base: None,
    }
}

/// The decision as an operator reads it, with the grant's limits on one line.
fn render(decision: &Decision) -> String {
    let mut text = decision.to_string();
    if let Some(grant) = decision.grant() {
        text.push_str(&format!(
            "\ngrant: signer={} job_signer={:?} datasets={:?} cpus={} memory={} pids={} wall_clock={:?} output={} tmp={} logs={} runtime={} gpu={}",
            grant.signer(),
            grant.job_signer(),
            grant.datasets(),
            grant.cpus(),
            format_bytes(grant.memory_bytes()),
            grant.pids(),
            grant.wall_clock(),
            format_bytes(grant.output_bytes()),
            format_bytes(grant.tmp_bytes()),
            format_bytes(grant.log_bytes()),
            grant.runtime(),
            grant.gpu()
        ));
    }
    text
}

fn check(request: RunRequest, expect: Expect) {
    check_with(&policy(), request, expect);
}

fn check_with(policy: &Policy, request: RunRequest, expect: Expect) {
    expect.assert_eq(&render(&policy.evaluate(&request)));
}

fn rules(decision: &Decision) -> Vec<Rule> {
    decision
        .reasons()
        .iter()
        .map(|reason| reason.rule)
        .collect()
}

#[test]
fn an_automatic_signer_in_scope_is_allowed_with_the_ceilings() {
    check(
        request(),
        expect![[r#"
            allow
            grant: signer=alice job_signer=Some("alice") datasets=["cohort"] cpus=2 memory=1GiB pids=256 wall_clock=600s output=100MiB tmp=64MiB logs=1MiB runtime=runc gpu=false"#]],
    );
}

#[test]
fn a_local_exec_without_a_job_signer_follows_the_train_signer() {
    check(
        RunRequest {
            job_signer: None,
            ..request()
        },
        expect![[r#"
            allow
            grant: signer=alice job_signer=None datasets=["cohort"] cpus=2 memory=1GiB pids=256 wall_clock=600s output=100MiB tmp=64MiB logs=1MiB runtime=runc gpu=false"#]],
    );
}

#[test]
fn a_manual_train_signer_needs_approval() {
    check(
        RunRequest {
            train_signer: Some("bob".into()),
            job_signer: Some("bob".into()),
            ..request()
        },
        expect![[r#"
            needs_approval
            - approval.signer: train signer `bob` requires an operator's approval (expected `automatic`, actual `manual`)
            - approval.job.signer: job signer `bob` requires an operator's approval (expected `automatic`, actual `manual`)
            grant: signer=bob job_signer=Some("bob") datasets=["cohort"] cpus=2 memory=1GiB pids=256 wall_clock=600s output=100MiB tmp=64MiB logs=1MiB runtime=runc gpu=false"#]],
    );
}

#[test]
fn an_automatic_train_signer_with_a_manual_job_signer_needs_approval() {
    check(
        RunRequest {
            job_signer: Some("bob".into()),
            ..request()
        },
        expect![[r#"
            needs_approval
            - approval.job.signer: job signer `bob` requires an operator's approval (expected `automatic`, actual `manual`)
            grant: signer=alice job_signer=Some("bob") datasets=["cohort"] cpus=2 memory=1GiB pids=256 wall_clock=600s output=100MiB tmp=64MiB logs=1MiB runtime=runc gpu=false"#]],
    );
}

#[test]
fn an_automatic_job_signer_does_not_lift_a_manual_train_signer() {
    check(
        RunRequest {
            train_signer: Some("bob".into()),
            job_signer: Some("ci".into()),
            ..request()
        },
        expect![[r#"
            needs_approval
            - approval.signer: train signer `bob` requires an operator's approval (expected `automatic`, actual `manual`)
            grant: signer=bob job_signer=Some("ci") datasets=["cohort"] cpus=2 memory=1GiB pids=256 wall_clock=600s output=100MiB tmp=64MiB logs=1MiB runtime=runc gpu=false"#]],
    );
}

#[test]
fn an_unsigned_train_is_denied() {
    check(
        RunRequest {
            train_signer: None,
            ..request()
        },
        expect![[r#"
        deny
        - signer.trusted: the train is not signed by any trusted signer (expected a signature verified with a trusted signer's key, actual no verified signature)"#]],
    );
}

#[test]
fn an_unknown_signer_is_denied() {
    check(
        RunRequest {
            train_signer: Some("mallory".into()),
            ..request()
        },
        expect![[r#"
        deny
        - signer.known: train signer `mallory` is not among the policy's trusted signers (expected one of `alice`, `bob`, `ci`, actual `mallory`)"#]],
    );
}

#[test]
fn a_signer_not_allowed_the_dataset_is_denied() {
    check(
        RunRequest {
            datasets: vec!["cohort".into(), "genomes".into(), "genomes".into()],
            ..request()
        },
        expect![[r#"
            deny
            - dataset.allowed: train signer `alice` may not use dataset `genomes` (expected one of `cohort`, `registry-2020`, actual `genomes`)"#]],
    );
}

#[test]
fn a_purpose_not_allowed_is_denied() {
    check(
        RunRequest {
            purpose: "marketing".into(),
            ..request()
        },
        expect![[r#"
        deny
        - purpose.allowed: train signer `alice` may not run trains for the purpose `marketing` (expected one of `aggregate statistics`, actual `marketing`)"#]],
    );
}

#[test]
fn purposes_are_compared_exactly() {
    let decision = policy().evaluate(&RunRequest {
        purpose: "Aggregate Statistics".into(),
        ..request()
    });
    assert_eq!(rules(&decision), [Rule::PurposeAllowed]);
}

#[test]
fn a_registry_not_allowed_is_denied() {
    check(
        RunRequest {
            registry: "ghcr.io".into(),
            ..request()
        },
        expect![[r#"
        deny
        - registry.allowed: registry `ghcr.io` is not among the policy's registries (expected one of `127.0.0.1:5000`, `registry.example.org`, actual `ghcr.io`)"#]],
    );
}

#[test]
fn registry_hosts_compare_case_insensitively() {
    let decision = policy().evaluate(&RunRequest {
        registry: "Registry.Example.Org".into(),
        repository: "pht/cohort-stats".into(),
        ..request()
    });
    assert!(matches!(decision, Decision::Allow(_)), "{decision}");
}

#[test]
fn a_repository_not_allowed_is_denied() {
    check(
        RunRequest {
            registry: "registry.example.org".into(),
            repository: "pht/other".into(),
            ..request()
        },
        expect![[r#"
            deny
            - repository.allowed: repository `pht/other` matches none of the patterns allowed in registry `registry.example.org` (expected a repository matching one of `pht/cohort-stats`, actual `pht/other`)"#]],
    );
}

#[test]
fn resources_above_the_ceilings_are_denied() {
    check(
        RunRequest {
            resources: ResourceRequest {
                cpus: Some(2.5),
                memory_bytes: Some(2 << 30),
                wall_clock: Some(Duration::from_secs(3600)),
            },
            ..request()
        },
        expect![[r#"
            deny
            - resources.cpus: the train asks for 2.5 CPUs; the policy allows at most 2 (expected at most 2, actual 2.5)
            - resources.memory: the train asks for 2GiB of memory; the policy allows at most 1GiB (expected at most 1GiB, actual 2GiB)
            - resources.wall_clock: the train asks for 1h of wall-clock time; the policy allows at most 10m (expected at most 10m, actual 1h)"#]],
    );
}

#[test]
fn resource_requests_that_are_not_usable_limits_are_denied() {
    check(
        RunRequest {
            resources: ResourceRequest {
                cpus: Some(f64::NAN),
                memory_bytes: Some(0),
                wall_clock: Some(Duration::ZERO),
            },
            ..request()
        },
        expect![[r#"
            deny
            - resources.cpus: the train asks for NaN CPUs, which is not a usable limit (expected above 0 and at most 2, actual NaN)
            - resources.memory: the train asks for 0B of memory, which is not a usable limit (expected above 0 and at most 1GiB, actual 0B)
            - resources.wall_clock: the train asks for 0s of wall-clock time, which is not a usable limit (expected above 0 and at most 10m, actual 0s)"#]],
    );
}

#[test]
fn resources_below_the_ceilings_are_granted_as_asked() {
    check(
        RunRequest {
            resources: ResourceRequest {
                cpus: Some(0.5),
                memory_bytes: Some(256 << 20),
                wall_clock: Some(Duration::from_secs(90)),
            },
            ..request()
        },
        expect![[r#"
            allow
            grant: signer=alice job_signer=Some("alice") datasets=["cohort"] cpus=0.5 memory=256MiB pids=256 wall_clock=90s output=100MiB tmp=64MiB logs=1MiB runtime=runc gpu=false"#]],
    );
}

#[test]
fn resources_at_the_ceilings_are_granted() {
    let decision = policy().evaluate(&RunRequest {
        resources: ResourceRequest {
            cpus: Some(2.0),
            memory_bytes: Some(1 << 30),
            wall_clock: Some(Duration::from_secs(600)),
        },
        ..request()
    });
    assert!(matches!(decision, Decision::Allow(_)), "{decision}");
}

#[test]
fn a_gpu_is_denied_unless_the_policy_allows_it() {
    check(
        RunRequest {
            gpu: true,
            ..request()
        },
        expect![[r#"
        deny
        - gpu.allowed: the run asks for a GPU; this policy grants none (expected no GPU (gpu.allowed is false), actual a GPU)"#]],
    );
    let gpu_policy =
        Policy::from_yaml_str(&format!("{POLICY}gpu:\n  allowed: true\n"), "gpu.yaml").unwrap();
    let decision = gpu_policy.evaluate(&RunRequest {
        gpu: true,
        ..request()
    });
    assert!(decision.grant().unwrap().gpu());
    let decision = gpu_policy.evaluate(&request());
    assert!(
        !decision.grant().unwrap().gpu(),
        "a GPU is attached only when asked for"
    );
}

#[test]
fn a_runtime_other_than_the_policys_is_denied() {
    check(
        RunRequest {
            runtime: Some(Runtime::Runsc),
            ..request()
        },
        expect![[r#"
        deny
        - runtime.allowed: the run asks for runtime `runsc`; this station runs trains under `runc` (expected `runc`, actual `runsc`)"#]],
    );
    let decision = policy().evaluate(&RunRequest {
        runtime: Some(Runtime::Runc),
        ..request()
    });
    assert!(matches!(decision, Decision::Allow(_)), "{decision}");
}

#[test]
fn oversized_parameters_are_denied() {
    check(
        RunRequest {
            parameters_bytes: 64 * 1024 + 1,
            ..request()
        },
        expect![[r#"
        deny
        - parameters.size: the job's parameters take 65537B; the policy allows at most 64KiB (expected at most 64KiB, actual 65537B)"#]],
    );
}

#[test]
fn a_signer_that_may_only_sign_jobs_cannot_sign_a_train() {
    check(
        RunRequest {
            train_signer: Some("ci".into()),
            ..request()
        },
        expect![[r#"
        deny
        - signer.may_sign: train signer `ci` may not sign trains (expected `trains` in may_sign, actual may_sign: `jobs`)"#]],
    );
}

#[test]
fn a_job_signer_must_be_trusted_for_jobs() {
    let policy = Policy::from_yaml_str(
        &POLICY.replace(
            "    datasets: [cohort]\n",
            "    datasets: [cohort]\n    may_sign: [trains]\n",
        ),
        "policies/test.yaml",
    )
    .unwrap();
    check_with(
        &policy,
        RunRequest {
            job_signer: Some("bob".into()),
            ..request()
        },
        expect![[r#"
        deny
        - job.signer.may_sign: job signer `bob` may not sign jobs (expected `jobs` in may_sign, actual may_sign: `trains`)"#]],
    );
    check(
        RunRequest {
            job_signer: Some("mallory".into()),
            ..request()
        },
        expect![[r#"
        deny
        - job.signer.known: job signer `mallory` is not among the policy's trusted signers (expected one of `alice`, `bob`, `ci`, actual `mallory`)"#]],
    );
}

#[test]
fn a_job_signer_needs_the_purpose_and_datasets_itself() {
    // Bob may not read registry-2020, so he cannot reach it by running alice's train.
    check(
        RunRequest {
            job_signer: Some("bob".into()),
            datasets: vec!["registry-2020".into()],
            purpose: "aggregate statistics".into(),
            ..request()
        },
        expect![[r#"
            deny
            - job.dataset.allowed: job signer `bob` may not use dataset `registry-2020` (expected one of `cohort`, actual `registry-2020`)"#]],
    );
}

#[test]
fn every_failing_rule_is_reported() {
    check(
        RunRequest {
            train_signer: Some("bob".into()),
            job_signer: Some("mallory".into()),
            registry: "127.0.0.1:5000".into(),
            repository: "other/cohort-stats".into(),
            purpose: "marketing".into(),
            datasets: vec!["cohort".into(), "genomes".into()],
            resources: ResourceRequest {
                cpus: Some(8.0),
                memory_bytes: None,
                wall_clock: Some(Duration::from_secs(7200)),
            },
            gpu: true,
            runtime: Some(Runtime::Runsc),
            parameters_bytes: 1 << 20,
            ..request()
        },
        expect![[r#"
            deny
            - purpose.allowed: train signer `bob` may not run trains for the purpose `marketing` (expected one of `aggregate statistics`, `survival analysis`, actual `marketing`)
            - dataset.allowed: train signer `bob` may not use dataset `genomes` (expected one of `cohort`, actual `genomes`)
            - job.signer.known: job signer `mallory` is not among the policy's trusted signers (expected one of `alice`, `bob`, `ci`, actual `mallory`)
            - repository.allowed: repository `other/cohort-stats` matches none of the patterns allowed in registry `127.0.0.1:5000` (expected a repository matching one of `trains/*`, actual `other/cohort-stats`)
            - resources.cpus: the train asks for 8 CPUs; the policy allows at most 2 (expected at most 2, actual 8)
            - resources.wall_clock: the train asks for 2h of wall-clock time; the policy allows at most 10m (expected at most 10m, actual 2h)
            - gpu.allowed: the run asks for a GPU; this policy grants none (expected no GPU (gpu.allowed is false), actual a GPU)
            - runtime.allowed: the run asks for runtime `runsc`; this station runs trains under `runc` (expected `runc`, actual `runsc`)
            - parameters.size: the job's parameters take 1MiB; the policy allows at most 64KiB (expected at most 64KiB, actual 1MiB)"#]],
    );
}

/// What the station writes to its audit log for a run that waits for an operator.
#[test]
fn a_needs_approval_decision_serialises_with_its_grant_and_reasons() {
    let decision = policy().evaluate(&RunRequest {
        job_signer: Some("bob".into()),
        resources: ResourceRequest {
            cpus: Some(1.5),
            memory_bytes: Some(512 << 20),
            wall_clock: None,
        },
        ..request()
    });
    let json = serde_json::to_string_pretty(&decision)
        .unwrap()
        .replace(policy().content_hash(), "<policy hash>");
    expect![[r#"
        {
          "outcome": "needs_approval",
          "grant": {
            "signer": "alice",
            "job_signer": "bob",
            "registry": "127.0.0.1:5000",
            "repository": "trains/cohort-stats",
            "manifest_digest": "sha256:abababababababababababababababababababababababababababababababab",
            "datasets": [
              "cohort"
            ],
            "cpus": 1.5,
            "memory_bytes": 536870912,
            "pids": 256,
            "wall_clock_seconds": 600.0,
            "output_bytes": 104857600,
            "tmp_bytes": 67108864,
            "log_bytes": 1048576,
            "runtime": "runc",
            "gpu": false,
            "policy_hash": "<policy hash>"
          },
          "reasons": [
            {
              "rule": "approval.job.signer",
              "expected": "`automatic`",
              "actual": "`manual`",
              "message": "job signer `bob` requires an operator's approval"
            }
          ]
        }"#]].assert_eq(&json);
}

#[test]
fn a_deny_decision_serialises_with_a_null_grant() {
    let decision = policy().evaluate(&RunRequest {
        train_signer: None,
        registry: "ghcr.io".into(),
        ..request()
    });
    expect![[r#"{"outcome":"deny","grant":null,"reasons":[{"rule":"signer.trusted","expected":"a signature verified with a trusted signer's key","actual":"no verified signature","message":"the train is not signed by any trusted signer"},{"rule":"registry.allowed","expected":"one of `127.0.0.1:5000`, `registry.example.org`","actual":"`ghcr.io`","message":"registry `ghcr.io` is not among the policy's registries"}]}"#]].assert_eq(&serde_json::to_string(&decision).unwrap());
}

/// Every combination of requested limits, on both sides of each ceiling: a grant exists exactly
/// when all are usable and within the ceilings, and never exceeds them.
#[test]
fn a_grant_never_exceeds_the_ceilings() {
    let policy = policy();
    let ceilings = *policy.resources();
    let cpu_requests = [
        None,
        Some(0.1),
        Some(2.0),
        Some(2.000_001),
        Some(64.0),
        Some(-1.0),
        Some(0.0),
        Some(f64::NAN),
        Some(f64::INFINITY),
    ];
    let memory_requests = [
        None,
        Some(1),
        Some(1 << 30),
        Some((1 << 30) + 1),
        Some(u64::MAX),
        Some(0),
    ];
    let wall_clock_requests = [
        None,
        Some(Duration::from_millis(1)),
        Some(Duration::from_secs(600)),
        Some(Duration::from_secs(600) + Duration::from_nanos(1)),
        Some(Duration::MAX),
        Some(Duration::ZERO),
    ];
    let mut n_granted = 0;
    let mut n_denied = 0;
    for cpus in cpu_requests {
        for memory_bytes in memory_requests {
            for wall_clock in wall_clock_requests {
                let resources = ResourceRequest {
                    cpus,
                    memory_bytes,
                    wall_clock,
                };
                let decision = policy.evaluate(&RunRequest {
                    resources,
                    ..request()
                });
                let within = cpus.is_none_or(|cpus| cpus > 0.0 && cpus <= ceilings.cpus)
                    && memory_bytes.is_none_or(|bytes| bytes > 0 && bytes <= ceilings.memory_bytes)
                    && wall_clock.is_none_or(|duration| {
                        !duration.is_zero() && duration <= ceilings.wall_clock
                    });
                match decision.grant() {
                    Some(grant) => {
                        n_granted += 1;
                        assert!(within, "{resources:?} was granted");
                        assert!(
                            grant.cpus() > 0.0 && grant.cpus() <= ceilings.cpus,
                            "{resources:?}"
                        );
                        assert!(
                            grant.memory_bytes() > 0
                                && grant.memory_bytes() <= ceilings.memory_bytes
                        );
                        assert!(
                            !grant.wall_clock().is_zero()
                                && grant.wall_clock() <= ceilings.wall_clock
                        );
                        assert_eq!(grant.cpus(), cpus.unwrap_or(ceilings.cpus));
                        assert_eq!(
                            grant.memory_bytes(),
                            memory_bytes.unwrap_or(ceilings.memory_bytes)
                        );
                        assert_eq!(
                            grant.wall_clock(),
                            wall_clock.unwrap_or(ceilings.wall_clock)
                        );
                        assert_eq!(grant.pids(), ceilings.pids);
                        assert_eq!(grant.output_bytes(), ceilings.output_bytes);
                        assert_eq!(grant.tmp_bytes(), ceilings.tmp_bytes);
                        assert_eq!(grant.log_bytes(), ceilings.log_bytes);
                    }
                    None => {
                        n_denied += 1;
                        assert!(!within, "{resources:?} was denied: {decision}");
                    }
                }
            }
        }
    }
    assert_eq!(n_granted, 3 * 3 * 3);
    assert_eq!(n_granted + n_denied, 9 * 6 * 6);
}

#[test]
fn a_grant_names_what_it_was_granted_for() {
    let decision = policy().evaluate(&request());
    let grant = decision.grant().unwrap();
    assert_eq!(
        grant.manifest_digest().to_string(),
        format!("sha256:{}", "ab".repeat(32))
    );
    assert_eq!(grant.registry(), "127.0.0.1:5000");
    assert_eq!(grant.repository(), "trains/cohort-stats");
    assert_eq!(grant.policy_hash(), policy().content_hash());
}

#[test]
fn a_dataset_listed_twice_is_granted_once_in_declared_order() {
    let decision = policy().evaluate(&RunRequest {
        datasets: vec![
            "registry-2020".into(),
            "cohort".into(),
            "registry-2020".into(),
        ],
        ..request()
    });
    assert_eq!(
        decision.grant().unwrap().datasets(),
        ["registry-2020", "cohort"]
    );
}

/// The test policy, restricting bases: one by digest, any signed by the base signer.
fn base_policy(required: bool) -> Policy {
    let text = format!(
        "{POLICY}trusted_base_signers:\n  - name: bases-2026\n    public_key: keys/bases-2026.pub\nbase_images:\n  required: {required}\n  allowed:\n    - digest: sha256:{}\n    - signer: bases-2026\n",
        "11".repeat(32)
    );
    Policy::from_yaml_str(&text, "policies/test.yaml").unwrap()
}

/// Alice's train built on the base `digest_byte` repeated, verified by `signer` (if any).
fn on_base(digest_byte: &str, signer: Option<&str>) -> RunRequest {
    RunRequest {
        base: Some(BaseRequest {
            repository: "127.0.0.1:5000/bases/python".into(),
            digest: format!("sha256:{}", digest_byte.repeat(32))
                .parse()
                .unwrap(),
            signer: signer.map(Into::into),
        }),
        ..request()
    }
}

#[test]
fn a_base_allowed_by_digest_runs_whoever_signed_it() {
    check_with(
        &base_policy(true),
        on_base("11", None),
        expect![[r#"
            allow
            grant: signer=alice job_signer=Some("alice") datasets=["cohort"] cpus=2 memory=1GiB pids=256 wall_clock=600s output=100MiB tmp=64MiB logs=1MiB runtime=runc gpu=false"#]],
    );
}

#[test]
fn any_base_signed_by_an_allowed_base_signer_runs() {
    check_with(
        &base_policy(true),
        on_base("22", Some("bases-2026")),
        expect![[r#"
            allow
            grant: signer=alice job_signer=Some("alice") datasets=["cohort"] cpus=2 memory=1GiB pids=256 wall_clock=600s output=100MiB tmp=64MiB logs=1MiB runtime=runc gpu=false"#]],
    );
}

#[test]
fn a_base_neither_listed_nor_signed_by_a_listed_signer_is_refused() {
    check_with(
        &base_policy(false),
        on_base("22", None),
        expect![[r#"
            deny
            - base.allowed: the train is built on 127.0.0.1:5000/bases/python@sha256:2222222222222222222222222222222222222222222222222222222222222222, which is not a base this policy allows (expected one of digest `sha256:1111111111111111111111111111111111111111111111111111111111111111`, a base signed by `bases-2026`, actual `sha256:2222222222222222222222222222222222222222222222222222222222222222`, signed by no trusted base signer)"#]],
    );
    let decision = base_policy(false).evaluate(&on_base("22", Some("bases-2025")));
    assert_eq!(rules(&decision), [Rule::BaseAllowed]);
    expect!["`sha256:2222222222222222222222222222222222222222222222222222222222222222`, signed by `bases-2025`"]
        .assert_eq(&decision.reasons()[0].actual);
}

#[test]
fn a_train_without_a_base_is_refused_only_where_a_base_is_required() {
    check_with(
        &base_policy(true),
        request(),
        expect![[r#"
            deny
            - base.allowed: the train is built on no base image; this policy requires one (base_images.required) (expected one of digest `sha256:1111111111111111111111111111111111111111111111111111111111111111`, a base signed by `bases-2026`, actual no base)"#]],
    );
    assert!(matches!(
        base_policy(false).evaluate(&request()),
        Decision::Allow(_)
    ));
}

#[test]
fn without_base_images_any_base_runs() {
    assert!(matches!(
        policy().evaluate(&on_base("22", None)),
        Decision::Allow(_)
    ));
}

#[test]
fn an_empty_allowed_list_runs_only_trains_without_a_base() {
    let text = format!("{POLICY}base_images:\n  allowed: []\n");
    let policy = Policy::from_yaml_str(&text, "policies/test.yaml").unwrap();
    assert!(matches!(policy.evaluate(&request()), Decision::Allow(_)));
    check_with(
        &policy,
        on_base("11", None),
        expect![[r#"
            deny
            - base.allowed: the train is built on 127.0.0.1:5000/bases/python@sha256:1111111111111111111111111111111111111111111111111111111111111111, which is not a base this policy allows (expected no base image (base_images.allowed is empty), actual `sha256:1111111111111111111111111111111111111111111111111111111111111111`, signed by no trusted base signer)"#]],
    );
}
