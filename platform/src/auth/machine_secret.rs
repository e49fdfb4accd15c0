//! Stored hashes of machine-made secrets: the passwords Berth draws for bootstrap and service
//! users (32 random alphanumerics, about 190 bits). No guessing list helps against such a
//! secret, so argon2's cost (a 19 MiB work area and tens of milliseconds of a core per hash)
//! buys nothing; it was paid once per subscription and once per first login of every
//! microservice, and with hundreds of tenants it held the cores the API needed. People's
//! passwords are always argon2 (`password::hash`).

use sha2::{Digest, Sha256};

/// The scheme prefix; never produced by argon2's PHC strings (`$argon2id$…`).
const PREFIX: &str = "$berth-sha256$";

/// The stored form of a machine-made secret.
pub fn hash(secret: &str) -> String {
    format!("{PREFIX}{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

/// True when `stored` is a hash made by [`hash`].
pub fn is_hash(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// True when `secret` matches `stored` (a hash made by [`hash`]), compared in constant time.
pub fn verify(secret: &str, stored: &str) -> bool {
    let Some(expected) = stored.strip_prefix(PREFIX) else {
        return false;
    };
    let actual = hex::encode(Sha256::digest(secret.as_bytes()));
    expected.len() == actual.len()
        && expected
            .bytes()
            .zip(actual.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Compares `secret` as [`verify`] does, with a hash no user has: a missing user costs what a
/// wrong secret does. Always false.
pub fn verify_dummy(secret: &str) -> bool {
    static DUMMY: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| hash("berth: no such machine user"));
    std::hint::black_box(verify(secret, &DUMMY));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_right_secret_and_only_its_own_scheme() {
        let stored = hash("Zq3v9XkP0aLm2Rt7Yb4Nc8Wd1Ef6Gh5J");
        assert!(is_hash(&stored));
        assert!(verify("Zq3v9XkP0aLm2Rt7Yb4Nc8Wd1Ef6Gh5J", &stored));
        assert!(!verify("Zq3v9XkP0aLm2Rt7Yb4Nc8Wd1Ef6Gh5K", &stored));
        assert!(!verify("", &stored));
        // A truncated or foreign stored value never matches.
        assert!(!verify(
            "Zq3v9XkP0aLm2Rt7Yb4Nc8Wd1Ef6Gh5J",
            &stored[..stored.len() - 1]
        ));
        assert!(!verify_dummy("berth: no such machine user"));
        assert!(!is_hash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"));
        assert!(!verify("x", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"));
    }
}
