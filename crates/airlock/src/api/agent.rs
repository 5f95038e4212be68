//! Agent API handlers: slots and profiles. Agents describe what they need; they
//! never set or read a value, and cannot lock, revoke or change a locked profile.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::admin::{CreateProfile, CredentialNames};
use super::Json;
use crate::app::AppState;
use crate::catalog::ProfileView;
use crate::error::ApiResult;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/credentials", get(list_credentials).post(create_slots))
        .route("/profiles", get(list_profiles).post(create_profile))
        .route("/profiles/{id}", get(get_profile))
        .route(
            "/profiles/{id}/credentials",
            post(add_credentials).delete(remove_credentials),
        )
}

async fn list_credentials(State(state): State<AppState>) -> ApiResult<Response> {
    let creds = state.catalog.list_credential_summaries().await?;
    Ok(Json(json!({ "credentials": creds })).into_response())
}

/// A slot request. `deny_unknown_fields` makes a `value` from an agent a 422.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Slot {
    name: String,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSlots {
    credentials: Vec<Slot>,
}

async fn create_slots(
    State(state): State<AppState>,
    Json(body): Json<CreateSlots>,
) -> ApiResult<Response> {
    let items: Vec<(String, String)> = body
        .credentials
        .into_iter()
        .map(|s| (s.name, s.description))
        .collect();
    let (created, skipped) = state.catalog.create_slots(&items).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "created": created, "skipped": skipped })),
    )
        .into_response())
}

/// The key id the caller proves to hold (its `Authorization: Bearer ark_…`).
fn bearer_key_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Key ids are shown to agents only when the caller already has them: the
/// execution endpoints identify a profile by its key id, so a public list of
/// key ids would hand out half of what reading results requires.
fn hide_key_id(mut p: ProfileView, known: Option<&str>) -> ProfileView {
    if p.key_id.as_deref() != known {
        p.key_id = None;
    }
    p
}

async fn list_profiles(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let known = bearer_key_id(&headers);
    let profiles: Vec<ProfileView> = state
        .catalog
        .list_profiles()
        .await?
        .into_iter()
        .map(|p| hide_key_id(p, known))
        .collect();
    Ok(Json(json!({ "profiles": profiles })).into_response())
}

async fn get_profile(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<ProfileView>> {
    let p = state.catalog.get_profile(&id, true).await?;
    let known = if p.key_id.as_deref() == Some(id.as_str()) {
        Some(id.as_str())
    } else {
        bearer_key_id(&headers)
    };
    Ok(Json(hide_key_id(p, known)))
}

async fn create_profile(
    State(state): State<AppState>,
    Json(body): Json<CreateProfile>,
) -> ApiResult<Response> {
    let p = state
        .catalog
        .create_profile(&body.description, &body.credentials)
        .await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

async fn add_credentials(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<CredentialNames>,
) -> ApiResult<Json<ProfileView>> {
    Ok(Json(
        state
            .catalog
            .change_profile_credentials(&id, &body.credentials, true, true)
            .await?,
    ))
}

async fn remove_credentials(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<CredentialNames>,
) -> ApiResult<Json<ProfileView>> {
    Ok(Json(
        state
            .catalog
            .change_profile_credentials(&id, &body.credentials, false, true)
            .await?,
    ))
}
