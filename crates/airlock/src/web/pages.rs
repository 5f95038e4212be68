//! Page handlers: check the session, ask the services, fill a template.
//!
//! Handlers read only; every change goes through the JSON admin API from the
//! browser. Template structs hold display-ready data and never a credential
//! value (the services here do not return one).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use chrono::{Duration, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::chart::{self, DayChart};
use super::view::{self, Ts};
use super::{render, require_session, safe_next, PageError, PageResult, PREFIX};
use crate::app::AppState;
use crate::auth;
use crate::catalog::{ProfileLookup, ProfileView};
use crate::error::ApiError;
use airlock_store::{ExecutionFilter, ExecutionStatus, ExecutionSummary};

/// Days shown in the overview's chart and stats.
const STATS_DAYS: usize = 14;
const PAGE_SIZE: i64 = 25;

// ----- shared shapes -----

pub struct ExecRow {
    pub id: String,
    pub profile_id: String,
    pub status: String,
    pub duration: String,
    pub created: Ts,
}

fn exec_row(s: &ExecutionSummary) -> ExecRow {
    ExecRow {
        id: s.id.clone(),
        profile_id: s.profile_id.clone(),
        status: s.status.to_string(),
        duration: view::duration(s.execution_time_ms),
        created: view::ts(s.created_at),
    }
}

pub struct ProfileRowView {
    pub id: String,
    pub description: String,
    pub state: &'static str,
    pub n_creds: usize,
    pub missing: Vec<String>,
    pub hosts: String,
    pub expires: Option<Ts>,
    pub last_used: Option<Ts>,
}

fn hosts_summary(h: &Option<Vec<String>>) -> String {
    match h {
        None => "unrestricted".into(),
        Some(v) if v.is_empty() => "no network".into(),
        Some(v) if v.len() <= 2 => v.join(", "),
        Some(v) => format!("{}, {} +{} more", v[0], v[1], v.len() - 2),
    }
}

fn profile_row(p: &ProfileView) -> ProfileRowView {
    ProfileRowView {
        id: p.id.clone(),
        description: p.description.clone(),
        state: view::profile_state(p),
        n_creds: p.credentials.len(),
        missing: missing_values(p),
        hosts: hosts_summary(&p.allowed_hosts),
        expires: view::ts_opt(p.expires_at),
        last_used: view::ts_opt(p.last_used_at),
    }
}

fn missing_values(p: &ProfileView) -> Vec<String> {
    p.credentials
        .iter()
        .filter(|c| !c.value_exists)
        .map(|c| c.name.clone())
        .collect()
}

pub struct CredOption {
    pub name: String,
    pub description: String,
    pub value_exists: bool,
    /// Bound hosts of a sealed credential, comma-separated; empty when plain.
    pub sealed_to: String,
}

fn sealed_to(mode: airlock_store::CredentialMode, hosts: &[String]) -> String {
    if mode == airlock_store::CredentialMode::Sealed {
        hosts.join(", ")
    } else {
        String::new()
    }
}

pub struct LayerView {
    pub label: String,
    pub active: bool,
}

pub struct SandboxView {
    pub ready: bool,
    pub reason: String,
    pub mode: String,
    pub layers: Vec<LayerView>,
    pub missing: Vec<String>,
    pub notes: Vec<String>,
}

fn layer_label(key: &str) -> String {
    match key {
        "uid_drop" => "Unprivileged user",
        "user_ns" => "User namespace",
        "pid_ns" => "PID namespace",
        "net_ns" => "Network namespace",
        "mount_ns" => "Mount namespace",
        "ipc_ns" => "IPC namespace",
        "uts_ns" => "UTS namespace",
        "fs_view" => "Read-only filesystem view",
        "landlock" => "Landlock (files)",
        "landlock_net" => "Landlock (network)",
        "landlock_scope" => "Landlock (scoping)",
        "seccomp" => "seccomp filter",
        "rlimits" => "Resource limits",
        "no_new_privs" => "No new privileges",
        "cap_drop" => "Capabilities dropped",
        "cgroup" => "cgroup limits",
        other => other,
    }
    .to_string()
}

/// Reads the sandbox status (the same JSON `/health` reports).
fn sandbox_view(state: &AppState) -> SandboxView {
    sandbox_view_from(&state.runner.sandbox_status())
}

