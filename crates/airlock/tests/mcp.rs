//! The MCP server with a real MCP client (rmcp), over both transports:
//! `airlock mcp` spawned over stdio against a live server, and `/mcp`
//! (streamable HTTP) on the live server. Same scenario on both: list tools,
//! create slots and a profile, attach credentials, run a script, pause in
//! `llm.complete` and resume, read an execution, forward a package request;
//! then wrong keys, hosts and origins are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

mod live;

const VALUE: &str = "tok_mcp_9a8b7c6d5e";

type Client = RunningService<RoleClient, ()>;

async fn live_with_key() -> (live::Live, String) {
    let live = live::start().await;
    live.set_value("TOKEN", VALUE).await;
    let (_, key) = live.locked_profile(&["TOKEN"]).await;
    (live, key)
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Calls a tool; returns (is_error, text, JSON when the text is JSON).
async fn call(client: &Client, secret: &str, name: &str, args: Value) -> (bool, String, Value) {
    let r = client
        .call_tool(
            CallToolRequestParams::new(name.to_string())
                .with_arguments(args.as_object().cloned().unwrap_or_default()),
        )
        .await
        .unwrap_or_else(|e| panic!("tool {name} failed at the protocol level: {e}"));
    let t = text(&r);
    assert!(
        !t.contains(secret) && !t.contains(VALUE),
        "{name} leaked a secret: {t}"
    );
    let v = serde_json::from_str(&t).unwrap_or(Value::Null);
    (r.is_error == Some(true), t, v)
}

fn http_client(base: &str, key: &str) -> StreamableHttpClientTransport<reqwest::Client> {
    StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp")).auth_header(key),
    )
}

/// `airlock mcp` with the key in AIRLOCK_KEY; its stderr is captured.
/// `airlock mcp` over stdio, with debug logging on. Its stderr is drained from the
/// start (a full pipe would block the server's logging and stall the session).
fn stdio_client(base: &str, key: &str) -> (TokioChildProcess, tokio::task::JoinHandle<String>) {
    use tokio::io::AsyncReadExt;
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(["mcp", "--url", base])
        .env("AIRLOCK_KEY", key)
        .env("AIRLOCK_LOG", "debug")
        .env_remove("AIRLOCK_URL");
    let (child, stderr) = TokioChildProcess::builder(cmd)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("airlock mcp starts");
    let mut stderr = stderr.expect("piped stderr");
    let log = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });
    (child, log)
}

/// Everything `airlock mcp` logged, once it has exited.
async fn stderr_text(log: tokio::task::JoinHandle<String>) -> String {
    tokio::time::timeout(std::time::Duration::from_secs(10), log)
        .await
        .expect("airlock mcp exits when the client leaves")
        .unwrap()
}

/// The whole agent workflow through one MCP client, in phases: the server's
/// instructions and tools, the catalog tools, the execution tools, package requests.
async fn scenario(live: &live::Live, client: &Client, key: &str) {
    let (key_id, secret) = key.split_once(':').unwrap();
    instructions_and_tools(client).await;
    catalog_tools(live, client, secret).await;
    execution_tools(client, secret).await;
    approval_tools(live, client, key_id, secret).await;
    package_tools(live, client, key_id, secret).await;
}

