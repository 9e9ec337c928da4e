//! Loading refuses what is not a valid policy, naming file, line, column and what was expected.
//! Each case mutates one line of a valid policy; the snapshot is the message an operator reads.

use expect_test::{expect, Expect};
use pht_policy::{Policy, PolicyError};

const VALID: &str = r#"version: 1
trusted_signers:
  - name: alice
    public_key: keys/alice.pub
    purposes: ["aggregate statistics"]
    datasets: [cohort]
registries:
  - registry: "127.0.0.1:5000"
    repositories: ["trains/*"]
resources:
  cpus: 1
  memory: 1GiB
  wall_clock: 10m
outputs:
  release: manual
  checks:
    min_cell_count: 10
"#;

/// Replaces `from` (which must occur in the valid policy) and checks the refusal.
fn check(from: &str, to: &str, expect: Expect) {
    assert!(VALID.contains(from), "`{from}` is not in the valid policy");
    let text = VALID.replacen(from, to, 1);
    check_text(&text, expect);
}

fn check_text(text: &str, expect: Expect) {
    match Policy::from_yaml_str(text, "policies/test.yaml") {
        Ok(_) => panic!("the policy loaded, but should have been refused:\n{text}"),
        Err(error) => expect.assert_eq(&error.to_string()),
    }
}

#[test]
fn the_valid_policy_loads() {
    let policy = Policy::from_yaml_str(VALID, "policies/test.yaml").unwrap();
    assert_eq!(policy.trusted_signers()[0].name(), "alice");
}

#[test]
fn an_unknown_field_is_refused_at_its_line_and_column() {
    check(
        "  cpus: 1\n",
        "  cpu: 1\n",
        expect!["policies/test.yaml:11:3: resources: unknown field `cpu`, expected one of `cpus`, `memory`, `pids`, `wall_clock`, `output_size`, `tmp_size`, `log_size`"],
    );
    let error = Policy::from_yaml_str(
        &VALID.replacen("  cpus: 1", "  cpu: 1", 1),
        "policies/test.yaml",
    )
    .unwrap_err();
    assert_eq!(error.location(), Some((11, 3)));
    assert!(matches!(
        error,
        PolicyError::Invalid {
            line: 11,
            column: 3,
            ..
        }
    ));
}

#[test]
fn unknown_fields_are_refused_in_every_section() {
    check(
        "registries:",
        "station: hospital-a\nregistries:",
        expect!["policies/test.yaml:7:1: unknown field `station`, expected one of `version`, `trusted_signers`, `registries`, `resources`, `runtime`, `gpu`, `outputs`, `max_parameters_size`, `retention`, `trusted_base_signers`, `base_images`"],
    );
    check(
        "    datasets: [cohort]\n",
        "    datasets: [cohort]\n    dataset: [cohort]\n",
        expect!["policies/test.yaml:7:5: trusted_signers[0]: unknown field `dataset`, expected one of `name`, `public_key`, `may_sign`, `purposes`, `datasets`, `approval`"],
    );
    check(
        "    repositories:",
        "    repository:",
        expect!["policies/test.yaml:9:5: registries[0]: unknown field `repository`, expected `registry` or `repositories`"],
    );
    // The list of check settings belongs to `pht-checks` and grows; only the start is pinned.
    let text = VALID.replacen("    min_cell_count: 10", "    min_cell_size: 10", 1);
    let message = Policy::from_yaml_str(&text, "policies/test.yaml")
        .unwrap_err()
        .to_string();
    let expected_start =
        "policies/test.yaml:17:5: outputs.checks: unknown field `min_cell_size`, expected one of `max_files`,";
    assert!(message.starts_with(expected_start), "{message}");
}