fn sandbox_view_from(v: &Value) -> SandboxView {
    let mut out = SandboxView {
        ready: v["ready"].as_bool().unwrap_or(false),
        reason: v["reason"].as_str().unwrap_or("").to_string(),
        mode: String::new(),
        layers: Vec::new(),
        missing: Vec::new(),
        notes: Vec::new(),
    };
    if let Some(obj) = v["layers"].as_object() {
        for (k, val) in obj {
            match (k.as_str(), val) {
                (_, Value::Bool(active)) => {
                    let label = layer_label(k);
                    if !active {
                        out.missing.push(label.clone());
                    }
                    out.layers.push(LayerView {
                        label,
                        active: *active,
                    });
                }
                ("mode", Value::String(m)) => out.mode = m.clone(),
                ("notes", Value::Array(notes)) => {
                    out.notes = notes
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect()
                }
                _ => {}
            }
        }
    }
    out.layers.sort_by_key(|l| l.label.to_ascii_lowercase());
    out
}

async fn recent_executions(
    state: &AppState,
    profile: Option<String>,
    limit: i64,
) -> Result<Vec<ExecRow>, PageError> {
    let f = ExecutionFilter {
        profile_id: profile,
        limit,
        ..ExecutionFilter::default()
    };
    Ok(state
        .store
        .executions_list(&f)
        .await?
        .iter()
        .map(exec_row)
        .collect())
}

// ----- error page -----

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub nav: &'static str,
    pub status: u16,
    pub title: String,
    pub detail: String,
}

// ----- setup and login -----

#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage {
    nav: &'static str,
    min_len: usize,
}

