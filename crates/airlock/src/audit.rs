//! The audit log: who did what, hash-chained and signed.
//!
//! Why it looks like this:
//! - Every state change through the HTTP API is recorded by a middleware
//!   ([`admin_layer`], [`agent_layer`]): actor (the admin session, an agent's key id,
//!   anonymous), client address, action (method and route), target (the path),
//!   outcome (HTTP status). Never a body: values, passwords and keys are not in the
//!   log by construction, not by filtering.
//! - Admin changes are recorded as an `attempt` before the handler runs and with their
//!   outcome after: when the attempt cannot be written, the change is refused (503
//!   `audit_unavailable`), so no admin change happens unrecorded. Agent calls get one
//!   event, with their outcome (the executions table records them as well).
//! - Each event's `hash` covers the previous event's hash and its own fields
//!   ([`AuditRow::expected_hash`]); every [`SIGN_EVERY`] the chain's head is signed
//!   with the instance's Ed25519 audit key (sealed in `meta` with the master key).
//!   [`verify`] checks a chain and its signed heads (the server every
//!   `AIRLOCK_AUDIT_VERIFY_SECS`, reported in `/health`; `airlock audit verify` offline
//!   on an export, with the public key the export carries).

use std::sync::Arc;
use std::time::Duration;

use airlock_store::{
    AuditFilter, AuditHeadRow, AuditRow, NewAuditEvent, Store, StoreError, Vault, AUDIT_GENESIS,
};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::error::ApiError;

const KEY_META: &str = "audit_key";
const KEY_AAD: &str = "meta:audit_key";
/// How often the chain's head is signed (when events were added since).
pub const SIGN_EVERY: Duration = Duration::from_secs(10);
/// Events read per page when verifying.
const PAGE: i64 = 1000;

/// What the last check of the chain found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Verification {
    /// `ok`, `broken`, or `unchecked` before the first check.
    pub state: String,
    /// Events checked.
    pub events: i64,
    /// Signed heads checked.
    pub heads: i64,
    /// The first event (or head) that does not check out.
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
}

impl Verification {
    fn unchecked() -> Verification {
        Verification {
            state: "unchecked".into(),
            events: 0,
            heads: 0,
            broken_at: None,
            reason: None,
            checked_at: None,
        }
    }
}

/// The audit service.
pub struct Audit {
    store: Arc<dyn Store>,
    key: Ed25519KeyPair,
    public_key: String,
    last: RwLock<Verification>,
    /// The syslog stream's queue, when one is configured.
    stream: Option<tokio::sync::mpsc::Sender<AuditRow>>,
    /// Events the stream could not take (its queue was full).
    dropped: std::sync::atomic::AtomicU64,
}

/// Events that may wait for an unreachable syslog collector.
const STREAM_QUEUE: usize = 1000;

