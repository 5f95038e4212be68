//! Encrypted export and import of a whole instance (`.airlock` files).
//!
//! Moving Airlock to another host must keep every agent's `ark_` key working, and
//! the master key must never leave the instance. So an export opens every value
//! and key secret, writes them in the clear into a versioned JSON document, and
//! encrypts that document with the `age` format's passphrase (scrypt) recipient:
//! the standard `age` tool opens it too. Import decrypts the file, keeps the
//! document in memory under a one-time token while the operator reviews a
//! preview, then re-seals every value under *this* instance's master key (bound
//! to the target row ids) and writes everything in one database transaction.
//!
//! Both directions need an admin session and the admin password re-entered
//! (throttled like logins). No response and no log line carries a value, a
//! secret or the passphrase.

mod age;
mod document;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use airlock_store::{
    CredentialRow, ExecutionFilter, ImportCredential, ImportPlan, ImportProfile, ProfileRow, Store,
    StoreError,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

pub use self::age::{decrypt, encrypt};
pub use self::document::{
    parse_document, ExportCredential, ExportDocument, ExportExecution, ExportProfile,
};
use crate::catalog::{Catalog, CatalogError};
use crate::ids;
use crate::validate::{self, Invalid};

/// The `format` field of every export document.
pub const FORMAT: &str = "airlock-export";
/// The document version this build writes and the newest it reads.
pub const VERSION: u64 = 1;
/// Shortest accepted export passphrase, in characters.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
const MAX_PASSPHRASE_BYTES: usize = 1024;
/// How long a decrypted import waits for its commit.
pub const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Decrypted imports held at once (each up to the upload cap); the oldest goes.
const MAX_PENDING: usize = 4;

/// Why an export or an import was refused. The HTTP status of each is chosen in
/// `crate::error`. No message quotes a value, a secret or the passphrase.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("the passphrase does not open this file (or the file's header was altered)")]
    WrongPassphrase,
    #[error("the file is damaged or not an Airlock export: {0}; nothing was imported")]
    Corrupt(String),
    #[error("the file was written by a newer Airlock (format version {0}; this one reads up to {VERSION}); upgrade this instance, then import again")]
    UnsupportedVersion(u64),
    #[error("the file is larger than the import limit of {0} bytes (raise AIRLOCK_MAX_IMPORT_BYTES to accept it)")]
    TooLarge(usize),
    #[error("profile {} does not exist", validate::shown(.0))]
    NoProfile(String),
    #[error("this import preview expired, was already used or belongs to another session; upload the file again")]
    Expired,
    #[error("this instance changed while the import was being confirmed; nothing was imported. Upload the file again to see a fresh preview")]
    ChangedMeanwhile,
    /// Encryption or a worker task failed; the log says more.
    #[error("{0} failed")]
    Internal(&'static str),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type TransferResult<T> = Result<T, TransferError>;

/// Checks an export passphrase's length.
pub fn check_passphrase(p: &str) -> Result<(), Invalid> {
    if p.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(Invalid(format!(
            "passphrase must be at least {MIN_PASSPHRASE_CHARS} characters"
        )));
    }
    if p.len() > MAX_PASSPHRASE_BYTES {
        return Err(Invalid(format!(
            "passphrase must be at most {MAX_PASSPHRASE_BYTES} bytes"
        )));
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> TransferResult<T> + Send + 'static,
) -> TransferResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| TransferError::Internal("a worker task"))?
}

/// What to export.
pub struct ExportRequest {
    /// `None`: everything; otherwise these profiles and the credentials they use.
    pub profiles: Option<Vec<String>>,
    pub include_executions: bool,
}

/// An encrypted export file and what it holds.
pub struct ExportFile {
    pub bytes: Vec<u8>,
    pub filename: String,
    pub credentials: usize,
    pub profiles: usize,
    pub executions: usize,
}

#[derive(Serialize, Clone, PartialEq, Eq, Debug, utoipa::ToSchema)]
pub struct CredentialEntry {
    pub name: String,
    pub description: String,
    pub value_exists: bool,
}

