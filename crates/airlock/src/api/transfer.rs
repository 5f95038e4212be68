//! `/api/admin/export` and `/api/admin/import/*`: the HTTP side of export and
//! import (see `crate::transfer`). Both directions need an admin session and the
//! admin password re-entered (throttled like logins).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::docs::ErrorBody;
use crate::api::session::AdminSession;
use crate::api::Json;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::ids;
use crate::transfer::{self, ExportRequest, Outcome, Preview, Strategy, TransferError};

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
        (status = 401, description = "Wrong admin password (`wrong_password`) or no session (`not_authenticated`)", body = ErrorBody),
        (status = 404, description = "A selected profile does not exist (`not_found`)", body = ErrorBody),
        (status = 422, description = "Weak passphrase or invalid selection (`invalid_input`)", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords (`rate_limited`)", body = ErrorBody),
    )
)]
async fn export(
    State(state): State<AppState>,
    session: AdminSession,
    Json(body): Json<ExportBody>,
) -> ApiResult<Response> {
    transfer::check_passphrase(&body.passphrase)?;
    state
        .auth
        .reauthenticate(&session.token, &body.password)
        .await?;
    let request = ExportRequest {
        profiles: body.profiles,
        include_executions: body.include_executions,
    };
    let file = state.transfer.export(&request, body.passphrase).await?;
    tracing::info!(
        credentials = file.credentials,
        profiles = file.profiles,
        executions = file.executions,
        bytes = file.bytes.len(),
        "export file created"
    );
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{}\"", file.filename))
        .map_err(|_| ApiError::internal())?;
    let mut resp = (StatusCode::OK, file.bytes).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_DISPOSITION, disposition);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
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
        (status = 400, description = "`file` is not base64 (`bad_request`)", body = ErrorBody),
        (status = 401, description = "Wrong admin password (`wrong_password`) or no session", body = ErrorBody),
        (status = 413, description = "File over AIRLOCK_MAX_IMPORT_BYTES (`too_large`)", body = ErrorBody),
        (status = 422, description = "Wrong passphrase or damaged file (`wrong_passphrase`, `corrupt_file`, `invalid_input`)", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords (`rate_limited`)", body = ErrorBody),
    )
)]
async fn preview(
    State(state): State<AppState>,
    session: AdminSession,
    body: Result<Json<PreviewBody>, ApiError>,
) -> ApiResult<Response> {
    let max = state.config.max_import_bytes;
    let Json(body) = body.map_err(|e| {
        if e.status == StatusCode::PAYLOAD_TOO_LARGE {
            TransferError::TooLarge(max).into()
        } else {
            e
        }
    })?;
    let file = base64::engine::general_purpose::STANDARD
        .decode(body.file.trim())
        .map_err(|_| ApiError::bad_request("`file` must be the export file encoded as base64"))?;
    drop(body.file);
    if file.len() > max {
        return Err(TransferError::TooLarge(max).into());
    }
    if body.passphrase.is_empty() {
        return Err(ApiError::invalid("enter the file's passphrase"));
    }
    state
        .auth
        .reauthenticate(&session.token, &body.password)
        .await?;
    let preview = state
        .transfer
        .preview(
            ids::sha256_hex(session.token.as_bytes()),
            file,
            body.passphrase,
        )
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "import file refused"))?;
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
        (status = 409, description = "The data changed since the preview (`conflict`)", body = ErrorBody),
        (status = 410, description = "Preview expired or already used (`import_expired`)", body = ErrorBody),
    )
)]
async fn commit(
    State(state): State<AppState>,
    session: AdminSession,
    Json(body): Json<CommitBody>,
) -> ApiResult<Json<Outcome>> {
    let outcome = state
        .transfer
        .commit(
            &body.token,
            &ids::sha256_hex(session.token.as_bytes()),
            body.credentials,
            body.profiles,
        )
        .await?;
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