pub async fn setup(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    if !state.auth.setup_required().await? {
        let to = if crate::api::session::session_valid(&state, &headers).await? {
            "/".to_string()
        } else {
            format!("{PREFIX}/login")
        };
        return Err(PageError::Redirect(to));
    }
    Ok(render(&SetupPage {
        nav: "",
        min_len: auth::MIN_PASSWORD_CHARS,
    }))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: &'static str,
    next: String,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> PageResult {
    if state.auth.setup_required().await? {
        return Err(PageError::Redirect(format!("{PREFIX}/setup")));
    }
    let next = safe_next(q.next.as_deref());
    if crate::api::session::session_valid(&state, &headers).await? {
        return Err(PageError::Redirect(next));
    }
    Ok(render(&LoginPage { nav: "", next }))
}

// ----- overview -----

pub struct PendingView {
    pub id: String,
    pub description: String,
    pub missing: Vec<String>,
}

pub struct ProfileCount {
    pub id: String,
    pub count: i64,
    pub max: i64,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: &'static str,
    sandbox: SandboxView,
    active: Vec<ProfileRowView>,
    pending: Vec<PendingView>,
    ready_to_lock: Vec<ProfileRowView>,
    profiles_total: usize,
    credentials_total: usize,
    credentials_missing: usize,
    executions_total: i64,
    error_rate: String,
    failed: i64,
    p50: String,
    p90: String,
    p99: String,
    max: String,
    chart: DayChart,
    chart_w: f64,
    chart_h: f64,
    by_profile: Vec<ProfileCount>,
    recent: Vec<ExecRow>,
    stats_days: usize,
}

pub async fn overview(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    require_session(&state, &headers, "/").await?;
    let profiles = state.catalog.list_profiles().await?;
    let creds = state.catalog.list_credentials().await?;
    let active = profiles
        .iter()
        .filter(|p| view::profile_state(p) == "locked")
        .map(profile_row)
        .collect();
    let open: Vec<&ProfileView> = profiles
        .iter()
        .filter(|p| !p.locked && !p.revoked)
        .collect();
    let pending = open
        .iter()
        .filter(|p| p.credentials.iter().any(|c| !c.value_exists))
        .map(|p| PendingView {
            id: p.id.clone(),
            description: p.description.clone(),
            missing: missing_values(p),
        })
        .collect();
    let ready_to_lock = open
        .iter()
        .filter(|p| !p.credentials.is_empty() && p.credentials.iter().all(|c| c.value_exists))
        .map(|p| profile_row(p))
        .collect();

    let now = Utc::now();
    let since = (now - Duration::days(STATS_DAYS as i64 - 1))
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let st = state.store.execution_stats(Some(since)).await?;
    let pct = |p| view::duration(st.duration_percentile(p));
    let top = st.by_profile.iter().map(|(_, n)| *n).max().unwrap_or(0);

    Ok(render(&OverviewPage {
        nav: "overview",
        sandbox: sandbox_view(&state),
        active,
        pending,
        ready_to_lock,
        profiles_total: profiles.len(),
        credentials_total: creds.len(),
        credentials_missing: creds.iter().filter(|c| !c.value_exists).count(),
        executions_total: st.total(),
        error_rate: st.error_rate().map_or_else(|| "—".into(), view::percent),
        failed: st.failed(),
        p50: pct(50.0),
        p90: pct(90.0),
        p99: pct(99.0),
        max: view::duration(st.duration_max()),
        chart: chart::days(&st.by_day, now.date_naive(), STATS_DAYS),
        chart_w: chart::WIDTH,
        chart_h: chart::HEIGHT,
        by_profile: st
            .by_profile
            .iter()
            .take(8)
            .map(|(id, n)| ProfileCount {
                id: id.clone(),
                count: *n,
                max: top,
            })
            .collect(),
        recent: recent_executions(&state, None, 8).await?,
        stats_days: STATS_DAYS,
    }))
}

// ----- credentials -----

pub struct UsedBy {
    pub id: String,
    pub state: &'static str,
}

pub struct CredRow {
    pub name: String,
    pub description: String,
    pub value_exists: bool,
    pub updated: Ts,
    pub used_by: Vec<UsedBy>,
    /// `plain` or `sealed`.
    pub mode: String,
    /// Bound host patterns, one per line (for the edit dialog).
    pub hosts_lines: String,
    /// Bound host patterns for display.
    pub hosts_text: String,
    /// Bound methods, comma-separated; empty for any.
    pub methods: String,
    /// Bound header; empty for any.
    pub header: String,
    pub substitute_body: bool,
    pub revoke: bool,
}

#[derive(Template)]
#[template(path = "credentials.html")]
struct CredentialsPage {
    nav: &'static str,
    creds: Vec<CredRow>,
    missing: usize,
    fill: String,
}

#[derive(Deserialize)]
pub struct FillQuery {
    fill: Option<String>,
}

pub async fn credentials(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FillQuery>,
) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/credentials")).await?;
    let now = Utc::now();
    let mut creds = Vec::new();
    for row in state.store.credentials_list().await? {
        let used_by = state
            .store
            .credential_profiles(&row.id)
            .await?
            .iter()
            .map(|p| UsedBy {
                id: p.id.clone(),
                state: if p.revoked {
                    "revoked"
                } else if p.is_expired(now) {
                    "expired"
                } else if p.locked {
                    "locked"
                } else {
                    "unlocked"
                },
            })
            .collect();
        creds.push(CredRow {
            name: row.name.clone(),
            description: row.description.clone(),
            value_exists: row.value.is_some(),
            updated: view::ts(row.updated_at),
            used_by,
            mode: row.seal.mode.to_string(),
            hosts_lines: row.seal.hosts.join("\n"),
            hosts_text: row.seal.hosts.join(", "),
            methods: row.seal.methods.clone().unwrap_or_default().join(", "),
            header: row.seal.header.clone().unwrap_or_default(),
            substitute_body: row.seal.substitute_body,
            revoke: row.seal.revoke_on_violation,
        });
    }
    let fill = q
        .fill
        .filter(|f| creds.iter().any(|c| &c.name == f))
        .unwrap_or_default();
    Ok(render(&CredentialsPage {
        nav: "credentials",
        missing: creds.iter().filter(|c| !c.value_exists).count(),
        creds,
        fill,
    }))
}

// ----- profiles -----

#[derive(Template)]
#[template(path = "profiles.html")]
struct ProfilesPage {
    nav: &'static str,
    profiles: Vec<ProfileRowView>,
    creds: Vec<CredOption>,
}

pub async fn profiles(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/profiles")).await?;
    let profiles = state
        .catalog
        .list_profiles()
        .await?
        .iter()
        .map(profile_row)
        .collect();
    let creds = state
        .catalog
        .list_credentials()
        .await?
        .into_iter()
        .map(|c| CredOption {
            sealed_to: sealed_to(c.sealing.mode, &c.sealing.bound_hosts),
            name: c.name,
            description: c.description,
            value_exists: c.value_exists,
        })
        .collect();
    Ok(render(&ProfilesPage {
        nav: "profiles",
        profiles,
        creds,
    }))
}

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    nav: &'static str,
    id: String,
    description: String,
    state: &'static str,
    key_id: String,
    locked: bool,
    revoked: bool,
    /// Credentials can be attached or detached.
    open: bool,
    can_lock: bool,
    can_delete: bool,
    creds: Vec<CredOption>,
    missing: Vec<String>,
    hosts_mode: &'static str,
    hosts_text: String,
    expires: Option<Ts>,
    created: Ts,
    updated: Ts,
    last_used: Option<Ts>,
    available: Vec<CredOption>,
    recent: Vec<ExecRow>,
}

