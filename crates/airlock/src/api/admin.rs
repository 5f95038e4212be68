//! Admin API handlers (`/api/admin/...`): session-protected, JSON only.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::{self, ErrorBody};
use super::Json;
use crate::api::session::{self, AdminSession};
use crate::app::AppState;
use crate::catalog::{CredentialChange, ProfileLookup, ProfilePatch, ProfileView, SealingPatch};
use crate::error::{ApiError, ApiResult};

pub fn routes(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(setup))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(change_password))
        .routes(routes!(list_sessions))
        .routes(routes!(logout_others))
        .routes(routes!(list_credentials, create_credential))
        .routes(routes!(
            get_credential,
            update_credential,
            delete_credential
        ))
        .routes(routes!(list_profiles, create_profile))
        .routes(routes!(get_profile, update_profile, delete_profile))
        .routes(routes!(add_profile_credentials, remove_profile_credentials))
        .routes(routes!(lock_profile))
        .routes(routes!(revoke_profile))
        .routes(routes!(regenerate_key))
        .merge(super::executions::admin_routes())
        .merge(super::approvals::routes())
        .merge(super::notifications::routes())
        .merge(super::inbox::routes())
        .merge(super::audit::routes())
        .merge(super::tokens::routes())
        .merge(super::packages::admin_routes())
        .merge(crate::api::transfer::routes(&state))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            session::csrf_guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::audit::admin_layer,
        ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

/// A new admin password: at least 12 characters, at most 1024 bytes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewPasswordBody {
    #[schema(min_length = 12, max_length = 1024)]
    password: String,
}

/// Whether setup is needed and whether the caller is logged in.
#[utoipa::path(
    get,
    path = "/status",
    tag = "admin",
    responses(
        (status = 200, description = "Setup and session state", body = docs::AdminStatus),
    )
)]
async fn status(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let setup_required = state.auth.setup_required().await?;
    let ends = match (setup_required, session::cookie_token(&headers)) {
        (false, Some(token)) => state.auth.session_ends_at(&token).await?,
        _ => None,
    };
    let mut body = json!({ "setup_required": setup_required, "authenticated": ends.is_some() });
    if let Some(t) = ends {
        body["session_expires_at"] = json!(t);
    }
    Ok(Json(body).into_response())
}

fn with_cookie(state: &AppState, token: &str, body: serde_json::Value) -> Response {
    (
        [(header::SET_COOKIE, session::session_cookie(state, token))],
        Json(body),
    )
        .into_response()
}

/// Sets the first admin password and logs in (sets the session cookie).
#[utoipa::path(
    post,
    path = "/setup",
    tag = "admin",
    request_body = NewPasswordBody,
    responses(
        (status = 200, description = "Password set; logged in", body = docs::AdminStatus),
        (status = 409, description = "Already set up (`already_setup`)", body = ErrorBody),
        (status = 422, description = "Password too short or too long (`invalid_input`)", body = ErrorBody),
    )
)]
async fn setup(
    State(state): State<AppState>,
    Json(body): Json<NewPasswordBody>,
) -> ApiResult<Response> {
    let token = state.auth.setup(&body.password).await?;
    tracing::info!("admin password set");
    Ok(with_cookie(
        &state,
        &token,
        json!({ "setup_required": false, "authenticated": true }),
    ))
}

/// Logs in with the admin password (sets the session cookie).
#[utoipa::path(
    post,
    path = "/login",
    tag = "admin",
    request_body = PasswordBody,
    responses(
        (status = 200, description = "Logged in", body = docs::AdminStatus),
        (status = 401, description = "Wrong password (`wrong_password`)", body = ErrorBody),
        (status = 409, description = "Setup not done yet (`setup_required`)", body = ErrorBody),
        (status = 429, description = "Too many failed logins (`rate_limited`, with Retry-After)", body = ErrorBody),
    )
)]
async fn login(
    State(state): State<AppState>,
    req_ext: axum::http::Extensions,
    Json(body): Json<PasswordBody>,
) -> ApiResult<Response> {
    let ip = session::client_ip(&req_ext);
    let token = state
        .auth
        .login(ip, &body.password)
        .await
        .inspect_err(|e| {
            tracing::warn!(client = %ip, error = %e, "admin login refused");
        })?;
    Ok(with_cookie(
        &state,
        &token,
        json!({ "authenticated": true }),
    ))
}

