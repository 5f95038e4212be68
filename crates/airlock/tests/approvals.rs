//! Script approval end to end: the real router, sandbox and Python. Each test
//! drives one path of a request (approved, denied, expired, revoked, restarted)
//! and checks what the agent sees and whether the script ran.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};

type Env = common::sandboxed::Sandboxed;

async fn env_with(cfg: impl FnOnce(&mut airlock::config::Config)) -> Env {
    Env::start_with(cfg)
        .await
        .expect("these tests need the real sandbox")
}

/// A locked profile with one credential and `approval` set; returns (id, key).
async fn approving_profile(env: &Env, mode: &str) -> (String, String) {
    let (id, key) = env
        .locked_profile("approve me", &[("API_KEY", "sk_appr_0123456789")])
        .await;
    let (s, v) = env
        .admin(
            "PUT",
            &format!("/api/admin/profiles/{id}"),
            Some(json!({"approval": mode})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["approval"], mode);
    (id, key)
}

/// Submits `script`; returns the 202 answer.
async fn submit(env: &Env, key: &str, script: &str) -> Value {
    let (s, _, v) = env.submit(key, script, Some(20)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    v
}

/// Long-polls until the status is no longer `from`.
async fn next_status(env: &Env, key: &str, id: &str, from: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (s, v) = env.poll(key, id, 5).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if v["status"] != from {
            return v;
        }
        assert!(Instant::now() < deadline, "still {from}: {v}");
    }
}

/// Polls until a final status.
async fn finished(env: &Env, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = env.poll(key, id, 10).await;
        if matches!(
            v["status"].as_str(),
            Some("completed" | "error" | "timeout" | "denied")
        ) {
            return v;
        }
        assert!(Instant::now() < deadline, "never finished: {v}");
    }
}

