//! Admin API tokens (admin, browser session only): list, create (the token is
//! shown once), revoke. The rules live in [`crate::tokens`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::ErrorBody;
use super::Json;
use crate::api::session::AdminSession;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::tokens::{self, TokenView};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

#[derive(ToSchema)]
#[allow(dead_code)] // the schema of the list answer
struct TokenList {
    tokens: Vec<TokenView>,
}

/// Admin API tokens, newest first (never their secrets).
#[utoipa::path(
    get,
    path = "/tokens",
    tag = "admin",
    security(("admin_session" = [])),
    responses((status = 200, description = "The tokens", body = TokenList))
)]
async fn list_tokens(State(state): State<AppState>, _s: AdminSession) -> ApiResult<Response> {
    let list: Vec<TokenView> = state
        .store
        .admin_tokens_list()
        .await?
        .into_iter()
        .map(TokenView::from)
        .collect();
    Ok(Json(json!({ "tokens": list })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    /// What it is for (1 to 100 characters).
    #[schema(min_length = 1, max_length = 100)]
    name: String,
    /// `owner`, `operator` (credentials, profiles, keys, packages, requests,
    /// approvals), `approver` (read; approvals and requests) or `auditor` (read only).
    #[schema(pattern = "^(owner|operator|approver|auditor)$")]
    role: String,
    /// When it stops working (RFC 3339; default: never).
    expires_at: Option<DateTime<Utc>>,
}

/// Creates a token; the answer's `token` is shown once.
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "admin",
    security(("admin_session" = [])),
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token, with `token` (`atk_<id>.<secret>`) shown once", body = TokenView),
        (status = 422, description = "A bad name, role or expiry, or 100 active tokens (`invalid_input`)", body = ErrorBody),
    )
)]
async fn create_token(
    State(state): State<AppState>,
    _s: AdminSession,
    Json(body): Json<CreateToken>,
) -> ApiResult<Response> {
    let (view, token) =
        tokens::create(&*state.store, &body.name, &body.role, body.expires_at).await?;
    let mut v = serde_json::to_value(&view).map_err(|_| ApiError::internal())?;
    v["token"] = json!(token);
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(v),
    )
        .into_response())
}

/// Revokes a token at once.
#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "The token's id (the part between `atk_` and `.`)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such token, or revoked already (`not_found`)", body = ErrorBody),
    )
)]
async fn revoke_token(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if !state.store.admin_token_revoke(&id, Utc::now()).await? {
        return Err(
            tokens::TokenError::NotFound(crate::validate::truncate_for_message(&id)).into(),
        );
    }
    Ok(StatusCode::NO_CONTENT)
}
