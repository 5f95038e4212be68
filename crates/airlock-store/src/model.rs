//! Rows as the store keeps them. Sealed fields stay sealed here; opening them is
//! the services' job, with the vault.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

/// A credential's mode. `plain`: the script's `settings.get` returns the value
/// (output redaction protects it). `sealed`: it returns a per-execution placeholder
/// that the egress proxy replaces with the value only in requests to the credential's
/// `bound_hosts`; sending it anywhere else is refused and logged as a violation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum CredentialMode {
    #[default]
    Plain,
    Sealed,
}

impl CredentialMode {
    pub const ALL: [CredentialMode; 2] = [CredentialMode::Plain, CredentialMode::Sealed];

    pub fn as_str(self) -> &'static str {
        match self {
            CredentialMode::Plain => "plain",
            CredentialMode::Sealed => "sealed",
        }
    }

    /// The mode spelled `s` (`plain` or `sealed`).
    pub fn parse(s: &str) -> Option<CredentialMode> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for CredentialMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protocol of a [`DatabaseLogin`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DatabaseProtocol {
    #[default]
    Postgres,
}

/// How the server reaches the database of a [`DatabaseLogin`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DatabaseTls {
    /// TLS required, the certificate verified against the system roots and the
    /// operator's CA bundle, and the name checked (libpq's `sslmode=verify-full`).
    #[default]
    VerifyFull,
    /// Plain TCP: only for a database on a network the operator trusts.
    Disable,
}

/// A sealed database credential's login: the credential's value is the password,
/// which the server uses to sign in to `host:port` as `user`; the script gets a
/// connection string with a per-execution placeholder instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DatabaseLogin {
    /// `postgres`.
    #[serde(default)]
    pub protocol: DatabaseProtocol,
    /// A host name (or a 127.x address); the server resolves it.
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    /// `verify-full` (default) or `disable`.
    #[serde(default)]
    pub tls: DatabaseTls,
    /// Every session starts with `default_transaction_read_only=on` (default false).
    #[serde(default)]
    pub read_only: bool,
}

impl DatabaseLogin {
    /// The `allowed_hosts`-style entry of its destination (`tcp://host:port`).
    pub fn destination(&self) -> String {
        format!("tcp://{}:{}", self.host, self.port)
    }
}

/// A credential's mode and, for `sealed`, where its value may be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSettings {
    pub mode: CredentialMode,
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
    /// A sealed database credential: where the server signs in with the value.
    pub database: Option<DatabaseLogin>,
}

impl Default for SealSettings {
    fn default() -> Self {
        SealSettings {
            mode: CredentialMode::Plain,
            hosts: Vec::new(),
            methods: None,
            header: None,
            substitute_body: false,
            revoke_on_violation: false,
            database: None,
        }
    }
}

impl SealSettings {
    pub fn is_sealed(&self) -> bool {
        self.mode == CredentialMode::Sealed
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
    /// What each execution's input record keeps.
    pub record: RecordMode,
    /// The signed message must cover a timestamp and a nonce as well as the
    /// script (see `POST /execute`); off keeps the script-only form.
    pub replay_protection: bool,
    /// Whether a person must approve a script before it runs.
    pub approval: ApprovalMode,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A profile's script approval (`approval`): `off`; `first_run` — a script (by
/// its SHA-256) is approved once, then runs without asking while that approval
/// holds; `every_run` — every execution waits for an approver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ApprovalMode {
    #[default]
    Off,
    FirstRun,
    EveryRun,
}

/// Where an approval request stands: `pending` until an approver decides, then
/// `approved` or `denied`; `expired` when nobody decided in time; `withdrawn`
/// when an approver took a `first_run` approval back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    Withdrawn,
}

