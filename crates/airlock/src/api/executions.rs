//! Execution endpoints: agents submit and poll scripts with their profile key;
//! the admin lists everything, with scripts, outputs and redaction events.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::{self, ErrorBody};
use super::{with_body_limit, Json, Query};
use crate::api::session::AdminSession;
use crate::app::AppState;
use crate::catalog::ActiveProfile;
use crate::error::{ApiError, ApiResult};
use crate::ids;
use crate::runner::RespondError;
use airlock_store::{ExecutionFilter, ExecutionRow, ExecutionStatus, ExecutionSummary};

const MAX_WAIT_SECS: u64 = 60;
const MAX_LLM_RESPONSE_BYTES: usize = 1024 * 1024;

pub fn agent_routes(max_script_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(with_body_limit(
            routes!(execute),
            max_script_bytes.saturating_mul(6) + 64 * 1024,
        ))
        .routes(routes!(list_own))
        .routes(routes!(get_own))
        .routes(with_body_limit(
            routes!(respond),
            MAX_LLM_RESPONSE_BYTES * 6 + 64 * 1024,
        ))
}

pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list))
        .routes(routes!(admin_get))
        .routes(routes!(admin_diff))
        .routes(routes!(admin_replay))
        .routes(routes!(admin_stats))
}

/// Extractor: `Authorization: Bearer ark_<id>` resolved to a usable profile.
pub struct AgentKey(pub ActiveProfile);

impl FromRequestParts<AppState> for AgentKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<AgentKey> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing_key",
                    "missing Authorization: Bearer ark_<id> header",
                )
            })?
            .to_str()
            .unwrap_or("");
        let key_id = value
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|k| ids::is_key_id(k))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "malformed_key",
                    "malformed Authorization header: send `Bearer ark_<id>` (the part of the key before ':', never the secret)",
                )
            })?;
        Ok(AgentKey(state.catalog.active_profile(key_id).await?))
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ExecuteBody {
    /// The Python script.
    script: String,
    /// Lowercase hex HMAC-SHA256 keyed with the key's secret: of
    /// `ts + "\n" + nonce + "\n" + script` when `ts` and `nonce` are sent (required
    /// by profiles with `replay_protection`), else of the exact script bytes.
    #[schema(pattern = r"^[0-9a-f]{64}$")]
    hash: String,
    /// Unix time in seconds when the request was signed; within 300 s of the
    /// server's clock. Sent together with `nonce`.
    #[serde(default)]
    ts: Option<i64>,
    /// A fresh random string per request (16 to 128 of `A-Z a-z 0-9 _ -`); the
    /// server refuses one it has seen with this key.
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9_-]{16,128}$")]
    nonce: Option<String>,
    /// Wall-clock limit in seconds (default 60 or the server's maximum when lower).
    #[serde(default, deserialize_with = "whole_seconds")]
    #[schema(minimum = 1)]
    timeout: Option<u64>,
    /// Seconds each `llm.complete` may wait for the answer (default and maximum:
    /// the server's `AIRLOCK_LLM_TIMEOUT`).
    #[serde(default, deserialize_with = "whole_seconds")]
    #[schema(minimum = 1)]
    llm_timeout: Option<u64>,
}

/// A number of seconds: a non-negative integer, also written as a whole-number
/// float (`51.0` is the JSON Schema integer 51); `51.5` is refused.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::{Error, Unexpected};
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(v) = n.as_u64() {
        return Ok(Some(v));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && (0.0..=u64::MAX as f64).contains(&f) => Ok(Some(f as u64)),
        Some(f) if f.fract() == 0.0 => Err(D::Error::custom(
            "expected a non-negative whole number of seconds",
        )),
        Some(f) => Err(D::Error::invalid_value(
            Unexpected::Float(f),
            &"a whole number of seconds",
        )),
        None => Err(D::Error::custom("expected a whole number of seconds")),
    }
}

