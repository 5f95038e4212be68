//! The agent requests inbox: what agents ask for (profiles, slots) waits for the
//! operator, who accepts or rejects it with a reason the agent reads; filling a
//! value or locking accepts; asking again reopens a rejected request.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

async fn pending(admin: &Client) -> Vec<Value> {
    let reply = admin.get("/api/admin/requests").await;
    assert_status(&reply, StatusCode::OK);
    reply.2["requests"].as_array().unwrap().clone()
}

fn subjects(items: &[Value]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_string(),
                i["subject"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_slot_request_is_rejected_with_a_reason_reopened_and_accepted_by_its_value() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let agent = app.client();
    let reply = agent
        .post(
            "/credentials",
            json!({ "credentials": [{ "name": "PROD_DB", "description": "read replica" }],
                    "message": "the weekly revenue report needs it" }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);

    let items = pending(&admin).await;
    assert_eq!(subjects(&items), [("slot".into(), "PROD_DB".into())]);
    assert_eq!(items[0]["message"], "the weekly revenue report needs it");
    assert_eq!(items[0]["summary"], "credential PROD_DB: read replica");
    assert_eq!(items[0]["link"], "/ui/credentials?fill=PROD_DB");

    // A rejection needs a reason.
    let reply = admin
        .post(
            "/api/admin/requests/slot/PROD_DB/reject",
            json!({ "reason": "  " }),
        )
        .await;
    assert_error_code(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    let reply = admin
        .post(
            "/api/admin/requests/slot/PROD_DB/reject",
            json!({ "reason": "use the analytics warehouse instead" }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2["status"], "rejected");
    // Decided once: a second decision is a 409.
    let reply = admin
        .post("/api/admin/requests/slot/PROD_DB/accept", json!({}))
        .await;
    assert_error_code(&reply, StatusCode::CONFLICT, "request_decided");
    assert!(pending(&admin).await.is_empty());

    // The agent reads the reason.
    let reply = agent.get("/credentials").await;
    let slot = &reply.2["credentials"][0];
    assert_eq!(request_state(&slot["request"]).as_deref(), Some("rejected"));
    assert_eq!(
        slot["request"]["reason"],
        "use the analytics warehouse instead"
    );
    assert_eq!(
        slot["request"]["message"],
        "the weekly revenue report needs it"
    );

    // Asking again reopens it, with the new message.
    let reply = agent
        .post(
            "/credentials",
            json!({ "credentials": [{ "name": "PROD_DB" }], "message": "the warehouse lacks refunds" }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    assert_eq!(
        reply.2,
        json!({ "created": [], "skipped": ["PROD_DB"], "reopened": ["PROD_DB"] })
    );
    let items = pending(&admin).await;
    assert_eq!(items[0]["message"], "the warehouse lacks refunds");
    assert!(items[0]["reason"].is_null(), "{}", items[0]);

    // Filling in the value accepts it.
    let reply = admin
        .put(
            "/api/admin/credentials/PROD_DB",
            json!({ "value": "pg-pw-55" }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(
        request_state(&reply.2["request"]).as_deref(),
        Some("accepted")
    );
    assert!(pending(&admin).await.is_empty());
    let all = admin.get("/api/admin/requests?status=accepted").await;
    assert_eq!(
        subjects(all.2["requests"].as_array().unwrap()),
        [("slot".into(), "PROD_DB".into())]
    );
    // Agents still never see a value.
    assert!(!agent
        .get("/credentials")
        .await
        .2
        .to_string()
        .contains("pg-pw-55"));
}

#[tokio::test]
async fn a_profile_request_is_rejected_revised_and_accepted_by_locking() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let agent = app.client();
    create_credential(&admin, "CRM_TOKEN", "crm", Some("crm-secret-1")).await;
    create_credential(&admin, "BILLING_TOKEN", "billing", Some("bill-secret-2")).await;
    let reply = agent
        .post(
            "/profiles",
            json!({ "description": "churn report", "credentials": ["CRM_TOKEN", "BILLING_TOKEN"],
                    "message": "joins CRM accounts with invoices" }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    let id = reply.2["id"].as_str().unwrap().to_string();
    profile_view(&reply.2);
    assert_eq!(reply.2["request"]["status"], "pending");
    assert_eq!(
        reply.2["request"]["message"],
        "joins CRM accounts with invoices"
    );

    let items = pending(&admin).await;
    assert_eq!(subjects(&items), [("profile".into(), id.clone())]);
    assert_eq!(
        items[0]["summary"],
        "profile \"churn report\" with BILLING_TOKEN, CRM_TOKEN"
    );

    let reply = admin
        .post(
            &format!("/api/admin/requests/profile/{id}/reject"),
            json!({ "reason": "billing is out of scope; CRM alone" }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);
    let p = agent.get(&format!("/profiles/{id}")).await.2;
    assert_eq!(request_state(&p["request"]).as_deref(), Some("rejected"));
    assert_eq!(p["request"]["reason"], "billing is out of scope; CRM alone");

    // The agent revises the profile: the request waits again.
    let reply = agent
        .delete_json(
            &format!("/profiles/{id}/credentials"),
            json!({ "credentials": ["BILLING_TOKEN"] }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2["request"]["status"], "pending");
    assert!(reply.2["request"]["reason"].is_null());
    assert_eq!(
        subjects(&pending(&admin).await),
        [("profile".into(), id.clone())]
    );

    // Accepting with a note; then locking leaves it accepted.
    let reply = admin
        .post(
            &format!("/api/admin/requests/profile/{id}/accept"),
            json!({ "note": "locking after review" }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2["reason"], "locking after review");
    lock_profile(&admin, &id).await;
    let p = agent.get(&format!("/profiles/{id}")).await.2;
    assert_eq!(p["request"]["status"], "accepted");
    assert!(pending(&admin).await.is_empty());
}

#[tokio::test]
async fn locking_accepts_a_pending_or_rejected_profile_and_deleting_forgets_the_request() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let agent = app.client();
    create_credential(&admin, "K", "k", Some("v-123456")).await;
    let mut ids = Vec::new();
    for d in ["one", "two"] {
        let reply = agent
            .post(
                "/profiles",
                json!({ "description": d, "credentials": ["K"] }),
            )
            .await;
        ids.push(reply.2["id"].as_str().unwrap().to_string());
    }
    admin
        .post(
            &format!("/api/admin/requests/profile/{}/reject", ids[1]),
            json!({ "reason": "not now" }),
        )
        .await;
    for id in &ids {
        lock_profile(&admin, id).await;
        let p = admin.get(&format!("/api/admin/profiles/{id}")).await.2;
        assert_eq!(p["request"]["status"], "accepted", "{p}");
        assert!(p["request"]["reason"].is_null(), "{p}");
    }
    // Operator-made profiles are no requests.
    let own = create_profile(&admin, "mine", &["K"]).await;
    let p = admin.get(&format!("/api/admin/profiles/{own}")).await.2;
    assert!(p["request"].is_null(), "{p}");
    // A deleted profile's request is gone.
    let reply = agent
        .post("/profiles", json!({ "description": "three" }))
        .await;
    let three = reply.2["id"].as_str().unwrap().to_string();
    assert_eq!(
        subjects(&pending(&admin).await),
        [("profile".into(), three.clone())]
    );
    let reply = admin.delete(&format!("/api/admin/profiles/{three}")).await;
    assert_status(&reply, StatusCode::NO_CONTENT);
    assert!(pending(&admin).await.is_empty());
    let all = admin.get("/api/admin/requests?status=all").await.2;
    assert_eq!(all["requests"].as_array().unwrap().len(), 2, "{all}");
}

#[tokio::test]
async fn bad_inbox_input_is_refused_clearly() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let agent = app.client();
    let reply = admin
        .post("/api/admin/requests/bogus/X/accept", json!({}))
        .await;
    let detail = assert_error_code(&reply, StatusCode::NOT_FOUND, "not_found");
    assert!(detail.contains("profile, slot or packages"), "{detail}");
    let reply = admin
        .post("/api/admin/requests/slot/NOPE/accept", json!({}))
        .await;
    assert_error_code(&reply, StatusCode::NOT_FOUND, "not_found");
    let reply = admin.get("/api/admin/requests?status=maybe").await;
    assert_error_code(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    // An agent's message is bounded like a description.
    let reply = agent
        .post(
            "/credentials",
            json!({ "credentials": [{ "name": "A" }], "message": "x".repeat(1001) }),
        )
        .await;
    let detail = assert_error_code(&reply, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert!(detail.contains("message"), "{detail}");
    assert!(agent.get("/credentials").await.2["credentials"]
        .as_array()
        .unwrap()
        .is_empty());
    // Agents cannot reach the inbox.
    let reply = agent.get("/api/admin/requests").await;
    assert_eq!(reply.0, StatusCode::UNAUTHORIZED);
}
