//! The OpenAPI 3.1 document served at `GET /openapi.json`.
//!
//! Paths come from the route registrations themselves: every JSON route is
//! registered through `utoipa_axum::routes!` on an `OpenApiRouter`, so a route
//! and its entry in the document cannot drift apart (a test also scans the
//! sources for routes registered around it). Each handler's `#[utoipa::path]`
//! states its parameters, body, success answer and the errors specific to it;
//! [`finish`] then adds the errors that whole classes of routes share (body
//! parsing, authentication, CSRF, internal), so they are stated once.
//!
//! The response types below describe JSON that handlers build with `json!`;
//! they exist for the document only.
#![allow(dead_code)]

pub use airlock_store::{CredentialMode, ExecutionStatus, LlmExchange, LlmRequest, RedactionEvent};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error: a status code and this body.
#[derive(ToSchema)]
#[schema(example = json!({"detail": "profile \"prof_x\" does not exist", "code": "not_found"}))]
pub struct ErrorBody {
    /// What went wrong and what to do about it. Never contains a secret.
    pub detail: String,
    /// Stable machine-readable code (`not_found`, `invalid_input`, `hash_mismatch`, ...).
    pub code: String,
}

#[derive(ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    pub version: String,
    /// True until the admin password is set.
    pub setup_required: bool,
    /// Sandbox state: whether executions run and which isolation layers are active.
    #[schema(value_type = Object)]
    pub sandbox: Value,
}

/// A credential name: letters, digits and underscores, not starting with a digit.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
pub struct CredentialName(String);

/// Schema of a query filter that is a date (`2026-01-31`, midnight UTC) or an
/// RFC 3339 timestamp.
pub fn date_or_timestamp() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{
        KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
    };
    let string = |f: KnownFormat| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(f)))
    };
    Schema::OneOf(
        OneOfBuilder::new()
            .item(string(KnownFormat::Date))
            .item(string(KnownFormat::DateTime))
            .build(),
    )
}

#[derive(ToSchema)]
pub struct CredentialSummaries {
    pub credentials: Vec<crate::catalog::CredentialSummary>,
}

#[derive(ToSchema)]
pub struct Credentials {
    pub credentials: Vec<crate::catalog::CredentialView>,
}

#[derive(ToSchema)]
pub struct SlotsCreated {
    /// Names created now.
    pub created: Vec<String>,
    /// Names that already existed (left unchanged).
    pub skipped: Vec<String>,
    /// Names among `skipped` whose rejected request now waits for the operator
    /// again.
    pub reopened: Vec<String>,
}

#[derive(ToSchema)]
pub struct Profiles {
    pub profiles: Vec<crate::catalog::ProfileView>,
}

#[derive(ToSchema)]
pub struct Submitted {
    pub execution_id: String,
    /// Absolute URL to poll (`GET`, with `?wait=N` to long-poll).
    pub poll_url: String,
    /// `pending`, or `awaiting_approval` when the profile's `approval` asks a person first.
    pub status: String,
    /// Where an approver decides, while `awaiting_approval`: hand it to the person.
    pub approval_url: Option<String>,
}

/// An execution as its agent sees it. Secret values are redacted in every field.
#[derive(ToSchema)]
pub struct Execution {
    pub execution_id: String,
    /// `awaiting_approval`, `pending`, `running`, `awaiting_llm`, `completed`,
    /// `error`, `timeout` or `denied` (an approver refused it, or nobody decided in
    /// time; `error` says which).
    pub status: String,
    /// Where an approver decides, while `awaiting_approval`.
    pub approval_url: Option<String>,
    /// What the script passed to `set_result` (any JSON), or null.
    #[schema(value_type = Option<Object>)]
    pub result: Value,
    pub stdout: String,
    pub stderr: String,
    pub error: Option<String>,
    /// Set while `status` is `awaiting_llm`.
    pub llm_request: Option<LlmRequest>,
    pub execution_time_ms: Option<i64>,
    pub llm_wait_ms: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(ToSchema)]
pub struct ExecutionSummary {
    pub execution_id: String,
    pub status: String,
    pub script_sha256: String,
    pub execution_time_ms: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// Admin listing only.
    pub profile_id: Option<String>,
}

