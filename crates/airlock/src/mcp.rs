//! The MCP server: Airlock's agent API as Model Context Protocol tools.
//!
//! One set of tools, two transports. Every tool is a plain call to the agent
//! HTTP API through an [`AgentApi`]: `airlock mcp` (stdio) sends it over HTTP to
//! `--url`; `/mcp` (streamable HTTP, mounted in the server) dispatches it to the
//! server's own router in-process. Either way the tools see exactly what an
//! HTTP agent sees, with the same validation and error bodies.
//!
//! Authentication on `/mcp` is the full profile key, `Authorization: Bearer
//! ark_ID:SECRET`: executing a script needs the secret (the HMAC is computed
//! here, for the model), and the secret is checked in constant time before any
//! MCP message is read. Over stdio the key comes from `--key`, `--key-file` or
//! `AIRLOCK_KEY`; without one, the catalog tools still work and the execution
//! tools say how to get a key.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, RoleServer, ServerHandler};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::error::ApiError;
use crate::ids::ProfileKey;

/// Where tool calls go: the agent API over HTTP, or the server's own router.
#[derive(Clone)]
pub enum AgentApi {
    /// `airlock mcp`: a remote server at this base URL.
    Http { base: String, agent: ureq::Agent },
    /// `/mcp`: the server's router, called in-process.
    InProcess { router: axum::Router },
}

/// An agent API answer: status and JSON body.
struct ApiAnswer {
    status: StatusCode,
    body: Value,
}

impl AgentApi {
    /// An HTTP client for the server at `base`.
    pub fn http(base: &str) -> AgentApi {
        AgentApi::Http {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(90)))
                .build()
                .into(),
        }
    }

    async fn send(&self, req: http::Request<Vec<u8>>) -> Result<ApiAnswer, String> {
        let (status, bytes) = match self {
            AgentApi::Http { base, agent } => {
                let (mut parts, body) = req.into_parts();
                let url = format!("{base}{}", parts.uri);
                parts.uri = url
                    .parse()
                    .map_err(|_| format!("invalid Airlock URL {base:?}"))?;
                let req = http::Request::from_parts(parts, body);
                let agent = agent.clone();
                tokio::task::spawn_blocking(move || {
                    let mut resp = agent
                        .run(req)
                        .map_err(|e| format!("cannot reach Airlock at {url}: {e}"))?;
                    let status = resp.status();
                    let bytes = resp
                        .body_mut()
                        .with_config()
                        .limit(64 * 1024 * 1024)
                        .read_to_vec()
                        .map_err(|e| format!("cannot read Airlock's answer: {e}"))?;
                    Ok::<_, String>((status, bytes))
                })
                .await
                .map_err(|e| format!("request task failed: {e}"))??
            }
            AgentApi::InProcess { router } => {
                use tower::ServiceExt;
                let resp = router
                    .clone()
                    .oneshot(req.map(axum::body::Body::from))
                    .await
                    .map_err(|e| format!("internal dispatch failed: {e}"))?;
                let status = resp.status();
                let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024 * 1024)
                    .await
                    .map_err(|e| format!("cannot read the answer: {e}"))?;
                (status, bytes.to_vec())
            }
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(ApiAnswer { status, body })
    }
}

