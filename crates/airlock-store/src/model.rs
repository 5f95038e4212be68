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
    /// How the value reaches a script (plain or sealed) and where it may go.
    pub seal: SealSettings,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Credential modes.
pub mod mode {
    /// `settings.get` returns the value; output redaction protects it.
    pub const PLAIN: &str = "plain";
    /// `settings.get` returns a placeholder; the egress proxy substitutes the value
    /// only in requests to the bound hosts.
    pub const SEALED: &str = "sealed";
}

/// A credential's mode and, for `sealed`, where its value may be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSettings {
    /// [`mode::PLAIN`] or [`mode::SEALED`].
    pub mode: String,
    /// Host patterns (the `allowed_hosts` syntax) the value may be sent to.
    pub hosts: Vec<String>,
    /// Upper-case HTTP methods; `None` means any method.
    pub methods: Option<Vec<String>>,
    /// Lower-case header name the value may be substituted in; `None` means any header.
    pub header: Option<String>,
    /// Also substitute in the URL query and the request body.
    pub substitute_body: bool,
    /// Revoke the profile when the placeholder is sent anywhere else.
    pub revoke_on_violation: bool,
}

impl Default for SealSettings {
    fn default() -> Self {
        SealSettings {
            mode: mode::PLAIN.into(),
            hosts: Vec::new(),
            methods: None,
            header: None,
            substitute_body: false,
            revoke_on_violation: false,
        }
    }
}

impl SealSettings {
    pub fn is_sealed(&self) -> bool {
        self.mode == mode::SEALED
    }
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

    /// Whether the profile's key may run code at `now`: locked, not revoked, not
    /// expired. The one statement of that rule; [`ProfileRow::refusal`] says which
    /// part failed.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.refusal(now).is_none()
    }

    /// Which part of the usable rule `now` fails, if any.
    pub fn refusal(&self, now: DateTime<Utc>) -> Option<Unusable> {
        if self.revoked {
            Some(Unusable::Revoked)
        } else if !self.locked {
            Some(Unusable::Unlocked)
        } else if self.is_expired(now) {
            Some(Unusable::Expired)
        } else {
            None
        }
    }
}

/// Why a profile's key may not run code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    Revoked,
    Unlocked,
    Expired,
}

/// Lifecycle states of an execution.
pub mod status {
    pub const PENDING: &str = "pending";
    pub const RUNNING: &str = "running";
    pub const AWAITING_LLM: &str = "awaiting_llm";
    pub const COMPLETED: &str = "completed";
    pub const ERROR: &str = "error";
    pub const TIMEOUT: &str = "timeout";
    pub const ALL: [&str; 6] = [PENDING, RUNNING, AWAITING_LLM, COMPLETED, ERROR, TIMEOUT];

    pub fn is_terminal(s: &str) -> bool {
        matches!(s, COMPLETED | ERROR | TIMEOUT)
    }
}

/// One execution. Every text field holds already-redacted output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRow {
    pub id: String,
    pub profile_id: String,
    pub status: String,
    pub script: String,
    pub script_sha256: String,
    pub timeout_secs: i64,
    /// JSON text of the script's result.
    pub result: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub error: Option<String>,
    /// JSON text of the pending LLM request, while `awaiting_llm`.
    pub llm_request: Option<String>,
    /// JSON text: list of `{request_id, prompt, model, response}`.
    pub llm_exchanges: String,
    /// JSON text: list of `{field, name, count}`.
    pub redactions: String,
    pub execution_time_ms: Option<i64>,
    /// Milliseconds spent paused in `llm.complete`, not counted in `execution_time_ms`.
    pub llm_wait_ms: i64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Filters for listing executions; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub profile_id: Option<String>,
    pub status: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub limit: i64,
    pub offset: i64,
}

/// A listed execution, without its script and outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionSummary {
    pub id: String,
    pub profile_id: String,
    pub status: String,
    pub script_sha256: String,
    pub execution_time_ms: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Aggregates for the stats view.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionStats {
    pub by_status: Vec<(String, i64)>,
    pub by_profile: Vec<(String, i64)>,
    pub by_day: Vec<(String, i64)>,
    /// Durations (ms) of finished executions, ascending, most recent 10 000.
    pub durations_ms: Vec<i64>,
}

/// One connection attempt through the egress proxy. Text fields are already redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressRow {
    pub execution_id: String,
    /// When the attempt started.
    pub at: DateTime<Utc>,
    /// The host as the script asked for it (name or IP literal).
    pub host: String,
    pub port: u16,
    /// `CONNECT` for tunnels, else the HTTP method of a plain-HTTP request.
    pub method: String,
    /// Path of a plain-HTTP request (no query string); `None` for tunnels.
    pub path: Option<String>,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub allowed: bool,
    /// The rule that allowed it, or why it was refused.
    pub reason: String,
    /// The request carried a sealed credential's placeholder to a host not bound to it.
    pub violation: bool,
    /// Names of the sealed credentials whose values were substituted into the request.
    pub substituted: Vec<String>,
}

/// Egress attempts counted for the stats view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressCounts {
    pub allowed: i64,
    pub refused: i64,
}

/// A credential an import writes: a new row, or (when `replace`) new contents for
/// the existing row with the same id. `row.value` is already sealed for `row.id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportCredential {
    pub row: CredentialRow,
    pub replace: bool,
}

/// A profile an import writes. The rows listed in `replaces` (same id or same key
/// id) are deleted first; `row.secret` is already sealed for `row.id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProfile {
    pub row: ProfileRow,
    pub replaces: Vec<String>,
    pub credential_ids: Vec<String>,
}

/// Everything one import writes, applied in one transaction by
/// [`crate::Store::import_apply`]: all of it or none of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportPlan {
    pub credentials: Vec<ImportCredential>,
    pub profiles: Vec<ImportProfile>,
    /// Inserted unless an execution with the same id exists.
    pub executions: Vec<ExecutionRow>,
}

/// A Python package an agent asked for (one per normalized project name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRow {
    /// Normalized (PEP 503) project name.
    pub name: String,
    /// The requirement as requested (`pandas>=2`).
    pub spec: String,
    /// `pending`, `installing`, `installed` or `failed`.
    pub status: String,
    pub installed_version: Option<String>,
    pub error: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub install_id: String,
}

/// One run of the package installer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInstallRow {
    pub id: String,
    pub status: String,
    /// JSON array of the requirement strings of the request.
    pub specs: String,
    /// Sanitized tail of the installer's output.
    pub log: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}
