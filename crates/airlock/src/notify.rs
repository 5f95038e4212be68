//! Notifications: webhooks the operator configures in Settings, told when
//! something waits for a person (an approval, an agent's request) and when the
//! sandbox is unavailable.
//!
//! The configuration (URLs, formats, events, signing secrets) is one JSON
//! document in the store's `meta` table, sealed with the vault (the secrets are
//! never shown again). A notice is queued without blocking the request that
//! caused it (a bounded queue; drops are counted); each webhook gets its own
//! delivery, retried with exponential backoff up to [`MAX_ATTEMPTS`] times. The
//! latest deliveries are kept in memory for the Settings page. A body never holds
//! a secret or any script output: ids, names, hashes and a link.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use airlock_store::{Store, StoreError, Vault};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const META_KEY: &str = "notifications";
const META_AAD: &str = "meta:notifications";
/// Deliveries kept for the Settings page.
const KEPT: usize = 100;
/// Notices waiting to be delivered; more are dropped (and counted).
const QUEUE: usize = 1000;
pub const MAX_ATTEMPTS: u32 = 5;
pub const MAX_WEBHOOKS: usize = 20;
const TIMEOUT: Duration = Duration::from_secs(10);

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An execution waits for an approver.
    ApprovalNeeded,
    /// An agent created a profile or asked for packages.
    AgentRequest,
    /// The sandbox did not start: executions are refused.
    SandboxUnavailable,
    /// Sent by "Send a test" in Settings, to every webhook.
    Test,
}

impl Event {
    pub const SUBSCRIBABLE: [Event; 3] = [
        Event::ApprovalNeeded,
        Event::AgentRequest,
        Event::SandboxUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::ApprovalNeeded => "approval_needed",
            Event::AgentRequest => "agent_request",
            Event::SandboxUnavailable => "sandbox_unavailable",
            Event::Test => "test",
        }
    }
}

/// How a webhook's body is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `{"event", "id", "at", "summary", "link", "data"}`.
    Json,
    /// A Slack incoming-webhook message: `{"text": "… <link|Open in Airlock>"}`.
    Slack,
}

#[derive(Clone, Serialize, Deserialize)]
struct Webhook {
    id: String,
    url: String,
    format: Format,
    events: Vec<Event>,
    secret: String,
    created_at: DateTime<Utc>,
}

/// A webhook as the operator sees it (never its secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    pub format: Format,
    pub events: Vec<Event>,
    pub created_at: DateTime<Utc>,
}

/// A new webhook.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `http://` or `https://` URL the notices are POSTed to.
    #[schema(max_length = 2048)]
    pub url: String,
    pub format: Format,
    /// What it is told about (at least one).
    pub events: Vec<Event>,
    /// Keys the `X-Airlock-Signature` HMAC; 16 to 256 characters; never shown again.
    #[schema(min_length = 16, max_length = 256)]
    pub secret: String,
}

/// One delivery of one notice to one webhook.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub notice_id: String,
    pub webhook_id: String,
    pub event: Event,
    /// `pending` (retrying), `delivered` or `failed` (gave up).
    pub state: &'static str,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Invalid(String),
    #[error("no webhook {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Notice {
    id: String,
    event: Event,
    summary: String,
    /// Path under the instance's base URL (`/ui/approvals/exec_…`).
    link: String,
    data: Value,
    at: DateTime<Utc>,
}

pub struct Notifier {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    base: String,
    tx: mpsc::Sender<Notice>,
    deliveries: Mutex<VecDeque<Delivery>>,
    dropped: std::sync::atomic::AtomicU64,
    /// The first retry waits this long, each next one twice as long.
    retry_base: Duration,
}

