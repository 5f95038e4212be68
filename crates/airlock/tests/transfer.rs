//! Encrypted export and import (`.airlock` files) through the real router: a
//! round trip between two instances with different master keys (the agent's key
//! keeps working and a script gives the same result), every refusal (wrong
//! passphrase, tampered or truncated file, newer version, oversized upload, no
//! session, agent routes), conflicts with both merge strategies, and the file
//! opened with the standard `age` CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use common::*;

const PASSPHRASE: &str = "purple elephant staircase 42";
const API_VALUE: &str = "sk_live_transfer_4eC39HqLyjWDarjtT1zd";
const DB_VALUE: &str = "pg_password_Zx81kQ0trL5";

/// An app whose executions run in the real sandbox (the `airlock` binary as helper).
async fn sandboxed_app() -> TestApp {
    TestApp::start_with(|c| {
        c.sandbox_helper = Some(vec![
            env!("CARGO_BIN_EXE_airlock").into(),
            airlock::sandbox::HELPER_ARG.into(),
        ]);
        c.workers = Some(1);
    })
    .await
}

/// POST /api/admin/export; returns (status, headers, raw body).
async fn export_raw(
    admin: &Client,
    app: &TestApp,
    body: Value,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri("/api/admin/export")
        .header(header::HOST, DEFAULT_HOST)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(c) = &admin.cookie {
        b = b.header(header::COOKIE, c.as_str());
    }
    let resp = app
        .router()
        .oneshot(b.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, bytes)
}

/// Exports and returns the file, checking the attachment headers.
async fn export_file(admin: &Client, app: &TestApp, extra: Value) -> Vec<u8> {
    let mut body = json!({ "password": ADMIN_PASSWORD, "passphrase": PASSPHRASE });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, headers, bytes) = export_raw(admin, app, body).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    let today = chrono::Utc::now().format("%Y-%m-%d");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        format!("attachment; filename=\"airlock-{today}.airlock\"").as_str()
    );
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(bytes.starts_with(b"age-encryption.org/v1\n-> scrypt "));
    bytes
}

/// The JSON document inside a file, decrypted in-process.
fn document(file: &[u8]) -> Value {
    let plain = airlock::transfer::decrypt(file, PASSPHRASE).expect("decrypts");
    serde_json::from_slice(&plain).expect("JSON document")
}

async fn preview(admin: &Client, file: &[u8], passphrase: &str) -> Reply {
    admin
        .post(
            "/api/admin/import/preview",
            json!({
                "file": base64::engine::general_purpose::STANDARD.encode(file),
                "password": ADMIN_PASSWORD,
                "passphrase": passphrase,
            }),
        )
        .await
}

async fn commit(admin: &Client, token: &str, creds: &str, profiles: &str) -> Reply {
    admin
        .post(
            "/api/admin/import/commit",
            json!({ "token": token, "credentials": creds, "profiles": profiles }),
        )
        .await
}

/// Everything an admin can see of an instance (lists of credentials and profiles).
async fn snapshot(admin: &Client) -> Value {
    let (s, _, creds) = admin.get("/api/admin/credentials").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, profiles) = admin.get("/api/admin/profiles").await;
    assert_eq!(s, StatusCode::OK);
    json!({ "credentials": creds["credentials"], "profiles": profiles["profiles"] })
}

/// Asserts that no response this client saw contains any of `secrets` (except
/// the lock response, which shows the new key once by design).
fn assert_no_leak(client: &Client, secrets: &[&str]) {
    for ex in client.transcript() {
        if ex.label.ends_with("/lock") {
            continue;
        }
        for s in secrets {
            assert!(
                !ex.text.contains(s),
                "{} leaked a secret in its response",
                ex.label
            );
        }
    }
}

