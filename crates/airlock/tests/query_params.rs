//! Query strings are checked like JSON bodies: a parameter the route does not
//! take is refused with 422 `invalid_input` naming it (not ignored, so a typo
//! in a filter cannot silently widen a listing), and a value of the wrong type
//! is a JSON 422 too, never axum's plain-text 400.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::json;

/// Asserts a 422 `invalid_input` whose detail names `param` and says what the
/// route accepts; returns the detail.
#[track_caller]
fn assert_unknown(reply: &Reply, param: &str, accepts: &str) -> String {
    let detail = assert_error_code(reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert!(
        detail.contains(&format!("unknown query parameter \"{param}\"")),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("this route accepts {accepts}")),
        "{detail}"
    );
    detail
}

const LIST_PARAMS: &str = "`status`, `limit`, `offset`, `profile`, `from`, `to`";

#[tokio::test]
async fn admin_listing_refuses_an_unknown_filter_instead_of_listing_everything() {
    let app = TestApp::start().await;
    let admin = app.admin().await;

    let reply = admin.get("/api/admin/executions?profile_id=prf_x").await;
    assert_unknown(&reply, "profile_id", LIST_PARAMS);
    // Next to known ones, too.
    let reply = admin
        .get("/api/admin/executions?limit=5&statuss=error")
        .await;
    assert_unknown(&reply, "statuss", LIST_PARAMS);

    // Every declared parameter is still accepted.
    let reply = admin
        .get("/api/admin/executions?status=completed&limit=5&offset=0&profile=prf_x&from=2026-01-01&to=2026-02-01T00:00:00Z")
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(
        reply.2,
        json!({"executions": [], "total": 0, "limit": 5, "offset": 0})
    );

    let reply = admin.get("/api/admin/stats?day=7").await;
    assert_unknown(&reply, "day", "`days`");
    assert_status(&admin.get("/api/admin/stats?days=7").await, StatusCode::OK);
}

#[tokio::test]
async fn a_query_value_of_the_wrong_type_is_a_json_422_naming_the_parameter() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    for (uri, param) in [
        ("/api/admin/executions?limit=abc", "limit"),
        ("/api/admin/executions?offset=1.5", "offset"),
        ("/api/admin/stats?days=", "days"),
    ] {
        let reply = admin.get(uri).await;
        let detail = assert_error_code(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        assert!(
            detail.starts_with(&format!("invalid query string: {param}: ")),
            "{uri}: {detail}"
        );
    }
    // The value itself is not echoed back.
    let reply = admin
        .get("/api/admin/executions?limit=sk_live_not_a_number")
        .await;
    let detail = assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!detail.contains("sk_live"), "{detail}");
}

#[tokio::test]
async fn agent_routes_refuse_unknown_query_parameters() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "TOKEN", "t", Some("token-value-1234")).await;
    let id = create_profile(&admin, "q", &["TOKEN"]).await;
    let (_, key_id, _) = lock_profile(&admin, &id).await;
    let agent = app.client();
    let auth = format!("Bearer {key_id}");
    let get = |uri: String| {
        let agent = agent.clone();
        let auth = auth.clone();
        async move {
            agent
                .raw(Method::GET, &uri, None, vec![], &[("authorization", &auth)])
                .await
        }
    };

    let reply = get("/executions/exec_nope?wiat=30".into()).await;
    assert_unknown(&reply, "wiat", "`wait`");
    let reply = get("/executions?profile=prf_other".into()).await;
    // `profile` is declared for the agent listing too (and replaced by the key's own).
    assert_status(&reply, StatusCode::OK);
    let reply = get("/executions?page=2".into()).await;
    assert_unknown(&reply, "page", LIST_PARAMS);
    // Known parameters keep working.
    let reply = get("/executions?limit=1".into()).await;
    assert_status(&reply, StatusCode::OK);
    let reply = get("/executions/exec_nope?wait=0".into()).await;
    assert_error_code(&reply, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn routes_without_query_parameters_refuse_any() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let anon = app.client();

    assert_unknown(
        &anon.get("/health?verbose=1").await,
        "verbose",
        "no query parameters",
    );
    assert_unknown(
        &anon.get("/credentials?name=X").await,
        "name",
        "no query parameters",
    );
    assert_unknown(
        &admin.get("/api/admin/credentials?search=X").await,
        "search",
        "no query parameters",
    );
    // A state change with a stray parameter does not happen.
    let reply = admin
        .post(
            "/api/admin/credentials?overwrite=true",
            json!({"name": "FROM_QUERY", "description": "d"}),
        )
        .await;
    assert_unknown(&reply, "overwrite", "no query parameters");
    let reply = admin.get("/api/admin/credentials/FROM_QUERY").await;
    assert_error_code(&reply, StatusCode::NOT_FOUND, "not_found");
    // Without any query string, as before.
    assert_status(&anon.get("/health").await, StatusCode::OK);
    // An empty query string is no parameter.
    assert_status(&anon.get("/health?").await, StatusCode::OK);
}

/// Every operation of the OpenAPI document, with a stray parameter: 422 naming
/// it, before any handler runs (so no route is forgotten, and none changes
/// anything).
#[tokio::test]
async fn every_documented_operation_refuses_an_undeclared_parameter() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let (status, _, doc) = admin.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let declared: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let concrete: String = path
                .split('/')
                .map(|seg| if seg.starts_with('{') { "x_1" } else { seg })
                .collect::<Vec<_>>()
                .join("/");
            let method: Method = method.to_uppercase().parse().unwrap();
            let body = (method != Method::GET).then(|| json!({}));
            let reply = admin
                .json(method.clone(), &format!("{concrete}?zz_stray=1"), body)
                .await;
            let accepts = if declared.is_empty() {
                "no query parameters".to_string()
            } else {
                declared
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let detail = assert_unknown(&reply, "zz_stray", &accepts);
            assert!(detail.contains("remove it"), "{method} {path}: {detail}");
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} operations in the document");
    // Nothing the stray requests reached was changed.
    let (_, _, creds) = admin.get("/api/admin/credentials").await;
    assert_eq!(creds, json!({"credentials": []}));
    let (_, _, status) = admin.get("/api/admin/status").await;
    assert_eq!(status["setup_required"], json!(false));
    assert_eq!(status["authenticated"], json!(true));
}
