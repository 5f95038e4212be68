//! The Requests page: what agents asked for (profiles, credential slots,
//! packages), with accept and reject; decided ones below.

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;

use super::super::view::{self, Ts};
use super::super::{render, require_session, PageResult, PREFIX};
use crate::app::AppState;
use crate::error::ApiError;
use crate::inbox::{self, InboxItem};
use airlock_store::{RequestKind, RequestStatus};

pub struct Row {
    pub kind: &'static str,
    pub subject: String,
    pub summary: String,
    pub link: String,
    pub message: String,
    pub status: &'static str,
    pub reason: String,
    pub created: Ts,
    /// What accepting does, on the button.
    pub accept_label: &'static str,
}

pub(super) fn row(i: &InboxItem) -> Row {
    Row {
        kind: inbox::kind_name(i.kind),
        subject: i.subject.clone(),
        summary: i.summary.clone(),
        link: i.link.clone(),
        message: i.message.clone(),
        status: inbox::status_name(i.status),
        reason: i.reason.clone().unwrap_or_default(),
        created: view::ts(i.created_at),
        accept_label: match i.kind {
            RequestKind::Packages => "Accept and install",
            RequestKind::Profile | RequestKind::Slot => "Accept",
        },
    }
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    nav: &'static str,
    pending: Vec<Row>,
    decided: Vec<Row>,
}

pub async fn requests(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/requests")).await?;
    let all = inbox::list(&state, None, None)
        .await
        .map_err(ApiError::from)?;
    let (pending, decided): (Vec<&InboxItem>, Vec<&InboxItem>) =
        all.iter().partition(|i| i.status == RequestStatus::Pending);
    Ok(render(&RequestsPage {
        nav: "requests",
        pending: pending.into_iter().map(row).collect(),
        decided: decided.into_iter().take(50).map(row).collect(),
    }))
}
