//! Shared helpers for Airlock's integration tests.
//!
//! Every request goes through [`Client`], which drives the router with
//! `tower::ServiceExt::oneshot`, carries an optional admin session cookie, a
//! `Host` header and a peer address (as `ConnectInfo`), and records every
//! response (status, headers and body) in a transcript shared by its clones so a
//! test can scan the whole flow for leaked secrets.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use airlock::app::App;
use airlock::config::Config;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt;

/// Reports that the real sandbox cannot run here: a loud `SKIPPED` line, or a failure
/// when the run requires the sandbox (`AIRLOCK_TEST_REQUIRE_SANDBOX=1`, as `.ci/run`
/// sets), so CI can never pass without attacking it.
pub fn sandbox_unavailable(reason: &str) {
    if std::env::var_os("AIRLOCK_TEST_REQUIRE_SANDBOX").is_some_and(|v| v == "1") {
        panic!("the sandbox is unavailable, and AIRLOCK_TEST_REQUIRE_SANDBOX=1: {reason}");
    }
    eprintln!("SKIPPED: the sandbox is unavailable here: {reason}");
}

pub mod pip;
pub mod postgres;
pub mod sandboxed;
pub mod upstream;

/// Sends one request through the app's router; returns the status and the JSON body
/// (`Value::Null` when empty, the text as a JSON string when not JSON).
pub async fn send_json(app: &App, req: Request<Body>) -> (StatusCode, Value) {
    let (status, _, v) = send_reply(app, req).await;
    (status, v)
}

/// [`send_json`] with the response headers.
pub async fn send_reply(app: &App, req: Request<Body>) -> Reply {
    let resp = app.router().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, headers, v)
}

/// The default test configuration with the real sandbox (the `airlock` binary as
/// helper) and two slots.
pub fn sandboxed_config(data_dir: &Path) -> Config {
    let mut c = Config::for_data_dir(data_dir);
    c.sandbox_helper = Some(vec![
        env!("CARGO_BIN_EXE_airlock").into(),
        airlock::sandbox::HELPER_ARG.into(),
    ]);
    c.workers = Some(2);
    // `.ci/run` runs the suites that execute scripts once more in the container tier.
    match std::env::var("AIRLOCK_TEST_SANDBOX_TIER").as_deref() {
        Ok("container") => c.sandbox = airlock::config::SandboxMode::Container,
        Ok("full") | Err(_) => {}
        Ok(other) => panic!("AIRLOCK_TEST_SANDBOX_TIER={other}: use full or container"),
    }
    c
}

/// Opens the app, which must have the real sandbox, and sets the admin password;
/// returns it with the admin session cookie (`name=value`), or `None` after
/// [`sandbox_unavailable`].
pub async fn open_sandboxed(config: Config) -> Option<(App, String)> {
    let app = open_app(config).await;
    if let Some(reason) = app.state.runner.unavailable_reason() {
        sandbox_unavailable(reason);
        return None;
    }
    let resp = app
        .router()
        .oneshot(req(
            "POST",
            "/api/admin/setup",
            None,
            None,
            Some(json!({"password": ADMIN_PASSWORD})),
        ))
        .await
        .expect("router answers");
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp.headers()[header::SET_COOKIE]
        .to_str()
        .expect("ASCII cookie")
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    Some((app, cookie))
}

/// The admin password every helper uses.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";
/// The `Host` header clients send unless told otherwise.
pub const DEFAULT_HOST: &str = "127.0.0.1:7700";
/// Name of the admin session cookie.
pub const SESSION_COOKIE: &str = "airlock_session";

/// (status, headers, JSON body; `Value::Null` for an empty body).
pub type Reply = (StatusCode, HeaderMap, Value);

/// One recorded response.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// `"<METHOD> <path>"`.
    pub label: String,
    pub status: StatusCode,
    /// Every header line followed by the raw body.
    pub text: String,
}