/// The instance's base URL: the configured public URL, else from `Host`.
pub fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(p) = state.config.public_base() {
        return p.to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| state.config.bind.to_string());
    format!("http://{host}")
}

/// Submits a script to run under the key's profile.
#[utoipa::path(
    post,
    path = "/execute",
    tag = "executions",
    security(("agent_key" = [])),
    request_body = ExecuteBody,
    responses(
        (status = 202, description = "Queued; poll `poll_url`", body = docs::Submitted),
        (status = 403, description = "`hash` is not the HMAC of the script (`hash_mismatch`)", body = ErrorBody),
        (status = 429, description = "The queue is full, or every pause slot is taken by an execution paused in `llm.complete` (`rate_limited`, with Retry-After)", body = ErrorBody),
        (status = 503, description = "The sandbox is unavailable (`sandbox_unavailable`)", body = ErrorBody),
    )
)]
async fn execute(
    State(state): State<AppState>,
    AgentKey(profile): AgentKey,
    headers: HeaderMap,
    Json(body): Json<ExecuteBody>,
) -> ApiResult<Response> {
    let runner = state.runner.clone();
    let limits = &runner.limits;
    if body.script.len() > limits.max_script_bytes {
        return Err(ApiError::too_large(format!(
            "script is {} bytes; the limit is {} bytes",
            body.script.len(),
            limits.max_script_bytes
        )));
    }
    check_signature(&state, &profile, &body).await?;
    let timeout = body.timeout.unwrap_or(limits.default_timeout_secs);
    if timeout < 1 || timeout > limits.max_timeout_secs {
        return Err(ApiError::invalid(format!(
            "timeout must be between 1 and {} seconds",
            limits.max_timeout_secs
        )));
    }
    let max_llm = limits.llm_wait.as_secs();
    let llm_timeout = body.llm_timeout.unwrap_or(max_llm);
    if llm_timeout < 1 || llm_timeout > max_llm {
        return Err(ApiError::invalid(format!(
            "llm_timeout must be between 1 and {max_llm} seconds"
        )));
    }
    let timeouts = (
        Duration::from_secs(timeout),
        Duration::from_secs(llm_timeout),
    );
    let base = base_url(&state, &headers);
    if state.approvals.needed(&profile.row, &body.script).await? {
        let a = state
            .approvals
            .request(&profile.row, body.script, timeouts)
            .await?;
        let id = a.execution_id;
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "execution_id": id,
                "poll_url": format!("{base}/executions/{id}"),
                "status": ExecutionStatus::AwaitingApproval,
                "approval_url": approval_url(&base, &id),
            })),
        )
            .into_response());
    }
    let id = runner
        .submit(&profile.row, profile.epoch, body.script, timeouts, None)
        .await?;
    let poll_url = format!("{base}/executions/{id}");
    Ok((
        StatusCode::ACCEPTED,
        Json(
            json!({ "execution_id": id, "poll_url": poll_url, "status": ExecutionStatus::Pending }),
        ),
    )
        .into_response())
}

/// The web UI page where an approver decides on execution `id`.
pub fn approval_url(base: &str, id: &str) -> String {
    format!("{base}/ui/approvals/{id}")
}

/// How far a signed request's `ts` may be from the server's clock, either way.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;

