//! Agent API handlers: slots and profiles. Agents describe what they need; they
//! never set or read a value, and cannot lock, revoke or change a locked profile.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::{CreateProfile, CredentialNames};
use super::docs::{self, ErrorBody};
use super::Json;
use crate::app::AppState;
use crate::catalog::{CredentialChange, ProfileLookup, ProfileView};
use crate::error::ApiResult;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_credentials, create_slots))
        .routes(routes!(list_profiles, create_profile))
        .routes(routes!(get_profile))
        .routes(routes!(add_credentials, remove_credentials))
}

/// Credential slots: names, descriptions, whether a value is set. Never values.
#[utoipa::path(
    get,
    path = "/credentials",
    tag = "agent",
    responses((status = 200, description = "All slots", body = docs::CredentialSummaries))
)]
async fn list_credentials(State(state): State<AppState>) -> ApiResult<Response> {
    let creds = state.catalog.list_credential_summaries().await?;
    Ok(Json(json!({ "credentials": creds })).into_response())
}

/// A slot request. `deny_unknown_fields` makes a `value` from an agent a 422.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Slot {
    /// Letters, digits and underscores, not starting with a digit (e.g. `STRIPE_API_KEY`).
    #[schema(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
    name: String,
    #[serde(default)]
    #[schema(max_length = 1000)]
    description: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateSlots {
    credentials: Vec<Slot>,
}

/// Declares credential slots (no values: the operator fills them in the UI).
#[utoipa::path(
    post,
    path = "/credentials",
    tag = "agent",
    request_body = CreateSlots,
    responses((status = 201, description = "Created; existing names are skipped", body = docs::SlotsCreated))
)]
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

/// Profiles with their state and credentials. `key_id` is shown only for the
/// caller's own profile (optional bearer key id).
#[utoipa::path(
    get,
    path = "/profiles",
    tag = "agent",
    security((), ("agent_key" = [])),
    responses((status = 200, description = "All profiles", body = docs::Profiles))
)]
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

/// One profile, by profile id or key id.
#[utoipa::path(
    get,
    path = "/profiles/{id}",
    tag = "agent",
    security((), ("agent_key" = [])),
    params(("id" = String, Path, description = "Profile id (`prof_…`) or key id (`ark_…`)")),
    responses(
        (status = 200, description = "The profile", body = crate::catalog::ProfileView),
        (status = 404, description = "No such profile (`not_found`)", body = ErrorBody),
    )
)]
async fn get_profile(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<ProfileView>> {
    let p = state
        .catalog
        .get_profile(&id, ProfileLookup::IdOrKeyId)
        .await?;
    let known = if p.key_id.as_deref() == Some(id.as_str()) {
        Some(id.as_str())
    } else {
        bearer_key_id(&headers)
    };
    Ok(Json(hide_key_id(p, known)))
}

/// Creates an unlocked profile over existing slots.
#[utoipa::path(
    post,
    path = "/profiles",
    tag = "agent",
    request_body = super::admin::CreateProfile,
    responses(
        (status = 201, description = "Created (unlocked, no key yet)", body = crate::catalog::ProfileView),
        (status = 422, description = "A named credential does not exist (`invalid_input`)", body = ErrorBody),
    )
)]
async fn create_profile(
    State(state): State<AppState>,
    Json(body): Json<CreateProfile>,
) -> ApiResult<Response> {
    let p = state
        .catalog
        .create_profile(&body.description, &body.credentials)
        .await?;
    state.notifier.notify(
        crate::notify::Event::AgentRequest,
        format!(
            "an agent created the profile \"{}\"; fill its values and lock it",
            p.description
        ),
        format!("/ui/profiles/{}", p.id),
        serde_json::json!({
            "profile_id": p.id,
            "profile_description": p.description,
            "credentials": p.credentials.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        }),
    );
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

/// Adds slots to an unlocked profile.
#[utoipa::path(
    post,
    path = "/profiles/{id}/credentials",
    tag = "agent",
    params(("id" = String, Path, description = "Profile id or key id")),
    request_body = super::admin::CredentialNames,
    responses(
        (status = 200, description = "The updated profile", body = crate::catalog::ProfileView),
        (status = 404, description = "No such profile or credential (`not_found`)", body = ErrorBody),
        (status = 409, description = "Profile is locked or revoked (`profile_locked`, `profile_revoked`)", body = ErrorBody),
    )
)]
async fn add_credentials(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<CredentialNames>,
) -> ApiResult<Json<ProfileView>> {
    Ok(Json(
        state
            .catalog
            .change_profile_credentials(
                &id,
                &body.credentials,
                CredentialChange::Add,
                ProfileLookup::IdOrKeyId,
            )
            .await?,
    ))
}

/// Removes slots from an unlocked profile.
#[utoipa::path(
    delete,
    path = "/profiles/{id}/credentials",
    tag = "agent",
    params(("id" = String, Path, description = "Profile id or key id")),
    request_body = super::admin::CredentialNames,
    responses(
        (status = 200, description = "The updated profile", body = crate::catalog::ProfileView),
        (status = 404, description = "No such profile or credential (`not_found`)", body = ErrorBody),
        (status = 409, description = "Profile is locked or revoked (`profile_locked`, `profile_revoked`)", body = ErrorBody),
    )
)]
async fn remove_credentials(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<CredentialNames>,
) -> ApiResult<Json<ProfileView>> {
    Ok(Json(
        state
            .catalog
            .change_profile_credentials(
                &id,
                &body.credentials,
                CredentialChange::Remove,
                ProfileLookup::IdOrKeyId,
            )
            .await?,
    ))
}