/// One request for approval: the execution that waits for it (its id is the
/// approval's id) and, once approved under `first_run`, the grant that lets the
/// same script run again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRow {
    pub execution_id: String,
    pub profile_id: String,
    pub script_sha256: String,
    pub mode: ApprovalMode,
    pub status: ApprovalStatus,
    /// The `llm_timeout` the execution was submitted with, in seconds.
    pub llm_timeout_secs: i64,
    /// The approver's reason for a denial (or note for an approval).
    pub reason: Option<String>,
    /// `first_run`: runs the grant still allows after the approved one (`None`:
    /// no limit).
    pub runs_left: Option<i64>,
    /// `first_run`: the grant ends then (`None`: until withdrawn).
    pub approved_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// A pending request expires (and its execution is denied) then.
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// A profile's input recording (`record`): `off`; `hashes` — each execution keeps
/// its inputs ([`ExecutionInputs`]) and each HTTP request of it the status and the
/// SHA-256 of the body it got, so two runs can be compared; `full` — the answers
/// themselves too ([`AnswerRow`]), so a replay can serve them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RecordMode {
    #[default]
    Off,
    Hashes,
    Full,
}

impl RecordMode {
    pub fn is_on(self) -> bool {
        self != RecordMode::Off
    }
}

/// What an execution ran with, kept when its profile records: enough to say which
/// input changed between two runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionInputs {
    pub script_sha256: String,
    /// `sys.version` of the interpreter.
    pub python: String,
    /// Every distribution of the package environment, name → version.
    pub packages: std::collections::BTreeMap<String, String>,
    /// Name → SHA-256 of the distribution's installed `RECORD` (the hash of every
    /// file it installed): tells one build of a version from another.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub package_contents: std::collections::BTreeMap<String, String>,
    /// The execution's clock: what `airlock.now()` returned to the script.
    pub now: DateTime<Utc>,
    /// The execution this one replays (same script, and its clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<String>,
    /// What the run kept: `full` when its answers are in the record (a replay served
    /// from a record keeps `hashes`: its answers are the replayed execution's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordMode>,
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

/// An execution's status: `pending` (queued), `running`, `awaiting_llm` (paused in
/// `llm.complete`), then one of the final `completed`, `error`, `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ExecutionStatus {
    /// Held until an approver decides (profiles with `approval`).
    AwaitingApproval,
    Pending,
    Running,
    AwaitingLlm,
    Completed,
    Error,
    Timeout,
    /// An approver refused it, or nobody decided in time; it never ran.
    Denied,
}

impl ExecutionStatus {
    pub const ALL: [ExecutionStatus; 8] = [
        ExecutionStatus::AwaitingApproval,
        ExecutionStatus::Pending,
        ExecutionStatus::Running,
        ExecutionStatus::AwaitingLlm,
        ExecutionStatus::Completed,
        ExecutionStatus::Error,
        ExecutionStatus::Timeout,
        ExecutionStatus::Denied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::AwaitingApproval => "awaiting_approval",
            ExecutionStatus::Pending => "pending",
            ExecutionStatus::Running => "running",
            ExecutionStatus::AwaitingLlm => "awaiting_llm",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Error => "error",
            ExecutionStatus::Timeout => "timeout",
            ExecutionStatus::Denied => "denied",
        }
    }

    /// The status spelled `s`.
    pub fn parse(s: &str) -> Option<ExecutionStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Every status, comma-separated (for error messages).
    pub fn list() -> String {
        Self::ALL.map(ExecutionStatus::as_str).join(", ")
    }

    /// `completed`, `error`, `timeout` or `denied`: the execution will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Completed
                | ExecutionStatus::Error
                | ExecutionStatus::Timeout
                | ExecutionStatus::Denied
        )
    }
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A paused `llm.complete` as the agent sees it (prompt and model redacted). Stored as
/// a JSON column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LlmRequest {
    /// Assigned by the server (`"1"`, `"2"`, … per execution); send it back with the
    /// answer.
    pub request_id: String,
    pub prompt: String,
    pub model: String,
}

/// One answered `llm.complete` (every text redacted). Stored in a JSON list column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LlmExchange {
    pub request_id: String,
    pub prompt: String,
    pub model: String,
    pub response: String,
    /// Absent in exchanges recorded before these times were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asked_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_at: Option<DateTime<Utc>>,
}

/// A redaction for the admin view: which field, which credential, how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RedactionEvent {
    pub field: String,
    pub name: String,
    pub count: u64,
    /// How many of those replaced only part of the value (a run of its
    /// characters). Absent in rows written before partial matching.
    #[serde(default)]
    pub partial: u64,
}

