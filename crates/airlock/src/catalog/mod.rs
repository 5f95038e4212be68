//! Credentials and profiles: the domain rules both APIs share.
//!
//! Handlers stay thin; every lifecycle rule (unlocked → locked → revoked, expiry,
//! "agents never touch values", "no deleting what a locked profile uses") lives
//! here, once. Values and profile secrets are sealed with the vault before they
//! reach the store and opened only for execution.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use airlock_store::{
    AgentRequestRow, CredentialMode, CredentialRow, DatabaseLogin, ProfileRow, RequestKind,
    RequestStatus, SealSettings, Store, Vault,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids;
use crate::validate::{self, Invalid};

mod views;
pub use views::*;

/// Why a catalog operation was refused. The HTTP status of each is chosen in
/// `crate::error`; the message (`Display`) says what to fix and never carries a
/// value or a key secret.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("credential {} does not exist", validate::shown(.0))]
    NoCredential(String),
    #[error("profile {} does not exist", validate::shown(.0))]
    NoProfile(String),
    #[error("credential {0:?} already exists")]
    CredentialExists(String),
    #[error("credential {name:?} is used by locked profile(s) {}; revoke them first", .profiles.join(", "))]
    CredentialInUse { name: String, profiles: Vec<String> },
    /// The profile is revoked; the message depends on what was attempted.
    #[error("{0}")]
    Revoked(&'static str),
    /// The profile is locked and the operation needs it unlocked.
    #[error("{0}")]
    Locked(&'static str),
    /// The profile is unlocked and the operation needs a key.
    #[error("{0}")]
    Unlocked(&'static str),
    #[error("fill in the value of {} before locking", .0.join(", "))]
    ValuesMissing(Vec<String>),
    /// An agent key that may not run code (now).
    #[error(transparent)]
    Key(#[from] KeyRefusal),
    /// A stored value or secret that does not open as text.
    #[error("a stored value cannot be read")]
    Unreadable,
    #[error(transparent)]
    Store(#[from] airlock_store::StoreError),
}

pub type CatalogResult<T> = Result<T, CatalogError>;

/// Why an agent key may not run code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("unknown profile key")]
    Unknown,
    #[error("profile is revoked")]
    Revoked,
    #[error("profile is not locked")]
    Unlocked,
    #[error("profile has expired")]
    Expired,
}

impl From<airlock_store::Unusable> for KeyRefusal {
    fn from(u: airlock_store::Unusable) -> KeyRefusal {
        match u {
            airlock_store::Unusable::Revoked => KeyRefusal::Revoked,
            airlock_store::Unusable::Unlocked => KeyRefusal::Unlocked,
            airlock_store::Unusable::Expired => KeyRefusal::Expired,
        }
    }
}

/// Whether a profile changes by gaining or by losing credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialChange {
    Add,
    Remove,
}

/// How a profile is named in a request: by its id only (admin routes), or also by
/// its key id (agent routes, which know the key id and not always the profile id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProfileLookup {
    Id,
    IdOrKeyId,
}

/// A profile that may run code right now, with its opened secret.
pub struct ActiveProfile {
    pub row: ProfileRow,
    pub secret: Vec<u8>,
    /// [`Store::profiles_epoch`] loaded before `row` was read.
    pub epoch: u64,
}

/// The credentials/profiles service.
#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    keys: Arc<Mutex<KeyCache>>,
}

/// Profile rows found by key id, as read at one [`Store::profiles_epoch`].
///
/// Every profile write (lock, revoke, key regeneration, edit, delete, import) moves
/// the epoch before and after it, and an entry is used only while the epoch has not
/// moved since it was read, so the next request after a write reads the store again.
/// The rows keep their key secret sealed (it is opened per request); expiry is checked
/// per request against the clock; unknown key ids are never kept. At most one entry
/// per profile that authenticated since the last profile write, each used for at most
/// [`KEY_CACHE_TTL`]: a write whose request was abandoned mid-way can still reach the
/// database after its epoch moves, and must not leave a stale row in use for long.
#[derive(Default)]
struct KeyCache {
    epoch: u64,
    rows: HashMap<String, (Instant, ProfileRow)>,
}