#[derive(Serialize, Clone, PartialEq, Eq, Debug, utoipa::ToSchema)]
pub struct ProfileEntry {
    pub id: String,
    pub description: String,
    pub key_id: Option<String>,
    pub locked: bool,
    pub revoked: bool,
    pub credentials: Vec<String>,
    /// Ids of this instance's profiles it collides with (same id or same key id).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conflicts_with: Vec<String>,
}

#[derive(Serialize, Clone, PartialEq, Eq, Debug, utoipa::ToSchema)]
pub struct Split<T> {
    pub add: Vec<T>,
    pub conflict: Vec<T>,
}

impl<T> Default for Split<T> {
    fn default() -> Self {
        Split {
            add: Vec::new(),
            conflict: Vec::new(),
        }
    }
}

/// What an import would do, shown before it is confirmed.
#[derive(Serialize, Clone, PartialEq, Eq, Debug, utoipa::ToSchema)]
pub struct Preview {
    pub token: String,
    pub expires_in: u64,
    pub exported_at: DateTime<Utc>,
    pub credentials: Split<CredentialEntry>,
    pub profiles: Split<ProfileEntry>,
    pub executions: usize,
}

/// What to do with an entry that already exists here.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Skip,
    Overwrite,
}

#[derive(Serialize, Default, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct Counts {
    pub added: usize,
    pub overwritten: usize,
    pub skipped: usize,
}

/// The outcome of a committed import.
#[derive(Serialize, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct Outcome {
    pub credentials: Counts,
    pub profiles: Counts,
    pub executions: Counts,
}

/// Export and import over the store: documents, the pending previews, the plan.
pub struct Transfer {
    store: Arc<dyn Store>,
    catalog: Catalog,
    pending: PendingImports,
}

impl Transfer {
    pub fn new(store: Arc<dyn Store>, catalog: Catalog) -> Transfer {
        Transfer {
            store,
            catalog,
            pending: PendingImports::default(),
        }
    }

    /// Builds the document for `req` and encrypts it to `passphrase`.
    pub async fn export(
        &self,
        req: &ExportRequest,
        passphrase: String,
    ) -> TransferResult<ExportFile> {
        let doc = self.build_document(req).await?;
        let (credentials, profiles) = (doc.credentials.len(), doc.profiles.len());
        let executions = doc.executions.as_ref().map_or(0, Vec::len);
        let filename = format!("airlock-{}.airlock", doc.exported_at.format("%Y-%m-%d"));
        let plaintext =
            serde_json::to_vec(&doc).map_err(|_| TransferError::Internal("serialisation"))?;
        drop(doc);
        let bytes = blocking(move || encrypt(&plaintext, &passphrase)).await?;
        Ok(ExportFile {
            bytes,
            filename,
            credentials,
            profiles,
            executions,
        })
    }

    /// Decrypts and checks an uploaded file and keeps it, for the session whose
    /// token hashes to `session_hash`, until its commit; returns the preview.
    pub async fn preview(
        &self,
        session_hash: String,
        file: Vec<u8>,
        passphrase: String,
    ) -> TransferResult<Preview> {
        let doc = blocking(move || {
            let plaintext = decrypt(&file, &passphrase)?;
            parse_document(&plaintext)
        })
        .await?;
        let mut preview = self.preview_of(&doc).await?;
        preview.token = self.pending.insert(session_hash, doc);
        Ok(preview)
    }

    /// Applies the previewed document `token` of the session `session_hash`.
    pub async fn commit(
        &self,
        token: &str,
        session_hash: &str,
        creds: Strategy,
        profiles: Strategy,
    ) -> TransferResult<Outcome> {
        let doc = self
            .pending
            .take(token, session_hash)
            .ok_or(TransferError::Expired)?;
        let (plan, mut outcome) = self.plan_for(&doc, creds, profiles).await?;
        drop(doc);
        let total = plan.executions.len();
        let inserted = self.store.import_apply(plan).await.map_err(|e| match e {
            StoreError::Conflict(_) | StoreError::NotFound => TransferError::ChangedMeanwhile,
            other => other.into(),
        })? as usize;
        outcome.executions = Counts {
            added: inserted,
            overwritten: 0,
            skipped: total - inserted.min(total),
        };
        Ok(outcome)
    }

