//! A live Airlock on a real loopback socket with the real sandbox, for tests
//! that drive it from outside the process (CLI, Python, shell examples).
#![allow(dead_code)]

use serde_json::{json, Value};

pub struct Live {
    pub _dir: tempfile::TempDir,
    pub base: String,
    pub http: reqwest::Client,
    /// `airlock_session=…` of the admin.
    pub cookie: String,
}

/// Starts a fresh server (admin password not set yet) on a free loopback port,
/// after letting `tweak` adjust its configuration; returns its data directory's
/// parent (keep it alive) and base URL.
pub async fn serve_fresh(
    tweak: impl FnOnce(&mut airlock::config::Config),
) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = airlock::config::Config::for_data_dir(dir.path());
    cfg.sandbox_helper = Some(vec![
        env!("CARGO_BIN_EXE_airlock").into(),
        airlock::sandbox::HELPER_ARG.into(),
    ]);
    tweak(&mut cfg);
    let app = airlock::app::App::open(cfg).await.expect("airlock starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(airlock::serve(app.router(), listener));
    (dir, base)
}

/// Starts the server and sets the admin password.
pub async fn start() -> Live {
    let (dir, base) = serve_fresh(|_| {}).await;
    let http = reqwest::Client::new();
    let setup = http
        .post(format!("{base}/api/admin/setup"))
        .json(&json!({"password": "live test password"}))
        .send()
        .await
        .unwrap();
    let cookie = setup.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    Live {
        _dir: dir,
        base,
        http,
        cookie,
    }
}

impl Live {
    /// An admin request; returns (status, JSON body or Null).
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Sets a credential's value (creating it if needed).
    pub async fn set_value(&self, name: &str, value: &str) {
        let (s, _) = self
            .admin(
                reqwest::Method::PUT,
                &format!("/api/admin/credentials/{name}"),
                json!({"value": value}),
            )
            .await;
        if s == 404 {
            let (s, v) = self
                .admin(
                    reqwest::Method::POST,
                    "/api/admin/credentials",
                    json!({"name": name, "description": "test", "value": value}),
                )
                .await;
            assert_eq!(s, 201, "{v}");
        } else {
            assert_eq!(s, 200);
        }
    }

    /// Locks profile `id` and returns its key `ark_ID:SECRET`.
    pub async fn lock(&self, id: &str) -> String {
        let (s, v) = self
            .admin(
                reqwest::Method::POST,
                &format!("/api/admin/profiles/{id}/lock"),
                json!({}),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["key"].as_str().unwrap().to_string()
    }

    /// Creates a profile with `credentials` (values already set) and locks it.
    pub async fn locked_profile(&self, credentials: &[&str]) -> (String, String) {
        let (s, p) = self
            .admin(
                reqwest::Method::POST,
                "/api/admin/profiles",
                json!({"description": "live", "credentials": credentials}),
            )
            .await;
        assert_eq!(s, 201, "{p}");
        let id = p["id"].as_str().unwrap().to_string();
        let key = self.lock(&id).await;
        (id, key)
    }
}
