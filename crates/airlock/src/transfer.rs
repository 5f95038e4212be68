//! Encrypted export and import of a whole instance (`.airlock` files).
//!
//! Moving Airlock to another host must keep every agent's `ark_` key working, and
//! the master key must never leave the instance. So an export opens every value
//! and key secret, writes them in the clear into a versioned JSON document, and
//! encrypts that document with the `age` format's passphrase (scrypt) recipient:
//! the standard `age` tool opens it too. Import decrypts the file, keeps the
//! document in memory under a one-time token while the operator reviews a
//! preview, then re-seals every value under *this* instance's master key (bound
//! to the target row ids) and writes everything in one database transaction.
//!
//! Both directions need an admin session and the admin password re-entered
//! (throttled like logins). No response and no log line carries a value, a
//! secret or the passphrase.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use airlock_store::{
    status, CredentialRow, ExecutionFilter, ExecutionRow, ImportCredential, ImportPlan,
    ImportProfile, ProfileRow, StoreError,
};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::session::{self, AdminSession};
use crate::api::Json;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::{ids, validate};

/// The `format` field of every export document.
pub const FORMAT: &str = "airlock-export";
/// The document version this build writes and the newest it reads.
pub const VERSION: u64 = 1;
/// Shortest accepted export passphrase, in characters.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
const MAX_PASSPHRASE_BYTES: usize = 1024;
/// scrypt work factor of export files: 2^18, what the `age` CLI uses (256 MiB,
/// about a second).
const SCRYPT_LOG_N: u8 = 18;
/// Highest work factor accepted on import (2^20: 1 GiB, a few seconds).
const SCRYPT_MAX_LOG_N: u8 = 20;
/// How long a decrypted import waits for its commit.
pub const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Decrypted imports held at once (each up to the upload cap); the oldest goes.
const MAX_PENDING: usize = 4;

// ----- the document -----

/// The JSON document inside an `.airlock` file. No `Debug`: it holds values.
#[derive(Serialize, Deserialize)]
pub struct ExportDocument {
    pub format: String,
    pub version: u64,
    pub exported_at: DateTime<Utc>,
    /// The Airlock version that wrote the file (informative).
    #[serde(default)]
    pub airlock_version: String,
    /// `"all"` or `"profiles"` (informative).
    #[serde(default)]
    pub scope: String,
    pub credentials: Vec<ExportCredential>,
    pub profiles: Vec<ExportProfile>,
    /// Package requirements: not exported yet (always empty; agents request their
    /// packages again after an import), and ignored on import.
    #[serde(default)]
    pub requirements: Vec<serde_json::Value>,
    /// Execution history, only when the export asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executions: Option<Vec<ExportExecution>>,
}

/// A credential; `value` is the plaintext (null for an empty slot).
#[derive(Serialize, Deserialize)]
pub struct ExportCredential {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(deserialize_with = "nullable")]
    pub value: Option<String>,
    /// Mode and bound hosts; absent in files from versions without sealed
    /// credentials (then `plain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing: Option<crate::catalog::Sealing>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A profile with its key (`key_id` and plaintext `secret`) and the names of its
