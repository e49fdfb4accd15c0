//! The password policy: length, no control characters, enough different characters, not one of
//! the most common passwords, not the user's own name or address.

/// Minimum and maximum password length (characters). The documented tenant default minimum is 8.
pub const MIN_LENGTH: usize = 8;
pub const MAX_LENGTH: usize = 128;
/// Fewest different characters a password may have (`aaaaaaaa`, `abababab` are refused).
pub const MIN_DISTINCT: usize = 4;

/// Passwords seen first in every guessing list (length ≥ 8, lower case); compared ignoring case.
const COMMON: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "password1234",
    "password!",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "pa$$w0rd",
    "12345678",
    "123456789",
    "1234567890",
    "12341234",
    "87654321",
    "11223344",
    "qwertyui",
    "qwertyuiop",
    "qwerty123",
    "qwerty12",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "q1w2e3r4",
    "zaq12wsx",
    "1qaz2wsx",
    "qazwsxedc",
    "asdfghjk",
    "asdfghjkl",
    "zxcvbnm1",
    "abcdefgh",
    "abcd1234",
    "abc12345",
    "abcdef123",
    "iloveyou",
    "iloveyou1",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "superman",
    "starwars",
    "trustno1",
    "whatever",
    "welcome1",
    "welcome123",
    "letmein1",
    "letmein123",
    "computer",
    "internet",
    "michelle",
    "jennifer",
    "corvette",
    "mercedes",
    "liverpool",
    "chocolate",
    "changeme",
    "changeme1",
    "changeme123",
    "administrator",
    "admin123",
    "admin1234",
    "adminadmin",
    "administrator1",
    "root1234",
    "rootroot",
    "default1",
    "secret123",
    "master123",
    "dragon123",
    "monkey123",
    "test1234",
    "testtest",
    "guest123",
    "cumulocity",
    "cumulocity1",
    "management",
    "berth123",
    "berthberth",
    "1234qwer",
    "qwer1234",
    "q1w2e3r4t5",
    "a1b2c3d4",
    "aa123456",
    "password2",
    "summer2024",
    "winter2024",
    "spring2024",
    "autumn2024",
];

/// The password policy for any password: 8 to 128 characters, no control characters, at
/// least [`MIN_DISTINCT`] different characters, not one of the most common passwords.
pub fn check_strength(password: &str) -> Result<(), String> {
    let length = password.chars().count();
    if length < MIN_LENGTH {
        return Err(format!(
            "password must have at least {MIN_LENGTH} characters"
        ));
    }
    if length > MAX_LENGTH {
        return Err(format!(
            "password must have at most {MAX_LENGTH} characters"
        ));
    }
    if password.chars().any(char::is_control) {
        return Err("password must not contain control characters".into());
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT {
        return Err(format!(
            "password must contain at least {MIN_DISTINCT} different characters"
        ));
    }
    let lower = password.to_lowercase();
    if COMMON.contains(&lower.as_str()) {
        return Err(
            "password is one of the most common passwords; choose one that is hard to guess".into(),
        );
    }
    Ok(())
}

/// [`check_strength`], and the password must not be the user's name or e-mail address (or
/// its part before `@`), ignoring case.
pub fn check_for_user(password: &str, user_name: &str, email: Option<&str>) -> Result<(), String> {
    check_strength(password)?;
    let lower = password.to_lowercase();
    let mut identities = vec![user_name.to_lowercase()];
    if let Some(email) = email.filter(|e| !e.is_empty()) {
        identities.push(email.to_lowercase());
        if let Some((local, _)) = email.split_once('@') {
            identities.push(local.to_lowercase());
        }
    }
    if identities.iter().any(|i| !i.is_empty() && *i == lower) {
        return Err("password must not be the user name or e-mail address".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rejects_weak_passwords_and_says_why() {
        let cases = [
            ("short", Some("at least 8 characters")),
            ("longenough", None),
            ("with\nnewline", Some("control characters")),
            ("aaaaaaaa", Some("different characters")),
            ("abababab", Some("different characters")),
            ("password", Some("most common")),
            ("PassWord1", Some("most common")),
            ("12345678", Some("most common")),
            ("Admin-Passw0rd", None),
            (&"x1y2".repeat(40), Some("at most 128")),
        ];
        for (pw, expected) in cases {
            let result = check_strength(pw);
            match expected {
                None => assert!(result.is_ok(), "{pw:?}: {result:?}"),
                Some(text) => assert!(
                    result.as_ref().is_err_and(|m| m.contains(text)),
                    "{pw:?}: {result:?}"
                ),
            }
        }
    }

    #[test]
    fn policy_rejects_the_users_own_name_and_address() {
        let cases = [
            ("jane.doe1", "jane.doe1", None, false),
            ("JANE.DOE1", "jane.doe1", None, false),
            ("jane@example.com", "jane", Some("jane@example.com"), false),
            ("jane.smith", "jane", Some("jane.smith@example.com"), false),
            ("Jane-Pass-1", "jane", Some("jane@example.com"), true),
        ];
        for (pw, user, email, ok) in cases {
            assert_eq!(
                check_for_user(pw, user, email).is_ok(),
                ok,
                "{pw:?} for {user}"
            );
        }
    }
}