/// A running app in its own temporary data directory.
pub struct TestApp {
    /// Keeps the temporary directory alive.
    pub dir: TempDir,
    /// The data directory (a not-yet-existing subdirectory of `dir`).
    pub data_dir: PathBuf,
    pub app: App,
}

impl TestApp {
    /// Starts an app with the default test configuration.
    pub async fn start() -> TestApp {
        TestApp::start_with(|_| {}).await
    }

    /// Starts an app after letting `tweak` adjust the default test configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("create temp dir");
        let data_dir = dir.path().join("data");
        let mut config = Config::for_data_dir(&data_dir);
        tweak(&mut config);
        let app = open_app(config).await;
        TestApp { dir, data_dir, app }
    }

    pub fn router(&self) -> Router {
        self.app.router()
    }

    /// A client without a session.
    pub fn client(&self) -> Client {
        Client::new(self.router())
    }

    /// Sets up the admin password and returns a logged-in client.
    pub async fn admin(&self) -> Client {
        admin_client(self.router()).await
    }
}

/// `App::open`, panicking with the startup error's message on failure.
pub async fn open_app(config: Config) -> App {
    match App::open(config).await {
        Ok(app) => app,
        Err(e) => panic!("App::open failed: {e}"),
    }
}

/// Where the master key lives for a configuration.
pub fn master_key_path(config: &Config) -> PathBuf {
    config
        .master_key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("master.key"))
}

/// Master key path of the default test configuration for `data_dir`.
pub fn default_master_key_path(data_dir: &Path) -> PathBuf {
    master_key_path(&Config::for_data_dir(data_dir))
}

/// Sets up the admin on a fresh instance and returns a logged-in client.
pub async fn admin_client(router: Router) -> Client {
    let mut client = Client::new(router);
    let (status, headers, body) = client
        .post("/api/admin/setup", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert!(
        status.is_success(),
        "setup failed: {status} {body} {headers:?}"
    );
    let cookie = session_cookie(&headers).expect("setup must set the session cookie");
    client.cookie = Some(cookie);
    client
}

/// The `airlock_session=<token>` pair from a response's Set-Cookie headers, if
/// one sets a non-empty session token.
pub fn session_cookie(headers: &HeaderMap) -> Option<String> {
    set_cookie_header(headers).and_then(|raw| {
        let pair = raw.split(';').next()?.trim().to_string();
        let (_, token) = pair.split_once('=')?;
        (!token.is_empty()).then_some(pair)
    })
}

/// The full Set-Cookie header value for the session cookie, if present.
pub fn set_cookie_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.trim_start().starts_with(&format!("{SESSION_COOKIE}=")))
        .map(str::to_string)
}

/// Attributes of a Set-Cookie value after the name=value pair, lowercased and trimmed.
pub fn cookie_attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect()
}

/// An HTTP client over the router.
#[derive(Clone)]
pub struct Client {
    router: Router,
    /// `name=value` of the session cookie to send, if any.
    pub cookie: Option<String>,
    /// `Host` header to send (none when `None`).
    pub host: Option<String>,
    /// `Origin` header to send (none when `None`).
    pub origin: Option<String>,
    /// Peer address given to the app as `ConnectInfo`.
    pub peer: SocketAddr,
    transcript: Arc<Mutex<Vec<Exchange>>>,
}

