//! The standard-library Python client in `clients/python`, driven against a
//! live server: catalog calls, a run with two LLM pauses, a clear error for a
//! bad key, and a replayed request refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::process::Command;

mod live;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_runs_scripts_and_answers_llm_pauses() {
    let live = live::start().await;
    let base = live.base.clone();

    let program = r#"
import json, os, sys
from airlock_client import Airlock, AirlockError
anon = Airlock(os.environ["URL"])
print(json.dumps(anon.declare({"SALES_DB": "sales database"}, message="the sales report")))
p = anon.create_profile("py client", ["SALES_DB"], message="reads sales")
print(p["id"])
print(p["request"]["status"], p["request"]["message"])
print(anon.credentials()[0]["request"]["message"])
"#;
    let pythonpath = concat!(env!("CARGO_MANIFEST_DIR"), "/../../clients/python");
    let py = |code: String, key: Option<String>| {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = Command::new("python3");
            c.args(["-c", &code])
                .env("PYTHONPATH", pythonpath)
                .env("URL", &base);
            if let Some(k) = key {
                c.env("KEY", k);
            }
            c.output().expect("python3 runs")
        })
    };
    let out = py(program.to_string(), None).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        r#"{"created": ["SALES_DB"], "reopened": [], "skipped": []}"#
    );
    let id = lines.next().unwrap().to_string();
    assert_eq!(lines.next().unwrap(), "pending reads sales");
    assert_eq!(lines.next().unwrap(), "the sales report");

    live.set_value("SALES_DB", "postgres://sales:pw-771@db/sales")
        .await;
    let key = live.lock(&id).await;

    let program = r#"
import json, os
from airlock_client import Airlock, AirlockError
ab = Airlock(os.environ["URL"], os.environ["KEY"])
assert "***" in repr(ab) and os.environ["KEY"].split(":")[1] not in repr(ab)
script = "a = llm.complete('first ' + settings.get('SALES_DB'))\nb = llm.complete('second', model='m2')\nset_result([a, b])\n"
ex = ab.run(script, llm=lambda prompt, model: f"{model}:{prompt}")
print(ex["status"], json.dumps(ex["result"]))
bad = Airlock(os.environ["URL"], os.environ["KEY"].split(":")[0] + ":wrong")
try:
    bad.run("set_result(1)")
except AirlockError as e:
    print(e.status, e.code)
# The same signed request twice: the second is a replay.
fields = ab.sign("set_result(2)")
first = ab._call("POST", "/execute", {"script": "set_result(2)", **fields})
try:
    ab._call("POST", "/execute", {"script": "set_result(2)", **fields})
except AirlockError as e:
    print(e.status, e.code)
print(ab.get(first["execution_id"], wait=30)["status"] in ("pending", "running", "completed"))
"#;
    let out = py(program.to_string(), Some(key)).await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "completed [\"default:first [REDACTED:SALES_DB]\", \"m2:second\"]\n403 hash_mismatch\n403 replayed\nTrue\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_waits_through_an_approval_and_sees_a_denial() {
    let live = live::start().await;
    live.set_value("TOKEN", "tok_py_approval_1234").await;
    let (pid, key) = live.locked_profile(&["TOKEN"]).await;
    let (s, _) = live
        .admin(
            reqwest::Method::PUT,
            &format!("/api/admin/profiles/{pid}"),
            serde_json::json!({"approval": "every_run"}),
        )
        .await;
    assert_eq!(s, 200);
    let program = r#"
import os
from airlock_client import Airlock
ab = Airlock(os.environ["URL"], os.environ["KEY"])
ex = ab.run("set_result(6 * 7)", on_approval=lambda url: print("approve at", url, flush=True))
print(ex["status"], ex["result"])
eid = ab.submit("set_result(0)")
ex = ab.wait_for_approval(eid)
print(ex["status"], ex["error"])
"#;
    let pythonpath = concat!(env!("CARGO_MANIFEST_DIR"), "/../../clients/python");
    let child = tokio::process::Command::new("python3")
        .args(["-c", program])
        .env("PYTHONPATH", pythonpath)
        .env("URL", &live.base)
        .env("KEY", &key)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    // The approver decides each request as it appears: the first approved, the
    // second denied.
    for decision in ["approve", "deny"] {
        let mut id = None;
        for _ in 0..200 {
            let (_, v) = live
                .admin(
                    reqwest::Method::GET,
                    "/api/admin/approvals",
                    serde_json::Value::Null,
                )
                .await;
            if let Some(i) = v["approvals"][0]["execution_id"].as_str() {
                id = Some(i.to_string());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let id = id.expect("an approval request");
        let body = if decision == "deny" {
            serde_json::json!({"reason": "zero is not a total"})
        } else {
            serde_json::json!({})
        };
        let (s, v) = live
            .admin(
                reqwest::Method::POST,
                &format!("/api/admin/approvals/{id}/{decision}"),
                body,
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        child.wait_with_output(),
    )
    .await
    .expect("the client returns")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("approve at {}/ui/approvals/exec_", live.base)),
        "{stdout}"
    );
    assert_eq!(lines[1], "completed 42");
    assert_eq!(
        lines[2],
        "denied denied by an approver: zero is not a total"
    );
}
