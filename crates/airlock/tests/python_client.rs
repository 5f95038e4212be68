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
print(json.dumps(anon.declare({"SALES_DB": "sales database"})))
p = anon.create_profile("py client", ["SALES_DB"])
print(p["id"])
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
        r#"{"created": ["SALES_DB"], "skipped": []}"#
    );
    let id = lines.next().unwrap().to_string();

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
