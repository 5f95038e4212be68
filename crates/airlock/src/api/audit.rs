//! The audit log (admin): list events, download the whole log (JSON Lines, with the
//! public key and the signed heads, for `airlock audit verify`), check it now.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::ErrorBody;
use super::{Json, Query};
use crate::api::session::AdminSession;
use crate::app::AppState;
use crate::audit::{ExportLine, Verification};
use crate::error::{ApiError, ApiResult};
use airlock_store::{AuditFilter, AuditRow, NewAuditEvent};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(export_audit))
        .routes(routes!(verify_audit))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only events after this sequence number (oldest first then).
    after: Option<i64>,
    /// Only events before this sequence number (newest first; the default order).
    before: Option<i64>,
    /// Only actions starting with this (e.g. `POST /api/admin/profiles`).
    #[param(max_length = 200)]
    action: Option<String>,
    /// Only this actor (`admin`, `anonymous`, `agent:ark_…`).
    #[param(max_length = 100)]
    actor: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(ToSchema)]
#[allow(dead_code)] // the schema of the list answer
struct AuditList {
    events: Vec<AuditRow>,
    /// Hex Ed25519 key the chain's heads are signed with.
    public_key: String,
    verification: Verification,
}

/// Audit events: newest first, or oldest first after `after`.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "admin",
    security(("admin_session" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "Events, the public key and the last check", body = AuditList),
        (status = 422, description = "A bad filter (`invalid_input`)", body = ErrorBody),
    )
)]
async fn list_audit(
    State(state): State<AppState>,
    _s: AdminSession,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 1000"));
    }
    for (name, value, max) in [("action", &q.action, 200), ("actor", &q.actor, 100)] {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(ApiError::invalid(format!(
                "{name} must be at most {max} characters"
            )));
        }
    }
    let events = state
        .store
        .audit_list(&AuditFilter {
            after: q.after,
            before: q.before,
            action: q.action.filter(|a| !a.is_empty()),
            actor: q.actor.filter(|a| !a.is_empty()),
            limit,
            newest_first: q.after.is_none(),
        })
        .await?;
    Ok(Json(json!({
        "events": events,
        "public_key": state.audit.public_key(),
        "verification": state.audit.verification(),
    })))
}

/// The whole audit log as JSON Lines: a `key` line, every `event`, every signed
/// `head`; `airlock audit verify <file>` checks it offline. The download is itself
/// recorded.
#[utoipa::path(
    get,
    path = "/audit/export",
    tag = "admin",
    security(("admin_session" = [])),
    responses((status = 200, description = "JSON Lines", content_type = "application/x-ndjson", body = String))
)]
async fn export_audit(State(state): State<AppState>, s: AdminSession) -> ApiResult<Response> {
    state
        .audit
        .record(NewAuditEvent {
            at: chrono::Utc::now(),
            actor: s.actor,
            role: s.role,
            client: None,
            action: "GET /api/admin/audit/export".into(),
            target: Some("/api/admin/audit/export".into()),
            outcome: "ok".into(),
            detail: json!({}),
        })
        .await?;
    // The head just written is signed first, so the file ends with a signature.
    state.audit.sign_head().await?;
    let (events, heads) = state.audit.read_all().await?;
    let mut out = String::new();
    let mut line = |l: ExportLine| {
        out.push_str(&serde_json::to_string(&l).unwrap_or_default());
        out.push('\n');
    };
    line(ExportLine::Key {
        public_key: state.audit.public_key().to_string(),
    });
    for e in events {
        line(ExportLine::Event(e));
    }
    for h in heads {
        line(ExportLine::Head(h));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"airlock-audit.jsonl\"",
            ),
        ],
        out,
    )
        .into_response())
}

/// Checks the whole chain and its signed heads now (the server also does every
/// `AIRLOCK_AUDIT_VERIFY_SECS`).
#[utoipa::path(
    post,
    path = "/audit/verify",
    tag = "admin",
    security(("admin_session" = [])),
    responses((status = 200, description = "What the check found", body = Verification))
)]
async fn verify_audit(
    State(state): State<AppState>,
    _s: AdminSession,
) -> ApiResult<Json<Verification>> {
    Ok(Json(state.audit.check().await))
}