impl Notifier {
    /// Starts the delivery worker. `base` is the instance URL links start with.
    pub fn start(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        base: String,
        retry_base: Duration,
    ) -> Arc<Notifier> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let n = Arc::new(Notifier {
            store,
            vault,
            base,
            tx,
            deliveries: Mutex::new(VecDeque::new()),
            dropped: Default::default(),
            retry_base,
        });
        tokio::spawn(worker(Arc::downgrade(&n), rx));
        n
    }

    /// Queues a notice; never waits (a full queue drops it, counted).
    pub fn notify(&self, event: Event, summary: String, link: String, data: Value) {
        let notice = Notice {
            id: format!("ntf_{}", crate::ids::lower_alnum(20)),
            event,
            summary,
            link,
            data,
            at: Utc::now(),
        };
        if self.tx.try_send(notice).is_err() {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                event = event.as_str(),
                "notification queue full: notice dropped"
            );
        }
    }

    async fn load(&self) -> Result<Vec<Webhook>, NotifyError> {
        let Some(blob) = self.store.meta_get(META_KEY).await? else {
            return Ok(Vec::new());
        };
        let plain = self.vault.open(META_AAD, &blob)?;
        serde_json::from_slice(&plain)
            .map_err(|e| NotifyError::Store(StoreError::Config(format!("notifications: {e}"))))
    }

    async fn save(&self, hooks: &[Webhook]) -> Result<(), NotifyError> {
        let plain = serde_json::to_vec(hooks)
            .map_err(|e| NotifyError::Store(StoreError::Config(e.to_string())))?;
        let blob = self.vault.seal(META_AAD, &plain)?;
        self.store.meta_set(META_KEY, &blob).await?;
        Ok(())
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookView>, NotifyError> {
        Ok(self.load().await?.into_iter().map(view).collect())
    }

    pub async fn add(&self, new: NewWebhook) -> Result<WebhookView, NotifyError> {
        let url = new.url.trim().to_string();
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://"))
            || url.len() > 2048
            || url.chars().any(char::is_whitespace)
        {
            return Err(NotifyError::Invalid(
                "url must be an http:// or https:// URL of at most 2048 characters".into(),
            ));
        }
        let secret_chars = new.secret.chars().count();
        if !(16..=256).contains(&secret_chars) {
            return Err(NotifyError::Invalid(
                "secret must be 16 to 256 characters (it keys the X-Airlock-Signature HMAC)".into(),
            ));
        }
        let mut events = new.events;
        events.dedup();
        if events.is_empty() || events.contains(&Event::Test) {
            return Err(NotifyError::Invalid(
                "events must name at least one of approval_needed, agent_request, sandbox_unavailable"
                    .into(),
            ));
        }
        let mut hooks = self.load().await?;
        if hooks.len() >= MAX_WEBHOOKS {
            return Err(NotifyError::Invalid(format!(
                "at most {MAX_WEBHOOKS} webhooks; delete one first"
            )));
        }
        let hook = Webhook {
            id: format!("whk_{}", crate::ids::lower_alnum(16)),
            url,
            format: new.format,
            events,
            secret: new.secret,
            created_at: Utc::now(),
        };
        hooks.push(hook.clone());
        self.save(&hooks).await?;
        Ok(view(hook))
    }

    pub async fn delete(&self, id: &str) -> Result<(), NotifyError> {
        let mut hooks = self.load().await?;
        let before = hooks.len();
        hooks.retain(|h| h.id != id);
        if hooks.len() == before {
            return Err(NotifyError::NotFound(id.to_string()));
        }
        self.save(&hooks).await
    }

    /// The latest deliveries, newest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().iter().rev().cloned().collect()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn record(&self, d: &Delivery) {
        let mut all = self.deliveries.lock();
        if let Some(slot) = all
            .iter_mut()
            .find(|x| x.notice_id == d.notice_id && x.webhook_id == d.webhook_id)
        {
            *slot = d.clone();
            return;
        }
        if all.len() >= KEPT {
            all.pop_front();
        }
        all.push_back(d.clone());
    }

    fn body(&self, hook: &Webhook, n: &Notice) -> Value {
        let link = format!("{}{}", self.base, n.link);
        match hook.format {
            Format::Json => json!({
                "event": n.event.as_str(),
                "id": n.id,
                "at": n.at,
                "summary": n.summary,
                "link": link,
                "data": n.data,
            }),
            // Slack's control characters escaped: an agent-chosen description
            // cannot add links or mentions to the message.
            Format::Slack => json!({
                "text": format!("Airlock: {} <{link}|Open in Airlock>", slack_escape(&n.summary)),
            }),
        }
    }

    /// Delivers one notice to one webhook, retrying with backoff.
    async fn deliver(self: Arc<Self>, hook: Webhook, n: Arc<Notice>) {
        let body = self.body(&hook, &n).to_string();
        let mut d = Delivery {
            notice_id: n.id.clone(),
            webhook_id: hook.id.clone(),
            event: n.event,
            state: "pending",
            attempts: 0,
            last_error: None,
            created_at: n.at,
            finished_at: None,
        };
        self.record(&d);
        let mut wait = self.retry_base;
        loop {
            d.attempts += 1;
            let ts = Utc::now().timestamp();
            let signature =
                crate::ids::hmac_hex(hook.secret.as_bytes(), format!("{ts}.{body}").as_bytes());
            let (url, payload, event, id) = (
                hook.url.clone(),
                body.clone(),
                n.event.as_str(),
                n.id.clone(),
            );
            let outcome = tokio::task::spawn_blocking(move || {
                post(&url, &payload, event, &id, ts, &signature)
            })
            .await
            .unwrap_or_else(|_| Err("the delivery task failed".into()));
            match outcome {
                Ok(()) => {
                    d.state = "delivered";
                    d.last_error = None;
                    d.finished_at = Some(Utc::now());
                    self.record(&d);
                    return;
                }
                Err(e) => {
                    d.last_error = Some(e);
                    if d.attempts >= MAX_ATTEMPTS {
                        d.state = "failed";
                        d.finished_at = Some(Utc::now());
                        self.record(&d);
                        tracing::warn!(webhook = %hook.id, event, attempts = d.attempts,
                            error = ?d.last_error, "notification not delivered; giving up");
                        return;
                    }
                    self.record(&d);
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                }
            }
        }
    }
}

fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn view(h: Webhook) -> WebhookView {
    WebhookView {
        id: h.id,
        url: h.url,
        format: h.format,
        events: h.events,
        created_at: h.created_at,
    }
}

/// One POST; a 2xx answer is a delivery. The error names what went wrong, never
/// the body.
fn post(
    url: &str,
    body: &str,
    event: &str,
    id: &str,
    ts: i64,
    signature: &str,
) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let resp = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("airlock/", env!("CARGO_PKG_VERSION")))
        .header("X-Airlock-Event", event)
        .header("X-Airlock-Delivery", id)
        .header("X-Airlock-Timestamp", &ts.to_string())
        .header("X-Airlock-Signature", &format!("sha256={signature}"))
        .send(body)
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("answered HTTP {status}"))
    }
}

async fn worker(n: std::sync::Weak<Notifier>, mut rx: mpsc::Receiver<Notice>) {
    while let Some(notice) = rx.recv().await {
        let Some(n) = n.upgrade() else { return };
        let hooks = match n.load().await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notification settings");
                continue;
            }
        };
        let notice = Arc::new(notice);
        for hook in hooks
            .into_iter()
            .filter(|h| notice.event == Event::Test || h.events.contains(&notice.event))
        {
            tokio::spawn(n.clone().deliver(hook, notice.clone()));
        }
    }
}
