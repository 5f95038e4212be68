//! The harness of the suites that run scripts in the real sandbox (execute, egress,
//! sealed, packages, leaks): an app with the real sandbox and an admin session, and
//! the admin's and the agent's calls those suites make (a locked profile, its
//! network access, submit, poll, run to the end).

use std::time::{Duration, Instant};

use airlock::app::App;
use airlock::config::Config;
use axum::http::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

use super::{open_sandboxed, req, sandboxed_config, send_reply, Reply};

/// An app with the real sandbox and the admin password set.
pub struct Sandboxed {
    /// Keeps the temporary directory alive.
    pub dir: TempDir,
    pub app: App,
    /// The admin session cookie (`name=value`).
    pub cookie: String,
}

impl Sandboxed {
    /// The default sandboxed configuration in a fresh temporary data directory,
    /// adjusted by `tweak`; `None` when this kernel cannot run the sandbox (after a
    /// loud `SKIPPED` line, or a failure when CI requires the sandbox).
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Option<Sandboxed> {
        let dir = tempfile::tempdir().expect("create temp dir");
        let mut config = sandboxed_config(dir.path());
        tweak(&mut config);
        Sandboxed::start_in(dir, config).await
    }

    /// Opens `config` (whose directories live in `dir`).
    pub async fn start_in(dir: TempDir, config: Config) -> Option<Sandboxed> {
        let (app, cookie) = open_sandboxed(config).await?;
        Some(Sandboxed { dir, app, cookie })
    }

    /// Opens `config` again (its admin password is set) and logs in.
    pub async fn reopen(dir: TempDir, config: Config) -> Sandboxed {
        let app = super::open_app(config).await;
        let (s, headers, v) = send_reply(
            &app,
            req(
                "POST",
                "/api/admin/login",
                None,
                None,
                Some(json!({"password": super::ADMIN_PASSWORD})),
            ),
        )
        .await;
        assert!(s.is_success(), "{s} {v}");
        let cookie = super::set_cookie_header(&headers)
            .and_then(|c| c.split(';').next().map(str::to_string))
            .expect("a session cookie");
        Sandboxed { dir, app, cookie }
    }

    /// An admin API call with the session (a POST without a body sends `{}`).
    pub async fn admin(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (s, _, v) = self.admin_reply(method, uri, body).await;
        (s, v)
    }

    /// [`Sandboxed::admin`] with the response headers.
    pub async fn admin_reply(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        let body = match method {
            "POST" => body.or(Some(json!({}))),
            _ => body,
        };
        send_reply(&self.app, req(method, uri, Some(&self.cookie), None, body)).await
    }

    /// An agent API call with a profile's key id.
    pub async fn agent(
        &self,
        key: &str,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let key_id = key.split_once(':').map_or(key, |(id, _)| id);
        let (s, _, v) = send_reply(&self.app, req(method, uri, None, Some(key_id), body)).await;
        (s, v)
    }

    /// Creates each credential with its value (an existing name is reused), a
    /// profile holding them, and locks it; returns (profile id, key).
    pub async fn locked_profile(
        &self,
        description: &str,
        credentials: &[(&str, &str)],
    ) -> (String, String) {
        for (name, value) in credentials {
            let (s, v) = self
                .admin(
                    "POST",
                    "/api/admin/credentials",
                    Some(json!({"name": name, "description": "test", "value": value})),
                )
                .await;
            assert!(
                s == StatusCode::CREATED || s == StatusCode::CONFLICT,
                "{s} {v}"
            );
        }
        let names: Vec<&str> = credentials.iter().map(|(n, _)| *n).collect();
        let (s, p) = self
            .admin(
                "POST",
                "/api/admin/profiles",
                Some(json!({"description": description, "credentials": names})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        let id = p["id"].as_str().expect("profile id").to_string();
        let (s, locked) = self
            .admin("POST", &format!("/api/admin/profiles/{id}/lock"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{locked}");
        (id, locked["key"].as_str().expect("key").to_string())
    }

    /// Sets a (locked) profile's `allowed_hosts`.
    pub async fn set_hosts(&self, id: &str, allowed_hosts: Value) {
        let (s, v) = self
            .admin(
                "PUT",
                &format!("/api/admin/profiles/{id}"),
                Some(json!({ "allowed_hosts": allowed_hosts })),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["allowed_hosts"], allowed_hosts);
    }

    /// `POST /execute` of `script` signed with `key` (`ark_ID:SECRET`).
    pub async fn submit(&self, key: &str, script: &str, timeout: Option<u64>) -> Reply {
        let (key_id, secret) = key.split_once(':').expect("ark_ID:SECRET");
        let mut body = airlock::ids::signed_body(secret.as_bytes(), script);
        if let Some(t) = timeout {
            body["timeout"] = json!(t);
        }
        send_reply(
            &self.app,
            req("POST", "/execute", None, Some(key_id), Some(body)),
        )
        .await
    }

    /// One long-poll of `GET /executions/{id}?wait=…`.
    pub async fn poll(&self, key: &str, id: &str, wait: u64) -> (StatusCode, Value) {
        self.agent(key, "GET", &format!("/executions/{id}?wait={wait}"), None)
            .await
    }

    /// Submits and long-polls until the execution is final; returns the agent's view
    /// (its `execution_id` names it).
    pub async fn run_with(&self, key: &str, script: &str, timeout: Option<u64>) -> Value {
        let (s, _, v) = self.submit(key, script, timeout).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let id = v["execution_id"]
            .as_str()
            .expect("execution id")
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let (s, v) = self.poll(key, &id, 30).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            if matches!(
                v["status"].as_str(),
                Some("completed" | "error" | "timeout")
            ) {
                return v;
            }
            assert!(Instant::now() < deadline, "execution never finished: {v}");
        }
    }

    /// [`Sandboxed::run_with`] with the default timeout.
    pub async fn run(&self, key: &str, script: &str) -> Value {
        self.run_with(key, script, None).await
    }
}
