//! Admin credential management, input validation and generic error behaviour.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{json, Value};

async fn admin_credentials(admin: &Client) -> Vec<Value> {
    let reply = admin.get("/api/admin/credentials").await;
    assert_status(&reply, StatusCode::OK);
    let obj = reply.2.as_object().expect("object");
    assert_eq!(
        obj.keys().collect::<Vec<_>>(),
        vec!["credentials"],
        "{}",
        reply.2
    );
    reply.2["credentials"]
        .as_array()
        .expect("credentials array")
        .iter()
        .map(credential_view)
        .collect()
}

fn cred(name: &str, description: &str, value_exists: bool) -> Value {
    json!({ "name": name, "description": description, "value_exists": value_exists })
}

#[tokio::test]
async fn create_list_and_sort() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    assert_eq!(admin_credentials(&admin).await, Vec::<Value>::new());

    let reply = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "STRIPE_KEY", "description": "Stripe live key", "value": "sk_test_1" }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    assert_eq!(
        credential_view(&reply.2),
        cred("STRIPE_KEY", "Stripe live key", true)
    );

    let reply = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "AWS_KEY", "description": "AWS" }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    assert_eq!(credential_view(&reply.2), cred("AWS_KEY", "AWS", false));

    let reply = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "GITHUB_TOKEN", "description": "" }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    assert_eq!(credential_view(&reply.2), cred("GITHUB_TOKEN", "", false));

    assert_eq!(
        admin_credentials(&admin).await,
        vec![
            cred("AWS_KEY", "AWS", false),
            cred("GITHUB_TOKEN", "", false),
            cred("STRIPE_KEY", "Stripe live key", true),
        ]
    );
}

#[tokio::test]
async fn duplicate_name_conflicts_and_keeps_original() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "DUP", "first", None).await;
    let reply = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "DUP", "description": "second", "value": "v" }),
        )
        .await;
    assert_error(&reply, StatusCode::CONFLICT);
    assert_eq!(
        admin_credentials(&admin).await,
        vec![cred("DUP", "first", false)]
    );
}