/// Tells the model what Airlock is and how to use it safely.
fn instructions(ui_base: &str) -> String {
    format!(
        "Airlock runs your Python scripts in a sandbox with credentials you never see. \
Workflow: list_credentials and list_profiles to see what exists; create_credentials to \
declare the slots you need (names and descriptions only, never values); create_profile \
with those credential names; then ask the user to open the profile page in Airlock's web \
UI ({ui_base}/ui/profiles/<profile id>), type the values there, lock the profile and give \
this MCP server the key. Then execute_script: inside the script, settings.get(\"NAME\") \
returns a value (for a sealed credential, a placeholder that Airlock's egress proxy \
replaces with the value only in requests to its bound hosts: use it exactly like the value, \
never transform it; for a sealed database credential, a PostgreSQL connection string to pass \
as it is to psycopg.connect, whose password Airlock supplies), set_result(obj) sets the JSON result, airlock.now() is the execution's fixed \
UTC clock (use it for \"today\"), llm.complete(prompt) pauses the \
script and hands you the prompt: answer it with respond_llm. Secret values are redacted \
from every output.\n\
NEVER ask the user to type, paste or tell you a secret value, password or key in the \
chat, and never put one in a script or a tool argument: send the user to the web UI \
({ui_base}/ui/profiles/<profile id>) instead. If a script needs a Python package that is \
missing, use request_packages and tell the user an operator must approve it."
    )
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct Slot {
    /// Credential name, e.g. STRIPE_API_KEY (letters, digits, underscores).
    pub name: String,
    /// What the credential is for, shown to the operator who fills it in.
    #[serde(default)]
    pub description: String,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct CreateCredentialsArgs {
    /// The slots to create. Existing names are skipped. Never include values.
    pub credentials: Vec<Slot>,
    /// Why you need them, for the operator who reviews the request.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct CreateProfileArgs {
    /// What the profile is for (shown to the operator).
    #[serde(default)]
    pub description: String,
    /// Names of existing credential slots the profile's scripts may use.
    #[serde(default)]
    pub credentials: Vec<String>,
    /// Why you need it, for the operator who reviews the request.
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ProfileCredentialsArgs {
    /// The profile id (prof_...).
    pub profile_id: String,
    /// Credential slot names.
    pub credentials: Vec<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct ExecuteArgs {
    /// The Python script. Use settings.get("NAME") for credentials,
    /// set_result(obj) for the result, llm.complete(prompt) to ask you something.
    pub script: String,
    /// Wall-clock limit in seconds (server default when absent).
    pub timeout: Option<u64>,
    /// Seconds each llm.complete may wait for respond_llm (server default when absent).
    pub llm_timeout: Option<u64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct RespondArgs {
    /// The execution waiting in llm.complete.
    pub execution_id: String,
    /// Your answer to the prompt; llm.complete returns it to the script.
    pub response: String,
    /// The llm_request.request_id of the pause (recommended).
    pub request_id: Option<String>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct GetExecutionArgs {
    /// The execution id (exec_...).
    pub execution_id: String,
    /// Seconds to wait for a status change (0 to 60; default 0).
    pub wait: Option<u64>,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub struct RequestPackagesArgs {
    /// PyPI package names, optionally with a version (e.g. "requests==2.32.3").
    pub packages: Vec<String>,
    /// Why you need them, for the operator who reviews the request.
    #[serde(default)]
    pub message: Option<String>,
}

/// The MCP server. One per stdio process, or one per `/mcp` session.
#[derive(Clone)]
pub struct AirlockMcp {
    api: AgentApi,
    /// The stdio key; `/mcp` takes the key of each request instead.
    key: Option<ProfileKey>,
    /// Base URL of the web UI the instructions point to.
    ui_base: String,
    /// `/mcp` without a public URL: take the base from each request's `Host`.
    ui_from_host: bool,
    tool_router: ToolRouter<AirlockMcp>,
}

/// How long execute_script / respond_llm follow an execution before returning
/// it unfinished (the model can continue with get_execution).
const FOLLOW_LIMIT: Duration = Duration::from_secs(600);

fn ok_json(v: &Value) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(
        serde_json::to_string_pretty(v).unwrap_or_default(),
    )])
}

fn tool_error(msg: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(msg.into())])
}

/// Ids travel in URL paths: refuse anything that is not a plain id.
fn path_id(id: &str) -> Result<&str, CallToolResult> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    ok.then_some(id)
        .ok_or_else(|| tool_error(format!("{id:?} is not a valid id")))
}

impl AirlockMcp {
    pub fn new(api: AgentApi, key: Option<ProfileKey>, ui_base: &str) -> AirlockMcp {
        AirlockMcp {
            api,
            key,
            ui_base: ui_base.trim_end_matches('/').to_string(),
            ui_from_host: false,
            tool_router: Self::tool_router(),
        }
    }

    /// The web UI's base URL as the caller reaches it.
    fn ui_base(&self, ctx: &RequestContext<RoleServer>) -> String {
        if self.ui_from_host {
            if let Some(host) = Self::host(ctx).as_ref().and_then(|h| h.to_str().ok()) {
                if !host.is_empty() && host.bytes().all(|b| b.is_ascii_graphic()) {
                    return format!("http://{host}");
                }
            }
        }
        self.ui_base.clone()
    }

    /// The key for this call: the stdio key, or the one `/mcp` verified.
    fn key(&self, ctx: &RequestContext<RoleServer>) -> Option<ProfileKey> {
        self.key.clone().or_else(|| {
            ctx.extensions
                .get::<http::request::Parts>()
                .and_then(|p| p.extensions.get::<ProfileKey>())
                .cloned()
        })
    }

    fn host(ctx: &RequestContext<RoleServer>) -> Option<HeaderValue> {
        ctx.extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get(header::HOST))
            .cloned()
    }

    /// Calls the agent API; a non-2xx answer becomes a tool error carrying the
    /// server's `{"detail","code"}`.
    async fn call(
        &self,
        ctx: &RequestContext<RoleServer>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CallToolResult> {
        let mut req = http::Request::builder().method(method).uri(path);
        if let Some(key) = self.key(ctx) {
            req = req.header(header::AUTHORIZATION, format!("Bearer {}", key.id));
        }
        if let Some(host) = Self::host(ctx) {
            req = req.header(header::HOST, host);
        }
        let bytes = match &body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                serde_json::to_vec(b).unwrap_or_default()
            }
            None => Vec::new(),
        };
        let req = req.body(bytes).map_err(|e| tool_error(e.to_string()))?;
        let answer = self.api.send(req).await.map_err(tool_error)?;
        if answer.status.is_success() {
            return Ok(answer.body);
        }
        let detail = answer.body["detail"].as_str().unwrap_or("no detail");
        let code = answer.body["code"].as_str().unwrap_or("");
        Err(tool_error(format!(
            "Airlock answered {} ({code}): {detail}\n{}",
            answer.status.as_u16(),
            answer.body
        )))
    }

    fn need_key(&self, ctx: &RequestContext<RoleServer>) -> Result<ProfileKey, CallToolResult> {
        let ui_base = self.ui_base(ctx);
        self.key(ctx).ok_or_else(|| {
            tool_error(format!(
                "no profile key is configured for this MCP server. Ask the user to lock the \
                 profile in the web UI ({ui_base}/ui/profiles) and to configure the key \
                 (AIRLOCK_KEY or --key-file for `airlock mcp`); never ask for it in the chat."
            ))
        })
    }

    /// Long-polls an execution until it is final or waits for an LLM answer.
    async fn follow(
        &self,
        ctx: &RequestContext<RoleServer>,
        id: &str,
        first_wait: u64,
    ) -> Result<Value, CallToolResult> {
        let started = Instant::now();
        let mut wait = first_wait;
        loop {
            let mut ex = self
                .call(
                    ctx,
                    Method::GET,
                    &format!("/executions/{id}?wait={wait}"),
                    None,
                )
                .await?;
            wait = 30;
            match ex["status"].as_str().unwrap_or("") {
                "completed" | "error" | "timeout" | "denied" => return Ok(ex),
                "awaiting_approval" => {
                    ex["next_step"] = json!(format!(
                        "The profile requires a person to approve this script. Give them the \
                         approval_url ({}) and follow the execution with get_execution \
                         (wait=60) until it runs, or ends denied with the reason in error.",
                        ex["approval_url"].as_str().unwrap_or("the Approvals page")
                    ));
                    return Ok(ex);
                }
                "awaiting_llm" => {
                    ex["next_step"] = json!(
                        "The script is paused in llm.complete. Answer llm_request.prompt with \
                         respond_llm (execution_id, request_id, response)."
                    );
                    return Ok(ex);
                }
                _ if started.elapsed() > FOLLOW_LIMIT => {
                    ex["next_step"] =
                        json!("Still running: call get_execution with wait=60 to follow it.");
                    return Ok(ex);
                }
                _ => {}
            }
        }
    }
}