/// One execution. Every text field holds already-redacted output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRow {
    pub id: String,
    pub profile_id: String,
    pub status: ExecutionStatus,
    pub script: String,
    pub script_sha256: String,
    pub timeout_secs: i64,
    /// JSON text of the script's result.
    pub result: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub error: Option<String>,
    /// The pending LLM request, while `awaiting_llm`.
    pub llm_request: Option<LlmRequest>,
    /// Every answered `llm.complete`, in order.
    pub llm_exchanges: Vec<LlmExchange>,
    /// What the redactor replaced, per field and credential.
    pub redactions: Vec<RedactionEvent>,
    pub execution_time_ms: Option<i64>,
    /// Milliseconds spent paused in `llm.complete`, not counted in `execution_time_ms`.
    pub llm_wait_ms: i64,
    /// What it ran with, when its profile records inputs.
    pub inputs: Option<ExecutionInputs>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Filters for listing executions; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct ExecutionFilter {
    pub profile_id: Option<String>,
    pub status: Option<ExecutionStatus>,
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
    pub status: ExecutionStatus,
    pub script_sha256: String,
    pub execution_time_ms: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Aggregates for the stats view.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionStats {
    pub by_status: Vec<(ExecutionStatus, i64)>,
    pub by_profile: Vec<(String, i64)>,
    pub by_day: Vec<(String, i64)>,
    /// Durations (ms) of finished executions, ascending, most recent 10 000.
    pub durations_ms: Vec<i64>,
}

impl ExecutionStats {
    /// Executions with status `s`.
    pub fn count(&self, s: ExecutionStatus) -> i64 {
        self.by_status
            .iter()
            .find(|(k, _)| *k == s)
            .map_or(0, |(_, n)| *n)
    }

    pub fn total(&self) -> i64 {
        self.by_status.iter().map(|(_, n)| n).sum()
    }

    /// Executions that ended `error` or `timeout`.
    pub fn failed(&self) -> i64 {
        self.count(ExecutionStatus::Error) + self.count(ExecutionStatus::Timeout)
    }

    /// Failed over finished executions; `None` before any has finished.
    pub fn error_rate(&self) -> Option<f64> {
        let finished = self.count(ExecutionStatus::Completed) + self.failed();
        (finished > 0).then(|| self.failed() as f64 / finished as f64)
    }

    /// The `p`th percentile (nearest rank) of the durations.
    pub fn duration_percentile(&self, p: f64) -> Option<i64> {
        let d = &self.durations_ms;
        if d.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * (d.len() as f64 - 1.0)).round() as usize;
        Some(d[rank.min(d.len() - 1)])
    }

    pub fn duration_max(&self) -> Option<i64> {
        self.durations_ms.last().copied()
    }
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
    /// How long the attempt lasted; `None` for rows stored before it was recorded.
    pub duration_ms: Option<i64>,
    pub allowed: bool,
    /// The rule that allowed it, or why it was refused.
    pub reason: String,
    /// The request carried a sealed credential's placeholder to a host not bound to it.
    pub violation: bool,
    /// Names of the sealed credentials whose values were substituted into the request.
    pub substituted: Vec<String>,
    /// The HTTP status of the answer, when there was one to see.
    pub status: Option<u16>,
    /// Hex SHA-256 of the response body the script received (recording profiles).
    pub body_sha256: Option<String>,
}

/// One HTTP answer an execution received, kept by `record: full`: the vault-sealed
/// JSON of the answer (redacted), under AAD [`AnswerRow::aad`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerRow {
    pub execution_id: String,
    /// Its place among the execution's answers (from 0).
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub sealed: Vec<u8>,
}

impl AnswerRow {
    /// What a sealed answer is bound to: it opens for this execution and place only.
    pub fn aad(execution_id: &str, seq: i64) -> String {
        format!("answer:{execution_id}:{seq}")
    }
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
    /// The egress log and recorded answers of those executions: inserted with the
    /// executions they belong to (not for one skipped as already there).
    pub egress: Vec<EgressRow>,
    pub answers: Vec<AnswerRow>,
}

/// Where a requested package, or one run of the installer, stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PackageStatus {
    Pending,
    Installing,
    Installed,
    Failed,
    /// An install only: the request waits for the operator (package review).
    #[serde(rename = "awaiting_review")]
    #[sqlx(rename = "awaiting_review")]
    AwaitingReview,
    /// An install only: the operator rejected the request; nothing was installed.
    Rejected,
}

