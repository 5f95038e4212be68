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
