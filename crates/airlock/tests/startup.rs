//! Startup: persistence across restarts, master key handling, file modes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use airlock::app::App;
use airlock::config::Config;
use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

/// Sets values and locks a profile; returns (profile id, key_id).
async fn populate(admin: &Client) -> (String, String) {
    create_credential(admin, "STRIPE_KEY", "Stripe", Some("sk_live_persist_1")).await;
    create_credential(admin, "AWS_KEY", "AWS", None).await;
    assert_status(
        &admin
            .put(
                "/api/admin/credentials/AWS_KEY",
                json!({ "value": "aws-persist-2" }),
            )
            .await,
        StatusCode::OK,
    );
    create_credential(admin, "UNSET", "no value", None).await;
    let id = create_profile(admin, "persisted", &["STRIPE_KEY", "AWS_KEY"]).await;
    let (_, key_id, _) = lock_profile(admin, &id).await;
    (id, key_id)
}

async fn login(router: axum::Router) -> Client {
    let mut client = Client::new(router);
    let reply = client
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_status(&reply, StatusCode::OK);
    client.cookie = Some(session_cookie(&reply.1).expect("login cookie"));
    client
}

async fn open_err(config: Config) -> String {
    match App::open(config).await {
        Ok(_) => panic!("App::open unexpectedly succeeded"),
        Err(e) => e.to_string(),
    }
}

fn write_key(path: &Path, bytes: &[u8; 32]) {
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test]
async fn state_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (id, key_id, old_cookie) = {
        let app = open_app(Config::for_data_dir(&data_dir)).await;
        let admin = admin_client(app.router()).await;
        let (id, key_id) = populate(&admin).await;
        (id, key_id, admin.cookie.clone())
    };

    let app = open_app(Config::for_data_dir(&data_dir)).await;
    let anon = Client::new(app.router());
    let reply = anon.get("/api/admin/status").await;
    assert_eq!(
        reply.2,
        json!({ "setup_required": false, "authenticated": false })
    );
    // Setup cannot be redone after a restart.
    assert_error(
        &anon
            .post(
                "/api/admin/setup",
                json!({ "password": "another password 123" }),
            )
            .await,
        StatusCode::CONFLICT,
    );
    // The password survived.
    let admin = login(app.router()).await;
    assert_ne!(admin.cookie, old_cookie);

    let reply = admin.get("/api/admin/credentials").await;
    assert_status(&reply, StatusCode::OK);
    let creds: Vec<Value> = reply.2["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(credential_view)
        .collect();
    assert_eq!(
        creds,
        vec![
            json!({ "name": "AWS_KEY", "description": "AWS", "value_exists": true }),
            json!({ "name": "STRIPE_KEY", "description": "Stripe", "value_exists": true }),
            json!({ "name": "UNSET", "description": "no value", "value_exists": false }),
        ]
    );

    let expected = expected_profile(
        &id,
        "persisted",
        true,
        false,
        json!(key_id),
        json!([
            cred_entry("AWS_KEY", "AWS", true),
            cred_entry("STRIPE_KEY", "Stripe", true)
        ]),
    );
    let reply = admin.get(&format!("/api/admin/profiles/{id}")).await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(profile_view(&reply.2), expected);
    let reply = anon.get(&format!("/profiles/{key_id}")).await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(profile_view(&reply.2), expected);

    // Sealed values still open under the reloaded key: a locked profile's key
    // can be regenerated, and values can be replaced.
    let reply = admin
        .post_empty(&format!("/api/admin/profiles/{id}/regenerate-key"))
        .await;
    assert_status(&reply, StatusCode::OK);
    split_lock_response(&reply.2);
}