fn done(r: Result<Value, CallToolResult>) -> Result<CallToolResult, ErrorData> {
    Ok(match r {
        Ok(v) => ok_json(&v),
        Err(e) => e,
    })
}

#[tool_router]
impl AirlockMcp {
    #[tool(
        description = "List the credential slots (names, descriptions, whether a value is set, mode plain or sealed and the hosts a sealed one is bound to, or its database login; never values)."
    )]
    async fn list_credentials(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        done(self.call(&ctx, Method::GET, "/credentials", None).await)
    }

    #[tool(
        description = "List the profiles: id, description, locked/revoked/expired, credentials with whether each has a value and its mode (plain or sealed, with bound hosts or a database login), allowed hosts (tcp://host:port entries are raw TCP destinations such as databases)."
    )]
    async fn list_profiles(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        done(self.call(&ctx, Method::GET, "/profiles", None).await)
    }

    #[tool(
        description = "Create credential slots (name + description). The user types the values in the web UI; never ask for them."
    )]
    async fn create_credentials(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<CreateCredentialsArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let slots: Vec<Value> = args
            .credentials
            .into_iter()
            .map(|s| json!({"name": s.name, "description": s.description}))
            .collect();
        done(
            self.call(
                &ctx,
                Method::POST,
                "/credentials",
                Some(json!({ "credentials": slots, "message": args.message })),
            )
            .await,
        )
    }

    #[tool(
        description = "Create a profile that groups credential slots. Then send the user to the returned ui_url to fill in the values and lock it."
    )]
    async fn create_profile(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<CreateProfileArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let ui_base = self.ui_base(&ctx);
        let r = self
            .call(
                &ctx,
                Method::POST,
                "/profiles",
                Some(json!({
                    "description": args.description,
                    "credentials": args.credentials,
                    "message": args.message,
                })),
            )
            .await
            .map(|mut p| {
                if let Some(id) = p["id"].as_str() {
                    p["ui_url"] = json!(format!("{ui_base}/ui/profiles/{id}"));
                    p["next_step"] = json!(
                        "Ask the user to open ui_url, set the credential values there and lock \
                         the profile. Never ask for the values in the chat."
                    );
                }
                p
            });
        done(r)
    }

    #[tool(description = "Add credential slots to an unlocked profile.")]
    async fn attach_credentials(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<ProfileCredentialsArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        done(
            async {
                let id = path_id(&args.profile_id)?;
                let body = json!({ "credentials": args.credentials });
                let path = format!("/profiles/{id}/credentials");
                self.call(&ctx, Method::POST, &path, Some(body)).await
            }
            .await,
        )
    }

    #[tool(description = "Remove credential slots from an unlocked profile.")]
    async fn detach_credentials(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<ProfileCredentialsArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        done(
            async {
                let id = path_id(&args.profile_id)?;
                let body = json!({ "credentials": args.credentials });
                let path = format!("/profiles/{id}/credentials");
                self.call(&ctx, Method::DELETE, &path, Some(body)).await
            }
            .await,
        )
    }

    #[tool(
        description = "Run a Python script with the locked profile's credentials and wait. Returns status, result, stdout, stderr, error; or, when the script calls llm.complete, status awaiting_llm with llm_request.prompt to answer with respond_llm; or, when the profile needs a person to approve the script, status awaiting_approval with approval_url to hand to them (then follow with get_execution)."
    )]
    async fn execute_script(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<ExecuteArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        done(
            async {
                let key = self.need_key(&ctx)?;
                let mut body = crate::ids::signed_body(key.secret.as_bytes(), &args.script);
                if let Some(t) = args.timeout {
                    body["timeout"] = json!(t);
                }
                if let Some(t) = args.llm_timeout {
                    body["llm_timeout"] = json!(t);
                }
                let submitted = self
                    .call(&ctx, Method::POST, "/execute", Some(body))
                    .await?;
                let id = submitted["execution_id"]
                    .as_str()
                    .ok_or_else(|| tool_error(format!("unexpected answer: {submitted}")))?;
                // Held for approval: a long-poll would only return once someone
                // decided, so the first look does not wait.
                let first_wait = if submitted["status"] == "awaiting_approval" {
                    0
                } else {
                    30
                };
                self.follow(&ctx, id, first_wait).await
            }
            .await,
        )
    }

    #[tool(
        description = "Answer a script paused in llm.complete, then wait for the script like execute_script does."
    )]
    async fn respond_llm(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<RespondArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        done(
            async {
                self.need_key(&ctx)?;
                let id = path_id(&args.execution_id)?;
                let mut body = json!({ "response": args.response });
                if let Some(r) = args.request_id {
                    body["request_id"] = json!(r);
                }
                let path = format!("/executions/{id}/respond");
                self.call(&ctx, Method::POST, &path, Some(body)).await?;
                self.follow(&ctx, id, 30).await
            }
            .await,
        )
    }

    #[tool(
        description = "Get an execution of this profile (optionally waiting up to 60 s for a change)."
    )]
    async fn get_execution(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<GetExecutionArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        done(
            async {
                self.need_key(&ctx)?;
                let id = path_id(&args.execution_id)?;
                let wait = args.wait.unwrap_or(0);
                let path = format!("/executions/{id}?wait={wait}");
                self.call(&ctx, Method::GET, &path, None).await
            }
            .await,
        )
    }

    #[tool(
        description = "Ask the operator to install Python packages for scripts (POST /requirements). The install waits (awaiting_review) until an operator accepts it; a rejection's reason is in request.reason of list_package_requests."
    )]
    async fn request_packages(
        &self,
        ctx: RequestContext<RoleServer>,
        Parameters(args): Parameters<RequestPackagesArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        done(
            self.call(
                &ctx,
                Method::POST,
                "/requirements",
                Some(json!({ "packages": args.packages, "message": args.message })),
            )
            .await,
        )
    }

    #[tool(description = "List package requests and their state (GET /requirements).")]
    async fn list_package_requests(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        done(self.call(&ctx, Method::GET, "/requirements", None).await)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for AirlockMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("airlock", env!("CARGO_PKG_VERSION")))
            .with_instructions(instructions(&self.ui_base))
    }
}

