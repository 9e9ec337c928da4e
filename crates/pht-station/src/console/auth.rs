//! Who is signed in to the console: sessions, sign-in throttling, CSRF tokens and cookies.
//!
//! Owns the session table (in memory: a console restart signs everyone out), the throttle that
//! slows repeated failed sign-ins for a name or an address, and the cookie and token formats.
//! Passwords are checked by `operators.rs`; nothing here sees one after the check, and no token
//! or password is ever logged or audited.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore as _};
use sha2::{Digest as _, Sha256};

use crate::operators::Role;

/// The session cookie.
pub const SESSION_COOKIE: &str = "pht_session";
/// The cookie that ties a sign-in form to the browser that fetched it.
pub const LOGIN_COOKIE: &str = "pht_login";
/// A session ends this long after sign-in, however busy.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Failed sign-ins for one name or address allowed before each further one locks it out.
pub const FREE_FAILURES: u32 = 3;
/// The longest lock-out after repeated failures.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// Failures older than this are forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

/// A random token: 32 bytes from the operating system, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Compares two tokens in time that does not depend on where they differ.
pub fn tokens_match(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A signed-in operator, as a request sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub operator: String,
    pub role: Role,
    /// The token every form of this session carries.
    pub csrf: String,
}

#[derive(Debug)]
struct Session {
    signed_in: SignedIn,
    started: Instant,
    last_seen: Instant,
}

/// The sessions of one console process, keyed by the SHA-256 of their cookie's token.
#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    sessions: Mutex<HashMap<String, Session>>,
}

fn key_of(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions {
            idle,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a session; returns its cookie token.
    pub fn start(&self, operator: &str, role: Role) -> String {
        self.start_at(operator, role, Instant::now())
    }

    fn start_at(&self, operator: &str, role: Role, now: Instant) -> String {
        let token = random_token();
        let mut sessions = self.lock();
        sessions.retain(|_, session| !self.expired(session, now));
        sessions.insert(
            key_of(&token),
            Session {
                signed_in: SignedIn {
                    operator: operator.to_string(),
                    role,
                    csrf: random_token(),
                },
                started: now,
                last_seen: now,
            },
        );
        token
    }

    fn expired(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.last_seen) > self.idle
            || now.duration_since(session.started) > SESSION_LIFETIME
    }

    /// The operator of a live session, which counts as used now.
    pub fn get(&self, token: &str) -> Option<SignedIn> {
        self.get_at(token, Instant::now())
    }

    fn get_at(&self, token: &str, now: Instant) -> Option<SignedIn> {
        let mut sessions = self.lock();
        let key = key_of(token);
        let session = sessions.get_mut(&key)?;
        if self.expired(session, now) {
            sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.signed_in.clone())
    }

    /// Ends a session.
    pub fn end(&self, token: &str) {
        self.lock().remove(&key_of(token));
    }

    /// Ends every session of an operator (removed, or their role changed).
    pub fn end_all_of(&self, operator: &str) {
        self.lock()
            .retain(|_, session| session.signed_in.operator != operator);
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Slows repeated failed sign-ins: after [`FREE_FAILURES`] failures for a name (or from an
/// address), each further failure locks that name (or address) out for twice as long as the
/// last, up to [`MAX_LOCKOUT`]. While locked out a sign-in is refused before the password is
/// checked. A success clears the name's failures.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long until any of `keys` may try again; `None` when all may now.
    pub fn wait(&self, keys: &[String]) -> Option<Duration> {
        let now = Instant::now();
        let failures = self.lock();
        keys.iter()
            .filter_map(|key| failures.get(key)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Records a failed sign-in for each of `keys`; returns the lock-out it earned, if any.
    pub fn fail(&self, keys: &[String]) -> Option<Duration> {
        let now = Instant::now();
        let mut failures = self.lock();
        failures.retain(|_, f| now.duration_since(f.last) < FAILURE_MEMORY);
        let mut longest = None;
        for key in keys {
            let entry = failures.entry(key.clone()).or_insert(Failures {
                count: 0,
                last: now,
                locked_until: None,
            });
            entry.count += 1;
            entry.last = now;
            if entry.count > FREE_FAILURES {
                let doublings = (entry.count - FREE_FAILURES - 1).min(16);
                let lockout = (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_LOCKOUT);
                entry.locked_until = Some(now + lockout);
                longest = longest.max(Some(lockout));
            }
        }
        longest
    }

    /// Clears the failures of `key` (a successful sign-in).
    pub fn succeed(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// A `Set-Cookie` value: HttpOnly and SameSite=Strict always, Secure when served with TLS.
pub fn set_cookie(name: &str, value: &str, max_age: Duration, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// A `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(name: &str, secure: bool) -> String {
    set_cookie(name, "", Duration::ZERO, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_failures_lock_a_name_out_for_longer_each_time() {
        let throttle = Throttle::default();
        let keys = vec!["name:alice".to_string()];
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.fail(&keys), None);
        }
        assert_eq!(throttle.wait(&keys), None);
        assert_eq!(throttle.fail(&keys), Some(Duration::from_secs(1)));
        assert!(throttle.wait(&keys).is_some());
        assert_eq!(throttle.fail(&keys), Some(Duration::from_secs(2)));
        assert_eq!(throttle.fail(&keys), Some(Duration::from_secs(4)));
        for _ in 0..20 {
            throttle.fail(&keys);
        }
        assert_eq!(throttle.fail(&keys), Some(MAX_LOCKOUT));
        // Another name is not held back by alice's failures.
        assert_eq!(throttle.wait(&["name:bob".to_string()]), None);
        throttle.succeed("name:alice");
        assert_eq!(throttle.wait(&keys), None);
    }

    #[test]
    fn a_session_ends_when_idle_and_on_sign_out() {
        // The clock is given, not read, so a slow machine cannot make this test fail.
        let idle = Duration::from_secs(60);
        let sessions = Sessions::new(idle);
        let signed_in_at = Instant::now();
        let token = sessions.start_at("alice", Role::Reviewer, signed_in_at);
        let seen_at = signed_in_at + idle / 2;
        let signed_in = sessions.get_at(&token, seen_at).unwrap();
        assert_eq!(signed_in.operator, "alice");
        assert_ne!(signed_in.csrf, token);
        assert_eq!(sessions.get_at("not-a-token", seen_at), None);
        // Being seen keeps it alive past the first idle period ...
        let later = seen_at + idle - Duration::from_secs(1);
        assert!(sessions.get_at(&token, later).is_some(), "used, so alive");
        // ... and a whole idle period without use ends it.
        let too_late = later + idle + Duration::from_secs(1);
        assert_eq!(sessions.get_at(&token, too_late), None, "idle too long");
        let token = Sessions::new(Duration::from_secs(60)).start("bob", Role::Admin);
        let sessions = Sessions::new(Duration::from_secs(60));
        assert_eq!(sessions.get(&token), None, "another console's token");
        let token = sessions.start("bob", Role::Admin);
        sessions.end(&token);
        assert_eq!(sessions.get(&token), None);
    }

    #[test]
    fn cookies_are_read_by_exact_name_and_set_strict() {
        let header = "other=1; pht_session_x=2; pht_session=abc";
        assert_eq!(cookie(header, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(header, "missing"), None);
        let set = set_cookie(SESSION_COOKIE, "t", Duration::from_secs(60), true);
        assert_eq!(
            set,
            "pht_session=t; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure"
        );
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "ab"));
    }
}