impl Audit {
    /// Loads (or creates) the audit key, checks the chain once, and starts the
    /// signing and checking tasks.
    pub async fn start(
        store: Arc<dyn Store>,
        vault: &Vault,
        verify_every: Duration,
        syslog: Option<&str>,
    ) -> Result<Arc<Audit>, String> {
        let syslog = syslog.map(syslog_address).transpose()?;
        let pkcs8 = match store.meta_get(KEY_META).await.map_err(|e| e.to_string())? {
            Some(blob) => vault
                .open(KEY_AAD, &blob)
                .map_err(|e| format!("the audit key does not open: {e}"))?,
            None => {
                let rng = ring::rand::SystemRandom::new();
                let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| "cannot generate the audit key".to_string())?;
                let sealed = vault
                    .seal(KEY_AAD, doc.as_ref())
                    .map_err(|e| e.to_string())?;
                store
                    .meta_set(KEY_META, &sealed)
                    .await
                    .map_err(|e| e.to_string())?;
                doc.as_ref().to_vec()
            }
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| "the audit key is not an Ed25519 key".to_string())?;
        let public_key = hex::encode(key.public_key().as_ref());
        let (stream, rx) = match syslog {
            Some(_) => {
                let (tx, rx) = tokio::sync::mpsc::channel(STREAM_QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let audit = Arc::new(Audit {
            store,
            key,
            public_key,
            last: RwLock::new(Verification::unchecked()),
            stream,
            dropped: std::sync::atomic::AtomicU64::new(0),
        });
        if let (Some(addr), Some(rx)) = (syslog, rx) {
            tokio::spawn(stream_to_syslog(Arc::downgrade(&audit), addr, rx));
        }
        audit.check().await;
        if audit.last.read().state == "broken" {
            tracing::error!(verification = ?*audit.last.read(), "the audit log does not check out");
        }
        tokio::spawn(background(Arc::downgrade(&audit), verify_every));
        Ok(audit)
    }

    /// The hex Ed25519 public key heads are signed with.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    pub async fn record(&self, event: NewAuditEvent) -> Result<AuditRow, StoreError> {
        let row = self.store.audit_append(&event).await?;
        if let Some(tx) = &self.stream {
            if tx.try_send(row.clone()).is_err() {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(row)
    }

    /// Events the syslog stream dropped since the start.
    pub fn stream_dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Signs the chain's head when it moved since the last signed one.
    pub async fn sign_head(&self) -> Result<Option<AuditHeadRow>, StoreError> {
        let Some(last) = self.store.audit_last().await? else {
            return Ok(None);
        };
        let heads = self.store.audit_heads().await?;
        if heads.last().is_some_and(|h| h.seq >= last.seq) {
            return Ok(None);
        }
        let at = Utc::now();
        let sig = self
            .key
            .sign(AuditHeadRow::message(last.seq, &last.hash, at).as_bytes());
        let head = AuditHeadRow {
            seq: last.seq,
            hash: last.hash,
            at,
            signature: hex::encode(sig.as_ref()),
        };
        self.store.audit_head_insert(&head).await?;
        Ok(Some(head))
    }

    /// Checks the whole stored chain and its heads now; remembers and returns the
    /// result.
    pub async fn check(&self) -> Verification {
        let v = match self.read_all().await {
            Ok((events, heads)) => verify(&events, &heads, &self.public_key),
            Err(e) => Verification {
                state: "broken".into(),
                reason: Some(format!("the audit log cannot be read: {e}")),
                checked_at: Some(Utc::now()),
                ..Verification::unchecked()
            },
        };
        if v.state == "broken" && self.last.read().state != "broken" {
            tracing::error!(broken_at = ?v.broken_at, reason = ?v.reason, "the audit log does not check out");
        }
        *self.last.write() = v.clone();
        v
    }

    /// What the last check found.
    pub fn verification(&self) -> Verification {
        self.last.read().clone()
    }

    /// Every event, oldest first, and every signed head.
    pub async fn read_all(&self) -> Result<(Vec<AuditRow>, Vec<AuditHeadRow>), StoreError> {
        let mut events = Vec::new();
        loop {
            let page = self
                .store
                .audit_list(&AuditFilter {
                    after: events.last().map(|e: &AuditRow| e.seq),
                    limit: PAGE,
                    ..AuditFilter::default()
                })
                .await?;
            let done = (page.len() as i64) < PAGE;
            events.extend(page);
            if done {
                break;
            }
        }
        Ok((events, self.store.audit_heads().await?))
    }
}

async fn background(audit: std::sync::Weak<Audit>, verify_every: Duration) {
    let mut sign = tokio::time::interval(SIGN_EVERY);
    let mut check = tokio::time::interval(verify_every);
    sign.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = sign.tick() => {
                let Some(a) = audit.upgrade() else { return };
                if let Err(e) = a.sign_head().await {
                    tracing::warn!(error = %e, "cannot sign the audit log's head");
                }
            }
            _ = check.tick() => {
                let Some(a) = audit.upgrade() else { return };
                a.check().await;
            }
        }
    }
}

/// `tcp://host:port` → `host:port`.
fn syslog_address(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("tcp://")
        .ok_or_else(|| format!("AIRLOCK_AUDIT_SYSLOG must be tcp://host:port (got {url:?})"))?;
    let ok = rest
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok || rest.contains('/') {
        return Err(format!(
            "AIRLOCK_AUDIT_SYSLOG must be tcp://host:port (got {url:?})"
        ));
    }
    Ok(rest.to_string())
}

/// One event as an RFC 5424 message (facility 13, log audit; severity by outcome),
/// with the RFC 6587 octet-counting frame.
pub fn syslog_frame(e: &AuditRow) -> String {
    let severity = match e.outcome.as_str() {
        "failed" => 3,
        "refused" => 5,
        _ => 6,
    };
    let msg = format!(
        "<{}>1 {} - airlock {} audit [airlock@32473 seq=\"{}\" hash=\"{}\"] {}",
        13 * 8 + severity,
        e.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        std::process::id(),
        e.seq,
        e.hash,
        serde_json::to_string(e).unwrap_or_default()
    );
    format!("{} {msg}", msg.len())
}

/// Sends queued events to the collector; reconnects with backoff; reports drops as
/// audit events of their own once it delivers again.
async fn stream_to_syslog(
    audit: std::sync::Weak<Audit>,
    addr: String,
    mut rx: tokio::sync::mpsc::Receiver<AuditRow>,
) {
    use tokio::io::AsyncWriteExt;
    let mut conn: Option<tokio::net::TcpStream> = None;
    let mut backoff = Duration::from_millis(200);
    let mut reported = 0u64;
    let mut pending: Option<AuditRow> = None;
    loop {
        let row = match pending.take() {
            Some(r) => r,
            None => match rx.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        if conn.is_none() {
            match tokio::net::TcpStream::connect(&addr).await {
                Ok(c) => {
                    conn = Some(c);
                    backoff = Duration::from_millis(200);
                }
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "audit syslog unreachable; retrying");
                    pending = Some(row);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            }
        }
        let frame = syslog_frame(&row);
        let sent = match conn.as_mut() {
            Some(c) => c.write_all(frame.as_bytes()).await,
            None => continue,
        };
        if let Err(e) = sent {
            tracing::warn!(%addr, error = %e, "audit syslog connection lost; reconnecting");
            conn = None;
            pending = Some(row);
            continue;
        }
        let Some(a) = audit.upgrade() else { return };
        let dropped = a.stream_dropped();
        if dropped > reported {
            reported = dropped;
            let _ = a
                .record(NewAuditEvent {
                    at: Utc::now(),
                    actor: "system".into(),
                    role: "system".into(),
                    client: None,
                    action: "audit.stream.dropped".into(),
                    target: Some(format!("tcp://{addr}")),
                    outcome: "failed".into(),
                    detail: serde_json::json!({ "dropped_total": dropped }),
                })
                .await;
        }
    }
}

/// Checks a chain (oldest first, from its first event) and its signed heads against
/// the public key (hex). Pure: the server and `airlock audit verify` share it.
pub fn verify(events: &[AuditRow], heads: &[AuditHeadRow], public_key: &str) -> Verification {
    let broken = |at: i64, reason: String, n: usize| Verification {
        state: "broken".into(),
        events: n as i64,
        heads: 0,
        broken_at: Some(at),
        reason: Some(reason),
        checked_at: Some(Utc::now()),
    };
    let mut prev = AUDIT_GENESIS.to_string();
    for (i, e) in events.iter().enumerate() {
        let want_seq = i as i64 + 1;
        if e.seq != want_seq {
            return broken(
                want_seq,
                format!("event {want_seq} is missing (the next one is {})", e.seq),
                i,
            );
        }
        if e.prev_hash != prev {
            return broken(
                e.seq,
                format!("event {} does not follow the one before it", e.seq),
                i,
            );
        }
        if e.hash != e.expected_hash() {
            return broken(
                e.seq,
                format!("event {} was changed after it was written", e.seq),
                i,
            );
        }
        prev = e.hash.clone();
    }
    let Ok(pk) = hex::decode(public_key) else {
        return broken(0, "the audit public key is not hex".into(), events.len());
    };
    let pk = UnparsedPublicKey::new(&ED25519, pk);
    for h in heads {
        let msg = AuditHeadRow::message(h.seq, &h.hash, h.at);
        let sig_ok = hex::decode(&h.signature)
            .map(|s| pk.verify(msg.as_bytes(), &s).is_ok())
            .unwrap_or(false);
        if !sig_ok {
            return broken(
                h.seq,
                format!("the signed head at event {} has a bad signature", h.seq),
                events.len(),
            );
        }
        match events.get((h.seq - 1).max(0) as usize) {
            Some(e) if h.seq >= 1 && e.hash == h.hash => {}
            Some(_) => {
                return broken(
                    h.seq,
                    format!(
                        "event {} differs from what was signed at {}",
                        h.seq,
                        h.at.to_rfc3339()
                    ),
                    events.len(),
                )
            }
            None => {
                return broken(
                    h.seq,
                    format!(
                        "events up to {} were signed at {}, but the log ends at {}",
                        h.seq,
                        h.at.to_rfc3339(),
                        events.len()
                    ),
                    events.len(),
                )
            }
        }
    }
    Verification {
        state: "ok".into(),
        events: events.len() as i64,
        heads: heads.len() as i64,
        broken_at: None,
        reason: None,
        checked_at: Some(Utc::now()),
    }
}

/// One line of an audit export (JSON Lines): the key first, then every event,
/// then every signed head.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportLine {
    Key { public_key: String },
    Event(AuditRow),
    Head(AuditHeadRow),
}

