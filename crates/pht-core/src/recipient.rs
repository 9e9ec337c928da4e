//! Age recipients as people give them: an `age1…` string, or the text of a `.age.pub` file.
//!
//! Owns the one check every entry point uses (the `pht` CLI, the hub's admin commands and API,
//! the station's configuration and its check before a run): one X25519 recipient, comments and
//! blank lines allowed. The secret half given by mistake (an `AGE-SECRET-KEY-1…` identity) is
//! recognised and named, and never echoed: nothing of the input appears in an error but a
//! recipient's own public text.

/// Why text is not an age recipient.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipientError {
    #[error("this looks like an age identity (a secret key), not a recipient; give the recipient file (`.age.pub`) or its `age1…` line — and keep the identity file private")]
    SecretKey,
    #[error("no age recipient in it (expected one `age1…` line)")]
    Empty,
    #[error("more than one age recipient in it; give exactly one `age1…` line")]
    Several,
    #[error("`{shown}` is not an age X25519 recipient (`age1…`): {reason}")]
    Invalid { shown: String, reason: String },
}

/// Parses one age X25519 recipient from `text` (`age1…`, or a `.age.pub` file's contents).
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient, RecipientError> {
    if text.contains("AGE-SECRET-KEY-") {
        return Err(RecipientError::SecretKey);
    }
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'));
    let line = lines.next().ok_or(RecipientError::Empty)?;
    if lines.next().is_some() {
        return Err(RecipientError::Several);
    }
    line.parse::<age::x25519::Recipient>()
        .map_err(|reason| RecipientError::Invalid {
            shown: shown(line),
            reason: reason.to_string(),
        })
}

/// What of a line that is not a recipient may be shown: a public-looking prefix, cut short, in
/// printable ASCII only (a terminal never receives control characters from it).
fn shown(line: &str) -> String {
    let printable: String = line
        .chars()
        .take(24)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    if line.chars().count() > 24 {
        format!("{printable}…")
    } else {
        printable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret as _;

    #[test]
    fn a_recipient_file_with_a_comment_parses() {
        let identity = age::x25519::Identity::generate();
        let text = format!("# created by pht\n{}\n", identity.to_public());
        assert_eq!(parse_recipient(&text).unwrap(), identity.to_public());
    }

    #[test]
    fn an_identity_given_as_a_recipient_is_named_and_never_printed() {
        let identity = age::x25519::Identity::generate();
        let secret = identity.to_string().expose_secret().to_string();
        let text = format!(
            "# created: 2026-12-01\n# public key: {}\n{secret}\n",
            identity.to_public()
        );
        let error = parse_recipient(&text).unwrap_err();
        assert_eq!(error, RecipientError::SecretKey);
        assert!(!error.to_string().contains(&secret[..20]));
    }

    #[test]
    fn garbage_is_refused_with_only_a_short_printable_prefix() {
        let error =
            parse_recipient("age1garbage\u{1b}[31m-and-a-very-long-tail-indeed").unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("`age1garbage?[31m-and-a-v…` is not"),
            "{message}"
        );
        assert_eq!(parse_recipient("\n# nothing\n"), Err(RecipientError::Empty));
    }
}
