//! HTTP routing: thin handlers that parse, authorize and call a service.
//!
//! Agent routes live at the root (`/credentials`, `/profiles`, later
//! `/execute`); admin routes under `/api/admin` behind a session and the CSRF
//! guard. Every rejection, including axum's own (bad JSON, body too large,
//! unknown route, a query string that does not parse), is turned into the JSON
//! error shape here. Query parameters the OpenAPI document does not declare for
//! a route are refused like unknown body fields (422), by [`query_guard`].

pub mod admin;
pub mod agent;
pub mod approvals;
pub mod audit;
pub mod docs;
pub mod executions;
pub mod inbox;
pub mod notifications;
pub mod packages;
pub mod session;
pub mod tokens;
pub mod transfer;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
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
        if !json_content_type(req.headers()) {
            return Err(unsupported_media_type());
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| json_rejection(e.into()))?;
        // Every request body is a JSON object; serde would otherwise also read a
        // struct from an array of its fields in order (`[null, null]`).
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|b| *b != b'{')
            && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok()
        {
            return Err(ApiError::invalid(
                "invalid request body: expected a JSON object",
            ));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

/// An optional JSON body: absent (no body at all, or only whitespace) is `None`; a
/// body that is there must be JSON as [`Json`] requires.
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes =
            axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), state)
                .await
                .map_err(|e| json_rejection(e.into()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        <Json<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// `application/json` or `application/*+json`, as axum's own extractor accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the body as JSON with Content-Type: application/json",
    )
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
        JsonRejection::MissingJsonContentType(_) => unsupported_media_type(),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::too_large("request body is too large")
        }
        other => ApiError::bad_request(format!("cannot read request body: {}", other.body_text())),
    }
}

/// A query string whose rejections use Airlock's error shape: 422
/// `invalid_input` naming the parameter (axum's own answer is a plain-text 400).
/// Query structs also `deny_unknown_fields`, a backstop behind [`query_guard`].
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::try_from_uri(&parts.uri) {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rej) => Err(query_rejection(rej)),
        }
    }
}

fn query_rejection(rej: QueryRejection) -> ApiError {
    let text = rej.body_text();
    let text = text
        .strip_prefix("Failed to deserialize query string: ")
        .unwrap_or(&text);
    if let Some(rest) = text.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let accepted = rest
            .split_once("expected ")
            .map(|(_, e)| e.trim_start_matches("one of "))
            .unwrap_or("none");
        return ApiError::invalid(format!(
            "unknown query parameter {:?}; this route accepts {accepted}: remove it or fix its spelling",
            shorten(name)
        ));
    }
    ApiError::invalid(format!("invalid query string: {}", without_input(text)))
}

/// A caller-supplied name, cut to a length that is safe to echo in a message.
fn shorten(name: &str) -> String {
    const MAX: usize = 64;
    match name.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &name[..i]),
        None => name.to_string(),
    }
}

/// Query parameter names each operation of the OpenAPI document declares:
/// path template → method → names.
type DeclaredQueries = HashMap<String, HashMap<Method, Vec<String>>>;

fn declared_queries(doc: &serde_json::Value) -> DeclaredQueries {
    let mut out = DeclaredQueries::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else {
                continue;
            };
            let names = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_string))
                .collect();
            out.entry(path.clone()).or_default().insert(method, names);
        }
    }
    out
}