    /// Builds the plaintext document (values and secrets in the clear).
    pub async fn build_document(&self, req: &ExportRequest) -> TransferResult<ExportDocument> {
        let profiles = self.chosen_profiles(req.profiles.as_deref()).await?;
        let mut used = BTreeSet::new();
        let mut out_profiles = Vec::with_capacity(profiles.len());
        for p in &profiles {
            let creds = self.store.profile_credentials(&p.id).await?;
            used.extend(creds.iter().map(|c| c.id.clone()));
            out_profiles.push(self.export_profile(p, creds.into_iter().map(|c| c.name))?);
        }
        let mut credentials = Vec::new();
        for c in self.store.credentials_list().await? {
            if req.profiles.is_some() && !used.contains(&c.id) {
                continue;
            }
            credentials.push(ExportCredential {
                value: self.catalog.open_credential_value(&c)?,
                sealing: Some(crate::catalog::Sealing::from(&c.seal)),
                name: c.name,
                description: c.description,
                created_at: c.created_at,
                updated_at: c.updated_at,
            });
        }
        let executions = match req.include_executions {
            true => Some(
                self.export_executions(req.profiles.is_some(), &profiles)
                    .await?,
            ),
            false => None,
        };
        Ok(ExportDocument {
            format: FORMAT.into(),
            version: VERSION,
            exported_at: Utc::now(),
            airlock_version: env!("CARGO_PKG_VERSION").into(),
            scope: if req.profiles.is_some() {
                "profiles"
            } else {
                "all"
            }
            .into(),
            credentials,
            profiles: out_profiles,
            requirements: Vec::new(),
            executions,
        })
    }

    /// The profiles an export covers: all of them, or the listed ids (each once, in
    /// the order given; an unknown id is an error).
    async fn chosen_profiles(&self, ids: Option<&[String]>) -> TransferResult<Vec<ProfileRow>> {
        let Some(ids) = ids else {
            return Ok(self.store.profiles_list().await?);
        };
        if ids.is_empty() {
            return Err(Invalid::new(
                "choose at least one profile, or leave out `profiles` to export everything",
            )
            .into());
        }
        let mut rows = Vec::new();
        let mut seen = BTreeSet::new();
        for id in ids {
            if !seen.insert(id.clone()) {
                continue;
            }
            rows.push(
                self.store
                    .profile_get(id)
                    .await?
                    .ok_or_else(|| TransferError::NoProfile(id.clone()))?,
            );
        }
        Ok(rows)
    }

    /// One profile as the document carries it, its secret opened.
    fn export_profile(
        &self,
        p: &ProfileRow,
        credentials: impl Iterator<Item = String>,
    ) -> TransferResult<ExportProfile> {
        Ok(ExportProfile {
            id: p.id.clone(),
            description: p.description.clone(),
            key_id: p.key_id.clone(),
            secret: self.catalog.open_profile_secret(p)?,
            locked: p.locked,
            revoked: p.revoked,
            expires_at: p.expires_at,
            allowed_hosts: p.allowed_hosts.clone(),
            record: p.record,
            replay_protection: p.replay_protection,
            approval: p.approval,
            credentials: credentials.collect(),
            created_at: p.created_at,
            updated_at: p.updated_at,
            last_used_at: p.last_used_at,
        })
    }

    /// Every execution (`scoped` false) or those of `profiles`, oldest first.
    async fn export_executions(
        &self,
        scoped: bool,
        profiles: &[ProfileRow],
    ) -> TransferResult<Vec<ExportExecution>> {
        let filters: Vec<Option<String>> = match scoped {
            false => vec![None],
            true => profiles.iter().map(|p| Some(p.id.clone())).collect(),
        };
        let mut rows = Vec::new();
        for profile_id in filters {
            let filter = ExecutionFilter {
                profile_id,
                limit: i64::MAX,
                ..Default::default()
            };
            for s in self.store.executions_list(&filter).await? {
                if let Some(e) = self.store.execution_get(&s.id).await? {
                    let mut x = ExportExecution::from(e);
                    x.egress = self
                        .store
                        .egress_list(&x.id)
                        .await?
                        .into_iter()
                        .map(Into::into)
                        .collect();
                    x.answers = self.catalog.open_answers(&x.id).await?;
                    rows.push(x);
                }
            }
        }
        rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(rows)
    }