#[test]
fn a_value_of_the_wrong_type_is_refused_at_the_value() {
    check(
        "  cpus: 1\n",
        "  cpus: lots\n",
        expect![[
            r#"policies/test.yaml:11:9: resources.cpus: invalid type: string "lots", expected a number of CPUs such as `1` or `0.5`"#
        ]],
    );
    check(
        "    min_cell_count: 10",
        "    min_cell_count: ten",
        expect![[
            r#"policies/test.yaml:17:21: outputs.checks.min_cell_count: invalid type: string "ten", expected u64"#
        ]],
    );
    check(
        "    purposes: [\"aggregate statistics\"]",
        "    purposes: aggregate statistics",
        expect![[
            r#"policies/test.yaml:5:15: trusted_signers[0].purposes: invalid type: string "aggregate statistics", expected a list of purposes such as `["aggregate statistics"]`, or `["*"]`"#
        ]],
    );
    check(
        "resources:\n",
        "gpu: true\nresources:\n",
        expect!["policies/test.yaml:10:6: gpu: invalid type: boolean `true`, expected a mapping such as `{ allowed: false }`"],
    );
    check_text(
        "- version: 1\n",
        expect!["policies/test.yaml:1:1: invalid type: sequence, expected a station policy: a mapping with `version`, `trusted_signers` and `registries`"],
    );
}

#[test]
fn a_bad_unit_is_refused_at_the_value() {
    check(
        "  memory: 1GiB",
        "  memory: 1 parsec",
        expect!["policies/test.yaml:12:11: resources.memory: invalid size `1 parsec`: expected a number with an optional unit (B, KiB, MiB, GiB, KB, MB, GB), e.g. `512MiB`"],
    );
    check(
        "  wall_clock: 10m",
        "  wall_clock: 10 fortnights",
        expect!["policies/test.yaml:13:15: resources.wall_clock: invalid duration `10 fortnights`: expected a number with a unit (ms, s, m, h), e.g. `30s` or `10m`"],
    );
    check(
        "  wall_clock: 10m",
        "  wall_clock: 10",
        expect!["policies/test.yaml:13:15: resources.wall_clock: invalid duration `10`: a duration needs a unit (ms, s, m, h), e.g. `10s` or `10m`"],
    );
}

#[test]
fn limits_that_docker_would_read_as_unlimited_are_refused() {
    check(
        "  memory: 1GiB",
        "  memory: 0MiB",
        expect![[
            r#"policies/test.yaml:12:11: resources.memory: a size of 0 is not allowed: Docker reads 0 as "no limit"; give a size above zero"#
        ]],
    );
    check(
        "  cpus: 1\n",
        "  cpus: 1\n  pids: 0\n",
        expect![[
            r#"policies/test.yaml:12:9: resources.pids: invalid process count 0: expected at least 1 and at most 4194304 (Docker reads 0 as "no limit")"#
        ]],
    );
    check(
        "  cpus: 1\n",
        "  cpus: 0\n",
        expect!["policies/test.yaml:11:9: resources.cpus: invalid CPU count 0: expected a number above 0 and at most 1024"],
    );
    check(
        "  wall_clock: 10m",
        "  wall_clock: 0s",
        expect!["policies/test.yaml:13:15: resources.wall_clock: a duration of 0 is not allowed: give a duration above zero"],
    );
}

#[test]
fn only_version_1_is_read() {
    check(
        "version: 1",
        "version: 2",
        expect!["policies/test.yaml:1:10: version: unsupported policy version 2: this station reads version 1"],
    );
    check(
        "version: 1\n",
        "",
        expect!["policies/test.yaml:1:1: missing field `version`"],
    );
}

#[test]
fn keywords_are_refused_with_the_allowed_values() {
    check(
        "  release: manual",
        "  release: sometimes",
        expect!["policies/test.yaml:15:12: outputs.release: unknown value `sometimes`, expected `automatic` or `manual`"],
    );
    check(
        "resources:\n",
        "runtime: kata\nresources:\n",
        expect![
            "policies/test.yaml:10:10: runtime: unknown value `kata`, expected `runc` or `runsc`"
        ],
    );
    check(
        "    datasets: [cohort]\n",
        "    datasets: [cohort]\n    approval: auto\n",
        expect!["policies/test.yaml:7:15: trusted_signers[0].approval: unknown value `auto`, expected `automatic` or `manual`"],
    );
    check(
        "    datasets: [cohort]\n",
        "    datasets: [cohort]\n    may_sign: [trains, results]\n",
        expect!["policies/test.yaml:7:24: trusted_signers[0].may_sign[1]: unknown role `results`, expected `trains` or `jobs`"],
    );
}

