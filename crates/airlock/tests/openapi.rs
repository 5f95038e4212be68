//! `GET /openapi.json` against a live server: a valid OpenAPI 3.1 document
//! whose operations are exactly the JSON routes the server has.
//!
//! Two directions:
//! - nothing missing: every route registered in the sources, either with
//!   `#[utoipa::path]` + `routes!` or with a plain axum `.route(...)`, must be
//!   in the document, except the explicit [`NOT_IN_SPEC`] list;
//! - nothing invented: every operation in the document reaches a handler on the
//!   live server (not the "no such route" fallback, not 405).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

mod live;

/// Routes deliberately outside the document: the HTML web UI and its assets,
/// and the MCP endpoint (JSON-RPC, described by its own protocol and docs/api.md).
const NOT_IN_SPEC: &[&str] = &[
    "/",
    "/ui",
    "/ui/",
    "/ui/setup",
    "/ui/login",
    "/ui/packages",
    "/ui/credentials",
    "/ui/profiles",
    "/ui/profiles/{id}",
    "/ui/executions",
    "/ui/executions/{id}",
    "/ui/approvals",
    "/ui/approvals/{id}",
    "/ui/requests",
    "/ui/audit",
    "/ui/settings",
    "/ui/assets/{*path}",
    "/mcp",
];

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch"];

fn rust_sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push((
                p.display().to_string(),
                std::fs::read_to_string(&p).unwrap(),
            ));
        }
    }
}

/// The first string literal after each occurrence of `marker`.
fn literals_after<'a>(text: &'a str, marker: &str) -> Vec<&'a str> {
    text.match_indices(marker)
        .filter_map(|(i, _)| {
            let rest = &text[i + marker.len()..];
            let open = rest.find('"')?;
            // Only a literal right at the call (`.route("/x"`, `path = "/x"`).
            if rest[..open].trim().chars().any(|c| c != '=' && c != '(') {
                return None;
            }
            let close = rest[open + 1..].find('"')? + open + 1;
            Some(&rest[open + 1..close])
        })
        .collect()
}

/// (method, path) of every `#[utoipa::path(method, path = "...")]` in `text`,
/// with the `/api/admin` prefix for files whose routers are nested there.
fn annotated_operations(file: &str, text: &str) -> Vec<(String, String)> {
    let admin = file.ends_with("api/admin.rs")
        || file.ends_with("transfer.rs")
        || file.ends_with("api/approvals.rs")
        || file.ends_with("api/inbox.rs")
        || file.ends_with("api/audit.rs")
        || file.ends_with("api/tokens.rs")
        || file.ends_with("api/notifications.rs");
    let mut out = Vec::new();
    for (i, _) in text.match_indices("#[utoipa::path(") {
        let block = &text[i..];
        let block = &block[..block.find(")]\n").unwrap_or(block.len())];
        let method = block["#[utoipa::path(".len()..]
            .trim_start()
            .split(|c: char| c == ',' || c.is_whitespace())
            .next()
            .unwrap()
            .to_string();
        let path = literals_after(block, "path =")[0];
        let prefixed = if admin
            || ((file.ends_with("executions.rs") || file.ends_with("api/packages.rs"))
                && block.contains("\"admin_session\""))
        {
            format!("/api/admin{path}")
        } else {
            path.to_string()
        };
        out.push((method, prefixed));
    }
    out
}