/// credentials.
#[derive(Serialize, Deserialize)]
pub struct ExportProfile {
    pub id: String,
    #[serde(default)]
    pub description: String,
    #[serde(deserialize_with = "nullable")]
    pub key_id: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub secret: Option<String>,
    pub locked: bool,
    pub revoked: bool,
    #[serde(deserialize_with = "nullable")]
    pub expires_at: Option<DateTime<Utc>>,
    /// `null` means unrestricted, `[]` no network. Required: a missing field
    /// must not silently become "unrestricted".
    #[serde(deserialize_with = "nullable")]
    pub allowed_hosts: Option<Vec<String>>,
    pub credentials: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// One execution, as stored (its text fields are already redacted).
#[derive(Serialize, Deserialize)]
pub struct ExportExecution {
    pub id: String,
    pub profile_id: String,
    pub status: String,
    pub script: String,
    pub script_sha256: String,
    pub timeout_secs: i64,
    pub result: Option<String>,
    pub stdout: String,
    pub stderr: String,
    pub error: Option<String>,
    pub llm_request: Option<String>,
    pub llm_exchanges: String,
    pub redactions: String,
    pub execution_time_ms: Option<i64>,
    #[serde(default)]
    pub llm_wait_ms: i64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A field that must be present but may be `null`.
fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

impl From<ExecutionRow> for ExportExecution {
    fn from(e: ExecutionRow) -> Self {
        ExportExecution {
            id: e.id,
            profile_id: e.profile_id,
            status: e.status,
            script: e.script,
            script_sha256: e.script_sha256,
            timeout_secs: e.timeout_secs,
            result: e.result,
            stdout: e.stdout,
            stderr: e.stderr,
            error: e.error,
            llm_request: e.llm_request,
            llm_exchanges: e.llm_exchanges,
            redactions: e.redactions,
            execution_time_ms: e.execution_time_ms,
            llm_wait_ms: e.llm_wait_ms,
            created_at: e.created_at,
            started_at: e.started_at,
            completed_at: e.completed_at,
        }
    }
}

/// An imported execution; one that was still running when exported ends as an error.
fn execution_row(e: &ExportExecution) -> ExecutionRow {
    let finished = status::is_terminal(&e.status);
    ExecutionRow {
        id: e.id.clone(),
        profile_id: e.profile_id.clone(),
        status: if finished {
            e.status.clone()
        } else {
            status::ERROR.to_string()
        },
        script: e.script.clone(),
        script_sha256: e.script_sha256.clone(),
        timeout_secs: e.timeout_secs,
        result: e.result.clone(),
        stdout: e.stdout.clone(),
        stderr: e.stderr.clone(),
        error: if finished {
            e.error.clone()
        } else {
            Some("interrupted: the execution was still running when it was exported".into())
        },
        llm_request: if finished {
            e.llm_request.clone()
        } else {
            None
        },
        llm_exchanges: e.llm_exchanges.clone(),
        redactions: e.redactions.clone(),
        execution_time_ms: e.execution_time_ms,
        llm_wait_ms: e.llm_wait_ms,
        created_at: e.created_at,
        started_at: e.started_at,
        completed_at: e
            .completed_at
            .or(if finished { None } else { Some(Utc::now()) }),
    }
}

// ----- errors -----

fn wrong_passphrase() -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "wrong_passphrase",
        "the passphrase does not open this file (or the file's header was altered)",
    )
}

fn corrupt(reason: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "corrupt_file",
        format!("the file is damaged or not an Airlock export: {reason}; nothing was imported"),
    )
}

fn too_large(max: usize) -> ApiError {
    ApiError::too_large(format!(
        "the file is larger than the import limit of {max} bytes (raise AIRLOCK_MAX_IMPORT_BYTES to accept it)"
    ))
}

fn check_passphrase(p: &str) -> ApiResult<()> {
    if p.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(ApiError::invalid(format!(
            "passphrase must be at least {MIN_PASSPHRASE_CHARS} characters"
        )));
    }
    if p.len() > MAX_PASSPHRASE_BYTES {
        return Err(ApiError::invalid(format!(
            "passphrase must be at most {MAX_PASSPHRASE_BYTES} bytes"
        )));
    }
    Ok(())
}

// ----- age -----

/// Encrypts `plaintext` to `passphrase` (age scrypt recipient, binary format).
pub fn encrypt(plaintext: &[u8], passphrase: &str) -> ApiResult<Vec<u8>> {
    let mut recipient = age::scrypt::Recipient::new(age::secrecy::SecretString::from(passphrase));
    recipient.set_work_factor(SCRYPT_LOG_N);
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as _)).map_err(|e| {
            tracing::error!(error = %e, "age encryptor");
            ApiError::internal()
        })?;
    let mut out = Vec::with_capacity(plaintext.len() + 1024);
    let io = |e: std::io::Error| {
        tracing::error!(error = %e, "age encryption");
        ApiError::internal()
    };
    let mut writer = encryptor.wrap_output(&mut out).map_err(io)?;
    writer.write_all(plaintext).map_err(io)?;
    writer.finish().map_err(io)?;
    Ok(out)
}

/// Decrypts an age passphrase file; errors say which of wrong passphrase or
/// damaged file it is.
pub fn decrypt(file: &[u8], passphrase: &str) -> ApiResult<Vec<u8>> {
    use age::DecryptError as E;
    let header_err = |e: E| match e {
        E::UnknownFormat => corrupt("unknown age format version"),
        _ => corrupt("it is not an age-encrypted file, or it is cut short"),
    };
    let decryptor = age::Decryptor::new_buffered(file).map_err(header_err)?;
    if !decryptor.is_scrypt() {
        return Err(corrupt(
            "it is encrypted to a key, not with a passphrase (export files use a passphrase)",
        ));
    }
    let mut identity = age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase));
    identity.set_max_work_factor(SCRYPT_MAX_LOG_N);
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            E::DecryptionFailed | E::NoMatchingKeys | E::KeyDecryptionFailed => wrong_passphrase(),
            E::ExcessiveWork { .. } => {
                corrupt("its passphrase work factor is far higher than this machine handles")
            }
            E::InvalidMac => corrupt("its header was altered"),
            _ => corrupt("its header is invalid"),
        })?;
    let mut out = Vec::with_capacity(file.len());
    reader
        .read_to_end(&mut out)
        .map_err(|_| corrupt("its contents were altered or cut short"))?;
    Ok(out)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::internal())?
}

