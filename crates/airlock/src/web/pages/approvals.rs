//! The approvals pages: what waits for a person, and one request with its
//! script, what it may use, and the diff against what was approved before.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::HeaderMap;

use super::super::view::{self, Ts};
use super::super::{render, require_session, PageResult, PREFIX};
use crate::app::AppState;
use crate::approvals::{mode_name, status_name, ApprovalView};
use crate::error::ApiError;
use airlock_store::{ApprovalMode, ApprovalStatus};

pub struct Row {
    pub id: String,
    pub profile_id: String,
    pub profile_name: String,
    pub mode: &'static str,
    pub status: &'static str,
    pub sha: String,
    pub created: Ts,
    pub expires: Ts,
    pub reason: String,
}

fn row(a: &ApprovalView) -> Row {
    Row {
        id: a.execution_id.clone(),
        profile_id: a.profile_id.clone(),
        profile_name: a.profile_description.clone(),
        mode: mode_name(a.mode),
        status: status_name(a.status),
        sha: a.script_sha256[..a.script_sha256.len().min(12)].to_string(),
        created: view::ts(a.created_at),
        expires: view::ts(a.expires_at),
        reason: a.reason.clone().unwrap_or_default(),
    }
}

#[derive(Template)]
#[template(path = "approvals.html")]
struct ApprovalsPage {
    nav: &'static str,
    pending: Vec<Row>,
    decided: Vec<Row>,
}

pub async fn approvals(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/approvals")).await?;
    let pending = state
        .approvals
        .list(&[ApprovalStatus::Pending])
        .await
        .map_err(ApiError::from)?;
    let decided = state
        .approvals
        .list(&[
            ApprovalStatus::Approved,
            ApprovalStatus::Denied,
            ApprovalStatus::Expired,
            ApprovalStatus::Withdrawn,
        ])
        .await
        .map_err(ApiError::from)?;
    Ok(render(&ApprovalsPage {
        nav: "approvals",
        pending: pending.iter().map(row).collect(),
        decided: decided.iter().take(50).map(row).collect(),
    }))
}

#[derive(Template)]
#[template(path = "approval.html")]
struct ApprovalPage {
    nav: &'static str,
    a: Row,
    pending: bool,
    first_run: bool,
    /// An approved first_run request can be withdrawn.
    withdrawable: bool,
    credentials: Vec<String>,
    hosts: String,
    script: String,
    script_sha256: String,
    grant: String,
    decided: Option<Ts>,
    closest: Option<Closest>,
}

pub struct Closest {
    pub id: String,
    pub percent: u32,
    pub diff: String,
    pub same: bool,
}

pub async fn approval(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/approvals/{id}")).await?;
    let d = state.approvals.detail(&id).await.map_err(ApiError::from)?;
    let a = &d.approval;
    let grant = match (a.status, a.runs_left, a.approved_until) {
        (ApprovalStatus::Approved, runs, until) if a.mode == ApprovalMode::FirstRun => {
            let runs = match runs {
                None => "any number of further runs".to_string(),
                Some(1) => "1 further run".to_string(),
                Some(n) => format!("{n} further runs"),
            };
            match until {
                Some(u) => format!("{runs} until {}", view::ts(u).text),
                None => format!("{runs} until withdrawn"),
            }
        }
        _ => String::new(),
    };
    Ok(render(&ApprovalPage {
        nav: "approvals",
        pending: a.status == ApprovalStatus::Pending,
        first_run: a.mode == ApprovalMode::FirstRun,
        withdrawable: a.status == ApprovalStatus::Approved && a.mode == ApprovalMode::FirstRun,
        credentials: a.credentials.clone(),
        hosts: match &a.allowed_hosts {
            None => "unrestricted".into(),
            Some(h) if h.is_empty() => "no network".into(),
            Some(h) => h.join(", "),
        },
        script: d.script.clone(),
        script_sha256: a.script_sha256.clone(),
        grant,
        decided: view::ts_opt(a.decided_at),
        closest: d.closest_approved.as_ref().map(|c| Closest {
            id: c.execution_id.clone(),
            percent: (c.similarity * 100.0).round() as u32,
            same: c.diff.is_empty(),
            diff: c.diff.clone(),
        }),
        a: row(a),
    }))
}
