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

use super::admin::CredentialNames;
use super::docs::{self, ErrorBody};
use super::Json;
use crate::app::AppState;
use crate::catalog::{CredentialChange, ProfileLookup, ProfileView};
use crate::error::ApiResult;
use crate::inbox;
use airlock_store::RequestKind;

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
    /// Why the agent needs them, for the operator (shown in the Requests inbox).
    #[serde(default)]
    #[schema(max_length = 1000)]
    message: Option<String>,
}

/// The agent's optional message, checked.
fn message(m: Option<String>) -> ApiResult<String> {
    Ok(crate::validate::note("message", m)?.unwrap_or_default())
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
    let message = message(body.message)?;
    let items: Vec<(String, String)> = body
        .credentials
        .into_iter()
        .map(|s| (s.name, s.description))
        .collect();
    let (created, skipped) = state.catalog.create_slots(&items).await?;
    for name in &created {
        state
            .catalog
            .open_request(RequestKind::Slot, name, &message)
            .await?;
    }
    let mut reopened = Vec::new();
    for name in &skipped {
        let m = (!message.is_empty()).then_some(message.as_str());
        if inbox::reopen_if_rejected(&state, RequestKind::Slot, name, m).await? {
            reopened.push(name.clone());
        }
    }
    let asked: Vec<&String> = created.iter().chain(&reopened).collect();
    if !asked.is_empty() {
        state.notifier.notify(
            crate::notify::Event::AgentRequest,
            format!(
                "an agent asked for the credential{} {}; fill in the value or reject the request",
                if asked.len() == 1 { "" } else { "s" },
                asked
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "/ui/requests".into(),
            json!({ "credentials": asked, "message": message }),
        );
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "created": created, "skipped": skipped, "reopened": reopened })),
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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AgentCreateProfile {
    #[serde(default)]
    #[schema(max_length = 1000)]
    description: String,
    /// Names of existing credentials.
    #[serde(default)]
    #[schema(inline, value_type = Vec<docs::CredentialName>)]
    credentials: Vec<String>,
    /// Why the agent needs it, for the operator (shown in the Requests inbox).
    #[serde(default)]
    #[schema(max_length = 1000)]
    message: Option<String>,
}

/// Creates an unlocked profile over existing slots: a request that waits for the
/// operator (who fills the values and locks it, or rejects it with a reason the
/// profile's `request` then shows).
#[utoipa::path(
    post,
    path = "/profiles",
    tag = "agent",
    request_body = AgentCreateProfile,
    responses(
        (status = 201, description = "Created (unlocked, no key yet)", body = crate::catalog::ProfileView),
        (status = 422, description = "A named credential does not exist (`invalid_input`)", body = ErrorBody),
    )
)]
async fn create_profile(
    State(state): State<AppState>,
    Json(body): Json<AgentCreateProfile>,
) -> ApiResult<Response> {
    let message = message(body.message)?;
    let p = state
        .catalog
        .create_profile(&body.description, &body.credentials)
        .await?;
    state
        .catalog
        .open_request(RequestKind::Profile, &p.id, &message)
        .await?;
    let p = state.catalog.get_profile(&p.id, ProfileLookup::Id).await?;
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
            "message": message,
            "credentials": p.credentials.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        }),
    );
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

/// A profile the agent changed: a rejected request waits for the operator again.
async fn revised(state: &AppState, p: ProfileView) -> ApiResult<Json<ProfileView>> {
    if inbox::reopen_if_rejected(state, RequestKind::Profile, &p.id, None).await? {
        return Ok(Json(
            state.catalog.get_profile(&p.id, ProfileLookup::Id).await?,
        ));
    }
    Ok(Json(p))
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
    let p = state
        .catalog
        .change_profile_credentials(
            &id,
            &body.credentials,
            CredentialChange::Add,
            ProfileLookup::IdOrKeyId,
        )
        .await?;
    revised(&state, p).await
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
    let p = state
        .catalog
        .change_profile_credentials(
            &id,
            &body.credentials,
            CredentialChange::Remove,
            ProfileLookup::IdOrKeyId,
        )
        .await?;
    revised(&state, p).await
}
