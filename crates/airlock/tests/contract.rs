//! What schemathesis (`.ci/schemathesis.sh`) found where the server and its
//! OpenAPI document disagreed: a body that is not a JSON object, whole-number
//! floats for integer fields, and an unsupported method on an admin path.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::json;

#[tokio::test]
async fn a_json_body_that_is_not_an_object_is_refused_with_422() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let id = create_profile(&admin, "contract", &[]).await;

    // serde would read `UpdateProfile` from an array of its fields in order.
    for body in [
        json!([null, null]),
        json!([]),
        json!(["x"]),
        json!(7),
        json!("x"),
        json!(null),
    ] {
        let reply = admin
            .put(&format!("/api/admin/profiles/{id}"), body.clone())
            .await;
        let detail = assert_error_code(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        assert!(
            detail.contains("expected a JSON object"),
            "{body}: {detail}"
        );
        let reply = admin.post("/api/admin/credentials", body.clone()).await;
        assert_error_code(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
    // The profile is unchanged, objects still work, and malformed JSON stays a 400.
    let reply = admin
        .put(&format!("/api/admin/profiles/{id}"), json!({}))
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2["description"], "contract");
    let reply = admin
        .raw(
            Method::PUT,
            &format!("/api/admin/profiles/{id}"),
            Some("application/json"),
            b"[null,".to_vec(),
            &[],
        )
        .await;
    assert_error_code(&reply, StatusCode::BAD_REQUEST, "bad_request");
    let reply = admin
        .raw(
            Method::PUT,
            &format!("/api/admin/profiles/{id}"),
            Some("text/plain"),
            b"{}".to_vec(),
            &[],
        )
        .await;
    assert_eq!(
        reply.0,
        StatusCode::FORBIDDEN,
        "CSRF guard: non-JSON admin write"
    );
}

#[tokio::test]
async fn timeouts_accept_whole_number_floats_and_refuse_fractions() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "CONTRACT_TOKEN", "", Some("v")).await;
    let id = create_profile(&admin, "contract", &["CONTRACT_TOKEN"]).await;
    let (_, key_id, _) = lock_profile(&admin, &id).await;
    let agent = app.client();
    let auth = format!("Bearer {key_id}");
    let send = |body: serde_json::Value| {
        let agent = &agent;
        let auth = auth.clone();
        async move {
            agent
                .raw(
                    Method::POST,
                    "/execute",
                    Some("application/json"),
                    body.to_string().into_bytes(),
                    &[("authorization", &auth)],
                )
                .await
        }
    };
    let hash = "0".repeat(64);
    // An integer timeout gets past parsing to the (failing) signature check...
    let int = send(json!({"script": "1", "hash": hash, "timeout": 51, "llm_timeout": 5})).await;
    assert_ne!(int.0, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", int.2);
    // ...and so does the same number written as a float (a JSON Schema integer).
    let float =
        send(json!({"script": "1", "hash": hash, "timeout": 51.0, "llm_timeout": 5.0})).await;
    assert_eq!((float.0, &float.2), (int.0, &int.2));
    for (field, value) in [
        ("timeout", json!(51.5)),
        ("llm_timeout", json!(0.25)),
        ("timeout", json!(-3.0)),
    ] {
        let mut body = json!({"script": "1", "hash": hash});
        body[field] = value.clone();
        let reply = send(body).await;
        let detail = assert_error_code(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        assert!(detail.contains(field), "{value}: {detail}");
        assert!(
            detail.contains("whole number of seconds"),
            "{value}: {detail}"
        );
    }
}

#[tokio::test]
async fn an_unsupported_method_on_an_admin_path_is_405_with_allow_not_a_csrf_403() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    for client in [app.client(), admin.clone()] {
        let reply = client
            .raw(Method::PUT, "/api/admin/status", None, Vec::new(), &[])
            .await;
        assert_error_code(&reply, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert_eq!(reply.1["allow"], "GET,HEAD");
        let reply = client
            .raw(Method::DELETE, "/api/admin/setup", None, Vec::new(), &[])
            .await;
        assert_error_code(&reply, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        assert_eq!(reply.1["allow"], "POST");
    }
    // A declared method still meets the CSRF guard.
    let reply = admin
        .raw(Method::POST, "/api/admin/logout", None, Vec::new(), &[])
        .await;
    assert_error_code(&reply, StatusCode::FORBIDDEN, "csrf_rejected");
    // Unknown paths are still 404, agent paths 405 with Allow too.
    let reply = app
        .client()
        .raw(Method::PATCH, "/health", None, Vec::new(), &[])
        .await;
    assert_error_code(&reply, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(reply.1["allow"], "GET,HEAD");
}