    /// Ids of existing profiles that share `p`'s id or key id.
    async fn profile_conflicts(&self, p: &ExportProfile) -> TransferResult<Vec<String>> {
        let mut out = Vec::new();
        if let Some(row) = self.store.profile_get(&p.id).await? {
            out.push(row.id);
        }
        if let Some(k) = &p.key_id {
            if let Some(row) = self.store.profile_get_by_key_id(k).await? {
                if !out.contains(&row.id) {
                    out.push(row.id);
                }
            }
        }
        Ok(out)
    }

    async fn preview_of(&self, doc: &ExportDocument) -> TransferResult<Preview> {
        let mut credentials = Split::default();
        for c in &doc.credentials {
            let entry = CredentialEntry {
                name: c.name.clone(),
                description: c.description.clone(),
                value_exists: c.value.is_some(),
            };
            if self.store.credential_get(&c.name).await?.is_some() {
                credentials.conflict.push(entry);
            } else {
                credentials.add.push(entry);
            }
        }
        let mut profiles = Split::default();
        for p in &doc.profiles {
            let conflicts_with = self.profile_conflicts(p).await?;
            let entry = ProfileEntry {
                id: p.id.clone(),
                description: p.description.clone(),
                key_id: p.key_id.clone(),
                locked: p.locked,
                revoked: p.revoked,
                credentials: p.credentials.clone(),
                conflicts_with,
            };
            if entry.conflicts_with.is_empty() {
                profiles.add.push(entry);
            } else {
                profiles.conflict.push(entry);
            }
        }
        Ok(Preview {
            token: String::new(),
            expires_in: PENDING_TTL.as_secs(),
            exported_at: doc.exported_at,
            credentials,
            profiles,
            executions: doc.executions.as_ref().map_or(0, Vec::len),
        })
    }

    /// Turns a document into rows sealed for this instance, given the strategies.
    async fn plan_for(
        &self,
        doc: &ExportDocument,
        creds: Strategy,
        profiles: Strategy,
    ) -> TransferResult<(ImportPlan, Outcome)> {
        let mut plan = ImportPlan::default();
        let mut outcome = Outcome {
            credentials: Counts::default(),
            profiles: Counts::default(),
            executions: Counts::default(),
        };
        let mut id_of: HashMap<&str, String> = HashMap::new();
        for c in &doc.credentials {
            let existing = self.store.credential_get(&c.name).await?;
            let (id, replace) = match (&existing, creds) {
                (Some(row), Strategy::Skip) => {
                    outcome.credentials.skipped += 1;
                    id_of.insert(&c.name, row.id.clone());
                    continue;
                }
                (Some(row), Strategy::Overwrite) => {
                    outcome.credentials.overwritten += 1;
                    (row.id.clone(), true)
                }
                (None, _) => {
                    outcome.credentials.added += 1;
                    (ids::credential_id(), false)
                }
            };
            id_of.insert(&c.name, id.clone());
            plan.credentials
                .push(self.import_credential(c, id, replace)?);
        }
        for p in &doc.profiles {
            let replaces = self.profile_conflicts(p).await?;
            if !replaces.is_empty() {
                if profiles == Strategy::Skip {
                    outcome.profiles.skipped += 1;
                    continue;
                }
                outcome.profiles.overwritten += 1;
            } else {
                outcome.profiles.added += 1;
            }
            plan.profiles
                .push(self.import_profile(p, replaces, &id_of)?);
        }
        for e in doc.executions.iter().flatten() {
            plan.executions.push(document::execution_row(e));
            plan.egress.extend(document::egress_rows(e));
            for (seq, a) in e.answers.iter().enumerate() {
                let seq = i64::try_from(seq).unwrap_or(i64::MAX);
                plan.answers.push(self.catalog.seal_answer(&e.id, seq, a)?);
            }
        }
        Ok((plan, outcome))
    }