// ----- export -----

/// What to export.
pub struct ExportRequest {
    /// `None`: everything; otherwise these profiles and the credentials they use.
    pub profiles: Option<Vec<String>>,
    pub include_executions: bool,
}

/// Builds the plaintext document (values and secrets in the clear).
pub async fn build_document(state: &AppState, req: &ExportRequest) -> ApiResult<ExportDocument> {
    let store = state.store.clone();
    let profiles: Vec<ProfileRow> = match &req.profiles {
        None => store.profiles_list().await?,
        Some(ids) => {
            if ids.is_empty() {
                return Err(ApiError::invalid(
                    "choose at least one profile, or leave out `profiles` to export everything",
                ));
            }
            let mut rows = Vec::new();
            let mut seen = BTreeSet::new();
            for id in ids {
                if !seen.insert(id.clone()) {
                    continue;
                }
                rows.push(store.profile_get(id).await?.ok_or_else(|| {
                    ApiError::not_found(format!("profile {} does not exist", validate::shown(id)))
                })?);
            }
            rows
        }
    };
    let mut used = BTreeSet::new();
    let mut out_profiles = Vec::with_capacity(profiles.len());
    for p in &profiles {
        let creds = store.profile_credentials(&p.id).await?;
        used.extend(creds.iter().map(|c| c.id.clone()));
        out_profiles.push(ExportProfile {
            id: p.id.clone(),
            description: p.description.clone(),
            key_id: p.key_id.clone(),
            secret: state.catalog.open_profile_secret(p)?,
            locked: p.locked,
            revoked: p.revoked,
            expires_at: p.expires_at,
            allowed_hosts: p.allowed_hosts.clone(),
            credentials: creds.into_iter().map(|c| c.name).collect(),
            created_at: p.created_at,
            updated_at: p.updated_at,
            last_used_at: p.last_used_at,
        });
    }
    let mut credentials = Vec::new();
    for c in store.credentials_list().await? {
        if req.profiles.is_some() && !used.contains(&c.id) {
            continue;
        }
        credentials.push(ExportCredential {
            value: state.catalog.open_credential_value(&c)?,
            sealing: Some(crate::catalog::Sealing::from(&c.seal)),
            name: c.name,
            description: c.description,
            created_at: c.created_at,
            updated_at: c.updated_at,
        });
    }
    let executions = if req.include_executions {
        let filters: Vec<Option<String>> = match &req.profiles {
            None => vec![None],
            Some(_) => profiles.iter().map(|p| Some(p.id.clone())).collect(),
        };
        let mut rows = Vec::new();
        for profile_id in filters {
            let filter = ExecutionFilter {
                profile_id,
                limit: i64::MAX,
                ..Default::default()
            };
            for s in store.executions_list(&filter).await? {
                if let Some(e) = store.execution_get(&s.id).await? {
                    rows.push(ExportExecution::from(e));
                }
            }
        }
        rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Some(rows)
    } else {
        None
    };
    Ok(ExportDocument {
        format: FORMAT.into(),
        version: VERSION,
        exported_at: Utc::now(),
        airlock_version: env!("CARGO_PKG_VERSION").into(),
        scope: if req.profiles.is_some() {
            "profiles"
        } else {
            "all"
        }
        .into(),
        credentials,
        profiles: out_profiles,
        requirements: Vec::new(),
        executions,
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ExportBody {
    password: String,
    /// At least 12 characters, at most 1024 bytes.
    #[schema(min_length = 12, max_length = 1024)]
    passphrase: String,
    #[serde(default)]
    profiles: Option<Vec<String>>,
    #[serde(default)]
    include_executions: bool,
}

/// Writes an encrypted export file (age, passphrase) of credentials, profiles
/// and optionally executions. Needs the admin password again.
#[utoipa::path(
    post,
    path = "/export",
    tag = "admin",
    security(("admin_session" = [])),
    request_body = ExportBody,
    responses(
        (status = 200, description = "The `.airlock` file (attachment)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 401, description = "Wrong admin password (`wrong_password`) or no session (`not_authenticated`)", body = crate::api::docs::ErrorBody),
        (status = 404, description = "A selected profile does not exist (`not_found`)", body = crate::api::docs::ErrorBody),
        (status = 422, description = "Weak passphrase or invalid selection (`invalid_input`)", body = crate::api::docs::ErrorBody),
        (status = 429, description = "Too many wrong passwords (`rate_limited`)", body = crate::api::docs::ErrorBody),
    )
)]
async fn export(
    State(state): State<AppState>,
    _s: AdminSession,
    req_ext: axum::http::Extensions,
    Json(body): Json<ExportBody>,
) -> ApiResult<Response> {
    check_passphrase(&body.passphrase)?;
    state
        .auth
        .reauthenticate(session::client_ip(&req_ext), &body.password)
        .await?;
    let doc = build_document(
        &state,
        &ExportRequest {
            profiles: body.profiles,
            include_executions: body.include_executions,
        },
    )
    .await?;
    let counts = (
        doc.credentials.len(),
        doc.profiles.len(),
        doc.executions.as_ref().map_or(0, Vec::len),
    );
    let filename = format!("airlock-{}.airlock", doc.exported_at.format("%Y-%m-%d"));
    let plaintext = serde_json::to_vec(&doc).map_err(|_| ApiError::internal())?;
    drop(doc);
    let passphrase = body.passphrase;
    let file = blocking(move || encrypt(&plaintext, &passphrase)).await?;
    tracing::info!(
        credentials = counts.0,
        profiles = counts.1,
        executions = counts.2,
        bytes = file.len(),
        "export file created"
    );
    let mut resp = (StatusCode::OK, file).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
            .map_err(|_| ApiError::internal())?,
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

// ----- import: parse and check -----

/// Parses and checks a decrypted document. Messages never quote values.
pub fn parse_document(plaintext: &[u8]) -> ApiResult<ExportDocument> {
    let v: serde_json::Value = serde_json::from_slice(plaintext)
        .map_err(|_| corrupt("its contents are not a JSON document"))?;
    if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(corrupt(format!("the document's format is not {FORMAT:?}")));
    }
    let version = v
        .get("version")
        .and_then(|n| n.as_u64())
        .ok_or_else(|| corrupt("the document has no version number"))?;
    if version > VERSION {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_version",
            format!(
                "the file was written by a newer Airlock (format version {version}; this one reads up to {VERSION}); upgrade this instance, then import again"
            ),
        ));
    }
    if version < 1 {
        return Err(corrupt("the document's version is 0"));
    }
    let doc: ExportDocument = serde_json::from_value(v).map_err(|e| {
        // serde's message may quote a value; name only the kind of problem.
        corrupt(format!(
            "the document does not match format version 1 ({:?} error)",
            e.classify()
        ))
    })?;
    check_document(&doc)?;
    Ok(doc)
}

