//! What one identifier scan found, per rule, and the rule results it becomes.
//!
//! Owns each rule's verdict (fail or review) and summary. It records counts and positions, never
//! the matched text, and knows nothing of how matches are found.

use crate::report::{plural, Rule, RuleAccumulator, RuleResult, Status};

/// Per-rule findings of the identifier scan of one output.
#[derive(Debug)]
pub(crate) struct IdentifierFindings {
    pub(crate) bsn: RuleAccumulator,
    pub(crate) possible_bsn: RuleAccumulator,
    pub(crate) email: RuleAccumulator,
    pub(crate) phone: RuleAccumulator,
    pub(crate) postcode: RuleAccumulator,
    pub(crate) date_of_birth: RuleAccumulator,
    pub(crate) digit_run: RuleAccumulator,
}

impl IdentifierFindings {
    pub(crate) fn new(max_positions: usize) -> IdentifierFindings {
        IdentifierFindings {
            bsn: RuleAccumulator::new(Rule::Bsn, max_positions),
            possible_bsn: RuleAccumulator::new(Rule::PossibleBsn, max_positions),
            email: RuleAccumulator::new(Rule::Email, max_positions),
            phone: RuleAccumulator::new(Rule::Phone, max_positions),
            postcode: RuleAccumulator::new(Rule::Postcode, max_positions),
            date_of_birth: RuleAccumulator::new(Rule::DateOfBirth, max_positions),
            digit_run: RuleAccumulator::new(Rule::DigitRun, max_positions),
        }
    }

    /// The rule results, in report order.
    pub(crate) fn into_results(self, max_digit_run: usize) -> Vec<RuleResult> {
        fn found(count: u64, what: &str, what_plural: &str, detail: &str) -> String {
            if count == 0 {
                format!("no {what_plural} found")
            } else {
                format!("{}{detail}", plural(count, what, what_plural))
            }
        }
        let IdentifierFindings {
            bsn,
            possible_bsn,
            email,
            phone,
            postcode,
            date_of_birth,
            digit_run,
        } = self;
        let bsn_summary = found(
            bsn.count,
            "BSN",
            "BSNs",
            " (9 digits passing the 11-test near a BSN context word)",
        );
        let possible_bsn_summary = found(
            possible_bsn.count,
            "9-digit number passing the BSN 11-test",
            "9-digit numbers passing the BSN 11-test",
            " without a BSN context word nearby",
        );
        let email_summary = found(email.count, "e-mail address", "e-mail addresses", "");
        let phone_summary = found(phone.count, "Dutch phone number", "Dutch phone numbers", "");
        let postcode_summary = found(postcode.count, "Dutch postcode", "Dutch postcodes", "");
        let date_of_birth_summary = found(
            date_of_birth.count,
            "date of birth",
            "dates of birth",
            " (dates near a birth context word or in a birth-date column)",
        );
        let digit_run_summary = found(
            digit_run.count,
            &format!("run of {max_digit_run} or more digits"),
            &format!("runs of {max_digit_run} or more digits"),
            "",
        );
        vec![
            bsn.finish(Status::Fail, bsn_summary),
            possible_bsn.finish(Status::Review, possible_bsn_summary),
            email.finish(Status::Fail, email_summary),
            phone.finish(Status::Fail, phone_summary),
            postcode.finish(Status::Review, postcode_summary),
            date_of_birth.finish(Status::Fail, date_of_birth_summary),
            digit_run.finish(Status::Review, digit_run_summary),
        ]
    }
}
