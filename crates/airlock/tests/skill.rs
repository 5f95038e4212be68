//! `/skill.md` is correct enough to follow: its Python and shell examples are
//! extracted and run verbatim against a live server on a real socket, and the
//! page never contains a value or a key secret.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::process::Command;

use serde_json::{json, Value};

mod live;

fn code_block(md: &str, lang: &str) -> String {
    let start = md
        .find(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("no ```{lang} block in skill.md"));
    let body = &md[start + lang.len() + 4..];
    body[..body.find("\n```").expect("closed block")].to_string() + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skill_examples_run_verbatim_against_a_live_server() {
    let live = live::start().await;
    let (base, http) = (live.base.clone(), live.http.clone());
    let value = "sk_skill_9f8e7d6c5b4a";
    // The agent declares slots and a profile; the operator fills and locks it.
    let r = http
        .post(format!("{base}/credentials"))
        .json(&json!({"credentials": [{"name": "REPORT_KEY", "description": "reporting API"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let p: Value = http
        .post(format!("{base}/profiles"))
        .json(&json!({"description": "skill profile", "credentials": ["REPORT_KEY"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = p["id"].as_str().unwrap().to_string();
    live.set_value("REPORT_KEY", value).await;
    let key = live.lock(&id).await;
    let secret = key.split_once(':').unwrap().1.to_string();

    let md = http.get(format!("{base}/skill.md")).send().await.unwrap();
    assert_eq!(md.headers()["content-type"], "text/markdown; charset=utf-8");
    let md = md.text().await.unwrap();
    assert!(
        !md.contains(value) && !md.contains(&secret),
        "skill.md leaked a secret"
    );
    assert!(md.contains(&format!("- URL: {base}")), "{md}");
    assert!(
        md.contains(&id) && md.contains("`REPORT_KEY` (value set)"),
        "{md}"
    );

    let py = code_block(&md, "python");
    let sh = code_block(&md, "sh");
    let (py_out, sh_out) = tokio::task::spawn_blocking({
        let key = key.clone();
        let base = base.clone();
        move || {
            let py = Command::new("python3")
                .args(["-c", &py])
                .env("AIRLOCK_KEY", &key)
                .env("AIRLOCK_URL", &base)
                .output()
                .expect("python3 runs");
            let sh = Command::new("bash")
                .args(["-euo", "pipefail", "-c", &sh])
                .env("AIRLOCK_KEY", &key)
                .env("AIRLOCK_URL", &base)
                .output()
                .expect("bash runs");
            (py, sh)
        }
    })
    .await
    .unwrap();
    let py_stdout = String::from_utf8_lossy(&py_out.stdout);
    assert!(
        py_out.status.success(),
        "python example failed: {py_stdout} {}",
        String::from_utf8_lossy(&py_out.stderr)
    );
    assert!(
        py_stdout.starts_with(r#"completed {"answer": 42, "credentials": ["REPORT_KEY"]}"#),
        "{py_stdout}"
    );
    let sh_stdout = String::from_utf8_lossy(&sh_out.stdout);
    assert!(
        sh_out.status.success(),
        "shell example failed: {sh_stdout} {}",
        String::from_utf8_lossy(&sh_out.stderr)
    );
    assert_eq!(sh_stdout.trim(), r#"{"status":"completed","result":42}"#);
}

#[test]
fn repository_skill_md_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../SKILL.md");
    let on_disk = std::fs::read_to_string(path).expect("SKILL.md at the repository root");
    assert!(
        on_disk == airlock::skill::static_markdown(),
        "SKILL.md is out of date: regenerate it with `cargo run -- skill > SKILL.md`"
    );
}
