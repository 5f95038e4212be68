//! Password change (ends other sessions, throttled) and the rule that a locked
//! profile's credentials cannot be deleted even after it expired.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

#[tokio::test]
async fn password_change_ends_other_sessions_and_keeps_this_one() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let (s, h, _) = admin
        .anonymous()
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut other = admin.anonymous();
    other.cookie = Some(session_cookie(&h).unwrap());
    assert_status(&other.get("/api/admin/credentials").await, StatusCode::OK);

    let reply = admin
        .post(
            "/api/admin/password",
            json!({ "current_password": ADMIN_PASSWORD, "new_password": "a brand new passphrase" }),
        )
        .await;
    assert_status(&reply, StatusCode::NO_CONTENT);
    assert_status(&admin.get("/api/admin/credentials").await, StatusCode::OK);
    assert_error_code(
        &other.get("/api/admin/credentials").await,
        StatusCode::UNAUTHORIZED,
        "not_authenticated",
    );
    let old = admin
        .anonymous()
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_error_code(&old, StatusCode::UNAUTHORIZED, "wrong_password");
    let new = admin
        .anonymous()
        .post(
            "/api/admin/login",
            json!({ "password": "a brand new passphrase" }),
        )
        .await;
    assert_status(&new, StatusCode::OK);
}

#[tokio::test]
async fn wrong_current_password_is_throttled() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let body =
        json!({ "current_password": "not the password", "new_password": "whatever whatever" });
    for _ in 0..5 {
        assert_error_code(
            &admin.post("/api/admin/password", body.clone()).await,
            StatusCode::UNAUTHORIZED,
            "wrong_password",
        );
    }
    let right = json!({ "current_password": ADMIN_PASSWORD, "new_password": "whatever whatever" });
    let reply = admin.post("/api/admin/password", right).await;
    assert_error_code(&reply, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(reply.1.get("retry-after").is_some());
}

#[tokio::test]
async fn failed_logins_from_another_browser_do_not_block_a_logged_in_operator() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    // Another browser on the same address (the same machine, a shared proxy)
    // fails to log in until it is locked out.
    let other = app.client().with_peer(&admin.peer.to_string());
    for _ in 0..5 {
        let reply = other
            .post(
                "/api/admin/login",
                json!({ "password": "wrong password!!" }),
            )
            .await;
        assert_error_code(&reply, StatusCode::UNAUTHORIZED, "wrong_password");
    }
    let locked = other
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_error_code(&locked, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // The logged-in operator's password re-check is theirs alone.
    let right =
        json!({ "current_password": ADMIN_PASSWORD, "new_password": "a new long password" });
    let reply = admin.post("/api/admin/password", right).await;
    assert_eq!(reply.0, StatusCode::NO_CONTENT, "{}", reply.2);
}

#[tokio::test]
async fn credential_of_an_expired_locked_profile_cannot_be_deleted() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "DB_URL", "db", Some("postgres://x")).await;
    let id = create_profile(&admin, "p", &["DB_URL"]).await;
    lock_profile(&admin, &id).await;
    let reply = admin
        .put(
            &format!("/api/admin/profiles/{id}"),
            json!({ "expires_at": "2020-01-01T00:00:00Z" }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2["expired"], true);
    let del = admin.delete("/api/admin/credentials/DB_URL").await;
    assert_error_code(&del, StatusCode::CONFLICT, "credential_in_use");
}

#[tokio::test]
async fn sessions_are_listed_without_tokens_and_others_can_be_ended() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let (s, h, _) = admin
        .anonymous()
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_eq!(s, StatusCode::OK);
    let mut other = admin.anonymous();
    other.cookie = Some(session_cookie(&h).unwrap());

    let reply = admin.get("/api/admin/sessions").await;
    assert_status(&reply, StatusCode::OK);
    let sessions = reply.2["sessions"].as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let text = reply.2.to_string();
    for c in [
        admin.cookie.as_ref().unwrap(),
        other.cookie.as_ref().unwrap(),
    ] {
        let token = c.split_once('=').unwrap().1;
        assert!(!text.contains(token), "a session token was listed");
    }
    assert!(sessions
        .iter()
        .all(|s| s["id"].as_str().unwrap().len() == 12));

    let reply = admin
        .post("/api/admin/sessions/logout-others", json!({}))
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2, json!({ "ended": 1 }));
    assert_error_code(
        &other.get("/api/admin/credentials").await,
        StatusCode::UNAUTHORIZED,
        "not_authenticated",
    );
    assert_status(&admin.get("/api/admin/credentials").await, StatusCode::OK);
    let reply = admin.get("/api/admin/sessions").await;
    assert_eq!(reply.2["sessions"].as_array().unwrap().len(), 1);
    assert_error_code(
        &other.get("/api/admin/sessions").await,
        StatusCode::UNAUTHORIZED,
        "not_authenticated",
    );
}
