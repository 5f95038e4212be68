//! Egress events into the store: the one place an [`airlock_egress::EgressEvent`]
//! becomes a stored [`EgressRow`], its text fields (which come from the sandbox)
//! redacted and its method reduced to a token. The runner and the package installer
//! both write their sessions' logs through [`spawn_writer`].

use std::sync::Arc;

use airlock_egress::{EgressEvent, Events};
use airlock_redact::Redactor;
use airlock_store::{EgressRow, Store};

/// The stored form of one egress attempt of `owner` (an execution or install id).
pub fn row(owner: &str, e: EgressEvent) -> EgressRow {
    EgressRow {
        execution_id: owner.to_string(),
        at: e.at,
        host: e.host,
        port: e.port,
        method: e.method,
        path: e.path,
        bytes_up: e.bytes_up as i64,
        bytes_down: e.bytes_down as i64,
        duration_ms: Some(i64::try_from(e.duration_ms).unwrap_or(i64::MAX)),
        allowed: e.allowed,
        reason: e.reason,
        violation: e.violation,
        substituted: e.substituted,
        status: e.status,
        body_sha256: e.body_sha256,
    }
}

/// Redacts every field the script chose (method, host, path, reason) and records a
/// non-standard method only as a placeholder.
pub fn redacted(mut row: EgressRow, redactor: &Redactor) -> EgressRow {
    row.method = airlock_egress::logged_method(&redactor.redact_str(&row.method).0);
    row.host = redactor.redact_str(&row.host).0;
    row.path = row.path.map(|p| redactor.redact_str(&p).0);
    row.reason = redactor.redact_str(&row.reason).0;
    row
}

/// Stores each event of a session as it ends; the task ends with the session.
/// `redactor` holds the values that may appear (none for the package installer,
/// whose method is still reduced to a token). With `answers`, each answer the
/// session captured is stored too, redacted with `redactor` and sealed. `metrics`
/// counts each attempt.
pub fn spawn_writer(
    store: Arc<dyn Store>,
    owner: String,
    mut events: Events,
    redactor: Option<Arc<Redactor>>,
    answers: Option<crate::catalog::Catalog>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Sealed as they come, written in one transaction when the session ends (the
        // execution's final state waits for this writer).
        let mut kept = Vec::new();
        while let Some(mut event) = events.recv().await {
            let captured = event.answer.take();
            if let (Some(a), Some(catalog), Some(r)) = (captured, &answers, &redactor) {
                let stored = crate::answers::StoredAnswer::new(
                    a,
                    (event.path.clone(), event.body_sha256.clone()),
                    r,
                );
                let seq = i64::try_from(kept.len()).unwrap_or(i64::MAX);
                match catalog.seal_answer(&owner, seq, &stored) {
                    Ok(row) => kept.push(row),
                    Err(e) => {
                        tracing::error!(owner = %owner, error = %e, "cannot seal a recorded answer")
                    }
                }
            }
            let mut row = row(&owner, event);
            match &redactor {
                Some(r) => row = redacted(row, r),
                None => row.method = airlock_egress::logged_method(&row.method),
            }
            if let Some(m) = &metrics {
                m.egress_attempt(row.allowed);
            }
            if let Err(e) = store.egress_insert(&row).await {
                tracing::error!(owner = %row.execution_id, error = %e, "cannot store egress log row");
            }
        }
        if !kept.is_empty() {
            if let Err(e) = store.answers_insert(&kept).await {
                tracing::error!(owner = %owner, error = %e, "cannot store the recorded answers");
            }
        }
    })
}
