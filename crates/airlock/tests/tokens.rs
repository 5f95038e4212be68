//! Admin API tokens: made from a session, shown once, limited by role (403 naming
//! the role), never reaching session-bound routes, revocable, expiring, audited.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{json, Value};

/// A client that sends `token` as its bearer (no cookie).
struct Bearer<'a> {
    client: &'a Client,
    token: String,
}

impl Bearer<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let ct = (method != Method::GET && method != Method::DELETE).then_some("application/json");
        self.client
            .raw(
                method,
                path,
                ct,
                bytes,
                &[("authorization", &format!("Bearer {}", self.token))],
            )
            .await
    }
}

async fn token(admin: &Client, name: &str, role: &str) -> (String, String) {
    let reply = admin
        .post("/api/admin/tokens", json!({ "name": name, "role": role }))
        .await;
    assert_status(&reply, StatusCode::CREATED);
    let t = reply.2["token"].as_str().unwrap().to_string();
    assert!(t.starts_with("atk_"), "{t}");
    assert_eq!(reply.1["cache-control"], "no-store");
    (reply.2["id"].as_str().unwrap().to_string(), t)
}

#[tokio::test]
async fn each_role_may_do_its_part_and_is_refused_the_rest_by_name() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let anon = app.client();
    create_credential(&admin, "EXISTING", "e", Some("v-existing-1")).await;
    let mut tokens = std::collections::BTreeMap::new();
    for role in ["owner", "operator", "approver", "auditor"] {
        tokens.insert(role, token(&admin, &format!("{role} bot"), role).await);
    }
    let list = admin.get("/api/admin/tokens").await.2;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 4);
    for (_, t) in tokens.values() {
        let secret = t.split('.').nth(1).unwrap();
        assert!(!list.to_string().contains(secret), "{list}");
    }
    let as_role = |role: &str| Bearer {
        client: &anon,
        token: tokens[role].1.clone(),
    };

    // Reading: every role.
    for role in ["owner", "operator", "approver", "auditor"] {
        let r = as_role(role)
            .call(Method::GET, "/api/admin/profiles", None)
            .await;
        assert_eq!(r.0, StatusCode::OK, "{role}: {}", r.2);
    }
    // Changing credentials: owner and operator only.
    for (role, ok) in [
        ("owner", true),
        ("operator", true),
        ("approver", false),
        ("auditor", false),
    ] {
        let r = as_role(role)
            .call(
                Method::POST,
                "/api/admin/credentials",
                Some(json!({ "name": format!("BY_{}", role.to_uppercase()) })),
            )
            .await;
        if ok {
            assert_eq!(r.0, StatusCode::CREATED, "{role}: {}", r.2);
        } else {
            let detail = assert_error_code(&r, StatusCode::FORBIDDEN, "role_forbidden");
            assert!(detail.contains(&format!("the {role} role")), "{detail}");
            assert!(detail.contains("POST /api/admin/credentials"), "{detail}");
        }
    }
    // Deciding approvals: an approver may (404: there is none to decide), an auditor not.
    let r = as_role("approver")
        .call(
            Method::POST,
            "/api/admin/approvals/exec_none/deny",
            Some(json!({ "reason": "no" })),
        )
        .await;
    assert_eq!(r.0, StatusCode::NOT_FOUND, "{}", r.2);
    let r = as_role("auditor")
        .call(
            Method::POST,
            "/api/admin/approvals/exec_none/deny",
            Some(json!({ "reason": "no" })),
        )
        .await;
    assert_error_code(&r, StatusCode::FORBIDDEN, "role_forbidden");
    // The audit log: an auditor reads and checks it.
    let r = as_role("auditor")
        .call(Method::GET, "/api/admin/audit", None)
        .await;
    assert_eq!(r.0, StatusCode::OK);
    let r = as_role("auditor")
        .call(Method::POST, "/api/admin/audit/verify", Some(json!({})))
        .await;
    assert_eq!(r.2["state"], "ok", "{}", r.2);
    // An auditor downloads the log; the download is recorded under the token.
    let req = axum::http::Request::get("/api/admin/audit/export")
        .header("host", DEFAULT_HOST)
        .header("authorization", format!("Bearer {}", tokens["auditor"].1))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(app.router(), req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let got = admin
        .get("/api/admin/audit?action=GET%20/api/admin/audit/export")
        .await
        .2;
    assert_eq!(
        got["events"][0]["actor"],
        format!("token:{}", tokens["auditor"].0),
        "{got}"
    );
    assert_eq!(got["events"][0]["role"], "auditor", "{got}");
    // Where notifications go: owner only.
    let r = as_role("operator")
        .call(Method::DELETE, "/api/admin/notifications/email", None)
        .await;
    assert_error_code(&r, StatusCode::FORBIDDEN, "role_forbidden");
    // Session-bound routes: no token at all, not even an owner's.
    for (method, path) in [
        (Method::POST, "/api/admin/tokens"),
        (Method::POST, "/api/admin/export"),
        (Method::POST, "/api/admin/password"),
        (Method::GET, "/api/admin/sessions"),
    ] {
        let r = as_role("owner")
            .call(
                method.clone(),
                path,
                Some(json!({ "name": "x", "role": "owner" })),
            )
            .await;
        let detail = assert_error_code(&r, StatusCode::FORBIDDEN, "role_forbidden");
        assert!(
            detail.contains("browser session"),
            "{method} {path}: {detail}"
        );
    }

    // The audit log names the token, never its secret.
    let events = admin
        .get("/api/admin/audit?action=POST%20/api/admin/credentials")
        .await
        .2;
    let actors: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["actor"].as_str().unwrap())
        .collect();
    assert!(
        actors.contains(&format!("token:{}", tokens["operator"].0).as_str()),
        "{actors:?}"
    );
    assert!(
        actors.contains(&format!("token:{}", tokens["auditor"].0).as_str()),
        "{actors:?}"
    );
    for (_, t) in tokens.values() {
        assert!(!events.to_string().contains(t.split('.').nth(1).unwrap()));
    }
}

