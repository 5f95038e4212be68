//! Admin profile management: lifecycle (create, update, lock, revoke,
//! regenerate, delete) and the no-leak guarantee for values and keys.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use axum::http::StatusCode;
use chrono::{Duration, Utc};
use common::*;
use serde_json::{json, Value};

fn path(id: &str) -> String {
    format!("/api/admin/profiles/{id}")
}

async fn get_profile(admin: &Client, id: &str) -> Value {
    let reply = admin.get(&path(id)).await;
    assert_status(&reply, StatusCode::OK);
    assert!(reply.2.get("key").is_none(), "GET must not return a key");
    profile_view(&reply.2)
}

#[tokio::test]
async fn create_get_and_list() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "STRIPE_KEY", "Stripe", Some("sk_1")).await;
    create_credential(&admin, "AWS_KEY", "AWS", None).await;

    let reply = admin.get("/api/admin/profiles").await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2, json!({ "profiles": [] }));

    let reply = admin
        .post(
            "/api/admin/profiles",
            json!({ "description": "billing agent", "credentials": ["STRIPE_KEY", "AWS_KEY"] }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    let id = reply.2["id"].as_str().unwrap().to_string();
    let expected = expected_profile(
        &id,
        "billing agent",
        false,
        false,
        Value::Null,
        json!([
            cred_entry("AWS_KEY", "AWS", false),
            cred_entry("STRIPE_KEY", "Stripe", true)
        ]),
    );
    assert_eq!(profile_view(&reply.2), expected);
    assert_eq!(reply.2["last_used_at"], Value::Null);
    assert_eq!(get_profile(&admin, &id).await, expected);

    // Without a credentials field.
    let reply = admin
        .post("/api/admin/profiles", json!({ "description": "empty" }))
        .await;
    assert_status(&reply, StatusCode::CREATED);
    let id2 = reply.2["id"].as_str().unwrap().to_string();
    assert_ne!(id, id2);
    let expected2 = expected_profile(&id2, "empty", false, false, Value::Null, json!([]));
    assert_eq!(profile_view(&reply.2), expected2);

    let reply = admin.get("/api/admin/profiles").await;
    assert_status(&reply, StatusCode::OK);
    let obj = reply.2.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["profiles"]);
    let mut listed: Vec<Value> = reply.2["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(profile_view)
        .collect();
    listed.sort_by_key(|p| p["description"].as_str().unwrap().to_string());
    assert_eq!(listed, vec![expected, expected2]);

    // Unknown profile.
    assert_error(
        &admin.get(&path("no-such-profile")).await,
        StatusCode::NOT_FOUND,
    );

    // Unknown credential at creation (inferred from the credentials endpoints).
    let reply = admin
        .post(
            "/api/admin/profiles",
            json!({ "description": "bad", "credentials": ["STRIPE_KEY", "MISSING_ONE"] }),
        )
        .await;
    let detail = assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail.contains("MISSING_ONE"), "{detail}");
    // Overlong description at creation.
    let reply = admin
        .post(
            "/api/admin/profiles",
            json!({ "description": "d".repeat(1001) }),
        )
        .await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    let reply = admin.get("/api/admin/profiles").await;
    assert_eq!(reply.2["profiles"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn update_description_expiry_and_hosts() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let id = create_profile(&admin, "before", &[]).await;

    let future = Utc::now() + Duration::days(30);
    let future_s = canonical_time(future);
    let reply = admin
        .put(
            &path(&id),
            json!({
                "description": "after",
                "expires_at": future_s,
                "allowed_hosts": ["api.stripe.com", "*.example.com", "host:443"],
            }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);
    let expected = json!({
        "id": id,
        "description": "after",
        "locked": false,
        "revoked": false,
        "expired": false,
        "key_id": null,
        "credentials": [],
        "allowed_hosts": ["api.stripe.com", "*.example.com", "host:443"],
        "record": "off",
        "replay_protection": true,
        "approval": "off",
        "expires_at": future_s,
    });
    assert_eq!(profile_view(&reply.2), expected);
    assert_eq!(get_profile(&admin, &id).await, expected);

    // A past expiry marks the profile expired; an empty host list means no network.
    let past_s = canonical_time(Utc::now() - Duration::hours(1));
    let reply = admin
        .put(
            &path(&id),
            json!({ "description": "after", "expires_at": past_s, "allowed_hosts": [] }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);
    let expected = json!({
        "id": id,
        "description": "after",
        "locked": false,
        "revoked": false,
        "expired": true,
        "key_id": null,
        "credentials": [],
        "allowed_hosts": [],
        "record": "off",
        "replay_protection": true,
        "approval": "off",
        "expires_at": past_s,
    });
    assert_eq!(profile_view(&reply.2), expected);
    assert_eq!(get_profile(&admin, &id).await, expected);

    // Clearing both.
    let reply = admin
        .put(
            &path(&id),
            json!({ "description": "cleared", "expires_at": null, "allowed_hosts": null }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);
    let mut expected = expected_profile(&id, "cleared", false, false, Value::Null, json!([]));
    expected["allowed_hosts"] = Value::Null;
    assert_eq!(profile_view(&reply.2), expected);
    assert_eq!(get_profile(&admin, &id).await, expected);

    // Invalid host patterns are rejected and change nothing.
    for bad in [
        "",
        "https://api.stripe.com",
        "api.stripe.com/v1",
        "has space.com",
    ] {
        let reply = admin
            .put(
                &path(&id),
                json!({ "description": "bad", "expires_at": null, "allowed_hosts": ["ok.example.com", bad] }),
            )
            .await;
        assert_eq!(
            reply.0,
            StatusCode::UNPROCESSABLE_ENTITY,
            "pattern {bad:?}: {}",
            reply.2
        );
        assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    }
    // Overlong description.
    let reply = admin
        .put(
            &path(&id),
            json!({ "description": "d".repeat(1001), "expires_at": null, "allowed_hosts": null }),
        )
        .await;
    assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(get_profile(&admin, &id).await, expected);

    // Unknown profile.
    let reply = admin
        .put(
            &path("no-such-profile"),
            json!({ "description": "x", "expires_at": null, "allowed_hosts": null }),
        )
        .await;
    assert_error(&reply, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn add_and_remove_credentials() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "A_KEY", "a", Some("va")).await;
    create_credential(&admin, "B_KEY", "b", None).await;
    create_credential(&admin, "C_KEY", "c", Some("vc")).await;
    let id = create_profile(&admin, "p", &["A_KEY"]).await;
    let creds = format!("{}/credentials", path(&id));

    let reply = admin
        .post(&creds, json!({ "credentials": ["B_KEY", "C_KEY"] }))
        .await;
    assert_status(&reply, StatusCode::OK);
    let expected = expected_profile(
        &id,
        "p",
        false,
        false,
        Value::Null,
        json!([
            cred_entry("A_KEY", "a", true),
            cred_entry("B_KEY", "b", false),
            cred_entry("C_KEY", "c", true)
        ]),
    );
    assert_eq!(profile_view(&reply.2), expected);

    // Adding one already present is harmless.
    let reply = admin
        .post(&creds, json!({ "credentials": ["A_KEY"] }))
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(profile_view(&reply.2), expected);

    // Unknown names: 422 naming them, nothing added.
    let reply = admin
        .post(&creds, json!({ "credentials": ["C_KEY", "GHOST_KEY"] }))
        .await;
    let detail = assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail.contains("GHOST_KEY"), "{detail}");
    let reply = admin
        .delete_json(&creds, json!({ "credentials": ["PHANTOM_KEY"] }))
        .await;
    let detail = assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail.contains("PHANTOM_KEY"), "{detail}");
    assert_eq!(get_profile(&admin, &id).await, expected);

    let reply = admin
        .delete_json(&creds, json!({ "credentials": ["A_KEY", "C_KEY"] }))
        .await;
    assert_status(&reply, StatusCode::OK);
    let expected = expected_profile(
        &id,
        "p",
        false,
        false,
        Value::Null,
        json!([cred_entry("B_KEY", "b", false)]),
    );
    assert_eq!(profile_view(&reply.2), expected);
    assert_eq!(get_profile(&admin, &id).await, expected);

    // Unknown profile.
    let reply = admin
        .post(
            "/api/admin/profiles/no-such-profile/credentials",
            json!({ "credentials": ["A_KEY"] }),
        )
        .await;
    assert_error(&reply, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn lock_requires_values_and_returns_key_once() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "HAS_VALUE", "h", Some("value-1")).await;
    create_credential(&admin, "NO_VALUE_YET", "n", None).await;
    let id = create_profile(&admin, "to lock", &["HAS_VALUE", "NO_VALUE_YET"]).await;
    let lock = format!("{}/lock", path(&id));

    let reply = admin.post_empty(&lock).await;
    let detail = assert_error(&reply, StatusCode::CONFLICT);
    assert!(detail.contains("NO_VALUE_YET"), "{detail}");
    assert_eq!(get_profile(&admin, &id).await["locked"], json!(false));

    assert_status(
        &admin
            .put(
                "/api/admin/credentials/NO_VALUE_YET",
                json!({ "value": "value-2" }),
            )
            .await,
        StatusCode::OK,
    );
    let reply = admin.post_empty(&lock).await;
    assert_status(&reply, StatusCode::OK);
    let (view, _key, key_id, secret) = split_lock_response(&reply.2);
    let expected = expected_profile(
        &id,
        "to lock",
        true,
        false,
        json!(key_id),
        json!([
            cred_entry("HAS_VALUE", "h", true),
            cred_entry("NO_VALUE_YET", "n", true)
        ]),
    );
    assert_eq!(view, expected);

    // The key is never returned again.
    assert_eq!(get_profile(&admin, &id).await, expected);
    let reply = admin.get("/api/admin/profiles").await;
    assert!(!reply.2.to_string().contains(&secret));
    assert!(reply.2["profiles"][0].get("key").is_none());

    // Locking twice: conflict.
    assert_error(&admin.post_empty(&lock).await, StatusCode::CONFLICT);

    // Locked profiles cannot change their credentials.
    let creds = format!("{}/credentials", path(&id));
    assert_error(
        &admin
            .post(&creds, json!({ "credentials": ["HAS_VALUE"] }))
            .await,
        StatusCode::CONFLICT,
    );
    assert_error(
        &admin
            .delete_json(&creds, json!({ "credentials": ["HAS_VALUE"] }))
            .await,
        StatusCode::CONFLICT,
    );
    assert_eq!(get_profile(&admin, &id).await, expected);

    // Unknown profile.
    assert_error(
        &admin
            .post_empty("/api/admin/profiles/no-such-profile/lock")
            .await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn regenerate_key_replaces_key_id() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let agent = app.client();
    create_credential(&admin, "K", "k", Some("v")).await;
    let id = create_profile(&admin, "regen", &["K"]).await;
    let regen = format!("{}/regenerate-key", path(&id));

    // Not locked yet: conflict.
    assert_error(&admin.post_empty(&regen).await, StatusCode::CONFLICT);

    let (old_key, old_key_id, old_secret) = lock_profile(&admin, &id).await;
    let reply = agent.get(&format!("/profiles/{old_key_id}")).await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2["id"], json!(id));

    let reply = admin.post_empty(&regen).await;
    assert_status(&reply, StatusCode::OK);
    let (view, new_key, new_key_id, new_secret) = split_lock_response(&reply.2);
    assert_ne!(new_key, old_key);
    assert_ne!(new_key_id, old_key_id);
    assert_ne!(new_secret, old_secret);
    let expected = expected_profile(
        &id,
        "regen",
        true,
        false,
        json!(new_key_id),
        json!([cred_entry("K", "k", true)]),
    );
    assert_eq!(view, expected);
    assert_eq!(get_profile(&admin, &id).await, expected);

    assert_error(
        &agent.get(&format!("/profiles/{old_key_id}")).await,
        StatusCode::NOT_FOUND,
    );
    let reply = agent.get(&format!("/profiles/{new_key_id}")).await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(profile_view(&reply.2), expected);

    assert_error(
        &admin
            .post_empty("/api/admin/profiles/no-such-profile/regenerate-key")
            .await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn revoke_is_irreversible() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "K", "k", Some("v")).await;
    let id = create_profile(&admin, "rev", &["K"]).await;
    let (_, key_id, _) = lock_profile(&admin, &id).await;

    let reply = admin.post_empty(&format!("{}/revoke", path(&id))).await;
    assert_status(&reply, StatusCode::OK);
    let expected = expected_profile(
        &id,
        "rev",
        true,
        true,
        json!(key_id),
        json!([cred_entry("K", "k", true)]),
    );
    assert_eq!(profile_view(&reply.2), expected);
    assert!(reply.2.get("key").is_none());
    assert_eq!(get_profile(&admin, &id).await, expected);

    assert_error(
        &admin.post_empty(&format!("{}/lock", path(&id))).await,
        StatusCode::CONFLICT,
    );
    assert_error(
        &admin
            .post_empty(&format!("{}/regenerate-key", path(&id)))
            .await,
        StatusCode::CONFLICT,
    );
    assert_error(
        &admin
            .put(
                &path(&id),
                json!({ "description": "revived?", "expires_at": null, "allowed_hosts": null }),
            )
            .await,
        StatusCode::CONFLICT,
    );
    let creds = format!("{}/credentials", path(&id));
    assert_error(
        &admin.post(&creds, json!({ "credentials": ["K"] })).await,
        StatusCode::CONFLICT,
    );
    assert_error(
        &admin
            .delete_json(&creds, json!({ "credentials": ["K"] }))
            .await,
        StatusCode::CONFLICT,
    );
    assert_eq!(get_profile(&admin, &id).await, expected);

    assert_error(
        &admin
            .post_empty("/api/admin/profiles/no-such-profile/revoke")
            .await,
        StatusCode::NOT_FOUND,
    );
}

#[tokio::test]
async fn delete_profile_rules() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "K", "k", Some("v")).await;

    let unlocked = create_profile(&admin, "unlocked", &["K"]).await;
    let locked = create_profile(&admin, "locked", &["K"]).await;
    lock_profile(&admin, &locked).await;

    let reply = admin.delete(&path(&locked)).await;
    let detail = assert_error(&reply, StatusCode::CONFLICT);
    assert!(
        detail.to_lowercase().contains("revoke"),
        "detail should say to revoke first: {detail}"
    );
    assert_eq!(get_profile(&admin, &locked).await["locked"], json!(true));

    let reply = admin.delete(&path(&unlocked)).await;
    assert_eq!(reply.0, StatusCode::NO_CONTENT, "{}", reply.2);
    assert_eq!(reply.2, Value::Null);
    assert_error(&admin.get(&path(&unlocked)).await, StatusCode::NOT_FOUND);

    assert_status(
        &admin.post_empty(&format!("{}/revoke", path(&locked))).await,
        StatusCode::OK,
    );
    let reply = admin.delete(&path(&locked)).await;
    assert_eq!(reply.0, StatusCode::NO_CONTENT, "{}", reply.2);
    assert_error(&admin.get(&path(&locked)).await, StatusCode::NOT_FOUND);

    let reply = admin.get("/api/admin/profiles").await;
    assert_eq!(reply.2, json!({ "profiles": [] }));
    // The credential survives its profiles.
    let reply = admin.get("/api/admin/credentials").await;
    assert_eq!(reply.2["credentials"].as_array().unwrap().len(), 1);

    assert_error(&admin.delete(&path(&locked)).await, StatusCode::NOT_FOUND);
}

/// Sets distinctive values, runs the whole admin and agent flow including error
/// paths, and checks that no response ever contains a value, and that a key's
/// secret part appears only in the response that issued it.
#[tokio::test]
async fn secrets_never_leak() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    // No session, but sharing the admin's transcript.
    let agent = admin.anonymous();

    let v_stripe = distinctive("sk_live_");
    let v_stripe2 = distinctive("sk_live_rotated_");
    let v_aws = distinctive("AKIAsecret");
    let v_gh = distinctive("ghp_");
    let v_rejected = distinctive("sk_live_rejected_");
    let v_agent = distinctive("sk_live_agent_");
    let values = [&v_stripe, &v_stripe2, &v_aws, &v_gh, &v_rejected, &v_agent];

    // Values set on create and on update.
    create_credential(&admin, "STRIPE_KEY", "Stripe", Some(&v_stripe)).await;
    create_credential(&admin, "AWS_KEY", "AWS", None).await;
    create_credential(&admin, "GH_TOKEN", "GitHub", None).await;
    admin
        .put("/api/admin/credentials/AWS_KEY", json!({ "value": v_aws }))
        .await;
    admin
        .put(
            "/api/admin/credentials/GH_TOKEN",
            json!({ "value": v_gh, "description": "GitHub PAT" }),
        )
        .await;
    admin
        .put(
            "/api/admin/credentials/STRIPE_KEY",
            json!({ "value": v_stripe2 }),
        )
        .await;

    // Error paths carrying values.
    let r = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "STRIPE_KEY", "description": "dup", "value": v_rejected }),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT);
    let r = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "bad-name", "description": "x", "value": v_rejected }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    let r = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "X_KEY", "description": 7, "value": v_rejected }),
        )
        .await;
    assert!(r.0.is_client_error());
    let r = admin
        .put(
            "/api/admin/credentials/NOT_THERE",
            json!({ "value": v_rejected }),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND);
    let r = admin
        .put(
            "/api/admin/credentials/AWS_KEY",
            json!({ "value": format!("{v_rejected}{}", "x".repeat(70_000)) }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);
    let r = agent
        .post(
            "/credentials",
            json!({ "credentials": [{ "name": "AGENT_KEY", "description": "a", "value": v_agent }] }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY);

    // Profile flow.
    let id = create_profile(&admin, "leak test", &["STRIPE_KEY", "AWS_KEY"]).await;
    admin
        .post(
            &format!("{}/credentials", path(&id)),
            json!({ "credentials": ["GH_TOKEN"] }),
        )
        .await;
    let lock_label = format!("POST {}/lock", path(&id));
    let (_, key_id, secret) = lock_profile(&admin, &id).await;

    // Everything readable, from both sides.
    for p in [
        "/api/admin/credentials".to_string(),
        "/api/admin/profiles".to_string(),
        path(&id),
        "/api/admin/status".to_string(),
    ] {
        assert_status(&admin.get(&p).await, StatusCode::OK);
    }
    for p in [
        "/credentials".to_string(),
        "/profiles".to_string(),
        format!("/profiles/{id}"),
        format!("/profiles/{key_id}"),
    ] {
        agent.get(&p).await;
    }
    assert_error(
        &admin.post_empty(&format!("{}/lock", path(&id))).await,
        StatusCode::CONFLICT,
    );

    let regen_label = format!("POST {}/regenerate-key", path(&id));
    let reply = admin
        .post_empty(&format!("{}/regenerate-key", path(&id)))
        .await;
    assert_status(&reply, StatusCode::OK);
    let (_, _, new_key_id, new_secret) = split_lock_response(&reply.2);
    for p in [
        "/api/admin/profiles".to_string(),
        path(&id),
        "/api/admin/credentials".to_string(),
    ] {
        assert_status(&admin.get(&p).await, StatusCode::OK);
    }
    agent.get(&format!("/profiles/{new_key_id}")).await;
    agent.get(&format!("/profiles/{key_id}")).await;
    agent.get("/profiles").await;
    assert_status(
        &admin.post_empty(&format!("{}/revoke", path(&id))).await,
        StatusCode::OK,
    );
    admin.get(&path(&id)).await;
    agent.get(&format!("/profiles/{new_key_id}")).await;
    admin.post_empty("/api/admin/logout").await;

    let transcript = admin.transcript();
    assert!(
        transcript.len() > 30,
        "transcript too short: {}",
        transcript.len()
    );
    for value in values {
        let leaks: Vec<&str> = transcript
            .iter()
            .filter(|e| e.text.contains(value.as_str()))
            .map(|e| e.label.as_str())
            .collect();
        assert_eq!(leaks, Vec::<&str>::new(), "a credential value leaked");
    }
    let with_secret: Vec<&str> = transcript
        .iter()
        .filter(|e| e.text.contains(&secret))
        .map(|e| e.label.as_str())
        .collect();
    assert_eq!(with_secret, vec![lock_label.as_str()], "first key's secret");
    let with_new_secret: Vec<&str> = transcript
        .iter()
        .filter(|e| e.text.contains(&new_secret))
        .map(|e| e.label.as_str())
        .collect();
    assert_eq!(
        with_new_secret,
        vec![regen_label.as_str()],
        "regenerated key's secret"
    );
}

/// An agent that passes its whole key where a profile id or key id is expected
/// must not get the secret part reflected back (for example in a 404 detail).
#[tokio::test]
async fn full_key_is_not_echoed() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let agent = admin.anonymous();
    create_credential(&admin, "K", "k", Some("v")).await;
    let id = create_profile(&admin, "echo", &["K"]).await;
    let (key, _, secret) = lock_profile(&admin, &id).await;

    let reply = agent.get(&format!("/profiles/{key}")).await;
    assert!(
        !reply.2.to_string().contains(&secret),
        "GET /profiles/<full key> echoed the key's secret: {} {}",
        reply.0,
        reply.2
    );
    let reply = admin.get(&path(&key)).await;
    assert!(
        !reply.2.to_string().contains(&secret),
        "GET /api/admin/profiles/<full key> echoed the key's secret: {} {}",
        reply.0,
        reply.2
    );
    let reply = agent
        .post(
            &format!("/profiles/{key}/credentials"),
            json!({ "credentials": ["K"] }),
        )
        .await;
    assert!(
        !reply.2.to_string().contains(&secret),
        "POST /profiles/<full key>/credentials echoed the key's secret: {} {}",
        reply.0,
        reply.2
    );
    let with_secret: Vec<String> = admin
        .transcript()
        .iter()
        .filter(|e| e.text.contains(&secret))
        .map(|e| e.label.clone())
        .collect();
    assert_eq!(with_secret, vec![format!("POST {}/lock", path(&id))]);
}