/// Ends this session.
#[utoipa::path(
    post,
    path = "/logout",
    tag = "admin",
    security(("admin_session" = [])),
    responses(
        (status = 204, description = "Logged out; cookie cleared"),
    )
)]
async fn logout(State(state): State<AppState>, session: AdminSession) -> ApiResult<Response> {
    state.auth.end_session(&session.token).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, session::clear_cookie(&state))],
    )
        .into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangePasswordBody {
    current_password: String,
    new_password: String,
}

/// Changes the admin password; ends the other sessions.
#[utoipa::path(
    post,
    path = "/password",
    tag = "admin",
    security(("admin_session" = [])),
    request_body = ChangePasswordBody,
    responses(
        (status = 204, description = "Changed"),
        (status = 401, description = "Wrong current password (`wrong_password`)", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords (`rate_limited`)", body = ErrorBody),
    )
)]
async fn change_password(
    State(state): State<AppState>,
    session: AdminSession,
    Json(body): Json<ChangePasswordBody>,
) -> ApiResult<StatusCode> {
    state
        .auth
        .change_password(&session.token, &body.current_password, &body.new_password)
        .await?;
    tracing::info!("admin password changed; other sessions ended");
    Ok(StatusCode::NO_CONTENT)
}

/// Live admin sessions (fingerprints, never tokens).
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "admin",
    security(("admin_session" = [])),
    responses(
        (status = 200, description = "Sessions", body = docs::Sessions),
    )
)]
async fn list_sessions(
    State(state): State<AppState>,
    session: AdminSession,
) -> ApiResult<Response> {
    let sessions = state.auth.list_sessions(&session.token).await?;
    Ok(Json(json!({ "sessions": sessions })).into_response())
}

/// Ends every other admin session.
#[utoipa::path(
    post,
    path = "/sessions/logout-others",
    tag = "admin",
    security(("admin_session" = [])),
    responses(
        (status = 200, description = "Sessions ended", body = docs::Ended),
    )
)]
async fn logout_others(
    State(state): State<AppState>,
    session: AdminSession,
) -> ApiResult<Response> {
    let ended = state.auth.end_other_sessions(&session.token).await?;
    tracing::info!(ended, "other admin sessions ended");
    Ok(Json(json!({ "ended": ended })).into_response())
}

// ----- credentials -----

