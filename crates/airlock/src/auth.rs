//! Admin authentication: the one password, sessions, login throttling and
//! cross-site request protection.
//!
//! Sessions are random 256-bit tokens in an `HttpOnly; SameSite=Strict` cookie;
//! the database keeps only their SHA-256, so a leaked database row cannot be
//! replayed. Every state-changing admin request must carry a JSON content type
//! (which an HTML form cannot send cross-site) and, when the browser sends an
//! `Origin`, it must be this server's.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use airlock_store::{vault, SessionRow};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;

use crate::app::AppState;
use crate::error::{ApiError, ApiResult};
use crate::ids;

pub const COOKIE_NAME: &str = "airlock_session";
pub const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_BYTES: usize = 1024;
const META_PASSWORD: &str = "admin_password";
/// A session ends after this long without a request.
pub const SESSION_IDLE: chrono::Duration = chrono::Duration::hours(12);
/// And at the latest this long after login.
pub const SESSION_ABSOLUTE: chrono::Duration = chrono::Duration::days(7);
const LOGIN_MAX_FAILURES: u32 = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Failed-login counters per client address.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginLimiter {
    /// Seconds the client must still wait, if it is locked out.
    pub fn locked_for(&self, ip: IpAddr) -> Option<u64> {
        let map = self.failures.lock().expect("limiter lock");
        let (count, since) = map.get(&ip)?;
        let elapsed = since.elapsed();
        if *count >= LOGIN_MAX_FAILURES && elapsed < LOGIN_WINDOW {
            Some((LOGIN_WINDOW - elapsed).as_secs().max(1))
        } else {
            None
        }
    }

    pub fn record_failure(&self, ip: IpAddr) {
        let mut map = self.failures.lock().expect("limiter lock");
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < LOGIN_WINDOW);
        }
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= LOGIN_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn reset(&self, ip: IpAddr) {
        self.failures.lock().expect("limiter lock").remove(&ip);
    }
}

/// The client address, or the unspecified address when served without
/// connection info (in-process tests).
pub fn client_ip(parts_ext: &axum::http::Extensions) -> IpAddr {
    parts_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

fn check_password_rules(password: &str) -> ApiResult<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::invalid(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::invalid(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

pub async fn setup_required(state: &AppState) -> ApiResult<bool> {
    Ok(state.store.meta_get(META_PASSWORD).await?.is_none())
}

/// First-visit setup; refuses once a password exists. Returns a session token.
pub async fn setup(state: &AppState, password: &str) -> ApiResult<String> {
    check_password_rules(password)?;
    if !setup_required(state).await? {
        return Err(ApiError::conflict(
            "already_setup",
            "the admin password is already set; log in instead",
        ));
    }
    let phc = hash_blocking(password.to_string()).await?;
    if !state
        .store
        .meta_insert_if_absent(META_PASSWORD, phc.as_bytes())
        .await?
    {
        return Err(ApiError::conflict(
            "already_setup",
            "the admin password is already set; log in instead",
        ));
    }
    new_session(state).await
}

/// Checks the password and returns a new session token.
pub async fn login(state: &AppState, ip: IpAddr, password: &str) -> ApiResult<String> {
    if let Some(wait) = state.login_limiter.locked_for(ip) {
        return Err(ApiError::too_many(
            format!("too many failed logins; try again in {wait} s"),
            wait,
        ));
    }
    let Some(phc) = state.store.meta_get(META_PASSWORD).await? else {
        return Err(ApiError::conflict(
            "setup_required",
            "no admin password is set yet; complete setup first",
        ));
    };
    let phc = String::from_utf8(phc).map_err(|_| ApiError::internal())?;
    if verify_blocking(password.to_string(), phc).await? {
        state.login_limiter.reset(ip);
        new_session(state).await
    } else {
        state.login_limiter.record_failure(ip);
        Err(ApiError::unauthorized("wrong_password", "wrong password"))
    }
}

/// Verifies the current password (for sensitive actions) and sets a new one.
pub async fn change_password(
    state: &AppState,
    ip: IpAddr,
    session_token: &str,
    current: &str,
    new: &str,
) -> ApiResult<()> {
    if let Some(wait) = state.login_limiter.locked_for(ip) {
        return Err(ApiError::too_many(
            format!("too many wrong passwords; try again in {wait} s"),
            wait,
        ));
    }
    check_password_rules(new)?;
    let phc = state
        .store
        .meta_get(META_PASSWORD)
        .await?
        .ok_or_else(|| ApiError::conflict("setup_required", "no admin password is set"))?;
    let phc = String::from_utf8(phc).map_err(|_| ApiError::internal())?;
    if !verify_blocking(current.to_string(), phc).await? {
        state.login_limiter.record_failure(ip);
        return Err(ApiError::unauthorized(
            "wrong_password",
            "current password is wrong",
        ));
    }
    state.login_limiter.reset(ip);
    let new_phc = hash_blocking(new.to_string()).await?;
    state
        .store
        .meta_set(META_PASSWORD, new_phc.as_bytes())
        .await?;
    // Every other session ends: a password change is how an operator evicts
    // someone who had the old one.
    state
        .store
        .session_delete_others(&ids::sha256_hex(session_token.as_bytes()))
        .await?;
    Ok(())
}

/// Checks a re-entered admin password before a sensitive action (export,
/// import), throttled per client address like logins.
pub async fn reauthenticate(state: &AppState, ip: IpAddr, password: &str) -> ApiResult<()> {
    if let Some(wait) = state.login_limiter.locked_for(ip) {
        return Err(ApiError::too_many(
            format!("too many wrong passwords; try again in {wait} s"),
            wait,
        ));
    }
    let phc = state
        .store
        .meta_get(META_PASSWORD)
        .await?
        .ok_or_else(|| ApiError::conflict("setup_required", "no admin password is set"))?;
    let phc = String::from_utf8(phc).map_err(|_| ApiError::internal())?;
    if !verify_blocking(password.to_string(), phc).await? {
        state.login_limiter.record_failure(ip);
        return Err(ApiError::unauthorized(
            "wrong_password",
            "the admin password is wrong",
        ));
    }
    state.login_limiter.reset(ip);
    Ok(())
}

async fn hash_blocking(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || vault::hash_password(&password))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(ApiError::from)
}

async fn verify_blocking(password: String, phc: String) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || vault::verify_password(&password, &phc))
        .await
        .map_err(|_| ApiError::internal())
}

