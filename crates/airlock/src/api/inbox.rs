//! The agent requests inbox (admin): list what agents asked for, accept or
//! reject it. The rules live in [`crate::inbox`].

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::ErrorBody;
use super::{Json, Query};
use crate::api::session::AdminSession;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::inbox::{self, InboxItem};
use airlock_store::{RequestKind, RequestStatus};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_requests))
        .routes(routes!(accept_request))
        .routes(routes!(reject_request))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Which requests (default `pending`).
    #[param(inline)]
    status: Option<ListStatus>,
    /// Only requests of this kind.
    #[param(inline)]
    kind: Option<RequestKind>,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ListStatus {
    Pending,
    Accepted,
    Rejected,
    All,
}

#[derive(ToSchema)]
#[allow(dead_code)] // the schema of the list answer
struct RequestList {
    requests: Vec<InboxItem>,
}

/// What agents asked for (profiles, credential slots, packages), newest first
/// (at most 500).
#[utoipa::path(
    get,
    path = "/requests",
    tag = "admin",
    security(("admin_session" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The requests", body = RequestList),
        (status = 422, description = "Unknown status or kind (`invalid_input`)", body = ErrorBody),
    )
)]
async fn list_requests(
    State(state): State<AppState>,
    _s: AdminSession,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let status = match q.status.unwrap_or(ListStatus::Pending) {
        ListStatus::All => None,
        ListStatus::Pending => Some(RequestStatus::Pending),
        ListStatus::Accepted => Some(RequestStatus::Accepted),
        ListStatus::Rejected => Some(RequestStatus::Rejected),
    };
    let requests = inbox::list(&state, q.kind, status).await?;
    Ok(Json(json!({ "requests": requests })))
}

fn kind(s: &str) -> ApiResult<RequestKind> {
    inbox::parse_kind(s).ok_or_else(|| {
        ApiError::not_found(format!(
            "no request kind {:?}: use profile, slot or packages",
            crate::validate::truncate_for_message(s)
        ))
    })
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct AcceptBody {
    /// A note the agent reads with the answer.
    #[schema(max_length = 1000)]
    note: Option<String>,
}

/// Accepts a pending request. For packages the install starts; a profile or a
/// slot still needs its values (filling them or locking accepts too).
#[utoipa::path(
    post,
    path = "/requests/{kind}/{subject}/accept",
    tag = "admin",
    security(("admin_session" = [])),
    params(
        ("kind" = RequestKind, Path, description = "`profile`, `slot` or `packages`"),
        ("subject" = String, Path, description = "Profile id, credential name, or install id"),
    ),
    request_body = AcceptBody,
    responses(
        (status = 200, description = "Accepted", body = InboxItem),
        (status = 404, description = "No such request (`not_found`)", body = ErrorBody),
        (status = 409, description = "Already decided (`request_decided`)", body = ErrorBody),
        (status = 422, description = "A note over 1000 characters (`invalid_input`)", body = ErrorBody),
        (status = 503, description = "Packages cannot be installed here (`packages_unavailable`; the request stays pending)", body = ErrorBody),
    )
)]
async fn accept_request(
    State(state): State<AppState>,
    _s: AdminSession,
    Path((k, subject)): Path<(String, String)>,
    body: Option<Json<AcceptBody>>,
) -> ApiResult<Json<InboxItem>> {
    let note = body.and_then(|Json(b)| b.note);
    Ok(Json(
        inbox::accept(&state, kind(&k)?, &subject, note).await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    /// Why; the agent reads it.
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
}

/// Rejects a pending request with a reason the agent reads (for packages,
/// nothing is installed).
#[utoipa::path(
    post,
    path = "/requests/{kind}/{subject}/reject",
    tag = "admin",
    security(("admin_session" = [])),
    params(
        ("kind" = RequestKind, Path, description = "`profile`, `slot` or `packages`"),
        ("subject" = String, Path, description = "Profile id, credential name, or install id"),
    ),
    request_body = RejectBody,
    responses(
        (status = 200, description = "Rejected", body = InboxItem),
        (status = 404, description = "No such request (`not_found`)", body = ErrorBody),
        (status = 409, description = "Already decided (`request_decided`)", body = ErrorBody),
        (status = 422, description = "No reason, or one over 1000 characters (`invalid_input`)", body = ErrorBody),
    )
)]
async fn reject_request(
    State(state): State<AppState>,
    _s: AdminSession,
    Path((k, subject)): Path<(String, String)>,
    Json(body): Json<RejectBody>,
) -> ApiResult<Json<InboxItem>> {
    Ok(Json(
        inbox::reject(&state, kind(&k)?, &subject, Some(body.reason)).await?,
    ))
}