    /// A document credential as the row to write under `id`, its value sealed here.
    fn import_credential(
        &self,
        c: &ExportCredential,
        id: String,
        replace: bool,
    ) -> TransferResult<ImportCredential> {
        let value = c
            .value
            .as_deref()
            .map(|v| self.catalog.seal_credential_value(&id, v))
            .transpose()?;
        Ok(ImportCredential {
            row: CredentialRow {
                id,
                name: c.name.clone(),
                description: c.description.clone(),
                value,
                seal: c.sealing.clone().map(Into::into).unwrap_or_default(),
                created_at: c.created_at,
                updated_at: c.updated_at,
            },
            replace,
        })
    }

    /// A document profile as the row to write, its secret sealed here and its
    /// credentials named by the ids `id_of` gives the file's credential names.
    fn import_profile(
        &self,
        p: &ExportProfile,
        replaces: Vec<String>,
        id_of: &HashMap<&str, String>,
    ) -> TransferResult<ImportProfile> {
        let secret = p
            .secret
            .as_deref()
            .map(|s| self.catalog.seal_profile_secret(&p.id, s))
            .transpose()?;
        let allowed_hosts = match &p.allowed_hosts {
            None => None,
            Some(h) => Some(validate::host_patterns(h).map_err(|e| TransferError::Corrupt(e.0))?),
        };
        let credential_ids = p
            .credentials
            .iter()
            .map(|n| {
                id_of.get(n.as_str()).cloned().ok_or_else(|| {
                    TransferError::Corrupt(
                        "a profile uses a credential the file does not contain".into(),
                    )
                })
            })
            .collect::<TransferResult<Vec<String>>>()?;
        Ok(ImportProfile {
            row: ProfileRow {
                id: p.id.clone(),
                description: p.description.clone(),
                key_id: p.key_id.clone(),
                secret,
                locked: p.locked,
                revoked: p.revoked,
                expires_at: p.expires_at,
                allowed_hosts,
                record: p.record,
                replay_protection: p.replay_protection,
                approval: p.approval,
                created_at: p.created_at,
                updated_at: p.updated_at,
                last_used_at: p.last_used_at,
            },
            replaces,
            credential_ids,
        })
    }
}

/// Decrypted documents waiting for their commit, by one-time token. Each is
/// bound to the admin session that uploaded it.
#[derive(Default)]
pub struct PendingImports {
    inner: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    session_hash: String,
    created: Instant,
    doc: ExportDocument,
}

impl PendingImports {
    fn insert(&self, session_hash: String, doc: ExportDocument) -> String {
        let token = ids::session_token();
        let mut map = self.inner.lock();
        map.retain(|_, p| p.created.elapsed() < PENDING_TTL && p.session_hash != session_hash);
        while map.len() >= MAX_PENDING {
            let oldest = map
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(
            token.clone(),
            Pending {
                session_hash,
                created: Instant::now(),
                doc,
            },
        );
        token
    }

    /// Takes the document for `token` if it belongs to the session and is fresh.
    fn take(&self, token: &str, session_hash: &str) -> Option<ExportDocument> {
        let mut map = self.inner.lock();
        map.retain(|_, p| p.created.elapsed() < PENDING_TTL);
        let matches = map.iter().any(|(k, p)| {
            ids::ct_eq(k.as_bytes(), token.as_bytes()) && p.session_hash == session_hash
        });
        if matches {
            map.remove(token).map(|p| p.doc)
        } else {
            None
        }
    }
}

/// A JSON summary of a document, for logs and tests: counts only.
pub fn summary(doc: &ExportDocument) -> serde_json::Value {
    json!({
        "credentials": doc.credentials.len(),
        "profiles": doc.profiles.len(),
        "executions": doc.executions.as_ref().map(Vec::len),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_imports_are_one_time_and_session_bound() {
        let p = PendingImports::default();
        let doc = document::tests::valid_document();
        let token = p.insert("s1".into(), doc);
        assert!(p.take(&token, "s2").is_none(), "another session");
        assert!(p.take(&token, "s1").is_some());
        assert!(p.take(&token, "s1").is_none(), "one time");
    }
}