impl Client {
    pub fn new(router: Router) -> Client {
        Client {
            router,
            cookie: None,
            host: Some(DEFAULT_HOST.to_string()),
            origin: None,
            peer: "127.0.0.1:40000".parse().unwrap(),
            transcript: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A clone without the session cookie (shares the transcript).
    pub fn anonymous(&self) -> Client {
        Client {
            cookie: None,
            ..self.clone()
        }
    }

    /// A clone that sends `Origin: origin` (shares the transcript).
    pub fn with_origin(&self, origin: &str) -> Client {
        Client {
            origin: Some(origin.to_string()),
            ..self.clone()
        }
    }

    /// A clone that sends `Host: host` (shares the transcript).
    pub fn with_host(&self, host: &str) -> Client {
        Client {
            host: Some(host.to_string()),
            ..self.clone()
        }
    }

    /// A clone that appears to connect from `peer` (shares the transcript).
    pub fn with_peer(&self, peer: &str) -> Client {
        Client {
            peer: peer.parse().expect("peer address"),
            ..self.clone()
        }
    }

    /// Every response recorded so far by this client and its clones.
    pub fn transcript(&self) -> Vec<Exchange> {
        self.transcript.lock().unwrap().clone()
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.json(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.json(Method::POST, path, Some(body)).await
    }

    /// POST with `Content-Type: application/json` and an empty body.
    pub async fn post_empty(&self, path: &str) -> Reply {
        self.json(Method::POST, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.json(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.json(Method::DELETE, path, None).await
    }

    pub async fn delete_json(&self, path: &str, body: Value) -> Reply {
        self.json(Method::DELETE, path, Some(body)).await
    }

    /// A JSON request. POST/PUT/PATCH (and any request with a body) carry
    /// `Content-Type: application/json`, as the admin UI sends them.
    pub async fn json(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let needs_type =
            body.is_some() || matches!(method, Method::POST | Method::PUT | Method::PATCH);
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let content_type = needs_type.then_some("application/json");
        self.raw(method, path, content_type, bytes, &[]).await
    }

    /// A request with an explicit content type, raw body and extra headers.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        extra_headers: &[(&str, &str)],
    ) -> Reply {
        let mut builder = Request::builder().method(method.clone()).uri(path);
        if let Some(host) = &self.host {
            builder = builder.header(header::HOST, host.as_str());
        }
        if let Some(origin) = &self.origin {
            builder = builder.header(header::ORIGIN, origin.as_str());
        }
        if let Some(cookie) = &self.cookie {
            builder = builder.header(header::COOKIE, cookie.as_str());
        }
        if let Some(ct) = content_type {
            builder = builder.header(header::CONTENT_TYPE, ct);
        }
        for (name, value) in extra_headers {
            builder = builder.header(*name, HeaderValue::from_str(value).unwrap());
        }
        let mut request = builder.body(Body::from(body)).expect("build request");
        request.extensions_mut().insert(ConnectInfo(self.peer));

        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("read response body")
            .to_bytes();
        let raw_text = String::from_utf8_lossy(&bytes).into_owned();

        let mut text = String::new();
        for (name, value) in &headers {
            text.push_str(name.as_str());
            text.push_str(": ");
            text.push_str(&String::from_utf8_lossy(value.as_bytes()));
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&raw_text);
        self.transcript.lock().unwrap().push(Exchange {
            label: format!("{method} {path}"),
            status,
            text,
        });

        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!("{method} {path} → {status}: body is not JSON: {raw_text:?}")
            })
        };
        (status, headers, value)
    }
}

/// Asserts `reply` is an error with `status` and a body of exactly
/// `{"detail": <non-empty string>, "code": <non-empty string>}`; returns the detail.
#[track_caller]
pub fn assert_error(reply: &Reply, status: StatusCode) -> String {
    let (got, _, body) = reply;
    assert_eq!(*got, status, "unexpected status; body: {body}");
    let obj = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not a JSON object: {body}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["code", "detail"], "error body keys: {body}");
    let detail = obj["detail"].as_str().expect("detail is a string");
    let code = obj["code"].as_str().expect("code is a string");
    assert!(!detail.is_empty(), "empty detail: {body}");
    assert!(!code.is_empty(), "empty code: {body}");
    detail.to_string()
}

/// Like [`assert_error`], also checking the error code.
#[track_caller]
pub fn assert_error_code(reply: &Reply, status: StatusCode, code: &str) -> String {
    let detail = assert_error(reply, status);
    assert_eq!(reply.2["code"], json!(code), "error body: {}", reply.2);
    detail
}

/// Asserts the status, with the body in the failure message.
#[track_caller]
pub fn assert_status(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.0, status, "unexpected status; body: {}", reply.2);
}