/// Checks `hash` (and, in the replay-protected form, `ts` and `nonce`). The
/// HMAC is checked first, so only the key's holder can use up a nonce.
async fn check_signature(
    state: &AppState,
    profile: &ActiveProfile,
    body: &ExecuteBody,
) -> ApiResult<()> {
    let given = body.hash.trim().to_ascii_lowercase();
    let (expected, stamp) = match (body.ts, body.nonce.as_deref()) {
        (Some(ts), Some(nonce)) => {
            if !(16..=128).contains(&nonce.len())
                || !nonce
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(ApiError::invalid(
                    "nonce must be 16 to 128 characters of A-Z, a-z, 0-9, '_' and '-'",
                ));
            }
            (
                ids::request_signature(&profile.secret, ts, nonce, &body.script),
                Some((ts, nonce)),
            )
        }
        (None, None) if profile.row.replay_protection => {
            return Err(ApiError::forbidden(
                "signature_required",
                "this profile requires replay-protected signatures: send ts (Unix seconds) and nonce (a fresh random string), and hash = HMAC-SHA256(secret, ts + \"\\n\" + nonce + \"\\n\" + script)",
            ));
        }
        (None, None) => (ids::hmac_hex(&profile.secret, body.script.as_bytes()), None),
        _ => {
            return Err(ApiError::invalid(
                "send ts and nonce together (or neither, on a profile without replay protection)",
            ))
        }
    };
    if !ids::ct_eq(expected.as_bytes(), given.as_bytes()) {
        return Err(ApiError::forbidden(
            "hash_mismatch",
            match stamp {
                Some(_) => "hash does not match: send the lowercase hex HMAC-SHA256 of ts + \"\\n\" + nonce + \"\\n\" + script, keyed with the key's secret",
                None => "hash does not match: send the lowercase hex HMAC-SHA256 of the exact script, keyed with the key's secret",
            },
        ));
    }
    let Some((ts, nonce)) = stamp else {
        return Ok(());
    };
    let now = Utc::now();
    let skew = now.timestamp().saturating_sub(ts);
    if skew.abs() > SIGNATURE_WINDOW_SECS {
        return Err(ApiError::forbidden(
            "stale_signature",
            format!(
                "ts is {} s {} the server's clock; sign with the current Unix time (the window is ±{SIGNATURE_WINDOW_SECS} s)",
                skew.abs(),
                if skew > 0 { "behind" } else { "ahead of" }
            ),
        ));
    }
    // Kept until the timestamp leaves the window: after that the ts check refuses it.
    let expires = DateTime::from_timestamp(ts.saturating_add(SIGNATURE_WINDOW_SECS), 0)
        .unwrap_or(now)
        .max(now);
    if !state
        .store
        .nonce_claim(&profile.row.id, nonce, expires, now)
        .await?
    {
        return Err(ApiError::forbidden(
            "replayed",
            "this nonce was already used with this key: send a fresh random nonce with every request",
        ));
    }
    Ok(())
}

fn parse_result(text: &Option<String>) -> Value {
    match text {
        None => Value::Null,
        Some(t) => serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.clone())),
    }
}

fn agent_view(r: &ExecutionRow) -> Value {
    json!({
        "execution_id": r.id,
        "status": r.status,
        "result": parse_result(&r.result),
        "stdout": r.stdout,
        "stderr": r.stderr,
        "error": r.error,
        "llm_request": r.llm_request,
        "execution_time_ms": r.execution_time_ms,
        "llm_wait_ms": r.llm_wait_ms,
        "created_at": r.created_at,
        "completed_at": r.completed_at,
    })
}

fn summary_view(s: &ExecutionSummary, with_profile: bool) -> Value {
    let mut v = json!({
        "execution_id": s.id,
        "status": s.status,
        "script_sha256": s.script_sha256,
        "execution_time_ms": s.execution_time_ms,
        "created_at": s.created_at,
        "completed_at": s.completed_at,
    });
    if with_profile {
        v["profile_id"] = Value::String(s.profile_id.clone());
    }
    v
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct WaitQuery {
    /// Long-poll: seconds (0 to 60) to wait for the status to change.
    #[param(minimum = 0, maximum = 60)]
    wait: Option<u64>,
}

async fn load_own(state: &AppState, profile_id: &str, id: &str) -> ApiResult<ExecutionRow> {
    match state.store.execution_get(id).await? {
        Some(r) if r.profile_id == profile_id => Ok(r),
        _ => Err(not_found(id)),
    }
}

/// Any execution, for the admin.
async fn load_any(state: &AppState, id: &str) -> ApiResult<ExecutionRow> {
    state
        .store
        .execution_get(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("execution {id:?} does not exist")))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("execution {id:?} not found for this key"))
}

