//! The station's operators: who may approve runs, review outputs, or administer, and how they
//! prove it. Kept in `operators.json` under the state directory (mode 0600), each password as an
//! argon2id hash in PHC form; never a password in a message, a log or the audit log.
//!
//! Owns the file, its validation and password checks. It does not serve logins or sessions (the
//! console does) and it does not audit by itself: the caller appends an entry naming who acted.
//!
//! Roles: an `approver` approves and rejects runs; a `reviewer` releases and blocks outputs; an
//! `admin` does both, manages operators and may override failed checks.

use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The version string of the operators file.
pub const OPERATORS_VERSION: &str = "pht.operators.v1";

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Approves and rejects runs.
    Approver,
    /// Releases and blocks outputs.
    Reviewer,
    /// Everything: approvals, reviews, overrides of failed checks, operators.
    Admin,
}

impl Role {
    /// Whether this role may approve or reject runs.
    pub fn may_approve(self) -> bool {
        matches!(self, Role::Approver | Role::Admin)
    }

    /// Whether this role may release or block outputs.
    pub fn may_review(self) -> bool {
        matches!(self, Role::Reviewer | Role::Admin)
    }

    /// Whether this role may override failed checks and manage operators.
    pub fn is_admin(self) -> bool {
        self == Role::Admin
    }
}

/// One operator as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    /// argon2id in PHC string form.
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// An operator as listed: no hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorSummary {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorsFile {
    version: String,
    operators: Vec<Operator>,
}

/// Why an operator command or a login failed.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    #[error("{path}: cannot read the operators file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot write the operators file: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}; the file is written by `pht-station operators`, restore it from a backup or remove it and add the operators again")]
    Malformed {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: version {found:?}, expected {OPERATORS_VERSION:?}")]
    UnsupportedVersion { path: PathBuf, found: String },
    #[error("operator name {name:?}: use 1 to 64 lower-case letters, digits, `.`, `_` or `-`, starting with a letter")]
    InvalidName { name: String },
    #[error("operator {name} exists already; `pht-station operators passwd {name}` changes the password")]
    Exists { name: String },
    #[error("no operator {name}; `pht-station operators list` shows who there is")]
    Unknown { name: String },
    #[error("the password is shorter than {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    #[error("the two passwords differ")]
    PasswordsDiffer,
    #[error("the name or password is wrong")]
    WrongPassword,
    #[error("cannot hash the password: {reason}")]
    Hash { reason: String },
}

/// The operators file of one state directory.
#[derive(Debug)]
pub struct Operators {
    path: PathBuf,
    operators: Vec<Operator>,
}

