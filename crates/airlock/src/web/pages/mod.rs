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
    /// The profile's description (empty when it has none or is gone).
    pub profile_name: String,
    pub status: String,
    pub duration: String,
    pub created: Ts,
}

/// Profile descriptions by id: pages show a profile's name before its id.
pub(super) type ProfileNames = std::collections::HashMap<String, String>;

pub(super) fn profile_names(profiles: &[ProfileView]) -> ProfileNames {
    profiles
        .iter()
        .map(|p| (p.id.clone(), p.description.clone()))
        .collect()
}

fn exec_row(s: &ExecutionSummary, names: &ProfileNames) -> ExecRow {
    ExecRow {
        id: s.id.clone(),
        profile_id: s.profile_id.clone(),
        profile_name: names.get(&s.profile_id).cloned().unwrap_or_default(),
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
    /// `full` or `container` (empty when not ready).
    pub tier: String,
    /// The layers of the tier, active or not.
    pub layers: Vec<LayerView>,
    pub missing: Vec<String>,
    /// Layers that are not part of the tier (never "missing").
    pub outside: Vec<String>,
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
        tier: v["tier"].as_str().unwrap_or("").to_string(),
        layers: Vec::new(),
        missing: Vec::new(),
        outside: Vec::new(),
        notes: Vec::new(),
    };
    let outside: Vec<&str> = v["not_in_tier"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.outside = outside.iter().map(|k| layer_label(k)).collect();
    if let Some(obj) = v["layers"].as_object() {
        for (k, val) in obj {
            match (k.as_str(), val) {
                (name, Value::Bool(_)) if outside.contains(&name) => {}
                // Best effort in every tier: shown when it is there, never "missing".
                ("cgroup", Value::Bool(false)) => out.outside.push(layer_label("cgroup")),
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
    names: &ProfileNames,
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
        .map(|s| exec_row(s, names))
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

mod approvals;
mod audit;
mod catalog;
mod executions;
mod overview;
mod requests;
mod settings;

pub use approvals::{approval, approvals};
pub use audit::audit;
pub use catalog::{credentials, profile, profiles};
pub use executions::{execution, executions};
pub use overview::overview;
pub use requests::requests;
pub use settings::{packages, settings};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sandbox_status_of_the_container_tier_names_what_it_leaves_out() {
        let v = json!({"ready": true, "tier": "container", "not_in_tier": ["pid_ns", "fs_view"],
            "layers": {"mode": "warm", "seccomp": true, "pid_ns": false, "fs_view": false,
                       "landlock": true}});
        let s = sandbox_view_from(&v);
        assert_eq!(s.tier, "container");
        assert!(s.missing.is_empty(), "{:?}", s.missing);
        assert_eq!(
            s.outside,
            vec![
                "PID namespace".to_string(),
                "Read-only filesystem view".to_string()
            ]
        );
        let labels: Vec<&str> = s.layers.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(labels, vec!["Landlock (files)", "seccomp filter"]);
    }

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