/// A profile that asks a person first: execute_script returns the pending state
/// with the link instead of hanging; once approved the execution runs.
async fn approval_tools(live: &live::Live, client: &Client, key_id: &str, secret: &str) {
    let (_, profiles) = live
        .admin(reqwest::Method::GET, "/api/admin/profiles", Value::Null)
        .await;
    let pid = profiles["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key_id"] == key_id)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let set = |mode: &'static str| {
        let path = format!("/api/admin/profiles/{pid}");
        async move {
            let (s, v) = live
                .admin(reqwest::Method::PUT, &path, json!({"approval": mode}))
                .await;
            assert_eq!(s, 200, "{v}");
        }
    };
    set("every_run").await;
    let (err, t, v) = call(
        client,
        secret,
        "execute_script",
        json!({"script": "set_result('approved run')\n"}),
    )
    .await;
    assert!(!err, "{t}");
    assert_eq!(v["status"], "awaiting_approval", "{t}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    let url = format!("{}/ui/approvals/{id}", live.base);
    assert_eq!(v["approval_url"], url.as_str(), "{t}");
    assert!(v["next_step"].as_str().unwrap().contains(&url), "{t}");
    let (s, a) = live
        .admin(
            reqwest::Method::POST,
            &format!("/api/admin/approvals/{id}/approve"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{a}");
    let mut v = Value::Null;
    for _ in 0..10 {
        let (err, t, got) = call(
            client,
            secret,
            "get_execution",
            json!({"execution_id": id, "wait": 10}),
        )
        .await;
        assert!(!err, "{t}");
        v = got;
        if v["status"] == "completed" {
            break;
        }
    }
    assert_eq!(v["result"], "approved run", "{v}");
    set("off").await;
}

async fn instructions_and_tools(client: &Client) {
    let info = client.peer_info().expect("server info");
    let instructions = info.instructions.clone().unwrap_or_default();
    assert!(
        instructions.contains("NEVER ask the user") && instructions.contains("/ui/profiles/"),
        "{instructions}"
    );

    let tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    for want in [
        "list_credentials",
        "list_profiles",
        "create_credentials",
        "create_profile",
        "attach_credentials",
        "execute_script",
        "respond_llm",
        "get_execution",
        "request_packages",
    ] {
        assert!(tools.iter().any(|t| t == want), "{want} missing: {tools:?}");
    }
}

async fn catalog_tools(live: &live::Live, client: &Client, secret: &str) {
    let (err, t, v) = call(
        client,
        secret,
        "create_credentials",
        json!({"credentials": [{"name": "MCP_ONE", "description": "first"}, {"name": "MCP_TWO"}]}),
    )
    .await;
    assert!(!err, "{t}");
    assert_eq!(v["created"], json!(["MCP_ONE", "MCP_TWO"]), "{t}");

    let (err, t, v) = call(client, secret, "list_credentials", json!({})).await;
    assert!(!err, "{t}");
    let names: Vec<&str> = v["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["MCP_ONE", "MCP_TWO", "TOKEN"], "{t}");

    let (err, t, p) = call(
        client,
        secret,
        "create_profile",
        json!({"description": "via mcp", "credentials": ["MCP_ONE"]}),
    )
    .await;
    assert!(!err, "{t}");
    let pid = p["id"].as_str().unwrap();
    assert_eq!(
        p["ui_url"],
        format!("{}/ui/profiles/{pid}", live.base),
        "{t}"
    );
    let (err, t, v) = call(
        client,
        secret,
        "attach_credentials",
        json!({"profile_id": pid, "credentials": ["MCP_TWO"]}),
    )
    .await;
    assert!(!err, "{t}");
    let creds: Vec<&str> = v["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(creds, ["MCP_ONE", "MCP_TWO"], "{t}");
    let (err, t, v) = call(client, secret, "list_profiles", json!({})).await;
    assert!(!err, "{t}");
    assert_eq!(v["profiles"].as_array().unwrap().len(), 2, "{t}");
    // Unknown profile: the server's 404 comes back as a tool error.
    let (err, t, _) = call(
        client,
        secret,
        "attach_credentials",
        json!({"profile_id": "prof_nope", "credentials": ["MCP_TWO"]}),
    )
    .await;
    assert!(err && t.contains("404") && t.contains("not_found"), "{t}");
}

async fn execution_tools(client: &Client, secret: &str) {
    let (err, t, v) = call(
        client,
        secret,
        "execute_script",
        json!({"script": "print('hi', settings.get('TOKEN'))\nset_result({'x': 1})\n"}),
    )
    .await;
    assert!(!err, "{t}");
    assert_eq!(v["status"], "completed", "{t}");
    assert_eq!(v["result"], json!({"x": 1}));
    assert_eq!(v["stdout"], "hi [REDACTED:TOKEN]\n");

    let (err, t, v) = call(
        client,
        secret,
        "execute_script",
        json!({"script": "raise KeyError('nope')\n"}),
    )
    .await;
    assert!(!err, "{t}");
    assert_eq!(v["status"], "error", "{t}");
    assert!(v["error"].as_str().unwrap().contains("KeyError"), "{t}");

    let (err, t, v) = call(
        client,
        secret,
        "execute_script",
        json!({"script": "set_result(llm.complete('shout this'))\n"}),
    )
    .await;
    assert!(!err, "{t}");
    assert_eq!(v["status"], "awaiting_llm", "{t}");
    assert_eq!(v["llm_request"]["prompt"], "shout this", "{t}");
    let exec_id = v["execution_id"].as_str().unwrap().to_string();
    let (err, t, v) = call(
        client,
        secret,
        "respond_llm",
        json!({"execution_id": exec_id, "response": "SHOUT THIS",
               "request_id": v["llm_request"]["request_id"]}),
    )
    .await;
    assert!(!err, "{t}");
    assert_eq!(v["status"], "completed", "{t}");
    assert_eq!(v["result"], "SHOUT THIS");

    let (err, t, v) = call(
        client,
        secret,
        "get_execution",
        json!({"execution_id": exec_id}),
    )
    .await;
    assert!(!err, "{t}");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["execution_id"], exec_id.as_str());
    let (err, t, _) = call(
        client,
        secret,
        "get_execution",
        json!({"execution_id": "../profiles"}),
    )
    .await;
    assert!(err && t.contains("not a valid id"), "{t}");
}

async fn package_tools(live: &live::Live, client: &Client, key_id: &str, secret: &str) {
    // Package requests are forwarded as they are: the tool answers what the
    // server answers to the same request on the real /requirements routes.
    let get_direct = || async {
        let r = live
            .http
            .get(format!("{}/requirements", live.base))
            .bearer_auth(key_id)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET /requirements");
        r.json::<Value>().await.unwrap()
    };
    let direct = get_direct().await;
    assert!(direct["packages"].is_array() && direct["environment"]["state"].is_string());
    let (err, t, v) = call(client, secret, "list_package_requests", json!({})).await;
    assert!(!err, "{t}");
    assert_eq!(
        v, direct,
        "list_package_requests differs from GET /requirements"
    );

    // A refused requirement: the same 422 and detail as a direct request.
    let post_direct = |packages: Value| async move {
        let r = live
            .http
            .post(format!("{}/requirements", live.base))
            .bearer_auth(key_id)
            .json(&json!({ "packages": packages }))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, direct) = post_direct(json!(["-e ."])).await;
    assert_eq!(status, 422, "{direct}");
    assert_eq!(direct["code"], "invalid_input");
    let (err, t, _) = call(
        client,
        secret,
        "request_packages",
        json!({"packages": ["-e ."]}),
    )
    .await;
    assert!(err, "{t}");
    assert!(
        t.contains("Airlock answered 422 (invalid_input)")
            && t.contains(direct["detail"].as_str().unwrap()),
        "{t} vs {direct}"
    );

    let (err, t, v) = call(client, secret, "list_package_requests", json!({})).await;
    assert!(!err, "{t}");
    assert_eq!(v, get_direct().await, "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_transport_runs_the_whole_workflow() {
    let (live, key) = live_with_key().await;
    let (transport, stderr) = stdio_client(&live.base, &key);
    let client = ().serve(transport).await.unwrap();
    scenario(&live, &client, &key).await;
    client.cancel().await.unwrap();
    let log = stderr_text(stderr).await;
    let secret = key.split_once(':').unwrap().1;
    assert!(
        !log.contains(secret),
        "airlock mcp logged the secret: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_transport_runs_the_whole_workflow() {
    let (live, key) = live_with_key().await;
    let client = ().serve(http_client(&live.base, &key)).await.unwrap();
    scenario(&live, &client, &key).await;
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_with_a_wrong_secret_cannot_execute() {
    let (live, key) = live_with_key().await;
    let bad = format!("{}:wrongsecret", key.split_once(':').unwrap().0);
    let (transport, _stderr) = stdio_client(&live.base, &bad);
    let client = ().serve(transport).await.unwrap();
    let (err, t, _) = call(
        &client,
        "wrongsecret-never-echoed",
        "execute_script",
        json!({"script": "set_result(1)"}),
    )
    .await;
    assert!(
        err && t.contains("403") && t.contains("hash_mismatch"),
        "{t}"
    );
    client.cancel().await.unwrap();

    // Without any key, the catalog tools work and executing says what to do.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_airlock"));
    cmd.args(["mcp", "--url", &live.base])
        .env_remove("AIRLOCK_KEY")
        .env_remove("AIRLOCK_URL");
    let client = ().serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();
    let (err, t, _) = call(
        &client,
        "no-secret-in-this-test",
        "list_credentials",
        json!({}),
    )
    .await;
    assert!(!err, "{t}");
    let (err, t, _) = call(
        &client,
        "no-secret-in-this-test",
        "execute_script",
        json!({"script": "set_result(1)"}),
    )
    .await;
    assert!(
        err && t.contains("no profile key") && t.contains("/ui/profiles"),
        "{t}"
    );
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_refuses_wrong_keys_hosts_and_origins() {
    let (live, key) = live_with_key().await;
    let (key_id, _) = key.split_once(':').unwrap();

    // A real client with a wrong secret cannot even initialize.
    let bad = format!("{key_id}:wrongsecret");
    assert!(().serve(http_client(&live.base, &bad)).await.is_err());

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-03-26", "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"}}});
    let post = |auth: Option<String>, extra: Option<(&'static str, &'static str)>| {
        let mut r = live
            .http
            .post(format!("{}/mcp", live.base))
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        if let Some((h, v)) = extra {
            r = r.header(h, v);
        }
        r.send()
    };
    for (auth, code) in [
        (None, "missing_key"),
        (Some(format!("Bearer {key_id}")), "malformed_key"),
        (Some(format!("Bearer {bad}")), "invalid_key"),
        (
            Some("Bearer ark_000000000000000000000000:x".to_string()),
            "unknown_key",
        ),
    ] {
        let r = post(auth.clone(), None).await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(r.headers().contains_key("www-authenticate"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], code, "{auth:?}: {v}");
        assert!(!v.to_string().contains("wrongsecret"));
    }
    // The right key initializes; a foreign Host or Origin does not.
    let ok = post(Some(format!("Bearer {key}")), None).await.unwrap();
    assert_eq!(ok.status(), 200);
    let r = post(
        Some(format!("Bearer {key}")),
        Some(("host", "evil.example")),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(
        Some(format!("Bearer {key}")),
        Some(("origin", "https://evil.example")),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);

    // A revoked profile's key stops working on /mcp.
    let pid = live
        .admin(reqwest::Method::GET, "/api/admin/profiles", json!({}))
        .await
        .1["profiles"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = live
        .admin(
            reqwest::Method::POST,
            &format!("/api/admin/profiles/{pid}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let r = post(Some(format!("Bearer {key}")), None).await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "profile_revoked");
}