/// One of the key's executions: status and (redacted) outputs.
#[utoipa::path(
    get,
    path = "/executions/{id}",
    tag = "executions",
    security(("agent_key" = [])),
    params(("id" = String, Path, description = "Execution id (`exec_…`)"), WaitQuery),
    responses(
        (status = 200, description = "The execution", body = docs::Execution),
        (status = 404, description = "No such execution for this key (`not_found`)", body = ErrorBody),
        (status = 422, description = "`wait` over 60 (`invalid_input`)", body = ErrorBody),
    )
)]
async fn get_own(
    State(state): State<AppState>,
    AgentKey(profile): AgentKey,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let view = |row: &ExecutionRow| {
        let mut v = agent_view(row);
        if row.status == ExecutionStatus::AwaitingApproval {
            v["approval_url"] = json!(approval_url(&base_url(&state, &headers), &row.id));
        }
        Json(v)
    };
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::invalid(format!(
            "wait must be at most {MAX_WAIT_SECS} seconds"
        )));
    }
    // A live execution's latest state is in memory; a finished one is in the store.
    let live = state.runner.subscribe(&id);
    let row = match &live {
        Some(rx) => {
            let row = rx.borrow().clone();
            if row.profile_id != profile.row.id {
                return Err(not_found(&id));
            }
            row
        }
        None => match state.runner.finished(&id) {
            // A final state never changes: no store read for it.
            Some(row) if row.profile_id == profile.row.id => row,
            Some(_) => return Err(not_found(&id)),
            None => {
                let row = Arc::new(load_own(&state, &profile.row.id, &id).await?);
                state.runner.remember_finished(row.clone());
                row
            }
        },
    };
    // Nothing to wait for: no wait asked, a final state, or no longer live (the
    // store's row is then the latest there is).
    let Some(mut rx) = live.filter(|_| wait > 0 && !row.status.is_terminal()) else {
        return Ok(view(&row));
    };
    let seen = row.status;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        if rx.borrow_and_update().status != seen {
            break;
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            // Timed out, or the watch ended (it always publishes the final
            // state first, so the latest value below is current).
            _ => break,
        }
    }
    let row = rx.borrow().clone();
    Ok(view(&row))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only this status.
    #[param(inline, value_type = Option<docs::ExecutionStatus>)]
    status: Option<String>,
    /// 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<i64>,
    /// Executions to skip (default 0).
    #[param(minimum = 0)]
    offset: Option<i64>,
    /// Only this profile id (admin listing).
    profile: Option<String>,
    /// Created at or after: a date (2026-01-31) or an RFC 3339 timestamp.
    #[param(schema_with = docs::date_or_timestamp)]
    from: Option<String>,
    /// Created before: a date or an RFC 3339 timestamp.
    #[param(schema_with = docs::date_or_timestamp)]
    to: Option<String>,
}

fn filter_from(q: &ListQuery) -> ApiResult<ExecutionFilter> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 500"));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("offset must not be negative"));
    }
    let status = q
        .status
        .as_deref()
        .map(|s| {
            ExecutionStatus::parse(s).ok_or_else(|| {
                ApiError::invalid(format!("status must be one of {}", ExecutionStatus::list()))
            })
        })
        .transpose()?;
    let date = |name: &str, v: &Option<String>| -> ApiResult<Option<DateTime<Utc>>> {
        v.as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|d| d.with_timezone(&Utc))
                    .or_else(|_| {
                        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                            .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
                    })
                    .map_err(|_| {
                        ApiError::invalid(format!(
                            "{name} must be a date (2026-01-31) or an RFC 3339 timestamp"
                        ))
                    })
            })
            .transpose()
    };
    Ok(ExecutionFilter {
        profile_id: q.profile.clone(),
        status,
        created_from: date("from", &q.from)?,
        created_to: date("to", &q.to)?,
        limit,
        offset,
    })
}

