//! Rows as the store keeps them. Sealed fields stay sealed here; opening them is
//! the services' job, with the vault.

use chrono::{DateTime, Utc};

/// An admin session. Only the SHA-256 of the session token is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A credential slot; `value` is a vault-sealed blob bound to `credential:<id>`.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialRow {
    pub id: String,
    pub name: String,
    pub description: String,
    pub value: Option<Vec<u8>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl std::fmt::Debug for CredentialRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("value", &self.value.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// A profile; `secret` is a vault-sealed blob bound to `profile:<id>`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProfileRow {
    pub id: String,
    pub description: String,
    pub key_id: Option<String>,
    pub secret: Option<Vec<u8>>,
    pub locked: bool,
    pub revoked: bool,
    pub expires_at: Option<DateTime<Utc>>,
    /// `None` means unrestricted; `Some(vec![])` means no network.
    pub allowed_hosts: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for ProfileRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileRow")
            .field("id", &self.id)
            .field("key_id", &self.key_id)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("locked", &self.locked)
            .field("revoked", &self.revoked)
            .finish_non_exhaustive()
    }
}

impl ProfileRow {
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}