#[derive(ToSchema)]
pub struct ExecutionPage {
    pub executions: Vec<ExecutionSummary>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

#[derive(ToSchema)]
pub struct Responded {
    pub execution_id: String,
    /// `running`: the script continues.
    pub status: String,
}

/// An execution with everything the operator may see (script, redaction
/// events, LLM exchanges, egress log).
#[derive(ToSchema)]
pub struct AdminExecution {
    #[serde(flatten)]
    pub execution: Execution,
    pub profile_id: String,
    pub script: String,
    pub script_sha256: String,
    pub timeout: i64,
    pub started_at: Option<DateTime<Utc>>,
    pub redactions: Vec<RedactionEvent>,
    pub llm_exchanges: Vec<LlmExchange>,
    /// What it ran with (null unless its profile records inputs).
    pub inputs: Option<airlock_store::ExecutionInputs>,
    /// Every egress attempt, oldest first, with the sealed credentials substituted
    /// into it and whether it was a violation.
    pub egress: Vec<crate::api::executions::EgressView>,
}

#[derive(ToSchema)]
pub struct Stats {
    pub total: i64,
    /// Count per status.
    #[schema(value_type = Object)]
    pub by_status: Value,
    /// `[{"profile_id", "count"}]`.
    #[schema(value_type = Vec<Object>)]
    pub by_profile: Vec<Value>,
    /// `[{"day", "count"}]`.
    #[schema(value_type = Vec<Object>)]
    pub by_day: Vec<Value>,
    /// Errors and timeouts over finished executions.
    pub error_rate: f64,
    /// `p50`, `p90`, `p99`, `max` in milliseconds.
    #[schema(value_type = Object)]
    pub duration_ms: Value,
    /// `allowed`, `refused` connection counts.
    #[schema(value_type = Object)]
    pub egress: Value,
}

#[derive(ToSchema)]
pub struct AdminStatus {
    pub setup_required: bool,
    pub authenticated: bool,
    /// With a live session: when it ends if nothing more happens in it (its idle
    /// limit from now, or its absolute expiry if sooner).
    pub session_expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(ToSchema)]
pub struct Sessions {
    pub sessions: Vec<crate::auth::SessionView>,
}

#[derive(ToSchema)]
pub struct Ended {
    /// Sessions ended.
    pub ended: u64,
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let c = openapi.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "agent_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ark_<id>")
                    .description(Some(
                        "The key id of a locked profile key (`ark_<id>`, the part before ':'); \
                         the secret never travels, it keys the HMAC-SHA256 `hash` of each script.",
                    ))
                    .build(),
            ),
        );
        c.add_security_scheme(
            "admin_session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "airlock_session",
                "Admin session cookie from /api/admin/login or /api/admin/setup (HttpOnly, \
                 SameSite=Strict). CSRF: state-changing admin requests must send \
                 Content-Type: application/json, and an Origin header, when present, must \
                 match this server; otherwise 403 csrf_rejected.",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Airlock",
        description = "Agents run Python with credentials they never see. Agent routes live at \
                       the root; admin routes under /api/admin. Every error is JSON \
                       {\"detail\", \"code\"}. The MCP server (/mcp) and the web UI (/ui) are \
                       not part of this document.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "agent", description = "Credential slots and profiles, as agents see them (no values)."),
        (name = "executions", description = "Submitting and following scripts with a profile key."),
        (name = "packages", description = "Python packages for scripts: requests and installs, with a profile key."),
        (name = "admin", description = "The operator's API; session cookie."),
        (name = "meta", description = "Health, guides and this document."),
    )
)]
pub struct ApiDoc;

const ERROR_REF: &str = "#/components/schemas/ErrorBody";

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR_REF}}}
    })
}

/// Adds the errors shared by classes of routes, then serializes.
#[allow(clippy::expect_used)] // utoipa's document is plain data: serializing it cannot fail
pub fn finish(doc: utoipa::openapi::OpenApi) -> Value {
    let mut v = serde_json::to_value(&doc).expect("the OpenAPI document serializes");
    let Some(paths) = v["paths"].as_object_mut() else {
        return v;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            // Agent and admin handlers share names; operation ids must not.
            if path.starts_with("/api/admin/") {
                if let Some(id) = op["operationId"]
                    .as_str()
                    .filter(|i| !i.starts_with("admin_"))
                {
                    op["operationId"] = json!(format!("admin_{id}"));
                }
            }
            let has_body = op.get("requestBody").is_some();
            let schemes: Vec<String> = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_object())
                .flat_map(|r| r.keys().cloned())
                .collect();
            let optional = op["security"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|r| r.as_object().is_some_and(serde_json::Map::is_empty))
            });
            let Some(responses) = op["responses"].as_object_mut() else {
                continue;
            };
            let mut add = |code: &str, description: &str| {
                responses
                    .entry(code.to_string())
                    .or_insert_with(|| error_response(description));
            };
            if has_body {
                add("400", "malformed JSON (`bad_request`)");
                add("413", "body too large (`too_large`)");
                add("415", "body is not JSON (`unsupported_media_type`)");
                add(
                    "422",
                    "missing, unknown or invalid fields (`invalid_input`)",
                );
            }
            if schemes.iter().any(|s| s == "admin_session") {
                add("401", "no valid admin session (`not_authenticated`)");
            }
            // The CSRF guard covers every admin route, with a session or not
            // (`/setup`, `/login`).
            if path.starts_with("/api/admin/") && method != "get" {
                add(
                    "403",
                    "cross-origin or non-JSON state-changing request (`csrf_rejected`)",
                );
            }
            if schemes.iter().any(|s| s == "agent_key") && !optional {
                add(
                    "401",
                    "missing, malformed, unknown, unlocked, revoked or expired key \
                     (`missing_key`, `malformed_key`, `unknown_key`, `profile_unlocked`, \
                     `profile_revoked`, `profile_expired`)",
                );
            }
            add(
                "500",
                "internal error (`internal`); details are in the server log",
            );
            // Every route refuses query parameters it does not declare.
            const QUERY_422: &str =
                "an undeclared query parameter, or a query value of the wrong type (`invalid_input`)";
            match responses.get_mut("422") {
                Some(r) => {
                    if let Some(d) = r["description"].as_str() {
                        r["description"] = json!(format!("{d}; or {QUERY_422}"));
                    }
                }
                None => {
                    responses.insert("422".into(), error_response(&capitalized(QUERY_422)));
                }
            }
        }
    }
    refine_schemas(&mut v);
    v
}