fn looks_like_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn check_document(doc: &ExportDocument) -> ApiResult<()> {
    let mut names = BTreeSet::new();
    for c in &doc.credentials {
        validate::credential_name(&c.name).map_err(|e| corrupt(e.0))?;
        validate::description(&c.description)
            .map_err(|e| corrupt(format!("credential {}: {}", c.name, e)))?;
        if let Some(v) = &c.value {
            validate::value(v).map_err(|e| corrupt(format!("credential {}: {}", c.name, e)))?;
        }
        if let Some(s) = &c.sealing {
            crate::catalog::check_sealing(s)
                .map_err(|e| corrupt(format!("credential {}: {}", c.name, e)))?;
        }
        if !names.insert(c.name.as_str()) {
            return Err(corrupt(format!("credential {} appears twice", c.name)));
        }
    }
    let mut ids = BTreeSet::new();
    let mut key_ids = BTreeSet::new();
    for p in &doc.profiles {
        if !looks_like_id(&p.id) {
            return Err(corrupt("a profile id is malformed"));
        }
        if !ids.insert(p.id.as_str()) {
            return Err(corrupt(format!("profile {} appears twice", p.id)));
        }
        validate::description(&p.description)
            .map_err(|e| corrupt(format!("profile {}: {}", p.id, e)))?;
        if let Some(k) = &p.key_id {
            if !ids::is_key_id(k) {
                return Err(corrupt(format!(
                    "profile {}: its key id is malformed",
                    p.id
                )));
            }
            if !key_ids.insert(k.as_str()) {
                return Err(corrupt(format!("key id {k} appears twice")));
            }
        }
        if let Some(s) = &p.secret {
            if p.key_id.is_none() || s.is_empty() || s.len() > 256 {
                return Err(corrupt(format!(
                    "profile {}: its key secret is malformed",
                    p.id
                )));
            }
        }
        if p.locked && !p.revoked && (p.key_id.is_none() || p.secret.is_none()) {
            return Err(corrupt(format!(
                "profile {} is locked but its key is missing",
                p.id
            )));
        }
        if let Some(hosts) = &p.allowed_hosts {
            validate::host_patterns(hosts)
                .map_err(|e| corrupt(format!("profile {}: {}", p.id, e)))?;
        }
        for n in &p.credentials {
            if !names.contains(n.as_str()) {
                return Err(corrupt(format!(
                    "profile {} uses credential {} which the file does not contain",
                    p.id,
                    validate::shown(n)
                )));
            }
        }
    }
    let mut exec_ids = BTreeSet::new();
    for e in doc.executions.iter().flatten() {
        if !looks_like_id(&e.id) || !exec_ids.insert(e.id.as_str()) {
            return Err(corrupt("an execution id is malformed or repeated"));
        }
    }
    Ok(())
}

