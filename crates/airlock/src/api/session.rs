//! The admin session over HTTP: the cookie, the extractor that requires a live
//! session, and cross-site request protection.
//!
//! The cookie is `HttpOnly; SameSite=Strict` (and `Secure` behind an https public
//! URL). Every state-changing admin request must carry a JSON content type (which an
//! HTML form cannot send cross-site) and, when the browser sends an `Origin`, it must
//! be this server's.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::AppState;
use crate::auth::SESSION_ABSOLUTE;
use crate::error::{ApiError, ApiResult};

pub const COOKIE_NAME: &str = "airlock_session";

/// The client address, or the unspecified address when served without
/// connection info (in-process tests).
pub fn client_ip(parts_ext: &axum::http::Extensions) -> IpAddr {
    parts_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// The `Set-Cookie` value for a session token.
pub fn session_cookie(state: &AppState, token: &str) -> String {
    format!(
        "{COOKIE_NAME}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        SESSION_ABSOLUTE.num_seconds(),
        if state.secure_cookies() {
            "; Secure"
        } else {
            ""
        }
    )
}

/// The `Set-Cookie` value that clears the session cookie.
pub fn clear_cookie(state: &AppState) -> String {
    format!(
        "{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}",
        if state.secure_cookies() {
            "; Secure"
        } else {
            ""
        }
    )
}

/// The session token from the request's cookies, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.to_string())
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether the request carries a live session (and refreshes its idle timer).
pub async fn session_valid(state: &AppState, headers: &HeaderMap) -> ApiResult<bool> {
    match cookie_token(headers) {
        Some(token) => Ok(state.auth.session_valid(&token).await?),
        None => Ok(false),
    }
}

/// Extractor: the request has a valid admin session, or an admin API token whose
/// role allows this route (see [`crate::tokens::may`]).
pub struct AdminSession {
    /// The session token (empty for an API token: such a caller never reaches
    /// the session-bound routes).
    pub token: String,
    /// Who, as the audit log names the caller: `admin`, or `token:<id>`.
    pub actor: String,
    /// The caller's role: `owner` for the session, the token's otherwise.
    pub role: String,
}

impl FromRequestParts<AppState> for AdminSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<AdminSession> {
        if session_valid(state, &parts.headers).await? {
            let token = cookie_token(&parts.headers).unwrap_or_default();
            return Ok(AdminSession {
                token,
                actor: "admin".into(),
                role: "owner".into(),
            });
        }
        if let Some(raw) = crate::tokens::bearer(&parts.headers) {
            let Some(t) = crate::tokens::authenticate(&*state.store, raw).await? else {
                return Err(ApiError::unauthorized(
                    "invalid_token",
                    "the admin API token is unknown, revoked or expired",
                ));
            };
            let route = parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .map(|m| m.as_str().to_string())
                .unwrap_or_default();
            crate::tokens::may(&t.role, &parts.method, &route)
                .map_err(|why| ApiError::forbidden("role_forbidden", why))?;
            return Ok(AdminSession {
                token: String::new(),
                actor: format!("token:{}", t.id),
                role: t.role,
            });
        }
        Err(ApiError::unauthorized(
            "not_authenticated",
            "admin session required: log in at /api/admin/login, or send an admin API token as Authorization: Bearer atk_…",
        ))
    }
}

/// Middleware on the admin API: refuses cross-site state changes.
pub async fn csrf_guard(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !origin_allowed(&state, req.headers(), origin) {
                return Err(ApiError::forbidden(
                    "csrf_rejected",
                    "cross-origin request refused: Origin does not match this server",
                ));
            }
        }
        if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
            let json = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
            if !json {
                return Err(ApiError::forbidden(
                    "csrf_rejected",
                    "state-changing admin requests must send Content-Type: application/json",
                ));
            }
        }
    }
    Ok(next.run(req).await)
}

fn origin_allowed(state: &AppState, headers: &HeaderMap, origin: &str) -> bool {
    let Some((scheme, origin_host)) = split_origin(origin) else {
        return false;
    };
    if let Some(public) = state.config.public_base() {
        return split_origin(public).is_some_and(|(s, h)| {
            s.eq_ignore_ascii_case(scheme) && host_port_eq(s, h, origin_host)
        });
    }
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|host| host_port_eq(scheme, host, origin_host))
}

/// Splits `scheme://host[:port][/path]` into (scheme, host[:port]).
fn split_origin(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return None;
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    (!host.is_empty()).then_some((scheme, host))
}

/// Compares two `host[:port]` strings, treating the scheme's default port as implicit.
fn host_port_eq(scheme: &str, a: &str, b: &str) -> bool {
    let default = if scheme.eq_ignore_ascii_case("https") {
        ":443"
    } else {
        ":80"
    };
    let norm = |h: &str| {
        let h = h.to_ascii_lowercase();
        h.strip_suffix(default).map(str::to_string).unwrap_or(h)
    };
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_parsing() {
        assert_eq!(
            split_origin("https://a.example.com/airlock"),
            Some(("https", "a.example.com"))
        );
        assert_eq!(
            split_origin("http://127.0.0.1:9090"),
            Some(("http", "127.0.0.1:9090"))
        );
        assert_eq!(split_origin("null"), None);
        assert_eq!(split_origin("file:///x"), None);
        assert!(host_port_eq("https", "a.com:443", "A.com"));
        assert!(!host_port_eq("http", "a.com:8080", "a.com"));
    }
}
