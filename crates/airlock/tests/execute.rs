//! End-to-end execution tests: the real router, the real sandbox (the `airlock`
//! binary as helper), real Python. Each attacks or checks one promise of the
//! execution contract.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use common::{req, sandboxed_config as config, send_reply as send};

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};

use airlock::app::App;
use airlock::config::Config;

const SECRET_VALUE: &str = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";

type Env = common::sandboxed::Sandboxed;

async fn env_with(cfg: impl FnOnce(&mut Config)) -> Env {
    Env::start_with(cfg)
        .await
        .expect("these tests need the real sandbox")
}

#[tokio::test]
async fn script_runs_with_its_settings_and_returns_result() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let v = env
        .run(&key, "print('hello')\nset_result({'n': 1 + 1, 'has_key': settings.get('API_KEY') is not None, 'keys': settings.keys(), 'other': settings.get('NOPE')})\n")
        .await;
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(
        v["result"],
        json!({"n": 2, "has_key": true, "keys": ["API_KEY"], "other": null})
    );
    assert_eq!(v["stdout"], "hello\n");
    assert_eq!(v["error"], Value::Null);
    assert!(v["execution_time_ms"].as_i64().is_some());
    assert!(v["execution_id"].as_str().unwrap().starts_with("exec_"));
}

#[tokio::test]
async fn submit_answers_202_with_absolute_poll_url() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let (s, _, v) = env.submit(&key, "set_result(1)", Some(5)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let id = v["execution_id"].as_str().unwrap();
    assert_eq!(id.len(), 5 + 32);
    assert_eq!(v["status"], "pending");
    assert_eq!(
        v["poll_url"],
        format!("http://airlock.test/executions/{id}")
    );
}

#[tokio::test]
async fn every_encoding_of_a_value_is_redacted() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let script = r#"
import base64, binascii, sys, urllib.parse
v = settings.get('API_KEY')
print(v)
print(base64.b64encode(v.encode()).decode())
print(base64.urlsafe_b64encode(b'x' + v.encode()).decode())
print(v.encode().hex())
print(v.encode().hex().upper())
print(urllib.parse.quote(v, safe=''))
print(''.join('%%%02X' % b for b in v.encode()))
print(v[::-1])
sys.stdout.write(v[:10]); sys.stdout.flush(); sys.stdout.write(v[10:] + '\n')
print(v, file=sys.stderr)
set_result({'leak': v, 'b64': base64.b64encode(b'ab' + v.encode()).decode()})
"#;
    let v = env.run(&key, script).await;
    assert_eq!(v["status"], "completed", "{v}");
    let text = v.to_string();
    let forms = [
        SECRET_VALUE.to_string(),
        hex::encode(SECRET_VALUE),
        hex::encode_upper(SECRET_VALUE),
        SECRET_VALUE.chars().rev().collect::<String>(),
        SECRET_VALUE[4..20].to_string(),
    ];
    for f in &forms {
        assert!(!text.contains(f.as_str()), "form {f} leaked in {text}");
    }
    let stdout = v["stdout"].as_str().unwrap();
    assert_eq!(stdout.lines().count(), 9, "{stdout}");
    for line in stdout.lines() {
        assert!(
            line.contains("[REDACTED:API_KEY]"),
            "line not redacted: {line}"
        );
    }
    assert_eq!(v["stderr"], "[REDACTED:API_KEY]\n");
    assert_eq!(v["result"]["leak"], "[REDACTED:API_KEY]");
    assert!(v["result"]["b64"]
        .as_str()
        .unwrap()
        .contains("[REDACTED:API_KEY]"));

    let id = v["execution_id"].as_str().unwrap();
    let (s, detail) = env
        .admin("GET", &format!("/api/admin/executions/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!detail.to_string().contains(SECRET_VALUE));
    let events = detail["redactions"].as_array().unwrap();
    let stdout_event = events
        .iter()
        .find(|e| e["field"] == "stdout")
        .expect("stdout event");
    assert_eq!(stdout_event["name"], "API_KEY");
    assert_eq!(stdout_event["count"], 9);
    assert!(events
        .iter()
        .any(|e| e["field"] == "stderr" && e["count"] == 1));
    assert!(events
        .iter()
        .any(|e| e["field"] == "result" && e["count"] == 2));
    assert_eq!(detail["script"], script);
    assert_eq!(
        detail["script_sha256"],
        airlock::ids::sha256_hex(script.as_bytes())
    );
}

#[tokio::test]
async fn base32_rot13_and_utf16_encodings_are_redacted() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let script = r#"
import base64, codecs
v = settings.get('API_KEY').encode()
for pre in range(5):
    print(base64.b32encode(b'x' * pre + v).decode())
print(base64.b32hexencode(v).decode())
print(base64.b32encode(b'yz' + v).decode().lower())
print(codecs.encode(v.decode(), 'rot13'))
print(v.decode().encode('utf-16-le').hex())
print(v.decode().encode('utf-16-be').hex().upper())
"#;
    let v = env.run(&key, script).await;
    assert_eq!(v["status"], "completed", "{v}");
    let stdout = v["stdout"].as_str().unwrap();
    assert_eq!(stdout.lines().count(), 10, "{stdout}");
    for line in stdout.lines() {
        assert!(
            line.contains("[REDACTED:API_KEY]"),
            "line not redacted: {line}"
        );
        // Try to recover the value from what is left on the line.
        let rest = line.replace("[REDACTED:API_KEY]", "");
        let upper = rest.trim_end_matches('=').to_ascii_uppercase();
        let attempts = [
            data_encoding::BASE32_NOPAD.decode(upper.as_bytes()).ok(),
            data_encoding::BASE32HEX_NOPAD.decode(upper.as_bytes()).ok(),
            hex::decode(&rest).ok(),
        ];
        for decoded in attempts.into_iter().flatten() {
            assert!(
                !String::from_utf8_lossy(&decoded).contains(&SECRET_VALUE[4..16]),
                "recoverable from {line}"
            );
        }
    }
    let text = v.to_string();
    let rot13: String = SECRET_VALUE
        .chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a' + 13) % 26) + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A' + 13) % 26) + b'A') as char,
            c => c,
        })
        .collect();
    let utf16le: Vec<u8> = SECRET_VALUE
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    for form in [
        data_encoding::BASE32.encode(SECRET_VALUE.as_bytes()),
        rot13,
        hex::encode(utf16le),
    ] {
        assert!(!text.contains(&form), "form {form} leaked in {text}");
    }
}