// ----- import: preview -----

#[derive(Serialize, Clone, PartialEq, Eq, Debug, utoipa::ToSchema)]
pub struct CredentialEntry {
    pub name: String,
    pub description: String,
    pub value_exists: bool,
}

#[derive(Serialize, Clone, PartialEq, Eq, Debug, utoipa::ToSchema)]
pub struct ProfileEntry {
    pub id: String,
    pub description: String,
    pub key_id: Option<String>,
    pub locked: bool,
    pub revoked: bool,
    pub credentials: Vec<String>,
    /// Ids of this instance's profiles it collides with (same id or same key id).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts_with: Vec<String>,
}

#[derive(Serialize, Clone, PartialEq, Eq, Debug, utoipa::ToSchema)]
pub struct Split<T> {
    pub add: Vec<T>,
    pub conflict: Vec<T>,
}

impl<T> Default for Split<T> {
    fn default() -> Self {
        Split {
            add: Vec::new(),
            conflict: Vec::new(),
        }
    }
}

/// What an import would do, shown before it is confirmed.
#[derive(Serialize, Clone, PartialEq, Eq, Debug, utoipa::ToSchema)]
pub struct Preview {
    pub token: String,
    pub expires_in: u64,
    pub exported_at: DateTime<Utc>,
    pub credentials: Split<CredentialEntry>,
    pub profiles: Split<ProfileEntry>,
    pub executions: usize,
}

/// Ids of existing profiles that share `p`'s id or key id.
async fn profile_conflicts(state: &AppState, p: &ExportProfile) -> ApiResult<Vec<String>> {
    let mut out = Vec::new();
    if let Some(row) = state.store.profile_get(&p.id).await? {
        out.push(row.id);
    }
    if let Some(k) = &p.key_id {
        if let Some(row) = state.store.profile_get_by_key_id(k).await? {
            if !out.contains(&row.id) {
                out.push(row.id);
            }
        }
    }
    Ok(out)
}

async fn preview_of(state: &AppState, doc: &ExportDocument) -> ApiResult<Preview> {
    let mut credentials = Split::default();
    for c in &doc.credentials {
        let entry = CredentialEntry {
            name: c.name.clone(),
            description: c.description.clone(),
            value_exists: c.value.is_some(),
        };
        if state.store.credential_get(&c.name).await?.is_some() {
            credentials.conflict.push(entry);
        } else {
            credentials.add.push(entry);
        }
    }
    let mut profiles = Split::default();
    for p in &doc.profiles {
        let conflicts_with = profile_conflicts(state, p).await?;
        let entry = ProfileEntry {
            id: p.id.clone(),
            description: p.description.clone(),
            key_id: p.key_id.clone(),
            locked: p.locked,
            revoked: p.revoked,
            credentials: p.credentials.clone(),
            conflicts_with,
        };
        if entry.conflicts_with.is_empty() {
            profiles.add.push(entry);
        } else {
            profiles.conflict.push(entry);
        }
    }
    Ok(Preview {
        token: String::new(),
        expires_in: PENDING_TTL.as_secs(),
        exported_at: doc.exported_at,
        credentials,
        profiles,
        executions: doc.executions.as_ref().map_or(0, Vec::len),
    })
}

/// Decrypted documents waiting for their commit, by one-time token. Each is
/// bound to the admin session that uploaded it.
#[derive(Default)]
pub struct PendingImports {
    inner: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    session_hash: String,
    created: Instant,
    doc: ExportDocument,
}

