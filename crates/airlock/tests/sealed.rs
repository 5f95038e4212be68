//! Sealed credentials end to end: the real router, the real sandbox, real Python
//! (stdlib `urllib` with the proxy and CA-bundle variables the runner sets), and local
//! HTTP and HTTPS upstreams on 127.0.0.x. The HTTPS upstream's certificate comes from a
//! test CA that the proxy trusts through `egress_ca_bundle`; the script trusts the
//! instance's egress CA through the bundle the sandbox sees.
//!
//! What must hold: the bound upstream receives the real value; the script, its
//! output, the stored records (database file, API responses) never contain it; the
//! placeholder sent to any other allowed host is refused and recorded (and, when the
//! operator asked, revokes the profile); an echoing upstream cannot hand the value
//! back; a script searching its environment, its memory and every file it can reach
//! finds only the placeholder.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;

use common::req;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use airlock::app::App;
use airlock::config::Config;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

struct Env {
    base: common::sandboxed::Sandboxed,
    _public: tempfile::TempDir,
}

impl std::ops::Deref for Env {
    type Target = common::sandboxed::Sandboxed;
    fn deref(&self) -> &Self::Target {
        &self.base
    }
}

/// A fresh directory outside /tmp (each execution gets its own empty /tmp, so the
/// CA bundle directory must live elsewhere) that the sandbox's uid can traverse.
fn public_dir() -> tempfile::TempDir {
    common::sandbox_visible_tempdir("sealed-ca")
}

async fn start(upstream_ca: Option<&str>) -> Option<Env> {
    start_with(upstream_ca, Vec::new()).await
}

async fn start_with(upstream_ca: Option<&str>, python_paths: Vec<PathBuf>) -> Option<Env> {
    let dir = tempfile::tempdir().unwrap();
    let public = public_dir();
    let bundle = upstream_ca.map(|pem| {
        let p = dir.path().join("upstream-ca.pem");
        std::fs::write(&p, pem).unwrap();
        p
    });
    let mut c = common::sandboxed_config(&dir.path().join("data"));
    c.egress_ca_bundle = bundle;
    c.egress_ca_dir = Some(public.path().join("ca"));
    c.python_paths = python_paths;
    let base = common::sandboxed::Sandboxed::start_in(dir, c).await?;
    Some(Env {
        base,
        _public: public,
    })
}

/// (status, JSON or text body, raw body text).
async fn send(app: &App, req: Request<Body>) -> (StatusCode, Value, String) {
    let resp = app.router().oneshot(req).await.expect("router answers");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let raw = String::from_utf8_lossy(&bytes).to_string();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(raw.clone()))
    };
    (status, v, raw)
}

impl Env {
    async fn admin(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, String) {
        let body = if method == "POST" {
            body.or(Some(json!({})))
        } else {
            body
        };
        send(&self.app, req(method, uri, Some(&self.cookie), None, body)).await
    }

