//! What the catalog shows and takes: credential and profile views (never a value),
//! sealing settings and their patch, and the conversions from store rows.

use super::*;

/// A credential's mode and where a sealed value may go, as the admin sees and sets it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Sealing {
    /// `plain` (the script gets the value) or `sealed` (the script gets a placeholder
    /// the egress proxy swaps for the value in requests to `bound_hosts`).
    pub mode: CredentialMode,
    /// Host patterns (the `allowed_hosts` syntax) the value may be sent to.
    pub bound_hosts: Vec<String>,
    /// HTTP methods the value is substituted for; `null`: any method.
    pub bound_methods: Option<Vec<String>>,
    /// The only request header the value is substituted in; `null`: any header.
    pub bound_header: Option<String>,
    /// Also substitute in the URL query and the request body.
    pub substitute_in_body: bool,
    /// Revoke the profile at once when the placeholder is sent anywhere else.
    pub revoke_on_violation: bool,
    /// A sealed database credential (the value is its password): the server signs in
    /// there, and the script gets a connection string with a placeholder. `null` for
    /// other credentials.
    #[serde(default)]
    pub database: Option<DatabaseLogin>,
}

impl From<&SealSettings> for Sealing {
    fn from(s: &SealSettings) -> Sealing {
        Sealing {
            mode: s.mode,
            bound_hosts: s.hosts.clone(),
            bound_methods: s.methods.clone(),
            bound_header: s.header.clone(),
            substitute_in_body: s.substitute_body,
            revoke_on_violation: s.revoke_on_violation,
            database: s.database.clone(),
        }
    }
}

impl From<Sealing> for SealSettings {
    fn from(s: Sealing) -> SealSettings {
        SealSettings {
            mode: s.mode,
            hosts: s.bound_hosts,
            methods: s.bound_methods,
            header: s.bound_header,
            substitute_body: s.substitute_in_body,
            revoke_on_violation: s.revoke_on_violation,
            database: s.database,
        }
    }
}

/// Changes to a credential's sealing; `None` leaves a field alone. In
/// `bound_methods` an empty list means any method; in `bound_header` an empty string
/// means any header.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct SealingPatch {
    pub mode: Option<String>,
    pub bound_hosts: Option<Vec<String>>,
    pub bound_methods: Option<Vec<String>>,
    pub bound_header: Option<String>,
    pub substitute_in_body: Option<bool>,
    pub revoke_on_violation: Option<bool>,
    /// `Some(None)` removes the database login.
    pub database: Option<Option<DatabaseLogin>>,
}

impl SealingPatch {
    pub(super) fn is_empty(&self) -> bool {
        *self == SealingPatch::default()
    }