/// The key's executions, newest first.
#[utoipa::path(
    get,
    path = "/executions",
    tag = "executions",
    security(("agent_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of executions", body = docs::ExecutionPage),
        (status = 422, description = "Invalid filter (`invalid_input`)", body = ErrorBody),
    )
)]
async fn list_own(
    State(state): State<AppState>,
    AgentKey(profile): AgentKey,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let mut f = filter_from(&q)?;
    f.profile_id = Some(profile.row.id.clone());
    let rows = state.store.executions_list(&f).await?;
    let total = state.store.executions_count(&f).await?;
    Ok(Json(json!({
        "executions": rows.iter().map(|s| summary_view(s, false)).collect::<Vec<_>>(),
        "total": total, "limit": f.limit, "offset": f.offset,
    })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RespondBody {
    /// The answer `llm.complete` returns to the script.
    response: String,
    /// `llm_request.request_id` of the pause being answered.
    request_id: Option<String>,
}

/// Answers a script paused in `llm.complete`.
#[utoipa::path(
    post,
    path = "/executions/{id}/respond",
    tag = "executions",
    security(("agent_key" = [])),
    params(("id" = String, Path, description = "Execution id")),
    request_body = RespondBody,
    responses(
        (status = 200, description = "Delivered; the script continues", body = docs::Responded),
        (status = 404, description = "No such execution for this key (`not_found`)", body = ErrorBody),
        (status = 409, description = "Not awaiting an answer (`not_awaiting_llm`), or `request_id` is not the pending request (`llm_request_mismatch`)", body = ErrorBody),
    )
)]
async fn respond(
    State(state): State<AppState>,
    AgentKey(profile): AgentKey,
    Path(id): Path<String>,
    Json(body): Json<RespondBody>,
) -> ApiResult<Json<Value>> {
    let row = load_own(&state, &profile.row.id, &id).await?;
    if body.response.len() > MAX_LLM_RESPONSE_BYTES {
        return Err(ApiError::too_large(format!(
            "response is over the {MAX_LLM_RESPONSE_BYTES}-byte limit"
        )));
    }
    if row.status != ExecutionStatus::AwaitingLlm {
        return Err(ApiError::conflict(
            "not_awaiting_llm",
            format!("execution is {}, not awaiting an LLM answer", row.status),
        ));
    }
    match state
        .runner
        .respond_llm(&id, body.request_id.as_deref(), body.response)
    {
        Ok(()) => Ok(Json(
            json!({ "execution_id": id, "status": ExecutionStatus::Running }),
        )),
        // A stale id (its request was answered and the script already asked the next
        // one) is a state conflict like answering twice, not a malformed body.
        Err(RespondError::WrongRequest) => Err(ApiError::conflict(
            "llm_request_mismatch",
            "request_id is not the pending LLM request (already answered, or never issued); \
             read llm_request.request_id from GET /executions/{id}",
        )),
        Err(RespondError::NotAwaiting) => Err(ApiError::conflict(
            "not_awaiting_llm",
            "execution is not awaiting an LLM answer (already answered or finished)",
        )),
    }
}

/// All executions, filtered.
#[utoipa::path(
    get,
    path = "/executions",
    tag = "admin",
    security(("admin_session" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of executions", body = docs::ExecutionPage),
        (status = 422, description = "Invalid filter (`invalid_input`)", body = ErrorBody),
    )
)]
async fn admin_list(
    State(state): State<AppState>,
    _s: AdminSession,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let f = filter_from(&q)?;
    let rows = state.store.executions_list(&f).await?;
    let total = state.store.executions_count(&f).await?;
    Ok(Json(json!({
        "executions": rows.iter().map(|s| summary_view(s, true)).collect::<Vec<_>>(),
        "total": total, "limit": f.limit, "offset": f.offset,
    })))
}

