//! The one pattern language of a policy: `*` stands for any run of characters (`/` included),
//! every other character stands for itself. Owns matching only; which fields use patterns, and
//! which characters a pattern may contain, is decided where the pattern is read.

/// Whether `text` matches `pattern` as a whole.
///
/// `*` crosses `/` on purpose: `trains/*` is how operators write "everything under `trains/`",
/// and `*` alone must mean "every repository". Iterative with one backtracking point, so a
/// hostile pattern or repository name cannot make it exponential.
pub(crate) fn matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut pattern_idx, mut text_idx) = (0, 0);
    // Where the last `*` was, and the text position it currently stands in for.
    let mut backtrack: Option<(usize, usize)> = None;
    while text_idx < text.len() {
        match pattern.get(pattern_idx) {
            Some(b'*') => {
                backtrack = Some((pattern_idx, text_idx));
                pattern_idx += 1;
            }
            Some(&byte) if byte == text[text_idx] => {
                pattern_idx += 1;
                text_idx += 1;
            }
            _ => match backtrack {
                // Let the last `*` swallow one more character and try again.
                Some((star_idx, star_text_idx)) => {
                    backtrack = Some((star_idx, star_text_idx + 1));
                    pattern_idx = star_idx + 1;
                    text_idx = star_text_idx + 1;
                }
                None => return false,
            },
        }
    }
    pattern[pattern_idx..].iter().all(|&byte| byte == b'*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn check(pattern: &str, text: &str, expected: bool) {
        assert_eq!(
            matches(pattern, text),
            expected,
            "pattern `{pattern}` against `{text}`"
        );
    }

    #[test]
    fn literal_patterns_match_only_themselves() {
        check("trains/cohort-stats", "trains/cohort-stats", true);
        check("trains/cohort-stats", "trains/cohort-stats2", false);
        check("trains/cohort-stats", "trains/cohort", false);
        check("", "", true);
        check("", "trains", false);
    }

    #[test]
    fn a_star_matches_any_run_of_characters_including_slashes() {
        check("*", "trains/cohort-stats", true);
        check("*", "", true);
        check("trains/*", "trains/cohort-stats", true);
        check("trains/*", "trains/nested/cohort-stats", true);
        check("trains/*", "trains/", true);
        check("trains/*", "trainsx/cohort-stats", false);
        check("trains/*", "other/trains/cohort-stats", false);
        check("*/stats", "trains/stats", true);
        check("*/stats", "trains/stats/x", false);
        check("a*b*c", "a-b-b-c", true);
        check("a*b*c", "a-c-b", false);
        check("**", "anything", true);
    }

    #[test]
    fn a_long_hostile_input_is_decided_quickly() {
        let pattern = "*a*a*a*a*a*a*a*a*b";
        let text = "a".repeat(10_000);
        check(pattern, &text, false);
    }
}
