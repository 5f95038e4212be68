//! Package requests: agents ask for Python packages (`/requirements`), the operator
//! lists and removes them (`/api/admin/packages`). The work happens in
//! [`crate::packages`]; these handlers only parse and map.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::docs::ErrorBody;
use super::executions::AgentKey;
use super::Json;
use crate::api::session::AdminSession;
use crate::app::AppState;
use crate::error::ApiResult;
use crate::packages::{InstallView, PackageList, RequirementsRequest};

/// Agent routes. Like the execution routes they need `Authorization: Bearer <key id>`
/// of a usable (locked, unrevoked, unexpired) profile: a package ends up inside every
/// profile's scripts, so an anonymous caller must not be able to add one.
pub fn agent_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, request))
        .routes(routes!(install))
}

/// Admin routes (mounted under `/api/admin`, behind the session and CSRF guard).
pub fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list))
        .routes(routes!(admin_remove))
}

/// The requested packages and the state of the shared environment. For agents,
/// `environment.reason` is a generic sentence (the cause may name host paths).
#[utoipa::path(
    get,
    path = "/requirements",
    tag = "packages",
    operation_id = "list_package_requests",
    security(("agent_key" = [])),
    responses((status = 200, description = "Packages and environment", body = PackageList))
)]
async fn list(State(state): State<AppState>, _key: AgentKey) -> ApiResult<Response> {
    let mut list = state.packages.list().await?;
    if list.environment.reason.is_some() {
        list.environment.reason = Some(crate::packages::AGENT_UNAVAILABLE.into());
    }
    Ok(Json(list).into_response())
}

/// Asks for Python packages (requirement strings: name, extras, version
/// specifiers, marker; no URLs, paths or installer options). Under package review
/// (the default) the install is `awaiting_review` until the operator accepts it
/// (then it runs) or rejects it (`rejected`, the reason in `request.reason`). The
/// environment is rebuilt in a sandbox with every package not `failed`; all or
/// nothing.
#[utoipa::path(
    post,
    path = "/requirements",
    tag = "packages",
    operation_id = "request_packages",
    security(("agent_key" = [])),
    request_body = RequirementsRequest,
    responses(
        (status = 202, description = "The install: `awaiting_review`, `pending` or already `installing`", body = InstallView),
        (status = 503, description = "Installs cannot run on this host (`packages_unavailable`)", body = ErrorBody),
    )
)]
async fn request(
    State(state): State<AppState>,
    _key: AgentKey,
    Json(body): Json<RequirementsRequest>,
) -> ApiResult<Response> {
    let view = state
        .packages
        .request(&body.packages, body.message.as_deref().unwrap_or_default())
        .await?;
    let review = view.status == airlock_store::PackageStatus::AwaitingReview;
    state.notifier.notify(
        crate::notify::Event::AgentRequest,
        format!(
            "an agent asked for packages: {}{}",
            body.packages.join(", "),
            if review {
                "; accept or reject the request"
            } else {
                ""
            }
        ),
        if review {
            "/ui/requests"
        } else {
            "/ui/packages"
        }
        .into(),
        serde_json::json!({
            "packages": body.packages,
            "install_id": view.install_id,
            "message": view.request.as_ref().map(|r| r.message.as_str()),
        }),
    );
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

/// One install: status, error and the sanitized tail of the installer's log.
#[utoipa::path(
    get,
    path = "/requirements/{install_id}",
    tag = "packages",
    operation_id = "get_package_install",
    security(("agent_key" = [])),
    params(("install_id" = String, Path, description = "Install id (`inst_…`)")),
    responses(
        (status = 200, description = "The install", body = InstallView),
        (status = 404, description = "No such install (`not_found`)", body = ErrorBody),
    )
)]
async fn install(
    State(state): State<AppState>,
    _key: AgentKey,
    Path(install_id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.packages.install(&install_id).await?).into_response())
}

/// The requested packages and the environment, with the full reason when installs
/// are unavailable.
#[utoipa::path(
    get,
    path = "/packages",
    tag = "admin",
    operation_id = "admin_list_packages",
    security(("admin_session" = [])),
    responses((status = 200, description = "Packages and environment", body = PackageList))
)]
async fn admin_list(State(state): State<AppState>, _s: AdminSession) -> ApiResult<Response> {
    Ok(Json(state.packages.list().await?).into_response())
}

/// Removes a package (by normalized name) and rebuilds the environment.
#[utoipa::path(
    delete,
    path = "/packages/{name}",
    tag = "admin",
    operation_id = "admin_remove_package",
    security(("admin_session" = [])),
    params(("name" = String, Path, description = "Package name (normalized: `TinyPkg` = `tinypkg`)")),
    responses(
        (status = 202, description = "The rebuild's install", body = InstallView),
        (status = 404, description = "No such package (`not_found`)", body = ErrorBody),
        (status = 503, description = "Installs cannot run on this host (`packages_unavailable`)", body = ErrorBody),
    )
)]
async fn admin_remove(
    State(state): State<AppState>,
    _s: AdminSession,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let view = state.packages.remove(&name).await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}