    /// Applies the patch to `s` and checks the result. `new`: a new credential, whose
    /// mode defaults to `sealed` when hosts are bound.
    pub(super) fn apply(&self, s: &mut SealSettings, new: bool) -> Result<(), Invalid> {
        if let Some(h) = &self.bound_hosts {
            s.hosts = validate::host_patterns(h)
                .map_err(|e| Invalid(e.0.replace("allowed_hosts", "bound_hosts")))?;
            if let Some(t) = s.hosts.iter().find(|h| airlock_egress::is_tcp_entry(h)) {
                return Err(Invalid::new(format!(
                    "bound_hosts entry {t:?} is a TCP destination: a sealed HTTP credential is bound to HTTP(S) hosts (api.example.com)"
                )));
            }
        }
        if let Some(m) = &self.bound_methods {
            let mut out = Vec::new();
            for x in m {
                let up = x.trim().to_ascii_uppercase();
                if up.is_empty() || up.len() > 16 || !up.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(Invalid::new(format!(
                        "bound_methods entry {:?} is not an HTTP method (GET, POST, ...)",
                        validate::truncate_for_message(x)
                    )));
                }
                if !out.contains(&up) {
                    out.push(up);
                }
            }
            s.methods = (!out.is_empty()).then_some(out);
        }
        if let Some(h) = &self.bound_header {
            let h = h.trim().to_ascii_lowercase();
            if h.is_empty() {
                s.header = None;
            } else {
                let ok = h.len() <= 64
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    && !matches!(
                        h.as_str(),
                        "host" | "content-length" | "connection" | "transfer-encoding"
                    )
                    && !h.starts_with("proxy-");
                if !ok {
                    return Err(Invalid::new(format!(
                        "bound_header {:?} is not a usable request header name (e.g. authorization, x-api-key)",
                        validate::truncate_for_message(&h)
                    )));
                }
                s.header = Some(h);
            }
        }
        if let Some(b) = self.substitute_in_body {
            s.substitute_body = b;
        }
        if let Some(r) = self.revoke_on_violation {
            s.revoke_on_violation = r;
        }
        if let Some(d) = &self.database {
            if let Some(d) = d {
                database_login(d)?;
            }
            s.database = d.clone();
        }
        match self.mode.as_deref().map(|m| (m, CredentialMode::parse(m))) {
            Some((_, Some(m))) => s.mode = m,
            Some((other, None)) => {
                return Err(Invalid::new(format!(
                    "mode {:?} is unknown: use \"plain\" or \"sealed\"",
                    validate::truncate_for_message(other)
                )))
            }
            None if new => {
                s.mode = if s.hosts.is_empty() && s.database.is_none() {
                    CredentialMode::Plain
                } else {
                    CredentialMode::Sealed
                }
            }
            // A database login given now seals the credential.
            None if self.database.as_ref().is_some_and(Option::is_some) => {
                s.mode = CredentialMode::Sealed;
            }
            None => {}
        }
        if s.database.is_some() {
            if !s.is_sealed() {
                return Err(Invalid::new(
                    "a credential with a database login is sealed: its password never enters the sandbox (mode \"sealed\", or remove database)",
                ));
            }
            if !s.hosts.is_empty() {
                return Err(Invalid::new(
                    "a database credential has no bound_hosts: its password is used only to sign in to its database",
                ));
            }
        } else if s.is_sealed() && s.hosts.is_empty() {
            return Err(Invalid::new(
                "a sealed credential needs at least one bound host (bound_hosts) or a database login (database): its value is sent nowhere else",
            ));
        }
        Ok(())
    }
}

/// Checks a database login: a host the sandbox can give an address of its own, a
/// port, and a user and database PostgreSQL would take.
fn database_login(d: &DatabaseLogin) -> Result<(), Invalid> {
    if airlock_egress::TcpDestination::parse(&d.destination()).is_none() {
        return Err(Invalid::new(format!(
            "database host {:?} (port {}) is invalid: use a host name (db.internal) or a 127.x.y.z address, and a port from 1 to 65535",
            validate::truncate_for_message(&d.host),
            d.port
        )));
    }
    for (field, v) in [("database", &d.database), ("user", &d.user)] {
        if v.is_empty() || v.len() > 63 || v.bytes().any(|b| b == 0 || b.is_ascii_control()) {
            return Err(Invalid::new(format!(
                "database {field} {:?} is invalid: 1 to 63 bytes, no control characters",
                validate::truncate_for_message(v)
            )));
        }
    }
    Ok(())
}

/// Checks imported sealing settings with the rules the admin API applies.
pub fn check_sealing(s: &Sealing) -> Result<(), Invalid> {
    let patch = SealingPatch {
        mode: Some(s.mode.to_string()),
        bound_hosts: Some(s.bound_hosts.clone()),
        bound_methods: s.bound_methods.clone(),
        bound_header: s.bound_header.clone(),
        substitute_in_body: Some(s.substitute_in_body),
        revoke_on_violation: Some(s.revoke_on_violation),
        database: Some(s.database.clone()),
    };
    patch.apply(&mut SealSettings::default(), false)
}

/// A credential as the admin sees it (never its value).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CredentialView {
    pub name: String,
    pub description: String,
    pub value_exists: bool,
    #[serde(flatten)]
    pub sealing: Sealing,
    /// The agent's request for this slot and the operator's answer (`null`: the
    /// operator made it).
    pub request: Option<RequestState>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A credential as agents see it, and as listed inside a profile: with a `sealed`