async fn new_session(state: &AppState) -> ApiResult<String> {
    let token = ids::session_token();
    let now = Utc::now();
    state
        .store
        .session_insert(&SessionRow {
            token_hash: ids::sha256_hex(token.as_bytes()),
            created_at: now,
            last_seen_at: now,
            expires_at: now + SESSION_ABSOLUTE,
        })
        .await?;
    let _ = state.store.session_delete_expired(now).await;
    Ok(token)
}

pub async fn end_session(state: &AppState, token: &str) -> ApiResult<()> {
    state
        .store
        .session_delete(&ids::sha256_hex(token.as_bytes()))
        .await?;
    Ok(())
}

/// A session as the operator sees it: a short fingerprint of its hash, never the token.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    pub current: bool,
    pub created_at: chrono::DateTime<Utc>,
    pub last_seen_at: chrono::DateTime<Utc>,
    pub expires_at: chrono::DateTime<Utc>,
}

/// Live admin sessions, the caller's own marked `current`.
pub async fn list_sessions(state: &AppState, current_token: &str) -> ApiResult<Vec<SessionView>> {
    let mine = ids::sha256_hex(current_token.as_bytes());
    let now = Utc::now();
    Ok(state
        .store
        .sessions_list(now)
        .await?
        .into_iter()
        .filter(|s| s.last_seen_at + SESSION_IDLE > now)
        .map(|s| SessionView {
            id: s.token_hash[..12].to_string(),
            current: s.token_hash == mine,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
        })
        .collect())
}

/// Ends every session but the caller's; returns how many ended.
pub async fn end_other_sessions(state: &AppState, current_token: &str) -> ApiResult<u64> {
    Ok(state
        .store
        .session_delete_others(&ids::sha256_hex(current_token.as_bytes()))
        .await?)
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
    let Some(token) = cookie_token(headers) else {
        return Ok(false);
    };
    let hash = ids::sha256_hex(token.as_bytes());
    let Some(s) = state.store.session_get(&hash).await? else {
        return Ok(false);
    };
    let now = Utc::now();
    if s.expires_at <= now || s.last_seen_at + SESSION_IDLE <= now {
        state.store.session_delete(&hash).await?;
        return Ok(false);
    }
    // Avoid a write per request: refresh the idle timer at most once a minute.
    if now - s.last_seen_at > chrono::Duration::minutes(1) {
        state.store.session_touch(&hash, now).await?;
    }
    Ok(true)
}

/// Extractor: the request has a valid admin session.
pub struct AdminSession {
    pub token: String,
}

impl FromRequestParts<AppState> for AdminSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<AdminSession> {
        if session_valid(state, &parts.headers).await? {
            let token = cookie_token(&parts.headers).unwrap_or_default();
            Ok(AdminSession { token })
        } else {
            Err(ApiError::unauthorized(
                "not_authenticated",
                "admin session required: log in at /api/admin/login",
            ))
        }
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
