//! The README's shell examples work as printed: every ```sh / ```bash block is
//! extracted and run, in order, by one bash process against a live server on a
//! free loopback port (so variables such as `$KEY_ID` carry over from block to
//! block, as they do for a reader pasting them into one terminal). The only
//! change is the base URL: `http://127.0.0.1:9090` becomes the test server's.
//!
//! Blocks that cannot run here are skipped by the explicit [`SKIPPED`] list
//! (matched by their first line, each with its reason, each required to still
//! exist); any other shell block, including a new one, is run. A fenced block
//! in a language this test does not know fails it, so a shell example cannot
//! hide under another tag.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::process::Command;

use serde_json::Value;

mod common;
mod live;

/// First line of each shell block that is not run, and why.
const SKIPPED: &[(&str, &str)] = &[
    (
        "cargo run --release",
        "starts the server itself; the test starts one",
    ),
    (
        "docker build -t airlock .",
        "needs a container engine (deploy/test-image.sh covers the image)",
    ),
    (
        "docker run -d --name airlock -p 127.0.0.1:9090:9090 -v airlock_data:/data \\",
        "needs a container engine (deploy/test-image.sh runs the image with these options)",
    ),
    ("cargo test --workspace", "is the test suite itself"),
    (
        "cargo bench -p airlock --bench e2e",
        "benchmarks take minutes and need a release build",
    ),
];

/// Fence languages that are not shell and are not run.
const NOT_SHELL: &[&str] = &["python", "json", "nginx", "caddyfile"];
const SHELL: &[&str] = &["sh", "bash"];

/// The base URL the README's examples use.
const README_BASE: &str = "http://127.0.0.1:9090";

struct Block {
    lang: String,
    /// 1-based line of the opening fence.
    line: usize,
    code: String,
}

/// Every fenced block (also indented ones inside list items), indentation removed.
fn fenced_blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = md.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        let Some(lang) = trimmed.strip_prefix("```") else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let mut code = String::new();
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            code.push_str(l.get(indent..).unwrap_or(l.trim_start()));
            code.push('\n');
        }
        out.push(Block {
            lang: lang.trim().to_string(),
            line: i + 1,
            code,
        });
    }
    out
}

/// The shell blocks to run, after checking every block's language and the skip list.
fn runnable_blocks(md: &str) -> Vec<Block> {
    let mut used = vec![false; SKIPPED.len()];
    let mut run = Vec::new();
    for b in fenced_blocks(md) {
        if NOT_SHELL.contains(&b.lang.as_str()) {
            continue;
        }
        assert!(
            SHELL.contains(&b.lang.as_str()),
            "README.md line {}: a ```{} block; tag shell examples sh or bash (this test runs \
             them), or add the language to NOT_SHELL if it is not shell",
            b.line,
            b.lang
        );
        let first = b.code.lines().next().unwrap_or_default().trim();
        if let Some(i) = SKIPPED.iter().position(|(l, _)| *l == first) {
            used[i] = true;
            continue;
        }
        run.push(b);
    }
    for ((line, _), used) in SKIPPED.iter().zip(used) {
        assert!(
            used,
            "SKIPPED lists {line:?}, but no README shell block starts with it"
        );
    }
    run
}

fn start_marker(i: usize) -> String {
    format!("::readme-block {i} start::")
}

fn end_marker(i: usize) -> String {
    format!("::readme-block {i} exit 0::")
}

/// One bash script: each block between two markers; `set -e` stops at the first
/// failing command, so a block succeeded exactly when its end marker is printed.
fn script_for(blocks: &[Block], base: &str) -> String {
    let mut s = String::from("set -euo pipefail\n");
    for (i, b) in blocks.iter().enumerate() {
        s.push_str(&format!("echo '{}'\n", start_marker(i)));
        s.push_str(&b.code.replace(README_BASE, base));
        s.push_str(&format!("echo '{}'\n", end_marker(i)));
    }
    s
}

/// The stdout of block `i`, or a panic naming the block when it did not finish.
fn block_output<'a>(stdout: &'a str, stderr: &str, blocks: &[Block], i: usize) -> &'a str {
    let start = stdout.find(&start_marker(i)).unwrap_or_else(|| {
        panic!(
            "README.md block at line {} never started; stdout:\n{stdout}\nstderr:\n{stderr}",
            blocks[i].line
        )
    });
    let body = &stdout[start + start_marker(i).len()..];
    let end = body.find(&end_marker(i)).unwrap_or_else(|| {
        panic!(
            "README.md block at line {} failed:\n{}\noutput:\n{body}\nstderr:\n{stderr}",
            blocks[i].line, blocks[i].code
        )
    });
    body[..end].trim()
}