/// Credentials (whether a value is set; never the value).
#[utoipa::path(
    get,
    path = "/credentials",
    tag = "admin",
    security(("admin_session" = [])),
    responses(
        (status = 200, description = "Credentials", body = docs::Credentials),
    )
)]
async fn list_credentials(State(state): State<AppState>, _s: AdminSession) -> ApiResult<Response> {
    let creds = state.catalog.list_credentials().await?;
    Ok(Json(json!({ "credentials": creds })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateCredential {
    /// Letters, digits and underscores, not starting with a digit.
    #[schema(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
    name: String,
    #[serde(default)]
    #[schema(max_length = 1000)]
    description: String,
    /// At most 64 KiB of UTF-8.
    #[schema(min_length = 1, max_length = 65536)]
    value: Option<String>,
    /// `plain` or `sealed`; default: `sealed` when `bound_hosts` is given, else `plain`.
    #[schema(value_type = Option<docs::CredentialMode>)]
    mode: Option<String>,
    /// Host patterns (the `allowed_hosts` syntax) a sealed value may be sent to;
    /// required (non-empty) for `sealed`.
    bound_hosts: Option<Vec<String>>,
    /// HTTP methods the value is substituted for; absent, null or empty: any method.
    bound_methods: Option<Vec<String>>,
    /// The only request header the value is substituted in (e.g. `authorization`);
    /// absent, null or empty: any header. Not `host`, `content-length`, `connection`,
    /// `transfer-encoding` or `proxy-*`.
    #[schema(pattern = r"^[A-Za-z0-9_-]{0,64}$")]
    bound_header: Option<String>,
    /// Also substitute in the URL query and the request body (default false).
    substitute_in_body: Option<bool>,
    /// Revoke the profile at once when a script sends the placeholder to any other
    /// host (default false).
    revoke_on_violation: Option<bool>,
    /// A sealed database login (the value is the password): the server signs in to
    /// `host:port` as `user`, and the script's `settings.get` returns a connection
    /// string whose password is a per-execution placeholder. Seals the credential;
    /// `bound_hosts` must then be absent or empty.
    #[schema(value_type = Option<airlock_store::DatabaseLogin>)]
    database: Option<airlock_store::DatabaseLogin>,
}

#[allow(clippy::too_many_arguments)] // one argument per request field
fn sealing_patch(
    mode: Option<String>,
    bound_hosts: Option<Vec<String>>,
    bound_methods: Option<Vec<String>>,
    bound_header: Option<String>,
    substitute_in_body: Option<bool>,
    revoke_on_violation: Option<bool>,
    database: Option<Option<airlock_store::DatabaseLogin>>,
) -> SealingPatch {
    SealingPatch {
        mode,
        bound_hosts,
        bound_methods,
        bound_header,
        substitute_in_body,
        revoke_on_violation,
        database,
    }
}

/// Creates a credential, optionally with its value and sealing settings (mode, bound
/// hosts, methods, header, options).
#[utoipa::path(
    post,
    path = "/credentials",
    tag = "admin",
    security(("admin_session" = [])),
    request_body = CreateCredential,
    responses(
        (status = 201, description = "Created", body = crate::catalog::CredentialView),
        (status = 409, description = "Name already exists (`conflict`)", body = ErrorBody),
    )
)]
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
                body.database.map(Some),
            ),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(c)).into_response())
}

/// One credential (never its value).
#[utoipa::path(
    get,
    path = "/credentials/{name}",
    tag = "admin",
    security(("admin_session" = [])),
    params(("name" = String, Path, description = "Credential name")),
    responses(
        (status = 200, description = "The credential", body = crate::catalog::CredentialView),
        (status = 404, description = "No such credential (`not_found`)", body = ErrorBody),
    )
)]
async fn get_credential(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.catalog.get_credential(&name).await?).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateCredential {
    /// At most 64 KiB of UTF-8.
    #[schema(min_length = 1, max_length = 65536)]
    value: Option<String>,
    #[schema(max_length = 1000)]
    description: Option<String>,
    /// `plain` or `sealed`. Unchanged when absent: binding hosts to a plain credential
    /// does not seal it. A sealed credential needs at least one bound host.
    #[schema(value_type = Option<docs::CredentialMode>)]
    mode: Option<String>,
    /// Replaces the bound host patterns (the `allowed_hosts` syntax).
    bound_hosts: Option<Vec<String>>,
    /// Replaces the bound methods; an empty list: any method.
    bound_methods: Option<Vec<String>>,
    /// The only request header the value is substituted in; an empty string: any header.
    /// Not `host`, `content-length`, `connection`, `transfer-encoding` or `proxy-*`.
    #[schema(pattern = r"^[A-Za-z0-9_-]{0,64}$")]
    bound_header: Option<String>,
    /// Also substitute in the URL query and the request body.
    substitute_in_body: Option<bool>,
    /// Revoke the profile at once when a script sends the placeholder to any other host.
    revoke_on_violation: Option<bool>,
    /// Sets the sealed database login (which seals the credential); `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<airlock_store::DatabaseLogin>, nullable)]
    database: Option<Option<airlock_store::DatabaseLogin>>,
}