pub async fn profile(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/profiles/{id}")).await?;
    let p = state.catalog.get_profile(&id, ProfileLookup::Id).await?;
    let attached: Vec<&str> = p.credentials.iter().map(|c| c.name.as_str()).collect();
    let available = state
        .catalog
        .list_credentials()
        .await?
        .into_iter()
        .filter(|c| !attached.contains(&c.name.as_str()))
        .map(|c| CredOption {
            sealed_to: sealed_to(c.sealing.mode, &c.sealing.bound_hosts),
            name: c.name,
            description: c.description,
            value_exists: c.value_exists,
        })
        .collect();
    let missing = missing_values(&p);
    let open = !p.locked && !p.revoked;
    let (hosts_mode, hosts) = match &p.allowed_hosts {
        None => ("any", Vec::new()),
        Some(h) if h.is_empty() => ("none", Vec::new()),
        Some(h) => ("list", h.clone()),
    };
    Ok(render(&ProfilePage {
        nav: "profiles",
        id: p.id.clone(),
        description: p.description.clone(),
        state: view::profile_state(&p),
        key_id: p.key_id.clone().unwrap_or_default(),
        locked: p.locked,
        revoked: p.revoked,
        open,
        can_lock: open && missing.is_empty(),
        can_delete: !p.locked || p.revoked,
        creds: p
            .credentials
            .iter()
            .map(|c| CredOption {
                name: c.name.clone(),
                description: c.description.clone(),
                value_exists: c.value_exists,
                sealed_to: sealed_to(c.mode, &c.bound_hosts),
            })
            .collect(),
        missing,
        hosts_mode,
        hosts_text: hosts.join("\n"),
        expires: view::ts_opt(p.expires_at),
        created: view::ts(p.created_at),
        updated: view::ts(p.updated_at),
        last_used: view::ts_opt(p.last_used_at),
        available,
        recent: recent_executions(&state, Some(p.id.clone()), 10).await?,
    }))
}

// ----- executions -----

#[derive(Deserialize, Default)]
pub struct ExecQuery {
    #[serde(default)]
    profile: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    page: Option<i64>,
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

#[derive(Template)]
#[template(path = "executions.html")]
struct ExecutionsPage {
    nav: &'static str,
    rows: Vec<ExecRow>,
    total: i64,
    first: i64,
    last: i64,
    page: i64,
    pages: i64,
    prev_href: String,
    next_href: String,
    profile: String,
    status: String,
    from: String,
    to: String,
    filtered: bool,
    statuses: Vec<String>,
    profiles: Vec<Choice>,
}

fn parse_day(name: &str, s: &str) -> Result<Option<NaiveDate>, ApiError> {
    if s.is_empty() {
        return Ok(None);
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| ApiError::invalid(format!("{name} must be a date such as 2026-01-31")))
}

pub async fn executions(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ExecQuery>,
) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/executions")).await?;
    let status = match q.status.as_str() {
        "" => None,
        s => Some(ExecutionStatus::parse(s).ok_or_else(|| {
            ApiError::invalid(format!("status must be one of {}", ExecutionStatus::list()))
        })?),
    };
    let from = parse_day("from", &q.from)?;
    let to = parse_day("to", &q.to)?;
    let page = q.page.unwrap_or(1).max(1);
    let mut f = ExecutionFilter {
        profile_id: Some(q.profile.clone()).filter(|p| !p.is_empty()),
        status,
        created_from: from.map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc()),
        // The end date is inclusive: everything before the next midnight.
        created_to: to.map(|d| {
            (d + Duration::days(1))
                .and_time(chrono::NaiveTime::MIN)
                .and_utc()
        }),
        limit: PAGE_SIZE,
        offset: 0,
    };
    let total = state.store.executions_count(&f).await?;
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let page = page.min(pages);
    f.offset = (page - 1) * PAGE_SIZE;
    let rows: Vec<ExecRow> = state
        .store
        .executions_list(&f)
        .await?
        .iter()
        .map(exec_row)
        .collect();
    let href = |p: i64| {
        let p = p.to_string();
        format!(
            "{PREFIX}/executions{}",
            view::query(&[
                ("profile", &q.profile),
                ("status", &q.status),
                ("from", &q.from),
                ("to", &q.to),
                ("page", if p == "1" { "" } else { &p }),
            ])
        )
    };
    let profiles = state
        .catalog
        .list_profiles()
        .await?
        .into_iter()
        .map(|p| Choice {
            label: if p.description.is_empty() {
                p.id.clone()
            } else {
                format!("{} — {}", p.id, truncate(&p.description, 40))
            },
            value: p.id,
        })
        .collect();
    Ok(render(&ExecutionsPage {
        nav: "executions",
        first: if rows.is_empty() { 0 } else { f.offset + 1 },
        last: f.offset + rows.len() as i64,
        rows,
        total,
        page,
        pages,
        prev_href: if page > 1 {
            href(page - 1)
        } else {
            String::new()
        },
        next_href: if page < pages {
            href(page + 1)
        } else {
            String::new()
        },
        filtered: !(q.profile.is_empty()
            && q.status.is_empty()
            && q.from.is_empty()
            && q.to.is_empty()),
        profile: q.profile,
        status: q.status,
        from: q.from,
        to: q.to,
        statuses: ExecutionStatus::ALL
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
        profiles,
    }))
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