#[tokio::test]
async fn update_value_and_description() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "OPENAI_KEY", "OpenAI", None).await;
    let created = admin.get("/api/admin/credentials").await.2["credentials"][0].clone();

    // Set the value only: description unchanged, value never echoed.
    let reply = admin
        .put(
            "/api/admin/credentials/OPENAI_KEY",
            json!({ "value": "sk-proj-abc123" }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(
        credential_view(&reply.2),
        cred("OPENAI_KEY", "OpenAI", true)
    );
    assert!(!reply.2.to_string().contains("sk-proj-abc123"));
    assert_eq!(reply.2["created_at"], created["created_at"]);
    assert!(timestamp(&reply.2["updated_at"]) >= timestamp(&created["updated_at"]));

    // Description only: value still set.
    let reply = admin
        .put(
            "/api/admin/credentials/OPENAI_KEY",
            json!({ "description": "OpenAI project key" }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(
        credential_view(&reply.2),
        cred("OPENAI_KEY", "OpenAI project key", true)
    );

    // Both at once.
    let reply = admin
        .put(
            "/api/admin/credentials/OPENAI_KEY",
            json!({ "value": "sk-proj-def456", "description": "rotated" }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(
        credential_view(&reply.2),
        cred("OPENAI_KEY", "rotated", true)
    );

    assert_eq!(
        admin_credentials(&admin).await,
        vec![cred("OPENAI_KEY", "rotated", true)]
    );

    // Unknown credential.
    let reply = admin
        .put(
            "/api/admin/credentials/NOPE",
            json!({ "value": "whatever" }),
        )
        .await;
    assert_error(&reply, StatusCode::NOT_FOUND);
    assert_eq!(admin_credentials(&admin).await.len(), 1);
}

#[tokio::test]
async fn delete_credential() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "A_KEY", "a", Some("va")).await;
    create_credential(&admin, "B_KEY", "b", None).await;
    let reply = admin.delete("/api/admin/credentials/A_KEY").await;
    assert_eq!(reply.0, StatusCode::NO_CONTENT, "{}", reply.2);
    assert_eq!(reply.2, Value::Null);
    assert_eq!(
        admin_credentials(&admin).await,
        vec![cred("B_KEY", "b", false)]
    );
    // The name is free again.
    create_credential(&admin, "A_KEY", "again", None).await;
    assert_eq!(
        admin_credentials(&admin).await,
        vec![cred("A_KEY", "again", false), cred("B_KEY", "b", false)]
    );
}

#[tokio::test]
async fn delete_blocked_by_locked_profile_only() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "USED_LOCKED", "l", Some("v1")).await;
    create_credential(&admin, "USED_UNLOCKED", "u", Some("v2")).await;
    create_credential(&admin, "USED_REVOKED", "r", Some("v3")).await;
    create_credential(&admin, "OTHER", "o", Some("v4")).await;

    let locked = create_profile(&admin, "locked", &["USED_LOCKED", "OTHER"]).await;
    lock_profile(&admin, &locked).await;
    let unlocked = create_profile(&admin, "unlocked", &["USED_UNLOCKED", "OTHER"]).await;
    let revoked = create_profile(&admin, "revoked", &["USED_REVOKED", "OTHER"]).await;
    let (_, revoked_key_id, _) = lock_profile(&admin, &revoked).await;
    assert_status(
        &admin
            .post_empty(&format!("/api/admin/profiles/{revoked}/revoke"))
            .await,
        StatusCode::OK,
    );

    // Used by a locked, unrevoked profile: conflict, nothing changes.
    let reply = admin.delete("/api/admin/credentials/USED_LOCKED").await;
    assert_error(&reply, StatusCode::CONFLICT);

    // Used only by an unlocked profile: deleted and removed from it.
    let reply = admin.delete("/api/admin/credentials/USED_UNLOCKED").await;
    assert_eq!(reply.0, StatusCode::NO_CONTENT, "{}", reply.2);
    let reply = admin.get(&format!("/api/admin/profiles/{unlocked}")).await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(
        profile_view(&reply.2),
        expected_profile(
            &unlocked,
            "unlocked",
            false,
            false,
            Value::Null,
            json!([cred_entry("OTHER", "o", true)])
        )
    );

    // Used only by a revoked profile: deleted and removed from it.
    let reply = admin.delete("/api/admin/credentials/USED_REVOKED").await;
    assert_eq!(reply.0, StatusCode::NO_CONTENT, "{}", reply.2);
    let reply = admin.get(&format!("/api/admin/profiles/{revoked}")).await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(
        profile_view(&reply.2),
        expected_profile(
            &revoked,
            "revoked",
            true,
            true,
            json!(revoked_key_id),
            json!([cred_entry("OTHER", "o", true)])
        )
    );

    assert_eq!(
        admin_credentials(&admin).await,
        vec![cred("OTHER", "o", true), cred("USED_LOCKED", "l", true)]
    );
    let reply = admin.get(&format!("/api/admin/profiles/{locked}")).await;
    let view = profile_view(&reply.2);
    assert_eq!(
        view["credentials"],
        json!([
            cred_entry("OTHER", "o", true),
            cred_entry("USED_LOCKED", "l", true)
        ])
    );
}

#[tokio::test]
async fn name_validation() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let too_long = format!("A{}", "b".repeat(64));
    for bad in [
        "",
        "1STARTS_WITH_DIGIT",
        "has-dash",
        "has space",
        "dot.name",
        "ÜMLAUT",
        "slash/name",
        too_long.as_str(),
    ] {
        let reply = admin
            .post(
                "/api/admin/credentials",
                json!({ "name": bad, "description": "d" }),
            )
            .await;
        let detail = assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            detail.contains("name"),
            "detail for {bad:?} should name `name`: {detail}"
        );
    }
    assert_eq!(admin_credentials(&admin).await, Vec::<Value>::new());

    let max = format!("_{}", "x9".repeat(31) + "Z");
    assert_eq!(max.len(), 64);
    for good in ["_", "a", "Z_9", "lower_case", max.as_str()] {
        let reply = admin
            .post(
                "/api/admin/credentials",
                json!({ "name": good, "description": "d" }),
            )
            .await;
        assert_eq!(reply.0, StatusCode::CREATED, "{good:?}: {}", reply.2);
        assert_eq!(reply.2["name"], json!(good));
    }
    assert_eq!(admin_credentials(&admin).await.len(), 5);
}

