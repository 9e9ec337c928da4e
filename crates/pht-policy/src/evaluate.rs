//! Evaluation: a policy and a run request in, a decision with every failing rule out.
//!
//! Pure and total: no I/O, no clock, no panics, and no early return on the first failure, so an
//! operator sees everything that is wrong with a request at once. It trusts the request's facts
//! (the station verified the signatures before asking) and decides only what the policy says.
//!
//! Resources: a request above a ceiling is denied rather than clamped, because the train declared
//! what it needs and would likely fail or be killed with less; a request at or below the ceiling
//! is granted as asked; an absent request gets the ceiling. Limits the train cannot ask for (pids,
//! output, tmp, logs) are always the ceiling.

use std::time::Duration;

use pht_core::units::format_bytes;

use crate::decision::{Decision, Grant, Reason, Rule};
use crate::policy::{Policy, TrustedSigner};
use crate::request::RunRequest;
use crate::values::{format_duration, quoted, Approval, Role};

/// Which of the two signers a scope check is about.
#[derive(Debug, Clone, Copy)]
enum Subject {
    Train,
    Job,
}

impl Subject {
    fn label(self) -> &'static str {
        match self {
            Subject::Train => "train signer",
            Subject::Job => "job signer",
        }
    }

    fn purpose_rule(self) -> Rule {
        match self {
            Subject::Train => Rule::PurposeAllowed,
            Subject::Job => Rule::JobPurposeAllowed,
        }
    }

    fn dataset_rule(self) -> Rule {
        match self {
            Subject::Train => Rule::DatasetAllowed,
            Subject::Job => Rule::JobDatasetAllowed,
        }
    }
}

/// The limits a request asked for, built by `check_resources` only when each one is usable and
/// within its ceiling: `grant` takes this rather than the raw request.
#[derive(Debug, Clone, Copy)]
struct CheckedLimits {
    cpus: Option<f64>,
    memory_bytes: Option<u64>,
    wall_clock: Option<Duration>,
}

impl Policy {
    /// Decides whether `request` may run, and with which limits. Every failing rule is reported.
    #[must_use]
    pub fn evaluate(&self, request: &RunRequest) -> Decision {
        let mut denials = Vec::new();

        let train_signer = self.check_train_signer(request, &mut denials);
        let job_signer = self.check_job_signer(request, &mut denials);
        self.check_registry(request, &mut denials);
        let limits = self.check_resources(request, &mut denials);
        self.check_devices_and_parameters(request, &mut denials);
        self.check_base(request, &mut denials);

        let (Some(train_signer), Some(limits), true) = (train_signer, limits, denials.is_empty())
        else {
            return Decision::Deny { reasons: denials };
        };
        let grant = self.grant(request, train_signer, limits);

        let mut approvals = Vec::new();
        if train_signer.approval() == Approval::Manual {
            approvals.push(manual_approval(
                Rule::ApprovalSigner,
                Subject::Train,
                train_signer,
            ));
        }
        if let Some(job_signer) = job_signer {
            if job_signer.approval() == Approval::Manual {
                approvals.push(manual_approval(
                    Rule::ApprovalJobSigner,
                    Subject::Job,
                    job_signer,
                ));
            }
        }
        if approvals.is_empty() {
            Decision::Allow(grant)
        } else {
            Decision::NeedsApproval {
                grant,
                reasons: approvals,
            }
        }
    }

    /// The train signer, when it is a known signer; pushes what is wrong with it.
    fn check_train_signer(
        &self,
        request: &RunRequest,
        denials: &mut Vec<Reason>,
    ) -> Option<&TrustedSigner> {
        let Some(name) = request.train_signer.as_deref() else {
            denials.push(Reason::new(
                Rule::SignerTrusted,
                "a signature verified with a trusted signer's key",
                "no verified signature",
                "the train is not signed by any trusted signer",
            ));
            return None;
        };
        let Some(signer) = self.signer(name) else {
            denials.push(self.unknown_signer(Rule::SignerKnown, Subject::Train, name));
            return None;
        };
        if !signer.may_sign(Role::Trains) {
            denials.push(role_not_allowed(
                Rule::SignerMaySign,
                Subject::Train,
                signer,
                Role::Trains,
            ));
        }
        // The scope is checked even when the role is wrong: the operator sees every problem.
        check_scope(signer, Subject::Train, request, denials);
        Some(signer)
    }

    /// The job signer, when there is one and it is known; pushes what is wrong with it.
    fn check_job_signer(
        &self,
        request: &RunRequest,
        denials: &mut Vec<Reason>,
    ) -> Option<&TrustedSigner> {
        let name = request.job_signer.as_deref()?;
        let Some(signer) = self.signer(name) else {
            denials.push(self.unknown_signer(Rule::JobSignerKnown, Subject::Job, name));
            return None;
        };
        if !signer.may_sign(Role::Jobs) {
            denials.push(role_not_allowed(
                Rule::JobSignerMaySign,
                Subject::Job,
                signer,
                Role::Jobs,
            ));
        }
        // The job signer receives the results, so it must be allowed the purpose and the data
        // itself: otherwise a researcher could reach a dataset through someone else's train.
        // When one signer signed both, its scope was already checked as the train signer's.
        if request.train_signer.as_deref() != Some(name) {
            check_scope(signer, Subject::Job, request, denials);
        }
        Some(signer)
    }