/// Resolves a local JSON pointer (`#/components/schemas/X`).
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn check_refs(doc: &Value, v: &Value, broken: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                if resolve(doc, r).is_none() {
                    broken.push(r.clone());
                }
            }
            m.values().for_each(|x| check_refs(doc, x, broken));
        }
        Value::Array(a) => a.iter().for_each(|x| check_refs(doc, x, broken)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_covers_every_route_and_only_real_ones() {
    let live = live::start().await;
    let resp = live
        .http
        .get(format!("{}/openapi.json", live.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    // A structurally valid 3.1 document whose references all resolve.
    let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    let mut broken = Vec::new();
    check_refs(&doc, &doc, &mut broken);
    assert!(broken.is_empty(), "unresolved $ref: {broken:?}");

    let mut in_spec: BTreeSet<(String, String)> = BTreeSet::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(METHODS.contains(&method.as_str()), "{method} {path}");
            in_spec.insert((method.clone(), path.clone()));
            let id = op["operationId"].as_str().unwrap_or_default().to_string();
            assert!(
                !id.is_empty() && operation_ids.insert(id.clone()),
                "{method} {path}: operationId {id:?} missing or not unique"
            );
            // Every operation: a success answer, JSON errors, declared path params.
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|c| c.starts_with('2')),
                "{method} {path} has no success response"
            );
            assert!(responses.contains_key("500"), "{method} {path}");
            for (code, r) in responses {
                if code.starts_with('4') || code.starts_with('5') {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{method} {path} {code}"
                    );
                }
            }
            if op.get("requestBody").is_some() {
                for code in ["400", "413", "415", "422"] {
                    assert!(responses.contains_key(code), "{method} {path} lacks {code}");
                }
            }
            let params: Vec<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            for seg in path.split('/').filter(|s| s.starts_with('{')) {
                let name = seg.trim_matches(['{', '}']);
                assert!(params.contains(&name), "{method} {path}: no {name} param");
            }
            // Security as the handlers enforce it.
            let schemes = op["security"].to_string();
            let public_admin = ["/api/admin/status", "/api/admin/setup", "/api/admin/login"];
            if path.starts_with("/api/admin/") && !public_admin.contains(&path.as_str()) {
                assert!(schemes.contains("admin_session"), "{method} {path}");
                assert!(responses.contains_key("401"), "{method} {path}");
            }
            if path == "/execute" || path.starts_with("/executions") {
                assert_eq!(op["security"], serde_json::json!([{"agent_key": []}]));
                assert!(responses.contains_key("401"), "{method} {path}");
            }
        }
    }
    // oas3 resolves every operation's body and responses.
    let ops: Vec<_> = spec.operations().collect();
    assert_eq!(ops.len(), in_spec.len());
    for (path, method, op) in &ops {
        if let Some(body) = &op.request_body {
            body.resolve(&spec)
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        }
        let n = op.responses.as_ref().map_or(0, oas3::Map::len);
        assert_eq!(op.responses(&spec).len(), n, "{method} {path}");
    }
    assert!(doc["components"]["securitySchemes"]["agent_key"]["scheme"] == "bearer");
    assert!(doc["components"]["securitySchemes"]["admin_session"]["in"] == "cookie");

    // Nothing missing: every route in the sources is documented or excluded.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_sources(&src, &mut files);
    let mut annotated = 0;
    for (file, text) in &files {
        for marker in [".route(\"", ".route_service(\"", ".nest_service(\""] {
            for path in literals_after(text, &marker[..marker.len() - 1]) {
                let nested = file.ends_with("api/admin.rs") || file.ends_with("transfer.rs");
                let full = if nested {
                    format!("/api/admin{path}")
                } else {
                    path.to_string()
                };
                let documented = in_spec.iter().any(|(_, p)| *p == full);
                assert!(
                    documented || NOT_IN_SPEC.contains(&path),
                    "{file}: route {path} is registered without being in /openapi.json \
                     (register it with utoipa_axum::routes! and #[utoipa::path], or add it to \
                     NOT_IN_SPEC if it is not a JSON API route)"
                );
            }
        }
        for (method, path) in annotated_operations(file, text) {
            annotated += 1;
            assert!(
                in_spec.contains(&(method.clone(), path.clone())),
                "{file}: {method} {path} is annotated but not in /openapi.json (missing from routes!?)"
            );
        }
    }
    assert_eq!(
        annotated,
        in_spec.len(),
        "every operation comes from one annotation"
    );
    assert!(in_spec.len() >= 40, "{}", in_spec.len());

    // Nothing invented: each operation reaches a handler on the live server.
    for (method, path) in &in_spec {
        let url = format!("{}{}", live.base, path.replace('{', "x").replace('}', ""));
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = live.http.request(m, &url).send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{method} {path}: {body}");
        assert!(
            !(status == 404 && body["detail"] == "no such route"),
            "{method} {path} is in the document but the server has no such route"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_route_is_caught_by_the_source_scan() {
    // The scanner itself: a plain `.route(` literal and an annotation are found.
    let text = "Router::new().route(\"/secret-admin\", get(x))\n#[utoipa::path(\n    post,\n    path = \"/lock\",\n)]\nfn f() {}\n";
    assert_eq!(literals_after(text, ".route("), ["/secret-admin"]);
    assert_eq!(
        annotated_operations("src/api/admin.rs", text),
        [("post".to_string(), "/api/admin/lock".to_string())]
    );
}

/// The schema `v` points at (following one `$ref`).
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => resolve(doc, r).unwrap_or_else(|| panic!("unresolved {r}")),
        None => v,
    }
}

/// Property names of an object schema, through `$ref`, `allOf` (flattened
/// structs) and nullable `oneOf` wrappers.
fn properties(doc: &Value, schema: &Value) -> BTreeSet<String> {
    let s = deref(doc, schema);
    let mut out: BTreeSet<String> = s["properties"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for key in ["allOf", "oneOf", "anyOf"] {
        for part in s[key].as_array().into_iter().flatten() {
            out.extend(properties(doc, part));
        }
    }
    out
}

/// The schema of one property of an object schema (through `allOf`).
fn property<'a>(doc: &'a Value, schema: &'a Value, name: &str) -> Option<&'a Value> {
    let s = deref(doc, schema);
    if let Some(p) = s["properties"].get(name) {
        return Some(p);
    }
    s["allOf"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|part| property(doc, part, name))
}

fn json_schema<'a>(op: &'a Value, status: &str) -> &'a Value {
    &op["responses"][status]["content"]["application/json"]["schema"]
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect()
}

