//! The password policy (length, character classes, a blocklist of common passwords) and
//! argon2id hashing.
//!
//! The blocklist is the 30,000 most common passwords of Dropbox's zxcvbn (MIT licence, see
//! `COMMON-PASSWORDS-LICENSE.txt`), compiled into the binary and checked case-insensitively.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

const COMMON_PASSWORDS: &str = include_str!("common-passwords.txt");

pub const MIN_LENGTH: usize = 8;
/// Long enough for any passphrase; short enough that hashing cannot be used for a DoS.
pub const MAX_LENGTH: usize = 256;

/// The runbook's password policy.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    blocklist: Arc<HashSet<&'static str>>,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl PasswordPolicy {
    pub fn new() -> Self {
        let blocklist = COMMON_PASSWORDS
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect();
        Self {
            blocklist: Arc::new(blocklist),
        }
    }

    pub fn blocklist_len(&self) -> usize {
        self.blocklist.len()
    }

    /// Every rule `password` breaks, each as a sentence fragment ("must contain a digit");
    /// empty when it complies.
    pub fn violations(&self, password: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let length = password.chars().count();
        if length < MIN_LENGTH {
            problems.push(format!("must be at least {MIN_LENGTH} characters"));
        }
        if length > MAX_LENGTH {
            problems.push(format!("must be at most {MAX_LENGTH} characters"));
        }
        if !password.chars().any(char::is_uppercase) {
            problems.push("must contain an upper-case letter".to_owned());
        }
        if !password.chars().any(char::is_lowercase) {
            problems.push("must contain a lower-case letter".to_owned());
        }
        if !password.chars().any(|c| c.is_ascii_digit()) {
            problems.push("must contain a digit".to_owned());
        }
        if !password
            .chars()
            .any(|c| !c.is_alphanumeric() && !c.is_whitespace())
        {
            problems
                .push("must contain a special character (not a letter, digit or space)".to_owned());
        }
        if self.blocklist.contains(password.to_lowercase().as_str()) {
            problems.push("is on the list of commonly used passwords".to_owned());
        }
        problems
    }
}

/// How many password checks may be admitted (hashing or waiting) per hashing thread. Beyond
/// it a check is shed at once: a queue of 1,000 would make a real login wait half a minute.
pub const ADMITTED_PER_THREAD: usize = 4;

/// argon2id hashing, off the async threads and bounded in concurrency, so a flood of logins
/// cannot starve the rest of the API of CPU; verification is also bounded in how many wait.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// Verifications admitted now (hashing or waiting for a permit), at most `max_admitted`.
    admitted: Arc<AtomicUsize>,
    max_admitted: usize,
    /// A hash of a random password: verifying against it makes a login for a user that does
    /// not exist cost the same time as one for a user that does.
    decoy: Arc<String>,
}

/// The verification queue is full; the caller answers 429 and the client retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks are waiting")]
pub struct Overloaded;

/// An admitted verification; leaving the queue when dropped (also on cancellation).
struct Admission(Arc<AtomicUsize>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn argon2() -> Argon2<'static> {
    // OWASP's recommended argon2id parameters: 19 MiB, 2 iterations, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing failed: {e}"))
}

impl PasswordHasher {
    pub fn new() -> Self {
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let decoy = hash_blocking(&uuid::Uuid::new_v4().to_string())
            .unwrap_or_else(|_| String::from("$argon2id$v=19$m=19456,t=2,p=1$invalid"));
        Self {
            permits: Arc::new(Semaphore::new(parallelism)),
            admitted: Arc::new(AtomicUsize::new(0)),
            max_admitted: parallelism * ADMITTED_PER_THREAD,
            decoy: Arc::new(decoy),
        }
    }

    /// The bound on verifications admitted at once.
    pub fn max_admitted(&self) -> usize {
        self.max_admitted
    }