/// One execution with script, redaction events, LLM exchanges and egress log.
#[utoipa::path(
    get,
    path = "/executions/{id}",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "Execution id")),
    responses(
        (status = 200, description = "The execution", body = docs::AdminExecution),
        (status = 404, description = "No such execution (`not_found`)", body = ErrorBody),
    )
)]
async fn admin_get(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let r = load_any(&state, &id).await?;
    let mut v = agent_view(&r);
    v["profile_id"] = Value::String(r.profile_id.clone());
    v["script"] = Value::String(r.script.clone());
    v["script_sha256"] = Value::String(r.script_sha256.clone());
    v["timeout"] = json!(r.timeout_secs);
    v["started_at"] = json!(r.started_at);
    v["redactions"] = json!(r.redactions);
    v["llm_exchanges"] = json!(r.llm_exchanges);
    v["inputs"] = json!(r.inputs);
    v["egress"] = state
        .store
        .egress_list(&r.id)
        .await?
        .iter()
        .map(egress_view)
        .collect();
    Ok(Json(v))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DiffQuery {
    /// The execution to compare with (of the same profile).
    with: String,
}

/// Compares an execution with another of the same profile: script diff, input
/// record (interpreter, packages, clock), each HTTP request's answer (status and,
/// with `record` on, body hash) and the outputs (result leaves by JSON pointer,
/// stdout/stderr diffs).
#[utoipa::path(
    get,
    path = "/executions/{id}/diff",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "Execution id (side a)"), DiffQuery),
    responses(
        (status = 200, description = "What differs", body = crate::compare::Comparison),
        (status = 404, description = "No such execution (`not_found`)", body = ErrorBody),
        (status = 422, description = "The two belong to different profiles (`invalid_input`)", body = ErrorBody),
    )
)]
async fn admin_diff(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
    Query(q): Query<DiffQuery>,
) -> ApiResult<Json<crate::compare::Comparison>> {
    let (a, b) = (
        load_any(&state, &id).await?,
        load_any(&state, &q.with).await?,
    );
    if a.profile_id != b.profile_id {
        return Err(ApiError::invalid(format!(
            "execution {} belongs to profile {} and {} to profile {}: compare executions of one profile",
            a.id, a.profile_id, b.id, b.profile_id
        )));
    }
    let (ea, eb) = (
        state.store.egress_list(&a.id).await?,
        state.store.egress_list(&b.id).await?,
    );
    let mut c = crate::compare::compare(&a, &ea, &b, &eb);
    let (aa, ab) = (
        state.catalog.open_answers(&a.id).await?,
        state.catalog.open_answers(&b.id).await?,
    );
    crate::compare::with_bodies(&mut c, &aa, &ab);
    Ok(Json(c))
}

/// Where a replay's HTTP answers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplayAnswers {
    /// From the record (`record: full`): nothing leaves, a request not in the record
    /// fails with 502, `llm.complete` is answered as it was while the prompts match.
    Recorded,
    /// From the network, as it answers today.
    Live,
}

/// Optional body of a replay.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Default: `recorded` when the execution's record kept its answers, else `live`.
    pub answers: Option<ReplayAnswers>,
}