/// Parses an RFC 3339 timestamp, panicking with context when it is not one.
#[track_caller]
pub fn timestamp(v: &Value) -> DateTime<Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {v}"));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("not an RFC 3339 timestamp {s:?}: {e}"))
        .with_timezone(&Utc)
}

/// Canonical form of an RFC 3339 timestamp (UTC, whole seconds).
pub fn canonical_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[track_caller]
fn assert_keys(v: &Value, expected: &[&str]) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {v}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want, "object keys of {v}");
}

/// Validates an admin credential object (exact keys, timestamps) and returns it
/// without `created_at`/`updated_at`, for whole-value comparison.
#[track_caller]
pub fn credential_view(v: &Value) -> Value {
    assert_keys(
        v,
        &[
            "name",
            "description",
            "value_exists",
            "mode",
            "bound_hosts",
            "bound_methods",
            "bound_header",
            "substitute_in_body",
            "revoke_on_violation",
            "database",
            "request",
            "created_at",
            "updated_at",
        ],
    );
    request_state(&v["request"]);
    assert!(
        v["mode"] == "plain" || v["mode"] == "sealed",
        "mode is plain or sealed: {v}"
    );
    assert!(
        v["database"].is_null() || v["mode"] == "sealed",
        "a database login is sealed: {v}"
    );
    assert!(v["bound_hosts"].is_array(), "{v}");
    let created = timestamp(&v["created_at"]);
    let updated = timestamp(&v["updated_at"]);
    assert!(updated >= created, "updated_at before created_at: {v}");
    json!({
        "name": v["name"],
        "description": v["description"],
        "value_exists": v["value_exists"],
    })
}

/// The credential entry of a profile or agent listing: exactly these keys; returned
/// without the sealing ones (`mode`, `bound_hosts`) when the credential is plain.
#[track_caller]
pub fn short_credential(v: &Value) -> Value {
    assert_keys(
        v,
        &[
            "name",
            "description",
            "value_exists",
            "mode",
            "bound_hosts",
            "request",
        ],
    );
    request_state(&v["request"]);
    if v["mode"] == "plain" && v["bound_hosts"] == json!([]) {
        json!({ "name": v["name"], "description": v["description"], "value_exists": v["value_exists"] })
    } else {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("request");
        v
    }
}

/// Checks an agent request's shape (`null`, or status, message, reason and the
/// two timestamps) and returns its status (`None` for `null`).
#[track_caller]
pub fn request_state(v: &Value) -> Option<String> {
    if v.is_null() {
        return None;
    }
    assert_keys(
        v,
        &["status", "message", "reason", "created_at", "decided_at"],
    );
    timestamp(&v["created_at"]);
    let status = v["status"].as_str().expect("request status").to_string();
    assert!(
        ["pending", "accepted", "rejected"].contains(&status.as_str()),
        "request status: {v}"
    );
    assert_eq!(
        v["decided_at"].is_null(),
        status == "pending",
        "decided_at is set exactly when decided: {v}"
    );
    Some(status)
}

/// Validates a Profile object (exact keys, types, timestamps) and returns it
/// without `created_at`, `updated_at` and `last_used_at`, with `expires_at`
/// canonicalised and the credential list sorted by name.
#[track_caller]
pub fn profile_view(v: &Value) -> Value {
    assert_keys(
        v,
        &[
            "id",
            "description",
            "locked",
            "revoked",
            "expired",
            "key_id",
            "credentials",
            "allowed_hosts",
            "record",
            "replay_protection",
            "approval",
            "request",
            "expires_at",
            "created_at",
            "updated_at",
            "last_used_at",
        ],
    );
    request_state(&v["request"]);
    let id = v["id"].as_str().expect("profile id is a string");
    assert!(!id.is_empty(), "empty profile id");
    let created = timestamp(&v["created_at"]);
    let updated = timestamp(&v["updated_at"]);
    assert!(updated >= created, "updated_at before created_at: {v}");
    if !v["last_used_at"].is_null() {
        timestamp(&v["last_used_at"]);
    }
    assert!(
        v["key_id"].is_null() || v["key_id"].is_string(),
        "key_id: {v}"
    );
    let expires_at = if v["expires_at"].is_null() {
        Value::Null
    } else {
        json!(canonical_time(timestamp(&v["expires_at"])))
    };
    let mut creds: Vec<Value> = v["credentials"]
        .as_array()
        .unwrap_or_else(|| panic!("credentials is not an array: {v}"))
        .iter()
        .map(short_credential)
        .collect();
    creds.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    json!({
        "id": v["id"],
        "description": v["description"],
        "locked": v["locked"],
        "revoked": v["revoked"],
        "expired": v["expired"],
        "key_id": v["key_id"],
        "credentials": creds,
        "allowed_hosts": v["allowed_hosts"],
        "record": v["record"],
        "replay_protection": v["replay_protection"],
        "approval": v["approval"],
        "expires_at": expires_at,
    })
}

