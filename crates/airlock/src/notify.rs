//! Notifications: webhooks and an SMTP mailbox the operator configures in
//! Settings, told when
//! something waits for a person (an approval, an agent's request) and when the
//! sandbox is unavailable.
//!
//! The configuration (URLs, formats, events, signing secrets, the SMTP server
//! and its password) is one JSON document in the store's `meta` table, sealed with the vault (the secrets are
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
    /// A locked profile expires within a day.
    ProfileExpiring,
    /// A script sent a sealed credential's placeholder to a host it is not bound to.
    SealedViolation,
    /// Sent by "Send a test" in Settings, to every webhook.
    Test,
}

impl Event {
    pub const SUBSCRIBABLE: [Event; 5] = [
        Event::ApprovalNeeded,
        Event::AgentRequest,
        Event::SandboxUnavailable,
        Event::ProfileExpiring,
        Event::SealedViolation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::ApprovalNeeded => "approval_needed",
            Event::AgentRequest => "agent_request",
            Event::SandboxUnavailable => "sandbox_unavailable",
            Event::ProfileExpiring => "profile_expiring",
            Event::SealedViolation => "sealed_violation",
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

/// Everything configured: one sealed document.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Settings {
    #[serde(default)]
    webhooks: Vec<Webhook>,
    #[serde(default)]
    email: Option<Email>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// TLS from the first byte (usually port 465).
    Tls,
    /// Plain, then upgraded with STARTTLS, refused if the server cannot (usually 587).
    Starttls,
    /// No encryption: only for a relay on this machine (loopback), and never with a password.
    None,
}

#[derive(Clone, Serialize, Deserialize)]
struct Email {
    host: String,
    port: u16,
    tls: SmtpTls,
    username: Option<String>,
    password: Option<String>,
    from: String,
    to: Vec<String>,
    events: Vec<Event>,
}

/// The SMTP settings as the operator sees them (never the password).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EmailView {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub has_password: bool,
    pub from: String,
    pub to: Vec<String>,
    pub events: Vec<Event>,
}

/// SMTP settings to save (replacing any earlier ones).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEmail {
    #[schema(max_length = 253)]
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    /// Never shown again.
    pub password: Option<String>,
    /// The sender address (`Airlock <airlock@example.com>` or a bare address).
    pub from: String,
    /// One to 20 recipients.
    pub to: Vec<String>,
    pub events: Vec<Event>,
}