impl PendingImports {
    fn insert(&self, session_hash: String, doc: ExportDocument) -> String {
        let token = ids::session_token();
        let mut map = self.inner.lock().expect("pending imports lock");
        map.retain(|_, p| p.created.elapsed() < PENDING_TTL && p.session_hash != session_hash);
        while map.len() >= MAX_PENDING {
            let oldest = map
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(
            token.clone(),
            Pending {
                session_hash,
                created: Instant::now(),
                doc,
            },
        );
        token
    }

    /// Takes the document for `token` if it belongs to the session and is fresh.
    fn take(&self, token: &str, session_hash: &str) -> Option<ExportDocument> {
        let mut map = self.inner.lock().expect("pending imports lock");
        map.retain(|_, p| p.created.elapsed() < PENDING_TTL);
        let matches = map.iter().any(|(k, p)| {
            ids::ct_eq(k.as_bytes(), token.as_bytes()) && p.session_hash == session_hash
        });
        if matches {
            map.remove(token).map(|p| p.doc)
        } else {
            None
        }
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PreviewBody {
    /// The `.airlock` file, base64 (standard alphabet).
    #[schema(min_length = 1)]
    file: String,
    password: String,
    #[schema(min_length = 1)]
    passphrase: String,
}

/// Decrypts an uploaded export file and shows what importing it would add or
/// collide with; returns a token for `/import/commit`.
#[utoipa::path(
    post,
    path = "/import/preview",
    tag = "admin",
    security(("admin_session" = [])),
    request_body = PreviewBody,
    responses(
        (status = 200, description = "What the file holds and what collides", body = Preview),
        (status = 400, description = "`file` is not base64 (`bad_request`)", body = crate::api::docs::ErrorBody),
        (status = 401, description = "Wrong admin password (`wrong_password`) or no session", body = crate::api::docs::ErrorBody),
        (status = 413, description = "File over AIRLOCK_MAX_IMPORT_BYTES (`too_large`)", body = crate::api::docs::ErrorBody),
        (status = 422, description = "Wrong passphrase or damaged file (`wrong_passphrase`, `corrupt_file`, `invalid_input`)", body = crate::api::docs::ErrorBody),
        (status = 429, description = "Too many wrong passwords (`rate_limited`)", body = crate::api::docs::ErrorBody),
    )
)]
async fn preview(
    State(state): State<AppState>,
    session: AdminSession,
    req_ext: axum::http::Extensions,
    body: Result<Json<PreviewBody>, ApiError>,
) -> ApiResult<Response> {
    let max = state.config.max_import_bytes;
    let Json(body) = body.map_err(|e| {
        if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(max)
        } else {
            e
        }
    })?;
    let file = base64::engine::general_purpose::STANDARD
        .decode(body.file.trim())
        .map_err(|_| ApiError::bad_request("`file` must be the export file encoded as base64"))?;
    drop(body.file);
    if file.len() > max {
        return Err(too_large(max));
    }
    if body.passphrase.is_empty() {
        return Err(ApiError::invalid("enter the file's passphrase"));
    }
    state
        .auth
        .reauthenticate(session::client_ip(&req_ext), &body.password)
        .await?;
    let passphrase = body.passphrase;
    let doc = blocking(move || {
        let plaintext = decrypt(&file, &passphrase)?;
        parse_document(&plaintext)
    })
    .await
    .inspect_err(|e| tracing::warn!(code = e.code, "import file refused"))?;
    let mut preview = preview_of(&state, &doc).await?;
    preview.token = state
        .imports
        .insert(ids::sha256_hex(session.token.as_bytes()), doc);
    tracing::info!(
        credentials = preview.credentials.add.len() + preview.credentials.conflict.len(),
        profiles = preview.profiles.add.len() + preview.profiles.conflict.len(),
        executions = preview.executions,
        "import file decrypted; waiting for confirmation"
    );
    let mut resp = Json(preview).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

// ----- import: commit -----

/// What to do with an entry that already exists here.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Skip,
    Overwrite,
}

#[derive(Serialize, Default, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct Counts {
    pub added: usize,
    pub overwritten: usize,
    pub skipped: usize,
}

/// The outcome of a committed import.
#[derive(Serialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct Outcome {
    pub credentials: Counts,
    pub profiles: Counts,
    pub executions: Counts,
}

