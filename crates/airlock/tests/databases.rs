//! Databases and other raw TCP destinations end to end: the real router, the real
//! sandbox, real Python, real upstream servers on the host's loopback (listed by name
//! as `tcp://localhost:PORT`, so the server resolves it and an exact entry unlocks the
//! loopback address), and the egress log read back through the admin API.
//!
//! In the container tier TCP destinations are not available (no network namespace of
//! the execution's own): the test checks that the script's connection fails and the
//! log says why.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use axum::http::StatusCode;
use serde_json::{json, Value};

use common::sandboxed::Sandboxed;

/// An upstream on 127.0.0.1 that answers each connection's first line with
/// `upstream:<line>` and remembers every line it received.
struct Echo {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo() -> Echo {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let task = tokio::spawn(async move {
        // Bounded: a test never makes more than a few connections.
        for _ in 0..16 {
            let Ok((sock, _)) = l.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut line = String::new();
                let _ = BufReader::new(r).read_line(&mut line).await;
                log.lock().unwrap().push(line.trim().to_string());
                let _ = w
                    .write_all(format!("upstream:{}\n", line.trim()).as_bytes())
                    .await;
            });
        }
    });
    Echo { port, seen, task }
}

fn container() -> bool {
    std::env::var("AIRLOCK_TEST_SANDBOX_TIER").as_deref() == Ok("container")
}

const ASK: &str = r#"
import socket
def ask(host, port, line):
    try:
        s = socket.create_connection((host, port), timeout=10)
        s.sendall(line.encode() + b"\n")
        return s.makefile().readline().strip()
    except OSError as e:
        return "ERR:" + type(e).__name__
"#;

/// The egress log of execution `id`, as the admin API returns it.
async fn egress_log(env: &Sandboxed, id: &str) -> Vec<Value> {
    let (s, v) = env
        .admin("GET", &format!("/api/admin/executions/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["egress"].as_array().expect("egress list").clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_reaches_a_tcp_destination_under_its_own_name_and_port() {
    let Some(env) = Sandboxed::start_with(|_| {}).await else {
        return;
    };
    let up = echo().await;
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (id, key) = env
        .locked_profile("db", &[("DB_TOKEN", "tcp-secret-value-0042")])
        .await;
    let hosts = json!([
        format!("tcp://localhost:{}", up.port),
        format!("tcp://127.0.0.1:{closed}")
    ]);
    env.set_hosts(&id, hosts).await;
    let script = format!(
        "{ASK}\nout = {{}}\nout['db'] = ask('localhost', {p}, 'hello ' + settings.get('DB_TOKEN'))\nout['closed'] = ask('127.0.0.1', {closed}, 'x')\nout['other'] = ask('127.0.0.1', 9, 'x')\nprint(out['db'])\nset_result(out)\n",
        p = up.port
    );
    let v = env.run(&key, &script).await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    let exec = v["execution_id"].as_str().unwrap();
    let log = egress_log(&env, exec).await;
    if container() {
        for k in ["db", "closed", "other"] {
            assert!(
                v["result"][k].as_str().unwrap().starts_with("ERR:"),
                "{k}: {v}"
            );
        }
        assert!(up.seen.lock().unwrap().is_empty());
        assert!(
            log.iter().any(|e| e["method"] == json!("TCP")
                && e["allowed"] == json!(false)
                && e["reason"].as_str().unwrap().contains("full sandbox tier")),
            "{log:?}"
        );
        return;
    }
    // The value went to the destination (a plain credential is the script's to use)
    // and came back redacted in the output.
    assert_eq!(
        v["result"]["db"],
        json!("upstream:hello [REDACTED:DB_TOKEN]"),
        "{v}"
    );
    assert_eq!(v["stdout"], json!("upstream:hello [REDACTED:DB_TOKEN]\n"));
    assert_eq!(
        up.seen.lock().unwrap().as_slice(),
        ["hello tcp-secret-value-0042"]
    );
    // Unreachable: the connection is reset at once. Not listed: Landlock refuses it.
    assert_eq!(
        v["result"]["closed"],
        json!("ERR:ConnectionResetError"),
        "{v}"
    );
    assert_eq!(v["result"]["other"], json!("ERR:PermissionError"), "{v}");

    assert_eq!(log.len(), 2, "{log:?}");
    let ok = log
        .iter()
        .find(|e| e["port"] == json!(up.port))
        .expect("the forwarded connection is logged");
    assert_eq!(ok["host"], json!("localhost"));
    assert_eq!(ok["method"], json!("TCP"));
    assert_eq!(ok["allowed"], json!(true), "{ok}");
    assert_eq!(
        ok["reason"],
        json!(format!(
            "allowed by tcp://localhost:{p} (127.0.0.1:{p})",
            p = up.port
        ))
    );
    assert_eq!(ok["bytes_up"], json!("hello tcp-secret-value-0042\n".len()));
    assert_eq!(
        ok["bytes_down"],
        json!("upstream:hello tcp-secret-value-0042\n".len())
    );
    assert!(ok["duration_ms"].as_i64().is_some(), "{ok}");
    let failed = log
        .iter()
        .find(|e| e["port"] == json!(closed))
        .expect("the failed connection is logged");
    assert_eq!(failed["allowed"], json!(false));
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "allowed by tcp://127.0.0.1:{closed}, but connecting to 127.0.0.1:{closed}"
        )),
        "{reason}"
    );
    // No value in the log.
    assert!(!serde_json::to_string(&log)
        .unwrap()
        .contains("tcp-secret-value"));
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_destinations_are_validated_with_messages_that_say_what_to_write() {
    let Some(env) = Sandboxed::start_with(|_| {}).await else {
        return;
    };
    let (id, _) = env.locked_profile("db", &[("X", "v")]).await;
    for (hosts, wanted) in [
        (
            json!(["db.internal:5432"]),
            "list it as \"tcp://db.internal:5432\"",
        ),
        (json!(["tcp://db.internal"]), "tcp://host:port"),
        (
            json!(["tcp://10.0.0.5:5432"]),
            "give it a name the server resolves",
        ),
        (json!(["tcp://*.internal:5432"]), "tcp://host:port"),
    ] {
        let (s, v) = env
            .admin(
                "PUT",
                &format!("/api/admin/profiles/{id}"),
                Some(json!({ "allowed_hosts": hosts })),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{hosts}: {v}");
        assert!(
            v["detail"].as_str().unwrap().contains(wanted),
            "{hosts}: {v}"
        );
    }
    env.set_hosts(&id, json!(["tcp://db.internal:5432", "api.example.com"]))
        .await;
}