    fn unknown_signer(&self, rule: Rule, subject: Subject, name: &str) -> Reason {
        let names: Vec<String> = self
            .trusted_signers()
            .iter()
            .map(|signer| signer.name().to_string())
            .collect();
        Reason::new(
            rule,
            one_of(&names),
            format!("`{name}`"),
            format!(
                "{} `{name}` is not among the policy's trusted signers",
                subject.label()
            ),
        )
    }

    fn check_registry(&self, request: &RunRequest, denials: &mut Vec<Reason>) {
        let rules: Vec<_> = self.registry_rules_for(&request.registry).collect();
        if rules.is_empty() {
            let registries: Vec<String> = self
                .registries()
                .iter()
                .map(|rule| rule.registry().to_string())
                .collect();
            denials.push(Reason::new(
                Rule::RegistryAllowed,
                one_of(&registries),
                format!("`{}`", request.registry),
                format!(
                    "registry `{}` is not among the policy's registries",
                    request.registry
                ),
            ));
            return;
        }
        if !rules
            .iter()
            .any(|rule| rule.allows_repository(&request.repository))
        {
            let patterns: Vec<String> = rules
                .iter()
                .flat_map(|rule| rule.repository_patterns().iter().cloned())
                .collect();
            denials.push(Reason::new(
                Rule::RepositoryAllowed,
                format!("a repository matching {}", one_of(&patterns)),
                format!("`{}`", request.repository),
                format!(
                    "repository `{}` matches none of the patterns allowed in registry `{}`",
                    request.repository, request.registry
                ),
            ));
        }
    }

    /// The requested limits when all are within the ceilings; pushes each one that is not.
    fn check_resources(
        &self,
        request: &RunRequest,
        denials: &mut Vec<Reason>,
    ) -> Option<CheckedLimits> {
        let ceilings = self.resources();
        let asked = request.resources;
        let before = denials.len();

        if let Some(cpus) = asked.cpus {
            // `!(a <= b)` rather than `a > b`: a NaN request must be refused too.
            if !(cpus > 0.0 && cpus <= ceilings.cpus) {
                denials.push(over_ceiling(
                    Rule::ResourcesCpus,
                    cpus > 0.0,
                    ceilings.cpus.to_string(),
                    cpus.to_string(),
                    "CPUs",
                ));
            }
        }
        if let Some(memory_bytes) = asked.memory_bytes {
            if !(memory_bytes > 0 && memory_bytes <= ceilings.memory_bytes) {
                denials.push(over_ceiling(
                    Rule::ResourcesMemory,
                    memory_bytes > 0,
                    format_bytes(ceilings.memory_bytes),
                    format_bytes(memory_bytes),
                    "of memory",
                ));
            }
        }
        if let Some(wall_clock) = asked.wall_clock {
            if wall_clock.is_zero() || wall_clock > ceilings.wall_clock {
                denials.push(over_ceiling(
                    Rule::ResourcesWallClock,
                    !wall_clock.is_zero(),
                    format_duration(ceilings.wall_clock),
                    format_duration(wall_clock),
                    "of wall-clock time",
                ));
            }
        }

        (denials.len() == before).then_some(CheckedLimits {
            cpus: asked.cpus,
            memory_bytes: asked.memory_bytes,
            wall_clock: asked.wall_clock,
        })
    }

    fn check_devices_and_parameters(&self, request: &RunRequest, denials: &mut Vec<Reason>) {
        if request.gpu && !self.gpu_allowed() {
            denials.push(Reason::new(
                Rule::GpuAllowed,
                "no GPU (gpu.allowed is false)",
                "a GPU",
                "the run asks for a GPU; this policy grants none",
            ));
        }
        if let Some(runtime) = request.runtime {
            if runtime != self.runtime() {
                denials.push(Reason::new(
                    Rule::RuntimeAllowed,
                    format!("`{}`", self.runtime()),
                    format!("`{runtime}`"),
                    format!(
                        "the run asks for runtime `{runtime}`; this station runs trains under `{}`",
                        self.runtime()
                    ),
                ));
            }
        }
        if request.parameters_bytes > self.max_parameters_bytes() {
            denials.push(Reason::new(
                Rule::ParametersSize,
                format!("at most {}", format_bytes(self.max_parameters_bytes())),
                format_bytes(request.parameters_bytes),
                format!(
                    "the job's parameters take {}; the policy allows at most {}",
                    format_bytes(request.parameters_bytes),
                    format_bytes(self.max_parameters_bytes())
                ),
            ));
        }
    }

