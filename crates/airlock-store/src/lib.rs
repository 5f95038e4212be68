//! Airlock's storage layer.
//!
//! Everything Airlock persists goes through the [`Store`] trait, so the HTTP
//! handlers never write SQL and a PostgreSQL backend can be added next to the
//! SQLite one ([`sqlite::SqliteStore`]) for multi-replica deployments. The store
//! holds rows as they are on disk: credential values and profile secrets arrive
//! already sealed by the [`vault`], and are returned sealed.
#![forbid(unsafe_code)]

pub mod model;
pub mod sqlite;
pub mod vault;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use model::*;
pub use sqlite::SqliteStore;
pub use vault::{KeyOrigin, Vault};

/// Errors of the storage layer. Messages never contain values or secrets.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("crypto error: {0}")]
    Crypto(String),
    #[error("{0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Persistence operations used by the services. Implementations must be safe to
/// share between tasks.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- instance metadata ---
    async fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>>;
    async fn meta_set(&self, key: &str, value: &[u8]) -> Result<()>;
    /// Inserts only when absent; returns whether the value was inserted.
    async fn meta_insert_if_absent(&self, key: &str, value: &[u8]) -> Result<bool>;

    // --- admin sessions (only token hashes are stored) ---
    async fn session_insert(&self, s: &SessionRow) -> Result<()>;
    async fn session_get(&self, token_hash: &str) -> Result<Option<SessionRow>>;
    async fn session_touch(&self, token_hash: &str, at: DateTime<Utc>) -> Result<()>;
    async fn session_delete(&self, token_hash: &str) -> Result<()>;
    async fn session_delete_expired(&self, now: DateTime<Utc>) -> Result<u64>;
    /// Live (unexpired) sessions, newest first.
    async fn sessions_list(&self, now: DateTime<Utc>) -> Result<Vec<SessionRow>>;
    /// Ends every session except `keep_token_hash` (after a password change).
    async fn session_delete_others(&self, keep_token_hash: &str) -> Result<u64>;

    // --- credentials ---
    async fn credentials_list(&self) -> Result<Vec<CredentialRow>>;
    async fn credential_get(&self, name: &str) -> Result<Option<CredentialRow>>;
    /// Fails with [`StoreError::Conflict`] when the name exists.
    async fn credential_insert(&self, row: &CredentialRow) -> Result<()>;
    async fn credential_update(&self, row: &CredentialRow) -> Result<()>;
    async fn credential_delete(&self, id: &str) -> Result<()>;
    /// Profiles (any state) that include this credential.
    async fn credential_profiles(&self, credential_id: &str) -> Result<Vec<ProfileRow>>;

    // --- profiles ---
    /// A counter that changes whenever a profile is inserted, updated, deleted or
    /// imported (it moves before and after each such write). A profile row read
    /// after loading the counter is still current while the counter has not
    /// moved, which spares a queued execution a second read at start.
    fn profiles_epoch(&self) -> u64;
    async fn profiles_list(&self) -> Result<Vec<ProfileRow>>;
    async fn profile_get(&self, id: &str) -> Result<Option<ProfileRow>>;
    async fn profile_get_by_key_id(&self, key_id: &str) -> Result<Option<ProfileRow>>;
    async fn profile_insert(&self, row: &ProfileRow) -> Result<()>;
    async fn profile_update(&self, row: &ProfileRow) -> Result<()>;
    async fn profile_delete(&self, id: &str) -> Result<()>;
    async fn profile_touch_used(&self, id: &str, at: DateTime<Utc>) -> Result<()>;
    /// Records that `nonce` was used with the profile, kept until `expires_at`;
    /// returns false when it was already recorded (a replay). Nonces expired by
    /// `now` are forgotten.
    async fn nonce_claim(
        &self,
        profile_id: &str,
        nonce: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    async fn profile_credentials(&self, profile_id: &str) -> Result<Vec<CredentialRow>>;
    async fn profile_add_credentials(
        &self,
        profile_id: &str,
        credential_ids: &[String],
    ) -> Result<()>;
    async fn profile_remove_credentials(
        &self,
        profile_id: &str,
        credential_ids: &[String],
    ) -> Result<()>;

    // --- approvals ---
    async fn approval_insert(&self, row: &ApprovalRow) -> Result<()>;
    async fn approval_get(&self, execution_id: &str) -> Result<Option<ApprovalRow>>;
    /// Newest first; `statuses` empty means any.
    async fn approvals_list(
        &self,
        statuses: &[ApprovalStatus],
        profile_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ApprovalRow>>;
    /// Writes the decision fields of `row` if its stored status is still `from`;
    /// returns whether it was (a second approver loses the race cleanly).
    async fn approval_decide(&self, row: &ApprovalRow, from: ApprovalStatus) -> Result<bool>;
    /// Uses one run of the newest `first_run` grant for this script that still
    /// holds at `now`; returns the approval it came from, or `None` when none does.
    async fn approval_take_grant(
        &self,
        profile_id: &str,
        script_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>>;
    /// Marks every pending request past its expiry `expired`; returns their ids.
    async fn approvals_expire(&self, now: DateTime<Utc>) -> Result<Vec<String>>;

    // --- agent requests ---
    /// Inserts the request, or replaces the one of the same kind and subject (an
    /// agent asking again reopens a rejected request).
    async fn request_put(&self, row: &AgentRequestRow) -> Result<()>;
    async fn request_get(
        &self,
        kind: RequestKind,
        subject: &str,
    ) -> Result<Option<AgentRequestRow>>;
    /// Newest first; `kind`/`status` `None` means any.
    async fn requests_list(
        &self,
        kind: Option<RequestKind>,
        status: Option<RequestStatus>,
        limit: i64,
    ) -> Result<Vec<AgentRequestRow>>;
    /// Records the decision if the request is still `pending`; returns whether it
    /// was (a second decision loses cleanly).
    async fn request_decide(
        &self,
        kind: RequestKind,
        subject: &str,
        status: RequestStatus,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Forgets the request of a deleted subject (no error when there is none).
    async fn request_delete(&self, kind: RequestKind, subject: &str) -> Result<()>;

    // --- admin API tokens ---
    async fn admin_token_insert(&self, row: &AdminTokenRow) -> Result<()>;
    async fn admin_token_get(&self, id: &str) -> Result<Option<AdminTokenRow>>;
    /// Newest first.
    async fn admin_tokens_list(&self) -> Result<Vec<AdminTokenRow>>;
    /// Revokes a token not yet revoked; returns whether it did.
    async fn admin_token_revoke(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;
    async fn admin_token_touch(&self, id: &str, at: DateTime<Utc>) -> Result<()>;

    // --- audit log ---
    /// Appends an event at the end of the chain (the next `seq`, the last row's
    /// hash as `prev_hash`, its own hash); appends are serialized.
    async fn audit_append(&self, event: &NewAuditEvent) -> Result<AuditRow>;
    async fn audit_list(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>>;
    async fn audit_last(&self) -> Result<Option<AuditRow>>;
    async fn audit_head_insert(&self, head: &AuditHeadRow) -> Result<()>;
    /// Every signed head, oldest first.
    async fn audit_heads(&self) -> Result<Vec<AuditHeadRow>>;

    // --- executions ---
    async fn execution_insert(&self, row: &ExecutionRow) -> Result<()>;
    async fn execution_get(&self, id: &str) -> Result<Option<ExecutionRow>>;
    /// Writes every mutable field of the row.
    async fn execution_update(&self, row: &ExecutionRow) -> Result<()>;
    async fn executions_list(&self, filter: &ExecutionFilter) -> Result<Vec<ExecutionSummary>>;
    async fn executions_count(&self, filter: &ExecutionFilter) -> Result<i64>;
    /// Marks every non-terminal execution as `error` with `message`; returns how many.
    async fn executions_interrupt(&self, message: &str, at: DateTime<Utc>) -> Result<u64>;
    async fn execution_stats(&self, since: Option<DateTime<Utc>>) -> Result<ExecutionStats>;

    // --- egress log ---
    async fn egress_insert(&self, row: &EgressRow) -> Result<()>;
    /// An execution's egress attempts, oldest first.
    async fn egress_list(&self, execution_id: &str) -> Result<Vec<EgressRow>>;
    /// Allowed and refused attempts since `since` (all time when `None`).
    async fn egress_counts(&self, since: Option<DateTime<Utc>>) -> Result<EgressCounts>;

    // --- recorded answers (`record: full`) ---
    /// Inserts an execution's recorded answers, all or none (one transaction).
    async fn answers_insert(&self, rows: &[AnswerRow]) -> Result<()>;
    /// An execution's recorded answers, by `seq`.
    async fn answers_list(&self, execution_id: &str) -> Result<Vec<AnswerRow>>;
    /// How many answers an execution's record holds.
    async fn answers_count(&self, execution_id: &str) -> Result<i64>;
    /// Deletes the answers recorded before `before` (the retention sweep); returns
    /// how many went. Hashes and the rest of the egress log stay.
    async fn answers_prune(&self, before: DateTime<Utc>) -> Result<u64>;

    // --- Python packages ---
    /// Every requested package, by name.
    async fn packages_list(&self) -> Result<Vec<PackageRow>>;
    /// Inserts or replaces the row of `row.name`.
    async fn package_upsert(&self, row: &PackageRow) -> Result<()>;
    /// Removes a package; `NotFound` when there is none of that name.
    async fn package_delete(&self, name: &str) -> Result<()>;
    async fn package_install_insert(&self, row: &PackageInstallRow) -> Result<()>;
    async fn package_install_update(&self, row: &PackageInstallRow) -> Result<()>;
    async fn package_install_get(&self, id: &str) -> Result<Option<PackageInstallRow>>;
    /// Installs left `pending`/`installing` by a restart are marked `failed` with `message`.
    async fn package_installs_interrupt(&self, message: &str, at: DateTime<Utc>) -> Result<u64>;

    // --- import (encrypted export files) ---
    /// Applies a whole import in one transaction: all of it or none of it. Fails
    /// with [`StoreError::Conflict`] when a row it adds collides with one that
    /// appeared since the plan was made, and [`StoreError::NotFound`] when a row it
    /// replaces is gone. Returns how many executions were inserted (the others
    /// already existed).
    async fn import_apply(&self, plan: ImportPlan) -> Result<u64>;
}
