//! The web UI through the real router: who gets which page, the security
//! headers on every response, pages filled with data after login, escaping of
//! agent-provided text, and no credential value or key secret in any page.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use airlock::app::App;
use airlock::config::Config;
use airlock_store::ExecutionRow;
use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:7700";
const PASSWORD: &str = "correct horse battery staple";
const SECRET_VALUE: &str = "sk_live_UI_TEST_VALUE_4242424242";
const XSS: &str = "<script>alert('pwned')</script> & \"quotes\"";

/// Every HTML page of the UI, with the placeholders `{profile}` and `{execution}`.
const PAGES: [&str; 8] = [
    "/",
    "/ui/credentials",
    "/ui/profiles",
    "/ui/profiles/{profile}",
    "/ui/executions",
    "/ui/executions/{execution}",
    "/ui/settings",
    "/ui/executions?status=completed&page=1",
];

struct Web {
    _dir: tempfile::TempDir,
    app: App,
    router: Router,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Web {
    async fn start() -> Web {
        let dir = tempfile::tempdir().expect("temp dir");
        let app = App::open(Config::for_data_dir(&dir.path().join("data")))
            .await
            .expect("app opens");
        let router = app.router();
        Web {
            _dir: dir,
            app,
            router,
            cookie: None,
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Page {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, HOST);
        if let Some(c) = &self.cookie {
            req = req.header(header::COOKIE, c);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ORIGIN, format!("http://{HOST}"))
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("response");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    async fn api(&self, method: Method, path: &str, body: Value) -> Value {
        let p = self.send(method, path, Some(body)).await;
        assert!(
            p.status.is_success(),
            "{path} answered {}: {}",
            p.status,
            p.body
        );
        serde_json::from_str(&p.body).unwrap_or(Value::Null)
    }

    /// Sets the password (first visit) and keeps the session cookie.
    async fn setup(&mut self) {
        let p = self
            .send(
                Method::POST,
                "/api/admin/setup",
                Some(json!({ "password": PASSWORD })),
            )
            .await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        let set = p.headers[header::SET_COOKIE].to_str().unwrap();
        self.cookie = Some(set.split(';').next().unwrap().to_string());
    }
}

fn location(p: &Page) -> &str {
    p.headers
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

fn assert_security_headers(path: &str, p: &Page) {
    let h = |name: header::HeaderName| {
        p.headers
            .get(&name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("{path}: no {name} header"))
    };
    let csp = h(header::CONTENT_SECURITY_POLICY);
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{path}: CSP {csp:?} lacks {directive}"
        );
    }
    assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    assert_eq!(h(header::X_FRAME_OPTIONS), "DENY", "{path}");
    assert_eq!(h(header::REFERRER_POLICY), "no-referrer", "{path}");
}

fn assert_html_no_store(path: &str, p: &Page) {
    assert_security_headers(path, p);
    assert_eq!(
        p.headers[header::CACHE_CONTROL].to_str().unwrap(),
        "no-store",
        "{path}"
    );
    assert!(
        p.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{path}"
    );
}

/// No inline script or style anywhere: the CSP would block them anyway.
fn assert_no_inline_code(path: &str, body: &str) {
    for (i, _) in body.match_indices("<script") {
        let tag = &body[i..body[i..].find('>').map_or(body.len(), |e| i + e)];
        assert!(tag.contains(" src="), "{path}: inline script {tag}");
    }
    assert!(!body.contains("<style"), "{path}: inline <style>");
    assert!(
        !body.contains(" style=\""),
        "{path}: inline style attribute"
    );
    assert!(!body.contains(" onclick="), "{path}: inline handler");
}

fn fill(path: &str, profile: &str, execution: &str) -> String {
    path.replace("{profile}", profile)
        .replace("{execution}", execution)
}

#[tokio::test]
async fn first_visit_goes_to_setup_and_later_visits_to_login() {
    let mut web = Web::start().await;
    for path in PAGES {
        let path = fill(path, "prf_x", "exe_x");
        let p = web.get(&path).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(location(&p), "/ui/setup", "{path}");
        assert_security_headers(&path, &p);
    }
    let p = web.get("/ui/login").await;
    assert_eq!(location(&p), "/ui/setup");

    let p = web.get("/ui/setup").await;
    assert_eq!(p.status, StatusCode::OK);
    assert_html_no_store("/ui/setup", &p);
    assert!(p.body.contains("data-form=\"setup\""));
    assert!(p.body.contains("name=\"confirm\""));
    assert!(p.body.contains("At least 12 characters"));
    assert!(!p.body.contains("Log out"), "no navigation before login");

    web.setup().await;
    // Logged in: setup and login pages send the visitor to the overview.
    assert_eq!(location(&web.get("/ui/setup").await), "/");
    assert_eq!(location(&web.get("/ui/login").await), "/");

    // A visitor without a session is sent to the login page, with a way back.
    let cookie = web.cookie.take();
    let p = web.get("/").await;
    assert_eq!(p.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&p), "/ui/login");
    let p = web.get("/ui/profiles").await;
    assert_eq!(location(&p), "/ui/login?next=/ui/profiles");
    let p = web.get("/ui/setup").await;
    assert_eq!(location(&p), "/ui/login");
    let p = web.get("/ui/login?next=/ui/profiles").await;
    assert_eq!(p.status, StatusCode::OK);
    assert_html_no_store("/ui/login", &p);
    assert!(p.body.contains("data-next=\"/ui/profiles\""));
    assert!(!p.body.contains("Log out"));

    // An off-site `next` is replaced by the overview.
    for evil in [
        "//evil.example/x",
        "https://evil.example",
        "/\\evil.example",
    ] {
        let p = web
            .get(&format!("/ui/login?next={}", evil.replace('\\', "%5C")))
            .await;
        assert!(p.body.contains("data-next=\"/\""), "{evil}: {}", p.body);
    }

    // A stale or forged cookie is no session.
    web.cookie = Some(format!("airlock_session={}", "a".repeat(64)));
    assert_eq!(
        location(&web.get("/ui/credentials").await),
        "/ui/login?next=/ui/credentials"
    );
    web.cookie = cookie;
    assert_eq!(web.get("/ui/credentials").await.status, StatusCode::OK);
}

#[tokio::test]
async fn pages_show_data_escape_agent_text_and_never_a_value() {
    let mut web = Web::start().await;
    web.setup().await;

    web.api(
        Method::POST,
        "/api/admin/credentials",
        json!({ "name": "GITHUB_TOKEN", "description": XSS, "value": SECRET_VALUE }),
    )
    .await;
    web.api(
        Method::POST,
        "/api/admin/credentials",
        json!({ "name": "DB_PASSWORD", "description": "staging database" }),
    )
    .await;
    // An agent asks for a profile that uses a slot without a value.
    let p = web
        .api(
            Method::POST,
            "/api/admin/profiles",
            json!({ "description": "deploy bot", "credentials": ["GITHUB_TOKEN", "DB_PASSWORD"] }),
        )
        .await;
    let pending_id = p["id"].as_str().unwrap().to_string();
    let p = web
        .api(
            Method::POST,
            "/api/admin/profiles",
            json!({ "description": XSS, "credentials": ["GITHUB_TOKEN"] }),
        )
        .await;
    let locked_id = p["id"].as_str().unwrap().to_string();
    web.api(
        Method::PUT,
        &format!("/api/admin/profiles/{locked_id}"),
        json!({ "allowed_hosts": ["api.github.com"] }),
    )
    .await;
    let locked = web
        .api(
            Method::POST,
            &format!("/api/admin/profiles/{locked_id}/lock"),
            json!({}),
        )
        .await;
    let key = locked["key"].as_str().unwrap().to_string();
    let key_secret = key.split_once(':').unwrap().1.to_string();

    // An execution whose script and output carry markup.
    let now = chrono::Utc::now();
    let exec_id = "exe_webtest0001".to_string();
    web.app
        .state
        .store
        .execution_insert(&ExecutionRow {
            id: exec_id.clone(),
            profile_id: locked_id.clone(),
            status: airlock_store::ExecutionStatus::Completed,
            script: "print('<b>hi</b>')\nset_result({'ok': True})".into(),
            script_sha256: "ab".repeat(32),
            timeout_secs: 30,
            result: Some(r#"{"ok":true,"html":"<img src=x onerror=alert(1)>"}"#.into()),
            stdout: "<b>hi</b> [REDACTED:GITHUB_TOKEN]\n".into(),
            stderr: String::new(),
            error: None,
            llm_request: None,
            llm_exchanges: Vec::new(),
            redactions: vec![airlock_store::RedactionEvent {
                field: "stdout".into(),
                name: "GITHUB_TOKEN".into(),
                count: 2,
                partial: 1,
            }],
            execution_time_ms: Some(1234),
            llm_wait_ms: 0,
            inputs: None,
            created_at: now,
            started_at: Some(now),
            completed_at: Some(now),
        })
        .await
        .unwrap();

    let mut all = String::new();
    for path in PAGES {
        let path = fill(path, &locked_id, &exec_id);
        let p = web.get(&path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.body);
        assert_html_no_store(&path, &p);
        assert_no_inline_code(&path, &p.body);
        assert!(p.body.contains("Log out"), "{path}: navigation");
        all.push_str(&p.body);
    }
    let pending_page = web.get(&format!("/ui/profiles/{pending_id}")).await;
    assert_eq!(pending_page.status, StatusCode::OK);
    all.push_str(&pending_page.body);

    // No value, no key secret, anywhere.
    assert!(
        !all.contains(SECRET_VALUE),
        "a credential value was rendered"
    );
    assert!(
        !all.contains(&key_secret),
        "a profile key secret was rendered"
    );
    // Agent- and script-provided text is escaped.
    assert!(!all.contains("<script>alert"), "unescaped description");
    // askama writes numeric entities.
    assert!(
        all.contains(
            "&#60;script&#62;alert(&#39;pwned&#39;)&#60;/script&#62; &#38; &#34;quotes&#34;"
        ),
        "the description is shown, escaped"
    );
    assert!(!all.contains("<b>hi</b>"), "unescaped output");
    assert!(!all.contains("<img src=x"), "unescaped result");

    // Overview: counts, pending request with a fill-in link, sandbox banner.
    let p = web.get("/").await;
    assert!(p.body.contains("Waiting for you"));
    assert!(p.body.contains(&pending_id));
    assert!(p.body.contains("/ui/credentials?fill=DB_PASSWORD"));
    assert!(
        p.body.contains("Executions are disabled"),
        "no sandbox in tests"
    );
    assert!(p.body.contains("<svg class=\"chart\""));
    assert!(p.body.contains(&exec_id));

    // Credentials: value state and the profiles using each.
    let p = web.get("/ui/credentials").await;
    assert!(p.body.contains("GITHUB_TOKEN") && p.body.contains("DB_PASSWORD"));
    assert!(p.body.contains("badge badge-ok\">set<"));
    assert!(p.body.contains("badge badge-warning\">missing<"));
    assert!(p
        .body
        .contains(&format!("href=\"/ui/profiles/{locked_id}\"")));
    let p = web.get("/ui/credentials?fill=DB_PASSWORD").await;
    assert!(p.body.contains("data-fill=\"DB_PASSWORD\""));
    let p = web.get("/ui/credentials?fill=%22%3E%3Cx").await;
    assert!(
        !p.body.contains("data-fill"),
        "unknown names are not echoed"
    );

    // Profiles: badges; the locked profile's page offers revoke and regenerate.
    let p = web.get("/ui/profiles").await;
    assert!(p.body.contains("badge badge-locked\">locked<"));
    assert!(p.body.contains("badge badge-unlocked\">unlocked<"));
    let p = web.get(&format!("/ui/profiles/{locked_id}")).await;
    assert!(p.body.contains("data-action=\"profile-revoke\""));
    assert!(p.body.contains("data-action=\"profile-regen\""));
    assert!(!p.body.contains("data-action=\"profile-lock\""));
    assert!(p.body.contains("api.github.com"));
    assert!(p.body.contains(locked["key_id"].as_str().unwrap()));
    assert!(pending_page
        .body
        .contains("data-action=\"fill\" data-name=\"DB_PASSWORD\""));
    assert!(pending_page
        .body
        .contains("data-action=\"profile-lock\" disabled"));

    // Executions: filter and detail.
    let p = web
        .get(&format!(
            "/ui/executions?profile={locked_id}&status=completed"
        ))
        .await;
    assert!(p.body.contains(&exec_id));
    let p = web.get("/ui/executions?status=error").await;
    assert!(!p.body.contains(&exec_id));
    assert!(p.body.contains("No execution matches"));
    let p = web.get(&format!("/ui/executions/{exec_id}")).await;
    assert!(p.body.contains("[REDACTED:GITHUB_TOKEN]"));
    // The redactions table says when part of a value was printed.
    assert!(p.body.contains("1 partial"), "{}", p.body);
    assert!(p.body.contains("1.23 s"));
    assert!(p.body.contains("&quot;ok&quot;: true") || p.body.contains("&#34;ok&#34;: true"));

    // Revoked profiles say so.
    web.api(
        Method::POST,
        &format!("/api/admin/profiles/{locked_id}/revoke"),
        json!({}),
    )
    .await;
    let p = web.get(&format!("/ui/profiles/{locked_id}")).await;
    assert!(p.body.contains("badge badge-revoked badge-lg\">revoked<"));
    assert!(!p.body.contains("data-action=\"profile-revoke\""));
}

#[tokio::test]
async fn errors_are_html_pages_with_the_same_headers() {
    let mut web = Web::start().await;
    web.setup().await;
    for path in ["/ui/profiles/prf_doesnotexist", "/ui/executions/exe_nope"] {
        let p = web.get(path).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}");
        assert_html_no_store(path, &p);
        assert!(p.body.contains("404"), "{path}");
    }
    let p = web.get("/ui/executions?status=bogus").await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(p.body.contains("status must be one of"));
    let p = web.get("/ui/executions?from=yesterday").await;
    assert_eq!(p.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn assets_are_embedded_and_revalidated() {
    let web = Web::start().await;
    for (path, ty) in [
        ("/ui/assets/app.css", "text/css"),
        ("/ui/assets/app.js", "text/javascript"),
        ("/ui/assets/icon.svg", "image/svg+xml"),
    ] {
        let p = web.get(path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}");
        assert!(p.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(ty));
        assert_security_headers(path, &p);
        assert_eq!(p.headers[header::CACHE_CONTROL], "no-cache");
        let etag = p.headers[header::ETAG].to_str().unwrap().to_string();
        let req = Request::get(path)
            .header(header::IF_NONE_MATCH, &etag)
            .body(Body::empty())
            .unwrap();
        let resp = web.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    assert_eq!(
        web.get("/ui/assets/nope.js").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        web.get("/ui/assets/../Cargo.toml").await.status,
        StatusCode::NOT_FOUND
    );
}
