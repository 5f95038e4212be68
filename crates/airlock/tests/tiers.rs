//! Sandbox tiers through the whole server: `AIRLOCK_SANDBOX=container` runs scripts
//! without any namespace (what an unprivileged container allows) and says so in
//! `/health`, the UI and `/skill.md`; `auto` prefers the full tier where it works.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use airlock::config::SandboxMode;
use axum::http::StatusCode;
use serde_json::{json, Value};

use common::sandboxed::Sandboxed;

const VALUE: &str = "tier-test-credential-8Kq2Zr7w";

async fn health(env: &Sandboxed) -> Value {
    let (s, _, v) =
        common::send_reply(&env.app, common::req("GET", "/health", None, None, None)).await;
    assert_eq!(s, StatusCode::OK);
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn the_container_tier_runs_a_credential_script_redacted_and_names_itself() {
    let Some(env) = Sandboxed::start_with(|c| c.sandbox = SandboxMode::Container).await else {
        return;
    };
    let sandbox = health(&env).await["sandbox"].clone();
    assert_eq!(sandbox["ready"], json!(true), "{sandbox}");
    assert_eq!(sandbox["tier"], json!("container"), "{sandbox}");
    assert_eq!(sandbox["missing"], json!([]), "{sandbox}");
    assert_eq!(sandbox["permissive"], json!(false), "{sandbox}");
    assert_eq!(
        sandbox["tier_layers"],
        json!([
            "uid_drop",
            "landlock",
            "landlock_net",
            "landlock_scope",
            "seccomp",
            "rlimits",
            "no_new_privs",
            "cap_drop"
        ])
    );
    assert!(
        sandbox["not_in_tier"]
            .as_array()
            .unwrap()
            .contains(&json!("pid_ns")),
        "{sandbox}"
    );

    let (_, key) = env.locked_profile("tiers", &[("API_TOKEN", VALUE)]).await;
    let v = env
        .run(
            &key,
            r#"
import os
token = settings.get("API_TOKEN")
print("token is", token)
with open("note.txt", "w") as f:
    f.write(token)
set_result({"len": len(token), "cwd_is_home": os.getcwd() == os.environ["HOME"],
            "read_back": open("note.txt").read() == token})
"#,
        )
        .await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    assert_eq!(
        v["result"],
        json!({"len": VALUE.len(), "cwd_is_home": true, "read_back": true})
    );
    assert_eq!(v["stdout"], json!("token is [REDACTED:API_TOKEN]\n"), "{v}");
    assert!(!v.to_string().contains(VALUE));

    // The agent's onboarding text and the operator's pages name the tier.
    let (s, _, skill) =
        common::send_reply(&env.app, common::req("GET", "/skill.md", None, None, None)).await;
    assert_eq!(s, StatusCode::OK);
    let skill = skill.as_str().map(str::to_string).unwrap_or_default();
    assert!(skill.contains("Sandbox: ready, container tier"), "{skill}");
    let (s, _, page) = common::send_reply(
        &env.app,
        common::req("GET", "/ui/settings", Some(&env.cookie), None, None),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let page = page.as_str().map(str::to_string).unwrap_or_default();
    assert!(page.contains("Tier: <strong>container</strong>"), "{page}");
    assert!(page.contains("Not part of this tier: "), "{page}");
    assert!(!page.contains("degraded"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_prefers_the_full_tier_where_it_works() {
    let Some(env) = Sandboxed::start_with(|c| c.sandbox = SandboxMode::Auto).await else {
        return;
    };
    let sandbox = health(&env).await["sandbox"].clone();
    assert_eq!(sandbox["tier"], json!("full"), "{sandbox}");
    assert_eq!(sandbox["missing"], json!([]), "{sandbox}");
    assert_eq!(sandbox["not_in_tier"], json!([]), "{sandbox}");
}