#[test]
fn lists_are_checked_as_a_whole() {
    check(
        "    purposes: [\"aggregate statistics\"]",
        "    purposes: []",
        expect!["policies/test.yaml:5:15: trusted_signers[0].purposes: the list is empty: name at least one purpose this signer's trains may declare, or `*` for any"],
    );
    check(
        "    datasets: [cohort]",
        "    datasets: [cohort, \"*\"]",
        expect!["policies/test.yaml:6:15: trusted_signers[0].datasets: `*` allows every dataset and must be the only entry; remove it or the other entries"],
    );
    check(
        "    repositories: [\"trains/*\"]",
        "    repositories: []",
        expect!["policies/test.yaml:9:19: registries[0].repositories: the list is empty: name at least one repository pattern, e.g. `trains/*`, or `*` for all"],
    );
    check(
        "    datasets: [cohort]\n",
        "    datasets: [cohort]\n    may_sign: []\n",
        expect!["policies/test.yaml:7:15: trusted_signers[0].may_sign: the list is empty: a signer may sign `trains`, `jobs` or both; remove the signer if it may sign neither"],
    );
}

#[test]
fn a_signer_listed_twice_is_refused() {
    check(
        "registries:",
        "  - name: alice\n    public_key: keys/alice-2.pub\n    purposes: [\"*\"]\n    datasets: []\nregistries:",
        expect!["policies/test.yaml:3:3: trusted_signers: signer `alice` is listed twice (entries [0] and [1]); signer names must be unique"],
    );
}

#[test]
fn malformed_names_and_patterns_are_refused_at_the_entry() {
    check(
        "    datasets: [cohort]",
        "    datasets: [cohort, Cohort 2020]",
        expect!["policies/test.yaml:6:24: trusted_signers[0].datasets[1]: invalid dataset name `Cohort 2020`: use lower-case letters, digits, `-` or `_`, starting with a letter"],
    );
    check(
        "  - registry: \"127.0.0.1:5000\"",
        "  - registry: \"https://127.0.0.1:5000\"",
        expect!["policies/test.yaml:8:15: registries[0].registry: invalid registry `https://127.0.0.1:5000`: expected a host with an optional port and no scheme or path, e.g. `127.0.0.1:5000` or `registry.example.org`"],
    );
    check(
        "    repositories: [\"trains/*\"]",
        "    repositories: [\"Trains/*\"]",
        expect!["policies/test.yaml:9:20: registries[0].repositories[0]: invalid repository pattern `Trains/*`: use lower-case letters, digits, `.`, `_`, `-`, `/` and `*` for any run of characters, e.g. `trains/*`"],
    );
    check(
        "  - name: alice",
        "  - name: alice smith",
        expect!["policies/test.yaml:3:11: trusted_signers[0].name: invalid signer name `alice smith`: use letters, digits, `.`, `_`, `-` or `@` (at most 128)"],
    );
}

#[test]
fn required_fields_are_named_when_missing() {
    check(
        "    public_key: keys/alice.pub\n",
        "",
        expect!["policies/test.yaml:3:5: trusted_signers[0]: missing field `public_key`"],
    );
    check(
        "registries:\n  - registry: \"127.0.0.1:5000\"\n    repositories: [\"trains/*\"]\n",
        "",
        expect!["policies/test.yaml:1:1: missing field `registries`"],
    );
}

#[test]
fn yaml_syntax_errors_carry_a_position() {
    check("  release: manual", "  release: \"manual", expect!["policies/test.yaml:18:1: found unexpected end of stream, while scanning a quoted scalar at line 15 column 12"]);
    check("  cpus: 1", "\tcpus: 1", expect!["policies/test.yaml:11:1: found character that cannot start any token, while scanning for the next token"]);
}

