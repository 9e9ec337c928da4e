//! Why a policy file could not be loaded: the only `Err` this crate returns.
//!
//! A policy that loads but refuses a train is not an error (see `decision`); this module is only
//! about files that are not valid policies. It does not read files: the station passes the text
//! and the path it read it from, which is what the messages name.

/// A policy file that is not a valid policy: YAML syntax, an unknown field, a value of the wrong
/// type, a bad unit or an out-of-range value. Displayed as `file:line:column: what and expected`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The parser could say where the problem is (1-based line and column).
    #[error("{source_name}:{line}:{column}: {message}")]
    Invalid {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// The parser could not say where (for example, a document that ends unexpectedly).
    #[error("{source_name}: {message}")]
    InvalidAnywhere {
        source_name: String,
        message: String,
    },
}

impl PolicyError {
    pub(crate) fn from_yaml(source_name: &str, error: &serde_yaml_ng::Error) -> PolicyError {
        let full_message = error.to_string();
        match error.location() {
            Some(location) => {
                // serde_yaml_ng writes the position in words (at the end, or for syntax errors
                // before a second position); ours goes in front, compiler style.
                let position_in_words =
                    format!(" at line {} column {}", location.line(), location.column());
                let message = full_message.replacen(&position_in_words, "", 1);
                PolicyError::Invalid {
                    source_name: source_name.to_string(),
                    line: location.line(),
                    column: location.column(),
                    message,
                }
            }
            None => PolicyError::InvalidAnywhere {
                source_name: source_name.to_string(),
                message: full_message,
            },
        }
    }

    /// The line and column (1-based), when known.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            PolicyError::Invalid { line, column, .. } => Some((*line, *column)),
            PolicyError::InvalidAnywhere { .. } => None,
        }
    }
}