impl Operators {
    /// The file's path in a state directory.
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join("operators.json")
    }

    /// Loads the operators (none when the file does not exist yet).
    pub fn load(state_dir: &Path) -> Result<Operators, OperatorError> {
        let path = Operators::path_in(state_dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Operators {
                    path,
                    operators: Vec::new(),
                })
            }
            Err(source) => return Err(OperatorError::Read { path, source }),
        };
        let file: OperatorsFile =
            serde_json::from_slice(&bytes).map_err(|error| OperatorError::Malformed {
                path: path.clone(),
                line: error.line(),
                column: error.column(),
                message: error.to_string(),
            })?;
        if file.version != OPERATORS_VERSION {
            return Err(OperatorError::UnsupportedVersion {
                path,
                found: file.version,
            });
        }
        Ok(Operators {
            path,
            operators: file.operators,
        })
    }

    /// Everyone, without hashes, in the order added.
    pub fn list(&self) -> Vec<OperatorSummary> {
        self.operators
            .iter()
            .map(|operator| OperatorSummary {
                name: operator.name.clone(),
                role: operator.role,
                created_at: operator.created_at,
            })
            .collect()
    }

    /// The operator of this name.
    pub fn get(&self, name: &str) -> Option<&Operator> {
        self.operators.iter().find(|operator| operator.name == name)
    }

    /// Adds an operator and saves the file.
    pub fn add(&mut self, name: &str, role: Role, password: &str) -> Result<(), OperatorError> {
        validate_name(name)?;
        if self.get(name).is_some() {
            return Err(OperatorError::Exists {
                name: name.to_string(),
            });
        }
        let password_hash = hash_password(password)?;
        self.operators.push(Operator {
            name: name.to_string(),
            role,
            password_hash,
            created_at: Utc::now(),
        });
        self.save()
    }

    /// Removes an operator and saves the file.
    pub fn remove(&mut self, name: &str) -> Result<(), OperatorError> {
        let before = self.operators.len();
        self.operators.retain(|operator| operator.name != name);
        if self.operators.len() == before {
            return Err(OperatorError::Unknown {
                name: name.to_string(),
            });
        }
        self.save()
    }

    /// Sets a new password and saves the file.
    pub fn set_password(&mut self, name: &str, password: &str) -> Result<(), OperatorError> {
        let password_hash = hash_password(password)?;
        let operator = self
            .operators
            .iter_mut()
            .find(|operator| operator.name == name)
            .ok_or_else(|| OperatorError::Unknown {
                name: name.to_string(),
            })?;
        operator.password_hash = password_hash;
        self.save()
    }

    /// The operator, if the password is theirs. An unknown name costs a hash too, so timing
    /// does not tell which names exist.
    pub fn verify(&self, name: &str, password: &str) -> Result<&Operator, OperatorError> {
        let argon2 = Argon2::default();
        match self.get(name) {
            Some(operator) => {
                let hash = PasswordHash::new(&operator.password_hash).map_err(|error| {
                    OperatorError::Hash {
                        reason: error.to_string(),
                    }
                })?;
                argon2
                    .verify_password(password.as_bytes(), &hash)
                    .map(|()| operator)
                    .map_err(|_| OperatorError::WrongPassword)
            }
            None => {
                let _ = hash_password(password);
                Err(OperatorError::WrongPassword)
            }
        }
    }

    fn save(&self) -> Result<(), OperatorError> {
        let file = OperatorsFile {
            version: OPERATORS_VERSION.to_string(),
            operators: self.operators.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&file).expect("operators always serialise");
        bytes.push(b'\n');
        let parent = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .and_then(|()| pht_fs::write_atomic_private(&self.path, &bytes))
            .map_err(|source| OperatorError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

/// Refuses a password that is too short; `confirmation` must repeat it when given.
pub fn check_new_password(password: &str, confirmation: Option<&str>) -> Result<(), OperatorError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(OperatorError::WeakPassword);
    }
    if confirmation.is_some_and(|confirmation| confirmation != password) {
        return Err(OperatorError::PasswordsDiffer);
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), OperatorError> {
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if valid {
        Ok(())
    } else {
        Err(OperatorError::InvalidName {
            name: name.to_string(),
        })
    }
}

fn hash_password(password: &str) -> Result<String, OperatorError> {
    check_new_password(password, None)?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| OperatorError::Hash {
            reason: error.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn operators_are_added_verified_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let mut operators = Operators::load(dir.path()).unwrap();
        operators
            .add("jansen", Role::Reviewer, "correct horse battery")
            .unwrap();
        let reread = Operators::load(dir.path()).unwrap();
        let operator = reread.verify("jansen", "correct horse battery").unwrap();
        assert_eq!(operator.role, Role::Reviewer);
        assert!(operator.password_hash.starts_with("$argon2id$"));
        assert!(matches!(
            reread.verify("jansen", "wrong horse battery"),
            Err(OperatorError::WrongPassword)
        ));
        assert!(matches!(
            reread.verify("nobody", "correct horse battery"),
            Err(OperatorError::WrongPassword)
        ));
        let mode = std::fs::metadata(Operators::path_in(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = std::fs::read_to_string(Operators::path_in(dir.path())).unwrap();
        assert!(!text.contains("correct horse"), "{text}");
    }

    #[test]
    fn names_passwords_and_duplicates_are_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        let mut operators = Operators::load(dir.path()).unwrap();
        let error = operators
            .add("Jan Sen", Role::Admin, "correct horse battery")
            .unwrap_err();
        expect_test::expect![[r#"operator name "Jan Sen": use 1 to 64 lower-case letters, digits, `.`, `_` or `-`, starting with a letter"#]]
            .assert_eq(&error.to_string());
        let error = operators.add("jansen", Role::Admin, "short").unwrap_err();
        expect_test::expect!["the password is shorter than 12 characters"]
            .assert_eq(&error.to_string());
        operators
            .add("jansen", Role::Admin, "correct horse battery")
            .unwrap();
        let error = operators
            .add("jansen", Role::Admin, "correct horse battery")
            .unwrap_err();
        expect_test::expect!["operator jansen exists already; `pht-station operators passwd jansen` changes the password"]
            .assert_eq(&error.to_string());
        operators
            .set_password("jansen", "another long secret")
            .unwrap();
        assert!(operators.verify("jansen", "another long secret").is_ok());
        operators.remove("jansen").unwrap();
        assert!(matches!(
            operators.remove("jansen"),
            Err(OperatorError::Unknown { .. })
        ));
    }

    #[test]
    fn roles_say_what_they_allow() {
        assert!(Role::Approver.may_approve() && !Role::Approver.may_review());
        assert!(Role::Reviewer.may_review() && !Role::Reviewer.may_approve());
        assert!(Role::Admin.may_approve() && Role::Admin.may_review() && Role::Admin.is_admin());
    }
}