    /// The train's base against `base_images:`; nothing to check without that section.
    fn check_base(&self, request: &RunRequest, denials: &mut Vec<Reason>) {
        let Some(base_images) = self.base_images() else {
            return;
        };
        let expected = match base_images.allowed() {
            None => "any base image".to_string(),
            Some(allowed) => {
                let entries: Vec<String> = allowed.iter().map(ToString::to_string).collect();
                match entries.as_slice() {
                    [] => "no base image (base_images.allowed is empty)".to_string(),
                    [entry] => entry.clone(),
                    _ => format!("one of {}", entries.join(", ")),
                }
            }
        };
        match &request.base {
            None if base_images.required() => denials.push(Reason::new(
                Rule::BaseAllowed,
                expected,
                "no base",
                "the train is built on no base image; this policy requires one (base_images.required)",
            )),
            None => {}
            Some(base) if base_images.allows(&base.digest, base.signer.as_deref()) => {}
            Some(base) => {
                let signed = match &base.signer {
                    Some(signer) => format!("signed by `{signer}`"),
                    None => "signed by no trusted base signer".to_string(),
                };
                denials.push(Reason::new(
                    Rule::BaseAllowed,
                    expected,
                    format!("`{}`, {signed}", base.digest),
                    format!(
                        "the train is built on {}@{}, which is not a base this policy allows",
                        base.repository, base.digest
                    ),
                ));
            }
        }
    }

    /// Only called once every rule held, so each requested limit is within its ceiling.
    fn grant(
        &self,
        request: &RunRequest,
        train_signer: &TrustedSigner,
        limits: CheckedLimits,
    ) -> Grant {
        let ceilings = self.resources();
        let mut datasets: Vec<String> = Vec::with_capacity(request.datasets.len());
        for dataset in &request.datasets {
            if !datasets.contains(dataset) {
                datasets.push(dataset.clone());
            }
        }
        Grant {
            signer: train_signer.name().to_string(),
            job_signer: request.job_signer.clone(),
            registry: request.registry.clone(),
            repository: request.repository.clone(),
            manifest_digest: request.manifest_digest.clone(),
            datasets,
            cpus: limits.cpus.unwrap_or(ceilings.cpus),
            memory_bytes: limits.memory_bytes.unwrap_or(ceilings.memory_bytes),
            pids: ceilings.pids,
            wall_clock: limits.wall_clock.unwrap_or(ceilings.wall_clock),
            output_bytes: ceilings.output_bytes,
            tmp_bytes: ceilings.tmp_bytes,
            log_bytes: ceilings.log_bytes,
            runtime: self.runtime(),
            gpu: request.gpu && self.gpu_allowed(),
            policy_hash: self.content_hash().to_string(),
        }
    }
}

/// Pushes a reason for the purpose and for each dataset `signer` is not allowed.
fn check_scope(
    signer: &TrustedSigner,
    subject: Subject,
    request: &RunRequest,
    denials: &mut Vec<Reason>,
) {
    if !signer.purposes().allows(&request.purpose) {
        denials.push(Reason::new(
            subject.purpose_rule(),
            signer.purposes().to_string(),
            format!("`{}`", request.purpose),
            format!(
                "{} `{}` may not run trains for the purpose `{}`",
                subject.label(),
                signer.name(),
                request.purpose
            ),
        ));
    }
    let mut reported: Vec<&str> = Vec::new();
    for dataset in &request.datasets {
        if signer.datasets().allows(dataset) || reported.contains(&dataset.as_str()) {
            continue;
        }
        reported.push(dataset);
        denials.push(Reason::new(
            subject.dataset_rule(),
            signer.datasets().to_string(),
            format!("`{dataset}`"),
            format!(
                "{} `{}` may not use dataset `{dataset}`",
                subject.label(),
                signer.name()
            ),
        ));
    }
}

fn role_not_allowed(rule: Rule, subject: Subject, signer: &TrustedSigner, role: Role) -> Reason {
    let roles: Vec<String> = signer
        .roles()
        .iter()
        .map(|role| role.as_str().to_string())
        .collect();
    Reason::new(
        rule,
        format!("`{}` in may_sign", role.as_str()),
        format!("may_sign: {}", quoted(&roles)),
        format!(
            "{} `{}` may not sign {}",
            subject.label(),
            signer.name(),
            role.as_str()
        ),
    )
}

fn manual_approval(rule: Rule, subject: Subject, signer: &TrustedSigner) -> Reason {
    Reason::new(
        rule,
        "`automatic`",
        format!("`{}`", signer.approval()),
        format!(
            "{} `{}` requires an operator's approval",
            subject.label(),
            signer.name()
        ),
    )
}

/// A reason for a requested limit above its ceiling (`positive`) or not a usable limit at all.
fn over_ceiling(rule: Rule, positive: bool, ceiling: String, asked: String, what: &str) -> Reason {
    if positive {
        Reason::new(
            rule,
            format!("at most {ceiling}"),
            asked.clone(),
            format!("the train asks for {asked} {what}; the policy allows at most {ceiling}"),
        )
    } else {
        Reason::new(
            rule,
            format!("above 0 and at most {ceiling}"),
            asked.clone(),
            format!("the train asks for {asked} {what}, which is not a usable limit"),
        )
    }
}

/// `one of `a`, `b``, or `none` for an empty list.
fn one_of(entries: &[String]) -> String {
    if entries.is_empty() {
        "none (the list in the policy is empty)".to_string()
    } else {
        format!("one of {}", quoted(entries))
    }
}
