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
    // The script drops its socket without waiting for the relay to see both sides
    // close: the connection may still be open when the execution ends, and is then
    // cut (and logged so) by the end of the execution.
    let allowed = format!(
        "allowed by tcp://localhost:{p} (127.0.0.1:{p})",
        p = up.port
    );
    let reason = ok["reason"].as_str().unwrap();
    assert!(
        reason == allowed || reason == format!("{allowed}; cut when the execution ended"),
        "{ok}"
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

// ---------------------------------------------------------------------------
// Sealed PostgreSQL credentials, against a real PostgreSQL server and psycopg 3
// ---------------------------------------------------------------------------

use common::postgres::{psycopg_dir, Postgres};

const PG_PASSWORD: &str = "pg-report-password-7731";
const MD5_PASSWORD: &str = "pg-md5-password-5519";

/// A PostgreSQL with a database `shop` (table `items`, two rows), the SCRAM role
/// `report` and the md5 role `md5user`; and an app whose sandbox has psycopg and
/// trusts the server's CA. `None` when either cannot run here (a loud SKIPPED line).
async fn pg_env() -> Option<(Postgres, Sandboxed)> {
    if container() {
        eprintln!("SKIPPED: sealed database credentials need the full sandbox tier (the container tier has no TCP destinations)");
        return None;
    }
    let pg = Postgres::start()?;
    pg.sql("postgres", "CREATE DATABASE shop");
    pg.sql(
        "shop",
        &format!(
            "CREATE ROLE report LOGIN PASSWORD '{PG_PASSWORD}';
             SET password_encryption = 'md5';
             CREATE ROLE md5user LOGIN PASSWORD '{MD5_PASSWORD}';
             CREATE TABLE items(id int primary key, name text);
             INSERT INTO items VALUES (1, 'apple'), (2, 'pear');
             GRANT SELECT, INSERT ON items TO report, md5user;"
        ),
    );
    let psycopg = psycopg_dir();
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), &pg.ca_pem).unwrap();
    let (_, ca_path) = ca.keep().unwrap();
    let env = Sandboxed::start_with(move |c| {
        c.python_paths = vec![psycopg];
        c.egress_ca_bundle = Some(ca_path);
    })
    .await?;
    Some((pg, env))
}

