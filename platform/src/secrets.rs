//! Secrets kept in the data directory: the master key that encrypts values at rest
//! (ChaCha20-Poly1305 via ring), the HS256 signing key for login tokens, and random strings.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const MASTER_KEY_FILE: &str = "keys/master.key";
const JWT_KEY_FILE: &str = "keys/jwt.key";
/// Prefix of every sealed value, so the format can change later.
const SEALED_PREFIX: &str = "v1:";

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot access key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is corrupt (expected 32 bytes)")]
    BadKey { path: String },
    #[error("the system random generator failed")]
    Random,
    #[error("an encrypted value cannot be decrypted with this data directory's master key")]
    Decrypt,
}

/// The keys of one data directory.
pub struct Secrets {
    sealing_key: LessSafeKey,
    jwt_key: [u8; 32],
    rng: SystemRandom,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

impl Secrets {
    /// Loads the keys, creating them (0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<Secrets, SecretsError> {
        let rng = SystemRandom::new();
        let master = load_or_create_key(&data_dir.join(MASTER_KEY_FILE), &rng)?;
        let jwt_key = load_or_create_key(&data_dir.join(JWT_KEY_FILE), &rng)?;
        let unbound =
            UnboundKey::new(&CHACHA20_POLY1305, &master).map_err(|_| SecretsError::BadKey {
                path: MASTER_KEY_FILE.into(),
            })?;
        Ok(Secrets {
            sealing_key: LessSafeKey::new(unbound),
            jwt_key,
            rng,
        })
    }

    /// Encrypts `clear`, binding it to `context` (e.g. the option's tenant/category/key) so a
    /// sealed value copied to another row does not decrypt.
    pub fn seal(&self, context: &str, clear: &str) -> Result<String, SecretsError> {
        let mut nonce_bytes = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce_bytes)
            .map_err(|_| SecretsError::Random)?;
        let mut buffer = clear.as_bytes().to_vec();
        self.sealing_key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| SecretsError::Random)?;
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&buffer);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed)))
    }

    /// Decrypts a value produced by [`Secrets::seal`] with the same context.
    pub fn open(&self, context: &str, sealed: &str) -> Result<String, SecretsError> {
        let encoded = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(SecretsError::Decrypt)?;
        let mut bytes = STANDARD
            .decode(encoded)
            .map_err(|_| SecretsError::Decrypt)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretsError::Decrypt);
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SecretsError::Decrypt)?;
        let clear = self
            .sealing_key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut ciphertext)
            .map_err(|_| SecretsError::Decrypt)?;
        String::from_utf8(clear.to_vec()).map_err(|_| SecretsError::Decrypt)
    }

    /// A random number of exactly `digits` decimal digits (no leading zero), for tenant ids.
    pub fn random_digits(&self, digits: u32) -> Result<String, SecretsError> {
        let mut bytes = [0u8; 8];
        self.rng
            .fill(&mut bytes)
            .map_err(|_| SecretsError::Random)?;
        let low = 10u64.pow(digits - 1);
        Ok((low + u64::from_le_bytes(bytes) % (9 * low)).to_string())
    }

    /// A key for one purpose, derived from the JWT key (HMAC-SHA256 of the purpose), so that
    /// a value made with it (the Swarm relays' tokens) reveals nothing of the JWT key and a
    /// restart derives the same key.
    pub fn purpose_key(&self, purpose: &str) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.jwt_key);
        let tag = ring::hmac::sign(&key, purpose.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// The HS256 key that signs login tokens.
    pub fn jwt_key(&self) -> &[u8] {
        &self.jwt_key
    }

    /// A random string of `len` characters from `[A-Za-z0-9]`, for generated passwords and tokens.
    pub fn random_token(&self, len: usize) -> Result<String, SecretsError> {
        random_alphanumeric(&self.rng, len)
    }
}

// Sealing contexts of the values Berth stores encrypted, in one place because whoever seals a
// value and whoever opens it (the API, the supervisor) must build the same string. Changing one
// makes the values already stored under it undecryptable.

/// Context of a microservice's bootstrap user password: bound to its tenant and user.
pub fn bootstrap_context(tenant: &str, user: &str) -> String {
    format!("bootstrap/{tenant}/{user}")
}

/// Context of a service user's password: bound to its tenant and user.
pub fn service_context(tenant: &str, user: &str) -> String {
    format!("service/{tenant}/{user}")
}