/// Checks an export file's text (JSON Lines, as `GET /api/admin/audit/export`
/// writes it).
pub fn verify_export(text: &str) -> Result<Verification, String> {
    let (mut key, mut events, mut heads) = (None, Vec::new(), Vec::new());
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<ExportLine>(line)
            .map_err(|e| format!("line {}: not an audit export line: {e}", n + 1))?
        {
            ExportLine::Key { public_key } => key = Some(public_key),
            ExportLine::Event(e) => events.push(e),
            ExportLine::Head(h) => heads.push(h),
        }
    }
    let key = key.ok_or("the export has no key line")?;
    Ok(verify(&events, &heads, &key))
}

// ----- the middleware -----

fn client(req: &Request) -> Option<String> {
    req.extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

fn action(req: &Request) -> String {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
    format!("{} {route}", req.method())
}

/// The request's path as the client sent it (a nested router sees it without its
/// prefix).
fn path(req: &Request) -> String {
    req.extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_string(), |u| u.path().to_string())
}

fn changes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn outcome(status: axum::http::StatusCode) -> &'static str {
    if status.is_success() || status.is_redirection() {
        "ok"
    } else if status.is_client_error() {
        "refused"
    } else {
        "failed"
    }
}

/// On the admin API: every change is recorded before (fail closed) and after.
pub async fn admin_layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !changes(req.method()) {
        return next.run(req).await;
    }
    let signed_in = crate::api::session::session_valid(&state, req.headers())
        .await
        .unwrap_or(false);
    let token = match (signed_in, crate::tokens::bearer(req.headers())) {
        (false, Some(raw)) => crate::tokens::authenticate(&*state.store, raw)
            .await
            .ok()
            .flatten(),
        _ => None,
    };
    let (actor, role) = match (signed_in, token) {
        (true, _) => ("admin".to_string(), "owner".to_string()),
        (false, Some(t)) => (format!("token:{}", t.id), t.role),
        (false, None) => ("anonymous".to_string(), "none".to_string()),
    };
    let event = NewAuditEvent {
        at: Utc::now(),
        actor,
        role,
        client: client(&req),
        action: action(&req),
        target: Some(path(&req)),
        outcome: "attempt".into(),
        detail: serde_json::json!({}),
    };
    let attempt = match state.audit.record(event.clone()).await {
        Ok(row) => row.seq,
        Err(e) => {
            tracing::error!(error = %e, action = %event.action, "cannot write the audit log: change refused");
            return ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log cannot be written, so no change is made; see the server log",
            )
            .into_response();
        }
    };
    let resp = next.run(req).await;
    let status = resp.status();
    let done = NewAuditEvent {
        at: Utc::now(),
        outcome: outcome(status).into(),
        detail: serde_json::json!({ "status": status.as_u16(), "attempt": attempt }),
        ..event
    };
    if let Err(e) = state.audit.record(done).await {
        tracing::error!(error = %e, "cannot write the outcome of an audited change");
    }
    resp
}

/// On the agent API: every change is recorded with its outcome.
pub async fn agent_layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !changes(req.method()) {
        return next.run(req).await;
    }
    // The key id only: a pasted full key's secret half never reaches the log.
    let key_id = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| v.trim().split(':').next().unwrap_or_default().to_string())
        .filter(|k| k.starts_with("ark_") && k.len() <= 64);
    let (actor, role) = match &key_id {
        Some(k) => (format!("agent:{k}"), "agent"),
        None => ("anonymous".to_string(), "none"),
    };
    let (client, action, target) = (client(&req), action(&req), path(&req));
    let resp = next.run(req).await;
    let status = resp.status();
    let event = NewAuditEvent {
        at: Utc::now(),
        actor,
        role: role.into(),
        client,
        action,
        target: Some(target),
        outcome: outcome(status).into(),
        detail: serde_json::json!({ "status": status.as_u16() }),
    };
    if let Err(e) = state.audit.record(event).await {
        tracing::error!(error = %e, "cannot write an agent call to the audit log");
    }
    resp
}
