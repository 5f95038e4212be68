//! The agent requests inbox: the profiles, credential slots and package installs
//! agents asked for, and the operator's answers. Accepting says "yes, I will
//! provide this" (for packages it starts the install); rejecting gives a reason
//! the agent reads in `GET /profiles/{id}`, `GET /credentials` or
//! `GET /requirements/{id}`. Filling a slot's value or locking a profile accepts
//! its request too. An agent that asks again (re-declares a rejected slot, changes
//! a rejected profile's credentials) reopens the request.

use airlock_store::{AgentRequestRow, RequestKind, RequestStatus};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::app::AppState;
use crate::catalog::{CatalogError, RequestState};
use crate::packages::PackagesError;

/// The longest list the inbox returns at once.
pub const MAX_LISTED: i64 = 500;

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("no {0} request for {1:?}")]
    NotFound(&'static str, String),
    #[error("the request was already {0}")]
    Decided(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Packages(#[from] PackagesError),
    #[error(transparent)]
    Store(#[from] airlock_store::StoreError),
}

pub type InboxResult<T> = Result<T, InboxError>;

/// One request as the operator sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InboxItem {
    pub kind: RequestKind,
    /// The profile id, the credential name, or the install id.
    pub subject: String,
    /// What was asked for, in one line.
    pub summary: String,
    /// Where the operator acts on it in the web UI.
    pub link: String,
    pub status: RequestStatus,
    pub message: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

pub fn kind_name(k: RequestKind) -> &'static str {
    match k {
        RequestKind::Profile => "profile",
        RequestKind::Slot => "slot",
        RequestKind::Packages => "packages",
    }
}

pub fn status_name(s: RequestStatus) -> &'static str {
    match s {
        RequestStatus::Pending => "pending",
        RequestStatus::Accepted => "accepted",
        RequestStatus::Rejected => "rejected",
    }
}

/// Parses a kind from a path segment.
pub fn parse_kind(s: &str) -> Option<RequestKind> {
    match s {
        "profile" => Some(RequestKind::Profile),
        "slot" => Some(RequestKind::Slot),
        "packages" => Some(RequestKind::Packages),
        _ => None,
    }
}

/// Requests, newest first; `None` means any status. Requests whose subject is
/// gone (a deleted profile) are left out.
pub async fn list(
    state: &AppState,
    kind: Option<RequestKind>,
    status: Option<RequestStatus>,
) -> InboxResult<Vec<InboxItem>> {
    let rows = state.store.requests_list(kind, status, MAX_LISTED).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if let Some(item) = item(state, r).await? {
            out.push(item);
        }
    }
    Ok(out)
}

/// One request.
pub async fn get(state: &AppState, kind: RequestKind, subject: &str) -> InboxResult<InboxItem> {
    let row = state
        .store
        .request_get(kind, subject)
        .await?
        .ok_or_else(|| InboxError::NotFound(kind_name(kind), subject.to_string()))?;
    item(state, row)
        .await?
        .ok_or_else(|| InboxError::NotFound(kind_name(kind), subject.to_string()))
}

async fn item(state: &AppState, r: AgentRequestRow) -> InboxResult<Option<InboxItem>> {
    let (summary, link) = match r.kind {
        RequestKind::Profile => {
            let Some(p) = state.store.profile_get(&r.subject).await? else {
                return Ok(None);
            };
            let creds: Vec<String> = state
                .store
                .profile_credentials(&p.id)
                .await?
                .into_iter()
                .map(|c| c.name)
                .collect();
            let name = if p.description.is_empty() {
                p.id.clone()
            } else {
                p.description.clone()
            };
            let summary = if creds.is_empty() {
                format!("profile \"{name}\" (no credentials yet)")
            } else {
                format!("profile \"{name}\" with {}", creds.join(", "))
            };
            (summary, format!("/ui/profiles/{}", p.id))
        }
        RequestKind::Slot => {
            let Some(c) = state.store.credential_get(&r.subject).await? else {
                return Ok(None);
            };
            let summary = if c.description.is_empty() {
                format!("credential {}", c.name)
            } else {
                format!("credential {}: {}", c.name, c.description)
            };
            // Names are `[A-Za-z0-9_]`: nothing to escape in a query.
            (summary, format!("/ui/credentials?fill={}", c.name))
        }
        RequestKind::Packages => {
            let Some(i) = state.store.package_install_get(&r.subject).await? else {
                return Ok(None);
            };
            (
                format!("packages {}", i.specs.join(", ")),
                "/ui/requests".to_string(),
            )
        }
    };
    let st = RequestState::from(&r);
    Ok(Some(InboxItem {
        kind: r.kind,
        subject: r.subject,
        summary,
        link,
        status: st.status,
        message: st.message,
        reason: st.reason,
        created_at: st.created_at,
        decided_at: st.decided_at,
    }))
}