/// Expected profile view for the common fields. New profiles start with
/// `allowed_hosts: []` (no network) and no expiry.
pub fn expected_profile(
    id: &str,
    description: &str,
    locked: bool,
    revoked: bool,
    key_id: Value,
    credentials: Value,
) -> Value {
    json!({
        "id": id,
        "description": description,
        "locked": locked,
        "revoked": revoked,
        "expired": false,
        "key_id": key_id,
        "credentials": credentials,
        "allowed_hosts": [],
        "record": "off",
        "replay_protection": true,
        "approval": "off",
        "expires_at": null,
    })
}

/// A profile credential entry.
pub fn cred_entry(name: &str, description: &str, value_exists: bool) -> Value {
    json!({ "name": name, "description": description, "value_exists": value_exists })
}

/// Splits a lock/regenerate response into (profile view, key, key_id, secret),
/// checking the key format `ark_<24 lowercase alnum>:<48 alnum>` and that the
/// key id equals the profile's `key_id`.
#[track_caller]
pub fn split_lock_response(v: &Value) -> (Value, String, String, String) {
    let mut profile = v.clone();
    let key = profile
        .as_object_mut()
        .unwrap_or_else(|| panic!("lock response is not an object: {v}"))
        .remove("key")
        .unwrap_or_else(|| panic!("lock response has no key: {v}"));
    let key = key.as_str().expect("key is a string").to_string();
    let (key_id, secret) = key
        .split_once(':')
        .unwrap_or_else(|| panic!("key has no ':': {key}"));
    let suffix = key_id
        .strip_prefix("ark_")
        .unwrap_or_else(|| panic!("key id does not start with ark_: {key_id}"));
    assert_eq!(suffix.len(), 24, "key id suffix length: {key_id}");
    assert!(
        suffix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "key id suffix must be lowercase alphanumeric: {key_id}"
    );
    assert_eq!(secret.len(), 48, "key secret length");
    assert!(
        secret.chars().all(|c| c.is_ascii_alphanumeric()),
        "key secret must be alphanumeric"
    );
    let view = profile_view(&profile);
    assert_eq!(view["key_id"], json!(key_id), "key id vs profile key_id");
    (view, key.clone(), key_id.to_string(), secret.to_string())
}

/// Creates a credential through the admin API (with a value when given).
pub async fn create_credential(admin: &Client, name: &str, description: &str, value: Option<&str>) {
    let mut body = json!({ "name": name, "description": description });
    if let Some(v) = value {
        body["value"] = json!(v);
    }
    let reply = admin.post("/api/admin/credentials", body).await;
    assert_status(&reply, StatusCode::CREATED);
}