    /// Verifications admitted now (hashing or waiting).
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Acquire)
    }

    fn admit(&self) -> Result<Admission, Overloaded> {
        let max = self.max_admitted;
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Overloaded)?;
        Ok(Admission(self.admitted.clone()))
    }

    pub async fn hash(&self, password: &str) -> Result<String, String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Does `password` match `hash`? With `hash: None` (no such user) it verifies against the
    /// decoy and returns false, taking the same time. [`Overloaded`] at once when
    /// [`max_admitted`](Self::max_admitted) checks are already hashing or waiting.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, Overloaded> {
        let _admission = self.admit()?;
        let Ok(_permit) = self.permits.acquire().await else {
            return Ok(false);
        };
        let (password, target, real) = match hash {
            Some(hash) => (password.to_owned(), hash.to_owned(), true),
            None => (password.to_owned(), self.decoy.as_ref().clone(), false),
        };
        let matched = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&target)
                .map(|parsed| {
                    argon2()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        Ok(real && matched)
    }
}

impl Default for PasswordHasher {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(password: &str, expected: &[&str]) {
        let policy = PasswordPolicy::new();
        let got = policy.violations(password);
        assert_eq!(got.len(), expected.len(), "{password:?}: {got:?}");
        for fragment in expected {
            assert!(
                got.iter().any(|g| g.contains(fragment)),
                "{password:?}: {got:?}"
            );
        }
    }

    #[test]
    fn each_rule_has_its_own_message() {
        check("Sturdy-Horse-42", &[]);
        check("Sh-1", &["at least 8"]);
        check("sturdy-horse-42", &["upper-case"]);
        check("STURDY-HORSE-42", &["lower-case"]);
        check("Sturdy-Horse-xx", &["digit"]);
        check("SturdyHorse42", &["special"]);
        check("abc", &["at least 8", "upper-case", "digit", "special"]);
        check(&format!("Aa1-{}", "x".repeat(MAX_LENGTH)), &["at most"]);
    }

    #[test]
    fn blocklisted_passwords_are_refused_in_any_case() {
        let policy = PasswordPolicy::new();
        assert!(policy.blocklist_len() > 10_000);
        for password in ["P@ssw0rd", "p@SSW0RD", "P@SSW0RD"] {
            let problems = policy.violations(password);
            assert!(
                problems.iter().any(|p| p.contains("commonly used")),
                "{password}: {problems:?}"
            );
        }
        assert!(policy
            .violations("password")
            .iter()
            .any(|p| p.contains("commonly used")));
    }

    #[tokio::test]
    async fn hashes_verify_and_unknown_users_never_match() {
        let hasher = PasswordHasher::new();
        let hash = hasher.hash("Sturdy-Horse-42").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(
            hasher.verify("Sturdy-Horse-42", Some(&hash)).await,
            Ok(true)
        );
        assert_eq!(
            hasher.verify("sturdy-horse-42", Some(&hash)).await,
            Ok(false)
        );
        assert_eq!(hasher.verify("Sturdy-Horse-42", None).await, Ok(false));
        assert_eq!(hasher.verify("x", Some("not a hash")).await, Ok(false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_of_checks_is_shed_beyond_the_bound() {
        let hasher = PasswordHasher::new();
        let checks: Vec<_> = (0..hasher.max_admitted() * 4)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.verify("Sturdy-Horse-42", None).await })
            })
            .collect();
        let mut shed = 0;
        let mut verified = 0;
        for check in checks {
            assert!(hasher.admitted() <= hasher.max_admitted());
            match check.await.unwrap() {
                Ok(matched) => {
                    assert!(!matched);
                    verified += 1;
                }
                Err(Overloaded) => shed += 1,
            }
        }
        assert!(shed > 0, "some checks are shed");
        assert!(verified >= 1, "admitted checks still run");
        assert_eq!(hasher.admitted(), 0, "every admission is released");
        // Once the queue drains, checks are admitted again.
        assert_eq!(hasher.verify("Sturdy-Horse-42", None).await, Ok(false));
    }
}
