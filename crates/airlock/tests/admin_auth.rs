//! Admin authentication: setup, login, lockout, logout, session enforcement,
//! cookie attributes and CSRF defences.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use axum::http::{header, Method, StatusCode};
use common::*;
use serde_json::json;

#[tokio::test]
async fn status_reflects_setup_and_session() {
    let app = TestApp::start().await;
    let anon = app.client();

    let reply = anon.get("/api/admin/status").await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(
        reply.2,
        json!({ "setup_required": true, "authenticated": false })
    );

    let admin = app.admin().await;
    let reply = admin.get("/api/admin/status").await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2["setup_required"], json!(false));
    assert_eq!(reply.2["authenticated"], json!(true));
    // With a live session: when it ends if idle from now (12 hours).
    let ends: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(reply.2["session_expires_at"].clone()).expect("a time");
    let left = ends - chrono::Utc::now();
    assert!(
        left > chrono::Duration::hours(11) && left <= chrono::Duration::hours(12),
        "{left}"
    );

    let reply = anon.get("/api/admin/status").await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(
        reply.2,
        json!({ "setup_required": false, "authenticated": false })
    );
}

#[tokio::test]
async fn setup_rejects_short_password_and_runs_only_once() {
    let app = TestApp::start().await;
    let client = app.client();

    // 11 characters: too short, and the detail says how long it must be.
    let reply = client
        .post("/api/admin/setup", json!({ "password": "abcdefghijk" }))
        .await;
    let detail = assert_error(&reply, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(detail.contains("12"), "detail should mention 12: {detail}");
    assert_eq!(set_cookie_header(&reply.1), None, "no cookie on failure");

    // Still in setup mode.
    let reply = client.get("/api/admin/status").await;
    assert_eq!(
        reply.2,
        json!({ "setup_required": true, "authenticated": false })
    );

    // Exactly 12 characters is accepted.
    let reply = client
        .post("/api/admin/setup", json!({ "password": "abcdefghijkl" }))
        .await;
    assert!(reply.0.is_success(), "setup: {} {}", reply.0, reply.2);
    assert!(session_cookie(&reply.1).is_some(), "setup sets a cookie");

    // A second setup is a conflict, even with a valid password, and does not
    // replace the first password.
    let reply = client
        .post("/api/admin/setup", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_error(&reply, StatusCode::CONFLICT);
    assert_eq!(set_cookie_header(&reply.1), None);

    let reply = client
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_error(&reply, StatusCode::UNAUTHORIZED);
    let reply = client
        .post("/api/admin/login", json!({ "password": "abcdefghijkl" }))
        .await;
    assert_status(&reply, StatusCode::OK);
}

#[tokio::test]
async fn session_cookie_attributes_without_https() {
    let app = TestApp::start().await;
    let reply = app
        .client()
        .post("/api/admin/setup", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert!(reply.0.is_success());
    let raw = set_cookie_header(&reply.1).expect("Set-Cookie for airlock_session");
    let attrs = cookie_attributes(&raw);
    assert!(attrs.contains(&"httponly".to_string()), "{raw}");
    assert!(attrs.contains(&"samesite=strict".to_string()), "{raw}");
    assert!(attrs.contains(&"path=/".to_string()), "{raw}");
    assert!(
        !attrs.contains(&"secure".to_string()),
        "no Secure without an https public_url: {raw}"
    );

    // Login sets the same attributes.
    let reply = app
        .client()
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_status(&reply, StatusCode::OK);
    let raw = set_cookie_header(&reply.1).expect("login Set-Cookie");
    let attrs = cookie_attributes(&raw);
    assert!(attrs.contains(&"httponly".to_string()), "{raw}");
    assert!(attrs.contains(&"samesite=strict".to_string()), "{raw}");
    assert!(attrs.contains(&"path=/".to_string()), "{raw}");
    assert!(!attrs.contains(&"secure".to_string()), "{raw}");
}

#[tokio::test]
async fn session_cookie_is_secure_with_https_public_url() {
    let app = TestApp::start_with(|c| {
        c.public_url = Some("https://airlock.example.com".to_string());
    })
    .await;
    let client = app.client().with_host("airlock.example.com");
    let reply = client
        .post("/api/admin/setup", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert!(reply.0.is_success(), "setup: {} {}", reply.0, reply.2);
    let raw = set_cookie_header(&reply.1).expect("Set-Cookie for airlock_session");
    let attrs = cookie_attributes(&raw);
    assert!(attrs.contains(&"secure".to_string()), "{raw}");
    assert!(attrs.contains(&"httponly".to_string()), "{raw}");
    assert!(attrs.contains(&"samesite=strict".to_string()), "{raw}");
    assert!(attrs.contains(&"path=/".to_string()), "{raw}");

    let reply = client
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_status(&reply, StatusCode::OK);
    let raw = set_cookie_header(&reply.1).expect("login Set-Cookie");
    assert!(
        cookie_attributes(&raw).contains(&"secure".to_string()),
        "{raw}"
    );
}

#[tokio::test]
async fn login_with_right_and_wrong_password() {
    let app = TestApp::start().await;
    let _admin = app.admin().await;
    let client = app.client();

    let reply = client
        .post(
            "/api/admin/login",
            json!({ "password": "not the password" }),
        )
        .await;
    assert_error(&reply, StatusCode::UNAUTHORIZED);
    assert_eq!(set_cookie_header(&reply.1), None);

    let reply = client
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_status(&reply, StatusCode::OK);
    let cookie = session_cookie(&reply.1).expect("login sets the session cookie");

    let mut logged_in = client.clone();
    logged_in.cookie = Some(cookie);
    let reply = logged_in.get("/api/admin/credentials").await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(reply.2, json!({ "credentials": [] }));
    let reply = logged_in.get("/api/admin/status").await;
    assert_eq!(reply.2["setup_required"], json!(false));
    assert_eq!(reply.2["authenticated"], json!(true));
    assert!(reply.2["session_expires_at"].is_string(), "{}", reply.2);
}

#[tokio::test]
async fn login_locks_out_after_five_failures() {
    let app = TestApp::start().await;
    let _admin = app.admin().await;
    let client = app.client().with_peer("10.1.2.3:5555");

    for attempt in 1..=5 {
        let reply = client
            .post(
                "/api/admin/login",
                json!({ "password": "wrong password!!" }),
            )
            .await;
        assert_eq!(
            reply.0,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}: {}",
            reply.2
        );
    }

    // Locked out: even the right password gets 429 with Retry-After.
    let reply = client
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_error(&reply, StatusCode::TOO_MANY_REQUESTS);
    let retry_after = reply
        .1
        .get(header::RETRY_AFTER)
        .expect("Retry-After header")
        .to_str()
        .unwrap()
        .to_string();
    let secs: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is not a number of seconds: {retry_after}"));
    assert!(secs > 0, "Retry-After must be positive");
    assert_eq!(set_cookie_header(&reply.1), None, "no session while locked");

    let reply = client
        .post(
            "/api/admin/login",
            json!({ "password": "wrong password!!" }),
        )
        .await;
    assert_error(&reply, StatusCode::TOO_MANY_REQUESTS);
    assert!(reply.1.get(header::RETRY_AFTER).is_some());
}

#[tokio::test]
async fn lockout_is_per_client() {
    let app = TestApp::start().await;
    let _admin = app.admin().await;
    let attacker = app.client().with_peer("10.9.9.9:1234");
    for _ in 0..5 {
        let reply = attacker
            .post(
                "/api/admin/login",
                json!({ "password": "wrong password!!" }),
            )
            .await;
        assert_error(&reply, StatusCode::UNAUTHORIZED);
    }
    let reply = attacker
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_error(&reply, StatusCode::TOO_MANY_REQUESTS);

    // Another client is not locked out.
    let other = app.client().with_peer("10.7.7.7:4321");
    let reply = other
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_status(&reply, StatusCode::OK);
    assert!(session_cookie(&reply.1).is_some());
}

#[tokio::test]
async fn logout_invalidates_the_session() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    assert_status(&admin.get("/api/admin/credentials").await, StatusCode::OK);

    let reply = admin.post_empty("/api/admin/logout").await;
    assert_eq!(reply.0, StatusCode::NO_CONTENT, "logout: {}", reply.2);
    assert_eq!(reply.2, serde_json::Value::Null, "204 has no body");

    // The old cookie no longer works anywhere.
    assert_error(
        &admin.get("/api/admin/credentials").await,
        StatusCode::UNAUTHORIZED,
    );
    assert_error(
        &admin.get("/api/admin/profiles").await,
        StatusCode::UNAUTHORIZED,
    );
    assert_error(
        &admin
            .post(
                "/api/admin/credentials",
                json!({ "name": "AFTER_LOGOUT", "description": "x" }),
            )
            .await,
        StatusCode::UNAUTHORIZED,
    );
    let reply = admin.get("/api/admin/status").await;
    assert_eq!(
        reply.2,
        json!({ "setup_required": false, "authenticated": false })
    );

    // Logging in again works and yields a different session.
    let reply = admin
        .anonymous()
        .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_status(&reply, StatusCode::OK);
    let new_cookie = session_cookie(&reply.1).unwrap();
    assert_ne!(Some(new_cookie), admin.cookie, "fresh session token");
}

#[tokio::test]
async fn admin_routes_require_a_session() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    create_credential(&admin, "SOME_KEY", "a key", Some("v-123")).await;
    let id = create_profile(&admin, "p", &["SOME_KEY"]).await;

    let anon = app.client();
    let mut forged = app.client();
    forged.cookie = Some(format!("{SESSION_COOKIE}=not-a-real-session-token"));

    let p = format!("/api/admin/profiles/{id}");
    let requests: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, "/api/admin/credentials".into(), None),
        (
            Method::POST,
            "/api/admin/credentials".into(),
            Some(json!({ "name": "NEW_ONE", "description": "d" })),
        ),
        (
            Method::PUT,
            "/api/admin/credentials/SOME_KEY".into(),
            Some(json!({ "description": "changed" })),
        ),
        (
            Method::DELETE,
            "/api/admin/credentials/SOME_KEY".into(),
            None,
        ),
        (Method::GET, "/api/admin/profiles".into(), None),
        (
            Method::POST,
            "/api/admin/profiles".into(),
            Some(json!({ "description": "x" })),
        ),
        (Method::GET, p.clone(), None),
        (
            Method::PUT,
            p.clone(),
            Some(json!({ "description": "y", "expires_at": null, "allowed_hosts": null })),
        ),
        (Method::DELETE, p.clone(), None),
        (
            Method::POST,
            format!("{p}/credentials"),
            Some(json!({ "credentials": ["SOME_KEY"] })),
        ),
        (
            Method::DELETE,
            format!("{p}/credentials"),
            Some(json!({ "credentials": ["SOME_KEY"] })),
        ),
        (Method::POST, format!("{p}/lock"), None),
        (Method::POST, format!("{p}/revoke"), None),
        (Method::POST, format!("{p}/regenerate-key"), None),
        (Method::POST, "/api/admin/logout".into(), None),
    ];
    for client in [&anon, &forged] {
        for (method, path, body) in &requests {
            let reply = client.json(method.clone(), path, body.clone()).await;
            assert_eq!(
                reply.0,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without a valid session: {}",
                reply.2
            );
            assert_error(&reply, StatusCode::UNAUTHORIZED);
        }
    }

    // Nothing changed.
    let reply = admin.get("/api/admin/credentials").await;
    let creds: Vec<_> = reply.2["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(credential_view)
        .collect();
    assert_eq!(
        creds,
        vec![json!({ "name": "SOME_KEY", "description": "a key", "value_exists": true })]
    );
    let reply = admin.get(&p).await;
    assert_status(&reply, StatusCode::OK);
    assert_eq!(
        profile_view(&reply.2),
        expected_profile(
            &id,
            "p",
            false,
            false,
            json!(null),
            json!([cred_entry("SOME_KEY", "a key", true)])
        )
    );
}