pub struct Exchange {
    pub request_id: String,
    pub model: String,
    pub prompt: String,
    pub response: String,
}

pub struct Redaction {
    pub field: String,
    pub name: String,
    pub count: i64,
}

/// One connection attempt through the egress proxy.
pub struct Egress {
    pub at: Ts,
    pub target: String,
    pub request: String,
    pub bytes_up: i64,
    pub bytes_down: i64,
    pub allowed: bool,
    pub reason: String,
    pub violation: bool,
    /// Sealed credentials substituted into the request, comma-separated.
    pub substituted: String,
}

#[derive(Template)]
#[template(path = "execution.html")]
struct ExecutionPage {
    nav: &'static str,
    id: String,
    profile_id: String,
    status: String,
    script: String,
    script_sha256: String,
    script_lines: usize,
    stdout: String,
    stderr: String,
    result: Option<String>,
    error: Option<String>,
    llm_request: Option<String>,
    exchanges: Vec<Exchange>,
    redactions: Vec<Redaction>,
    egress: Vec<Egress>,
    timeout: i64,
    duration: String,
    created: Ts,
    started: Option<Ts>,
    completed: Option<Ts>,
}

fn pretty_json(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_string())
}

pub async fn execution(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/executions/{id}")).await?;
    let r = state
        .store
        .execution_get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("no execution has this id"))?;
    let exchanges = r
        .llm_exchanges
        .iter()
        .map(|x| Exchange {
            request_id: x.request_id.clone(),
            model: x.model.clone(),
            prompt: x.prompt.clone(),
            response: x.response.clone(),
        })
        .collect();
    let redactions = r
        .redactions
        .iter()
        .map(|x| Redaction {
            field: x.field.clone(),
            name: x.name.clone(),
            count: x.count as i64,
        })
        .collect();
    let egress = state
        .store
        .egress_list(&r.id)
        .await?
        .into_iter()
        .map(|e| Egress {
            at: view::ts(e.at),
            target: format!("{}:{}", e.host, e.port),
            request: match &e.path {
                Some(path) => format!("{} {path}", e.method),
                None => e.method.clone(),
            },
            bytes_up: e.bytes_up,
            bytes_down: e.bytes_down,
            allowed: e.allowed,
            reason: e.reason,
            violation: e.violation,
            substituted: e.substituted.join(", "),
        })
        .collect();
    Ok(render(&ExecutionPage {
        nav: "executions",
        id: r.id.clone(),
        profile_id: r.profile_id.clone(),
        status: r.status.to_string(),
        script_lines: r.script.lines().count(),
        script: r.script.clone(),
        script_sha256: r.script_sha256.clone(),
        stdout: r.stdout.clone(),
        stderr: r.stderr.clone(),
        result: r.result.as_deref().map(pretty_json),
        error: r.error.clone(),
        llm_request: r
            .llm_request
            .as_ref()
            .and_then(|q| serde_json::to_string_pretty(q).ok()),
        exchanges,
        redactions,
        egress,
        timeout: r.timeout_secs,
        duration: view::duration(r.execution_time_ms),
        created: view::ts(r.created_at),
        started: view::ts_opt(r.started_at),
        completed: view::ts_opt(r.completed_at),
    }))
}

