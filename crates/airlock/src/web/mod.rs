//! The operator's web UI: server-rendered pages on top of the admin services.
//!
//! Pages are askama templates compiled into the binary and rendered from the
//! same services the JSON admin API uses, so the UI shows exactly what the API
//! would. Every action (setup, login, saving a value, locking a profile...) is a
//! small script in `assets/app.js` calling the JSON admin API, which keeps one
//! authorization and CSRF path for both. The UI never receives a credential
//! value: no service it calls returns one.
//!
//! Pages live under [`PREFIX`] (the overview also at `/`) because the agent API
//! already owns `/credentials`, `/profiles` and `/executions` at the root.
//! Every response here carries a strict `Content-Security-Policy` (no inline
//! script or style), `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`;
//! HTML is never cached.

mod assets;
mod chart;
mod pages;
mod view;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::app::AppState;
use crate::error::ApiError;

/// Where the UI's pages live (the overview is also served at `/`).
pub const PREFIX: &str = "/ui";

/// The policy every UI response carries: only this origin's scripts, styles
/// and images; no inline code; never framed.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The UI's routes; merged into the main router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::overview))
        .route("/ui", get(|| async { Redirect::to("/") }))
        .route("/ui/", get(|| async { Redirect::to("/") }))
        .route("/ui/setup", get(pages::setup))
        .route("/ui/login", get(pages::login))
        .route("/ui/credentials", get(pages::credentials))
        .route("/ui/profiles", get(pages::profiles))
        .route("/ui/profiles/{id}", get(pages::profile))
        .route("/ui/executions", get(pages::executions))
        .route("/ui/executions/{id}", get(pages::execution))
        .route("/ui/approvals", get(pages::approvals))
        .route("/ui/approvals/{id}", get(pages::approval))
        .route("/ui/requests", get(pages::requests))
        .route("/ui/audit", get(pages::audit))
        .route("/ui/settings", get(pages::settings))
        .route("/ui/packages", get(pages::packages))
        .route("/ui/assets/{*path}", get(assets::serve))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Why a page was not rendered: the visitor must go elsewhere first, or
/// something failed (shown as an HTML error page, never as internals).
pub(crate) enum PageError {
    Redirect(String),
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError::Api(e)
    }
}

/// Every service error reaches a page the way it reaches the API.
macro_rules! page_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for PageError {
            fn from(e: $t) -> PageError {
                PageError::Api(e.into())
            }
        }
    )*};
}

page_error_from!(
    crate::catalog::CatalogError,
    crate::auth::AuthError,
    crate::packages::PackagesError,
    airlock_store::StoreError
);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Redirect(to) => Redirect::to(&to).into_response(),
            PageError::Api(e) => {
                let page = pages::ErrorPage {
                    nav: "",
                    status: e.status.as_u16(),
                    title: e.status.canonical_reason().unwrap_or("Error").to_string(),
                    detail: e.detail.clone(),
                };
                let mut resp = render(&page);
                *resp.status_mut() = e.status;
                resp
            }
        }
    }
}

pub(crate) type PageResult = Result<Response, PageError>;

/// Renders a template as an HTML response.
pub(crate) fn render<T: askama::Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html(
                    "<!doctype html><title>Error</title><p>Internal error; see the server log.</p>",
                ),
            )
                .into_response()
        }
    }
}

/// Lets the request through only with a live admin session; otherwise sends
/// the visitor to setup (no password yet) or to the login page, remembering
/// where they were going.
pub(crate) async fn require_session(
    state: &AppState,
    headers: &HeaderMap,
    here: &str,
) -> Result<(), PageError> {
    if state.auth.setup_required().await? {
        return Err(PageError::Redirect(format!("{PREFIX}/setup")));
    }
    if crate::api::session::session_valid(state, headers).await? {
        return Ok(());
    }
    let target = if here == "/" {
        format!("{PREFIX}/login")
    } else {
        format!("{PREFIX}/login?next={}", view::url_encode(here))
    };
    Err(PageError::Redirect(target))
}

/// Accepts a post-login destination only if it is a path on this server.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() <= 512
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_be_a_local_path() {
        assert_eq!(safe_next(Some("/ui/profiles/abc")), "/ui/profiles/abc");
        assert_eq!(
            safe_next(Some("/ui/executions?status=error")),
            "/ui/executions?status=error"
        );
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/a b")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