#[tokio::test]
async fn csrf_requires_json_content_type() {
    let app = TestApp::start().await;
    let admin = app.admin().await;
    let body = json!({ "name": "CSRF_KEY", "description": "d", "value": "v1" })
        .to_string()
        .into_bytes();

    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let reply = admin
            .raw(
                Method::POST,
                "/api/admin/credentials",
                ct,
                body.clone(),
                &[],
            )
            .await;
        assert_error_code(&reply, StatusCode::FORBIDDEN, "csrf_rejected");
    }
    // Nothing was created.
    let reply = admin.get("/api/admin/credentials").await;
    assert_eq!(reply.2, json!({ "credentials": [] }));

    // PUT too.
    create_credential(&admin, "CSRF_KEY", "original", None).await;
    let reply = admin
        .raw(
            Method::PUT,
            "/api/admin/credentials/CSRF_KEY",
            Some("text/plain"),
            json!({ "description": "hacked" }).to_string().into_bytes(),
            &[],
        )
        .await;
    assert_error_code(&reply, StatusCode::FORBIDDEN, "csrf_rejected");

    // And the unauthenticated login endpoint.
    let reply = app
        .client()
        .raw(
            Method::POST,
            "/api/admin/login",
            Some("text/plain"),
            json!({ "password": ADMIN_PASSWORD })
                .to_string()
                .into_bytes(),
            &[],
        )
        .await;
    assert_error_code(&reply, StatusCode::FORBIDDEN, "csrf_rejected");
    assert_eq!(set_cookie_header(&reply.1), None);

    let reply = admin.get("/api/admin/credentials").await;
    let creds: Vec<_> = reply.2["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(credential_view)
        .collect();
    assert_eq!(
        creds,
        vec![json!({ "name": "CSRF_KEY", "description": "original", "value_exists": false })]
    );
}

