//! Approval endpoints (admin): the requests of executions that wait for a
//! person, with the script and its difference from what was approved before;
//! approve, deny, withdraw.

use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::ErrorBody;
use super::{Json, Query};
use crate::api::session::AdminSession;
use crate::app::AppState;
use crate::approvals::{ApprovalDetail, ApprovalView, Grant};
use crate::error::ApiResult;
use airlock_store::ApprovalStatus;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_approvals))
        .routes(routes!(get_approval))
        .routes(routes!(approve_execution))
        .routes(routes!(deny_execution))
        .routes(routes!(withdraw_approval))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Which requests (default `pending`).
    #[param(inline)]
    status: Option<ListStatus>,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ListStatus {
    Pending,
    Approved,
    Denied,
    Expired,
    Withdrawn,
    All,
}

#[derive(ToSchema)]
#[allow(dead_code)] // the schema of the list answer
struct ApprovalList {
    approvals: Vec<ApprovalView>,
}

/// Approval requests, newest first (at most 200).
#[utoipa::path(
    get,
    path = "/approvals",
    tag = "admin",
    security(("admin_session" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The requests", body = ApprovalList),
        (status = 422, description = "Unknown status (`invalid_input`)", body = ErrorBody),
    )
)]
async fn list_approvals(
    State(state): State<AppState>,
    _s: AdminSession,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let statuses: Vec<ApprovalStatus> = match q.status.unwrap_or(ListStatus::Pending) {
        ListStatus::All => Vec::new(),
        ListStatus::Pending => vec![ApprovalStatus::Pending],
        ListStatus::Approved => vec![ApprovalStatus::Approved],
        ListStatus::Denied => vec![ApprovalStatus::Denied],
        ListStatus::Expired => vec![ApprovalStatus::Expired],
        ListStatus::Withdrawn => vec![ApprovalStatus::Withdrawn],
    };
    let approvals = state.approvals.list(&statuses).await?;
    Ok(Json(json!({ "approvals": approvals })))
}

/// One request: the script, the profile's credentials and hosts, and the diff
/// against the closest script of that profile approved before.
#[utoipa::path(
    get,
    path = "/approvals/{id}",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "The waiting execution's id")),
    responses(
        (status = 200, description = "The request", body = ApprovalDetail),
        (status = 404, description = "No such request (`not_found`)", body = ErrorBody),
    )
)]
async fn get_approval(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<Json<ApprovalDetail>> {
    Ok(Json(state.approvals.detail(&id).await?))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    /// `first_run` only: how many runs of this script the approval covers, this
    /// one included (default: no limit).
    #[schema(minimum = 1, maximum = 1000000)]
    runs: Option<i64>,
    /// `first_run` only: when the approval ends (RFC 3339; default: until withdrawn).
    until: Option<DateTime<Utc>>,
    /// A note kept with the decision.
    #[schema(max_length = 1000)]
    note: Option<String>,
}

/// Approves a pending request: the execution is queued and runs.
#[utoipa::path(
    post,
    path = "/approvals/{id}/approve",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "The waiting execution's id")),
    request_body = ApproveBody,
    responses(
        (status = 200, description = "Approved", body = ApprovalView),
        (status = 404, description = "No such request (`not_found`)", body = ErrorBody),
        (status = 409, description = "Already decided or expired (`approval_decided`), or the profile cannot run code now (`profile_inactive`; the request is then denied)", body = ErrorBody),
        (status = 422, description = "`runs`/`until` out of range or given under every_run (`invalid_input`)", body = ErrorBody),
    )
)]
async fn approve_execution(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
    Json(body): Json<ApproveBody>,
) -> ApiResult<Json<ApprovalView>> {
    state
        .approvals
        .approve(
            &id,
            Grant {
                runs: body.runs,
                until: body.until,
                note: body.note,
            },
        )
        .await?;
    tracing::info!(execution = %id, "execution approved");
    Ok(Json(state.approvals.detail(&id).await?.approval))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DenyBody {
    /// Why; the agent reads it in the execution's `error`.
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
}

/// Denies a pending request: the execution ends `denied` with the reason.
#[utoipa::path(
    post,
    path = "/approvals/{id}/deny",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "The waiting execution's id")),
    request_body = DenyBody,
    responses(
        (status = 200, description = "Denied", body = ApprovalView),
        (status = 404, description = "No such request (`not_found`)", body = ErrorBody),
        (status = 409, description = "Already decided or expired (`approval_decided`)", body = ErrorBody),
        (status = 422, description = "No reason, or one over 1000 characters (`invalid_input`)", body = ErrorBody),
    )
)]
async fn deny_execution(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
    Json(body): Json<DenyBody>,
) -> ApiResult<Json<ApprovalView>> {
    state.approvals.deny(&id, Some(body.reason)).await?;
    tracing::info!(execution = %id, "execution denied");
    Ok(Json(state.approvals.detail(&id).await?.approval))
}

/// Withdraws an approved `first_run` request: its script asks again next time.
#[utoipa::path(
    post,
    path = "/approvals/{id}/withdraw",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "The approved execution's id")),
    responses(
        (status = 200, description = "Withdrawn", body = ApprovalView),
        (status = 404, description = "No such request (`not_found`)", body = ErrorBody),
        (status = 409, description = "Not an approved first_run request (`approval_decided`)", body = ErrorBody),
    )
)]
async fn withdraw_approval(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<Json<ApprovalView>> {
    state.approvals.withdraw(&id).await?;
    tracing::info!(execution = %id, "approval withdrawn");
    Ok(Json(state.approvals.detail(&id).await?.approval))
}