#[tokio::test]
async fn revoked_expired_and_forged_tokens_are_refused() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let anon = app.client();
    let (id, t) = token(&admin, "ci", "operator").await;
    let call = |t: String| {
        let anon = &anon;
        async move {
            Bearer {
                client: anon,
                token: t,
            }
            .call(Method::GET, "/api/admin/credentials", None)
            .await
        }
    };
    assert_eq!(call(t.clone()).await.0, StatusCode::OK);
    // A wrong secret for a real id.
    let forged = format!("{}.{}", t.split('.').next().unwrap(), "A".repeat(40));
    assert_error_code(
        &call(forged).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
    // Expired (the clock moved past it).
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        app.data_dir.join("airlock.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE admin_tokens SET expires_at = '2020-01-01T00:00:00Z' WHERE id = ?")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    assert_error_code(
        &call(t.clone()).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
    sqlx::query("UPDATE admin_tokens SET expires_at = NULL WHERE id = ?")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(call(t.clone()).await.0, StatusCode::OK);
    // Revoked.
    let r = admin.delete(&format!("/api/admin/tokens/{id}")).await;
    assert_eq!(r.0, StatusCode::NO_CONTENT);
    assert_error_code(
        &call(t.clone()).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
    let r = admin.delete(&format!("/api/admin/tokens/{id}")).await;
    assert_error_code(&r, StatusCode::NOT_FOUND, "not_found");
    // Bad input when making one.
    for (body, needle) in [
        (json!({ "name": "x", "role": "root" }), "role"),
        (json!({ "name": " ", "role": "owner" }), "name"),
        (
            json!({ "name": "x", "role": "owner", "expires_at": "2020-01-01T00:00:00Z" }),
            "future",
        ),
    ] {
        let r = admin.post("/api/admin/tokens", body).await;
        let detail = assert_error_code(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        assert!(detail.contains(needle), "{detail}");
    }
    // A token does not open the web UI.
    let r = anon
        .raw(
            Method::GET,
            "/api/admin/status",
            None,
            Vec::new(),
            &[("authorization", &format!("Bearer {t}"))],
        )
        .await;
    assert_eq!(r.2["authenticated"], json!(false), "{}", r.2);
}