/// The JSON objects in a block's output, in order (curl prints answers without a
/// newline, so they may share a line with each other or with other text).
fn json_values(out: &str) -> Vec<Value> {
    let mut values = Vec::new();
    let mut i = 0;
    while let Some(open) = out[i..].find('{') {
        let at = i + open;
        let mut stream = serde_json::Deserializer::from_str(&out[at..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => {
                values.push(v);
                i = at + stream.byte_offset();
            }
            _ => i = at + 1,
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_shell_examples_run_as_printed() {
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md at the repository root");
    let blocks = runnable_blocks(&md);

    // Packages need a data directory the install sandbox can reach; the package
    // index is off, so the example's install is accepted and then fails offline.
    let data = common::sandbox_visible_tempdir("readme");
    let data_dir = data.path().join("data");
    let (_dir, base) = live::serve_fresh(|c| {
        c.data_dir = data_dir;
        c.pip_index_url = "none".into();
    })
    .await;

    let work = tempfile::tempdir().unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_airlock"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let script = script_for(&blocks, &base);
    let cwd = work.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(&cwd)
            .env("PATH", path)
            .env_remove("AIRLOCK_URL")
            .env_remove("AIRLOCK_KEY")
            .output()
            .expect("bash runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();

    let mut seen = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        let output = block_output(&stdout, &stderr, &blocks, i);
        let first = b.code.lines().next().unwrap_or_default().trim();
        let ctx = format!("README.md line {}: {output}", b.line);
        // Key outputs of the walkthrough's blocks.
        if first.starts_with("B=") {
            // Setup, then login.
            let answers = json_values(output);
            let setup = serde_json::json!({"setup_required": false, "authenticated": true});
            let login = serde_json::json!({"authenticated": true});
            assert_eq!(answers, vec![setup, login], "{ctx}");
            seen.push("setup");
        } else if b.code.contains("/lock") {
            let at = output
                .rfind("ark_")
                .unwrap_or_else(|| panic!("no key: {ctx}"));
            let key = output[at..].split_whitespace().next().unwrap();
            let (id, secret) = key.split_once(':').expect("the key is printed");
            assert!(id.starts_with("ark_") && secret.len() == 48, "{ctx}");
            seen.push("lock");
        } else if first.starts_with("RESP=") {
            let resp = json_values(output);
            assert_eq!(resp.len(), 1, "{ctx}");
            assert_eq!(resp[0]["status"], "pending", "{ctx}");
            let poll = resp[0]["poll_url"].as_str().unwrap();
            assert!(
                poll.starts_with(&format!("{base}/executions/exec_")),
                "{ctx}"
            );
            seen.push("execute");
        } else if b.code.contains("/diff?with=") {
            // Input records switched on, two runs of a changed script compared.
            // Then a full record, and its replay compared with it.
            assert!(output.starts_with("hashes\n"), "{ctx}");
            assert!(output.contains("\nfull\n"), "{ctx}");
            let answers = json_values(output);
            assert_eq!(
                answers,
                vec![
                    serde_json::json!({"identical": false, "script_same": false,
                        "result": [{"path": "/total", "a": 3, "b": 4}]}),
                    serde_json::json!({"identical": true, "clock_same": true}),
                ],
                "{ctx}"
            );
            seen.push("records");
        } else if b.code.contains("/approvals/") {
            // Approval on: the script waits with its link; approved, it runs; the
            // same script then runs without asking; approval off again.
            let lines: Vec<&str> = output.lines().collect();
            assert_eq!(lines.len(), 6, "{ctx}");
            assert_eq!(&lines[..2], ["first_run", "awaiting_approval"], "{ctx}");
            assert!(
                lines[2].starts_with(&format!("{base}/ui/approvals/exec_")),
                "{ctx}"
            );
            assert_eq!(&lines[3..], ["approved", "pending", "off"], "{ctx}");
            seen.push("approval");
        } else if b.code.contains("airlock audit verify") {
            // The two newest events, then the offline check of the export.
            let lines: Vec<&str> = output.lines().collect();
            assert_eq!(lines.len(), 3, "{ctx}");
            assert!(lines[0].starts_with("admin "), "{ctx}");
            assert!(
                lines[2].starts_with("ok: ") && lines[2].ends_with("the chain is intact"),
                "{ctx}"
            );
            seen.push("audit");
        } else if b.code.contains("/api/admin/tokens") {
            let lines: Vec<&str> = output.lines().collect();
            assert_eq!(lines, ["ok", "role_forbidden"], "{ctx}");
            seen.push("tokens");
        } else if b.code.contains("/api/admin/requests/slot/") {
            // An agent's slot request, listed, rejected; the agent reads the reason.
            let lines: Vec<&str> = output.lines().collect();
            assert_eq!(
                lines,
                [
                    r#"["WAREHOUSE_PW"]"#,
                    "slot WAREHOUSE_PW: the revenue report needs refunds",
                    "rejected",
                    "use the read-only replica, REPLICA_PW"
                ],
                "{ctx}"
            );
            seen.push("requests");
        } else if b.code.contains("?wait=30") {
            let ex = json_values(output);
            assert_eq!(ex.len(), 1, "{ctx}");
            // `wait` returns at the first status change; the README says to repeat
            // until the end, so a `running` answer is printed correctly too.
            let status = ex[0]["status"].as_str().unwrap();
            assert!(["running", "completed"].contains(&status), "{ctx}");
            if status == "completed" {
                assert_eq!(ex[0]["result"], serde_json::json!({"length": 23}), "{ctx}");
                assert_eq!(ex[0]["stdout"], "token is [REDACTED:DEMO_TOKEN]\n", "{ctx}");
            }
            seen.push("wait");
        } else if b.code.contains("airlock exec script.py") {
            // stdout of the script, then the result as JSON.
            let (script_out, result) = output.split_once('\n').unwrap_or_default();
            assert_eq!(script_out, "token is [REDACTED:DEMO_TOKEN]", "{ctx}");
            let result: Value = serde_json::from_str(result).unwrap_or_default();
            assert_eq!(result, serde_json::json!({"length": 23}), "{ctx}");
            seen.push("cli");
        } else if first.starts_with("INSTALL=") {
            let answers = json_values(output);
            assert_eq!(answers.len(), 3, "{ctx}");
            assert!(
                answers[0]["install_id"]
                    .as_str()
                    .is_some_and(|i| i.starts_with("inst_")),
                "{ctx}"
            );
            assert_eq!(answers[0]["status"], "awaiting_review", "{ctx}");
            assert!(output.lines().any(|l| l == "accepted"), "{ctx}");
            assert_eq!(answers[1]["install_id"], answers[0]["install_id"], "{ctx}");
            let names: Vec<&str> = answers[2]["packages"]
                .as_array()
                .unwrap_or_else(|| panic!("{ctx}"))
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert_eq!(names, ["httpx", "openpyxl", "pandas"], "{ctx}");
            seen.push("packages");
        } else if b.code.contains("/api/admin/export") {
            let file = std::fs::read(work.path().join("backup.airlock")).unwrap();
            assert!(file.starts_with(b"age-encryption.org/v1\n"), "{ctx}");
            seen.push("export");
        }
    }
    assert_eq!(
        seen,
        [
            "setup", "lock", "execute", "wait", "cli", "records", "approval", "requests", "audit",
            "tokens", "packages", "export"
        ],
        "the walkthrough's blocks were not all recognised and checked"
    );
}

#[test]
fn the_extractor_sees_every_shell_block_and_refuses_unknown_languages() {
    let md =
        "intro\n```sh\necho one\n```\n\n- item\n\n  ```bash\n  echo two\n    indented\n  ```\n\
              ```json\n{}\n```\n";
    let blocks = fenced_blocks(md);
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[1].code, "echo two\n  indented\n");
    assert_eq!(blocks[1].line, 8);
    // A skipped block that no longer exists, and a block in an unknown language,
    // both fail.
    let missing = std::panic::catch_unwind(|| runnable_blocks(md));
    assert!(missing.is_err(), "a stale SKIPPED entry must fail");
    let mut all = String::from(md);
    for (first, _) in SKIPPED {
        all.push_str(&format!("```sh\n{first}\n```\n"));
    }
    assert_eq!(runnable_blocks(&all).len(), 2);
    all.push_str("```console\n$ curl x\n```\n");
    assert!(std::panic::catch_unwind(|| runnable_blocks(&all)).is_err());
}