/// Turns a document into rows sealed for this instance, given the strategies.
async fn plan_for(
    state: &AppState,
    doc: &ExportDocument,
    creds: Strategy,
    profiles: Strategy,
) -> ApiResult<(ImportPlan, Outcome)> {
    let mut plan = ImportPlan::default();
    let mut outcome = Outcome {
        credentials: Counts::default(),
        profiles: Counts::default(),
        executions: Counts::default(),
    };
    let mut id_of: HashMap<&str, String> = HashMap::new();
    for c in &doc.credentials {
        let existing = state.store.credential_get(&c.name).await?;
        let (id, replace) = match (&existing, creds) {
            (Some(row), Strategy::Skip) => {
                outcome.credentials.skipped += 1;
                id_of.insert(&c.name, row.id.clone());
                continue;
            }
            (Some(row), Strategy::Overwrite) => {
                outcome.credentials.overwritten += 1;
                (row.id.clone(), true)
            }
            (None, _) => {
                outcome.credentials.added += 1;
                (ids::credential_id(), false)
            }
        };
        let value = c
            .value
            .as_deref()
            .map(|v| state.catalog.seal_credential_value(&id, v))
            .transpose()?;
        id_of.insert(&c.name, id.clone());
        plan.credentials.push(ImportCredential {
            row: CredentialRow {
                id,
                name: c.name.clone(),
                description: c.description.clone(),
                value,
                seal: c.sealing.clone().map(Into::into).unwrap_or_default(),
                created_at: c.created_at,
                updated_at: c.updated_at,
            },
            replace,
        });
    }
    for p in &doc.profiles {
        let replaces = profile_conflicts(state, p).await?;
        if !replaces.is_empty() {
            if profiles == Strategy::Skip {
                outcome.profiles.skipped += 1;
                continue;
            }
            outcome.profiles.overwritten += 1;
        } else {
            outcome.profiles.added += 1;
        }
        let secret = p
            .secret
            .as_deref()
            .map(|s| state.catalog.seal_profile_secret(&p.id, s))
            .transpose()?;
        let allowed_hosts = match &p.allowed_hosts {
            None => None,
            Some(h) => Some(validate::host_patterns(h).map_err(|e| corrupt(e.0))?),
        };
        let credential_ids =
            p.credentials
                .iter()
                .map(|n| {
                    id_of.get(n.as_str()).cloned().ok_or_else(|| {
                        corrupt("a profile uses a credential the file does not contain")
                    })
                })
                .collect::<ApiResult<Vec<String>>>()?;
        plan.profiles.push(ImportProfile {
            row: ProfileRow {
                id: p.id.clone(),
                description: p.description.clone(),
                key_id: p.key_id.clone(),
                secret,
                locked: p.locked,
                revoked: p.revoked,
                expires_at: p.expires_at,
                allowed_hosts,
                created_at: p.created_at,
                updated_at: p.updated_at,
                last_used_at: p.last_used_at,
            },
            replaces,
            credential_ids,
        });
    }
    plan.executions = doc.executions.iter().flatten().map(execution_row).collect();
    Ok((plan, outcome))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    /// The `token` of the preview.
    token: String,
    credentials: Strategy,
    profiles: Strategy,
}

/// Imports a previewed file with a strategy for collisions.
#[utoipa::path(
    post,
    path = "/import/commit",
    tag = "admin",
    security(("admin_session" = [])),
    request_body = CommitBody,
    responses(
        (status = 200, description = "Counts of added, overwritten and skipped items", body = Outcome),
        (status = 409, description = "The data changed since the preview (`conflict`)", body = crate::api::docs::ErrorBody),
        (status = 410, description = "Preview expired or already used (`import_expired`)", body = crate::api::docs::ErrorBody),
    )
)]
async fn commit(
    State(state): State<AppState>,
    session: AdminSession,
    Json(body): Json<CommitBody>,
) -> ApiResult<Json<Outcome>> {
    let doc = state
        .imports
        .take(&body.token, &ids::sha256_hex(session.token.as_bytes()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::GONE,
                "import_expired",
                "this import preview expired, was already used or belongs to another session; upload the file again",
            )
        })?;
    let (plan, mut outcome) = plan_for(&state, &doc, body.credentials, body.profiles).await?;
    drop(doc);
    let total = plan.executions.len();
    let inserted = state.store.import_apply(plan).await.map_err(|e| match e {
        StoreError::Conflict(_) | StoreError::NotFound => ApiError::conflict(
            "import_conflict",
            "this instance changed while the import was being confirmed; nothing was imported. Upload the file again to see a fresh preview",
        ),
        other => other.into(),
    })? as usize;
    outcome.executions = Counts {
        added: inserted,
        overwritten: 0,
        skipped: total - inserted.min(total),
    };
    tracing::info!(
        credentials_added = outcome.credentials.added,
        credentials_overwritten = outcome.credentials.overwritten,
        credentials_skipped = outcome.credentials.skipped,
        profiles_added = outcome.profiles.added,
        profiles_overwritten = outcome.profiles.overwritten,
        profiles_skipped = outcome.profiles.skipped,
        executions_added = outcome.executions.added,
        "import applied"
    );
    Ok(Json(outcome))
}

