//! The `airlock` CLI client against a live server: exec (exit codes, outputs,
//! LLM answers from a command and from stdin), listings, and the key never
//! appearing in anything it prints.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};

mod live;

struct Live {
    inner: live::Live,
    base: String,
    key: String,
}

async fn live() -> Live {
    let inner = live::start().await;
    inner.set_value("TOKEN", "tok_cli_5f4e3d2c1b").await;
    let (_, key) = inner.locked_profile(&["TOKEN"]).await;
    // The listing test expects the slot's description.
    inner
        .admin(
            reqwest::Method::PUT,
            "/api/admin/credentials/TOKEN",
            json!({"description": "t"}),
        )
        .await;
    let base = inner.base.clone();
    Live { inner, base, key }
}

fn run(live: &Live, args: &[&str], script: &str, stdin: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("script.py");
    std::fs::write(&path, script).unwrap();
    let mut all: Vec<String> = args.iter().map(std::string::ToString::to_string).collect();
    if args.first() == Some(&"exec") {
        all.push(path.display().to_string());
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(&all)
        .env("AIRLOCK_URL", &live.base)
        .env("AIRLOCK_KEY", &live.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let secret = live.key.split_once(':').unwrap().1;
    for text in [&out.stdout, &out.stderr] {
        let t = String::from_utf8_lossy(text);
        assert!(
            !t.contains(secret) && !t.contains("tok_cli_5f4e3d2c1b"),
            "CLI printed a secret: {t}"
        );
    }
    out
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_prints_outputs_and_exit_code_reflects_status() {
    let live = std::sync::Arc::new(live().await);
    let l = live.clone();
    let out = blocking(move || {
        run(
            &l,
            &["exec"],
            "print('hi', settings.get('TOKEN'))\nset_result({'x': 1})\n",
            "",
        )
    })
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hi [REDACTED:TOKEN]\n{\n  \"x\": 1\n}\n"
    );

    let l = live.clone();
    let out = blocking(move || run(&l, &["exec"], "raise KeyError('nope')\n", "")).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KeyError"));

    let l = live.clone();
    let out =
        blocking(move || run(&l, &["exec", "--timeout", "1"], "while True: pass\n", "")).await;
    assert_eq!(out.status.code(), Some(2));

    let l = live.clone();
    let out = blocking(move || {
        run(
            &l,
            &["exec", "--llm-command", "tr a-z A-Z"],
            "set_result(llm.complete('shout this'))\n",
            "",
        )
    })
    .await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "\"SHOUT THIS\"\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("shout this"));

    let l = live.clone();
    let out = blocking(move || {
        run(
            &l,
            &["exec", "--json"],
            "set_result(llm.complete('q?'))\n",
            "typed answer\n",
        )
    })
    .await;
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"], "typed answer");
    assert_eq!(v["status"], "completed");

    let l = live.clone();
    let out = blocking(move || run(&l, &["profiles"], "", "")).await;
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("locked") && text.contains("[TOKEN]"),
        "{text}"
    );
    let l = live.clone();
    let out = blocking(move || run(&l, &["credentials", "--json"], "", "")).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["credentials"],
        json!([{"name": "TOKEN", "description": "t", "value_exists": true,
                "mode": "plain", "bound_hosts": [], "request": null}])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_refuses_a_bad_key_clearly() {
    let live = live().await;
    let key = format!("{}:wrongsecret", live.key.split_once(':').unwrap().0);
    let bad = Live {
        base: live.base.clone(),
        key,
        inner: live.inner,
    };
    let out = blocking(move || run(&bad, &["exec"], "set_result(1)", "")).await;
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hash_mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for the one pending approval request; returns its execution id.
async fn pending_approval(live: &Live) -> String {
    for _ in 0..200 {
        let (_, v) = live
            .inner
            .admin(reqwest::Method::GET, "/api/admin/approvals", Value::Null)
            .await;
        if let Some(id) = v["approvals"][0]["execution_id"].as_str() {
            return id.to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no approval request appeared");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_prints_the_approval_link_and_waits_for_the_decision() {
    let live = std::sync::Arc::new(live().await);
    let (_, profiles) = live
        .inner
        .admin(reqwest::Method::GET, "/api/admin/profiles", Value::Null)
        .await;
    let pid = profiles["profiles"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = live
        .inner
        .admin(
            reqwest::Method::PUT,
            &format!("/api/admin/profiles/{pid}"),
            json!({"approval": "every_run"}),
        )
        .await;
    assert_eq!(s, 200);
    for approve in [true, false] {
        let l = live.clone();
        let cli = tokio::task::spawn_blocking(move || run(&l, &["exec"], "set_result(7)\n", ""));
        let id = pending_approval(&live).await;
        let (s, v) = if approve {
            live.inner
                .admin(
                    reqwest::Method::POST,
                    &format!("/api/admin/approvals/{id}/approve"),
                    json!({}),
                )
                .await
        } else {
            live.inner
                .admin(
                    reqwest::Method::POST,
                    &format!("/api/admin/approvals/{id}/deny"),
                    json!({"reason": "not now"}),
                )
                .await
        };
        assert_eq!(s, 200, "{v}");
        let out = cli.await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("{}/ui/approvals/{id}", live.base)),
            "{stderr}"
        );
        if approve {
            assert_eq!(out.status.code(), Some(0), "{stderr}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "7\n");
        } else {
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains("denied: denied by an approver: not now"),
                "{stderr}"
            );
        }
    }
}
