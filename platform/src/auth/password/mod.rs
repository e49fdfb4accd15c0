//! Passwords: hashing (argon2id, PHC strings, here), the process-wide bound on concurrent
//! hashes ([`pool`]) and the password policy ([`policy`]).

mod policy;
mod pool;

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};

pub use policy::{MIN_LENGTH, check_for_user};
pub use pool::{Party, PoolError, configure, default_concurrency, hash_bounded, reserve};

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password with argon2id and a random salt.
pub fn hash(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// True when `password` matches the stored hash: an argon2 PHC string, or a machine-made
/// secret's hash ([`super::machine_secret`]). A corrupt hash never matches.
pub fn verify(password: &str, stored: &str) -> bool {
    if super::machine_secret::is_hash(stored) {
        return super::machine_secret::verify(password, stored);
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a password nobody knows, with the same parameters as real ones: an unknown user
/// is verified against it so the answer takes the same path and time as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash("berth: no such user").unwrap_or_default());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_the_right_password() {
        let stored = hash("correct horse").unwrap();
        assert!(verify("correct horse", &stored));
        assert!(!verify("wrong horse", &stored));
        assert!(!verify("correct horse", "not-a-hash"));
    }
}
