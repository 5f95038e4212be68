//! The settings and packages pages.

use super::*;

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
    webhooks: Vec<WebhookRowView>,
    deliveries: Vec<DeliveryRowView>,
    email: Option<EmailRowView>,
}

pub struct EmailRowView {
    pub server: String,
    pub tls: &'static str,
    pub username: String,
    pub from: String,
    pub to: String,
    pub events: String,
}

pub struct WebhookRowView {
    pub id: String,
    pub url: String,
    pub format: &'static str,
    pub events: String,
}

pub struct DeliveryRowView {
    pub event: &'static str,
    /// A webhook id, or `email`.
    pub target: String,
    pub state: &'static str,
    pub attempts: u32,
    pub error: String,
    pub at: Ts,
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
    let webhooks = state
        .notifier
        .webhooks()
        .await
        .map_err(crate::error::ApiError::from)?
        .into_iter()
        .map(|w| WebhookRowView {
            id: w.id,
            url: w.url,
            format: match w.format {
                crate::notify::Format::Json => "JSON",
                crate::notify::Format::Slack => "Slack",
            },
            events: w
                .events
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let deliveries = state
        .notifier
        .deliveries()
        .into_iter()
        .take(20)
        .map(|d| DeliveryRowView {
            event: d.event.as_str(),
            target: d.target,
            state: d.state,
            attempts: d.attempts,
            error: d.last_error.unwrap_or_default(),
            at: view::ts(d.created_at),
        })
        .collect();
    let email = state
        .notifier
        .email()
        .await
        .map_err(crate::error::ApiError::from)?
        .map(|e| EmailRowView {
            server: format!("{}:{}", e.host, e.port),
            tls: match e.tls {
                crate::notify::SmtpTls::Tls => "TLS",
                crate::notify::SmtpTls::Starttls => "STARTTLS",
                crate::notify::SmtpTls::None => "none (loopback)",
            },
            username: e.username.unwrap_or_default(),
            from: e.from,
            to: e.to.join(", "),
            events: e
                .events
                .iter()
                .map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    Ok(render(&SettingsPage {
        email,
        webhooks,
        deliveries,
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
    /// The version scripts import now (from the environment, not the request).
    version: String,
    /// A failed request while an earlier version is still installed.
    still_installed: bool,
    requested: Ts,
    error: String,
    /// The tail of the installer's output for this row's install.
    log: String,
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

fn package_badge(status: airlock_store::PackageStatus) -> &'static str {
    use airlock_store::PackageStatus;
    match status {
        PackageStatus::Installed => "ok",
        PackageStatus::Failed | PackageStatus::Rejected => "error",
        PackageStatus::Pending | PackageStatus::Installing | PackageStatus::AwaitingReview => {
            "pending"
        }
    }
}

pub async fn packages(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/packages")).await?;
    let list = state.packages.list().await?;
    let env = list.environment;
    let versions = state.packages.current_versions();
    let mut rows = Vec::with_capacity(list.packages.len());
    for p in list.packages {
        let version = versions.get(&p.name).cloned().unwrap_or_default();
        let log = match state.packages.install(&p.install_id).await {
            Ok(i) => i.log,
            Err(_) => String::new(),
        };
        rows.push(PackageRowView {
            badge: package_badge(p.status),
            still_installed: p.status == airlock_store::PackageStatus::Failed
                && !version.is_empty(),
            name: p.name,
            spec: p.spec,
            status: p.status.to_string(),
            version,
            requested: view::ts(p.requested_at),
            error: p.error.unwrap_or_default(),
            log,
        });
    }
    Ok(render(&PackagesPage {
        nav: "packages",
        rows,
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