/// Sets the value, description and/or sealing settings; omitted fields are unchanged.
/// Sealing changes apply to executions that start afterwards.
#[utoipa::path(
    put,
    path = "/credentials/{name}",
    tag = "admin",
    security(("admin_session" = [])),
    params(("name" = String, Path, description = "Credential name")),
    request_body = UpdateCredential,
    responses(
        (status = 200, description = "Updated", body = crate::catalog::CredentialView),
        (status = 404, description = "No such credential (`not_found`)", body = ErrorBody),
    )
)]
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
                body.database,
            ),
        )
        .await?;
    Ok(Json(c).into_response())
}

/// Deletes a credential that no profile uses.
#[utoipa::path(
    delete,
    path = "/credentials/{name}",
    tag = "admin",
    security(("admin_session" = [])),
    params(("name" = String, Path, description = "Credential name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such credential (`not_found`)", body = ErrorBody),
        (status = 409, description = "Used by a locked profile; revoke it first (`credential_in_use`)", body = ErrorBody),
    )
)]
async fn delete_credential(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state.catalog.delete_credential(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ----- profiles -----

/// All profiles.
#[utoipa::path(
    get,
    path = "/profiles",
    tag = "admin",
    security(("admin_session" = [])),
    responses(
        (status = 200, description = "Profiles", body = docs::Profiles),
    )
)]
async fn list_profiles(State(state): State<AppState>, _s: AdminSession) -> ApiResult<Response> {
    let profiles = state.catalog.list_profiles().await?;
    Ok(Json(json!({ "profiles": profiles })).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateProfile {
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub description: String,
    /// Names of existing credentials.
    #[serde(default)]
    #[schema(inline, value_type = Vec<docs::CredentialName>)]
    pub credentials: Vec<String>,
}

/// Creates an unlocked profile.
#[utoipa::path(
    post,
    path = "/profiles",
    tag = "admin",
    security(("admin_session" = [])),
    request_body = CreateProfile,
    responses(
        (status = 201, description = "Created", body = crate::catalog::ProfileView),
        (status = 422, description = "A named credential does not exist (`invalid_input`)", body = ErrorBody),
    )
)]
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

/// One profile.
#[utoipa::path(
    get,
    path = "/profiles/{id}",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "Profile id or key id")),
    responses(
        (status = 200, description = "The profile", body = crate::catalog::ProfileView),
        (status = 404, description = "No such profile (`not_found`)", body = ErrorBody),
    )
)]
async fn get_profile(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<Json<ProfileView>> {
    Ok(Json(
        state
            .catalog
            .get_profile(&id, ProfileLookup::IdOrKeyId)
            .await?,
    ))
}

/// Distinguishes "field absent" from "field set to null".
fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateProfile {
    #[schema(max_length = 1000)]
    description: Option<String>,
    /// RFC 3339 timestamp, or null for no expiry; absent leaves it unchanged.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, nullable)]
    expires_at: Option<Option<String>>,
    /// Hosts scripts may reach (`api.example.com`, `*.example.com`, `host:port`), or
    /// null for the default policy; absent leaves it unchanged.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    allowed_hosts: Option<Option<Vec<String>>>,
    /// Input recording: `off` or `hashes` (each execution keeps its inputs and the
    /// status and body hash of each HTTP answer; HTTPS is intercepted to see them).
    record: Option<airlock_store::RecordMode>,
    /// Whether `POST /execute` must sign a timestamp and nonce with the script
    /// (replayed requests refused); off accepts the script-only signature too.
    replay_protection: Option<bool>,
    /// Script approval: `off`, `first_run` (a script not approved before waits for
    /// an approver once) or `every_run` (every execution waits).
    approval: Option<airlock_store::ApprovalMode>,
}

/// Changes description, expiry, allowed hosts, input recording, replay protection
/// and script approval.
#[utoipa::path(
    put,
    path = "/profiles/{id}",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "Profile id or key id")),
    request_body = UpdateProfile,
    responses(
        (status = 200, description = "Updated", body = crate::catalog::ProfileView),
        (status = 404, description = "No such profile (`not_found`)", body = ErrorBody),
        (status = 409, description = "Profile is revoked (`profile_revoked`)", body = ErrorBody),
    )
)]
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
        record: body.record,
        replay_protection: body.replay_protection,
        approval: body.approval,
    };
    Ok(Json(state.catalog.update_profile(&id, patch).await?))
}