/// Runs a recorded execution again: the same script and timeout under the same
/// profile (which must still be usable: locked, not revoked or expired), with the
/// recorded clock (`airlock.now()` returns what it returned then). With a `full`
/// record its HTTP answers (and `llm.complete` answers) are served from the record;
/// otherwise the network and the packages are today's. Compare the two with
/// `GET /api/admin/executions/{new}/diff?with={id}`.
#[utoipa::path(
    post,
    path = "/executions/{id}/replay",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "The execution to replay")),
    request_body(content = Option<ReplayRequest>, description = "Optional: where the answers come from"),
    responses(
        (status = 202, description = "Accepted: `execution_id`, `replay_of`, `answers`, `diff_url`, `status`", body = Object),
        (status = 404, description = "No such execution (`not_found`)", body = ErrorBody),
        (status = 409, description = "Its profile can no longer run code (`profile_unusable`)", body = ErrorBody),
        (status = 422, description = "The execution has no input record (`invalid_input`)", body = ErrorBody),
    )
)]
async fn admin_replay(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
    body: Option<Json<ReplayRequest>>,
) -> ApiResult<Response> {
    let old = load_any(&state, &id).await?;
    let Some(inputs) = old.inputs.as_ref() else {
        return Err(ApiError::invalid(format!(
            "execution {id} has no input record: set \"record\" on its profile, then replay a later execution"
        )));
    };
    let full = inputs.record == Some(airlock_store::RecordMode::Full);
    let mode = body.and_then(|Json(b)| b.answers).unwrap_or(if full {
        ReplayAnswers::Recorded
    } else {
        ReplayAnswers::Live
    });
    let answers = match mode {
        ReplayAnswers::Live => None,
        ReplayAnswers::Recorded => Some(recorded_answers(&state, &old, full).await?),
    };
    let epoch = state.store.profiles_epoch();
    let unusable = |why: String| {
        ApiError::conflict(
            "profile_unusable",
            format!("cannot replay: {why} ({})", old.profile_id),
        )
    };
    let profile = state
        .store
        .profile_get(&old.profile_id)
        .await?
        .ok_or_else(|| unusable("profile was deleted".into()))?;
    if let Some(refusal) = profile.refusal(Utc::now()) {
        return Err(unusable(
            crate::catalog::KeyRefusal::from(refusal).to_string(),
        ));
    }
    let limits = &state.runner.limits;
    let timeout = u64::try_from(old.timeout_secs)
        .unwrap_or(limits.default_timeout_secs)
        .clamp(1, limits.max_timeout_secs);
    let replay = crate::runner::Replay {
        of: old.id.clone(),
        now: inputs.now,
        llm: if answers.is_some() {
            old.llm_exchanges.clone().into()
        } else {
            Default::default()
        },
        answers,
    };
    let new = state
        .runner
        .submit(
            &profile,
            epoch,
            old.script.clone(),
            (Duration::from_secs(timeout), limits.llm_wait),
            Some(replay),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "execution_id": new,
            "replay_of": old.id,
            "answers": mode,
            "status": ExecutionStatus::Pending,
            "diff_url": format!("/api/admin/executions/{new}/diff?with={}", old.id),
        })),
    )
        .into_response())
}

/// The answers `old`'s record kept, for its replay; 422 when there are none to
/// serve (not recorded `full`, or deleted after the retention period).
async fn recorded_answers(
    state: &AppState,
    old: &ExecutionRow,
    full: bool,
) -> ApiResult<Arc<airlock_egress::ReplaySource>> {
    let id = &old.id;
    if !full {
        return Err(ApiError::invalid(format!(
            "execution {id} kept no answers (its profile recorded hashes only): replay it with \"answers\": \"live\", or set \"record\": \"full\" and replay a later execution"
        )));
    }
    let stored = state.catalog.open_answers(id).await?;
    if stored.is_empty() {
        let answered = state
            .store
            .egress_list(id)
            .await?
            .iter()
            .any(|e| e.body_sha256.is_some());
        if answered {
            return Err(ApiError::invalid(format!(
                "the answers recorded for execution {id} were deleted after {} days (AIRLOCK_RECORD_RETENTION_DAYS): replay it with \"answers\": \"live\"",
                state.config.record_retention_days
            )));
        }
    }
    let answers = stored
        .iter()
        .filter_map(crate::answers::StoredAnswer::captured);
    Ok(Arc::new(airlock_egress::ReplaySource::new(
        id.clone(),
        answers,
    )))
}

