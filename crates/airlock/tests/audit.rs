//! The audit log: admin changes and agent calls recorded (never a secret), the
//! hash chain and signed heads checked by the server and by `airlock audit verify`,
//! tampering with a stored row detected, and no change when the log cannot be written.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use std::process::Command;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const VALUE: &str = "sk_audit_value_8c7b6a5d4e3f";

/// A GET with the admin's cookie: (content type, body text).
async fn get_text(app: &TestApp, admin: &Client, path: &str) -> (String, String) {
    let req = Request::get(path)
        .header(header::HOST, DEFAULT_HOST)
        .header(header::COOKIE, admin.cookie.clone().unwrap())
        .body(Body::empty())
        .unwrap();
    let resp = app.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    let ct = resp.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (ct, String::from_utf8(bytes.to_vec()).unwrap())
}

/// The JSON Lines export, as text.
async fn export(app: &TestApp, admin: &Client) -> String {
    let (ct, text) = get_text(app, admin, "/api/admin/audit/export").await;
    assert_eq!(ct, "application/x-ndjson");
    text
}

/// `airlock audit verify` on `text`: (exit code, stdout).
fn verify_offline(dir: &std::path::Path, text: &str) -> (i32, String) {
    let file = dir.join("audit.jsonl");
    std::fs::write(&file, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["audit", "verify"])
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

async fn db(app: &TestApp) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        app.data_dir.join("airlock.db").display()
    ))
    .await
    .unwrap()
}

/// Every event, oldest first.
async fn events(admin: &Client) -> Vec<Value> {
    let reply = admin.get("/api/admin/audit?after=0&limit=1000").await;
    assert_status(&reply, StatusCode::OK);
    reply.2["events"].as_array().unwrap().clone()
}

#[tokio::test]
async fn admin_changes_and_agent_calls_are_recorded_chained_and_never_hold_a_secret() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let agent = app.client();
    create_credential(&admin, "STRIPE_KEY", "stripe", Some(VALUE)).await;
    let id = create_profile(&admin, "audited", &["STRIPE_KEY"]).await;
    let (key, _, secret) = lock_profile(&admin, &id).await;
    let key_id = key.split(':').next().unwrap().to_string();
    // A wrong password, and an agent call with a pasted full key.
    let anon = admin.anonymous();
    let reply = anon
        .post(
            "/api/admin/login",
            json!({ "password": "not the password at all" }),
        )
        .await;
    assert_eq!(reply.0, StatusCode::UNAUTHORIZED);
    let reply = agent
        .raw(
            axum::http::Method::POST,
            "/credentials",
            Some("application/json"),
            json!({ "credentials": [{ "name": "ASKED" }] })
                .to_string()
                .into_bytes(),
            &[("authorization", &format!("Bearer {key}"))],
        )
        .await;
    assert_eq!(reply.0, StatusCode::CREATED);

    let all = events(&admin).await;
    let find = |action: &str, outcome: &str| {
        all.iter()
            .find(|e| e["action"] == action && e["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {action} {outcome} in {all:#?}"))
            .clone()
    };
    let lock = format!("/api/admin/profiles/{id}/lock");
    let attempt = find("POST /api/admin/profiles/{id}/lock", "attempt");
    let done = find("POST /api/admin/profiles/{id}/lock", "ok");
    assert_eq!(attempt["actor"], "admin");
    assert_eq!(attempt["role"], "owner");
    assert_eq!(attempt["target"], lock.as_str());
    assert_eq!(
        done["detail"],
        json!({ "status": 200, "attempt": attempt["seq"] })
    );
    assert_eq!(
        find("POST /api/admin/credentials", "ok")["detail"]["status"],
        201
    );
    let failed = find("POST /api/admin/login", "refused");
    assert_eq!(failed["actor"], "anonymous");
    assert_eq!(failed["detail"]["status"], 401);
    let asked = find("POST /credentials", "ok");
    assert_eq!(asked["actor"], format!("agent:{key_id}"));
    assert_eq!(asked["client"], "127.0.0.1");
    // Reads are not changes.
    assert!(!all.iter().any(|e| e["action"] == "GET /api/admin/audit"));
    // Each event follows the one before it.
    for pair in all.windows(2) {
        assert_eq!(
            pair[1]["seq"].as_i64(),
            pair[0]["seq"].as_i64().map(|s| s + 1)
        );
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"]);
    }

    let text = export(&app, &admin).await;
    for secret_text in [
        VALUE,
        ADMIN_PASSWORD,
        secret.as_str(),
        "not the password at all",
    ] {
        assert!(
            !text.contains(secret_text),
            "{secret_text:?} is in the audit log"
        );
    }
    assert!(text.lines().next().unwrap().contains("\"type\":\"key\""));
    assert!(
        text.lines().last().unwrap().contains("\"type\":\"head\""),
        "{text}"
    );
    let (code, out) = verify_offline(app.dir.path(), &text);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: "), "{out}");
    let reply = admin.post("/api/admin/audit/verify", json!({})).await;
    assert_eq!(reply.2["state"], "ok", "{}", reply.2);
    let health = app.client().get("/health").await.2;
    assert_eq!(health["audit"]["state"], "ok", "{health}");
}