    async fn credential(&self, body: Value) -> Value {
        let (s, v, _) = self
            .admin("POST", "/api/admin/credentials", Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    /// A locked profile with `credentials` and `allowed_hosts`; returns (id, key).
    async fn profile(&self, credentials: &[&str], allowed_hosts: Value) -> (String, String) {
        let (s, p, _) = self
            .admin(
                "POST",
                "/api/admin/profiles",
                Some(json!({"description": "sealed", "credentials": credentials})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        let id = p["id"].as_str().unwrap().to_string();
        let (s, locked, _) = self
            .admin("POST", &format!("/api/admin/profiles/{id}/lock"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{locked}");
        let (s, v, _) = self
            .admin(
                "PUT",
                &format!("/api/admin/profiles/{id}"),
                Some(json!({ "allowed_hosts": allowed_hosts })),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        (id, locked["key"].as_str().unwrap().to_string())
    }

    /// Runs a script to its end; returns (execution id, agent view).
    async fn run(&self, key: &str, script: &str) -> (String, Value) {
        let (s, _, v) = self.submit(key, script, Some(60)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
        let id = v["execution_id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (s, v) = self.poll(key, &id, 30).await;
            // A violation can revoke the key between two polls: the admin view then
            // tells how the execution ended.
            let v = if s == StatusCode::UNAUTHORIZED && v["code"] == "profile_revoked" {
                let (_, v, _) = self
                    .admin("GET", &format!("/api/admin/executions/{id}"), None)
                    .await;
                v
            } else {
                assert_eq!(s, StatusCode::OK, "{v}");
                v
            };
            if matches!(
                v["status"].as_str().unwrap(),
                "completed" | "error" | "timeout"
            ) {
                return (id, v);
            }
            assert!(Instant::now() < deadline, "execution never finished: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every byte of the database files.
    fn db_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for f in std::fs::read_dir(self.dir.path().join("data")).unwrap() {
            let p = f.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("airlock.db")
            {
                all.extend(std::fs::read(&p).unwrap());
            }
        }
        assert!(all.len() > 4096, "the database files were found");
        all
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

// ---------------------------------------------------------------------------
// Upstream servers: echo every request (head and body) back as the response body
// ---------------------------------------------------------------------------

use common::upstream::{Answer, Upstream};

async fn http_upstream(ip: &str) -> Upstream {
    common::upstream::http(ip, Answer::Echo).await
}

/// A TLS echo server on `ip` with a certificate for that IP from a fresh test CA;
/// returns the server and the CA's PEM.
async fn tls_upstream(ip: &str) -> (Upstream, String) {
    tls_upstream_named(ip, ip).await
}

/// [`tls_upstream`] with a certificate for `name` instead of the address it listens on.
async fn tls_upstream_named(ip: &str, name: &str) -> (Upstream, String) {
    common::upstream::tls(ip, name, "Sealed test upstream CA", Answer::Echo).await
}

const PRELUDE: &str = r#"
import os, urllib.request, urllib.error
out = {}
def call(url, headers=None, data=None):
    rq = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        r = urllib.request.urlopen(rq, timeout=15)
        return {"status": r.status, "body": r.read().decode(), "echo_header": r.headers.get("X-Echo-Length")}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode()}
    except Exception as e:
        return {"error": type(e).__name__ + ": " + str(getattr(e, "reason", e))}
"#;

fn script(body: &str, vars: &[(&str, String)]) -> String {
    let mut s = format!("{PRELUDE}\n{body}\nset_result(out)\n");
    for (k, v) in vars {
        s = s.replace(k, v);
    }
    s
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// The scenario of the two tests below: upstreams on 127.0.0.2 (plain), .3 (TLS) and
/// .4 (plain, not bound), the app trusting the TLS one's CA, a sealed credential
/// bound to .2 and .3 and a plain one, and a locked profile with both that may reach
/// all three hosts.
struct Bound {
    env: Env,
    plain: Upstream,
    tls: Upstream,
    other: Upstream,
    value: String,
    bound: Value,
    profile: String,
    key: String,
}

async fn bound_setup() -> Option<Bound> {
    let plain = http_upstream("127.0.0.2").await;
    let (tls, upstream_ca) = tls_upstream("127.0.0.3").await;
    let other = http_upstream("127.0.0.4").await;
    let env = start(Some(&upstream_ca)).await?;
    let value = format!(
        "sk_live_{}",
        &airlock::ids::sha256_hex(b"sealed-test")[..24]
    );
    let bound = json!([
        format!("127.0.0.2:{}", plain.port()),
        format!("127.0.0.3:{}", tls.port())
    ]);
    let view = env
        .credential(
            json!({"name": "STRIPE_KEY", "description": "sealed", "value": value,
                           "bound_hosts": bound}),
        )
        .await;
    assert_eq!(
        view["mode"],
        json!("sealed"),
        "bound hosts default to sealed: {view}"
    );
    assert_eq!(view["bound_hosts"], bound);
    assert_eq!(view["bound_methods"], Value::Null);
    assert_eq!(view["substitute_in_body"], json!(false));
    assert_eq!(view["revoke_on_violation"], json!(false));
    let plain_view = env
        .credential(
            json!({"name": "PLAIN_NOTE", "description": "plain", "value": "plain-note-value"}),
        )
        .await;
    assert_eq!(plain_view["mode"], json!("plain"));
    let (profile, key) = env
        .profile(
            &["STRIPE_KEY", "PLAIN_NOTE"],
            json!([
                format!("127.0.0.2:{}", plain.port()),
                format!("127.0.0.3:{}", tls.port()),
                format!("127.0.0.4:{}", other.port())
            ]),
        )
        .await;
    Some(Bound {
        env,
        plain,
        tls,
        other,
        value,
        bound,
        profile,
        key,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sealed_credential_shows_its_mode_and_bound_hosts_but_never_its_value() {
    let Some(Bound {
        env,
        plain,
        tls,
        value,
        bound,
        profile,
        ..
    }) = bound_setup().await
    else {
        return;
    };
    // Agents see the mode and the bound hosts.
    let (s, creds, _) = send(&env.app, req("GET", "/credentials", None, None, None)).await;
    assert_eq!(s, StatusCode::OK);
    let stripe = creds["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "STRIPE_KEY")
        .unwrap()
        .clone();
    assert_eq!(
        stripe,
        json!({"name": "STRIPE_KEY", "description": "sealed", "value_exists": true,
               "mode": "sealed", "bound_hosts": bound, "request": null})
    );
    let (_, _, raw) = send(&env.app, req("GET", "/skill.md", None, None, None)).await;
    assert!(!contains(raw.as_bytes(), &value));
    assert!(
        raw.contains(&format!(
            "`STRIPE_KEY` (value set, sealed to 127.0.0.2:{} 127.0.0.3:{})",
            plain.port(),
            tls.port()
        )),
        "{raw}"
    );
    // The credentials page shows the mode and the bound hosts.
    let (s, _, page) = env.admin("GET", "/ui/credentials", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains(r#"data-mode="sealed""#), "{page}");
    assert!(page.contains(&format!(
        "127.0.0.2:{}, 127.0.0.3:{}",
        plain.port(),
        tls.port()
    )));
    assert!(!contains(page.as_bytes(), &value));
    let (s, _, page) = env
        .admin("GET", &format!("/ui/profiles/{profile}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        page.contains(&format!(
            r#"sealed to <span class="mono">127.0.0.2:{}, 127.0.0.3:{}</span>"#,
            plain.port(),
            tls.port()
        )),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealed_value_reaches_bound_upstreams_only_and_never_comes_back() {
    let Some(Bound {
        env,
        plain,
        tls,
        other,
        value,
        profile,
        key,
        ..
    }) = bound_setup().await
    else {
        return;
    };
    let (id, v) = env
        .run(
            &key,
            &script(
                r#"
ph = settings.get("STRIPE_KEY")
out["placeholder"] = ph
out["plain"] = settings.get("PLAIN_NOTE")
out["env_has_cert_file"] = os.environ.get("SSL_CERT_FILE", "")
auth = {"Authorization": "Bearer " + ph}
out["http"] = call("http://127.0.0.2:P1/charges?x=1", auth)
out["https"] = call("https://127.0.0.3:P2/v1/charges", auth)
out["https_post"] = call("https://127.0.0.3:P2/v1/post", auth, data=b"amount=5")
out["elsewhere"] = call("http://127.0.0.4:P3/steal", {"X-Anything": ph})
out["elsewhere_body"] = call("http://127.0.0.4:P3/steal", None, data=("k=" + ph).encode())
out["in_body_of_bound"] = call("http://127.0.0.2:P1/body", None, data=("k=" + ph).encode())
print("placeholder:", ph)
"#,
                &[
                    ("P1", plain.port().to_string()),
                    ("P2", tls.port().to_string()),
                    ("P3", other.port().to_string()),
                ],
            ),
        )
        .await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    let r = &v["result"];
    let ph = r["placeholder"].as_str().unwrap().to_string();
    assert!(ph.starts_with("airlock-sealed:STRIPE_KEY:"), "{ph}");
    // A plain value does enter the sandbox (and is redacted from output).
    assert_eq!(r["plain"], json!("[REDACTED:PLAIN_NOTE]"));
    assert!(
        r["env_has_cert_file"]
            .as_str()
            .unwrap()
            .ends_with("/ca-bundle.pem"),
        "{r}"
    );

    // The bound upstreams received the real value, in the header only.
    let seen_plain = plain.seen();
    let seen_tls = tls.seen();
    assert_eq!(seen_plain.len(), 1, "{seen_plain:?}");
    assert_eq!(seen_tls.len(), 2, "{seen_tls:?}");
    for s in seen_plain.iter().chain(seen_tls.iter()) {
        assert!(
            s.contains(&format!("authorization: Bearer {value}\r\n")),
            "{s}"
        );
        assert!(!s.contains("airlock-sealed:"), "{s}");
    }
    assert!(seen_tls[1].ends_with("amount=5"), "{}", seen_tls[1]);
    // Nothing reached the other host.
    assert!(other.seen().is_empty(), "{:?}", other.seen());

    // The echoes came back with the placeholder, never the value.
    for k in ["http", "https", "https_post"] {
        assert_eq!(r[k]["status"], json!(200), "{k}: {r}");
        let body = r[k]["body"].as_str().unwrap();
        assert!(
            body.contains(&format!("authorization: Bearer {ph}\r\n")),
            "{k}: {body}"
        );
    }
    // The placeholder elsewhere: refused, 403, with the reason.
    let why = format!(
        "sealed credential STRIPE_KEY appears in a request header, but its value may only be sent to 127.0.0.2:{}, 127.0.0.3:{}",
        plain.port(),
        tls.port()
    );
    assert_eq!(
        r["elsewhere"],
        json!({"status": 403, "body": format!("Airlock egress proxy refused 127.0.0.4:{}: {why}\n", other.port())})
    );
    assert_eq!(r["elsewhere_body"]["status"], json!(403), "{r}");
    assert!(r["elsewhere_body"]["body"]
        .as_str()
        .unwrap()
        .contains("appears in the request body"));
    // On a bound host but in the body (not enabled): refused, not a violation.
    assert_eq!(r["in_body_of_bound"]["status"], json!(403), "{r}");

    // The admin execution view: substitutions and violations per request.
    let (s, exec, exec_raw) = env
        .admin("GET", &format!("/api/admin/executions/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let egress: Vec<Value> = exec["egress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            json!({"host": e["host"], "method": e["method"], "path": e["path"], "allowed": e["allowed"],
                   "violation": e["violation"], "substituted": e["substituted"]})
        })
        .collect();
    let ip2 = "127.0.0.2";
    let ip3 = "127.0.0.3";
    let ip4 = "127.0.0.4";
    let want = vec![
        json!({"host": ip2, "method": "GET", "path": "/charges", "allowed": true, "violation": false, "substituted": ["STRIPE_KEY"]}),
        json!({"host": ip3, "method": "CONNECT", "path": null, "allowed": true, "violation": false, "substituted": []}),
        json!({"host": ip3, "method": "GET", "path": "/v1/charges", "allowed": true, "violation": false, "substituted": ["STRIPE_KEY"]}),
        json!({"host": ip3, "method": "CONNECT", "path": null, "allowed": true, "violation": false, "substituted": []}),
        json!({"host": ip3, "method": "POST", "path": "/v1/post", "allowed": true, "violation": false, "substituted": ["STRIPE_KEY"]}),
        json!({"host": ip4, "method": "GET", "path": "/steal", "allowed": false, "violation": true, "substituted": []}),
        json!({"host": ip4, "method": "POST", "path": "/steal", "allowed": false, "violation": true, "substituted": []}),
        json!({"host": ip2, "method": "POST", "path": "/body", "allowed": false, "violation": false, "substituted": []}),
    ];
    let mut got = egress.clone();
    let mut want_sorted = want.clone();
    let key = |v: &Value| v.to_string();
    got.sort_by_key(key);
    want_sorted.sort_by_key(key);
    assert_eq!(got, want_sorted, "{egress:#?}");
    let connect = exec["egress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["method"] == "CONNECT")
        .unwrap();
    assert!(
        connect["reason"]
            .as_str()
            .unwrap()
            .contains("TLS terminated by Airlock"),
        "{connect}"
    );
    // Output redaction acted on the plain value only: the sealed one never reached
    // the script.
    assert_eq!(
        exec["redactions"],
        json!([{"field": "result", "name": "PLAIN_NOTE", "count": 1, "partial": 0}]),
        "{exec}"
    );

    // The profile is not revoked (the operator did not ask for it).
    let (_, p, _) = env
        .admin("GET", &format!("/api/admin/profiles/{profile}"), None)
        .await;
    assert_eq!(p["revoked"], json!(false));

    // Nothing stored or answered holds the value.
    assert!(
        !contains(exec_raw.as_bytes(), &value),
        "admin execution view"
    );
    assert!(!contains(v.to_string().as_bytes(), &value), "agent view");
    for path in [
        "/api/admin/credentials",
        "/api/admin/executions",
        "/api/admin/profiles",
    ] {
        let (_, _, raw) = env.admin("GET", path, None).await;
        assert!(!contains(raw.as_bytes(), &value), "{path}");
    }
    let (_, _, raw) = send(&env.app, req("GET", "/skill.md", None, None, None)).await;
    assert!(!contains(raw.as_bytes(), &value));
    assert!(
        raw.contains(&format!(
            "`STRIPE_KEY` (value set, sealed to 127.0.0.2:{} 127.0.0.3:{})",
            plain.port(),
            tls.port()
        )),
        "{raw}"
    );
    // The execution page shows which credential was substituted, and the violation.
    let (s, _, page) = env
        .admin("GET", &format!("/ui/executions/{id}"), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.contains("substituted: STRIPE_KEY"), "{page}");
    assert!(page.contains(">violation<"), "{page}");
    assert!(!contains(page.as_bytes(), &value));
    assert!(!contains(&env.db_bytes(), &value), "the database files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_violation_revokes_the_profile_when_the_operator_asked() {
    let bound = http_upstream("127.0.0.2").await;
    let other = http_upstream("127.0.0.4").await;
    let Some(env) = start(None).await else {
        return;
    };
    env.credential(json!({"name": "API_TOKEN", "value": "tok_abcdefghijklmnop",
                          "mode": "sealed", "bound_hosts": [format!("127.0.0.2:{}", bound.port())],
                          "revoke_on_violation": true}))
        .await;
    let (profile, key) = env
        .profile(
            &["API_TOKEN"],
            json!([
                format!("127.0.0.2:{}", bound.port()),
                format!("127.0.0.4:{}", other.port())
            ]),
        )
        .await;
    let started = Instant::now();
    let (id, v) = env
        .run(
            &key,
            &script(
                r#"
out["leak"] = call("http://127.0.0.4:P3/x?t=" + settings.get("API_TOKEN"))
import time
time.sleep(40)
out["still_running"] = True
"#,
                &[("P3", other.port().to_string())],
            ),
        )
        .await;
    assert_eq!(v["status"], json!("error"), "{v}");
    assert_eq!(
        v["error"],
        json!("the profile was revoked while the script ran"),
        "{v}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cancelled at once"
    );
    assert!(other.seen().is_empty());
    let (_, p, _) = env
        .admin("GET", &format!("/api/admin/profiles/{profile}"), None)
        .await;
    assert_eq!(p["revoked"], json!(true), "{p}");
    let (_, exec, _) = env
        .admin("GET", &format!("/api/admin/executions/{id}"), None)
        .await;
    let row = &exec["egress"][0];
    assert_eq!(row["violation"], json!(true), "{exec}");
    assert!(
        row["reason"]
            .as_str()
            .unwrap()
            .ends_with("the profile is revoked"),
        "{row}"
    );
}

/// Files, environment and memory a script can reach hold the placeholder, never the
/// value. The script proves its search works by finding the placeholder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_script_searching_everything_it_can_reach_finds_only_the_placeholder() {
    let bound = http_upstream("127.0.0.2").await;
    let Some(env) = start(None).await else {
        return;
    };
    let value = "hunter2-sealed-0123456789abcdef";
    env.credential(json!({"name": "DB_PASSWORD", "value": value,
                          "bound_hosts": [format!("127.0.0.2:{}", bound.port())]}))
        .await;
    let (_, key) = env
        .profile(
            &["DB_PASSWORD"],
            json!([format!("127.0.0.2:{}", bound.port())]),
        )
        .await;
    // The script searches for the value's bytes in several encodings. It only knows
    // them through this test's substitution into its text, so each needle is built
    // at run time from pieces (the script text itself is in its own memory).
    // Split at a multiple of 3 so base64 of the halves concatenates to base64 of the value.
    let half = 15;
    let (a, b) = (&value[..half], &value[half..]);
    let (_, v) = env
        .run(
            &key,
            &script(
                r#"
import base64, sys
ph = settings.get("DB_PASSWORD")
# A request through the proxy, so the value has been used during this execution.
out["call"] = call("http://127.0.0.2:P1/", {"Authorization": ph})["status"]
# Each needle is a pair of halves, matched only where one follows the other, so
# the joined value never exists in this process's memory because of the search.
A, B = "AAA".encode(), "BBB".encode()
needles = {"raw": (A, B), "hex": (A.hex().encode(), B.hex().encode()),
           "b64": (base64.b64encode(A), base64.b64encode(B))}
pneedle = ph.encode()
found = {}
def check(where, data):
    for k, (x, y) in needles.items():
        i = data.find(x)
        while i != -1:
            if data[i + len(x):i + len(x) + len(y)] == y:
                found.setdefault(k, []).append(where)
                break
            i = data.find(x, i + 1)
ph_seen = []
def check_ph(where, data):
    if pneedle in data:
        ph_seen.append(where)
# Environment.
envb = "\n".join(k + "=" + v for k, v in os.environ.items()).encode()
check("environ", envb); check_ph("environ", envb)
for p in ["/proc/self/environ", "/proc/self/cmdline", "/proc/1/environ", "/proc/1/cmdline"]:
    try:
        with open(p, "rb") as f:
            check(p, f.read())
    except OSError:
        pass
# Memory: every readable mapping of this process.
regions = 0
with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
    for line in maps:
        parts = line.split()
        if "r" not in parts[1] or (len(parts) > 5 and parts[5] in ("[vvar]", "[vsyscall]", "[vvar_vclock]")):
            continue
        lo, hi = (int(x, 16) for x in parts[0].split("-"))
        try:
            mem.seek(lo)
            data = mem.read(hi - lo)
        except (OSError, ValueError, OverflowError):
            continue
        regions += 1
        check("mem " + line.strip(), data)
        check_ph("mem", data)
out["regions"] = regions
# Every file it can reach (the system trees are the host's, read-only, untouched).
files = 0
skip = ("/proc", "/sys", "/dev/", "/usr", "/lib", "/bin", "/sbin")
roots = ["/", "/etc", "/etc/ssl", "/tmp", "/dev/shm", "/run", "/var", "/opt", "/home", "/root", os.getcwd(),
         os.path.expanduser("~"), os.path.dirname(os.environ.get("SSL_CERT_FILE", "/"))]
visited = set()
for top in roots:
  for root, dirs, names in os.walk(top, followlinks=False):
    if root in visited or (root.startswith(skip) and root != "/dev/shm"):
        dirs[:] = []
        continue
    visited.add(root)
    for n in names:
        p = os.path.join(root, n)
        try:
            if os.path.islink(p) or not os.path.isfile(p) or os.path.getsize(p) > 8 << 20:
                continue
            with open(p, "rb") as f:
                data = f.read()
        except OSError:
            continue
        files += 1
        check(p, data)
out["dirs"] = len(visited)
out["files"] = files
out["found"] = found
out["placeholder_seen_in"] = sorted(set(ph_seen))
"#,
                &[
                    ("P1", bound.port().to_string()),
                    ("AAA", a.to_string()),
                    ("BBB", b.to_string()),
                ],
            ),
        )
        .await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    let r = &v["result"];
    assert_eq!(r["call"], json!(200), "{r}");
    assert_eq!(r["found"], json!({}), "the value was found: {r}");
    assert!(r["regions"].as_u64().unwrap() > 10, "memory was read: {r}");
    assert!(r["files"].as_u64().unwrap() > 5, "files were read: {r}");
    assert_eq!(
        r["placeholder_seen_in"],
        json!(["mem"]),
        "the search works: {r}"
    );
    assert!(bound.seen()[0].contains(&format!("authorization: {value}\r\n")));
}

/// `requests` and `httpx`, with no TLS arguments, trust the instance CA through the
/// variables the runner sets, and the bound HTTPS upstream receives the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_and_httpx_use_sealed_credentials_unchanged() {
    // Not under /tmp: every execution gets its own empty /tmp.
    let Some(pkgs) = common::pip_requests_httpx().await else {
        return;
    };
    let (tls, upstream_ca) = tls_upstream("127.0.0.3").await;
    let Some(env) = start_with(Some(&upstream_ca), vec![pkgs.path().to_path_buf()]).await else {
        return;
    };
    let value = "sk_test_requests_httpx_42424242";
    let host = format!("127.0.0.3:{}", tls.port());
    env.credential(json!({"name": "API_KEY", "value": value, "bound_hosts": [host]}))
        .await;
    let (_, key) = env.profile(&["API_KEY"], json!([host])).await;
    let (_, v) = env
        .run(
            &key,
            &script(
                r#"
import requests, httpx
h = {"Authorization": "Bearer " + settings.get("API_KEY")}
r = requests.get("https://127.0.0.3:P2/requests", headers=h, timeout=15)
out["requests"] = [r.status_code, "airlock-sealed:API_KEY:" in r.text]
r = httpx.get("https://127.0.0.3:P2/httpx", headers=h, timeout=15)
out["httpx"] = [r.status_code, "airlock-sealed:API_KEY:" in r.text]
"#,
                &[("P2", tls.port().to_string())],
            ),
        )
        .await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    assert_eq!(
        v["result"],
        json!({"requests": [200, true], "httpx": [200, true]}),
        "{v}"
    );
    let seen = tls.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert!(s.contains(&format!("Bearer {value}\r\n")), "{s}");
    }
}

/// The bundle the sandbox trusts is world-readable, outside the data directory, and
/// holds the instance CA, which persists across restarts.
#[tokio::test]
async fn the_ca_bundle_is_public_and_the_ca_persists() {
    let dir = tempfile::tempdir().unwrap();
    let public = public_dir();
    let data = dir.path().join("data");
    let open = |ca_dir: PathBuf| {
        let mut c = Config::for_data_dir(&data);
        c.egress_ca_dir = Some(ca_dir);
        App::open(c)
    };
    let top = public.path().join("ca");
    let ca_dir = top.join("airlock-egress-ca");
    let app = open(top.clone()).await.expect("starts");
    let ca1 = std::fs::read_to_string(ca_dir.join("airlock-ca.pem")).unwrap();
    let bundle = std::fs::read_to_string(ca_dir.join("ca-bundle.pem")).unwrap();
    assert!(
        bundle.ends_with(&ca1),
        "the bundle ends with the instance CA"
    );
    assert!(ca1.starts_with("-----BEGIN CERTIFICATE-----"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(ca_dir.join("ca-bundle.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    drop(app);
    std::fs::remove_dir_all(&ca_dir).unwrap();
    let _app = open(top.clone()).await.expect("restarts");
    assert_eq!(
        std::fs::read_to_string(ca_dir.join("airlock-ca.pem")).unwrap(),
        ca1
    );
    // No private key anywhere but sealed in the database.
    for f in std::fs::read_dir(&ca_dir).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        assert!(!text.contains("PRIVATE KEY"));
    }
    let db = std::fs::read(data.join("airlock.db")).unwrap();
    assert!(!contains(&db, "PRIVATE KEY"));
    let _ = Path::new("/");
}

#[tokio::test]
async fn an_unreadable_upstream_bundle_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::for_data_dir(&dir.path().join("data"));
    c.egress_ca_bundle = Some(dir.path().join("missing.pem"));
    let err = App::open(c).await.err().expect("refused");
    assert!(err.to_string().contains("missing.pem"), "{err}");
}

/// A bound name without `:port` gets the value over TLS only: the placeholder sent
/// over plain HTTP is refused (the proxy would otherwise write the value in clear to
/// whatever DNS answered) and the upstream never sees a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn plain_http_to_a_bound_name_is_refused() {
    // `localhost` on port 80: the upstream a proxy without the check would reach.
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 80)).await {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!("note: cannot listen on 127.0.0.1:80 ({e}); checking the refusal only");
            None
        }
    };
    let seen = listener.map_or_else(Arc::default, |l| {
        common::upstream::serve_on(l, Answer::Echo).seen
    });
    let Some(env) = start(None).await else {
        return;
    };
    env.credential(
        json!({"name": "API_TOKEN", "value": "tok_plainhttp_0123456789",
                          "mode": "sealed", "bound_hosts": ["localhost"]}),
    )
    .await;
    let (_, key) = env.profile(&["API_TOKEN"], json!(["localhost"])).await;
    let (id, v) = env
        .run(
            &key,
            &script(
                r#"
out["plain"] = call("http://localhost/v1/x", {"Authorization": "Bearer " + settings.get("API_TOKEN")})
"#,
                &[],
            ),
        )
        .await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    let why = "sealed credential API_TOKEN would be sent in clear over plain HTTP to localhost:80: use https:// \
               (plain HTTP is substituted only for bound hosts listed with an explicit :port or as an IP address)";
    assert_eq!(
        v["result"]["plain"],
        json!({"status": 403, "body": format!("Airlock egress proxy refused localhost:80: {why}\n")}),
        "{v}"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    let (_, exec, _) = env
        .admin("GET", &format!("/api/admin/executions/{id}"), None)
        .await;
    let row = &exec["egress"][0];
    assert_eq!(row["allowed"], json!(false), "{exec}");
    assert_eq!(row["reason"], json!(why), "{exec}");
    assert_eq!(row["substituted"], json!([]), "{exec}");
}

/// A bound upstream that answers by path, trying to hand the value back in ways the
/// body rewrite alone would miss; records every request head it receives.
async fn hostile_upstream(ip: &str) -> Upstream {
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let up = Upstream {
        addr: l.local_addr().unwrap(),
        seen: Arc::default(),
        accept: None,
    };
    let seen = up.seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                seen.lock().unwrap().push(head.clone());
                let auth = head
                    .lines()
                    .find_map(|l| l.strip_prefix("authorization: Bearer "))
                    .unwrap_or("")
                    .to_string();
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                let resp = match path.as_str() {
                    "/reason" => format!(
                        "HTTP/1.1 200 {auth}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    ),
                    "/encodings" => format!(
                        "HTTP/1.1 200 OK\r\nContent-Encoding: identity\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{auth}",
                        auth.len()
                    ),
                    // The value as a header *name* (names arrive lower-cased).
                    "/header-name" => format!(
                        "HTTP/1.1 200 OK\r\nX-{}: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        auth.to_ascii_uppercase()
                    ),
                    "/transfer" => format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n{:x}\r\n{auth}\r\n0\r\n\r\n",
                        auth.len()
                    ),
                    // `/range`: the value, whole (a range-honouring server would send a slice).
                    _ => format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{auth}",
                        auth.len()
                    ),
                };
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    up
}

/// Responses of bound hosts cannot carry the value back in the status line or under
/// a coding the rewrite cannot read, and ranges are not forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bound_upstream_cannot_smuggle_the_value_back() {
    let up = hostile_upstream("127.0.0.5").await;
    let Some(env) = start(None).await else {
        return;
    };
    let value = "tok_smuggle_0123456789abcdef";
    let bound = format!("127.0.0.5:{}", up.port());
    env.credential(
        json!({"name": "API_TOKEN", "value": value, "mode": "sealed",
                          "bound_hosts": [bound.clone()]}),
    )
    .await;
    let (_, key) = env.profile(&["API_TOKEN"], json!([bound])).await;
    let (_, v) = env
        .run(
            &key,
            &script(
                r#"
ph = settings.get("API_TOKEN")
auth = {"Authorization": "Bearer " + ph}
base = "http://127.0.0.5:PORT"
r = urllib.request.urlopen(urllib.request.Request(base + "/reason", headers=auth), timeout=15)
out["reason"] = r.reason
out["encodings"] = call(base + "/encodings", auth)
out["transfer"] = call(base + "/transfer", auth)
r = urllib.request.urlopen(urllib.request.Request(base + "/header-name", headers=auth), timeout=15)
out["header_names"] = sorted(k.lower() for k in r.headers.keys())
out["range"] = call(base + "/range", dict(auth, Range="bytes=0-3", **{"If-Range": "x"}))
out["ph"] = ph
"#,
                &[("PORT", up.port().to_string())],
            ),
        )
        .await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    let r = &v["result"];
    let ph = r["ph"].as_str().unwrap();
    assert_eq!(r["reason"], json!("OK"), "{r}");
    for k in ["encodings", "transfer"] {
        assert_eq!(r[k]["status"], json!(502), "{k}: {r}");
    }
    assert!(r["encodings"]["body"]
        .as_str()
        .unwrap()
        .contains("compressed response"));
    assert!(r["transfer"]["body"]
        .as_str()
        .unwrap()
        .contains("transfer coding other than chunked"));
    assert_eq!(r["range"]["status"], json!(200), "{r}");
    assert_eq!(r["range"]["body"], json!(ph), "{r}");
    // The header whose name carried the value was dropped; the others arrived.
    assert_eq!(
        r["header_names"],
        json!(["connection", "content-length", "date"]),
        "{r}"
    );
    let seen = up.seen();
    assert_eq!(seen.len(), 5, "{seen:?}");
    for head in &seen {
        assert!(
            head.contains(&format!("authorization: Bearer {value}\r\n")),
            "{head}"
        );
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("\r\nrange:"), "{head}");
        assert!(!lower.contains("\r\nif-range:"), "{head}");
    }
    assert!(!v.to_string().contains(value), "{v}");
}

/// The proxy verifies bound HTTPS upstreams: a certificate from a CA it does not trust,
/// or for another name, ends the request with 502 before the value is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unverified_upstream_gets_502_and_never_the_value() {
    let (untrusted, _) = tls_upstream("127.0.0.6").await;
    let (wrong_name, trusted_ca) = tls_upstream_named("127.0.0.7", "127.0.0.8").await;
    let Some(env) = start(Some(&trusted_ca)).await else {
        return;
    };
    let value = "tok_verify_0123456789abcdef";
    let bound = json!([
        format!("127.0.0.6:{}", untrusted.port()),
        format!("127.0.0.7:{}", wrong_name.port())
    ]);
    env.credential(
        json!({"name": "API_TOKEN", "value": value, "mode": "sealed", "bound_hosts": bound}),
    )
    .await;
    let (id, key) = env.profile(&["API_TOKEN"], bound).await;
    let _ = id;
    let (exec_id, v) = env
        .run(
            &key,
            &script(
                r#"
auth = {"Authorization": "Bearer " + settings.get("API_TOKEN")}
out["untrusted"] = call("https://127.0.0.6:P1/x", auth)
out["wrong_name"] = call("https://127.0.0.7:P2/x", auth)
"#,
                &[
                    ("P1", untrusted.port().to_string()),
                    ("P2", wrong_name.port().to_string()),
                ],
            ),
        )
        .await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    let r = &v["result"];
    for (k, port, why) in [
        ("untrusted", untrusted.port(), "invalid peer certificate"),
        ("wrong_name", wrong_name.port(), "invalid peer certificate"),
    ] {
        assert_eq!(r[k]["status"], json!(502), "{k}: {r}");
        let body = r[k]["body"].as_str().unwrap();
        assert!(
            body.starts_with(&format!(
                "TLS with upstream 127.0.0.{}:{port} failed",
                if k == "untrusted" { 6 } else { 7 }
            )),
            "{k}: {body}"
        );
        assert!(body.contains(why), "{k}: {body}");
    }
    assert!(untrusted.seen().is_empty(), "{:?}", untrusted.seen());
    assert!(wrong_name.seen().is_empty(), "{:?}", wrong_name.seen());
    let (_, exec, _) = env
        .admin("GET", &format!("/api/admin/executions/{exec_id}"), None)
        .await;
    let failed = exec["egress"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["method"] == "GET")
        .filter(|e| e["reason"].as_str().unwrap().contains("TLS with upstream"))
        .count();
    assert_eq!(failed, 2, "{exec}");
}
