//! The JSON document inside an `.airlock` file, and the checks an imported one
//! must pass before anything is written.

use std::collections::BTreeSet;

use airlock_store::{EgressRow, ExecutionInputs, ExecutionRow, ExecutionStatus, RecordMode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{TransferError, TransferResult, FORMAT, VERSION};
use crate::{ids, validate};

fn corrupt(reason: impl std::fmt::Display) -> TransferError {
    TransferError::Corrupt(reason.to_string())
}

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
    /// Input recording (absent in files of earlier versions: off).
    #[serde(default)]
    pub record: RecordMode,
    /// Replay-protected signatures (absent in files of earlier versions: off,
    /// as those profiles had).
    #[serde(default)]
    pub replay_protection: bool,
    /// Script approval (absent in files of earlier versions: off).
    #[serde(default)]
    pub approval: airlock_store::ApprovalMode,
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
    /// The input record (absent in files of earlier versions).
    #[serde(default)]
    pub inputs: Option<ExecutionInputs>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Its egress log, with each answer's status and hash (absent in files of
    /// earlier versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<ExportEgress>,
    /// The answers its `full` record kept, redacted as stored (absent in files of
    /// earlier versions); sealed again under the importing instance's key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<crate::answers::StoredAnswer>,
}

/// One egress attempt of an exported execution, as stored.
#[derive(Serialize, Deserialize)]
pub struct ExportEgress {
    pub at: DateTime<Utc>,
    pub host: String,
    pub port: u16,
    pub method: String,
    pub path: Option<String>,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub duration_ms: Option<i64>,
    pub allowed: bool,
    pub reason: String,
    pub violation: bool,
    pub substituted: Vec<String>,
    pub status: Option<u16>,
    pub body_sha256: Option<String>,
}

impl From<EgressRow> for ExportEgress {
    fn from(e: EgressRow) -> Self {
        ExportEgress {
            at: e.at,
            host: e.host,
            port: e.port,
            method: e.method,
            path: e.path,
            bytes_up: e.bytes_up,
            bytes_down: e.bytes_down,
            duration_ms: e.duration_ms,
            allowed: e.allowed,
            reason: e.reason,
            violation: e.violation,
            substituted: e.substituted,
            status: e.status,
            body_sha256: e.body_sha256,
        }
    }
}

/// An imported execution's egress log.
pub(super) fn egress_rows(e: &ExportExecution) -> Vec<EgressRow> {
    e.egress
        .iter()
        .map(|x| EgressRow {
            execution_id: e.id.clone(),
            at: x.at,
            host: x.host.clone(),
            port: x.port,
            method: x.method.clone(),
            path: x.path.clone(),
            bytes_up: x.bytes_up,
            bytes_down: x.bytes_down,
            duration_ms: x.duration_ms,
            allowed: x.allowed,
            reason: x.reason.clone(),
            violation: x.violation,
            substituted: x.substituted.clone(),
            status: x.status,
            body_sha256: x.body_sha256.clone(),
        })
        .collect()
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
            status: e.status.to_string(),
            script: e.script,
            script_sha256: e.script_sha256,
            timeout_secs: e.timeout_secs,
            result: e.result,
            stdout: e.stdout,
            stderr: e.stderr,
            error: e.error,
            llm_request: e.llm_request.as_ref().map(json_text),
            llm_exchanges: json_text(&e.llm_exchanges),
            redactions: json_text(&e.redactions),
            execution_time_ms: e.execution_time_ms,
            llm_wait_ms: e.llm_wait_ms,
            inputs: e.inputs,
            created_at: e.created_at,
            started_at: e.started_at,
            completed_at: e.completed_at,
            egress: Vec::new(),
            answers: Vec::new(),
        }
    }
}