// ----- settings -----

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    nav: &'static str,
    version: &'static str,
    min_len: usize,
    sandbox: SandboxView,
    idle_hours: i64,
    absolute_days: i64,
    /// For the export form's "chosen profiles" scope.
    profiles: Vec<ProfileRowView>,
    min_passphrase: usize,
    max_import_mib: usize,
    max_import_bytes: usize,
    sessions: Vec<SessionRowView>,
}

/// One admin session in the settings table.
pub struct SessionRowView {
    pub id: String,
    pub current: bool,
    pub created: Ts,
    pub last_seen: Ts,
}

pub async fn settings(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/settings")).await?;
    let profiles = state.catalog.list_profiles().await?;
    let token = crate::api::session::cookie_token(&headers).unwrap_or_default();
    let sessions = state
        .auth
        .list_sessions(&token)
        .await?
        .into_iter()
        .map(|s| SessionRowView {
            id: s.id,
            current: s.current,
            created: view::ts(s.created_at),
            last_seen: view::ts(s.last_seen_at),
        })
        .collect();
    Ok(render(&SettingsPage {
        sessions,
        profiles: profiles.iter().map(profile_row).collect(),
        min_passphrase: crate::transfer::MIN_PASSPHRASE_CHARS,
        max_import_mib: state.config.max_import_bytes.div_ceil(1024 * 1024),
        max_import_bytes: state.config.max_import_bytes,
        nav: "settings",
        version: env!("CARGO_PKG_VERSION"),
        min_len: auth::MIN_PASSWORD_CHARS,
        sandbox: sandbox_view(&state),
        idle_hours: auth::SESSION_IDLE.num_hours(),
        absolute_days: auth::SESSION_ABSOLUTE.num_days(),
    })
    .into_response())
}

struct PackageRowView {
    name: String,
    spec: String,
    status: String,
    badge: &'static str,
    version: String,
    requested: Ts,
    error: String,
}

#[derive(Template)]
#[template(path = "packages.html")]
struct PackagesPage {
    nav: &'static str,
    rows: Vec<PackageRowView>,
    env_state: String,
    env_badge: &'static str,
    installer: String,
    python: String,
    index: String,
    find_links: bool,
    reason: String,
}

fn package_badge(status: &str) -> &'static str {
    match status {
        "installed" => "ok",
        "failed" => "error",
        _ => "pending",
    }
}

pub async fn packages(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/packages")).await?;
    let list = state.packages.list().await?;
    let env = list.environment;
    Ok(render(&PackagesPage {
        nav: "packages",
        rows: list
            .packages
            .into_iter()
            .map(|p| PackageRowView {
                badge: package_badge(&p.status),
                name: p.name,
                spec: p.spec,
                status: p.status,
                version: p.installed_version.unwrap_or_default(),
                requested: view::ts(p.requested_at),
                error: p.error.unwrap_or_default(),
            })
            .collect(),
        env_badge: match env.state.as_str() {
            "ready" => "ok",
            "rebuilding" => "pending",
            _ => "error",
        },
        env_state: env.state,
        installer: env.installer,
        python: env.python,
        index: env
            .index_url
            .unwrap_or_else(|| "none (find-links only)".into()),
        find_links: env.find_links,
        reason: env.reason.unwrap_or_default(),
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sandbox_status_lists_missing_layers() {
        let v = json!({"ready": true, "layers": {"mode": "warm", "seccomp": true,
            "landlock": false, "landlock_abi": 7, "notes": ["uid drop skipped"]}});
        let s = sandbox_view_from(&v);
        assert!(s.ready);
        assert_eq!(s.mode, "warm");
        assert_eq!(s.missing, vec!["Landlock (files)".to_string()]);
        assert_eq!(s.notes, vec!["uid drop skipped".to_string()]);
        let s = sandbox_view_from(&json!({"ready": false, "reason": "no helper"}));
        assert!(!s.ready);
        assert_eq!(s.reason, "no helper");
    }

    #[test]
    fn host_summaries() {
        assert_eq!(hosts_summary(&None), "unrestricted");
        assert_eq!(hosts_summary(&Some(vec![])), "no network");
        let three = Some(vec!["a.com".into(), "b.com".into(), "c.com".into()]);
        assert_eq!(hosts_summary(&three), "a.com, b.com +1 more");
    }
}