/// Creates a profile through the admin API and returns its id.
pub async fn create_profile(admin: &Client, description: &str, credentials: &[&str]) -> String {
    let reply = admin
        .post(
            "/api/admin/profiles",
            json!({ "description": description, "credentials": credentials }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    reply.2["id"]
        .as_str()
        .expect("profile id is a string")
        .to_string()
}

/// Locks a profile and returns (key, key_id, secret).
pub async fn lock_profile(admin: &Client, id: &str) -> (String, String, String) {
    let reply = admin
        .post_empty(&format!("/api/admin/profiles/{id}/lock"))
        .await;
    assert_status(&reply, StatusCode::OK);
    let (_, key, key_id, secret) = split_lock_response(&reply.2);
    (key, key_id, secret)
}

/// A distinctive, random-looking secret with the given prefix.
pub fn distinctive(prefix: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    sha2::Digest::update(&mut hasher, prefix.as_bytes());
    sha2::Digest::update(&mut hasher, nanos.to_le_bytes());
    sha2::Digest::update(&mut hasher, std::process::id().to_le_bytes());
    let digest = sha2::Digest::finalize(hasher);
    format!("{prefix}{}", &hex::encode(digest)[..32])
}

/// A temporary directory the sandbox can see: every sandbox mounts its own empty
/// `/tmp`, and package environments and the egress CA directory refuse to live
/// under it. Uses the build's scratch dir (`CARGO_TARGET_TMPDIR`) unless the
/// checkout itself is under `/tmp` (a CI clone), else `/var/tmp`. Mode 0755, so
/// sandbox accounts can traverse it.
pub fn sandbox_visible_tempdir(prefix: &str) -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let target_tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let resolved = std::fs::canonicalize(&target_tmp).unwrap_or_else(|_| target_tmp.clone());
    let base = if target_tmp.starts_with("/tmp") || resolved.starts_with("/tmp") {
        PathBuf::from("/var/tmp")
    } else {
        target_tmp
    };
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&base)
        .unwrap_or_else(|e| panic!("cannot create a temporary directory in {base:?}: {e}"));
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// `requests` and `httpx`, installed with pip into a directory the sandbox can see
/// (for `python_paths`), or `None` after a loud `SKIPPED:` line when there is no pip or
/// no package index.
pub async fn pip_requests_httpx() -> Option<TempDir> {
    let pkgs = sandbox_visible_tempdir("pkgs");
    let target = pkgs.path().to_path_buf();
    let installed = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&target)
            .args(["requests", "httpx"])
            .output()
    })
    .await
    .unwrap();
    match installed {
        Ok(out) if out.status.success() => Some(pkgs),
        Ok(out) => {
            eprintln!(
                "SKIPPED: cannot install requests/httpx from the package index: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!("SKIPPED: no python3 -m pip to install requests/httpx: {e}");
            None
        }
    }
}

/// A TLS acceptor for a test upstream: a certificate for `name` (an IP or a host
/// name), signed by a fresh CA called `ca_name`; returns it with the CA's PEM.
pub fn test_tls_acceptor(name: &str, ca_name: &str) -> (tokio_rustls::TlsAcceptor, String) {
    use tokio_rustls::rustls;
    let (leaf, leaf_key, ca_pem) = issue_test_cert(name, ca_name);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(server)), ca_pem)
}

/// A certificate for `name` signed by a fresh CA called `ca_name`, as PEM: (leaf
/// certificate, leaf key, CA certificate).
pub fn test_cert(name: &str, ca_name: &str) -> (String, String, String) {
    let (leaf, key, ca_pem) = issue_test_cert(name, ca_name);
    (leaf.pem(), key.serialize_pem(), ca_pem)
}

fn issue_test_cert(name: &str, ca_name: &str) -> (rcgen::Certificate, rcgen::KeyPair, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let mut leaf_params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    (leaf, leaf_key, ca.pem())
}

/// A request for the router as the `oneshot` tests send it: `Host: airlock.test`,
/// optional session cookie, agent key id (`Bearer`) and JSON body.
pub fn req(
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "airlock.test");
    if let Some(c) = cookie {
        b = b.header(header::COOKIE, c);
    }
    if let Some(k) = bearer {
        b = b.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    match body {
        Some(v) => b
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string()))
            .unwrap(),
        None => b.body(Body::empty()).unwrap(),
    }
}

/// Whether the tests run as root (then every sandbox slot has a uid of its own).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