/// Who a delivery went to: a webhook id, or `email`.
const EMAIL_TARGET: &str = "email";

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
    /// The webhook's id, or `email`.
    pub target: String,
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

    async fn load(&self) -> Result<Settings, NotifyError> {
        let Some(blob) = self.store.meta_get(META_KEY).await? else {
            return Ok(Settings::default());
        };
        let plain = self.vault.open(META_AAD, &blob)?;
        serde_json::from_slice(&plain)
            .map_err(|e| NotifyError::Store(StoreError::Config(format!("notifications: {e}"))))
    }

    async fn save(&self, settings: &Settings) -> Result<(), NotifyError> {
        let plain = serde_json::to_vec(settings)
            .map_err(|e| NotifyError::Store(StoreError::Config(e.to_string())))?;
        let blob = self.vault.seal(META_AAD, &plain)?;
        self.store.meta_set(META_KEY, &blob).await?;
        Ok(())
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookView>, NotifyError> {
        Ok(self.load().await?.webhooks.into_iter().map(view).collect())
    }

    pub async fn email(&self) -> Result<Option<EmailView>, NotifyError> {
        Ok(self.load().await?.email.as_ref().map(email_view))
    }

    /// Saves the SMTP settings (a `password` of `None` keeps the stored one when
    /// the username is unchanged).
    pub async fn set_email(&self, new: NewEmail) -> Result<EmailView, NotifyError> {
        let host = new.host.trim().to_string();
        if host.is_empty()
            || host.len() > 253
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        {
            return Err(NotifyError::Invalid(
                "host must be a host name or IP address".into(),
            ));
        }
        if new.port == 0 {
            return Err(NotifyError::Invalid("port must be 1 to 65535".into()));
        }
        let loopback = host == "localhost"
            || host
                .trim_matches(|c| c == '[' || c == ']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if new.tls == SmtpTls::None && !loopback {
            return Err(NotifyError::Invalid(
                "tls none is only for a relay on this machine (localhost); use starttls or tls"
                    .into(),
            ));
        }
        let from: lettre::message::Mailbox = new.from.trim().parse().map_err(|_| {
            NotifyError::Invalid(
                "from must be an e-mail address (Name <addr@host> or addr@host)".into(),
            )
        })?;
        if new.to.is_empty() || new.to.len() > 20 {
            return Err(NotifyError::Invalid(
                "to must list 1 to 20 addresses".into(),
            ));
        }
        let mut to = Vec::with_capacity(new.to.len());
        for t in &new.to {
            let m: lettre::message::Mailbox = t
                .trim()
                .parse()
                .map_err(|_| NotifyError::Invalid(format!("to: {t:?} is not an e-mail address")))?;
            to.push(m.to_string());
        }
        let events = check_events(new.events)?;
        let username = new
            .username
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty());
        let mut settings = self.load().await?;
        let kept = settings
            .email
            .as_ref()
            .filter(|e| e.username == username)
            .and_then(|e| e.password.clone());
        let password = new.password.filter(|p| !p.is_empty()).or(kept);
        if password.is_some() && username.is_none() {
            return Err(NotifyError::Invalid("a password needs a username".into()));
        }
        if password.is_some() && new.tls == SmtpTls::None {
            return Err(NotifyError::Invalid(
                "a password is never sent without TLS; use starttls or tls".into(),
            ));
        }
        let email = Email {
            host,
            port: new.port,
            tls: new.tls,
            username,
            password,
            from: from.to_string(),
            to,
            events,
        };
        let view = email_view(&email);
        settings.email = Some(email);
        self.save(&settings).await?;
        Ok(view)
    }

    pub async fn clear_email(&self) -> Result<(), NotifyError> {
        let mut settings = self.load().await?;
        if settings.email.take().is_none() {
            return Err(NotifyError::NotFound(EMAIL_TARGET.into()));
        }
        self.save(&settings).await
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
        let events = check_events(new.events)?;
        let mut settings = self.load().await?;
        if settings.webhooks.len() >= MAX_WEBHOOKS {
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
        settings.webhooks.push(hook.clone());
        self.save(&settings).await?;
        Ok(view(hook))
    }

    pub async fn delete(&self, id: &str) -> Result<(), NotifyError> {
        let mut settings = self.load().await?;
        let before = settings.webhooks.len();
        settings.webhooks.retain(|h| h.id != id);
        if settings.webhooks.len() == before {
            return Err(NotifyError::NotFound(id.to_string()));
        }
        self.save(&settings).await
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
            .find(|x| x.notice_id == d.notice_id && x.target == d.target)
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

    /// Delivers one notice to one target, retrying with backoff.
    async fn deliver(self: Arc<Self>, target: Target, n: Arc<Notice>) {
        let mut d = Delivery {
            notice_id: n.id.clone(),
            target: match &target {
                Target::Webhook(h) => h.id.clone(),
                Target::Email(_) => EMAIL_TARGET.into(),
            },
            event: n.event,
            state: "pending",
            attempts: 0,
            last_error: None,
            created_at: n.at,
            finished_at: None,
        };
        self.record(&d);
        let mut wait = self.retry_base;
        let event = n.event.as_str();
        loop {
            d.attempts += 1;
            let outcome = match &target {
                Target::Webhook(hook) => {
                    let body = self.body(hook, &n).to_string();
                    let ts = Utc::now().timestamp();
                    let signature = crate::ids::hmac_hex(
                        hook.secret.as_bytes(),
                        format!("{ts}.{body}").as_bytes(),
                    );
                    let (url, id) = (hook.url.clone(), n.id.clone());
                    tokio::task::spawn_blocking(move || {
                        post(&url, &body, event, &id, ts, &signature)
                    })
                    .await
                }
                Target::Email(email) => {
                    let (email, message) = (email.clone(), self.mail_text(&n));
                    tokio::task::spawn_blocking(move || send_mail(&email, &message)).await
                }
            }
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
                        tracing::warn!(target = %d.target, event, attempts = d.attempts,
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

enum Target {
    Webhook(Webhook),
    Email(Email),
}

/// The subject and text of a notice's e-mail.
struct MailText {
    subject: String,
    body: String,
}

impl Notifier {
    fn mail_text(&self, n: &Notice) -> MailText {
        let link = format!("{}{}", self.base, n.link);
        let mut subject: String = format!("Airlock: {}", n.summary)
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        if subject.is_empty() {
            subject = "Airlock".into();
        }
        let details = serde_json::to_string_pretty(&n.data).unwrap_or_default();
        MailText {
            subject,
            body: format!(
                "{}\n\nOpen in Airlock: {link}\n\nEvent: {}\nNotice: {}\nAt: {}\n\n{details}\n",
                n.summary,
                n.event.as_str(),
                n.id,
                n.at.to_rfc3339()
            ),
        }
    }
}

/// One message over SMTP; the error names what went wrong, never the password.
fn send_mail(email: &Email, text: &MailText) -> Result<(), String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{Message, SmtpTransport, Transport};
    let from: lettre::message::Mailbox = email
        .from
        .parse()
        .map_err(|_| "the from address is not valid".to_string())?;
    let mut builder = Message::builder().from(from).subject(text.subject.clone());
    for t in &email.to {
        let to: lettre::message::Mailbox =
            t.parse().map_err(|_| format!("{t:?} is not an address"))?;
        builder = builder.to(to);
    }
    let message = builder
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(text.body.clone())
        .map_err(|e| format!("cannot build the message: {e}"))?;
    let transport = match email.tls {
        SmtpTls::Tls => SmtpTransport::relay(&email.host),
        SmtpTls::Starttls => SmtpTransport::starttls_relay(&email.host),
        SmtpTls::None => Ok(SmtpTransport::builder_dangerous(&email.host)),
    }
    .map_err(|e| format!("smtp: {e}"))?
    .port(email.port)
    .timeout(Some(TIMEOUT));
    let transport = match (&email.username, &email.password) {
        (Some(u), Some(p)) => transport.credentials(Credentials::new(u.clone(), p.clone())),
        _ => transport,
    };
    transport
        .build()
        .send(&message)
        .map(|_| ())
        .map_err(|e| format!("smtp: {e}"))
}

fn check_events(mut events: Vec<Event>) -> Result<Vec<Event>, NotifyError> {
    events.sort_by_key(|e| e.as_str());
    events.dedup();
    if events.is_empty() || events.contains(&Event::Test) {
        return Err(NotifyError::Invalid(
            "events must name at least one of approval_needed, agent_request, sandbox_unavailable, profile_expiring, sealed_violation"
                .into(),
        ));
    }
    Ok(events)
}

fn email_view(e: &Email) -> EmailView {
    EmailView {
        host: e.host.clone(),
        port: e.port,
        tls: e.tls,
        username: e.username.clone(),
        has_password: e.password.is_some(),
        from: e.from.clone(),
        to: e.to.clone(),
        events: e.events.clone(),
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
        let settings = match n.load().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the notification settings");
                continue;
            }
        };
        let notice = Arc::new(notice);
        let wants =
            |events: &[Event]| notice.event == Event::Test || events.contains(&notice.event);
        let mut targets: Vec<Target> = settings
            .webhooks
            .into_iter()
            .filter(|h| wants(&h.events))
            .map(Target::Webhook)
            .collect();
        if let Some(e) = settings.email.filter(|e| wants(&e.events)) {
            targets.push(Target::Email(e));
        }
        for target in targets {
            tokio::spawn(n.clone().deliver(target, notice.clone()));
        }
    }
}

/// Where [`watch_expiry`] keeps what it has told: profile id → the expiry it
/// warned about (plain JSON in `meta`: ids and times are no secret).
const EXPIRY_META_KEY: &str = "expiry_warned";
/// How far ahead an expiry is announced.
const EXPIRY_AHEAD: chrono::Duration = chrono::Duration::hours(24);

/// Every `every`, tells the operator once about each locked, unrevoked profile that
/// expires within a day (again when its expiry moves). Survives restarts: what was
/// told is kept in the store.
pub fn watch_expiry(store: Arc<dyn Store>, notifier: std::sync::Weak<Notifier>, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(n) = notifier.upgrade() else { return };
            if let Err(e) = check_expiry(&*store, &n, Utc::now()).await {
                tracing::warn!(error = %e, "cannot check for expiring profiles");
            }
        }
    });
}