/// A host pattern as `validate::host_patterns` accepts it (case-insensitive,
/// surrounding whitespace trimmed): a host name, or `*.` and a domain, or a
/// bracketed IPv6 literal, optionally with `:port` (1-65535). (A wildcard in
/// front of an IPv4 literal, `*.10.0.0.1`, is also refused.)
pub const HOST_PATTERN: &str = concat!(
    r"^[ \t\r\n]*(?:(?:\*\.)?(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*",
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?",
    r"|\[(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}",
    r"|(?:[0-9A-Fa-f]{1,4}:){1,7}:",
    r"|(?:[0-9A-Fa-f]{1,4}:){1,6}:[0-9A-Fa-f]{1,4}",
    r"|(?:[0-9A-Fa-f]{1,4}:){1,5}(?::[0-9A-Fa-f]{1,4}){1,2}",
    r"|(?:[0-9A-Fa-f]{1,4}:){1,4}(?::[0-9A-Fa-f]{1,4}){1,3}",
    r"|(?:[0-9A-Fa-f]{1,4}:){1,3}(?::[0-9A-Fa-f]{1,4}){1,4}",
    r"|(?:[0-9A-Fa-f]{1,4}:){1,2}(?::[0-9A-Fa-f]{1,4}){1,5}",
    r"|[0-9A-Fa-f]{1,4}:(?::[0-9A-Fa-f]{1,4}){1,6}",
    r"|:(?:(?::[0-9A-Fa-f]{1,4}){1,7}|:))\])",
    r"(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
    r"[ \t\r\n]*$",
);

/// Rules utoipa's attributes cannot state: host patterns, unique package
/// names, method tokens, the expiry's format, and a sealed credential's bound hosts.
fn refine_schemas(v: &mut Value) {
    let Some(schemas) = v.pointer_mut("/components/schemas") else {
        return;
    };
    for (schema, prop) in [
        ("UpdateProfile", "allowed_hosts"),
        ("CreateCredential", "bound_hosts"),
        ("UpdateCredential", "bound_hosts"),
    ] {
        if let Some(items) = schemas.pointer_mut(&format!("/{schema}/properties/{prop}/items")) {
            items["pattern"] = json!(HOST_PATTERN);
        }
    }
    if let Some(p) = schemas.pointer_mut("/RequirementsRequest/properties/packages") {
        p["uniqueItems"] = json!(true);
    }
    // An HTTP method token, any case (stored upper-cased).
    for schema in ["CreateCredential", "UpdateCredential"] {
        if let Some(items) =
            schemas.pointer_mut(&format!("/{schema}/properties/bound_methods/items"))
        {
            items["pattern"] = json!(r"^[ \t]*[A-Za-z]{1,16}[ \t]*$");
        }
    }
    if let Some(p) = schemas.pointer_mut("/UpdateProfile/properties/expires_at") {
        p["format"] = json!("date-time");
    }
    // `mode: "sealed"` needs bound hosts: on create, a non-empty list; on update, a
    // given list must not be empty (an update that seals a credential without
    // hosts bound before is refused too, 422 `invalid_input`; the document cannot
    // see the stored settings).
    let sealed = json!({"properties": {"mode": {"const": "sealed"}}, "required": ["mode"]});
    if let Some(s) = schemas.get_mut("CreateCredential") {
        s["if"] = sealed.clone();
        s["then"] = json!({
            "required": ["bound_hosts"],
            "properties": {"bound_hosts": {"type": "array", "minItems": 1}},
        });
    }
    if let Some(s) = schemas.get_mut("UpdateCredential") {
        s["if"] = sealed;
        s["then"] = json!({"properties": {"bound_hosts": {"minItems": 1}}});
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
pub async fn openapi_json(
    axum::Extension(doc): axum::Extension<std::sync::Arc<Value>>,
) -> axum::Json<Value> {
    axum::Json((*doc).clone())
}