/// Format version 1 carries an execution's JSON columns as JSON text. (These types
/// hold only strings, numbers and times: serializing them cannot fail.)
fn json_text<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// An imported execution; one that was still running when exported ends as an error.
pub(super) fn execution_row(e: &ExportExecution) -> ExecutionRow {
    let status = ExecutionStatus::parse(&e.status).filter(|s| s.is_terminal());
    let finished = status.is_some();
    ExecutionRow {
        id: e.id.clone(),
        profile_id: e.profile_id.clone(),
        status: status.unwrap_or(ExecutionStatus::Error),
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
            e.llm_request
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok())
        } else {
            None
        },
        llm_exchanges: serde_json::from_str(&e.llm_exchanges).unwrap_or_default(),
        redactions: serde_json::from_str(&e.redactions).unwrap_or_default(),
        execution_time_ms: e.execution_time_ms,
        llm_wait_ms: e.llm_wait_ms,
        inputs: e.inputs.clone(),
        created_at: e.created_at,
        started_at: e.started_at,
        completed_at: e
            .completed_at
            .or(if finished { None } else { Some(Utc::now()) }),
    }
}

/// Parses and checks a decrypted document. Messages never quote values.
pub fn parse_document(plaintext: &[u8]) -> TransferResult<ExportDocument> {
    let v: serde_json::Value = serde_json::from_slice(plaintext)
        .map_err(|_| corrupt("its contents are not a JSON document"))?;
    if v.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(corrupt(format!("the document's format is not {FORMAT:?}")));
    }
    let version = v
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| corrupt("the document has no version number"))?;
    if version > VERSION {
        return Err(TransferError::UnsupportedVersion(version));
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

fn check_document(doc: &ExportDocument) -> TransferResult<()> {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

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

    fn parse(v: &serde_json::Value) -> TransferResult<ExportDocument> {
        parse_document(v.to_string().as_bytes())
    }

    /// The API code an error leaves with.
    fn code(e: TransferError) -> &'static str {
        crate::error::ApiError::from(e).code
    }

    pub(in crate::transfer) fn valid_document() -> ExportDocument {
        parse(&doc_json()).unwrap()
    }

    #[test]
    fn a_valid_document_parses() {
        let doc = parse(&doc_json()).unwrap();
        assert_eq!(
            super::super::summary(&doc),
            json!({"credentials": 1, "profiles": 1, "executions": null})
        );
        assert_eq!(doc.profiles[0].secret.as_deref(), Some("s3cr3t"));
    }

    #[test]
    fn bad_documents_are_refused_without_quoting_values() {
        let mut v = doc_json();
        v["version"] = json!(2);
        assert_eq!(code(parse(&v).err().unwrap()), "unsupported_version");
        let mut v = doc_json();
        v["format"] = json!("something-else");
        assert_eq!(code(parse(&v).err().unwrap()), "corrupt_file");
        // allowed_hosts is required: a missing field must not mean "unrestricted".
        let mut v = doc_json();
        v["profiles"][0]
            .as_object_mut()
            .unwrap()
            .remove("allowed_hosts");
        assert_eq!(code(parse(&v).err().unwrap()), "corrupt_file");
        // A value of the wrong type: the message does not quote it.
        let mut v = doc_json();
        v["credentials"][0]["created_at"] = json!("sk_live_wrong_place");
        let e = crate::error::ApiError::from(parse(&v).err().unwrap());
        assert_eq!(e.code, "corrupt_file");
        assert!(!e.detail.contains("sk_live"), "{}", e.detail);
        // A profile using a credential the file lacks.
        let mut v = doc_json();
        v["profiles"][0]["credentials"] = json!(["MISSING"]);
        assert_eq!(code(parse(&v).err().unwrap()), "corrupt_file");
        // A locked profile without its secret.
        let mut v = doc_json();
        v["profiles"][0]["secret"] = json!(null);
        assert_eq!(code(parse(&v).err().unwrap()), "corrupt_file");
        assert_eq!(
            code(parse_document(b"not json").err().unwrap()),
            "corrupt_file"
        );
    }
}
