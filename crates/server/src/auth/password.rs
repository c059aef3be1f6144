//! The password policy (length, character classes, a blocklist of common passwords) and
//! argon2id hashing.
//!
//! The blocklist is the 30,000 most common passwords of Dropbox's zxcvbn (MIT licence, see
//! `COMMON-PASSWORDS-LICENSE.txt`), compiled into the binary and checked case-insensitively.

use std::collections::HashSet;
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

/// argon2id hashing, off the async threads and bounded in concurrency, so a flood of logins
/// cannot starve the rest of the API of CPU.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A hash of a random password: verifying against it makes a login for a user that does
    /// not exist cost the same time as one for a user that does.
    decoy: Arc<String>,
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
            decoy: Arc::new(decoy),
        }
    }

    pub async fn hash(&self, password: &str) -> Result<String, String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Does `password` match `hash`? With `hash: None` (no such user) it verifies against the
    /// decoy and returns false, taking the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
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
        real && matched
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
        assert!(hasher.verify("Sturdy-Horse-42", Some(&hash)).await);
        assert!(!hasher.verify("sturdy-horse-42", Some(&hash)).await);
        assert!(!hasher.verify("Sturdy-Horse-42", None).await);
        assert!(!hasher.verify("x", Some("not a hash")).await);
    }
}
