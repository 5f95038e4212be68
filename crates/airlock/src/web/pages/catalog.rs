//! The credentials and profiles pages.

use super::*;

// ----- credentials -----

pub struct UsedBy {
    pub id: String,
    pub state: &'static str,
}

pub struct CredRow {
    pub name: String,
    pub description: String,
    pub value_exists: bool,
    pub updated: Ts,
    pub used_by: Vec<UsedBy>,
    /// `plain` or `sealed`.
    pub mode: String,
    /// Bound host patterns, one per line (for the edit dialog).
    pub hosts_lines: String,
    /// Bound host patterns for display.
    pub hosts_text: String,
    /// Bound methods, comma-separated; empty for any.
    pub methods: String,
    /// Bound header; empty for any.
    pub header: String,
    pub substitute_body: bool,
    pub revoke: bool,
    /// A sealed database login (empty strings when none), for the edit dialog.
    pub db: DbFields,
}

/// A database login's fields as the credentials page shows and edits them.
#[derive(Default)]
pub struct DbFields {
    pub host: String,
    pub port: String,
    pub database: String,
    pub user: String,
    /// `verify-full` or `disable`.
    pub tls: String,
    pub read_only: bool,
}

impl DbFields {
    fn of(d: Option<&airlock_store::DatabaseLogin>) -> DbFields {
        match d {
            None => DbFields::default(),
            Some(d) => DbFields {
                host: d.host.clone(),
                port: d.port.to_string(),
                database: d.database.clone(),
                user: d.user.clone(),
                tls: match d.tls {
                    airlock_store::DatabaseTls::VerifyFull => "verify-full".into(),
                    airlock_store::DatabaseTls::Disable => "disable".into(),
                },
                read_only: d.read_only,
            },
        }
    }
}

#[derive(Template)]
#[template(path = "credentials.html")]
struct CredentialsPage {
    nav: &'static str,
    creds: Vec<CredRow>,
    missing: usize,
    fill: String,
}

#[derive(Deserialize)]
pub struct FillQuery {
    fill: Option<String>,
}

pub async fn credentials(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<FillQuery>,
) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/credentials")).await?;
    let now = Utc::now();
    let mut creds = Vec::new();
    for row in state.store.credentials_list().await? {
        let used_by = state
            .store
            .credential_profiles(&row.id)
            .await?
            .iter()
            .map(|p| UsedBy {
                id: p.id.clone(),
                state: if p.revoked {
                    "revoked"
                } else if p.is_expired(now) {
                    "expired"
                } else if p.locked {
                    "locked"
                } else {
                    "unlocked"
                },
            })
            .collect();
        creds.push(CredRow {
            name: row.name.clone(),
            description: row.description.clone(),
            value_exists: row.value.is_some(),
            updated: view::ts(row.updated_at),
            used_by,
            mode: row.seal.mode.to_string(),
            hosts_lines: row.seal.hosts.join("\n"),
            hosts_text: match &row.seal.database {
                Some(d) => format!("postgres {}@{}:{}/{}", d.user, d.host, d.port, d.database),
                None => row.seal.hosts.join(", "),
            },
            methods: row.seal.methods.clone().unwrap_or_default().join(", "),
            header: row.seal.header.clone().unwrap_or_default(),
            substitute_body: row.seal.substitute_body,
            revoke: row.seal.revoke_on_violation,
            db: DbFields::of(row.seal.database.as_ref()),
        });
    }
    let fill = q
        .fill
        .filter(|f| creds.iter().any(|c| &c.name == f))
        .unwrap_or_default();
    Ok(render(&CredentialsPage {
        nav: "credentials",
        missing: creds.iter().filter(|c| !c.value_exists).count(),
        creds,
        fill,
    }))
}

// ----- profiles -----

#[derive(Template)]
#[template(path = "profiles.html")]
struct ProfilesPage {
    nav: &'static str,
    profiles: Vec<ProfileRowView>,
    creds: Vec<CredOption>,
}