fn id_of(v: &Value) -> String {
    v["execution_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn every_run_waits_for_each_decision_and_a_denial_never_runs() {
    let env = env_with(|_| {}).await;
    let (pid, key) = approving_profile(&env, "every_run").await;
    let script = "print('ran')\nset_result(len(settings.get('API_KEY')))\n";
    let v = submit(&env, &key, script).await;
    assert_eq!(v["status"], "awaiting_approval", "{v}");
    let id = id_of(&v);
    assert_eq!(
        v["approval_url"],
        format!("http://airlock.test/ui/approvals/{id}")
    );
    // The agent's poll says so, with the link; a short long-poll returns unchanged.
    let (_, polled) = env.poll(&key, &id, 1).await;
    assert_eq!(polled["status"], "awaiting_approval");
    assert_eq!(polled["approval_url"], v["approval_url"]);
    // The approver sees the script and what it may use; never a value.
    let (s, list) = env.admin("GET", "/api/admin/approvals", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["approvals"][0]["execution_id"], id.as_str(), "{list}");
    let (_, d) = env
        .admin("GET", &format!("/api/admin/approvals/{id}"), None)
        .await;
    assert_eq!(d["script"], script);
    assert_eq!(d["profile_id"], pid.as_str());
    assert_eq!(d["credentials"], json!(["API_KEY"]));
    assert_eq!(d["allowed_hosts"], json!([]));
    assert_eq!(d["closest_approved"], Value::Null);
    assert!(!d.to_string().contains("sk_appr_0123456789"));
    // Counted runs make no sense under every_run.
    let (s, _) = env
        .admin(
            "POST",
            &format!("/api/admin/approvals/{id}/approve"),
            Some(json!({"runs": 3})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // Approved: it runs with its credentials.
    let (s, a) = env
        .admin("POST", &format!("/api/admin/approvals/{id}/approve"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["status"], "approved");
    let done = finished(&env, &key, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"], 18);
    // Deciding again is a conflict.
    let (s, e) = env
        .admin(
            "POST",
            &format!("/api/admin/approvals/{id}/deny"),
            Some(json!({"reason": "late"})),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("approval_decided"))
    );

    // The same script again asks again; this time it is denied, with a reason.
    let v = submit(&env, &key, script).await;
    assert_eq!(v["status"], "awaiting_approval");
    let id2 = id_of(&v);
    let (_, d) = env
        .admin("GET", &format!("/api/admin/approvals/{id2}"), None)
        .await;
    assert_eq!(d["closest_approved"]["execution_id"], id.as_str(), "{d}");
    assert_eq!(d["closest_approved"]["diff"], "");
    let (s, _) = env
        .admin(
            "POST",
            &format!("/api/admin/approvals/{id2}/deny"),
            Some(json!({"reason": "  "})),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a denial needs a reason"
    );
    let (s, _) = env
        .admin(
            "POST",
            &format!("/api/admin/approvals/{id2}/deny"),
            Some(json!({"reason": "not on a Friday"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let done = finished(&env, &key, &id2).await;
    assert_eq!(done["status"], "denied", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("not on a Friday"),
        "{done}"
    );
    assert_eq!(done["stdout"], "", "a denied script never ran");
    assert_eq!(done["result"], Value::Null);
    assert_eq!(done["approval_url"], Value::Null);
}

#[tokio::test]
async fn first_run_lets_the_same_script_run_again_and_a_change_asks_again() {
    let env = env_with(|_| {}).await;
    let (_, key) = approving_profile(&env, "first_run").await;
    let script = "total = 3\nset_result(total)\n";
    let first = id_of(&submit(&env, &key, script).await);
    // Approved for two runs in all: this one and one more.
    let (s, a) = env
        .admin(
            "POST",
            &format!("/api/admin/approvals/{first}/approve"),
            Some(json!({"runs": 2, "note": "reviewed"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    assert_eq!(a["runs_left"], 1);
    assert_eq!(finished(&env, &key, &first).await["result"], 3);
    // The same bytes run without asking...
    let again = submit(&env, &key, script).await;
    assert_eq!(again["status"], "pending", "{again}");
    assert_eq!(finished(&env, &key, &id_of(&again)).await["result"], 3);
    // ...until the counted runs are used up.
    let third = submit(&env, &key, script).await;
    assert_eq!(third["status"], "awaiting_approval", "{third}");
    // A changed script asks, and the approver sees what changed.
    let changed = "total = 4\nset_result(total)\n";
    let v = submit(&env, &key, changed).await;
    assert_eq!(v["status"], "awaiting_approval");
    let (_, d) = env
        .admin("GET", &format!("/api/admin/approvals/{}", id_of(&v)), None)
        .await;
    assert_eq!(d["closest_approved"]["execution_id"], first.as_str(), "{d}");
    let diff = d["closest_approved"]["diff"].as_str().unwrap();
    assert!(
        diff.contains("-total = 3") && diff.contains("+total = 4"),
        "{diff}"
    );
    // Unlimited approval of the changed script, then withdrawn: it asks again.
    let (s, _) = env
        .admin(
            "POST",
            &format!("/api/admin/approvals/{}/approve", id_of(&v)),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(finished(&env, &key, &id_of(&v)).await["result"], 4);
    assert_eq!(submit(&env, &key, changed).await["status"], "pending");
    let (s, w) = env
        .admin(
            "POST",
            &format!("/api/admin/approvals/{}/withdraw", id_of(&v)),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert_eq!(w["status"], "withdrawn");
    assert_eq!(
        submit(&env, &key, changed).await["status"],
        "awaiting_approval"
    );
    // Turning approval off lets everything run at once again.
    let (_, key_profile) = env.admin("GET", "/api/admin/profiles", None).await;
    let pid = key_profile["profiles"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    env.admin(
        "PUT",
        &format!("/api/admin/profiles/{pid}"),
        Some(json!({"approval": "off"})),
    )
    .await;
    assert_eq!(
        submit(&env, &key, "set_result(5)").await["status"],
        "pending"
    );
}

#[tokio::test]
async fn an_undecided_request_expires_closed_and_a_revoke_denies_the_rest() {
    let env = env_with(|c| c.approval_timeout = 1).await;
    let (pid, key) = approving_profile(&env, "every_run").await;
    let id = id_of(&submit(&env, &key, "set_result(1)").await);
    let done = next_status(&env, &key, &id, "awaiting_approval").await;
    assert_eq!(done["status"], "denied", "{done}");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("no approver decided"),
        "{done}"
    );
    let (s, e) = env
        .admin("POST", &format!("/api/admin/approvals/{id}/approve"), None)
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("approval_decided"))
    );
    let (_, a) = env
        .admin("GET", &format!("/api/admin/approvals/{id}"), None)
        .await;
    assert_eq!(a["status"], "expired");

    // Revoking the profile denies what still waits.
    let env = env_with(|_| {}).await;
    let (pid2, key) = approving_profile(&env, "every_run").await;
    let id = id_of(&submit(&env, &key, "set_result(1)").await);
    let (s, _) = env
        .admin("POST", &format!("/api/admin/profiles/{pid2}/revoke"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, row) = env
        .admin("GET", &format!("/api/admin/executions/{id}"), None)
        .await;
    assert_eq!(row["status"], "denied", "{row}");
    assert!(row["error"].as_str().unwrap().contains("revoked"), "{row}");
    assert_ne!(pid, pid2);
}

#[tokio::test]
async fn a_waiting_execution_survives_a_restart_and_runs_when_approved() {
    let env = env_with(|_| {}).await;
    let (_, key) = approving_profile(&env, "every_run").await;
    let id = id_of(&submit(&env, &key, "set_result('after restart')").await);
    let config = env.app.state.config.as_ref().clone();
    let Env { dir, app, .. } = env;
    drop(app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let env = Env::reopen(dir, config).await;
    let (_, v) = env.poll(&key, &id, 0).await;
    assert_eq!(v["status"], "awaiting_approval", "{v}");
    // A long-poll started before the decision wakes with it.
    let poll = {
        let key = key.clone();
        let id = id.clone();
        let app = env.app.clone();
        tokio::spawn(async move {
            let (key_id, _) = key.split_once(':').unwrap();
            common::send_reply(
                &app,
                common::req(
                    "GET",
                    &format!("/executions/{id}?wait=20"),
                    None,
                    Some(key_id),
                    None,
                ),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (s, _) = env
        .admin("POST", &format!("/api/admin/approvals/{id}/approve"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, _, woke) = poll.await.unwrap();
    assert_ne!(woke["status"], "awaiting_approval", "{woke}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(finished(&env, &key, &id).await["result"], "after restart");
}