/// Context of an encrypted tenant option: bound to its tenant, category and key.
pub fn option_context(tenant: &str, category: &str, key: &str) -> String {
    format!("option/{tenant}/{category}/{key}")
}

/// Context of a manifest setting's `credentials.` default as stored in the application's
/// manifest: bound to its settings category (the application's own) and key.
pub fn setting_default_context(category: &str, key: &str) -> String {
    format!("setting-default/{category}/{key}")
}

impl Secrets {
    /// A manifest setting's default in clear: opened when it is sealed under its context, as
    /// is otherwise (a manifest just uploaded, or stored before defaults were sealed).
    pub fn open_setting_default(&self, category: &str, key: &str, value: &str) -> String {
        self.open(&setting_default_context(category, key), value)
            .unwrap_or_else(|_| value.to_owned())
    }

    /// A manifest setting's default sealed as `tenant`'s option (the option's context).
    pub fn seal_setting_for(
        &self,
        tenant: &str,
        category: &str,
        key: &str,
        default: &str,
    ) -> Result<String, SecretsError> {
        let clear = self.open_setting_default(category, key, default);
        self.seal(&option_context(tenant, category, key), &clear)
    }
}

/// A random string of `len` characters from `[A-Za-z0-9]`.
pub fn random_alphanumeric(rng: &SystemRandom, len: usize) -> Result<String, SecretsError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut bytes = [0u8; 64];
        rng.fill(&mut bytes).map_err(|_| SecretsError::Random)?;
        // Rejection sampling: 248 = 4 * 62 keeps every character equally likely.
        for b in bytes.iter().filter(|b| **b < 248) {
            if out.len() == len {
                break;
            }
            out.push(ALPHABET[usize::from(*b) % ALPHABET.len()] as char);
        }
    }
    Ok(out)
}

fn load_or_create_key(path: &Path, rng: &SystemRandom) -> Result<[u8; 32], SecretsError> {
    let display = path.display().to_string();
    match fs::read(path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| SecretsError::BadKey { path: display }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rng.fill(&mut key).map_err(|_| SecretsError::Random)?;
            write_private_file(path, &key).map_err(|source| SecretsError::Io {
                path: display,
                source,
            })?;
            Ok(key)
        }
        Err(source) => Err(SecretsError::Io {
            path: display,
            source,
        }),
    }
}

/// Writes a file readable only by the owner (0600), atomically.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_atomically(path, contents, 0o600)
}

/// Writes `contents` to a temporary sibling, syncs it and renames it over `path`, so readers
/// never see a half-written file.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_context() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::load_or_create(dir.path()).unwrap();
        let sealed = secrets.seal("t1/cat/credentials.pw", "s3cret").unwrap();
        assert!(!sealed.contains("s3cret"));
        assert_eq!(
            secrets.open("t1/cat/credentials.pw", &sealed).unwrap(),
            "s3cret"
        );
        assert!(secrets.open("t2/cat/credentials.pw", &sealed).is_err());
        let reloaded = Secrets::load_or_create(dir.path()).unwrap();
        assert_eq!(
            reloaded.open("t1/cat/credentials.pw", &sealed).unwrap(),
            "s3cret"
        );
        let mode = fs::metadata(dir.path().join(MASTER_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_sealed_setting_default_becomes_the_tenants_option() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::load_or_create(dir.path()).unwrap();
        let stored = secrets
            .seal(&setting_default_context("cat", "credentials.pw"), "s3cret")
            .unwrap();
        // (default as given, clear value the tenant's option holds)
        let cases = [
            (stored.as_str(), "s3cret"),
            ("clear", "clear"),
            // Sealed under another category's context: not opened, taken as text.
            ("v1:AAAA", "v1:AAAA"),
        ];
        for (default, clear) in cases {
            assert_eq!(
                secrets.open_setting_default("cat", "credentials.pw", default),
                clear
            );
            let option = secrets
                .seal_setting_for("t1", "cat", "credentials.pw", default)
                .unwrap();
            let context = option_context("t1", "cat", "credentials.pw");
            assert_eq!(secrets.open(&context, &option).unwrap(), clear);
        }
        let other = secrets
            .seal(
                &setting_default_context("other", "credentials.pw"),
                "s3cret",
            )
            .unwrap();
        assert_eq!(
            secrets.open_setting_default("cat", "credentials.pw", &other),
            other
        );
    }

    #[test]
    fn random_tokens_have_the_requested_length() {
        let rng = SystemRandom::new();
        let token = random_alphanumeric(&rng, 40).unwrap();
        assert_eq!(token.len(), 40);
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