/// How long a kept key row is used before the store is read again.
const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

fn cred_aad(id: &str) -> String {
    format!("credential:{id}")
}

fn profile_aad(id: &str) -> String {
    format!("profile:{id}")
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>, vault: Arc<Vault>) -> Catalog {
        Catalog {
            store,
            vault,
            keys: Arc::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    // ----- credentials -----

    pub async fn list_credentials(&self) -> CatalogResult<Vec<CredentialView>> {
        let reqs = self.slot_requests().await?;
        Ok(self
            .store
            .credentials_list()
            .await?
            .iter()
            .map(|c| view(c, reqs.get(&c.name)))
            .collect())
    }

    pub async fn list_credential_summaries(&self) -> CatalogResult<Vec<CredentialSummary>> {
        let reqs = self.slot_requests().await?;
        Ok(self
            .store
            .credentials_list()
            .await?
            .iter()
            .map(|c| summary(c, reqs.get(&c.name)))
            .collect())
    }

    /// Every slot request, by credential name.
    async fn slot_requests(&self) -> CatalogResult<HashMap<String, AgentRequestRow>> {
        Ok(self
            .store
            .requests_list(Some(RequestKind::Slot), None, i64::MAX)
            .await?
            .into_iter()
            .map(|r| (r.subject.clone(), r))
            .collect())
    }

    // ----- agent requests -----

    /// Records (or reopens) an agent's request for `subject`, waiting for the operator.
    pub async fn open_request(
        &self,
        kind: RequestKind,
        subject: &str,
        message: &str,
    ) -> CatalogResult<()> {
        self.store
            .request_put(&AgentRequestRow {
                kind,
                subject: subject.to_string(),
                message: message.to_string(),
                status: RequestStatus::Pending,
                reason: None,
                created_at: Utc::now(),
                decided_at: None,
            })
            .await?;
        Ok(())
    }

    /// Accepts a pending request because the operator acted on its subject (filled
    /// a slot's value, locked a profile). Nothing happens when none is pending.
    async fn accept_by_action(&self, kind: RequestKind, subject: &str) -> CatalogResult<()> {
        self.store
            .request_decide(kind, subject, RequestStatus::Accepted, None, Utc::now())
            .await?;
        Ok(())
    }

    async fn credential(&self, name: &str) -> CatalogResult<CredentialRow> {
        self.store
            .credential_get(name)
            .await?
            .ok_or_else(|| CatalogError::NoCredential(name.to_string()))
    }

    pub async fn get_credential(&self, name: &str) -> CatalogResult<CredentialView> {
        let c = self.credential(name).await?;
        let req = self.store.request_get(RequestKind::Slot, name).await?;
        Ok(view(&c, req.as_ref()))
    }

    /// Creates a slot (and, for the admin, optionally its value).
    pub async fn create_credential(
        &self,
        name: &str,
        description: &str,
        value: Option<&str>,
        sealing: &SealingPatch,
    ) -> CatalogResult<CredentialView> {
        validate::credential_name(name)?;
        validate::description(description)?;
        if let Some(v) = value {
            validate::value(v)?;
        }
        let mut seal = SealSettings::default();
        sealing.apply(&mut seal, true)?;
        let now = Utc::now();
        let id = ids::credential_id();
        let sealed = match value {
            Some(v) => Some(self.vault.seal(&cred_aad(&id), v.as_bytes())?),
            None => None,
        };
        let row = CredentialRow {
            id,
            name: name.to_string(),
            description: description.to_string(),
            value: sealed,
            seal,
            created_at: now,
            updated_at: now,
        };
        self.store
            .credential_insert(&row)
            .await
            .map_err(|e| match e {
                airlock_store::StoreError::Conflict(_) => {
                    CatalogError::CredentialExists(name.to_string())
                }
                other => other.into(),
            })?;
        Ok(view(&row, None))
    }

    /// Agent bulk creation: existing names are skipped, never modified.
    pub async fn create_slots(
        &self,
        items: &[(String, String)],
    ) -> CatalogResult<(Vec<String>, Vec<String>)> {
        for (name, desc) in items {
            validate::credential_name(name)?;
            validate::description(desc)?;
        }
        let (mut created, mut skipped) = (Vec::new(), Vec::new());
        for (name, desc) in items {
            if created.contains(name) || skipped.contains(name) {
                continue;
            }
            match self
                .create_credential(name, desc, None, &SealingPatch::default())
                .await
            {
                Ok(_) => created.push(name.clone()),
                Err(CatalogError::CredentialExists(_)) => skipped.push(name.clone()),
                Err(e) => return Err(e),
            }
        }
        Ok((created, skipped))
    }

    pub async fn update_credential(
        &self,
        name: &str,
        description: Option<&str>,
        value: Option<&str>,
        sealing: &SealingPatch,
    ) -> CatalogResult<CredentialView> {
        if let Some(d) = description {
            validate::description(d)?;
        }
        if let Some(v) = value {
            validate::value(v)?;
        }
        let mut row = self.credential(name).await?;
        if !sealing.is_empty() {
            sealing.apply(&mut row.seal, false)?;
        }
        if let Some(d) = description {
            row.description = d.to_string();
        }
        if let Some(v) = value {
            row.value = Some(self.vault.seal(&cred_aad(&row.id), v.as_bytes())?);
        }
        row.updated_at = Utc::now();
        self.store.credential_update(&row).await?;
        if value.is_some() {
            // Filling in the value answers the agent's request for the slot.
            self.accept_by_action(RequestKind::Slot, &row.name).await?;
        }
        let req = self.store.request_get(RequestKind::Slot, &row.name).await?;
        Ok(view(&row, req.as_ref()))
    }

    pub async fn delete_credential(&self, name: &str) -> CatalogResult<()> {
        let row = self.credential(name).await?;
        let blocking: Vec<String> = self
            .store
            .credential_profiles(&row.id)
            .await?
            .into_iter()
            .filter(|p| p.locked && !p.revoked)
            .map(|p| p.id)
            .collect();
        if !blocking.is_empty() {
            return Err(CatalogError::CredentialInUse {
                name: name.to_string(),
                profiles: blocking,
            });
        }
        self.store.credential_delete(&row.id).await?;
        self.store
            .request_delete(RequestKind::Slot, &row.name)
            .await?;
        Ok(())
    }

    // ----- profiles -----

    async fn profile_view(&self, row: &ProfileRow) -> CatalogResult<ProfileView> {
        let creds = self.store.profile_credentials(&row.id).await?;
        let request = self
            .store
            .request_get(RequestKind::Profile, &row.id)
            .await?;
        let slots = if creds.is_empty() {
            HashMap::new()
        } else {
            self.slot_requests().await?
        };
        Ok(ProfileView {
            id: row.id.clone(),
            description: row.description.clone(),
            locked: row.locked,
            revoked: row.revoked,
            expired: row.is_expired(Utc::now()),
            key_id: row.key_id.clone(),
            credentials: creds
                .iter()
                .map(|c| summary(c, slots.get(&c.name)))
                .collect(),
            allowed_hosts: row.allowed_hosts.clone(),
            record: row.record,
            replay_protection: row.replay_protection,
            approval: row.approval,
            request: request.as_ref().map(RequestState::from),
            expires_at: row.expires_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_used_at: row.last_used_at,
        })
    }

    /// Finds a profile by id, or also by key id (see [`ProfileLookup`]).
    async fn profile_row(&self, id: &str, lookup: ProfileLookup) -> CatalogResult<ProfileRow> {
        if let Some(p) = self.store.profile_get(id).await? {
            return Ok(p);
        }
        if lookup == ProfileLookup::IdOrKeyId && id.starts_with("ark_") {
            if let Some(p) = self.store.profile_get_by_key_id(id).await? {
                return Ok(p);
            }
        }
        Err(CatalogError::NoProfile(id.to_string()))
    }

    pub async fn list_profiles(&self) -> CatalogResult<Vec<ProfileView>> {
        let rows = self.store.profiles_list().await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.profile_view(r).await?);
        }
        Ok(out)
    }

    pub async fn get_profile(&self, id: &str, lookup: ProfileLookup) -> CatalogResult<ProfileView> {
        let row = self.profile_row(id, lookup).await?;
        self.profile_view(&row).await
    }

    async fn resolve_names(&self, names: &[String]) -> CatalogResult<Vec<String>> {
        let mut ids = Vec::with_capacity(names.len());
        let mut unknown = Vec::new();
        for n in names {
            match self.store.credential_get(n).await? {
                Some(c) => ids.push(c.id),
                None => unknown.push(n.clone()),
            }
        }
        if !unknown.is_empty() {
            return Err(Invalid(format!(
                "unknown credentials: {} (create the slots first with POST /credentials)",
                unknown.join(", ")
            ))
            .into());
        }
        Ok(ids)
    }

    pub async fn create_profile(
        &self,
        description: &str,
        credentials: &[String],
    ) -> CatalogResult<ProfileView> {
        validate::description(description)?;
        let cred_ids = self.resolve_names(credentials).await?;
        let now = Utc::now();
        let row = ProfileRow {
            id: ids::profile_id(),
            description: description.to_string(),
            key_id: None,
            secret: None,
            locked: false,
            revoked: false,
            expires_at: None,
            allowed_hosts: Some(Vec::new()),
            record: airlock_store::RecordMode::Off,
            replay_protection: true,
            approval: airlock_store::ApprovalMode::Off,
            created_at: now,
            updated_at: now,
            last_used_at: None,
        };
        self.store.profile_insert(&row).await?;
        if !cred_ids.is_empty() {
            self.store
                .profile_add_credentials(&row.id, &cred_ids)
                .await?;
        }
        self.profile_view(&row).await
    }

    pub async fn update_profile(
        &self,
        id: &str,
        patch: ProfilePatch,
    ) -> CatalogResult<ProfileView> {
        let mut row = self.profile_row(id, ProfileLookup::Id).await?;
        if row.revoked {
            return Err(CatalogError::Revoked(
                "profile is revoked and can no longer be changed",
            ));
        }
        if let Some(d) = patch.description {
            validate::description(&d)?;
            row.description = d;
        }
        if let Some(e) = patch.expires_at {
            row.expires_at = e;
        }
        if let Some(h) = patch.allowed_hosts {
            row.allowed_hosts = match h {
                None => None,
                Some(list) => {
                    let list = validate::host_patterns(&list)?;
                    validate::no_database_port_as_http(&list)?;
                    Some(list)
                }
            };
        }
        if let Some(r) = patch.record {
            row.record = r;
        }
        if let Some(r) = patch.replay_protection {
            row.replay_protection = r;
        }
        if let Some(a) = patch.approval {
            row.approval = a;
        }
        row.updated_at = Utc::now();
        self.store.profile_update(&row).await?;
        self.profile_view(&row).await
    }

    /// Adds or removes credentials; only while the profile is unlocked.
    pub async fn change_profile_credentials(
        &self,
        id: &str,
        names: &[String],
        change: CredentialChange,
        lookup: ProfileLookup,
    ) -> CatalogResult<ProfileView> {
        let mut row = self.profile_row(id, lookup).await?;
        if row.revoked {
            return Err(CatalogError::Revoked("profile is revoked"));
        }
        if row.locked {
            return Err(CatalogError::Locked(
                "profile is locked; its credentials can no longer change (create a new profile)",
            ));
        }
        for n in names {
            validate::credential_name(n)?;
        }
        let cred_ids = self.resolve_names(names).await?;
        if change == CredentialChange::Add {
            self.store
                .profile_add_credentials(&row.id, &cred_ids)
                .await?;
        } else {
            self.store
                .profile_remove_credentials(&row.id, &cred_ids)
                .await?;
        }
        row.updated_at = Utc::now();
        self.store.profile_update(&row).await?;
        self.profile_view(&row).await
    }

    async fn issue_key(&self, row: &mut ProfileRow) -> CatalogResult<String> {
        let (key_id, secret) = ids::profile_key();
        row.secret = Some(self.vault.seal(&profile_aad(&row.id), secret.as_bytes())?);
        row.key_id = Some(key_id.clone());
        row.updated_at = Utc::now();
        Ok(format!("{key_id}:{secret}"))
    }

    pub async fn lock_profile(&self, id: &str) -> CatalogResult<ProfileWithKey> {
        let mut row = self.profile_row(id, ProfileLookup::Id).await?;
        if row.revoked {
            return Err(CatalogError::Revoked("profile is revoked"));
        }
        if row.locked {
            return Err(CatalogError::Locked(
                "profile is already locked; use regenerate-key for a new key",
            ));
        }
        let missing: Vec<String> = self
            .store
            .profile_credentials(&row.id)
            .await?
            .into_iter()
            .filter(|c| c.value.is_none())
            .map(|c| c.name)
            .collect();
        if !missing.is_empty() {
            return Err(CatalogError::ValuesMissing(missing));
        }
        let key = self.issue_key(&mut row).await?;
        row.locked = true;
        self.store.profile_update(&row).await?;
        // Locking answers the agent's request, even one rejected before.
        if let Some(mut r) = self
            .store
            .request_get(RequestKind::Profile, &row.id)
            .await?
        {
            if r.status != RequestStatus::Accepted {
                r.status = RequestStatus::Accepted;
                r.reason = None;
                r.decided_at = Some(Utc::now());
                self.store.request_put(&r).await?;
            }
        }
        Ok(ProfileWithKey {
            profile: self.profile_view(&row).await?,
            key,
        })
    }

    pub async fn regenerate_key(&self, id: &str) -> CatalogResult<ProfileWithKey> {
        let mut row = self.profile_row(id, ProfileLookup::Id).await?;
        if row.revoked {
            return Err(CatalogError::Revoked("profile is revoked"));
        }
        if !row.locked {
            return Err(CatalogError::Unlocked(
                "profile is not locked; lock it to get a key",
            ));
        }
        let key = self.issue_key(&mut row).await?;
        self.store.profile_update(&row).await?;
        Ok(ProfileWithKey {
            profile: self.profile_view(&row).await?,
            key,
        })
    }

    pub async fn revoke_profile(&self, id: &str) -> CatalogResult<ProfileView> {
        let mut row = self.profile_row(id, ProfileLookup::Id).await?;
        if row.revoked {
            return Err(CatalogError::Revoked("profile is already revoked"));
        }
        row.revoked = true;
        row.secret = None;
        row.updated_at = Utc::now();
        self.store.profile_update(&row).await?;
        self.profile_view(&row).await
    }

    pub async fn delete_profile(&self, id: &str) -> CatalogResult<()> {
        let row = self.profile_row(id, ProfileLookup::Id).await?;
        if row.locked && !row.revoked {
            return Err(CatalogError::Locked(
                "profile is locked; revoke it first, then delete it",
            ));
        }
        self.store.profile_delete(&row.id).await?;
        self.store
            .request_delete(RequestKind::Profile, &row.id)
            .await?;
        Ok(())
    }

    /// Resolves a bearer key id to a profile that may run code now.
    pub async fn active_profile(&self, key_id: &str) -> CatalogResult<ActiveProfile> {
        let epoch = self.store.profiles_epoch();
        let row = match self.cached_key(key_id, epoch) {
            Some(row) => row,
            None => {
                let row = self
                    .store
                    .profile_get_by_key_id(key_id)
                    .await?
                    .ok_or(KeyRefusal::Unknown)?;
                self.cache_key(key_id, epoch, &row);
                row
            }
        };
        if let Some(refusal) = row.refusal(Utc::now()) {
            return Err(KeyRefusal::from(refusal).into());
        }
        let sealed = row.secret.as_ref().ok_or(CatalogError::Unreadable)?;
        let secret = self.vault.open(&profile_aad(&row.id), sealed)?;
        Ok(ActiveProfile { row, secret, epoch })
    }

    /// The row `key_id` resolved to while the profiles epoch was still `epoch`.
    fn cached_key(&self, key_id: &str, epoch: u64) -> Option<ProfileRow> {
        let keys = self.keys.lock();
        match keys.rows.get(key_id) {
            Some((at, row)) if keys.epoch == epoch && at.elapsed() < KEY_CACHE_TTL => {
                Some(row.clone())
            }
            _ => None,
        }
    }

    /// Keeps `row`, read after the profiles epoch was `epoch`, unless a profile write
    /// has started since (the row may then predate it).
    fn cache_key(&self, key_id: &str, epoch: u64, row: &ProfileRow) {
        let mut keys = self.keys.lock();
        if self.store.profiles_epoch() != epoch {
            return;
        }
        if keys.epoch != epoch {
            keys.rows.clear();
            keys.epoch = epoch;
        }
        keys.rows
            .insert(key_id.to_string(), (Instant::now(), row.clone()));
    }

    // ----- export / import: values in the clear, only inside an encrypted file -----

    /// Opens a credential row's value (for an export file).
    pub fn open_credential_value(&self, row: &CredentialRow) -> CatalogResult<Option<String>> {
        row.value
            .as_ref()
            .map(|sealed| {
                let v = self.vault.open(&cred_aad(&row.id), sealed)?;
                String::from_utf8(v).map_err(|_| CatalogError::Unreadable)
            })
            .transpose()
    }

    /// Opens a profile row's key secret (for an export file).
    pub fn open_profile_secret(&self, row: &ProfileRow) -> CatalogResult<Option<String>> {
        row.secret
            .as_ref()
            .map(|sealed| {
                let v = self.vault.open(&profile_aad(&row.id), sealed)?;
                String::from_utf8(v).map_err(|_| CatalogError::Unreadable)
            })
            .transpose()
    }

    /// Seals a value for the credential row `credential_id` under this instance's key.
    pub fn seal_credential_value(
        &self,
        credential_id: &str,
        value: &str,
    ) -> CatalogResult<Vec<u8>> {
        Ok(self
            .vault
            .seal(&cred_aad(credential_id), value.as_bytes())?)
    }

    /// Seals a key secret for the profile row `profile_id` under this instance's key.
    pub fn seal_profile_secret(&self, profile_id: &str, secret: &str) -> CatalogResult<Vec<u8>> {
        Ok(self
            .vault
            .seal(&profile_aad(profile_id), secret.as_bytes())?)
    }

    /// Seals one recorded answer of `execution_id` (already redacted) as its
    /// `seq`-th.
    pub fn seal_answer(
        &self,
        execution_id: &str,
        seq: i64,
        answer: &crate::answers::StoredAnswer,
    ) -> CatalogResult<airlock_store::AnswerRow> {
        let json = serde_json::to_vec(answer).map_err(|_| CatalogError::Unreadable)?;
        Ok(airlock_store::AnswerRow {
            execution_id: execution_id.to_string(),
            seq,
            at: Utc::now(),
            sealed: self
                .vault
                .seal(&airlock_store::AnswerRow::aad(execution_id, seq), &json)?,
        })
    }

    /// An execution's recorded answers, opened, in the order they were recorded.
    pub async fn open_answers(
        &self,
        execution_id: &str,
    ) -> CatalogResult<Vec<crate::answers::StoredAnswer>> {
        let mut out = Vec::new();
        for row in self.store.answers_list(execution_id).await? {
            let json = self.vault.open(
                &airlock_store::AnswerRow::aad(&row.execution_id, row.seq),
                &row.sealed,
            )?;
            out.push(serde_json::from_slice(&json).map_err(|_| CatalogError::Unreadable)?);
        }
        Ok(out)
    }

    /// Opens the values of a profile's credentials, for one execution.
    pub async fn open_values(&self, profile_id: &str) -> CatalogResult<BTreeMap<String, String>> {
        Ok(self
            .open_credentials(profile_id)
            .await?
            .into_iter()
            .map(|c| (c.name, c.value))
            .collect())
    }

    /// The profile's filled credentials, opened, with their sealing settings.
    pub async fn open_credentials(&self, profile_id: &str) -> CatalogResult<Vec<OpenedCredential>> {
        let mut out = Vec::new();
        for c in self.store.profile_credentials(profile_id).await? {
            if let Some(sealed) = &c.value {
                let v = self.vault.open(&cred_aad(&c.id), sealed)?;
                out.push(OpenedCredential {
                    name: c.name.clone(),
                    value: String::from_utf8(v).map_err(|_| CatalogError::Unreadable)?,
                    seal: c.seal.clone(),
                });
            }
        }
        Ok(out)
    }
}