// ----- /mcp: streamable HTTP inside the server -----

/// Hosts and browser origins `/mcp` accepts: loopback, plus the public URL's.
fn allowed_hosts(public_url: Option<&str>) -> (Vec<String>, Vec<String>) {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let mut origins = vec![
        "http://localhost:*".to_string(),
        "http://127.0.0.1:*".into(),
        "http://[::1]:*".into(),
    ];
    if let Some(public) = public_url {
        if let Ok(uri) = public.parse::<http::Uri>() {
            if let Some(auth) = uri.authority() {
                hosts.push(auth.host().trim_matches(['[', ']']).to_string());
                let scheme = uri.scheme_str().unwrap_or("https");
                let port = auth
                    .port_u16()
                    .unwrap_or(if scheme == "http" { 80 } else { 443 });
                origins.push(format!("{scheme}://{}:{port}", auth.host()));
            }
        }
    }
    (hosts, origins)
}

/// The `/mcp` service: tools dispatched to `api` (the server's router).
pub fn http_service(state: &AppState, api: axum::Router) -> axum::Router<AppState> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let (hosts, origins) = allowed_hosts(state.config.public_base());
    let public = state.config.public_base().map(str::to_string);
    let ui_base = public
        .clone()
        .unwrap_or_else(|| format!("http://{}", state.config.bind));
    // Room for a script as large as `POST /execute` accepts, JSON-escaped.
    let max_body = (state.config.max_script_bytes.saturating_mul(6) + 64 * 1024).max(4 << 20);
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .with_max_request_body_bytes(max_body);
    let service = StreamableHttpService::new(
        move || {
            let mut server = AirlockMcp::new(
                AgentApi::InProcess {
                    router: api.clone(),
                },
                None,
                &ui_base,
            );
            server.ui_from_host = public.is_none();
            Ok(server)
        },
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            mcp_auth,
        ))
}

