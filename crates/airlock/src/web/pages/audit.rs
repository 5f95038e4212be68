//! The audit page: the log, newest first, filtered by action and actor, with the
//! chain's state, a check on demand and the export.

use super::*;

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    #[serde(default)]
    action: String,
    #[serde(default)]
    actor: String,
    before: Option<i64>,
}

pub struct AuditRowView {
    pub seq: i64,
    pub at: Ts,
    pub actor: String,
    pub client: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub status: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: &'static str,
    rows: Vec<AuditRowView>,
    action: String,
    actor: String,
    filtered: bool,
    /// The `before` of the next (older) page, when there is one.
    older: Option<i64>,
    state: String,
    broken_at: String,
    reason: String,
    checked: Option<Ts>,
    events: i64,
    heads: i64,
    public_key: String,
}

const AUDIT_PAGE: i64 = 50;

pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/audit")).await?;
    let events = state
        .store
        .audit_list(&airlock_store::AuditFilter {
            before: q.before,
            action: Some(q.action.clone()).filter(|a| !a.is_empty()),
            actor: Some(q.actor.clone()).filter(|a| !a.is_empty()),
            limit: AUDIT_PAGE,
            newest_first: true,
            ..Default::default()
        })
        .await
        .map_err(ApiError::from)?;
    let older = events
        .last()
        .filter(|e| events.len() as i64 == AUDIT_PAGE && e.seq > 1)
        .map(|e| e.seq);
    let v = state.audit.verification();
    Ok(render(&AuditPage {
        nav: "audit",
        rows: events
            .iter()
            .map(|e| AuditRowView {
                seq: e.seq,
                at: view::ts(e.at),
                actor: e.actor.clone(),
                client: e.client.clone().unwrap_or_default(),
                action: e.action.clone(),
                target: e.target.clone().unwrap_or_default(),
                outcome: e.outcome.clone(),
                status: e.detail["status"]
                    .as_u64()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            })
            .collect(),
        filtered: !q.action.is_empty() || !q.actor.is_empty() || q.before.is_some(),
        action: q.action,
        actor: q.actor,
        older,
        state: v.state,
        broken_at: v.broken_at.map(|b| b.to_string()).unwrap_or_default(),
        reason: v.reason.unwrap_or_default(),
        checked: view::ts_opt(v.checked_at),
        events: v.events,
        heads: v.heads,
        public_key: state.audit.public_key().to_string(),
    }))
}
