//! HTTP routing: thin handlers that parse, authorize and call a service.
//!
//! Agent routes live at the root (`/credentials`, `/profiles`, later
//! `/execute`); admin routes under `/api/admin` behind a session and the CSRF
//! guard. Every rejection, including axum's own (bad JSON, body too large,
//! unknown route), is turned into the JSON error shape here.

pub mod admin;
pub mod agent;
pub mod docs;
pub mod executions;
pub mod packages;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::ApiError;

/// A JSON body whose rejections use Airlock's error shape.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> ApiError {
    match rej {
        JsonRejection::JsonDataError(e) => ApiError::invalid(format!(
            "invalid request body: {}",
            without_input(&e.body_text())
        )),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::bad_request(format!("malformed JSON: {}", without_input(&e.body_text())))
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large("request body is too large")
        }
        other => ApiError::bad_request(format!("cannot read request body: {}", other.body_text())),
    }
}

/// Removes the fragment of the caller's own input that serde quotes in
/// "invalid type/value" messages (it could be a value typed in the wrong
/// field), keeping field names and expectations.
fn without_input(msg: &str) -> String {
    let mut out = msg.to_string();
    for marker in ["invalid type: ", "invalid value: "] {
        let Some(start) = out.find(marker) else {
            continue;
        };
        let rest_at = start + marker.len();
        let rest = &out[rest_at..];
        let cut = ["\"", "`"].iter().find_map(|q| {
            let open = rest.find(q)?;
            let close = rest[open + 1..].find(q)? + open + 1;
            (!rest[..open].contains(',')).then_some((open, close))
        });
        if let Some((open, close)) = cut {
            let mut s = out[..rest_at].to_string();
            s.push_str(rest[..open].trim_end());
            s.push_str(&rest[close + 1..]);
            out = s;
        }
    }
    out
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `GET /health`: liveness, version, setup and sandbox state.
#[utoipa::path(
    get,
    path = "/health",
    tag = "meta",
    responses((status = 200, description = "The server answers", body = docs::Health))
)]
async fn health(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "setup_required": crate::auth::setup_required(&state).await?,
        "sandbox": crate::sandbox::status(&state.runner),
        "packages": {"state": state.packages.state()},
    })))
}

/// `GET /skill.md`: the guide for agents, for this instance.
#[utoipa::path(
    get,
    path = "/skill.md",
    tag = "meta",
    responses((status = 200, description = "Markdown: onboarding, endpoints, HMAC, SDK, profiles, limits, error codes", content_type = "text/markdown", body = String))
)]
async fn skill_md(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let base = executions::base_url(&state, &headers);
    let md = crate::skill::render(&state, &base).await?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/markdown; charset=utf-8",
        )],
        md,
    )
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

async fn method_not_allowed(req: Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
        .into_response();
    }
    resp
}

/// Puts a body limit on the routes of one `routes!` registration.
pub(crate) fn with_body_limit(
    (schemas, paths, method_router): UtoipaMethodRouter<AppState>,
    bytes: usize,
) -> UtoipaMethodRouter<AppState> {
    (
        schemas,
        paths,
        method_router.layer(DefaultBodyLimit::max(bytes)),
    )
}

/// Every JSON route, registered with its OpenAPI operation.
pub fn api_routes(state: &AppState) -> OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    OpenApiRouter::with_openapi(docs::ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(skill_md))
        .routes(routes!(docs::openapi_json))
        .merge(agent::routes())
        .merge(packages::agent_routes())
        .merge(executions::agent_routes(state.config.max_script_bytes))
        .nest("/api/admin", admin::routes(state.clone()))
}

/// Builds the whole router.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let (api, openapi) = api_routes(&state).split_for_parts();
    let openapi = std::sync::Arc::new(docs::finish(openapi));
    let finish = |r: Router<AppState>| {
        r.fallback(not_found)
            .layer(axum::middleware::from_fn(method_not_allowed))
            .layer(DefaultBodyLimit::max(limit))
            .layer(axum::Extension(openapi.clone()))
            .with_state(state.clone())
    };
    let base = api.merge(crate::web::routes());
    // MCP tools call the agent API in-process through the same routes.
    let inner = finish(base.clone());
    finish(base.merge(crate::mcp::http_service(&state, inner)))
}

#[cfg(test)]
mod tests {
    use super::without_input;

    #[test]
    fn serde_messages_lose_the_input_fragment() {
        assert_eq!(
            without_input(
                "value: invalid type: string \"sk_live_123\", expected u64 at line 1 column 20"
            ),
            "value: invalid type: string, expected u64 at line 1 column 20"
        );
        assert_eq!(
            without_input("invalid type: integer `123456789`, expected a string"),
            "invalid type: integer, expected a string"
        );
        assert_eq!(
            without_input("unknown field `value`, expected `name` or `description`"),
            "unknown field `value`, expected `name` or `description`"
        );
    }
}
