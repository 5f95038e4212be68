//! The agent API: no session, never a value or a secret, never a lock.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use axum::http::{Method, StatusCode};
use common::*;
use serde_json::{json, Value};

async fn agent_credentials(agent: &Client) -> Value {
    let reply = agent.get("/credentials").await;
    assert_status(&reply, StatusCode::OK);
    let obj = reply.2.as_object().expect("object");
    assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["credentials"]);
    let mut body = reply.2;
    // Each request is checked, then shown by its status alone (or null).
    for c in body["credentials"].as_array_mut().unwrap() {
        short_credential(c);
        c["request"] = json!(request_state(&c["request"]));
    }
    body
}

#[tokio::test]
async fn list_credentials_shows_exactly_five_fields() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let agent = app.client();
    assert_eq!(
        agent_credentials(&agent).await,
        json!({ "credentials": [] })
    );

    create_credential(&admin, "STRIPE_KEY", "Stripe", Some("sk_live_abc")).await;
    create_credential(&admin, "AWS_KEY", "AWS", None).await;
    let body = agent_credentials(&agent).await;
    assert_eq!(
        body,
        json!({ "credentials": [
            { "name": "AWS_KEY", "description": "AWS", "value_exists": false, "mode": "plain", "bound_hosts": [], "request": null },
            { "name": "STRIPE_KEY", "description": "Stripe", "value_exists": true, "mode": "plain", "bound_hosts": [], "request": null },
        ] })
    );
    assert!(!body.to_string().contains("sk_live_abc"));
}

#[tokio::test]
async fn agents_declare_credentials_without_values() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let agent = app.client();
    create_credential(&admin, "EXISTING", "set by admin", Some("v")).await;

    let reply = agent
        .post(
            "/credentials",
            json!({ "credentials": [
                { "name": "NEW_ONE", "description": "needed for X" },
                { "name": "EXISTING", "description": "agent's idea" },
                { "name": "NEW_TWO", "description": "" },
            ] }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    assert_eq!(
        reply.2,
        json!({ "created": ["NEW_ONE", "NEW_TWO"], "skipped": ["EXISTING"], "reopened": [] })
    );

    // Existing names are not modified.
    assert_eq!(
        agent_credentials(&agent).await,
        json!({ "credentials": [
            { "name": "EXISTING", "description": "set by admin", "value_exists": true, "mode": "plain", "bound_hosts": [], "request": null },
            { "name": "NEW_ONE", "description": "needed for X", "value_exists": false, "mode": "plain", "bound_hosts": [], "request": "pending" },
            { "name": "NEW_TWO", "description": "", "value_exists": false, "mode": "plain", "bound_hosts": [], "request": "pending" },
        ] })
    );

    // All skipped.
    let reply = agent
        .post(
            "/credentials",
            json!({ "credentials": [{ "name": "NEW_ONE", "description": "changed?" }] }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    assert_eq!(
        reply.2,
        json!({ "created": [], "skipped": ["NEW_ONE"], "reopened": [] })
    );

    // Any value field is rejected, and nothing in the batch is created.
    for value in [json!("sk_live_from_agent"), json!(null), json!("")] {
        let reply = agent
            .post(
                "/credentials",
                json!({ "credentials": [
                    { "name": "VALUE_TRY_A", "description": "a" },
                    { "name": "VALUE_TRY_B", "description": "b", "value": value },
                ] }),
            )
            .await;
        assert_eq!(
            reply.0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "value {value}: {}",
            reply.2
        );
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(!reply.2.to_string().contains("sk_live_from_agent"));
    }
    // Setting a value on an existing credential is rejected too.
    let reply = agent
        .post(
            "/credentials",
            json!({ "credentials": [{ "name": "NEW_ONE", "description": "x", "value": "v2" }] }),
        )
        .await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);

    // Invalid names / descriptions.
    let reply = agent
        .post(
            "/credentials",
            json!({ "credentials": [{ "name": "bad name", "description": "x" }] }),
        )
        .await;
    let detail = assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail.contains("name"), "{detail}");
    let reply = agent
        .post(
            "/credentials",
            json!({ "credentials": [{ "name": "LONG_DESC", "description": "d".repeat(1001) }] }),
        )
        .await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);

    assert_eq!(
        agent_credentials(&agent).await,
        json!({ "credentials": [
            { "name": "EXISTING", "description": "set by admin", "value_exists": true, "mode": "plain", "bound_hosts": [], "request": null },
            { "name": "NEW_ONE", "description": "needed for X", "value_exists": false, "mode": "plain", "bound_hosts": [], "request": "pending" },
            { "name": "NEW_TWO", "description": "", "value_exists": false, "mode": "plain", "bound_hosts": [], "request": "pending" },
        ] })
    );
}

