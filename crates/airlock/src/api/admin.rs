//! Admin API handlers (`/api/admin/...`): session-protected, JSON only.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::Json;
use crate::app::AppState;
use crate::auth::{self, AdminSession};
use crate::catalog::{ProfilePatch, ProfileView, SealingPatch};
use crate::error::{ApiError, ApiResult};

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/setup", post(setup))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/password", post(change_password))
        .route("/sessions", get(list_sessions))
        .route("/sessions/logout-others", post(logout_others))
        .route(
            "/credentials",
            get(list_credentials).post(create_credential),
        )
        .route(
            "/credentials/{name}",
            get(get_credential)
                .put(update_credential)
                .delete(delete_credential),
        )
        .route("/profiles", get(list_profiles).post(create_profile))
        .route(
            "/profiles/{id}",
            get(get_profile).put(update_profile).delete(delete_profile),
        )
        .route(
            "/profiles/{id}/credentials",
            post(add_profile_credentials).delete(remove_profile_credentials),
        )
        .route("/profiles/{id}/lock", post(lock_profile))
        .route("/profiles/{id}/revoke", post(revoke_profile))
        .route("/profiles/{id}/regenerate-key", post(regenerate_key))
        .merge(super::executions::admin_routes())
        .merge(crate::transfer::routes(&state))
        .layer(axum::middleware::from_fn_with_state(
            state,
            auth::csrf_guard,
        ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

async fn status(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let setup_required = auth::setup_required(&state).await?;
    let authenticated = !setup_required && auth::session_valid(&state, &headers).await?;
    Ok(
        Json(json!({ "setup_required": setup_required, "authenticated": authenticated }))
            .into_response(),
    )
}

fn with_cookie(state: &AppState, token: &str, body: serde_json::Value) -> Response {
    (
        [(header::SET_COOKIE, auth::session_cookie(state, token))],
        Json(body),
    )
        .into_response()
}

async fn setup(
    State(state): State<AppState>,
    Json(body): Json<PasswordBody>,
) -> ApiResult<Response> {
    let token = auth::setup(&state, &body.password).await?;
    tracing::info!("admin password set");
    Ok(with_cookie(
        &state,
        &token,
        json!({ "setup_required": false, "authenticated": true }),
    ))
}

async fn login(
    State(state): State<AppState>,
    req_ext: axum::http::Extensions,
    Json(body): Json<PasswordBody>,
) -> ApiResult<Response> {
    let ip = auth::client_ip(&req_ext);
    let token = auth::login(&state, ip, &body.password)
        .await
        .inspect_err(|e| {
            tracing::warn!(client = %ip, code = e.code, "admin login refused");
        })?;
    Ok(with_cookie(
        &state,
        &token,
        json!({ "authenticated": true }),
    ))
}

async fn logout(State(state): State<AppState>, session: AdminSession) -> ApiResult<Response> {
    auth::end_session(&state, &session.token).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, auth::clear_cookie(&state))],
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePasswordBody {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    session: AdminSession,
    req_ext: axum::http::Extensions,
    Json(body): Json<ChangePasswordBody>,
) -> ApiResult<StatusCode> {
    let ip = auth::client_ip(&req_ext);
    auth::change_password(
        &state,
        ip,
        &session.token,
        &body.current_password,
        &body.new_password,
    )
    .await?;
    tracing::info!("admin password changed; other sessions ended");
    Ok(StatusCode::NO_CONTENT)
}

async fn list_sessions(
    State(state): State<AppState>,
    session: AdminSession,
) -> ApiResult<Response> {
    let sessions = auth::list_sessions(&state, &session.token).await?;
    Ok(Json(json!({ "sessions": sessions })).into_response())
}

async fn logout_others(
    State(state): State<AppState>,
    session: AdminSession,
) -> ApiResult<Response> {
    let ended = auth::end_other_sessions(&state, &session.token).await?;
    tracing::info!(ended, "other admin sessions ended");
    Ok(Json(json!({ "ended": ended })).into_response())
}

// ----- credentials -----

async fn list_credentials(State(state): State<AppState>, _s: AdminSession) -> ApiResult<Response> {
    let creds = state.catalog.list_credentials().await?;
    Ok(Json(json!({ "credentials": creds })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCredential {
    name: String,
    #[serde(default)]
    description: String,
    value: Option<String>,
    /// `plain` or `sealed`; default: `sealed` when `bound_hosts` is given, else `plain`.
    mode: Option<String>,
    bound_hosts: Option<Vec<String>>,
    bound_methods: Option<Vec<String>>,
    bound_header: Option<String>,
    substitute_in_body: Option<bool>,
    revoke_on_violation: Option<bool>,
}

fn sealing_patch(
    mode: Option<String>,
    bound_hosts: Option<Vec<String>>,
    bound_methods: Option<Vec<String>>,
    bound_header: Option<String>,
    substitute_in_body: Option<bool>,
    revoke_on_violation: Option<bool>,
) -> SealingPatch {
    SealingPatch {
        mode,
        bound_hosts,
        bound_methods,
        bound_header,
        substitute_in_body,
        revoke_on_violation,
    }
}

async fn create_credential(
    State(state): State<AppState>,
    _s: AdminSession,
    Json(body): Json<CreateCredential>,
) -> ApiResult<Response> {
    let c = state
        .catalog
        .create_credential(
            &body.name,
            &body.description,
            body.value.as_deref(),
            &sealing_patch(
                body.mode,
                body.bound_hosts,
                body.bound_methods,
                body.bound_header,
                body.substitute_in_body,
                body.revoke_on_violation,
            ),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(c)).into_response())
}

async fn get_credential(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.catalog.get_credential(&name).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateCredential {
    value: Option<String>,
    description: Option<String>,
    mode: Option<String>,
    bound_hosts: Option<Vec<String>>,
    /// An empty list: any method.
    bound_methods: Option<Vec<String>>,
    /// An empty string: any header.
    bound_header: Option<String>,
    substitute_in_body: Option<bool>,
    revoke_on_violation: Option<bool>,
}

async fn update_credential(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(name): Path<String>,
    Json(body): Json<UpdateCredential>,
) -> ApiResult<Response> {
    let c = state
        .catalog
        .update_credential(
            &name,
            body.description.as_deref(),
            body.value.as_deref(),
            &sealing_patch(
                body.mode,
                body.bound_hosts,
                body.bound_methods,
                body.bound_header,
                body.substitute_in_body,
                body.revoke_on_violation,
            ),
        )
        .await?;
    Ok(Json(c).into_response())
}

async fn delete_credential(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state.catalog.delete_credential(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- profiles -----

async fn list_profiles(State(state): State<AppState>, _s: AdminSession) -> ApiResult<Response> {
    let profiles = state.catalog.list_profiles().await?;
    Ok(Json(json!({ "profiles": profiles })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateProfile {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub credentials: Vec<String>,
}

async fn create_profile(
    State(state): State<AppState>,
    _s: AdminSession,
    Json(body): Json<CreateProfile>,
) -> ApiResult<Response> {
    let p = state
        .catalog
        .create_profile(&body.description, &body.credentials)
        .await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

async fn get_profile(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<Json<ProfileView>> {
    Ok(Json(state.catalog.get_profile(&id, true).await?))
}

/// Distinguishes "field absent" from "field set to null".
fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateProfile {
    description: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    expires_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    allowed_hosts: Option<Option<Vec<String>>>,
}

async fn update_profile(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
    Json(body): Json<UpdateProfile>,
) -> ApiResult<Json<ProfileView>> {
    let expires_at = match body.expires_at {
        None => None,
        Some(None) => Some(None),
        Some(Some(s)) => Some(Some(
            chrono::DateTime::parse_from_rfc3339(&s)
                .map_err(|_| {
                    ApiError::invalid(
                        "expires_at must be an RFC 3339 timestamp such as 2026-12-31T23:59:59Z, or null",
                    )
                })?
                .with_timezone(&chrono::Utc),
        )),
    };
    let patch = ProfilePatch {
        description: body.description,
        expires_at,
        allowed_hosts: body.allowed_hosts,
    };
    Ok(Json(state.catalog.update_profile(&id, patch).await?))
}

async fn delete_profile(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.catalog.delete_profile(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialNames {
    pub credentials: Vec<String>,
}

async fn add_profile_credentials(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
    Json(body): Json<CredentialNames>,
) -> ApiResult<Json<ProfileView>> {
    Ok(Json(
        state
            .catalog
            .change_profile_credentials(&id, &body.credentials, true, false)
            .await?,
    ))
}

async fn remove_profile_credentials(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
    Json(body): Json<CredentialNames>,
) -> ApiResult<Json<ProfileView>> {
    Ok(Json(
        state
            .catalog
            .change_profile_credentials(&id, &body.credentials, false, false)
            .await?,
    ))
}

async fn lock_profile(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let p = state.catalog.lock_profile(&id).await?;
    tracing::info!(profile = %p.profile.id, key_id = ?p.profile.key_id, "profile locked");
    Ok(no_store(Json(p).into_response()))
}

async fn revoke_profile(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<Json<ProfileView>> {
    let p = state.catalog.revoke_profile(&id).await?;
    let stopped = state.runner.cancel_profile(&p.id);
    tracing::info!(profile = %p.id, stopped, "profile revoked");
    Ok(Json(p))
}

async fn regenerate_key(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let p = state.catalog.regenerate_key(&id).await?;
    tracing::info!(profile = %p.profile.id, key_id = ?p.profile.key_id, "profile key regenerated");
    Ok(no_store(Json(p).into_response()))
}

/// Responses carrying a key must not be cached anywhere.
fn no_store(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}