async fn check_expiry(
    store: &dyn Store,
    n: &Notifier,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut warned: std::collections::BTreeMap<String, DateTime<Utc>> = store
        .meta_get(EXPIRY_META_KEY)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let before = warned.clone();
    let soon: Vec<_> = store
        .profiles_list()
        .await?
        .into_iter()
        .filter_map(|p| {
            let at = p.expires_at?;
            (p.locked && !p.revoked && at > now && at <= now + EXPIRY_AHEAD).then_some((p, at))
        })
        .collect();
    // Forget profiles no longer about to expire (moved, revoked, gone, expired).
    warned.retain(|id, at| soon.iter().any(|(p, a)| &p.id == id && a == at));
    for (p, at) in soon {
        if warned.get(&p.id) == Some(&at) {
            continue;
        }
        let name = if p.description.is_empty() {
            p.id.clone()
        } else {
            format!("\"{}\"", p.description)
        };
        n.notify(
            Event::ProfileExpiring,
            format!(
                "the profile {name} expires at {}; move its expiry to keep its key working",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            format!("/ui/profiles/{}", p.id),
            json!({
                "profile_id": p.id,
                "profile_description": p.description,
                "expires_at": at,
            }),
        );
        warned.insert(p.id, at);
    }
    if warned != before {
        let bytes = serde_json::to_vec(&warned).map_err(|e| StoreError::Config(e.to_string()))?;
        store.meta_set(EXPIRY_META_KEY, &bytes).await?;
    }
    Ok(())
}