#[tokio::test]
async fn description_and_value_limits() {
    let app = TestApp::start().await;
    let admin = app.admin().await;

    // Description: 1000 ok, 1001 rejected (create and update).
    let reply = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "LONG_DESC", "description": "d".repeat(1001) }),
        )
        .await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "LONG_DESC", "description": "d".repeat(1000) }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    let reply = admin
        .put(
            "/api/admin/credentials/LONG_DESC",
            json!({ "description": "e".repeat(1001) }),
        )
        .await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);

    // Value: 64 KiB ok, one byte more rejected; empty rejected.
    let reply = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "BIG", "description": "d", "value": "v".repeat(65537) }),
        )
        .await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "BIG", "description": "d", "value": "v".repeat(65536) }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    assert_eq!(credential_view(&reply.2), cred("BIG", "d", true));
    let reply = admin
        .put(
            "/api/admin/credentials/LONG_DESC",
            json!({ "value": "w".repeat(65537) }),
        )
        .await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);

    let reply = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "EMPTY", "description": "d", "value": "" }),
        )
        .await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = admin
        .put("/api/admin/credentials/LONG_DESC", json!({ "value": "" }))
        .await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        admin_credentials(&admin).await,
        vec![
            cred("BIG", "d", true),
            cred("LONG_DESC", &"d".repeat(1000), false)
        ]
    );
}

#[tokio::test]
async fn oversized_body_is_413_json() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let body = json!({ "name": "HUGE", "description": "d", "value": "x".repeat(1024 * 1024 + 10) });
    let reply = admin.post("/api/admin/credentials", body.clone()).await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE);
    // The agent API has the same limit.
    let reply = app
        .client()
        .post(
            "/credentials",
            json!({ "credentials": [{ "name": "HUGE", "description": "x".repeat(1024 * 1024 + 10) }] }),
        )
        .await;
    assert_error(&reply, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(admin_credentials(&admin).await, Vec::<Value>::new());
}

#[tokio::test]
async fn malformed_json_is_a_json_error() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let cases: [&[u8]; 5] = [
        b"{not json",
        b"",
        b"[1,2,3]",
        br#"{"name": 5, "description": "d"}"#,
        br#"{"description": "missing name"}"#,
    ];
    for body in cases {
        let reply = admin
            .raw(
                Method::POST,
                "/api/admin/credentials",
                Some("application/json"),
                body.to_vec(),
                &[],
            )
            .await;
        assert!(
            reply.0 == StatusCode::BAD_REQUEST || reply.0 == StatusCode::UNPROCESSABLE_ENTITY,
            "body {:?}: got {} {}",
            String::from_utf8_lossy(body),
            reply.0,
            reply.2
        );
        assert_error(&reply, reply.0);

        let reply = app
            .client()
            .raw(
                Method::POST,
                "/credentials",
                Some("application/json"),
                body.to_vec(),
                &[],
            )
            .await;
        assert!(
            reply.0 == StatusCode::BAD_REQUEST || reply.0 == StatusCode::UNPROCESSABLE_ENTITY,
            "agent body {:?}: got {} {}",
            String::from_utf8_lossy(body),
            reply.0,
            reply.2
        );
        assert_error(&reply, reply.0);
    }
    assert_eq!(admin_credentials(&admin).await, Vec::<Value>::new());
}

#[tokio::test]
async fn health_and_unknown_paths() {
    let app = TestApp::start().await;
    let client = app.client();
    let reply = client.get("/health").await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2["status"], json!("ok"), "{}", reply.2);
    assert_eq!(
        reply.2["version"],
        json!(env!("CARGO_PKG_VERSION")),
        "{}",
        reply.2
    );

    for path in ["/nope", "/api/nope", "/credentials/x/y/z"] {
        let reply = client.get(path).await;
        assert_error(&reply, StatusCode::NOT_FOUND);
    }
    let admin = app.admin().await;
    assert_error(
        &admin.get("/api/admin/does-not-exist").await,
        StatusCode::NOT_FOUND,
    );
}