/// Middleware on the JSON routes: a query parameter the route's operation in
/// the OpenAPI document does not declare gets 422 `invalid_input` naming it,
/// instead of being ignored (`?profile_id=x` would otherwise list everything).
/// Runs before authentication; it reveals nothing the public document does not.
async fn query_guard(
    declared: Arc<DeclaredQueries>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(path) = req.extensions().get::<MatchedPath>() else {
        return next.run(req).await;
    };
    let Some(methods) = declared.get(path.as_str()) else {
        return next.run(req).await;
    };
    let method = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    // A method the route does not have: 405 here, before the admin routes' CSRF
    // guard (which would answer 403 to a bodiless PUT), and before a query check.
    let Some(names) = methods.get(&method) else {
        return method_not_allowed_response(methods.keys());
    };
    let query = req.uri().query().unwrap_or_default();
    if query.is_empty() {
        return next.run(req).await;
    }
    let unknown = match axum::extract::Query::<Vec<(String, String)>>::try_from_uri(req.uri()) {
        Ok(axum::extract::Query(pairs)) => pairs
            .into_iter()
            .map(|(name, _)| name)
            .find(|name| !names.contains(name)),
        Err(rej) => return query_rejection(rej).into_response(),
    };
    let Some(name) = unknown else {
        return next.run(req).await;
    };
    let accepted = if names.is_empty() {
        "no query parameters".to_string()
    } else {
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    ApiError::invalid(format!(
        "unknown query parameter {:?}; this route accepts {accepted}: remove it or fix its spelling",
        shorten(&name)
    ))
    .into_response()
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
        "setup_required": state.auth.setup_required().await?,
        "sandbox": state.runner.sandbox_status(),
        "packages": {"state": state.packages.state()},
        "audit": audit_health(&state.audit.verification()),
    })))
}

/// What `/health` says of the audit log: whether its chain checks out (no counts).
fn audit_health(v: &crate::audit::Verification) -> serde_json::Value {
    serde_json::json!({ "state": v.state, "broken_at": v.broken_at, "checked_at": v.checked_at })
}

/// `GET /metrics`: counts and durations for Prometheus (OpenMetrics text). No
/// execution or profile ids, names or hosts: nothing in it says who ran what.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    responses((status = 200, description = "OpenMetrics text: executions by final status, running and LLM-wait time histograms, queued/running/paused executions, workers, egress attempts, redactions", content_type = "application/openmetrics-text", body = String))
)]
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let runner = &state.runner;
    let text = runner.metrics.render(runner.load());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
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
        let allow = resp.headers().get(axum::http::header::ALLOW).cloned();
        let mut out = method_not_allowed_error().into_response();
        if let Some(allow) = allow {
            out.headers_mut().insert(axum::http::header::ALLOW, allow);
        }
        return out;
    }
    resp
}

fn method_not_allowed_error() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
    )
}

/// 405 with an `Allow` header listing the methods the document declares.
fn method_not_allowed_response<'a>(methods: impl Iterator<Item = &'a Method>) -> Response {
    let mut allow: Vec<&str> = methods.map(Method::as_str).collect();
    if allow.contains(&"GET") {
        allow.push("HEAD");
    }
    allow.sort_unstable();
    let mut out = method_not_allowed_error().into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&allow.join(",")) {
        out.headers_mut().insert(axum::http::header::ALLOW, v);
    }
    out
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
        .routes(routes!(metrics))
        .routes(routes!(docs::openapi_json))
        .merge(
            agent::routes()
                .merge(packages::agent_routes())
                .merge(executions::agent_routes(state.config.max_script_bytes))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    crate::audit::agent_layer,
                )),
        )
        .nest("/api/admin", admin::routes(state.clone()))
}

/// Builds the whole router.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let (api, openapi) = api_routes(&state).split_for_parts();
    let mut openapi = docs::finish(openapi);
    // Limits this instance was configured with.
    if let Some(props) = openapi.pointer_mut("/components/schemas/ExecuteBody/properties") {
        props["timeout"]["maximum"] = state.config.max_timeout.into();
        props["llm_timeout"]["maximum"] = state.config.llm_timeout.into();
    }
    let openapi = std::sync::Arc::new(openapi);
    let finish = |r: Router<AppState>| {
        r.fallback(not_found)
            .layer(axum::middleware::from_fn(method_not_allowed))
            .layer(DefaultBodyLimit::max(limit))
            .layer(axum::Extension(openapi.clone()))
            .with_state(state.clone())
    };
    let declared = Arc::new(declared_queries(&openapi));
    let api = api.layer(axum::middleware::from_fn(move |req, next| {
        query_guard(declared.clone(), req, next)
    }));
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