#[tokio::test]
async fn a_changed_row_is_detected_by_the_server_and_offline_even_with_a_rebuilt_chain() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "A", "a", Some("value-aaaa-1111")).await;
    create_credential(&admin, "B", "b", Some("value-bbbb-2222")).await;
    // The export signs the head: the rebuilt chain below contradicts it.
    let before = export(&app, &admin).await;
    assert_eq!(verify_offline(app.dir.path(), &before).0, 0);
    let pool = db(&app).await;
    sqlx::query("UPDATE audit_events SET target = '/api/admin/credentials/forged' WHERE seq = 3")
        .execute(&pool)
        .await
        .unwrap();
    let reply = admin.post("/api/admin/audit/verify", json!({})).await;
    assert_eq!(reply.2["state"], "broken", "{}", reply.2);
    assert_eq!(reply.2["broken_at"], 3, "{}", reply.2);
    assert!(
        reply.2["reason"].as_str().unwrap().contains("changed"),
        "{}",
        reply.2
    );
    let health = app.client().get("/health").await.2;
    assert_eq!(health["audit"]["state"], "broken", "{health}");
    assert_eq!(health["audit"]["broken_at"], 3, "{health}");
    let (code, out) = verify_offline(app.dir.path(), &export(&app, &admin).await);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("BROKEN at 3:"), "{out}");

    // Whoever can write the database but has not the key rebuilds every hash from
    // the forged row on: the chain is whole again, but the signed head is not.
    let rows = sqlx::query_as::<_, (i64,)>("SELECT seq FROM audit_events ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    let (events_now, _) = app.app.state.audit.read_all().await.unwrap();
    let mut prev = airlock_store::AUDIT_GENESIS.to_string();
    for (mut e, (seq,)) in events_now.into_iter().zip(rows) {
        e.prev_hash = prev.clone();
        e.hash = e.expected_hash();
        sqlx::query("UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?")
            .bind(&e.prev_hash)
            .bind(&e.hash)
            .bind(seq)
            .execute(&pool)
            .await
            .unwrap();
        prev = e.hash;
    }
    let reply = admin.post("/api/admin/audit/verify", json!({})).await;
    assert_eq!(reply.2["state"], "broken", "{}", reply.2);
    assert!(
        reply.2["reason"]
            .as_str()
            .unwrap()
            .contains("differs from what was signed"),
        "{}",
        reply.2
    );
}