#[tokio::test]
async fn wrong_master_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let key_path = default_master_key_path(&data_dir);
    {
        let app = open_app(Config::for_data_dir(&data_dir)).await;
        let admin = admin_client(app.router()).await;
        populate(&admin).await;
    }
    let original = std::fs::read(&key_path).expect("master key file exists");
    assert_eq!(original.len(), 32, "master key is 32 bytes");

    let mut other = [0x5au8; 32];
    for (i, b) in other.iter_mut().enumerate() {
        *b ^= original[i] ^ (i as u8);
    }
    assert_ne!(other.as_slice(), original.as_slice());
    write_key(&key_path, &other);

    let message = open_err(Config::for_data_dir(&data_dir)).await;
    assert!(
        message.to_lowercase().contains("master key"),
        "error should mention the master key: {message}"
    );
    // The wrong key was not replaced or "fixed".
    assert_eq!(std::fs::read(&key_path).unwrap(), other.to_vec());

    // The right key still works.
    write_key(&key_path, &original.try_into().unwrap());
    let app = open_app(Config::for_data_dir(&data_dir)).await;
    let admin = login(app.router()).await;
    let reply = admin.get("/api/admin/credentials").await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2["credentials"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn missing_master_key_for_existing_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let key_path = default_master_key_path(&data_dir);
    {
        let app = open_app(Config::for_data_dir(&data_dir)).await;
        let admin = admin_client(app.router()).await;
        populate(&admin).await;
    }
    let original = std::fs::read(&key_path).expect("master key file exists");
    std::fs::remove_file(&key_path).unwrap();

    let message = open_err(Config::for_data_dir(&data_dir)).await;
    assert!(
        message.to_lowercase().contains("master key"),
        "error should mention the master key: {message}"
    );
    assert!(
        !key_path.exists(),
        "no new master key may be created for an existing database"
    );

    // Restoring the key makes it start again.
    write_key(&key_path, &original.try_into().unwrap());
    let app = open_app(Config::for_data_dir(&data_dir)).await;
    let admin = login(app.router()).await;
    let reply = admin.get("/api/admin/credentials").await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2["credentials"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn master_key_file_option_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let key_path = dir.path().join("secrets").join("airlock.key");
    let config = || {
        let mut c = Config::for_data_dir(&data_dir);
        c.master_key_file = Some(key_path.clone());
        c
    };
    {
        let app = open_app(config()).await;
        let admin = admin_client(app.router()).await;
        populate(&admin).await;
    }
    let bytes = std::fs::read(&key_path).expect("key created at master_key_file");
    assert_eq!(bytes.len(), 32);
    let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "master key mode {mode:o}");

    let app = open_app(config()).await;
    let admin = login(app.router()).await;
    let reply = admin.get("/api/admin/credentials").await;
    assert_eq!(reply.2["credentials"].as_array().unwrap().len(), 3);
    drop(app);

    // The default location is not silently used instead.
    let message = open_err(Config::for_data_dir(&data_dir)).await;
    assert!(
        message.to_lowercase().contains("master key"),
        "error should mention the master key: {message}"
    );
}

#[tokio::test]
async fn file_modes() {
    let app = TestApp::start().await;
    let meta = std::fs::metadata(&app.data_dir).expect("data dir created");
    assert!(meta.is_dir());
    let mode = meta.permissions().mode() & 0o777;
    // Traverse-only for others (sandbox helpers bind packages/envs); no listing.
    assert_eq!(mode, 0o711, "data dir mode {mode:o}");

    let key_path = default_master_key_path(&app.data_dir);
    let meta = std::fs::metadata(&key_path).expect("master key file created");
    let mode = meta.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "master key mode {mode:o}");
    assert_eq!(meta.len(), 32);
}

/// Runs the server binary with `AIRLOCK_LOG_FORMAT=format` until it says it listens
/// (or exits); returns its stderr lines and exit status (`None`: still running, then
/// killed).
fn server_logs(format: &str) -> (Vec<String>, Option<std::process::ExitStatus>) {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_airlock"))
        .env("AIRLOCK_DATA_DIR", dir.path().join("data"))
        .env("AIRLOCK_BIND", format!("127.0.0.1:{port}"))
        .env("AIRLOCK_LOG_FORMAT", format)
        .env("AIRLOCK_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let mut listening = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while let Ok(line) =
        rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        listening = line.contains("listening");
        lines.push(line);
        if listening {
            break;
        }
    }
    let status = if listening {
        let _ = child.kill();
        let _ = child.wait();
        None
    } else {
        // Its stderr closed (it is exiting) or it said nothing for a minute.
        let _ = child.kill();
        Some(child.wait().unwrap())
    };
    (lines, status)
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (lines, status) = server_logs("json");
    assert!(status.is_none(), "the server exited: {lines:?}");
    let listening = lines.last().expect("log lines");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{v}");
        assert!(v["fields"]["message"].is_string(), "{v}");
    }
    let v: serde_json::Value = serde_json::from_str(listening).unwrap();
    assert_eq!(v["fields"]["message"], "listening", "{v}");
    assert!(
        v["fields"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
        "{v}"
    );
    // An unknown format stops the start, saying which are known.
    let (lines, status) = server_logs("yaml");
    assert!(status.is_some_and(|s| !s.success()), "{lines:?}");
    let text = lines.join("\n");
    assert!(
        text.contains("AIRLOCK_LOG_FORMAT") || text.contains("--log-format"),
        "{text}"
    );
    assert!(text.contains("json"), "{text}");
}
