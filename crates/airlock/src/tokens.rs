//! Admin API tokens: `Authorization: Bearer atk_<id>.<secret>` on `/api/admin`, for
//! scripts and automation. Each token has a role that limits what it may do, an
//! optional expiry, and can be revoked; its secret is shown once and stored only as
//! a SHA-256. Tokens are made and revoked from a browser session only, and never
//! reach the session-bound routes (password, sessions, export and import): a leaked
//! token cannot mint another or take the instance's secrets away.

use airlock_store::{AdminTokenRow, Store, StoreError};
use axum::http::Method;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::ids;

pub const PREFIX: &str = "atk_";
pub const ROLES: [&str; 4] = ["owner", "operator", "approver", "auditor"];
pub const MAX_TOKENS: usize = 100;

/// A token as listed (never its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<AdminTokenRow> for TokenView {
    fn from(r: AdminTokenRow) -> TokenView {
        TokenView {
            id: r.id,
            name: r.name,
            role: r.role,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        }
    }
}

/// Splits `atk_<id>.<secret>`.
fn parse(raw: &str) -> Option<(&str, &str)> {
    let rest = raw.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('.')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (ok(id, 16) && ok(secret, 40)).then_some((id, secret))
}

/// The bearer value of a request, when it looks like an admin token.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| t.starts_with(PREFIX))
}

/// The token a bearer value names, if it is valid now (not revoked, not expired,
/// the secret matches).
pub async fn authenticate(
    store: &dyn Store,
    raw: &str,
) -> Result<Option<AdminTokenRow>, StoreError> {
    let Some((id, secret)) = parse(raw) else {
        return Ok(None);
    };
    let Some(row) = store.admin_token_get(id).await? else {
        return Ok(None);
    };
    let now = Utc::now();
    let live = row.revoked_at.is_none() && row.expires_at.is_none_or(|e| e > now);
    if !live
        || !ids::ct_eq(
            ids::sha256_hex(secret.as_bytes()).as_bytes(),
            row.secret_hash.as_bytes(),
        )
    {
        return Ok(None);
    }
    store.admin_token_touch(id, now).await?;
    Ok(Some(row))
}

/// Makes a token; returns it and the full bearer value (shown once).
pub async fn create(
    store: &dyn Store,
    name: &str,
    role: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(TokenView, String), TokenError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(TokenError::Invalid(
            "name must be 1 to 100 characters".into(),
        ));
    }
    if !ROLES.contains(&role) {
        return Err(TokenError::Invalid(format!(
            "role must be one of {}",
            ROLES.join(", ")
        )));
    }
    let now = Utc::now();
    if expires_at.is_some_and(|e| e <= now) {
        return Err(TokenError::Invalid(
            "expires_at must be in the future".into(),
        ));
    }
    let live = store
        .admin_tokens_list()
        .await?
        .iter()
        .filter(|t| t.revoked_at.is_none())
        .count();
    if live >= MAX_TOKENS {
        return Err(TokenError::Invalid(format!(
            "at most {MAX_TOKENS} tokens may be active; revoke one first"
        )));
    }
    let (id, secret) = (ids::lower_alnum(16), ids::alnum(40));
    let row = AdminTokenRow {
        id: id.clone(),
        name: name.to_string(),
        role: role.to_string(),
        secret_hash: ids::sha256_hex(secret.as_bytes()),
        created_at: now,
        expires_at,
        revoked_at: None,
        last_used_at: None,
    };
    store.admin_token_insert(&row).await?;
    Ok((row.into(), format!("{PREFIX}{id}.{secret}")))
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    Invalid(String),
    #[error("no token {0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Routes only a browser session reaches (below `/api/admin`).
const SESSION_ONLY: [&str; 6] = [
    "/api/admin/logout",
    "/api/admin/password",
    "/api/admin/sessions",
    "/api/admin/export",
    "/api/admin/import",
    "/api/admin/tokens",
];

/// Whether a token of `role` may call `method` `route` (the matched route, e.g.
/// `/api/admin/approvals/{id}/approve`); `Err` says why not.
pub fn may(role: &str, method: &Method, route: &str) -> Result<(), String> {
    if SESSION_ONLY.iter().any(|p| route.starts_with(p)) {
        return Err(format!(
            "{method} {route} needs a browser session; API tokens cannot use it"
        ));
    }
    let read = matches!(*method, Method::GET | Method::HEAD);
    let allowed = match role {
        "owner" => true,
        "operator" => true,
        "approver" => {
            read || route.starts_with("/api/admin/approvals/")
                || route.starts_with("/api/admin/requests/")
                || route == "/api/admin/audit/verify"
        }
        "auditor" => read || route == "/api/admin/audit/verify",
        _ => false,
    };
    // What only an owner changes: where notifications go.
    let owner_only = !read && route.starts_with("/api/admin/notifications");
    if allowed && !(owner_only && role != "owner") {
        Ok(())
    } else {
        Err(format!(
            "a token with the {role} role may not {method} {route}"
        ))
    }
}