#[tokio::test]
async fn setup_is_csrf_protected() {
    let app = TestApp::start().await;
    let client = app.client();
    let reply = client
        .raw(
            Method::POST,
            "/api/admin/setup",
            Some("text/plain"),
            json!({ "password": ADMIN_PASSWORD })
                .to_string()
                .into_bytes(),
            &[],
        )
        .await;
    assert_error_code(&reply, StatusCode::FORBIDDEN, "csrf_rejected");

    let reply = client
        .with_origin("http://evil.example:7700")
        .post("/api/admin/setup", json!({ "password": ADMIN_PASSWORD }))
        .await;
    assert_error(&reply, StatusCode::FORBIDDEN);
    assert_eq!(set_cookie_header(&reply.1), None);

    let reply = client.get("/api/admin/status").await;
    assert_eq!(
        reply.2,
        json!({ "setup_required": true, "authenticated": false })
    );
}

#[tokio::test]
async fn csrf_checks_origin_against_host() {
    let app = TestApp::start().await;
    let admin = app.admin().await.with_host("airlock.test:9000");

    // A different host, a different port, or a different scheme's default
    // port: rejected, for POST, PUT and DELETE.
    for origin in [
        "http://evil.test:9000",
        "http://airlock.test:9001",
        "http://airlock.test",
        "null",
    ] {
        let hostile = admin.with_origin(origin);
        let reply = hostile
            .post(
                "/api/admin/credentials",
                json!({ "name": "FROM_EVIL", "description": "d" }),
            )
            .await;
        assert_eq!(
            reply.0,
            StatusCode::FORBIDDEN,
            "origin {origin}: {}",
            reply.2
        );
        assert_error(&reply, StatusCode::FORBIDDEN);
    }

    create_credential(&admin, "TARGET", "keep me", Some("v")).await;
    let hostile = admin.with_origin("http://evil.test:9000");
    assert_error(
        &hostile
            .put(
                "/api/admin/credentials/TARGET",
                json!({ "description": "changed" }),
            )
            .await,
        StatusCode::FORBIDDEN,
    );
    assert_error(
        &hostile.delete("/api/admin/credentials/TARGET").await,
        StatusCode::FORBIDDEN,
    );
    assert_error(
        &hostile
            .anonymous()
            .post("/api/admin/login", json!({ "password": ADMIN_PASSWORD }))
            .await,
        StatusCode::FORBIDDEN,
    );

    // A matching Origin is accepted.
    let friendly = admin.with_origin("http://airlock.test:9000");
    let reply = friendly
        .post(
            "/api/admin/credentials",
            json!({ "name": "FROM_UI", "description": "d" }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    let reply = friendly
        .put(
            "/api/admin/credentials/FROM_UI",
            json!({ "description": "d2" }),
        )
        .await;
    assert_status(&reply, StatusCode::OK);

    let reply = admin.get("/api/admin/credentials").await;
    let creds: Vec<_> = reply.2["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(credential_view)
        .collect();
    assert_eq!(
        creds,
        vec![
            json!({ "name": "FROM_UI", "description": "d2", "value_exists": false }),
            json!({ "name": "TARGET", "description": "keep me", "value_exists": true }),
        ]
    );
}

#[tokio::test]
async fn csrf_checks_origin_against_public_url() {
    let app = TestApp::start_with(|c| {
        c.public_url = Some("https://airlock.example.com".to_string());
    })
    .await;
    // Behind a reverse proxy the Host seen by the app may be internal.
    let admin = app.admin().await.with_host("10.0.0.5:8080");
    let admin = admin.with_origin("https://airlock.example.com");
    let reply = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "VIA_PROXY", "description": "d" }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);

    let hostile = admin.with_origin("https://evil.example.com");
    let reply = hostile
        .post(
            "/api/admin/credentials",
            json!({ "name": "VIA_EVIL", "description": "d" }),
        )
        .await;
    assert_error(&reply, StatusCode::FORBIDDEN);

    let reply = admin.get("/api/admin/credentials").await;
    let names: Vec<_> = reply.2["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("VIA_PROXY")]);
}

/// A public URL with a path (Airlock behind a proxy under a sub-path): the
/// browser's Origin carries only scheme://host[:port], which is what counts.
#[tokio::test]
async fn csrf_origin_matches_public_url_with_path() {
    let app = TestApp::start_with(|c| {
        c.public_url = Some("https://tools.example.com/airlock".to_string());
    })
    .await;
    let admin = app
        .admin()
        .await
        .with_host("10.0.0.5:8080")
        .with_origin("https://tools.example.com");
    let reply = admin
        .post(
            "/api/admin/credentials",
            json!({ "name": "SUBPATH", "description": "d" }),
        )
        .await;
    assert_status(&reply, StatusCode::CREATED);
    let reply = admin
        .with_origin("https://evil.example.com")
        .post(
            "/api/admin/credentials",
            json!({ "name": "EVIL", "description": "d" }),
        )
        .await;
    assert_error(&reply, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn real_socket_serves_health_and_admin_status() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestApp::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = airlock::serve(app.router(), listener);

    let client = async move {
        let mut out = Vec::new();
        for path in ["/health", "/api/admin/status"] {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf).await.unwrap();
            out.push(String::from_utf8_lossy(&buf).into_owned());
        }
        out
    };

    let responses = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::select! {
            _ = server => panic!("server exited early"),
            r = client => r,
        }
    })
    .await
    .expect("real-socket requests timed out");

    for r in &responses {
        assert!(r.starts_with("HTTP/1.1 200"), "response: {r}");
    }
    let body = |r: &str| -> serde_json::Value {
        let (head, b) = r.split_once("\r\n\r\n").expect("header/body split");
        let b = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(b)
        } else {
            b.to_string()
        };
        serde_json::from_str(&b).unwrap_or_else(|e| panic!("body not JSON ({e}): {b:?}"))
    };
    let health = body(&responses[0]);
    assert_eq!(health["status"], json!("ok"), "{health}");
    assert_eq!(health["version"], json!(env!("CARGO_PKG_VERSION")));
    assert_eq!(
        body(&responses[1]),
        json!({ "setup_required": true, "authenticated": false })
    );
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").expect("chunk size line");
        let size =
            usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).expect("chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        s = &rest[size + 2..];
    }
}