/// `/mcp` accepts only `Authorization: Bearer ark_ID:SECRET` of a usable
/// profile; the verified key rides along in the request's extensions.
async fn mcp_auth(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let refuse = |e: ApiError| {
        let mut resp = e.into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"airlock\""),
        );
        resp
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return refuse(ApiError::unauthorized(
            "missing_key",
            "missing Authorization: Bearer ark_<id>:<secret> header (the full profile key)",
        ));
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(ProfileKey::parse);
    let Some(key) = key else {
        return refuse(ApiError::unauthorized(
            "malformed_key",
            "/mcp needs the full profile key: Authorization: Bearer ark_<id>:<secret>",
        ));
    };
    let profile = match state.catalog.active_profile(&key.id).await {
        Ok(p) => p,
        Err(e) => return refuse(e.into()),
    };
    if !crate::ids::ct_eq(&profile.secret, key.secret.as_bytes()) {
        tracing::warn!(key_id = %key.id, "/mcp refused a wrong key secret");
        return refuse(ApiError::unauthorized(
            "invalid_key",
            "the key's secret is wrong",
        ));
    }
    req.extensions_mut().insert(key);
    next.run(req).await
}

// ----- airlock mcp: stdio -----

/// Options of `airlock mcp`.
#[derive(Debug, Clone, clap::Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub server: crate::cli::Server,
    /// The profile key `ark_ID:SECRET` (prefer AIRLOCK_KEY or --key-file). Without a
    /// key, listing and creating slots and profiles work; executing does not.
    #[arg(long, env = "AIRLOCK_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Read the key from this file instead.
    #[arg(long, conflicts_with = "key")]
    pub key_file: Option<PathBuf>,
}