/// Accepts a pending request (for packages: starts the install).
pub async fn accept(
    state: &AppState,
    kind: RequestKind,
    subject: &str,
    note: Option<String>,
) -> InboxResult<InboxItem> {
    let note = crate::validate::note("note", note).map_err(|e| InboxError::Invalid(e.0))?;
    let before = decide(
        state,
        kind,
        subject,
        RequestStatus::Accepted,
        note.as_deref(),
    )
    .await?;
    if kind == RequestKind::Packages {
        if let Err(e) = state.packages.accept(subject).await {
            // Nothing was installed: the request waits again.
            state.store.request_put(&before).await?;
            return Err(e.into());
        }
    }
    tracing::info!(kind = kind_name(kind), subject, "agent request accepted");
    get(state, kind, subject).await
}

/// Rejects a pending request with a reason the agent reads.
pub async fn reject(
    state: &AppState,
    kind: RequestKind,
    subject: &str,
    reason: Option<String>,
) -> InboxResult<InboxItem> {
    let Some(reason) =
        crate::validate::note("reason", reason).map_err(|e| InboxError::Invalid(e.0))?
    else {
        return Err(InboxError::Invalid(
            "give a reason for the rejection: the agent reads it".into(),
        ));
    };
    let before = decide(state, kind, subject, RequestStatus::Rejected, Some(&reason)).await?;
    if kind == RequestKind::Packages {
        if let Err(e) = state.packages.reject(subject, &reason).await {
            state.store.request_put(&before).await?;
            return Err(e.into());
        }
    }
    tracing::info!(kind = kind_name(kind), subject, "agent request rejected");
    get(state, kind, subject).await
}

/// Records a decision on a pending request (compare-and-set: a second decision
/// loses); returns the row as it was.
async fn decide(
    state: &AppState,
    kind: RequestKind,
    subject: &str,
    to: RequestStatus,
    reason: Option<&str>,
) -> InboxResult<AgentRequestRow> {
    let row = state
        .store
        .request_get(kind, subject)
        .await?
        .ok_or_else(|| InboxError::NotFound(kind_name(kind), subject.to_string()))?;
    if row.status != RequestStatus::Pending {
        return Err(InboxError::Decided(status_name(row.status)));
    }
    if !state
        .store
        .request_decide(kind, subject, to, reason, Utc::now())
        .await?
    {
        let now = state.store.request_get(kind, subject).await?;
        return Err(InboxError::Decided(
            now.map_or("removed", |r| status_name(r.status)),
        ));
    }
    Ok(row)
}

/// An agent asked again for a subject whose request was rejected: it waits for
/// the operator once more (with `message` when one is given). Returns whether it
/// reopened.
pub async fn reopen_if_rejected(
    state: &AppState,
    kind: RequestKind,
    subject: &str,
    message: Option<&str>,
) -> InboxResult<bool> {
    let Some(mut row) = state.store.request_get(kind, subject).await? else {
        return Ok(false);
    };
    if row.status != RequestStatus::Rejected {
        return Ok(false);
    }
    row.status = RequestStatus::Pending;
    row.reason = None;
    row.decided_at = None;
    row.created_at = Utc::now();
    if let Some(m) = message {
        row.message = m.to_string();
    }
    state.store.request_put(&row).await?;
    Ok(true)
}