/// The admin routes (merged under `/api/admin`, behind the session and CSRF guard).
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    // The upload travels as base64 inside JSON: 4/3 of the file, plus the rest.
    let upload_limit = (state.config.max_import_bytes / 3 + 1)
        .saturating_mul(4)
        .saturating_add(64 * 1024);
    OpenApiRouter::new()
        .routes(routes!(export))
        .routes(crate::api::with_body_limit(routes!(preview), upload_limit))
        .routes(routes!(commit))
}

/// A JSON summary of a document, for logs and tests: counts only.
pub fn summary(doc: &ExportDocument) -> serde_json::Value {
    json!({
        "credentials": doc.credentials.len(),
        "profiles": doc.profiles.len(),
        "executions": doc.executions.as_ref().map(Vec::len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_json() -> serde_json::Value {
        json!({
            "format": FORMAT, "version": 1, "exported_at": "2026-01-02T03:04:05Z",
            "credentials": [{"name": "API_KEY", "description": "d", "value": "sk_live_x",
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}],
            "profiles": [{"id": "prf_abc", "description": "", "key_id": "ark_aaaaaaaaaaaaaaaaaaaaaaaa",
                "secret": "s3cr3t", "locked": true, "revoked": false, "expires_at": null,
                "allowed_hosts": ["api.example.com"], "credentials": ["API_KEY"],
                "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}],
            "requirements": []
        })
    }

    fn parse(v: &serde_json::Value) -> ApiResult<ExportDocument> {
        parse_document(v.to_string().as_bytes())
    }

    #[test]
    fn a_valid_document_parses() {
        let doc = parse(&doc_json()).unwrap();
        assert_eq!(
            summary(&doc),
            json!({"credentials": 1, "profiles": 1, "executions": null})
        );
        assert_eq!(doc.profiles[0].secret.as_deref(), Some("s3cr3t"));
    }

    #[test]
    fn bad_documents_are_refused_without_quoting_values() {
        let mut v = doc_json();
        v["version"] = json!(2);
        assert_eq!(parse(&v).err().unwrap().code, "unsupported_version");
        let mut v = doc_json();
        v["format"] = json!("something-else");
        assert_eq!(parse(&v).err().unwrap().code, "corrupt_file");
        // allowed_hosts is required: a missing field must not mean "unrestricted".
        let mut v = doc_json();
        v["profiles"][0]
            .as_object_mut()
            .unwrap()
            .remove("allowed_hosts");
        assert_eq!(parse(&v).err().unwrap().code, "corrupt_file");
        // A value of the wrong type: the message does not quote it.
        let mut v = doc_json();
        v["credentials"][0]["created_at"] = json!("sk_live_wrong_place");
        let e = parse(&v).err().unwrap();
        assert_eq!(e.code, "corrupt_file");
        assert!(!e.detail.contains("sk_live"), "{}", e.detail);
        // A profile using a credential the file lacks.
        let mut v = doc_json();
        v["profiles"][0]["credentials"] = json!(["MISSING"]);
        assert_eq!(parse(&v).err().unwrap().code, "corrupt_file");
        // A locked profile without its secret.
        let mut v = doc_json();
        v["profiles"][0]["secret"] = json!(null);
        assert_eq!(parse(&v).err().unwrap().code, "corrupt_file");
        assert_eq!(
            parse_document(b"not json").err().unwrap().code,
            "corrupt_file"
        );
    }

    #[test]
    fn age_round_trip_and_errors() {
        let file = encrypt(b"{\"a\":1}", "a long passphrase").unwrap();
        assert!(file.starts_with(b"age-encryption.org/v1\n-> scrypt "));
        assert_eq!(decrypt(&file, "a long passphrase").unwrap(), b"{\"a\":1}");
        assert_eq!(
            decrypt(&file, "another passphrase").err().unwrap().code,
            "wrong_passphrase"
        );
        let mut tampered = file.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        assert_eq!(
            decrypt(&tampered, "a long passphrase").err().unwrap().code,
            "corrupt_file"
        );
        assert_eq!(
            decrypt(&file[..file.len() - 5], "a long passphrase")
                .err()
                .unwrap()
                .code,
            "corrupt_file"
        );
        assert_eq!(
            decrypt(b"hello", "a long passphrase").err().unwrap().code,
            "corrupt_file"
        );
    }

    #[test]
    fn pending_imports_are_one_time_and_session_bound() {
        let p = PendingImports::default();
        let doc = parse(&doc_json()).unwrap();
        let token = p.insert("s1".into(), doc);
        assert!(p.take(&token, "s2").is_none(), "another session");
        assert!(p.take(&token, "s1").is_some());
        assert!(p.take(&token, "s1").is_none(), "one time");
    }
}