/// `airlock mcp`: serves MCP on stdin/stdout until the client leaves.
pub async fn run_stdio(args: McpArgs) -> anyhow::Result<()> {
    use rmcp::ServiceExt;
    let key = match (&args.key, &args.key_file) {
        (None, None) => None,
        (k, f) => Some(crate::cli::read_key(k.as_deref(), f.as_deref())?),
    };
    let base = args.server.url.trim_end_matches('/').to_string();
    let server = AirlockMcp::new(AgentApi::http(&base), key, &base);
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("MCP start-up failed: {e}"))?;
    running.waiting().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_adds_its_host_and_origin() {
        let (hosts, origins) = allowed_hosts(None);
        assert_eq!(hosts, ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(origins.len(), 3);
        let (hosts, origins) = allowed_hosts(Some("https://airlock.example.com"));
        assert_eq!(hosts.last().unwrap(), "airlock.example.com");
        assert_eq!(origins.last().unwrap(), "https://airlock.example.com:443");
        let (hosts, origins) = allowed_hosts(Some("http://10.0.0.5:9090"));
        assert_eq!(hosts.last().unwrap(), "10.0.0.5");
        assert_eq!(origins.last().unwrap(), "http://10.0.0.5:9090");
    }

    #[test]
    fn path_ids_are_plain() {
        assert!(path_id("exec_abc-1").is_ok());
        for bad in ["", "../x", "a/b", "a?b", "a b"] {
            assert!(path_id(bad).is_err(), "{bad}");
        }
    }
}