/// A policy that restricts bases: one base by digest, any base by one base signer.
const WITH_BASES: &str = r#"version: 1
trusted_signers:
  - name: alice
    public_key: keys/alice.pub
    purposes: ["aggregate statistics"]
    datasets: [cohort]
registries:
  - registry: "127.0.0.1:5000"
    repositories: ["trains/*"]
trusted_base_signers:
  - name: bases-2026
    public_key: keys/bases-2026.pub
base_images:
  required: true
  allowed:
    - digest: sha256:1111111111111111111111111111111111111111111111111111111111111111
    - signer: bases-2026
"#;

/// Replaces `from` in the base-restricting policy and checks the refusal.
fn check_bases(from: &str, to: &str, expect: Expect) {
    assert!(
        WITH_BASES.contains(from),
        "`{from}` is not in the base-restricting policy"
    );
    check_text(&WITH_BASES.replacen(from, to, 1), expect);
}

#[test]
fn base_images_load_with_digests_and_base_signers() {
    let policy = Policy::from_yaml_str(WITH_BASES, "/srv/station/policy.yaml").unwrap();
    let base_images = policy.base_images().unwrap();
    assert!(base_images.required());
    let allowed = base_images.allowed().unwrap();
    assert_eq!(
        allowed.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "digest `sha256:1111111111111111111111111111111111111111111111111111111111111111`",
            "a base signed by `bases-2026`"
        ]
    );
    let base_signer = &policy.trusted_base_signers()[0];
    assert_eq!(base_signer.name(), "bases-2026");
    assert_eq!(
        base_signer.public_key_path(),
        std::path::Path::new("/srv/station/keys/bases-2026.pub")
    );
    // A base signer is not a trusted signer: its key is never offered for trains or jobs.
    assert!(policy.signer("bases-2026").is_none());
}

#[test]
fn without_base_images_any_base_and_no_base_are_allowed() {
    let policy = Policy::from_yaml_str(VALID, "policies/test.yaml").unwrap();
    assert!(policy.base_images().is_none());
    assert!(policy.trusted_base_signers().is_empty());
    // `required` defaults to false and an absent `allowed` allows any base.
    let text = format!("{VALID}base_images: {{}}\n");
    let policy = Policy::from_yaml_str(&text, "policies/test.yaml").unwrap();
    let base_images = policy.base_images().unwrap();
    assert!(!base_images.required());
    assert!(base_images.allowed().is_none());
}

#[test]
fn an_allowed_base_names_exactly_one_of_digest_and_signer() {
    check_bases(
        "    - signer: bases-2026\n",
        "    - signer: bases-2026\n      digest: sha256:2222222222222222222222222222222222222222222222222222222222222222\n",
        expect!["policies/test.yaml:17:7: base_images.allowed[1]: an allowed base names either a `digest` or a `signer`, not both; write two entries to allow both"],
    );
    check_bases(
        "    - signer: bases-2026\n",
        "    - {}\n",
        expect!["policies/test.yaml:17:7: base_images.allowed[1]: an allowed base needs a `digest: sha256:…` or a `signer:` naming one of `trusted_base_signers`"],
    );
    check_bases(
        "    - signer: bases-2026\n",
        "    - sha256:2222222222222222222222222222222222222222222222222222222222222222\n",
        expect![[
            r#"policies/test.yaml:17:7: base_images.allowed[1]: invalid type: string "sha256:2222222222222222222222222222222222222222222222222222222222222222", expected an allowed base: a mapping with `digest` or `signer`"#
        ]],
    );
}

#[test]
fn a_base_digest_must_parse() {
    check_bases(
        "    - digest: sha256:1111111111111111111111111111111111111111111111111111111111111111",
        "    - digest: sha256:1111",
        expect!["policies/test.yaml:16:15: base_images.allowed[0].digest: invalid digest `sha256:1111`: expected `sha256:` followed by 64 lower-case hex digits"],
    );
    check_bases(
        "    - digest: sha256:1111111111111111111111111111111111111111111111111111111111111111",
        "    - digest: 127.0.0.1:5000/bases/python:3.11",
        expect!["policies/test.yaml:16:15: base_images.allowed[0].digest: invalid digest `127.0.0.1:5000/bases/python:3.11`: expected `sha256:` followed by 64 lower-case hex digits"],
    );
}