/// Sealed credentials: what the server accepts and returns for them is what the
/// document describes (fields taken from live answers, not from a list here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_credential_fields_are_in_the_document() {
    let live = live::start().await;
    let doc: Value = live
        .http
        .get(format!("{}/openapi.json", live.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = &doc["paths"];

    // Creating a sealed credential with every sealing option.
    let create = json!({
        "name": "STRIPE_KEY", "description": "live key", "value": "sk_live_openapi_test",
        "mode": "sealed", "bound_hosts": ["api.stripe.com"], "bound_methods": ["GET", "POST"],
        "bound_header": "authorization", "substitute_in_body": true, "revoke_on_violation": true,
    });
    let (s, created) = live
        .admin(
            reqwest::Method::POST,
            "/api/admin/credentials",
            create.clone(),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["mode"], "sealed");
    let op = &paths["/api/admin/credentials"]["post"];
    let body_schema = &op["requestBody"]["content"]["application/json"]["schema"];
    let accepted = properties(&doc, body_schema);
    let missing: Vec<_> = keys(&create).difference(&accepted).cloned().collect();
    assert!(missing.is_empty(), "create body lacks {missing:?}");
    let view = json_schema(op, "201");
    let documented = properties(&doc, view);
    let missing: Vec<_> = keys(&created).difference(&documented).cloned().collect();
    assert!(missing.is_empty(), "credential view lacks {missing:?}");

    // Updating the sealing settings (empty list / string: any method / header).
    let update = json!({
        "description": "still live", "mode": "sealed", "bound_hosts": ["*.stripe.com"],
        "bound_methods": [], "bound_header": "", "substitute_in_body": false,
        "revoke_on_violation": false, "value": "sk_live_openapi_test2",
    });
    let (s, updated) = live
        .admin(
            reqwest::Method::PUT,
            "/api/admin/credentials/STRIPE_KEY",
            update.clone(),
        )
        .await;
    assert_eq!(s, 200, "{updated}");
    assert_eq!(updated["bound_methods"], Value::Null);
    let op = &paths["/api/admin/credentials/{name}"]["put"];
    let accepted = properties(
        &doc,
        &op["requestBody"]["content"]["application/json"]["schema"],
    );
    let missing: Vec<_> = keys(&update).difference(&accepted).cloned().collect();
    assert!(missing.is_empty(), "update body lacks {missing:?}");
    let documented = properties(&doc, json_schema(op, "200"));
    let missing: Vec<_> = keys(&updated).difference(&documented).cloned().collect();
    assert!(missing.is_empty(), "updated view lacks {missing:?}");

    // The mode is an enum of exactly the store's modes.
    let mode = deref(&doc, property(&doc, view, "mode").expect("mode documented"));
    let mut modes: Vec<&str> = mode["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("mode is not an enum: {mode}"))
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    modes.sort();
    let store_modes: Vec<&str> = airlock_store::CredentialMode::ALL
        .iter()
        .map(|m| m.as_str())
        .collect();
    assert_eq!(modes, store_modes);

    // Agents' listing shows mode and bound hosts; each field is documented.
    let r = live
        .http
        .get(format!("{}/credentials", live.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let listing: Value = r.json().await.unwrap();
    let entry = &listing["credentials"][0];
    assert_eq!(entry["mode"], "sealed", "{listing}");
    let list_schema = json_schema(&paths["/credentials"]["get"], "200");
    let items = &property(&doc, list_schema, "credentials").unwrap()["items"];
    let documented = properties(&doc, items);
    let missing: Vec<_> = keys(entry).difference(&documented).cloned().collect();
    assert!(
        missing.is_empty(),
        "agent credential summary lacks {missing:?}"
    );

    // Egress log entries in the admin execution view: every serialized field,
    // including the substituted credentials and the violation flag.
    let entry = serde_json::to_value(airlock::api::executions::EgressView {
        at: chrono::Utc::now(),
        host: "api.stripe.com".into(),
        port: 443,
        method: "POST".into(),
        path: Some("/v1/charges".into()),
        bytes_up: 1,
        bytes_down: 2,
        duration_ms: Some(3),
        allowed: true,
        reason: "bound host".into(),
        violation: false,
        substituted: vec!["STRIPE_KEY".into()],
        status: Some(200),
        body_sha256: Some("00".repeat(32)),
    })
    .unwrap();
    let exec = json_schema(&paths["/api/admin/executions/{id}"]["get"], "200");
    let egress = property(&doc, exec, "egress").expect("egress documented");
    let documented = properties(&doc, &egress["items"]);
    let missing: Vec<_> = keys(&entry).difference(&documented).cloned().collect();
    assert!(missing.is_empty(), "egress entry lacks {missing:?}");
    assert!(documented.contains("substituted") && documented.contains("violation"));
}
