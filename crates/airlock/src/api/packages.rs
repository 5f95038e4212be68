//! Package requests: agents ask for Python packages (`/requirements`), the operator
//! lists and removes them (`/api/admin/packages`). The work happens in
//! [`crate::packages`]; these handlers only parse and map.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;

use super::executions::AgentKey;
use super::Json;
use crate::app::AppState;
use crate::auth::AdminSession;
use crate::error::ApiResult;
use crate::packages::RequirementsRequest;

/// Agent routes. Like the execution routes they need `Authorization: Bearer <key id>`
/// of a usable (locked, unrevoked, unexpired) profile: a package ends up inside every
/// profile's scripts, so an anonymous caller must not be able to add one.
pub fn agent_routes() -> Router<AppState> {
    Router::new()
        .route("/requirements", get(list).post(request))
        .route("/requirements/{install_id}", get(install))
}

/// Admin routes (mounted under `/api/admin`, behind the session and CSRF guard).
pub fn admin_routes() -> Router<AppState> {
    Router::new()
        .route("/packages", get(admin_list))
        .route("/packages/{name}", delete(admin_remove))
}

async fn list(State(state): State<AppState>, _key: AgentKey) -> ApiResult<Response> {
    let mut list = state.packages.list().await?;
    if list.environment.reason.is_some() {
        list.environment.reason = Some(crate::packages::AGENT_UNAVAILABLE.into());
    }
    Ok(Json(list).into_response())
}

async fn request(
    State(state): State<AppState>,
    _key: AgentKey,
    Json(body): Json<RequirementsRequest>,
) -> ApiResult<Response> {
    let view = state.packages.request(&body.packages).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

async fn install(
    State(state): State<AppState>,
    _key: AgentKey,
    Path(install_id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.packages.install(&install_id).await?).into_response())
}

async fn admin_list(State(state): State<AppState>, _s: AdminSession) -> ApiResult<Response> {
    Ok(Json(state.packages.list().await?).into_response())
}

async fn admin_remove(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let view = state.packages.remove(&name).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}