/// credential, `settings.get` returns a placeholder that works only in requests to
/// `bound_hosts`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct CredentialSummary {
    pub name: String,
    pub description: String,
    pub value_exists: bool,
    /// `plain`: `settings.get` returns the value; `sealed`: it returns a placeholder.
    pub mode: CredentialMode,
    /// Host patterns a sealed value is substituted for (empty for `plain`).
    pub bound_hosts: Vec<String>,
    /// A sealed database credential: where `settings.get`'s connection string leads
    /// (its password is a placeholder; the server signs in). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseLogin>,
    /// The agent's request for this slot and the operator's answer (`null`: the
    /// operator made it).
    pub request: Option<RequestState>,
}

/// An agent's request (a profile, a slot, packages) and the operator's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct RequestState {
    /// `pending` until the operator answers, then `accepted` or `rejected`.
    pub status: RequestStatus,
    /// The agent's message to the operator (may be empty).
    pub message: String,
    /// The operator's reason for a rejection, or note with an acceptance.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

impl From<&AgentRequestRow> for RequestState {
    fn from(r: &AgentRequestRow) -> RequestState {
        RequestState {
            status: r.status,
            message: r.message.clone(),
            reason: r.reason.clone(),
            created_at: r.created_at,
            decided_at: r.decided_at,
        }
    }
}

/// An opened credential for one execution.
pub struct OpenedCredential {
    pub name: String,
    pub value: String,
    pub seal: SealSettings,
}

/// The profile JSON used by every endpoint.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ProfileView {
    pub id: String,
    pub description: String,
    pub locked: bool,
    pub revoked: bool,
    pub expired: bool,
    pub key_id: Option<String>,
    pub credentials: Vec<CredentialSummary>,
    pub allowed_hosts: Option<Vec<String>>,
    /// Input recording: `off`, or `hashes` (each execution keeps what it ran with and
    /// what each HTTP request got back; see `GET /api/admin/executions/{id}/diff`).
    pub record: airlock_store::RecordMode,
    /// `POST /execute` must sign a timestamp and a nonce as well as the script,
    /// and the server refuses a replayed request (on by default for new profiles).
    pub replay_protection: bool,
    /// Script approval: `off`, `first_run` (each new script, by SHA-256, waits for
    /// an approver once) or `every_run` (every execution waits).
    pub approval: airlock_store::ApprovalMode,
    /// The agent's request for this profile and the operator's answer (`null`:
    /// the operator made it).
    pub request: Option<RequestState>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A profile plus its freshly issued key (`ark_ID:SECRET`), shown once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProfileWithKey {
    #[serde(flatten)]
    pub profile: ProfileView,
    pub key: String,
}

/// Changes to a profile's settings; `None` leaves a field alone.
#[derive(Debug, Default, Clone)]
pub struct ProfilePatch {
    pub description: Option<String>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub allowed_hosts: Option<Option<Vec<String>>>,
    pub record: Option<airlock_store::RecordMode>,
    pub replay_protection: Option<bool>,
    pub approval: Option<airlock_store::ApprovalMode>,
}

pub(super) fn summary(c: &CredentialRow, req: Option<&AgentRequestRow>) -> CredentialSummary {
    CredentialSummary {
        name: c.name.clone(),
        description: c.description.clone(),
        value_exists: c.value.is_some(),
        mode: c.seal.mode,
        bound_hosts: c.seal.hosts.clone(),
        database: c.seal.database.clone(),
        request: req.map(RequestState::from),
    }
}

pub(super) fn view(c: &CredentialRow, req: Option<&AgentRequestRow>) -> CredentialView {
    CredentialView {
        name: c.name.clone(),
        description: c.description.clone(),
        value_exists: c.value.is_some(),
        sealing: Sealing::from(&c.seal),
        request: req.map(RequestState::from),
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}