/// One egress attempt in the admin execution view (never in agent responses).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EgressView {
    /// When the attempt started.
    pub at: chrono::DateTime<chrono::Utc>,
    /// The host as the script asked for it (name or IP literal).
    pub host: String,
    pub port: u16,
    /// `CONNECT` for tunnels, `TCP` for a connection to a `tcp://` destination, else
    /// the HTTP method of a plain-HTTP request (or of a request to a sealed
    /// credential's bound host, which the proxy terminates).
    pub method: String,
    /// Path of an inspected request (no query string); null for tunnels.
    pub path: Option<String>,
    pub bytes_up: i64,
    pub bytes_down: i64,
    /// How long the attempt lasted (a tunnel's or TCP connection's whole life), in
    /// milliseconds; null for attempts logged before this was recorded.
    pub duration_ms: Option<i64>,
    pub allowed: bool,
    /// The rule that allowed it, or why it was refused.
    pub reason: String,
    /// A sealed credential's placeholder was on its way to a host not bound to it.
    pub violation: bool,
    /// Sealed credentials whose values the proxy substituted into this request.
    pub substituted: Vec<String>,
    /// HTTP status of the answer (plain or intercepted requests).
    pub status: Option<u16>,
    /// Hex SHA-256 of the response body the script received (profiles with `record`).
    pub body_sha256: Option<String>,
}

fn egress_view(e: &airlock_store::EgressRow) -> Value {
    serde_json::to_value(EgressView {
        at: e.at,
        host: e.host.clone(),
        port: e.port,
        method: e.method.clone(),
        path: e.path.clone(),
        bytes_up: e.bytes_up,
        bytes_down: e.bytes_down,
        duration_ms: e.duration_ms,
        allowed: e.allowed,
        reason: e.reason.clone(),
        violation: e.violation,
        substituted: e.substituted.clone(),
        status: e.status,
        body_sha256: e.body_sha256.clone(),
    })
    .unwrap_or(Value::Null)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StatsQuery {
    /// Only the last N days (1 to 3650); all time when absent.
    #[param(minimum = 1, maximum = 3650)]
    days: Option<i64>,
}

/// Execution statistics.
#[utoipa::path(
    get,
    path = "/stats",
    tag = "admin",
    security(("admin_session" = [])),
    params(StatsQuery),
    responses(
        (status = 200, description = "Counts, error rate, durations, egress", body = docs::Stats),
        (status = 422, description = "`days` out of range (`invalid_input`)", body = ErrorBody),
    )
)]
async fn admin_stats(
    State(state): State<AppState>,
    _s: AdminSession,
    Query(q): Query<StatsQuery>,
) -> ApiResult<Json<Value>> {
    let since = match q.days {
        None => None,
        Some(d) if (1..=3650).contains(&d) => Some(Utc::now() - chrono::Duration::days(d)),
        Some(_) => return Err(ApiError::invalid("days must be between 1 and 3650")),
    };
    let st = state.store.execution_stats(since).await?;
    let egress = state.store.egress_counts(since).await?;
    Ok(Json(json!({
        "total": st.total(),
        "by_status": st.by_status.iter().map(|(k, n)| (k.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "by_profile": st.by_profile.iter().map(|(k, n)| json!({"profile_id": k, "count": n})).collect::<Vec<_>>(),
        "by_day": st.by_day.iter().map(|(k, n)| json!({"day": k, "count": n})).collect::<Vec<_>>(),
        "error_rate": st.error_rate().unwrap_or(0.0),
        "duration_ms": {
            "p50": st.duration_percentile(50.0), "p90": st.duration_percentile(90.0),
            "p99": st.duration_percentile(99.0), "max": st.duration_max(),
        },
        "egress": { "allowed": egress.allowed, "refused": egress.refused },
    })))
}