/// Deletes a profile.
#[utoipa::path(
    delete,
    path = "/profiles/{id}",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "Profile id or key id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such profile (`not_found`)", body = ErrorBody),
        (status = 409, description = "Locked: revoke it first (`profile_locked`)", body = ErrorBody),
    )
)]
async fn delete_profile(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.catalog.delete_profile(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CredentialNames {
    /// Names of existing credentials.
    #[schema(value_type = Vec<docs::CredentialName>)]
    pub credentials: Vec<String>,
}

/// Adds credentials to an unlocked profile.
#[utoipa::path(
    post,
    path = "/profiles/{id}/credentials",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "Profile id or key id")),
    request_body = CredentialNames,
    responses(
        (status = 200, description = "Updated", body = crate::catalog::ProfileView),
        (status = 404, description = "No such profile or credential (`not_found`)", body = ErrorBody),
        (status = 409, description = "Profile is locked or revoked (`profile_locked`, `profile_revoked`)", body = ErrorBody),
    )
)]
async fn add_profile_credentials(
    State(state): State<AppState>,
    _s: AdminSession,
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
                ProfileLookup::Id,
            )
            .await?,
    ))
}

/// Removes credentials from an unlocked profile.
#[utoipa::path(
    delete,
    path = "/profiles/{id}/credentials",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "Profile id or key id")),
    request_body = CredentialNames,
    responses(
        (status = 200, description = "Updated", body = crate::catalog::ProfileView),
        (status = 404, description = "No such profile or credential (`not_found`)", body = ErrorBody),
        (status = 409, description = "Profile is locked or revoked (`profile_locked`, `profile_revoked`)", body = ErrorBody),
    )
)]
async fn remove_profile_credentials(
    State(state): State<AppState>,
    _s: AdminSession,
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
                ProfileLookup::Id,
            )
            .await?,
    ))
}

/// Locks a profile whose credentials all have values and issues its key (shown once).
#[utoipa::path(
    post,
    path = "/profiles/{id}/lock",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "Profile id")),
    responses(
        (status = 200, description = "Locked; `key` is shown only now", body = crate::catalog::ProfileWithKey),
        (status = 404, description = "No such profile (`not_found`)", body = ErrorBody),
        (status = 409, description = "Already locked, revoked, or a credential has no value (`profile_locked`, `profile_revoked`, `values_missing`)", body = ErrorBody),
    )
)]
async fn lock_profile(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let p = state.catalog.lock_profile(&id).await?;
    tracing::info!(profile = %p.profile.id, key_id = ?p.profile.key_id, "profile locked");
    Ok(no_store(Json(p).into_response()))
}

/// Revokes a profile; its running executions stop.
#[utoipa::path(
    post,
    path = "/profiles/{id}/revoke",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "Profile id or key id")),
    responses(
        (status = 200, description = "Revoked", body = crate::catalog::ProfileView),
        (status = 404, description = "No such profile (`not_found`)", body = ErrorBody),
        (status = 409, description = "Already revoked (`profile_revoked`)", body = ErrorBody),
    )
)]
async fn revoke_profile(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(id): Path<String>,
) -> ApiResult<Json<ProfileView>> {
    let (p, _stopped) = state.runner.revoke_profile(&id).await?;
    state
        .approvals
        .end_for_profile(&p.id, "was revoked")
        .await?;
    Ok(Json(p))
}

/// Issues a new key for a locked profile (the old one stops working).
#[utoipa::path(
    post,
    path = "/profiles/{id}/regenerate-key",
    tag = "admin",
    security(("admin_session" = [])),
    params(("id" = String, Path, description = "Profile id or key id")),
    responses(
        (status = 200, description = "New key, shown only now", body = crate::catalog::ProfileWithKey),
        (status = 404, description = "No such profile (`not_found`)", body = ErrorBody),
        (status = 409, description = "Not locked, or revoked (`profile_unlocked`, `profile_revoked`)", body = ErrorBody),
    )
)]
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
