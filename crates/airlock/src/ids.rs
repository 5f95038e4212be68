//! Random identifiers and profile keys, and the constant-time checks on them.

use hmac::{Hmac, KeyInit, Mac};
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const LOWER_ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `n` random lowercase alphanumerics (≈5.17 bits each).
pub fn lower_alnum(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| LOWER_ALNUM[rng.random_range(0..LOWER_ALNUM.len())] as char)
        .collect()
}

/// `n` random ASCII alphanumerics (≈5.95 bits each).
pub fn alnum(n: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), n)
}

pub fn credential_id() -> String {
    format!("cred_{}", lower_alnum(20))
}

pub fn profile_id() -> String {
    format!("prf_{}", lower_alnum(20))
}

/// A new profile key: (`ark_<24 lowercase alnum>`, `<48 alnum>` secret).
pub fn profile_key() -> (String, String) {
    (format!("ark_{}", lower_alnum(24)), alnum(48))
}

/// 256-bit random session token, hex.
pub fn session_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill(&mut b);
    hex::encode(b)
}

/// SHA-256 hex digest; tokens are stored only as hashes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Constant-time equality of two byte strings.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Lowercase hex HMAC-SHA256 of `message` under `secret`.
#[allow(clippy::expect_used)] // HMAC accepts a key of any length
pub fn hmac_hex(secret: &[u8], message: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// The `hash` of a replay-protected `POST /execute`: the HMAC of
/// `ts + "\n" + nonce + "\n" + script`, `ts` in decimal Unix seconds.
#[allow(clippy::expect_used)] // HMAC accepts a key of any length
pub fn request_signature(secret: &[u8], ts: i64, nonce: &str, script: &str) -> String {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{ts}\n{nonce}\n").as_bytes());
    mac.update(script.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A fresh nonce for [`request_signature`]: 32 lowercase alphanumerics.
pub fn nonce() -> String {
    lower_alnum(32)
}

/// The signing fields of a `POST /execute` body for `script`, signed now with a
/// fresh nonce: `{"script", "hash", "ts", "nonce"}`.
pub fn signed_body(secret: &[u8], script: &str) -> serde_json::Value {
    let ts = chrono::Utc::now().timestamp();
    let nonce = nonce();
    let hash = request_signature(secret, ts, &nonce, script);
    serde_json::json!({ "script": script, "hash": hash, "ts": ts, "nonce": nonce })
}

/// `exec_` + 32 lowercase alphanumerics (≈165 random bits).
pub fn execution_id() -> String {
    format!("exec_{}", lower_alnum(32))
}

/// Whether `s` has the shape of a profile key id (`ark_` + 24 lowercase alnum).
pub fn is_key_id(s: &str) -> bool {
    s.len() == 28
        && s.starts_with("ark_")
        && s[4..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A profile key `ark_ID:SECRET`. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct ProfileKey {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for ProfileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProfileKey({}:***)", self.id)
    }
}

impl ProfileKey {
    /// Parses `ark_ID:SECRET` (surrounding whitespace ignored).
    pub fn parse(raw: &str) -> Option<ProfileKey> {
        let (id, secret) = raw.trim().split_once(':')?;
        (is_key_id(id) && !secret.is_empty()).then(|| ProfileKey {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_shapes() {
        let (id, secret) = profile_key();
        assert_eq!(id.len(), 28);
        assert!(id[4..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_eq!(secret.len(), 48);
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(profile_key().1, secret);
    }

    #[test]
    fn request_signature_is_the_hmac_of_ts_nonce_and_script_on_lines() {
        let secret = b"s3cret";
        assert_eq!(
            request_signature(secret, 1_700_000_000, "abc", "print(1)\n"),
            hmac_hex(secret, b"1700000000\nabc\nprint(1)\n")
        );
        assert_ne!(
            request_signature(secret, 1_700_000_001, "abc", "print(1)\n"),
            request_signature(secret, 1_700_000_000, "abc", "print(1)\n")
        );
    }

    #[test]
    fn hmac_matches_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn keys_parse_and_never_debug_print_the_secret() {
        let k = ProfileKey::parse(" ark_abcdefghijklmnopqrstuvwx:s3cr3t \n").unwrap();
        assert_eq!(k.id, "ark_abcdefghijklmnopqrstuvwx");
        assert_eq!(k.secret, "s3cr3t");
        assert!(!format!("{k:?}").contains("s3cr3t"));
        assert!(ProfileKey::parse("ark_abcdefghijklmnopqrstuvwx").is_none());
        assert!(ProfileKey::parse("ark_short:x").is_none());
    }
}