#[tokio::test]
async fn uncaught_exception_is_error_with_script_traceback() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let v = env.run(&key, "x = 1\ny = 0\nprint(x / y)\n").await;
    assert_eq!(v["status"], "error", "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(err.contains("ZeroDivisionError"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    let v = env
        .run(&key, "raise ValueError('bad ' + settings.get('API_KEY'))")
        .await;
    assert_eq!(v["status"], "error");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("[REDACTED:API_KEY]") && !err.contains(SECRET_VALUE),
        "{err}"
    );
}

#[tokio::test]
async fn infinite_loop_times_out_and_server_keeps_working() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let (s, _, v) = env.submit(&key, "while True:\n    pass\n", Some(1)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let id = v["execution_id"].as_str().unwrap().to_string();
    let mut last = Value::Null;
    for _ in 0..6 {
        let (_, v) = env.poll(&key, &id, 10).await;
        last = v;
        if last["status"] == "timeout" {
            break;
        }
    }
    assert_eq!(last["status"], "timeout", "{last}");
    let v = env.run(&key, "set_result('still alive')").await;
    assert_eq!(v["result"], "still alive");
}

/// Agent requests resolve their key from memory while no profile was written since;
/// every kind of change must still reach the very next request.
#[tokio::test]
async fn a_key_follows_every_change_of_its_profile_at_once() {
    let env = env_with(|_| {}).await;
    let list = |key_id: String| {
        let app = env.app.clone();
        async move {
            let (s, _, v) = send(&app, req("GET", "/executions", None, Some(&key_id), None)).await;
            (s, v["code"].as_str().unwrap_or_default().to_string())
        }
    };
    let ok = (StatusCode::OK, String::new());
    let refused = |code: &str| (StatusCode::UNAUTHORIZED, code.to_string());
    let (pid, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let key_id = key.split_once(':').unwrap().0.to_string();
    assert_eq!(list(key_id.clone()).await, ok);
    assert_eq!(list(key_id.clone()).await, ok);

    // A new key: the old one is unknown at once, the new one works.
    let (s, v) = env
        .admin(
            "POST",
            &format!("/api/admin/profiles/{pid}/regenerate-key"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let new_id = v["key"]
        .as_str()
        .unwrap()
        .split_once(':')
        .unwrap()
        .0
        .to_string();
    assert_eq!(list(key_id.clone()).await, refused("unknown_key"));
    assert_eq!(list(new_id.clone()).await, ok);

    // Expiry is the clock's, not a write's: a key that worked a moment ago stops.
    let soon = chrono::Utc::now() + chrono::TimeDelta::milliseconds(1500);
    let (s, _) = env
        .admin(
            "PUT",
            &format!("/api/admin/profiles/{pid}"),
            Some(json!({"expires_at": soon})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list(new_id.clone()).await, ok);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(list(new_id.clone()).await, refused("profile_expired"));

    // Revoked, then deleted.
    let (pid2, key2) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let key2_id = key2.split_once(':').unwrap().0.to_string();
    assert_eq!(list(key2_id.clone()).await, ok);
    let (s, _) = env
        .admin("POST", &format!("/api/admin/profiles/{pid2}/revoke"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list(key2_id.clone()).await, refused("profile_revoked"));
    let (s, _) = env
        .admin("DELETE", &format!("/api/admin/profiles/{pid2}"), None)
        .await;
    assert!(s.is_success(), "{s}");
    assert_eq!(list(key2_id).await, refused("unknown_key"));

    // "Last used" is still stamped (at most once a second).
    let (_, key3) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let v = env.run(&key3, "set_result(1)").await;
    assert_eq!(v["result"], 1, "{v}");
    let (s, profiles) = env.admin("GET", "/api/admin/profiles", None).await;
    assert_eq!(s, StatusCode::OK);
    let used = profiles["profiles"]
        .as_array()
        .unwrap_or_else(|| profiles.as_array().expect("a list of profiles"))
        .iter()
        .filter(|p| !p["last_used_at"].is_null())
        .count();
    assert_eq!(used, 1, "{profiles}");
}

/// A profile write that reaches the database without moving this server's profiles
/// epoch (as an abandoned request's write can, after its epoch moved) is seen within
/// the key cache's lifetime (1 s), not only at the next profile write.
#[tokio::test]
async fn a_key_sees_a_write_the_epoch_missed_within_a_second() {
    use airlock_store::Store;
    let env = env_with(|_| {}).await;
    let (pid, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let key_id = key.split_once(':').unwrap().0.to_string();
    let list = || {
        send(
            &env.app,
            req("GET", "/executions", None, Some(&key_id), None),
        )
    };
    assert_eq!(list().await.0, StatusCode::OK);

    // A second store on the same file: its writes do not move the app's epoch.
    let other = airlock_store::SqliteStore::open(&env.dir.path().join("airlock.db"))
        .await
        .unwrap();
    let mut row = other.profile_get(&pid).await.unwrap().unwrap();
    row.revoked = true;
    other.profile_update(&row).await.unwrap();

    let mut refused = None;
    for _ in 0..30 {
        let (s, _, v) = list().await;
        if s == StatusCode::UNAUTHORIZED {
            refused = Some(v["code"].as_str().unwrap_or_default().to_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        refused.as_deref(),
        Some("profile_revoked"),
        "still accepted after 3 s"
    );
}

/// `POST /execute` with `body` under `key_id`: status, error code, whole answer.
async fn submit_raw(env: &Env, key_id: &str, body: Value) -> (StatusCode, String, Value) {
    let (s, _, v) = send(
        &env.app,
        req("POST", "/execute", None, Some(key_id), Some(body)),
    )
    .await;
    (s, v["code"].as_str().unwrap_or("").to_string(), v)
}

#[tokio::test]
async fn a_replayed_or_stale_signed_request_is_refused() {
    let env = env_with(|_| {}).await;
    let (pid, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let (key_id, secret) = key.split_once(':').unwrap();
    let (_, p) = env
        .admin("GET", &format!("/api/admin/profiles/{pid}"), None)
        .await;
    assert_eq!(p["replay_protection"], true, "new profiles default on: {p}");
    let script = "set_result(41 + 1)\n";
    let body = airlock::ids::signed_body(secret.as_bytes(), script);
    let (s, _, v) = submit_raw(&env, key_id, body.clone()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    // The very same request again: refused, and nothing new runs.
    let (s, code, v) = submit_raw(&env, key_id, body.clone()).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::FORBIDDEN, "replayed"),
        "{v}"
    );
    let done = wait_for_status(&env, &key, &id, "completed").await;
    assert_eq!(done["result"], 42);
    // A signature made for another script, ts or nonce does not carry over.
    let mut other = body.clone();
    other["script"] = json!("set_result(0)\n");
    other["nonce"] = json!(airlock::ids::nonce());
    let (s, code, _) = submit_raw(&env, key_id, other).await;
    assert_eq!((s, code.as_str()), (StatusCode::FORBIDDEN, "hash_mismatch"));
    // Stale (and future) timestamps are refused even when correctly signed (well
    // outside the ±300 s window: the server's clock moves on while the request travels).
    for skew in [-400i64, 400] {
        let ts = chrono::Utc::now().timestamp() + skew;
        let nonce = airlock::ids::nonce();
        let hash = airlock::ids::request_signature(secret.as_bytes(), ts, &nonce, script);
        let (s, code, v) = submit_raw(
            &env,
            key_id,
            json!({"script": script, "hash": hash, "ts": ts, "nonce": nonce}),
        )
        .await;
        assert_eq!(
            (s, code.as_str()),
            (StatusCode::FORBIDDEN, "stale_signature"),
            "{v}"
        );
        assert!(v["detail"].as_str().unwrap().contains("300"), "{v}");
    }
    // Malformed nonces and half-stamped bodies are input errors.
    let mut short = airlock::ids::signed_body(secret.as_bytes(), script);
    short["nonce"] = json!("abc");
    assert_eq!(
        submit_raw(&env, key_id, short).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let mut half = airlock::ids::signed_body(secret.as_bytes(), script);
    half.as_object_mut().unwrap().remove("nonce");
    assert_eq!(
        submit_raw(&env, key_id, half).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // The script-only form is refused while replay protection is on...
    let old = json!({"script": script, "hash": airlock::ids::hmac_hex(secret.as_bytes(), script.as_bytes())});
    let (s, code, v) = submit_raw(&env, key_id, old.clone()).await;
    assert_eq!(
        (s, code.as_str()),
        (StatusCode::FORBIDDEN, "signature_required"),
        "{v}"
    );
    assert!(!v.to_string().contains(secret));
    // ...and keeps working on a profile that has it off, where the new form works too.
    let (s, v) = env
        .admin(
            "PUT",
            &format!("/api/admin/profiles/{pid}"),
            Some(json!({"replay_protection": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["replay_protection"], false);
    for body in [
        old.clone(),
        old,
        airlock::ids::signed_body(secret.as_bytes(), script),
    ] {
        let (s, _, v) = submit_raw(&env, key_id, body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let id = v["execution_id"].as_str().unwrap().to_string();
        assert_eq!(
            wait_for_status(&env, &key, &id, "completed").await["result"],
            42
        );
    }
    // A stamped request is replay-checked there as well.
    let (s, code, _) = submit_raw(&env, key_id, body).await;
    assert_eq!((s, code.as_str()), (StatusCode::FORBIDDEN, "replayed"));
}

#[tokio::test]
async fn refusals_have_the_right_status() {
    let env = env_with(|c| c.max_script_bytes = 1024).await;
    let (pid, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let key_id = key.split_once(':').unwrap().0;
    let body = json!({"script": "set_result(1)", "hash": "00"});
    let cases: Vec<(Option<String>, u16, &str)> = vec![
        (None, 401, "missing_key"),
        (Some("Basic abc".into()), 401, "malformed_key"),
        (Some(format!("Bearer {key}")), 401, "malformed_key"),
        (
            Some("Bearer ark_000000000000000000000000".into()),
            401,
            "unknown_key",
        ),
        // A new profile asks for the replay-protected form.
        (Some(format!("Bearer {key_id}")), 403, "signature_required"),
    ];
    for (auth, status, code) in cases {
        let mut b = Request::builder()
            .method("POST")
            .uri("/execute")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = &auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        let (s, _, v) = send(&env.app, b.body(Body::from(body.to_string())).unwrap()).await;
        assert_eq!(
            (s.as_u16(), v["code"].as_str().unwrap()),
            (status, code),
            "{auth:?}: {v}"
        );
        assert!(!v.to_string().contains(key.split_once(':').unwrap().1));
    }
    let (s, _, v) = env.submit(&key, "set_result(1)", Some(0)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, _, _) = env.submit(&key, "set_result(1)", Some(61)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _, v) = env.submit(&key, &"#".repeat(2000), None).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    let (s, _, _) = send(
        &env.app,
        req(
            "POST",
            "/execute",
            None,
            Some(key_id),
            Some(json!({"script": 5})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // Expired, then revoked.
    let (s, _) = env
        .admin(
            "PUT",
            &format!("/api/admin/profiles/{pid}"),
            Some(json!({"expires_at": "2020-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, v) = env.submit(&key, "set_result(1)", None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("profile_expired"))
    );
    let (s, _) = env
        .admin(
            "PUT",
            &format!("/api/admin/profiles/{pid}"),
            Some(json!({"expires_at": null})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = env
        .admin("POST", &format!("/api/admin/profiles/{pid}/revoke"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, v) = env.submit(&key, "set_result(1)", None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("profile_revoked"))
    );
}

#[tokio::test]
async fn another_profiles_execution_is_not_found_and_lists_are_scoped() {
    let env = env_with(|_| {}).await;
    let (_, key_a) = env
        .locked_profile("t", &[("KEY_A", "value-of-a-1234")])
        .await;
    let (_, key_b) = env
        .locked_profile("t", &[("KEY_B", "value-of-b-5678")])
        .await;
    let a = env.run(&key_a, "set_result(settings.keys())").await;
    assert_eq!(a["result"], json!(["KEY_A"]));
    let id = a["execution_id"].as_str().unwrap();
    let (s, _) = env.poll(&key_b, id, 0).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let kb = key_b.split_once(':').unwrap().0;
    let (s, _, list) = send(&env.app, req("GET", "/executions", None, Some(kb), None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list["executions"], json!([]));
    let ka = key_a.split_once(':').unwrap().0;
    let (_, _, list) = send(
        &env.app,
        req(
            "GET",
            "/executions?status=completed&limit=5",
            None,
            Some(ka),
            None,
        ),
    )
    .await;
    assert_eq!(list["executions"].as_array().unwrap().len(), 1);
    assert_eq!(list["executions"][0]["execution_id"], id);
    let (s, _, _) = send(
        &env.app,
        req("GET", "/executions?status=bogus", None, Some(ka), None),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let (s, all) = env
        .admin("GET", "/api/admin/executions?limit=10", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(all["total"], 1);
    let (s, stats) = env.admin("GET", "/api/admin/stats", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(stats["total"], 1);
    assert_eq!(stats["by_status"]["completed"], 1);
    assert_eq!(stats["error_rate"], 0.0);
    assert!(stats["duration_ms"]["p50"].as_i64().is_some());
    let (s, _, _) = send(
        &env.app,
        req("GET", "/api/admin/executions", None, None, None),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn long_poll_wakes_on_completion() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let (_, _, v) = env
        .submit(
            &key,
            "import time\ntime.sleep(1.5)\nset_result('done')\n",
            None,
        )
        .await;
    let id = v["execution_id"].as_str().unwrap().to_string();
    let start = Instant::now();
    let mut v = Value::Null;
    for _ in 0..5 {
        v = env.poll(&key, &id, 30).await.1;
        if v["status"] == "completed" {
            break;
        }
    }
    assert_eq!(v["result"], "done", "{v}");
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "long-poll did not wake early"
    );
}

#[tokio::test]
async fn full_queue_answers_429_and_loses_nothing() {
    let env = env_with(|c| {
        c.workers = Some(1);
        c.queue_size = 1;
    })
    .await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let mut accepted = Vec::new();
    let mut refused = None;
    for _ in 0..8 {
        let (s, h, v) = env
            .submit(&key, "import time\ntime.sleep(0.5)\nset_result(1)", None)
            .await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((h, v));
            break;
        }
        assert_eq!(s, StatusCode::ACCEPTED);
        accepted.push(v["execution_id"].as_str().unwrap().to_string());
    }
    let (h, v) = refused.expect("a burst beyond capacity must get 429");
    assert!(h.get(header::RETRY_AFTER).is_some());
    assert_eq!(v["code"], "rate_limited");
    // One running (or taken by the dispatcher) plus at most one queued: a burst
    // beyond that is refused, not silently dropped.
    assert!(!accepted.is_empty() && accepted.len() <= 3, "{accepted:?}");
    for id in &accepted {
        let mut st = Value::Null;
        for _ in 0..10 {
            let (_, v) = env.poll(&key, id, 30).await;
            st = v["status"].clone();
            if st == "completed" {
                break;
            }
        }
        assert_eq!(st, "completed", "execution {id} lost");
    }
}

#[tokio::test]
async fn llm_complete_pauses_and_resumes() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let key_id = key.split_once(':').unwrap().0.to_string();
    let script = "a = llm.complete('Summarize ' + settings.get('API_KEY'), model='fast')\nb = airlock.llm.complete('second')\nset_result([a, b])\n";
    let script = format!("import airlock\n{script}");
    let (_, _, v) = env.submit(&key, &script, Some(10)).await;
    let id = v["execution_id"].as_str().unwrap().to_string();
    let respond = |body: Value| {
        req(
            "POST",
            &format!("/executions/{id}/respond"),
            None,
            Some(&key_id),
            Some(body),
        )
    };

    let mut v = Value::Null;
    for _ in 0..5 {
        v = env.poll(&key, &id, 20).await.1;
        if v["status"] == "awaiting_llm" {
            break;
        }
    }
    assert_eq!(v["status"], "awaiting_llm", "{v}");
    assert_eq!(v["llm_request"]["prompt"], "Summarize [REDACTED:API_KEY]");
    assert_eq!(v["llm_request"]["model"], "fast");
    let rid = v["llm_request"]["request_id"].as_str().unwrap().to_string();

    let (s, _, _) = send(
        &env.app,
        respond(json!({"response": "x", "request_id": "nope"})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _, r) = send(
        &env.app,
        respond(json!({"response": "first answer", "request_id": rid})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r, json!({"execution_id": id, "status": "running"}));
    let (s, _, _) = send(
        &env.app,
        respond(json!({"response": "again", "request_id": rid})),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);

    for _ in 0..5 {
        v = env.poll(&key, &id, 20).await.1;
        if v["status"] == "awaiting_llm" && v["llm_request"]["prompt"] == "second" {
            break;
        }
    }
    assert_eq!(v["llm_request"]["prompt"], "second", "{v}");
    let (s, _, _) = send(&env.app, respond(json!({"response": "second answer"}))).await;
    assert_eq!(s, StatusCode::OK);
    for _ in 0..5 {
        v = env.poll(&key, &id, 20).await.1;
        if v["status"] == "completed" {
            break;
        }
    }
    assert_eq!(v["result"], json!(["first answer", "second answer"]), "{v}");
    let (s, _, _) = send(&env.app, respond(json!({"response": "late"}))).await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn restart_marks_unfinished_executions_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let app = App::open(config(dir.path())).await.unwrap();
        id = "exec_restarttest00000000000000000000".to_string();
        let now = chrono::Utc::now();
        app.state
            .store
            .execution_insert(&airlock_store::ExecutionRow {
                id: id.clone(),
                profile_id: "prf_x".into(),
                status: airlock_store::ExecutionStatus::Running,
                script: "pass".into(),
                script_sha256: "x".into(),
                timeout_secs: 5,
                result: None,
                stdout: String::new(),
                stderr: String::new(),
                error: None,
                llm_request: None,
                llm_exchanges: Vec::new(),
                redactions: Vec::new(),
                execution_time_ms: None,
                llm_wait_ms: 0,
                inputs: None,
                created_at: now,
                started_at: Some(now),
                completed_at: None,
            })
            .await
            .unwrap();
        let mut paused = app.state.store.execution_get(&id).await.unwrap().unwrap();
        paused.id = format!("{id}p");
        paused.status = airlock_store::ExecutionStatus::AwaitingLlm;
        paused.llm_request = Some(airlock_store::LlmRequest {
            request_id: "r1".into(),
            prompt: "p".into(),
            model: "default".into(),
        });
        app.state.store.execution_insert(&paused).await.unwrap();
    }
    let app = App::open(config(dir.path())).await.unwrap();
    let row = app.state.store.execution_get(&id).await.unwrap().unwrap();
    assert_eq!(row.status.as_str(), "error");
    assert_eq!(row.error.as_deref(), Some("interrupted by server restart"));
    let paused = app
        .state
        .store
        .execution_get(&format!("{id}p"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paused.status.as_str(), "error");
    assert_eq!(paused.llm_request, None);
}

#[tokio::test]
async fn health_reports_sandbox_layers() {
    let env = env_with(|_| {}).await;
    let (s, _, v) = send(&env.app, req("GET", "/health", None, None, None)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["sandbox"]["ready"], true, "{v}");
    assert!(v["sandbox"]["layers"].is_object(), "{v}");
}

/// Polls the admin detail until the execution has status `want` (10 s at most).
async fn wait_admin_status(env: &Env, id: &str, want: &str) -> Value {
    let mut detail = Value::Null;
    for _ in 0..100 {
        detail = env
            .admin("GET", &format!("/api/admin/executions/{id}"), None)
            .await
            .1;
        if detail["status"] == want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    detail
}

async fn wait_for_status(env: &Env, key: &str, id: &str, want: &str) -> Value {
    // Short long-polls: a status that holds (running, awaiting_llm) is seen
    // even when it was reached before the first poll.
    let mut v = Value::Null;
    for _ in 0..120 {
        v = env.poll(key, id, 1).await.1;
        if v["status"] == want {
            return v;
        }
    }
    panic!("execution never reached {want}: {v}");
}

#[tokio::test]
async fn llm_prompt_is_redacted_in_every_encoding_and_wait_is_reported_apart() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let key_id = key.split_once(':').unwrap().0.to_string();
    let script = "import base64\nv = settings.get('API_KEY')\nr = llm.complete('raw ' + v + ' b64 ' + base64.b64encode(v.encode()).decode())\nset_result(r)\n";
    let (_, _, v) = env.submit(&key, script, None).await;
    let id = v["execution_id"].as_str().unwrap().to_string();
    let v = wait_for_status(&env, &key, &id, "awaiting_llm").await;
    assert_eq!(
        v["llm_request"]["prompt"],
        "raw [REDACTED:API_KEY] b64 [REDACTED:API_KEY]"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, _, _) = send(
        &env.app,
        req(
            "POST",
            &format!("/executions/{id}/respond"),
            None,
            Some(&key_id),
            Some(json!({"response": "ok"})),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v = wait_for_status(&env, &key, &id, "completed").await;
    assert_eq!(v["result"], "ok");
    assert!(v["llm_wait_ms"].as_i64().unwrap() >= 1000, "{v}");
    assert!(
        v["execution_time_ms"].as_i64().unwrap() < 1000,
        "paused time counted as running: {v}"
    );
    let (_, detail) = env
        .admin("GET", &format!("/api/admin/executions/{id}"), None)
        .await;
    let ex = &detail["llm_exchanges"][0];
    assert_eq!(
        ex["prompt"],
        "raw [REDACTED:API_KEY] b64 [REDACTED:API_KEY]"
    );
    assert_eq!(ex["response"], "ok");
    assert!(ex["asked_at"].is_string() && ex["answered_at"].is_string());
    let ev = detail["redactions"].as_array().unwrap();
    assert!(
        ev.iter()
            .any(|e| e["field"] == "llm_prompt" && e["count"] == 2),
        "{detail}"
    );
}

#[tokio::test]
async fn llm_wait_limit_ends_as_timeout() {
    let env = env_with(|_| {}).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let (key_id, secret) = key.split_once(':').unwrap();
    let script = "llm.complete('anyone?')\nset_result('never')\n";
    let mut body = airlock::ids::signed_body(secret.as_bytes(), script);
    body["llm_timeout"] = json!(1);
    let (s, _, v) = send(
        &env.app,
        req("POST", "/execute", None, Some(key_id), Some(body)),
    )
    .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    let v = wait_for_status(&env, &key, &id, "timeout").await;
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("LLM answer never came"),
        "{v}"
    );
    assert_eq!(v["llm_request"], Value::Null);
    let mut bad = airlock::ids::signed_body(secret.as_bytes(), script);
    bad["llm_timeout"] = json!(0);
    let (s, _, _) = send(
        &env.app,
        req("POST", "/execute", None, Some(key_id), Some(bad)),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn revoking_the_profile_ends_a_paused_execution() {
    let env = env_with(|_| {}).await;
    let (pid, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let (_, _, v) = env
        .submit(&key, "llm.complete('wait')\nset_result(1)\n", None)
        .await;
    let id = v["execution_id"].as_str().unwrap().to_string();
    wait_for_status(&env, &key, &id, "awaiting_llm").await;
    let (s, _) = env
        .admin("POST", &format!("/api/admin/profiles/{pid}/revoke"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let detail = wait_admin_status(&env, &id, "error").await;
    assert_eq!(detail["status"], "error", "{detail}");
    assert!(
        detail["error"].as_str().unwrap().contains("revoked"),
        "{detail}"
    );
}

#[tokio::test]
async fn revoking_the_profile_kills_a_running_execution() {
    let env = env_with(|_| {}).await;
    let (pid, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let (_, _, v) = env
        .submit(
            &key,
            "import time\ntime.sleep(30)\nset_result(1)\n",
            Some(60),
        )
        .await;
    let id = v["execution_id"].as_str().unwrap().to_string();
    wait_for_status(&env, &key, &id, "running").await;
    let start = Instant::now();
    let (s, _) = env
        .admin("POST", &format!("/api/admin/profiles/{pid}/revoke"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let detail = wait_admin_status(&env, &id, "error").await;
    assert_eq!(detail["status"], "error", "{detail}");
    assert_eq!(
        detail["error"],
        "the profile was revoked while the script ran"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn queued_execution_of_a_revoked_profile_never_runs() {
    let env = env_with(|c| c.workers = Some(1)).await;
    let (_, key_busy) = env
        .locked_profile("t", &[("OTHER_KEY", "another-value-1234")])
        .await;
    let (pid, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    // Occupy the only worker with another profile's script.
    let (_, _, busy) = env
        .submit(
            &key_busy,
            "import time\ntime.sleep(3)\nset_result(1)\n",
            None,
        )
        .await;
    let busy = busy["execution_id"].as_str().unwrap().to_string();
    for _ in 0..100 {
        if env.poll(&key_busy, &busy, 0).await.1["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _, v) = env
        .submit(&key, "print('ran')\nset_result('ran')\n", None)
        .await;
    let id = v["execution_id"].as_str().unwrap().to_string();
    let (s, _) = env
        .admin("POST", &format!("/api/admin/profiles/{pid}/revoke"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let detail = wait_admin_status(&env, &id, "error").await;
    assert_eq!(detail["status"], "error", "{detail}");
    assert_eq!(
        detail["error"],
        "the profile was revoked or expired before the script started"
    );
    assert_eq!(detail["stdout"], "");
    assert_eq!(
        wait_for_status(&env, &key_busy, &busy, "completed").await["result"],
        1
    );
}

#[tokio::test]
async fn slot_uids_follow_the_configured_base_and_never_root() {
    let env = env_with(|c| c.sandbox_uid_base = 3_000_000).await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let v = env.run(&key, "import os\nset_result(os.getuid())\n").await;
    let uid = v["result"].as_u64().expect("uid");
    assert!((3_000_000..3_000_002).contains(&uid), "{v}");

    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.sandbox_uid_base = 0;
    let app = App::open(c).await.unwrap();
    let reason = app
        .state
        .runner
        .unavailable_reason()
        .unwrap_or("")
        .to_string();
    assert!(reason.contains("AIRLOCK_SANDBOX_UID_BASE"), "{reason}");
}

#[tokio::test]
async fn an_unreasonable_max_paused_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.max_paused = airlock::sandbox::MAX_PAUSED_LIMIT + 1;
    let app = App::open(c).await.unwrap();
    let reason = app.state.runner.unavailable_reason().unwrap_or("");
    assert!(
        reason.contains("AIRLOCK_MAX_PAUSED must be at most"),
        "{reason}"
    );
}

/// Answers the paused `llm.complete` of execution `id` with `answer`.
async fn answer_llm(env: &Env, key: &str, id: &str, answer: &str) {
    let v = wait_for_status(env, key, id, "awaiting_llm").await;
    let body = json!({"response": answer, "request_id": v["llm_request"]["request_id"]});
    let (s, v) = env
        .agent(
            key,
            "POST",
            &format!("/executions/{id}/respond"),
            Some(body),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test]
async fn paused_executions_give_their_worker_to_others() {
    let env = env_with(|c| {
        c.workers = Some(1);
        c.max_paused = 2;
    })
    .await;
    let (_, key) = env.locked_profile("t", &[("API_KEY", SECRET_VALUE)]).await;
    let pauses = "import os\nr = llm.complete('q')\nset_result({'answer': r, 'uid': os.getuid()})";
    let submit = |script: &'static str| {
        let env = &env;
        let key = &key;
        async move {
            let (s, h, v) = env.submit(key, script, Some(20)).await;
            (s, h, v)
        }
    };
    // One worker, two executions paused at once: the first let the worker go.
    let mut paused = Vec::new();
    for _ in 0..2 {
        let (s, _, v) = submit(pauses).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let id = v["execution_id"].as_str().unwrap().to_string();
        wait_for_status(&env, &key, &id, "awaiting_llm").await;
        paused.push(id);
    }
    // Every pause slot is taken: a new execution is refused, and says why.
    let (s, h, v) = submit("set_result(1)").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(h.get(header::RETRY_AFTER).is_some());
    assert_eq!(v["code"], "rate_limited");
    assert!(
        v["detail"].as_str().unwrap().contains("AIRLOCK_MAX_PAUSED"),
        "{v}"
    );
    // One answered (and done): a trivial execution runs while the other is still
    // paused.
    answer_llm(&env, &key, &paused[0], "first").await;
    wait_for_status(&env, &key, &paused[0], "completed").await;
    let other = env.run(&key, "import os\nset_result(os.getuid())").await;
    assert_eq!(other["status"], "completed", "{other}");
    let (_, still) = env.poll(&key, &paused[1], 0).await;
    assert_eq!(still["status"], "awaiting_llm", "{still}");
    answer_llm(&env, &key, &paused[1], "second").await;
    let mut uids = Vec::new();
    for (id, answer) in paused.iter().zip(["first", "second"]) {
        let mut v = Value::Null;
        for _ in 0..10 {
            v = env.poll(&key, id, 30).await.1;
            if v["status"] == "completed" {
                break;
            }
        }
        assert_eq!(v["status"], "completed", "{v}");
        assert_eq!(v["result"]["answer"], answer, "{v}");
        uids.push(v["result"]["uid"].clone());
    }
    if common::running_as_root() {
        // Executions alive at once on one worker have identities of their own.
        assert_ne!(uids[0], uids[1], "two paused executions shared a uid");
        assert_ne!(
            other["result"], uids[1],
            "a paused execution shared its uid"
        );
    }
}