#[tokio::test]
async fn no_admin_change_happens_when_the_audit_log_cannot_be_written() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let pool = db(&app).await;
    sqlx::query(
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(&pool)
    .await
    .unwrap();
    let reply = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "UNRECORDED", "value": "v-1234567" }),
        )
        .await;
    assert_error_code(&reply, StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable");
    sqlx::query("DROP TRIGGER no_audit")
        .execute(&pool)
        .await
        .unwrap();
    let reply = admin.get("/api/admin/credentials").await;
    assert_eq!(reply.2["credentials"], json!([]), "{}", reply.2);
}

/// Reads RFC 6587 octet-counted frames from `sock` until `want` of them arrived.
async fn frames(sock: &mut tokio::net::TcpStream, want: usize) -> Vec<String> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while out.len() < want {
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, sock.read(&mut chunk))
            .await
            .expect("frames in time")
            .unwrap();
        assert!(n > 0, "the stream closed after {out:?}");
        buf.extend_from_slice(&chunk[..n]);
        // Every complete frame in the buffer.
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().unwrap();
            if buf.len() < sp + 1 + len {
                break;
            }
            out.push(String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap());
            buf.drain(..sp + 1 + len);
        }
    }
    out
}

#[tokio::test]
async fn every_event_reaches_a_syslog_collector_in_order_without_secrets() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = TestApp::start_with(|c| c.audit_syslog = Some(format!("tcp://{addr}"))).await;
    let admin = app.admin().await;
    create_credential(&admin, "SYSLOG_KEY", "k", Some(VALUE)).await;
    let (mut sock, _) = tokio::time::timeout(std::time::Duration::from_secs(20), listener.accept())
        .await
        .expect("the server connects")
        .unwrap();
    // setup (attempt, ok), credential (attempt, ok).
    let got = frames(&mut sock, 4).await;
    let mut seqs = Vec::new();
    for (i, f) in got.iter().enumerate() {
        assert!(f.starts_with("<110>1 ") || f.starts_with("<109>1 "), "{f}");
        assert!(f.contains(" airlock "), "{f}");
        assert!(!f.contains(VALUE) && !f.contains(ADMIN_PASSWORD), "{f}");
        let json = &f[f.find("] {").unwrap() + 2..];
        let e: Value = serde_json::from_str(json).unwrap();
        assert!(f.contains(&format!("seq=\"{}\"", e["seq"])), "{f}");
        seqs.push(e["seq"].as_i64().unwrap());
        if i == 3 {
            assert_eq!(e["action"], "POST /api/admin/credentials");
            assert_eq!(e["outcome"], "ok");
        }
    }
    assert_eq!(seqs, [1, 2, 3, 4]);
    // Bad settings stop the start with the reason.
    let dir = tempfile::tempdir().unwrap();
    let mut c = airlock::config::Config::for_data_dir(&dir.path().join("d"));
    c.audit_syslog = Some("udp://127.0.0.1:514".into());
    let err = airlock::app::App::open(c).await.err().expect("refused");
    assert!(err.to_string().contains("tcp://host:port"), "{err}");
}

#[tokio::test]
async fn the_audit_page_pages_back_keeping_its_filter() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    for i in 0..30 {
        create_credential(&admin, &format!("K{i}"), "k", None).await;
    }
    // 60 credential events: a full page of 50, then an older one.
    let (_, html) = get_text(
        &app,
        &admin,
        "/ui/audit?action=POST+%2Fapi%2Fadmin%2Fcredentials",
    )
    .await;
    let start = html
        .find("href=\"/ui/audit?action=")
        .expect("a link to older events");
    let href = &html[start + 6..];
    let href = href[..href.find('"').unwrap()].replace("&amp;", "&");
    assert!(
        href.starts_with("/ui/audit?action=POST%20%2Fapi%2Fadmin%2Fcredentials&actor=&before="),
        "{href}"
    );
    let (_, older) = get_text(&app, &admin, &href).await;
    assert_eq!(
        older
            .matches("<td class=\"mono small\">POST /api/admin/credentials</td>")
            .count(),
        10,
        "{older}"
    );
    assert!(!older.contains("Older events"));
}
