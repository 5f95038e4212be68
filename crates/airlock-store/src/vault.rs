//! The vault: the master key and everything sealed with it.
//!
//! Credential values and profile secrets never touch the database in the clear.
//! Each is sealed with AES-256-GCM under the instance's master key, with a fresh
//! random nonce and the owning row's stable id as associated data, so a sealed blob
//! copied onto another row fails to open. Blobs start with a key-version byte so a
//! later key rotation can tell old blobs from new ones.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use rand::RngCore;

use crate::{Result, StoreError};

/// Version byte written at the start of every sealed blob.
pub const KEY_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// The 32-byte instance master key. Its Debug output never shows the key.
pub struct Vault {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(***)")
    }
}

/// Whether the master key file was created by this call or already existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    Created,
    Loaded,
}

impl Vault {
    /// Builds a vault from raw key bytes.
    pub fn from_key(key: &[u8; 32]) -> Vault {
        Vault {
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key)),
        }
    }

    /// Loads the master key file, or creates it (32 random bytes, mode 0600, written
    /// to a temporary file and linked into place so it is never half-written and an
    /// existing key is never overwritten).
    pub fn load_or_create(path: &Path) -> Result<(Vault, KeyOrigin)> {
        match fs::read(path) {
            Ok(bytes) => Ok((Self::from_file_bytes(path, &bytes)?, KeyOrigin::Loaded)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let dir = path.parent().unwrap_or_else(|| Path::new("."));
                fs::create_dir_all(dir)
                    .map_err(|e| io_err("create master key directory", dir, e))?;
                let tmp = dir.join(format!(
                    ".master.key.{}.{}",
                    std::process::id(),
                    rand::rng().next_u64()
                ));
                {
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&tmp)
                        .map_err(|e| io_err("create master key", &tmp, e))?;
                    f.write_all(&key)
                        .map_err(|e| io_err("write master key", &tmp, e))?;
                    f.sync_all()
                        .map_err(|e| io_err("sync master key", &tmp, e))?;
                }
                // hard_link fails if the target exists: two racing starts never
                // replace each other's key.
                let linked = fs::hard_link(&tmp, path);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok((Vault::from_key(&key), KeyOrigin::Created)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let bytes =
                            fs::read(path).map_err(|e| io_err("read master key", path, e))?;
                        Ok((Self::from_file_bytes(path, &bytes)?, KeyOrigin::Loaded))
                    }
                    Err(e) => Err(io_err("install master key", path, e)),
                }
            }
            Err(e) => Err(io_err("read master key", path, e)),
        }
    }

    fn from_file_bytes(path: &Path, bytes: &[u8]) -> Result<Vault> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            StoreError::Config(format!(
                "master key file {} must hold exactly 32 bytes (found {})",
                path.display(),
                bytes.len()
            ))
        })?;
        if let Ok(meta) = fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "master key file is readable by group or others; run chmod 600"
                );
            }
        }
        Ok(Vault::from_key(&key))
    }

    /// Seals `plaintext` bound to `aad` (the owning row's stable identity).
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Crypto("seal failed".into()))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(KEY_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a blob sealed by [`Vault::seal`] with the same `aad`.
    pub fn open(&self, aad: &str, blob: &[u8]) -> Result<Vec<u8>> {
        if blob.len() < 1 + NONCE_LEN + 16 {
            return Err(StoreError::Crypto("sealed value is truncated".into()));
        }
        if blob[0] != KEY_VERSION {
            return Err(StoreError::Crypto(format!(
                "sealed value uses unknown key version {}",
                blob[0]
            )));
        }
        let Some((nonce, ct)) = blob[1..].split_first_chunk::<NONCE_LEN>() else {
            return Err(StoreError::Crypto("sealed value is truncated".into()));
        };
        self.cipher
            .decrypt(
                &Nonce::from(*nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| {
                StoreError::Crypto("sealed value does not open under this master key".into())
            })
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Config(format!("cannot {what} at {}: {e}", path.display()))
}

/// Hashes an admin password as an Argon2id PHC string.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt_bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut salt_bytes);
    Argon2::default()
        .hash_password_with_salt(password.as_bytes(), &salt_bytes)
        .map(|h| h.to_string())
        .map_err(|_| StoreError::Crypto("password hashing failed".into()))
}

/// Verifies a password against an Argon2id PHC string.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_aad_binding() {
        let v = Vault::from_key(&[7u8; 32]);
        let blob = v.seal("credential:a", b"sk_live_123").unwrap();
        assert_eq!(blob[0], KEY_VERSION);
        assert_eq!(
            v.open("credential:a", &blob).unwrap(),
            b"sk_live_123".to_vec()
        );
        assert!(
            v.open("credential:b", &blob).is_err(),
            "moved blob must not open"
        );
        let other = Vault::from_key(&[8u8; 32]);
        assert!(other.open("credential:a", &blob).is_err());
        let mut tampered = blob.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(v.open("credential:a", &tampered).is_err());
        // Two seals of the same value differ (random nonce).
        assert_ne!(blob, v.seal("credential:a", b"sk_live_123").unwrap());
    }

    #[test]
    fn key_file_created_once_with_0600_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/master.key");
        let (v1, o1) = Vault::load_or_create(&path).unwrap();
        assert_eq!(o1, KeyOrigin::Created);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 32);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let blob = v1.seal("x", b"v").unwrap();
        let (v2, o2) = Vault::load_or_create(&path).unwrap();
        assert_eq!(o2, KeyOrigin::Loaded);
        assert_eq!(fs::read(&path).unwrap(), bytes);
        assert_eq!(v2.open("x", &blob).unwrap(), b"v".to_vec());
    }

    #[test]
    fn short_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, b"short").unwrap();
        let err = Vault::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("exactly 32 bytes"), "{err}");
    }

    #[test]
    fn password_hash_is_argon2id() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not-a-phc"));
    }
}
