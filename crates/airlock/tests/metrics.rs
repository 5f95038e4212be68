//! `GET /metrics` read by the official Prometheus client's OpenMetrics parser
//! (`prometheus_client` from PyPI, installed by `.ci/run`), after real executions in
//! the real sandbox: the counts match what ran, and nothing names a profile or a
//! credential.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

type Env = common::sandboxed::Sandboxed;

const SECRET: &str = "sk_live_metrics_0123456789abcdef";

/// Every sample of the exposition as `{"name", "labels", "value"}`, parsed by
/// `prometheus_client.openmetrics.parser` (which refuses malformed text).
fn parse(text: &str) -> Vec<Value> {
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused the exposition (pip install prometheus-client): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(samples: &[Value], name: &str, labels: Value) -> f64 {
    samples
        .iter()
        .find(|s| s["name"] == name && s["labels"] == labels)
        .and_then(|s| s["value"].as_f64())
        .unwrap_or_else(|| panic!("no sample {name} {labels} in {samples:?}"))
}

async fn scrape(env: &Env) -> (String, Vec<Value>) {
    let resp = tower::ServiceExt::oneshot(
        env.app.router(),
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let ct = resp.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let samples = parse(&text);
    (text, samples)
}

#[tokio::test]
async fn metrics_count_what_ran_and_name_no_one() {
    let env = Env::start_with(|_| {})
        .await
        .expect("these tests need the real sandbox");
    let (_, before) = scrape(&env).await;
    // Nothing has finished: the family has no sample yet.
    assert!(
        !before
            .iter()
            .any(|s| s["name"] == "airlock_executions_finished_total"),
        "{before:?}"
    );
    let (_, key) = env
        .locked_profile("metrics profile", &[("API_KEY", SECRET)])
        .await;
    // Completed, with a credential printed (redacted once).
    let v = env
        .run(&key, "print(settings.get('API_KEY'))\nset_result(1)")
        .await;
    assert_eq!(v["status"], "completed", "{v}");
    // An error.
    let v = env.run(&key, "raise ValueError('no')").await;
    assert_eq!(v["status"], "error", "{v}");

    let (text, samples) = scrape(&env).await;
    let finished = |status: &str| {
        sample(
            &samples,
            "airlock_executions_finished_total",
            json!({ "status": status }),
        )
    };
    assert_eq!(finished("completed"), 1.0);
    assert_eq!(finished("error"), 1.0);
    assert_eq!(
        sample(
            &samples,
            "airlock_execution_running_seconds_count",
            json!({})
        ),
        2.0
    );
    assert!(sample(&samples, "airlock_redactions_total", json!({})) >= 1.0);
    assert_eq!(
        sample(&samples, "airlock_executions_running", json!({})),
        0.0
    );
    assert_eq!(
        sample(&samples, "airlock_executions_queued", json!({})),
        0.0
    );
    assert_eq!(sample(&samples, "airlock_workers", json!({})), 2.0);
    assert_eq!(sample(&samples, "airlock_max_paused", json!({})), 64.0);

    // Paused in llm.complete: counted as paused, holding no worker.
    let (s, _, v) = env
        .submit(&key, "set_result(llm.complete('q'))", None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    let mut v = Value::Null;
    for _ in 0..100 {
        v = env.poll(&key, &id, 1).await.1;
        if v["status"] == "awaiting_llm" {
            break;
        }
    }
    assert_eq!(v["status"], "awaiting_llm", "{v}");
    let (_, paused) = scrape(&env).await;
    assert_eq!(sample(&paused, "airlock_executions_paused", json!({})), 1.0);
    assert_eq!(
        sample(&paused, "airlock_executions_running", json!({})),
        0.0
    );
    let body = json!({"response": "a", "request_id": v["llm_request"]["request_id"]});
    let (s, r) = env
        .agent(
            &key,
            "POST",
            &format!("/executions/{id}/respond"),
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");

    for private in [SECRET, "metrics profile", "API_KEY", "exec_", "prof_"] {
        assert!(
            !text.contains(private),
            "/metrics names {private:?}:\n{text}"
        );
    }
}