/// A source instance: two credentials with values, a locked profile using
/// API_KEY (with a host allowlist, an expiry and input records) and an unlocked one
/// using DB.
/// Returns (locked profile id, its key, unlocked profile id).
async fn populate(admin: &Client) -> (String, String, String) {
    create_credential(admin, "API_KEY", "payments API", Some(API_VALUE)).await;
    create_credential(admin, "DB_PASSWORD", "postgres", Some(DB_VALUE)).await;
    create_credential(admin, "EMPTY_SLOT", "not filled yet", None).await;
    let locked = create_profile(admin, "billing agent", &["API_KEY"]).await;
    let (s, _, body) = admin
        .put(
            &format!("/api/admin/profiles/{locked}"),
            json!({ "allowed_hosts": ["api.example.com", "*.stripe.com"], "expires_at": "2099-01-01T00:00:00Z", "record": "hashes" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let (key, _, _) = lock_profile(admin, &locked).await;
    let open = create_profile(admin, "db agent", &["DB_PASSWORD", "EMPTY_SLOT"]).await;
    (locked, key, open)
}

/// Stores an egress row and a recorded answer for `exec` on `app`, as a `full`
/// record would; returns the answer.
async fn recorded_answer(app: &TestApp, exec: &str) -> airlock::answers::StoredAnswer {
    use base64::Engine;
    let state = &app.app.state;
    state
        .store
        .egress_insert(&airlock_store::EgressRow {
            execution_id: exec.into(),
            at: chrono::Utc::now(),
            host: "api.example.com".into(),
            port: 443,
            method: "GET".into(),
            path: Some("/v1/rates".into()),
            bytes_up: 100,
            bytes_down: 200,
            duration_ms: Some(5),
            allowed: true,
            reason: "allowed by api.example.com".into(),
            violation: false,
            substituted: vec![],
            status: Some(200),
            body_sha256: Some("ab".repeat(32)),
        })
        .await
        .unwrap();
    let answer = airlock::answers::StoredAnswer {
        method: "GET".into(),
        host: "api.example.com".into(),
        port: 443,
        path: Some("/v1/rates".into()),
        target_sha256: "cd".repeat(32),
        status: 200,
        headers: vec![("content-type".into(), "text/csv".into())],
        body: base64::engine::general_purpose::STANDARD.encode("day,total\n1,30\n"),
        complete: true,
        body_sha256: Some("ab".repeat(32)),
        redacted: false,
    };
    let row = state.catalog.seal_answer(exec, 0, &answer).unwrap();
    state.store.answers_insert(&[row]).await.unwrap();
    answer
}

/// Profile views without timestamps, sorted by id.
fn profiles_of(snapshot: &Value) -> Vec<Value> {
    let mut v: Vec<Value> = snapshot["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(profile_view)
        .collect();
    v.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    v
}

fn credentials_of(snapshot: &Value) -> Vec<Value> {
    snapshot["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(credential_view)
        .collect()
}

/// Submits a script with a profile key and waits for its end.
async fn run_script(client: &Client, key: &str, script: &str) -> Value {
    let (key_id, secret) = key.split_once(':').unwrap();
    let (s, _, v) = client
        .raw(
            Method::POST,
            "/execute",
            Some("application/json"),
            airlock::ids::signed_body(secret.as_bytes(), script)
                .to_string()
                .into_bytes(),
            &[("authorization", &format!("Bearer {key_id}"))],
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (s, _, v) = client
            .raw(
                Method::GET,
                &format!("/executions/{id}?wait=30"),
                None,
                Vec::new(),
                &[("authorization", &format!("Bearer {key_id}"))],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if matches!(
            v["status"].as_str().unwrap(),
            "completed" | "error" | "timeout"
        ) {
            return v;
        }
        assert!(Instant::now() < deadline, "execution never finished: {v}");
    }
}

const SCRIPT: &str = "import hashlib\nv = settings.get('API_KEY')\nset_result({'len': len(v), 'sha': hashlib.sha256(v.encode()).hexdigest(), 'keys': settings.keys()})\n";

#[tokio::test]
async fn round_trip_between_instances_keeps_agent_keys_working() {
    let a = sandboxed_app().await;
    let admin_a = a.admin().await;
    let (locked, key, _open) = populate(&admin_a).await;
    let agent_a = a.client();
    let on_a = run_script(&agent_a, &key, SCRIPT).await;
    assert_eq!(on_a["status"], "completed", "{on_a}");
    let expected = json!({
        "len": API_VALUE.len(),
        "sha": airlock::ids::sha256_hex(API_VALUE.as_bytes()),
        "keys": ["API_KEY"],
    });
    assert_eq!(on_a["result"], expected);
    let exec_a = on_a["execution_id"].as_str().unwrap().to_string();
    // As a `full` record leaves them: an egress row and its kept answer.
    let kept = recorded_answer(&a, &exec_a).await;

    let file = export_file(&admin_a, &a, json!({ "include_executions": true })).await;
    // The file holds neither values nor the key in the clear.
    let (_, key_secret) = key.split_once(':').unwrap();
    for s in [API_VALUE, DB_VALUE, key_secret] {
        assert!(
            !file.windows(s.len()).any(|w| w == s.as_bytes()),
            "plaintext secret in the export file"
        );
    }
    let doc = document(&file);
    assert_eq!(doc["format"], "airlock-export");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["requirements"], json!([]));
    assert_eq!(doc["executions"].as_array().unwrap().len(), 1);
    assert_eq!(doc["executions"][0]["id"], exec_a.as_str());

    let b = sandboxed_app().await;
    assert_ne!(
        std::fs::read(default_master_key_path(&a.data_dir)).unwrap(),
        std::fs::read(default_master_key_path(&b.data_dir)).unwrap(),
        "the two instances must have different master keys"
    );
    let admin_b = b.admin().await;
    let p = preview(&admin_b, &file, PASSPHRASE).await;
    assert_status(&p, StatusCode::OK);
    let mut cred_names: Vec<&str> = p.2["credentials"]["add"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    cred_names.sort_unstable();
    assert_eq!(cred_names, ["API_KEY", "DB_PASSWORD", "EMPTY_SLOT"]);
    assert_eq!(p.2["credentials"]["conflict"], json!([]));
    assert_eq!(p.2["profiles"]["add"].as_array().unwrap().len(), 2);
    assert_eq!(p.2["profiles"]["conflict"], json!([]));
    assert_eq!(p.2["executions"], 1);
    let token = p.2["token"].as_str().unwrap().to_string();
    let c = commit(&admin_b, &token, "skip", "skip").await;
    assert_status(&c, StatusCode::OK);
    assert_eq!(
        c.2,
        json!({
            "credentials": {"added": 3, "overwritten": 0, "skipped": 0},
            "profiles": {"added": 2, "overwritten": 0, "skipped": 0},
            "executions": {"added": 1, "overwritten": 0, "skipped": 0},
        })
    );
    // The token is one-time.
    assert_error_code(
        &commit(&admin_b, &token, "skip", "skip").await,
        StatusCode::GONE,
        "import_expired",
    );

    // B now shows what A shows (names, descriptions, states, keys, allowlists).
    let (sa, sb) = (snapshot(&admin_a).await, snapshot(&admin_b).await);
    assert_eq!(credentials_of(&sb), credentials_of(&sa));
    assert_eq!(profiles_of(&sb), profiles_of(&sa));
    let view_b = profiles_of(&sb)
        .into_iter()
        .find(|p| p["id"] == locked.as_str())
        .unwrap();
    assert_eq!(
        view_b["allowed_hosts"],
        json!(["api.example.com", "*.stripe.com"])
    );
    assert_eq!(view_b["record"], "hashes");

    // A's key runs the same script on B with the same result.
    let agent_b = b.client();
    let on_b = run_script(&agent_b, &key, SCRIPT).await;
    assert_eq!(on_b["status"], "completed", "{on_b}");
    assert_eq!(on_b["result"], expected);
    // And A's history is on B.
    let (s, _, hist) = admin_b
        .get(&format!("/api/admin/executions/{exec_a}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{hist}");
    assert_eq!(hist["script"], SCRIPT);
    assert_eq!(hist["result"], expected);
    // Its input record came along (the profile records inputs).
    let (_, _, orig) = admin_a
        .get(&format!("/api/admin/executions/{exec_a}"))
        .await;
    assert!(orig["inputs"]["now"].is_string(), "{orig}");
    assert_eq!(hist["inputs"], orig["inputs"]);
    // So did its egress log and the answer its record kept, sealed under B's key.
    assert_eq!(hist["egress"], orig["egress"]);
    assert_eq!(hist["egress"][0]["body_sha256"], json!("ab".repeat(32)));
    let on_b = b.app.state.catalog.open_answers(&exec_a).await.unwrap();
    assert_eq!(on_b, vec![kept]);
    let sealed_a = a.app.state.store.answers_list(&exec_a).await.unwrap();
    let sealed_b = b.app.state.store.answers_list(&exec_a).await.unwrap();
    assert_ne!(sealed_a[0].sealed, sealed_b[0].sealed, "sealed again on B");

    assert_no_leak(&admin_a, &[API_VALUE, DB_VALUE, key_secret, PASSPHRASE]);
    assert_no_leak(&admin_b, &[API_VALUE, DB_VALUE, key_secret, PASSPHRASE]);
    assert_no_leak(&agent_b, &[API_VALUE, key_secret]);
}

#[tokio::test]
async fn selective_export_holds_chosen_profiles_and_only_their_credentials() {
    let a = TestApp::start().await;
    let admin = a.admin().await;
    let (locked, key, open) = populate(&admin).await;
    let file = export_file(&admin, &a, json!({ "profiles": [locked] })).await;
    let doc = document(&file);
    assert_eq!(doc["scope"], "profiles");
    assert!(doc.get("executions").is_none(), "{doc}");
    let (key_id, secret) = key.split_once(':').unwrap();
    assert_eq!(doc["profiles"].as_array().unwrap().len(), 1);
    let p = &doc["profiles"][0];
    assert_eq!(p["id"], locked.as_str());
    assert_eq!(p["key_id"], key_id);
    assert_eq!(p["secret"], secret);
    assert_eq!(p["locked"], true);
    assert_eq!(p["revoked"], false);
    assert_eq!(p["credentials"], json!(["API_KEY"]));
    assert_eq!(
        p["allowed_hosts"],
        json!(["api.example.com", "*.stripe.com"])
    );
    assert_eq!(
        canonical_time(timestamp(&p["expires_at"])),
        "2099-01-01T00:00:00Z"
    );
    let creds = doc["credentials"].as_array().unwrap();
    assert_eq!(creds.len(), 1);
    let c = &creds[0];
    assert_eq!(
        (&c["name"], &c["description"], &c["value"]),
        (&json!("API_KEY"), &json!("payments API"), &json!(API_VALUE))
    );

    // Everything: both profiles, all three credentials (the empty slot has null).
    let doc = document(&export_file(&admin, &a, json!({})).await);
    assert_eq!(doc["scope"], "all");
    assert_eq!(doc["profiles"].as_array().unwrap().len(), 2);
    let empty = doc["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "EMPTY_SLOT")
        .unwrap();
    assert_eq!(empty["value"], Value::Null);
    let unlocked = doc["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == open.as_str())
        .unwrap();
    assert_eq!(
        (
            &unlocked["key_id"],
            &unlocked["secret"],
            &unlocked["locked"]
        ),
        (&Value::Null, &Value::Null, &json!(false))
    );

    // An unknown profile id is refused.
    let (s, _, body) = export_raw(
        &admin,
        &a,
        json!({ "password": ADMIN_PASSWORD, "passphrase": PASSPHRASE, "profiles": ["prf_nope"] }),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn export_checks_password_passphrase_and_session() {
    let a = TestApp::start().await;
    let admin = a.admin().await;
    populate(&admin).await;
    let err = |b: Vec<u8>| -> Value { serde_json::from_slice(&b).expect("JSON error") };

    let (s, _, b) = export_raw(
        &admin,
        &a,
        json!({ "password": ADMIN_PASSWORD, "passphrase": "too short" }),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err(b)["code"], "invalid_input");

    let (s, _, b) = export_raw(
        &admin,
        &a,
        json!({ "password": "not the password", "passphrase": PASSPHRASE }),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(err(b)["code"], "wrong_password");

    // No session.
    let anon = admin.anonymous();
    let (s, _, b) = export_raw(
        &anon,
        &a,
        json!({ "password": ADMIN_PASSWORD, "passphrase": PASSPHRASE }),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(err(b)["code"], "not_authenticated");
    assert_error_code(
        &preview(&anon, b"x", PASSPHRASE).await,
        StatusCode::UNAUTHORIZED,
        "not_authenticated",
    );
    assert_error_code(
        &commit(&anon, "t", "skip", "skip").await,
        StatusCode::UNAUTHORIZED,
        "not_authenticated",
    );

    // A form post (not JSON) is refused by the CSRF guard.
    let r = admin
        .raw(
            Method::POST,
            "/api/admin/export",
            Some("application/x-www-form-urlencoded"),
            b"password=x".to_vec(),
            &[],
        )
        .await;
    assert_error_code(&r, StatusCode::FORBIDDEN, "csrf_rejected");

    // Wrong passwords are throttled like logins (one was already wrong above).
    for _ in 0..4 {
        let (s, _, _) = export_raw(
            &admin,
            &a,
            json!({ "password": "not the password", "passphrase": PASSPHRASE }),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, h, _) = export_raw(
        &admin,
        &a,
        json!({ "password": ADMIN_PASSWORD, "passphrase": PASSPHRASE }),
    )
    .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(h.contains_key(header::RETRY_AFTER));
}

#[tokio::test]
async fn agent_side_has_no_export_or_import_route() {
    let a = TestApp::start().await;
    let admin = a.admin().await;
    let (_, key, _) = populate(&admin).await;
    let key_id = key.split_once(':').unwrap().0;
    let agent = a.client();
    let bearer = format!("Bearer {key_id}");
    for path in [
        "/export",
        "/import",
        "/import/preview",
        "/import/commit",
        "/api/export",
        "/api/import/preview",
    ] {
        for method in [Method::GET, Method::POST] {
            let r = agent
                .raw(
                    method.clone(),
                    path,
                    Some("application/json"),
                    b"{}".to_vec(),
                    &[("authorization", &bearer)],
                )
                .await;
            assert!(
                r.0 == StatusCode::NOT_FOUND || r.0 == StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} answered {}: {}",
                r.0,
                r.2
            );
        }
    }
    // The admin routes do not take an agent key instead of a session.
    let r = agent
        .raw(
            Method::POST,
            "/api/admin/export",
            Some("application/json"),
            json!({ "password": ADMIN_PASSWORD, "passphrase": PASSPHRASE })
                .to_string()
                .into_bytes(),
            &[("authorization", &bearer)],
        )
        .await;
    assert_error_code(&r, StatusCode::UNAUTHORIZED, "not_authenticated");
}

#[tokio::test]
async fn bad_files_are_refused_and_change_nothing() {
    let a = TestApp::start().await;
    let admin_a = a.admin().await;
    populate(&admin_a).await;
    let file = export_file(&admin_a, &a, json!({})).await;

    let b = TestApp::start_with(|c| c.max_import_bytes = 64 * 1024).await;
    let admin_b = b.admin().await;
    create_credential(&admin_b, "LOCAL_ONLY", "b's own", Some("local-value-123")).await;
    let before = snapshot(&admin_b).await;

    let d = assert_error_code(
        &preview(&admin_b, &file, "the wrong passphrase!").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "wrong_passphrase",
    );
    assert!(d.contains("passphrase"), "{d}");

    // One byte flipped in the encrypted payload.
    let mut tampered = file.clone();
    let at = tampered.len() - 40;
    tampered[at] ^= 0x20;
    let d = assert_error_code(
        &preview(&admin_b, &tampered, PASSPHRASE).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "corrupt_file",
    );
    assert!(d.contains("altered"), "{d}");

    // Cut short, in the payload and in the header.
    for len in [file.len() - 17, file.len() / 2, 30] {
        assert_error_code(
            &preview(&admin_b, &file[..len], PASSPHRASE).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "corrupt_file",
        );
    }

    // Not an age file at all; not base64.
    assert_error_code(
        &preview(&admin_b, b"{\"format\": \"airlock-export\"}", PASSPHRASE).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "corrupt_file",
    );
    let r = admin_b
        .post(
            "/api/admin/import/preview",
            json!({ "file": "%%% not base64", "password": ADMIN_PASSWORD, "passphrase": PASSPHRASE }),
        )
        .await;
    assert_error_code(&r, StatusCode::BAD_REQUEST, "bad_request");

    // A valid file from a newer format version.
    let mut doc = document(&file);
    doc["version"] = json!(2);
    let newer = airlock::transfer::encrypt(doc.to_string().as_bytes(), PASSPHRASE).unwrap();
    let d = assert_error_code(
        &preview(&admin_b, &newer, PASSPHRASE).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_version",
    );
    assert!(d.contains("newer Airlock"), "{d}");

    // Over the configured cap: within the request limit, then past it.
    let big = vec![7u8; 64 * 1024 + 1];
    let d = assert_error_code(
        &preview(&admin_b, &big, PASSPHRASE).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    assert!(d.contains("AIRLOCK_MAX_IMPORT_BYTES"), "{d}");
    let huge = vec![7u8; 1024 * 1024];
    let d = assert_error_code(
        &preview(&admin_b, &huge, PASSPHRASE).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
    );
    assert!(d.contains("AIRLOCK_MAX_IMPORT_BYTES"), "{d}");

    // Wrong admin password on import.
    let r = admin_b
        .post(
            "/api/admin/import/preview",
            json!({
                "file": base64::engine::general_purpose::STANDARD.encode(&file),
                "password": "not the password",
                "passphrase": PASSPHRASE,
            }),
        )
        .await;
    assert_error_code(&r, StatusCode::UNAUTHORIZED, "wrong_password");

    // An unknown token.
    assert_error_code(
        &commit(&admin_b, "0123", "skip", "skip").await,
        StatusCode::GONE,
        "import_expired",
    );

    assert_eq!(snapshot(&admin_b).await, before, "nothing changed");
    assert_no_leak(&admin_b, &[API_VALUE, DB_VALUE, PASSPHRASE]);
}

/// Opens the value of `name` on an instance by exporting it (the only way a
/// value ever leaves the vault).
async fn value_on(admin: &Client, app: &TestApp, name: &str) -> Value {
    let doc = document(&export_file(admin, app, json!({})).await);
    doc["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .map(|c| c["value"].clone())
        .unwrap_or_else(|| panic!("{name} not on the instance"))
}

#[tokio::test]
async fn conflicts_preview_and_both_merge_strategies() {
    let a = TestApp::start().await;
    let admin_a = a.admin().await;
    let (locked, key, open) = populate(&admin_a).await;
    let file = export_file(&admin_a, &a, json!({})).await;

    let b = TestApp::start().await;
    let admin_b = b.admin().await;
    // B already has API_KEY with its own value and description.
    create_credential(&admin_b, "API_KEY", "b's api key", Some("b-value-0000000")).await;

    // First import: API_KEY conflicts, the rest is new. Skip keeps B's credential.
    let p = preview(&admin_b, &file, PASSPHRASE).await;
    assert_status(&p, StatusCode::OK);
    assert_eq!(
        p.2["credentials"]["conflict"],
        json!([{ "name": "API_KEY", "description": "payments API", "value_exists": true }])
    );
    assert_eq!(p.2["credentials"]["add"].as_array().unwrap().len(), 2);
    assert_eq!(p.2["profiles"]["conflict"], json!([]));
    let c = commit(&admin_b, p.2["token"].as_str().unwrap(), "skip", "skip").await;
    assert_status(&c, StatusCode::OK);
    assert_eq!(
        c.2["credentials"],
        json!({"added": 2, "overwritten": 0, "skipped": 1})
    );
    assert_eq!(
        c.2["profiles"],
        json!({"added": 2, "overwritten": 0, "skipped": 0})
    );
    assert_eq!(value_on(&admin_b, &b, "API_KEY").await, "b-value-0000000");
    let (_, _, cred) = admin_b.get("/api/admin/credentials/API_KEY").await;
    assert_eq!(cred["description"], "b's api key");
    // The imported profile links to B's API_KEY.
    let (_, _, prof) = admin_b.get(&format!("/api/admin/profiles/{locked}")).await;
    assert_eq!(
        profile_view(&prof)["credentials"],
        json!([cred_entry("API_KEY", "b's api key", true)])
    );

    // B changes the imported profiles; a second import now conflicts everywhere.
    let (s, _, _) = admin_b
        .put(
            &format!("/api/admin/profiles/{open}"),
            json!({ "description": "changed on b" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let p = preview(&admin_b, &file, PASSPHRASE).await;
    assert_status(&p, StatusCode::OK);
    assert_eq!(p.2["credentials"]["add"], json!([]));
    assert_eq!(p.2["credentials"]["conflict"].as_array().unwrap().len(), 3);
    assert_eq!(p.2["profiles"]["add"], json!([]));
    let mut conflicts: Vec<(String, Value)> = p.2["profiles"]["conflict"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["conflicts_with"].clone(),
            )
        })
        .collect();
    conflicts.sort_by(|x, y| x.0.cmp(&y.0));
    let mut want = vec![
        (locked.clone(), json!([locked])),
        (open.clone(), json!([open])),
    ];
    want.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(conflicts, want);

    // Skip for both: nothing changes.
    let before = snapshot(&admin_b).await;
    let c = commit(&admin_b, p.2["token"].as_str().unwrap(), "skip", "skip").await;
    assert_eq!(
        c.2,
        json!({
            "credentials": {"added": 0, "overwritten": 0, "skipped": 3},
            "profiles": {"added": 0, "overwritten": 0, "skipped": 2},
            "executions": {"added": 0, "overwritten": 0, "skipped": 0},
        })
    );
    assert_eq!(snapshot(&admin_b).await, before);

    // Overwrite both: B takes A's values, descriptions and profiles.
    let p = preview(&admin_b, &file, PASSPHRASE).await;
    let c = commit(
        &admin_b,
        p.2["token"].as_str().unwrap(),
        "overwrite",
        "overwrite",
    )
    .await;
    assert_status(&c, StatusCode::OK);
    assert_eq!(
        c.2,
        json!({
            "credentials": {"added": 0, "overwritten": 3, "skipped": 0},
            "profiles": {"added": 0, "overwritten": 2, "skipped": 0},
            "executions": {"added": 0, "overwritten": 0, "skipped": 0},
        })
    );
    assert_eq!(value_on(&admin_b, &b, "API_KEY").await, API_VALUE);
    let (sa, sb) = (snapshot(&admin_a).await, snapshot(&admin_b).await);
    assert_eq!(credentials_of(&sb), credentials_of(&sa));
    assert_eq!(profiles_of(&sb), profiles_of(&sa));
    // The key still authenticates on B.
    let key_id = key.split_once(':').unwrap().0;
    let r = b
        .client()
        .raw(
            Method::GET,
            "/executions",
            None,
            Vec::new(),
            &[("authorization", &format!("Bearer {key_id}"))],
        )
        .await;
    assert_status(&r, StatusCode::OK);

    // Mixed: overwrite credentials, skip profiles.
    create_credential(&admin_a, "NEW_ON_A", "added later", Some("new-value-999")).await;
    let file2 = export_file(&admin_a, &a, json!({})).await;
    let p = preview(&admin_b, &file2, PASSPHRASE).await;
    assert_eq!(
        p.2["credentials"]["add"],
        json!([{ "name": "NEW_ON_A", "description": "added later", "value_exists": true }])
    );
    let c = commit(
        &admin_b,
        p.2["token"].as_str().unwrap(),
        "overwrite",
        "skip",
    )
    .await;
    assert_eq!(
        c.2["credentials"],
        json!({"added": 1, "overwritten": 3, "skipped": 0})
    );
    assert_eq!(
        c.2["profiles"],
        json!({"added": 0, "overwritten": 0, "skipped": 2})
    );

    // A preview token belongs to the session that uploaded it.
    let p = preview(&admin_b, &file, PASSPHRASE).await;
    let mut other = b.client();
    let (_, h, _) = other
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    other.cookie = session_cookie(&h);
    assert_error_code(
        &commit(&other, p.2["token"].as_str().unwrap(), "skip", "skip").await,
        StatusCode::GONE,
        "import_expired",
    );
    assert_status(
        &commit(&admin_b, p.2["token"].as_str().unwrap(), "skip", "skip").await,
        StatusCode::OK,
    );

    assert_no_leak(
        &admin_b,
        &[API_VALUE, DB_VALUE, "b-value-0000000", PASSPHRASE],
    );
}

// ----- the standard age CLI -----

/// Drives `age` through a pseudo-terminal (it reads passphrases only from a
/// terminal), answering every passphrase prompt with $AGE_TEST_PASSPHRASE.
const PTY_DRIVER: &str = r#"
import os, pty, select, sys, time
pw = os.environ["AGE_TEST_PASSPHRASE"].encode() + b"\n"
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
seen, answered, out = b"", 0, b""
deadline = time.time() + 120
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.5)
    if not r:
        continue
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    seen += data
    while seen.lower().count(b"passphrase") > answered:
        os.write(fd, pw)
        answered += 1
_, status = os.waitpid(pid, 0)
sys.stderr.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;

fn age_tools() -> Option<()> {
    let ok = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !ok("age", "--version") {
        eprintln!(
            "\n*** SKIPPED: the `age` CLI is not installed (apt-get install age); \
             the export file was NOT checked against the standard tool ***\n"
        );
        return None;
    }
    if !ok("python3", "--version") {
        eprintln!("\n*** SKIPPED: python3 (needed to drive age through a pty) is missing ***\n");
        return None;
    }
    Some(())
}

fn run_age(dir: &Path, args: &[&str]) {
    let driver = dir.join("pty_driver.py");
    std::fs::write(&driver, PTY_DRIVER).unwrap();
    let out = std::process::Command::new("python3")
        .arg(&driver)
        .arg("age")
        .args(args)
        .env("AGE_TEST_PASSPHRASE", PASSPHRASE)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "age {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_age_cli_opens_an_export_and_its_files_import() {
    if age_tools().is_none() {
        return;
    }
    let a = TestApp::start().await;
    let admin_a = a.admin().await;
    populate(&admin_a).await;
    let file = export_file(&admin_a, &a, json!({})).await;
    let tmp = tempfile::tempdir().unwrap();
    let enc = tmp.path().join("airlock.airlock");
    let plain = tmp.path().join("airlock.json");
    std::fs::write(&enc, &file).unwrap();
    run_age(
        tmp.path(),
        &["-d", "-o", plain.to_str().unwrap(), enc.to_str().unwrap()],
    );
    let by_cli: Value = serde_json::from_slice(&std::fs::read(&plain).unwrap()).unwrap();
    assert_eq!(by_cli, document(&file));
    assert_eq!(by_cli["format"], "airlock-export");

    // The other way: a document encrypted by `age -p` imports.
    let mut doc = by_cli;
    doc["credentials"][0]["description"] = json!("edited with the age CLI");
    let edited = tmp.path().join("edited.json");
    let edited_enc = tmp.path().join("edited.airlock");
    std::fs::write(&edited, doc.to_string()).unwrap();
    run_age(
        tmp.path(),
        &[
            "-p",
            "-o",
            edited_enc.to_str().unwrap(),
            edited.to_str().unwrap(),
        ],
    );
    let b = TestApp::start().await;
    let admin_b = b.admin().await;
    let p = preview(&admin_b, &std::fs::read(&edited_enc).unwrap(), PASSPHRASE).await;
    assert_status(&p, StatusCode::OK);
    let c = commit(&admin_b, p.2["token"].as_str().unwrap(), "skip", "skip").await;
    assert_status(&c, StatusCode::OK);
    let name = doc["credentials"][0]["name"].as_str().unwrap();
    let (_, _, cred) = admin_b.get(&format!("/api/admin/credentials/{name}")).await;
    assert_eq!(cred["description"], "edited with the age CLI");
}

/// A credential's mode and bound hosts travel with it; a file from a version without
/// them imports as `plain`.
#[tokio::test]
async fn sealing_settings_travel_with_the_export() {
    let a = TestApp::start().await;
    let admin_a = a.admin().await;
    let (s, _, v) = admin_a
        .post(
            "/api/admin/credentials",
            json!({"name": "SEALED_KEY", "description": "d", "value": API_VALUE,
                   "bound_hosts": ["api.example.com", "*.example.org:8443"],
                   "bound_methods": ["get", "POST"], "bound_header": "Authorization",
                   "substitute_in_body": true, "revoke_on_violation": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let sealing = json!({"mode": "sealed", "bound_hosts": ["api.example.com", "*.example.org:8443"],
        "bound_methods": ["GET", "POST"], "bound_header": "authorization",
        "substitute_in_body": true, "revoke_on_violation": true, "database": null});
    // A sealed database credential's login travels too.
    let login = json!({"protocol": "postgres", "host": "db.internal", "port": 5432,
        "database": "shop", "user": "report", "tls": "verify-full", "read_only": true});
    let (s, _, v_db) = admin_a
        .post(
            "/api/admin/credentials",
            json!({"name": "SHOP_DB", "description": "d", "value": "db-password-for-transfer",
                   "database": login}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v_db}");
    assert_eq!(v_db["database"], login);
    assert_eq!(v_db["mode"], "sealed");
    for k in sealing.as_object().unwrap().keys() {
        assert_eq!(v[k], sealing[k], "{k}: {v}");
    }
    create_credential(&admin_a, "PLAIN_KEY", "p", Some(DB_VALUE)).await;
    let file = export_file(&admin_a, &a, json!({})).await;
    let doc = document(&file);
    let creds = doc["credentials"].as_array().unwrap();
    let sealed = creds.iter().find(|c| c["name"] == "SEALED_KEY").unwrap();
    assert_eq!(sealed["sealing"], sealing);

    let b = TestApp::start().await;
    let admin_b = b.admin().await;
    let p = preview(&admin_b, &file, PASSPHRASE).await;
    assert_status(&p, StatusCode::OK);
    let token = p.2["token"].as_str().unwrap().to_string();
    assert_status(
        &commit(&admin_b, &token, "skip", "skip").await,
        StatusCode::OK,
    );
    let (s, _, got) = admin_b.get("/api/admin/credentials/SEALED_KEY").await;
    assert_eq!(s, StatusCode::OK);
    for k in sealing.as_object().unwrap().keys() {
        assert_eq!(got[k], sealing[k], "{k}: {got}");
    }
    let (_, _, plain) = admin_b.get("/api/admin/credentials/PLAIN_KEY").await;
    assert_eq!(plain["mode"], "plain");
    let (_, _, db) = admin_b.get("/api/admin/credentials/SHOP_DB").await;
    assert_eq!(db["database"], login, "{db}");
    assert_eq!(db["mode"], "sealed");
    assert_eq!(db["value_exists"], true);

    // An older file without `sealing` imports as plain; invalid settings are refused.
    let mut old: Value = doc.clone();
    for c in old["credentials"].as_array_mut().unwrap() {
        c.as_object_mut().unwrap().remove("sealing");
        c["name"] = json!(format!("OLD_{}", c["name"].as_str().unwrap()));
    }
    old["profiles"] = json!([]);
    let c = TestApp::start().await;
    let admin_c = c.admin().await;
    let file = airlock::transfer::encrypt(old.to_string().as_bytes(), PASSPHRASE).unwrap();
    let p = preview(&admin_c, &file, PASSPHRASE).await;
    assert_status(&p, StatusCode::OK);
    let token = p.2["token"].as_str().unwrap().to_string();
    assert_status(
        &commit(&admin_c, &token, "skip", "skip").await,
        StatusCode::OK,
    );
    let (_, _, got) = admin_c.get("/api/admin/credentials/OLD_SEALED_KEY").await;
    assert_eq!(got["mode"], "plain", "{got}");
    assert_eq!(got["bound_hosts"], json!([]));

    let mut bad = doc.clone();
    bad["profiles"] = json!([]);
    bad["credentials"][0]["sealing"]["bound_hosts"] = json!([]);
    bad["credentials"][0]["sealing"]["mode"] = json!("sealed");
    let file = airlock::transfer::encrypt(bad.to_string().as_bytes(), PASSPHRASE).unwrap();
    let p = preview(&admin_c, &file, PASSPHRASE).await;
    assert_status(&p, StatusCode::UNPROCESSABLE_ENTITY);
}