#[tokio::test]
async fn agent_profiles_lifecycle() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let agent = app.client();
    create_credential(&admin, "A_KEY", "a", Some("va")).await;
    create_credential(&admin, "B_KEY", "b", None).await;

    let reply = agent.get("/profiles").await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2, json!({ "profiles": [] }));

    let reply = agent
        .post(
            "/profiles",
            json!({ "description": "agent made", "credentials": ["A_KEY"] }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    let id = reply.2["id"].as_str().unwrap().to_string();
    let expected = expected_profile(
        &id,
        "agent made",
        false,
        false,
        Value::Null,
        json!([cred_entry("A_KEY", "a", true)]),
    );
    assert_eq!(profile_view(&reply.2), expected);

    let reply = agent
        .post("/profiles", json!({ "description": "bare" }))
        .await;
    assert_status(&reply, StatusCode::CREATED);
    let bare = reply.2["id"].as_str().unwrap().to_string();

    let reply = agent.get(&format!("/profiles/{id}")).await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(profile_view(&reply.2), expected);
    let reply = agent.get("/profiles").await;
    assert_status(&reply, StatusCode::OK);
    let mut listed: Vec<Value> = reply.2["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(profile_view)
        .collect();
    listed.sort_by_key(|p| p["description"].as_str().unwrap().to_string());
    assert_eq!(
        listed,
        vec![
            expected.clone(),
            expected_profile(&bare, "bare", false, false, Value::Null, json!([]))
        ]
    );

    // Add and remove credentials.
    let creds = format!("/profiles/{id}/credentials");
    let reply = agent
        .post(&creds, json!({ "credentials": ["B_KEY"] }))
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(
        profile_view(&reply.2),
        expected_profile(
            &id,
            "agent made",
            false,
            false,
            Value::Null,
            json!([
                cred_entry("A_KEY", "a", true),
                cred_entry("B_KEY", "b", false)
            ])
        )
    );
    let reply = agent
        .post(&creds, json!({ "credentials": ["NOT_DECLARED"] }))
        .await;
    let detail = assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail.contains("NOT_DECLARED"), "{detail}");
    let reply = agent
        .delete_json(&creds, json!({ "credentials": ["B_KEY"] }))
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(profile_view(&reply.2), expected);
    let reply = agent
        .delete_json(&creds, json!({ "credentials": ["NOT_DECLARED"] }))
        .await;
    let detail = assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail.contains("NOT_DECLARED"), "{detail}");

    // Once the admin locks it: readable by id and by key_id, but frozen.
    let (_, key_id, secret) = lock_profile(&admin, &id).await;
    let locked = expected_profile(
        &id,
        "agent made",
        true,
        false,
        json!(key_id),
        json!([cred_entry("A_KEY", "a", true)]),
    );
    // Key ids are shown only to a caller that already has them (by key-id
    // lookup); the public view by profile id hides it.
    let mut hidden = locked.clone();
    hidden["key_id"] = Value::Null;
    for (p, want) in [
        (format!("/profiles/{id}"), &hidden),
        (format!("/profiles/{key_id}"), &locked),
    ] {
        let reply = agent.get(&p).await;
        assert_status(&reply, StatusCode::OK);
        assert!(reply.2.get("key").is_none());
        assert!(!reply.2.to_string().contains(&secret));
        assert_eq!(&profile_view(&reply.2), want);
    }
    let listed = agent.get("/profiles").await;
    assert!(
        !listed.2.to_string().contains(key_id.as_str()),
        "public list leaks key ids"
    );
    assert_error(
        &agent
            .post(&creds, json!({ "credentials": ["B_KEY"] }))
            .await,
        StatusCode::CONFLICT,
    );
    assert_error(
        &agent
            .delete_json(&creds, json!({ "credentials": ["A_KEY"] }))
            .await,
        StatusCode::CONFLICT,
    );

    // Revoked: still frozen.
    assert_status(
        &admin
            .post_empty(&format!("/api/admin/profiles/{id}/revoke"))
            .await,
        StatusCode::OK,
    );
    assert_error(
        &agent
            .post(&creds, json!({ "credentials": ["B_KEY"] }))
            .await,
        StatusCode::CONFLICT,
    );
    assert_error(
        &agent
            .delete_json(&creds, json!({ "credentials": ["A_KEY"] }))
            .await,
        StatusCode::CONFLICT,
    );
    let reply = agent.get(&format!("/profiles/{key_id}")).await;
    assert_eq!(
        profile_view(&reply.2),
        expected_profile(
            &id,
            "agent made",
            true,
            true,
            json!(key_id),
            json!([cred_entry("A_KEY", "a", true)])
        )
    );

    // Unknown profile.
    assert_error(
        &agent.get("/profiles/no-such-profile").await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &agent.get("/profiles/ark_aaaaaaaaaaaaaaaaaaaaaaaa").await,
        StatusCode::NOT_FOUND,
    );
    assert_error(
        &agent
            .post(
                "/profiles/no-such-profile/credentials",
                json!({ "credentials": ["A_KEY"] }),
            )
            .await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn agents_cannot_lock_revoke_or_reach_admin() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let agent = app.client();
    create_credential(&admin, "A_KEY", "a", Some("va")).await;
    let id = create_profile(&admin, "p", &["A_KEY"]).await;

    for action in ["lock", "revoke", "regenerate-key"] {
        let reply = agent.post_empty(&format!("/profiles/{id}/{action}")).await;
        assert!(
            reply.0 == StatusCode::NOT_FOUND || reply.0 == StatusCode::METHOD_NOT_ALLOWED,
            "agent {action}: {} {}",
            reply.0,
            reply.2
        );
        assert!(reply.2.get("key").is_none(), "{}", reply.2);
    }
    let reply = agent
        .put(
            &format!("/profiles/{id}"),
            json!({ "description": "x", "expires_at": null, "allowed_hosts": null }),
        )
        .await;
    assert!(
        reply.0 == StatusCode::NOT_FOUND || reply.0 == StatusCode::METHOD_NOT_ALLOWED,
        "agent PUT profile: {} {}",
        reply.0,
        reply.2
    );
    let reply = agent.delete(&format!("/profiles/{id}")).await;
    assert!(
        reply.0 == StatusCode::NOT_FOUND || reply.0 == StatusCode::METHOD_NOT_ALLOWED,
        "agent DELETE profile: {} {}",
        reply.0,
        reply.2
    );
    let reply = agent.delete("/credentials/A_KEY").await;
    assert!(
        reply.0 == StatusCode::NOT_FOUND || reply.0 == StatusCode::METHOD_NOT_ALLOWED,
        "agent DELETE credential: {} {}",
        reply.0,
        reply.2
    );
    let reply = agent
        .put("/credentials/A_KEY", json!({ "value": "agent-value" }))
        .await;
    assert!(
        reply.0 == StatusCode::NOT_FOUND || reply.0 == StatusCode::METHOD_NOT_ALLOWED,
        "agent PUT credential: {} {}",
        reply.0,
        reply.2
    );

    // Admin routes stay closed to agents.
    for (method, p) in [
        (Method::GET, "/api/admin/credentials".to_string()),
        (Method::GET, "/api/admin/profiles".to_string()),
        (Method::GET, format!("/api/admin/profiles/{id}")),
        (Method::POST, format!("/api/admin/profiles/{id}/lock")),
    ] {
        let reply = agent.json(method.clone(), &p, None).await;
        assert_eq!(
            reply.0,
            StatusCode::UNAUTHORIZED,
            "{method} {p}: {}",
            reply.2
        );
    }

    // Nothing changed.
    let reply = admin.get(&format!("/api/admin/profiles/{id}")).await;
    assert_eq!(
        profile_view(&reply.2),
        expected_profile(
            &id,
            "p",
            false,
            false,
            Value::Null,
            json!([cred_entry("A_KEY", "a", true)])
        )
    );
    assert_eq!(
        agent_credentials(&agent).await,
        json!({ "credentials": [{ "name": "A_KEY", "description": "a", "value_exists": true, "mode": "plain", "bound_hosts": [], "request": null }] })
    );
}

#[tokio::test]
async fn expired_flag_visible_to_agents() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let agent = app.client();
    let id = create_profile(&admin, "short-lived", &[]).await;
    let past = canonical_time(chrono::Utc::now() - chrono::Duration::minutes(5));
    assert_status(
        &admin
            .put(
                &format!("/api/admin/profiles/{id}"),
                json!({ "description": "short-lived", "expires_at": past, "allowed_hosts": ["api.example.com"] }),
            )
            .await,
        StatusCode::OK,
    );
    let reply = agent.get(&format!("/profiles/{id}")).await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(
        profile_view(&reply.2),
        json!({
            "id": id,
            "description": "short-lived",
            "locked": false,
            "revoked": false,
            "expired": true,
            "key_id": null,
            "credentials": [],
            "allowed_hosts": ["api.example.com"],
            "record": "off",
            "replay_protection": true,
            "approval": "off",
            "expires_at": past,
        })
    );
}