impl PackageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageStatus::Pending => "pending",
            PackageStatus::Installing => "installing",
            PackageStatus::Installed => "installed",
            PackageStatus::Failed => "failed",
            PackageStatus::AwaitingReview => "awaiting_review",
            PackageStatus::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for PackageStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Python package an agent asked for (one per normalized project name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRow {
    /// Normalized (PEP 503) project name.
    pub name: String,
    /// The requirement as requested (`pandas>=2`).
    pub spec: String,
    pub status: PackageStatus,
    pub installed_version: Option<String>,
    pub error: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub install_id: String,
}

/// One run of the package installer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInstallRow {
    pub id: String,
    pub status: PackageStatus,
    /// The requirement strings of the request (a JSON column).
    pub specs: Vec<String>,
    /// Sanitized tail of the installer's output.
    pub log: String,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What an agent asked the operator for: a profile, a credential slot, or
/// packages (one install).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RequestKind {
    Profile,
    Slot,
    Packages,
}

/// Where an agent request stands: `pending` until the operator answers, then
/// `accepted` or `rejected` (with a reason the agent reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RequestStatus {
    Pending,
    Accepted,
    Rejected,
}

/// One agent request. `subject` is the profile id, the credential name, or the
/// package install id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRequestRow {
    pub kind: RequestKind,
    pub subject: String,
    /// The agent's optional message to the operator.
    pub message: String,
    pub status: RequestStatus,
    /// The operator's reason (a rejection) or note (an acceptance).
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// The `prev_hash` of the first audit event.
pub const AUDIT_GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit event to append; the store gives it its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    pub at: DateTime<Utc>,
    /// Who: `admin` (the operator's session), `agent:<key id>`, `anonymous`, `system`.
    pub actor: String,
    /// The actor's role (`owner`, `agent`, `none`, `system`).
    pub role: String,
    /// The client's address, when known.
    pub client: Option<String>,
    /// What, e.g. `POST /api/admin/profiles/{id}/lock`.
    pub action: String,
    /// On what, e.g. the request's path.
    pub target: Option<String>,
    /// `attempt`, then `ok`, `refused` or `failed`.
    pub outcome: String,
    /// More, never secret (a JSON object).
    pub detail: serde_json::Value,
}

/// An audit event as stored: its sequence number and its link in the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditRow {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub role: String,
    pub client: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub outcome: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRow {
    /// The hash this row must carry: SHA-256 (hex) over the previous row's hash and
    /// a canonical JSON array of every other field (object keys sorted, times in
    /// RFC 3339 with nanoseconds).
    pub fn expected_hash(&self) -> String {
        use sha2::Digest;
        let fields = serde_json::json!([
            self.seq,
            self.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            self.actor,
            self.role,
            self.client,
            self.action,
            self.target,
            self.outcome,
            self.detail,
        ]);
        let mut h = sha2::Sha256::new();
        h.update(self.prev_hash.as_bytes());
        h.update(b"\n");
        h.update(fields.to_string().as_bytes());
        hex::encode(h.finalize())
    }
}

/// A signed chain head: the hash of event `seq`, signed with the audit key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditHeadRow {
    pub seq: i64,
    pub hash: String,
    pub at: DateTime<Utc>,
    /// Ed25519 signature (hex) of [`AuditHeadRow::message`].
    pub signature: String,
}

impl AuditHeadRow {
    /// What the signature covers.
    pub fn message(seq: i64, hash: &str, at: DateTime<Utc>) -> String {
        format!(
            "airlock-audit-head\n{seq}\n{hash}\n{}",
            at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        )
    }
}

/// Which audit events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only events with `seq` greater than this.
    pub after: Option<i64>,
    /// Only events with `seq` smaller than this.
    pub before: Option<i64>,
    /// Only actions starting with this.
    pub action: Option<String>,
    pub actor: Option<String>,
    pub limit: i64,
    /// Newest first (else oldest first).
    pub newest_first: bool,
}

/// An admin API token (its secret is only ever stored as a SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTokenRow {
    pub id: String,
    pub name: String,
    /// `owner`, `operator`, `approver` or `auditor`.
    pub role: String,
    pub secret_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}