/// A sealed database credential `name` (value: `password`) for `db` on the test
/// server, as the admin API makes it.
async fn pg_credential(env: &Sandboxed, name: &str, password: &str, login: Value) {
    let (s, v) = env
        .admin(
            "POST",
            "/api/admin/credentials",
            Some(json!({"name": name, "description": "the shop database", "value": password, "database": login})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["mode"], json!("sealed"), "a database login seals: {v}");
    assert_eq!(v["database"], login_defaults(login), "{v}");
    assert!(!v.to_string().contains(password), "{v}");
}

fn login_defaults(mut login: Value) -> Value {
    let o = login.as_object_mut().unwrap();
    o.entry("protocol").or_insert(json!("postgres"));
    o.entry("tls").or_insert(json!("verify-full"));
    o.entry("read_only").or_insert(json!(false));
    login
}

/// A locked profile holding the credentials `names` (no `allowed_hosts`: a database
/// credential brings its own destination).
async fn pg_profile(env: &Sandboxed, names: &[&str]) -> String {
    let (s, p) = env
        .admin(
            "POST",
            "/api/admin/profiles",
            Some(json!({"description": "reports", "credentials": names})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let id = p["id"].as_str().unwrap().to_string();
    let (s, locked) = env
        .admin("POST", &format!("/api/admin/profiles/{id}/lock"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{locked}");
    locked["key"].as_str().unwrap().to_string()
}

const PG_PRELUDE: &str = r#"
import os, psycopg
out = {}
def attempt(fn):
    try:
        return fn()
    except psycopg.Error as e:
        return "ERR:%s:%s" % (getattr(e, "sqlstate", None), str(e).strip().splitlines()[0] if str(e).strip() else "")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_postgres_credential_signs_in_without_the_password_entering_the_sandbox() {
    let Some((pg, env)) = pg_env().await else {
        return;
    };
    let login = json!({"host": "localhost", "port": pg.port, "database": "shop", "user": "report"});
    pg_credential(&env, "SHOP_DB", PG_PASSWORD, login.clone()).await;
    let mut ro = login.clone();
    ro["read_only"] = json!(true);
    pg_credential(&env, "SHOP_RO", PG_PASSWORD, ro).await;
    let md5 = json!({"host": "localhost", "port": pg.port, "database": "shop", "user": "md5user"});
    pg_credential(&env, "SHOP_MD5", MD5_PASSWORD, md5).await;
    let key = pg_profile(&env, &["SHOP_DB", "SHOP_RO", "SHOP_MD5"]).await;

    let script = format!(
        r#"{PG_PRELUDE}
dsn = settings.get("SHOP_DB")
out["dsn_shape"] = dsn.split("@")[1]
with psycopg.connect(dsn) as conn:
    out["rows"] = conn.execute("SELECT name FROM items ORDER BY id").fetchall()
    out["user"] = conn.execute("SELECT current_user").fetchone()[0]
    out["ro"] = conn.execute("SHOW default_transaction_read_only").fetchone()[0]
    out["password_is_placeholder"] = conn.info.password.startswith("airlock-sealed:SHOP_DB:")
with psycopg.connect(settings.get("SHOP_RO")) as conn:
    out["ro_select"] = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    out["ro_insert"] = attempt(lambda: conn.execute("INSERT INTO items VALUES (3, 'plum')"))
with psycopg.connect(settings.get("SHOP_MD5")) as conn:
    out["md5_user"] = conn.execute("SELECT current_user").fetchone()[0]
# The password is nowhere the script can look (written reversed here, so that the
# stored script does not hold it either).
needle = "{reversed}"[::-1]
out["in_environ"] = any(needle in v for v in os.environ.values())
out["in_settings"] = any(needle in (settings.get(n) or "") for n in ["SHOP_DB", "SHOP_RO", "SHOP_MD5"])
out["in_proc_environ"] = needle.encode() in open("/proc/self/environ", "rb").read()
found = False
for root, dirs, files in os.walk("/tmp"):
    for f in files:
        try:
            found = found or needle.encode() in open(os.path.join(root, f), "rb").read()
        except OSError:
            pass
out["in_tmp"] = found
print("rows:", out["rows"])
set_result(out)
"#,
        reversed = PG_PASSWORD.chars().rev().collect::<String>()
    );
    let v = env.run(&key, &script).await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    let r = &v["result"];
    assert_eq!(r["rows"], json!([["apple"], ["pear"]]), "{v}");
    assert_eq!(r["user"], json!("report"));
    assert_eq!(r["ro"], json!("off"));
    assert_eq!(r["password_is_placeholder"], json!(true));
    assert_eq!(
        r["dsn_shape"],
        json!(format!("localhost:{}/shop?sslmode=disable", pg.port))
    );
    assert_eq!(r["ro_select"], json!(2));
    // PostgreSQL's own refusal (SQLSTATE 25006).
    assert_eq!(
        r["ro_insert"],
        json!("ERR:25006:cannot execute INSERT in a read-only transaction"),
        "{v}"
    );
    assert_eq!(r["md5_user"], json!("md5user"));
    for k in ["in_environ", "in_settings", "in_proc_environ", "in_tmp"] {
        assert_eq!(r[k], json!(false), "{k}: {v}");
    }
    assert_eq!(pg.sql("shop", "SELECT count(*) FROM items"), "2");

    // The log: one row per connection, each naming the credential and the method.
    let id = v["execution_id"].as_str().unwrap();
    let log = egress_log(&env, id).await;
    let text = serde_json::to_string(&log).unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    for e in &log {
        assert_eq!(e["allowed"], json!(true), "{e}");
        assert_eq!(e["method"], json!("TCP"));
        assert_eq!(e["violation"], json!(false));
    }
    assert!(
        text.contains("with sealed credential SHOP_DB (SCRAM-SHA-256, TLS)"),
        "{text}"
    );
    assert!(
        text.contains("with sealed credential SHOP_RO (SCRAM-SHA-256, TLS, read-only)"),
        "{text}"
    );
    assert!(
        text.contains("with sealed credential SHOP_MD5 (md5, TLS)"),
        "{text}"
    );
    // Never the password: not in any response, nor in the data directory in clear.
    assert!(!v.to_string().contains(PG_PASSWORD));
    assert!(!text.contains(PG_PASSWORD));
    for entry in walk(env.dir.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            memfind(&bytes, PG_PASSWORD.as_bytes()).is_none(),
            "the password is in clear in {}",
            entry.display()
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn memfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread")]
async fn database_login_failures_are_clear_and_the_placeholder_goes_nowhere_else() {
    let Some((pg, env)) = pg_env().await else {
        return;
    };
    let up = echo().await;
    let good = json!({"host": "localhost", "port": pg.port, "database": "shop", "user": "report"});
    pg_credential(&env, "SHOP_DB", PG_PASSWORD, good.clone()).await;
    pg_credential(&env, "WRONG_PW", "not-the-password-000", good.clone()).await;
    // The certificate names localhost, not 127.0.0.1.
    let mut wrong_name = good.clone();
    wrong_name["host"] = json!("127.0.0.1");
    pg_credential(&env, "WRONG_NAME", PG_PASSWORD, wrong_name).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut down = good.clone();
    down["port"] = json!(closed);
    pg_credential(&env, "DOWN", PG_PASSWORD, down).await;
    let (s, p) = env
        .admin(
            "POST",
            "/api/admin/profiles",
            Some(json!({"description": "failures", "credentials": ["SHOP_DB", "WRONG_PW", "WRONG_NAME", "DOWN"]})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let pid = p["id"].as_str().unwrap().to_string();
    let (_, locked) = env
        .admin("POST", &format!("/api/admin/profiles/{pid}/lock"), None)
        .await;
    let key = locked["key"].as_str().unwrap().to_string();
    // Another TCP destination and an HTTP host, to try the placeholder on.
    let web = common::upstream::http("127.0.0.2", common::upstream::Answer::Line("web")).await;
    env.set_hosts(
        &pid,
        json!([
            format!("tcp://localhost:{}", up.port),
            format!("127.0.0.2:{}", web.port())
        ]),
    )
    .await;

    let script = format!(
        r#"{PG_PRELUDE}
import socket
dsn = settings.get("SHOP_DB")
placeholder = psycopg.conninfo.conninfo_to_dict(dsn)["password"]
out["wrong_placeholder"] = attempt(lambda: psycopg.connect(dsn.replace("SHOP_DB%3A", "SHOP_DB%3Ax")))
out["wrong_password"] = attempt(lambda: psycopg.connect(settings.get("WRONG_PW")))
out["wrong_name"] = attempt(lambda: psycopg.connect(settings.get("WRONG_NAME")))
out["down"] = attempt(lambda: psycopg.connect(settings.get("DOWN")))
def leak():
    s = socket.create_connection(("localhost", {up}), timeout=10)
    s.sendall(("hello " + placeholder + "\n").encode())
    return s.recv(100).decode() or "EOF"
try:
    out["leak"] = leak()
except OSError as e:
    out["leak"] = "ERR:" + type(e).__name__
import urllib.request, urllib.error
try:
    urllib.request.urlopen("http://127.0.0.2:{web}/?q=" + placeholder.replace(":", "%3A"), timeout=10)
    out["http"] = "SENT"
except urllib.error.HTTPError as e:
    out["http"] = e.code
# A cancel request reaches the server (psycopg opens a second connection for it).
import threading, time
conn = psycopg.connect(dsn)
threading.Timer(1.0, conn.cancel_safe).start()
out["cancel"] = attempt(lambda: conn.execute("SELECT pg_sleep(20)"))
conn.close()
# Still works after all of that.
with psycopg.connect(dsn) as conn:
    out["after"] = conn.execute("SELECT count(*) FROM items").fetchone()[0]
set_result(out)
"#,
        up = up.port,
        web = web.port()
    );
    let v = env.run(&key, &script).await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    let r = &v["result"];
    let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
    // Connection failures carry the server's FATAL message (no SQLSTATE in psycopg).
    assert!(
        text("wrong_placeholder").contains("use this execution's settings.get(\"SHOP_DB\")"),
        "{v}"
    );
    assert!(
        text("wrong_password")
            .contains("the database server refused the login of sealed credential WRONG_PW"),
        "{v}"
    );
    assert!(
        text("wrong_name").contains("TLS with the database server at 127.0.0.1 failed"),
        "{v}"
    );
    assert!(
        text("down").contains("cannot reach the database server"),
        "{v}"
    );
    assert!(
        text("leak").starts_with("ERR:") || text("leak") == "EOF",
        "{v}"
    );
    assert_eq!(r["after"], json!(2), "the server stays up: {v}");
    assert_eq!(r["http"], json!(403), "{v}");
    assert!(web.seen().is_empty(), "the web host saw {:?}", web.seen());
    assert!(
        text("cancel").starts_with("ERR:57014:"),
        "cancelled by the server: {v}"
    );
    // The echo server never saw the placeholder.
    assert!(
        up.seen
            .lock()
            .unwrap()
            .iter()
            .all(|l| !l.contains("airlock-sealed")),
        "{:?}",
        up.seen.lock().unwrap()
    );
    let id = v["execution_id"].as_str().unwrap();
    let log = egress_log(&env, id).await;
    let find = |needle: &str| {
        log.iter()
            .find(|e| e["reason"].as_str().unwrap_or_default().contains(needle))
            .unwrap_or_else(|| panic!("no log row with {needle:?}: {log:?}"))
            .clone()
    };
    let leak = find("cut: the script sent the placeholder of sealed credential SHOP_DB");
    assert_eq!(leak["violation"], json!(true), "{leak}");
    assert_eq!(
        find("password authentication failed")["allowed"],
        json!(false)
    );
    assert_eq!(
        find("the database server refused the login")["allowed"],
        json!(false)
    );
    assert_eq!(
        find("TLS with the database server")["allowed"],
        json!(false)
    );
    assert_eq!(find("connecting to 127.0.0.1")["allowed"], json!(false));
    assert_eq!(find("a cancel request")["allowed"], json!(true));
    let http = log
        .iter()
        .find(|e| e["method"] == json!("GET"))
        .expect("the HTTP attempt is logged");
    assert_eq!(http["violation"], json!(true), "{http}");
    assert_eq!(http["allowed"], json!(false), "{http}");
    assert!(!serde_json::to_string(&log).unwrap().contains(PG_PASSWORD));
    assert!(!v.to_string().contains(PG_PASSWORD));
}