#[test]
fn an_allowed_signer_must_be_a_trusted_base_signer() {
    check_bases(
        "    - signer: bases-2026",
        "    - signer: bases-2025",
        expect!["policies/test.yaml:17:15: base_images.allowed[1].signer: base signer `bases-2025` is not among `trusted_base_signers` (`bases-2026`)"],
    );
    // A train signer is not a base signer, however trusted.
    check_bases(
        "    - signer: bases-2026",
        "    - signer: alice",
        expect!["policies/test.yaml:17:15: base_images.allowed[1].signer: base signer `alice` is not among `trusted_base_signers` (`bases-2026`)"],
    );
    check_bases(
        "trusted_base_signers:\n  - name: bases-2026\n    public_key: keys/bases-2026.pub\n",
        "",
        expect!["policies/test.yaml:14:15: base_images.allowed[1].signer: base signer `bases-2026` is not declared: add it to `trusted_base_signers` (a name and the public key that signs your base images)"],
    );
}

#[test]
fn base_signers_may_be_declared_after_the_bases_that_name_them() {
    let (head, tail) = WITH_BASES.split_at(WITH_BASES.find("trusted_base_signers:").unwrap());
    let (signers, bases) = tail.split_at(tail.find("base_images:").unwrap());
    let reordered = format!("{head}{bases}{signers}");
    let policy = Policy::from_yaml_str(&reordered, "policies/test.yaml").unwrap();
    assert_eq!(policy.trusted_base_signers()[0].name(), "bases-2026");
    check_text(
        &reordered.replacen("    - signer: bases-2026", "    - signer: bases-2025", 1),
        expect!["policies/test.yaml:14:15: base_images.allowed[1].signer: base signer `bases-2025` is not among `trusted_base_signers` (`bases-2026`)"],
    );
}

#[test]
fn a_base_signer_has_a_name_of_its_own() {
    check_bases(
        "  - name: bases-2026\n",
        "  - name: alice\n",
        expect!["policies/test.yaml:11:11: trusted_base_signers[0].name: `alice` is also the name of a trusted signer: a base signer signs base images, never trains or jobs; give it a name of its own"],
    );
    check_bases(
        "base_images:",
        "  - name: bases-2026\n    public_key: keys/other.pub\nbase_images:",
        expect!["policies/test.yaml:11:3: trusted_base_signers: base signer `bases-2026` is listed twice (entries [0] and [1]); base signer names must be unique"],
    );
    check_bases(
        "    public_key: keys/bases-2026.pub\n",
        "",
        expect!["policies/test.yaml:11:5: trusted_base_signers[0]: missing field `public_key`"],
    );
}

#[test]
fn base_images_refuse_unknown_fields_and_contradictions() {
    check_bases(
        "  required: true",
        "  require: true",
        expect!["policies/test.yaml:14:3: base_images: unknown field `require`, expected `required` or `allowed`"],
    );
    check_bases(
        "    - signer: bases-2026",
        "    - signer: bases-2026\n      repository: bases/python",
        expect!["policies/test.yaml:18:7: base_images.allowed[1]: unknown field `repository`, expected `digest` or `signer`"],
    );
    check_bases(
        "  required: true",
        "  required: yes please",
        expect![[
            r#"policies/test.yaml:14:13: base_images.required: invalid type: string "yes please", expected a boolean"#
        ]],
    );
    check_bases(
        "  allowed:\n    - digest: sha256:1111111111111111111111111111111111111111111111111111111111111111\n    - signer: bases-2026\n",
        "  allowed: []\n",
        expect!["policies/test.yaml:14:3: base_images: `required: true` with an empty `allowed` list refuses every train; list the bases to allow, or set `required: false` to run only trains without a base"],
    );
}