pub async fn profiles(State(state): State<AppState>, headers: HeaderMap) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/profiles")).await?;
    let profiles = state
        .catalog
        .list_profiles()
        .await?
        .iter()
        .map(profile_row)
        .collect();
    let creds = state
        .catalog
        .list_credentials()
        .await?
        .into_iter()
        .map(|c| CredOption {
            sealed_to: sealed_to(c.sealing.mode, &c.sealing.bound_hosts),
            name: c.name,
            description: c.description,
            value_exists: c.value_exists,
        })
        .collect();
    Ok(render(&ProfilesPage {
        nav: "profiles",
        profiles,
        creds,
    }))
}

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    nav: &'static str,
    id: String,
    description: String,
    state: &'static str,
    key_id: String,
    locked: bool,
    revoked: bool,
    /// Credentials can be attached or detached.
    open: bool,
    can_lock: bool,
    can_delete: bool,
    creds: Vec<CredOption>,
    missing: Vec<String>,
    hosts_mode: &'static str,
    hosts_text: String,
    /// Input recording: `off`, `hashes` or `full`.
    record: &'static str,
    /// How long `full` keeps answers (`AIRLOCK_RECORD_RETENTION_DAYS`).
    record_kept: String,
    /// Signed requests must carry a timestamp and a fresh nonce.
    replay_protection: bool,
    /// Script approval: `off`, `first_run` or `every_run`.
    approval: &'static str,
    /// The agent's request for this profile: status, message, the reason given.
    request: Option<(String, String, String)>,
    expires: Option<Ts>,
    created: Ts,
    updated: Ts,
    last_used: Option<Ts>,
    available: Vec<CredOption>,
    recent: Vec<ExecRow>,
}

pub async fn profile(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> PageResult {
    require_session(&state, &headers, &format!("{PREFIX}/profiles/{id}")).await?;
    let p = state.catalog.get_profile(&id, ProfileLookup::Id).await?;
    let attached: Vec<&str> = p.credentials.iter().map(|c| c.name.as_str()).collect();
    let available = state
        .catalog
        .list_credentials()
        .await?
        .into_iter()
        .filter(|c| !attached.contains(&c.name.as_str()))
        .map(|c| CredOption {
            sealed_to: sealed_to(c.sealing.mode, &c.sealing.bound_hosts),
            name: c.name,
            description: c.description,
            value_exists: c.value_exists,
        })
        .collect();
    let missing = missing_values(&p);
    let open = !p.locked && !p.revoked;
    let (hosts_mode, hosts) = match &p.allowed_hosts {
        None => ("any", Vec::new()),
        Some(h) if h.is_empty() => ("none", Vec::new()),
        Some(h) => ("list", h.clone()),
    };
    Ok(render(&ProfilePage {
        nav: "profiles",
        id: p.id.clone(),
        description: p.description.clone(),
        state: view::profile_state(&p),
        key_id: p.key_id.clone().unwrap_or_default(),
        locked: p.locked,
        revoked: p.revoked,
        open,
        can_lock: open && missing.is_empty(),
        can_delete: !p.locked || p.revoked,
        creds: p
            .credentials
            .iter()
            .map(|c| CredOption {
                name: c.name.clone(),
                description: c.description.clone(),
                value_exists: c.value_exists,
                sealed_to: sealed_to(c.mode, &c.bound_hosts),
            })
            .collect(),
        missing,
        hosts_mode,
        hosts_text: hosts.join("\n"),
        record: match p.record {
            airlock_store::RecordMode::Off => "off",
            airlock_store::RecordMode::Hashes => "hashes",
            airlock_store::RecordMode::Full => "full",
        },
        record_kept: match state.config.record_retention_days {
            0 => "until the execution is gone".into(),
            1 => "for 1 day".into(),
            n => format!("for {n} days"),
        },
        replay_protection: p.replay_protection,
        approval: crate::approvals::mode_name(p.approval),
        request: p.request.as_ref().map(|r| {
            (
                crate::inbox::status_name(r.status).to_string(),
                r.message.clone(),
                r.reason.clone().unwrap_or_default(),
            )
        }),
        expires: view::ts_opt(p.expires_at),
        created: view::ts(p.created_at),
        updated: view::ts(p.updated_at),
        last_used: view::ts_opt(p.last_used_at),
        available,
        recent: recent_executions(
            &state,
            Some(p.id.clone()),
            10,
            &ProfileNames::from([(p.id.clone(), p.description.clone())]),
        )
        .await?,
    }))
}
