//! SQLite backend of the [`Store`] trait (WAL mode, foreign keys on, migrations
//! from `migrations/` compiled into the binary).

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::{Row, SqlitePool};

use crate::{
    AdminTokenRow, AgentRequestRow, AnswerRow, ApprovalRow, ApprovalStatus, AuditFilter,
    AuditHeadRow, AuditRow, CredentialRow, EgressCounts, EgressRow, ExecutionFilter, ExecutionRow,
    ExecutionStats, ExecutionStatus, ExecutionSummary, ImportPlan, NewAuditEvent,
    PackageInstallRow, PackageRow, ProfileRow, RequestKind, RequestStatus, Result, SealSettings,
    SessionRow, Store, StoreError, AUDIT_GENESIS,
};

/// The SQLite store. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// See [`Store::profiles_epoch`].
    profiles_epoch: Arc<AtomicU64>,
    /// Serializes audit appends (each reads the chain's end, then writes after it).
    audit_lock: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and runs pending migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        // No liveness ping before each acquire: a local SQLite connection does not go
        // stale, and the ping is a round trip to the connection's worker thread on
        // every query.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(SqliteStore {
            pool,
            profiles_epoch: Arc::new(AtomicU64::new(0)),
            audit_lock: Arc::default(),
        })
    }

    /// Runs a profile write on its own task, moving the profiles epoch before it and
    /// again once it has finished (succeeded or failed). On its own task, the write
    /// runs to its end even when the caller stops waiting (an abandoned request): a
    /// dropped future would move the epoch while the statement, already handed to the
    /// connection's thread, could still commit afterwards, and a profile row read in
    /// between would pass for current.
    async fn profile_write<T: Send + 'static>(
        &self,
        write: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        self.profiles_epoch.fetch_add(1, Ordering::SeqCst);
        let moved = EpochGuard(self.profiles_epoch.clone());
        tokio::spawn(async move {
            let r = write.await;
            drop(moved);
            r
        })
        .await
        .map_err(|e| StoreError::Config(format!("profile write task: {e}")))?
    }

    /// The underlying pool, for backends layered on the same database.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

struct EpochGuard(Arc<AtomicU64>);

impl Drop for EpochGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn session_from(row: &SqliteRow) -> Result<SessionRow> {
    Ok(SessionRow {
        token_hash: row.try_get("token_hash")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

fn credential_from(row: &SqliteRow) -> Result<CredentialRow> {
    Ok(CredentialRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        value: row.try_get("value")?,
        seal: seal_from(row)?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn seal_from(row: &SqliteRow) -> Result<SealSettings> {
    let corrupt = |e: serde_json::Error| {
        StoreError::Config(format!("corrupt sealing settings in credential row: {e}"))
    };
    let hosts: String = row.try_get("bound_hosts")?;
    let methods: Option<String> = row.try_get("bound_methods")?;
    Ok(SealSettings {
        mode: row.try_get("mode")?,
        hosts: serde_json::from_str(&hosts).map_err(corrupt)?,
        methods: match methods {
            Some(m) => Some(serde_json::from_str(&m).map_err(corrupt)?),
            None => None,
        },
        header: row.try_get("bound_header")?,
        substitute_body: row.try_get("substitute_body")?,
        revoke_on_violation: row.try_get("revoke_on_violation")?,
        database: match row.try_get::<Option<String>, _>("database_login")? {
            Some(d) => Some(serde_json::from_str(&d).map_err(corrupt)?),
            None => None,
        },
    })
}

fn database_json(s: &SealSettings) -> Option<String> {
    s.database
        .as_ref()
        .and_then(|d| serde_json::to_string(d).ok())
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn profile_from(row: &SqliteRow) -> Result<ProfileRow> {
    let hosts: Option<String> = row.try_get("allowed_hosts")?;
    let allowed_hosts = match hosts {
        None => None,
        Some(s) => Some(serde_json::from_str(&s).map_err(|e| {
            StoreError::Config(format!("corrupt allowed_hosts in profile row: {e}"))
        })?),
    };
    Ok(ProfileRow {
        id: row.try_get("id")?,
        description: row.try_get("description")?,
        key_id: row.try_get("key_id")?,
        secret: row.try_get("secret")?,
        locked: row.try_get("locked")?,
        revoked: row.try_get("revoked")?,
        expires_at: row.try_get("expires_at")?,
        allowed_hosts,
        record: row.try_get("record")?,
        replay_protection: row.try_get("replay_protection")?,
        approval: row.try_get("approval")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

/// A JSON column written by [`Json`]; `None` when it is NULL or (in rows of older
/// versions) does not hold the type, which the views then show as empty.
fn json_column<T: serde::de::DeserializeOwned>(row: &SqliteRow, column: &str) -> Option<T> {
    match row.try_get::<Option<Json<T>>, _>(column) {
        Ok(v) => v.map(|j| j.0),
        Err(e) => {
            tracing::warn!(column, error = %e, "unreadable JSON column");
            None
        }
    }
}

fn approval_from(row: &SqliteRow) -> Result<ApprovalRow> {
    Ok(ApprovalRow {
        execution_id: row.try_get("execution_id")?,
        profile_id: row.try_get("profile_id")?,
        script_sha256: row.try_get("script_sha256")?,
        mode: row.try_get("mode")?,
        status: row.try_get("status")?,
        llm_timeout_secs: row.try_get("llm_timeout_secs")?,
        reason: row.try_get("reason")?,
        runs_left: row.try_get("runs_left")?,
        approved_until: row.try_get("approved_until")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_at: row.try_get("decided_at")?,
    })
}

fn request_from(row: &SqliteRow) -> Result<AgentRequestRow> {
    Ok(AgentRequestRow {
        kind: row.try_get("kind")?,
        subject: row.try_get("subject")?,
        message: row.try_get("message")?,
        status: row.try_get("status")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
        decided_at: row.try_get("decided_at")?,
    })
}

fn token_from(row: &SqliteRow) -> Result<AdminTokenRow> {
    Ok(AdminTokenRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        secret_hash: row.try_get("secret_hash")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

fn audit_from(row: &SqliteRow) -> Result<AuditRow> {
    let detail: String = row.try_get("detail")?;
    Ok(AuditRow {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        actor: row.try_get("actor")?,
        role: row.try_get("role")?,
        client: row.try_get("client")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        outcome: row.try_get("outcome")?,
        // A row whose detail no longer parses keeps its text, so the chain check
        // sees the change instead of an error.
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn execution_from(row: &SqliteRow) -> Result<ExecutionRow> {
    Ok(ExecutionRow {
        id: row.try_get("id")?,
        profile_id: row.try_get("profile_id")?,
        status: row.try_get("status")?,
        script: row.try_get("script")?,
        script_sha256: row.try_get("script_sha256")?,
        timeout_secs: row.try_get("timeout_secs")?,
        result: row.try_get("result")?,
        stdout: row.try_get("stdout")?,
        stderr: row.try_get("stderr")?,
        error: row.try_get("error")?,
        llm_request: json_column(row, "llm_request"),
        llm_exchanges: json_column(row, "llm_exchanges").unwrap_or_default(),
        redactions: json_column(row, "redactions").unwrap_or_default(),
        execution_time_ms: row.try_get("execution_time_ms")?,
        llm_wait_ms: row.try_get("llm_wait_ms")?,
        inputs: json_column(row, "inputs"),
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}

/// Appends the WHERE clause of `f` to `qb`.
fn push_filter(qb: &mut sqlx::QueryBuilder<sqlx::Sqlite>, f: &ExecutionFilter) {
    qb.push(" WHERE 1=1");
    if let Some(p) = &f.profile_id {
        qb.push(" AND profile_id = ").push_bind(p.clone());
    }
    if let Some(st) = &f.status {
        qb.push(" AND status = ").push_bind(*st);
    }
    if let Some(from) = f.created_from {
        qb.push(" AND created_at >= ").push_bind(from);
    }
    if let Some(to) = f.created_to {
        qb.push(" AND created_at < ").push_bind(to);
    }
}

/// The credential INSERT shared by `credential_insert` and imports.
async fn insert_credential<'e, E: sqlx::SqliteExecutor<'e>>(
    exec: E,
    c: &CredentialRow,
) -> Result<()> {
    sqlx::query("INSERT INTO credentials(id, name, description, value, created_at, updated_at, \
                 mode, bound_hosts, bound_methods, bound_header, substitute_body, revoke_on_violation, database_login) \
                 VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.description)
        .bind(&c.value)
        .bind(c.created_at)
        .bind(c.updated_at)
        .bind(c.seal.mode)
        .bind(json_list(&c.seal.hosts))
        .bind(c.seal.methods.as_deref().map(json_list))
        .bind(&c.seal.header)
        .bind(c.seal.substitute_body)
        .bind(c.seal.revoke_on_violation)
        .bind(database_json(&c.seal))
        .execute(exec)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("credential {} already exists", c.name))
            } else {
                e.into()
            }
        })?;
    Ok(())
}

/// [`Store::profile_update`]'s statement.
async fn update_profile(pool: &SqlitePool, p: &ProfileRow) -> Result<()> {
    let r = sqlx::query(
        "UPDATE profiles SET description = ?, key_id = ?, secret = ?, locked = ?, revoked = ?, \
         expires_at = ?, allowed_hosts = ?, record = ?, replay_protection = ?, approval = ?, updated_at = ?, \
         last_used_at = ? WHERE id = ?",
    )
    .bind(&p.description)
    .bind(&p.key_id)
    .bind(&p.secret)
    .bind(p.locked)
    .bind(p.revoked)
    .bind(p.expires_at)
    .bind(p.allowed_hosts.as_deref().map(json_list))
    .bind(p.record)
    .bind(p.replay_protection)
    .bind(p.approval)
    .bind(p.updated_at)
    .bind(p.last_used_at)
    .bind(&p.id)
    .execute(pool)
    .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The profile DELETE shared by `profile_delete` and imports (a profile replaced).
async fn delete_profile<'e, E: sqlx::SqliteExecutor<'e>>(exec: E, id: &str) -> Result<()> {
    let r = sqlx::query("DELETE FROM profiles WHERE id = ?")
        .bind(id)
        .execute(exec)
        .await?;
    if r.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// The profile INSERT shared by `profile_insert` and imports.
async fn insert_egress<'e, E: sqlx::SqliteExecutor<'e>>(exec: E, e: &EgressRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO egress_log(execution_id, at, host, port, method, path, bytes_up, bytes_down, allowed, reason, \
         violation, substituted, duration_ms, status, body_sha256) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&e.execution_id)
    .bind(e.at)
    .bind(&e.host)
    .bind(i64::from(e.port))
    .bind(&e.method)
    .bind(&e.path)
    .bind(e.bytes_up)
    .bind(e.bytes_down)
    .bind(e.allowed)
    .bind(&e.reason)
    .bind(e.violation)
    .bind(json_list(&e.substituted))
    .bind(e.duration_ms)
    .bind(e.status.map(i64::from))
    .bind(&e.body_sha256)
    .execute(exec)
    .await?;
    Ok(())
}

async fn insert_answer<'e, E: sqlx::SqliteExecutor<'e>>(exec: E, a: &AnswerRow) -> Result<()> {
    sqlx::query("INSERT INTO egress_answers(execution_id, seq, at, sealed) VALUES(?, ?, ?, ?)")
        .bind(&a.execution_id)
        .bind(a.seq)
        .bind(a.at)
        .bind(&a.sealed)
        .execute(exec)
        .await?;
    Ok(())
}

async fn insert_profile<'e, E: sqlx::SqliteExecutor<'e>>(exec: E, p: &ProfileRow) -> Result<()> {
    sqlx::query(
        "INSERT INTO profiles(id, description, key_id, secret, locked, revoked, expires_at, allowed_hosts, record, \
         replay_protection, approval, created_at, updated_at, last_used_at) \
         VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&p.id)
    .bind(&p.description)
    .bind(&p.key_id)
    .bind(&p.secret)
    .bind(p.locked)
    .bind(p.revoked)
    .bind(p.expires_at)
    .bind(p.allowed_hosts.as_deref().map(json_list))
    .bind(p.record)
    .bind(p.replay_protection)
    .bind(p.approval)
    .bind(p.created_at)
    .bind(p.updated_at)
    .bind(p.last_used_at)
    .execute(exec)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("profile {} (or its key id) already exists", p.id))
        } else {
            e.into()
        }
    })?;
    Ok(())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[async_trait]
impl Store for SqliteStore {
    async fn meta_get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("value")?),
            None => None,
        })
    }

    async fn meta_set(&self, key: &str, value: &[u8]) -> Result<()> {
        sqlx::query("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn meta_insert_if_absent(&self, key: &str, value: &[u8]) -> Result<bool> {
        let r =
            sqlx::query("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO NOTHING")
                .bind(key)
                .bind(value)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn session_insert(&self, s: &SessionRow) -> Result<()> {
        sqlx::query("INSERT INTO admin_sessions(token_hash, created_at, last_seen_at, expires_at) VALUES(?, ?, ?, ?)")
            .bind(&s.token_hash)
            .bind(s.created_at)
            .bind(s.last_seen_at)
            .bind(s.expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn session_get(&self, token_hash: &str) -> Result<Option<SessionRow>> {
        let row = sqlx::query("SELECT * FROM admin_sessions WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(session_from).transpose()
    }

    async fn session_touch(&self, token_hash: &str, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE admin_sessions SET last_seen_at = ? WHERE token_hash = ?")
            .bind(at)
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn session_delete(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM admin_sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn session_delete_expired(&self, now: DateTime<Utc>) -> Result<u64> {
        let r = sqlx::query("DELETE FROM admin_sessions WHERE expires_at <= ?")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn sessions_list(&self, now: DateTime<Utc>) -> Result<Vec<SessionRow>> {
        sqlx::query("SELECT * FROM admin_sessions WHERE expires_at > ? ORDER BY last_seen_at DESC")
            .bind(now)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(session_from)
            .collect()
    }

    async fn session_delete_others(&self, keep_token_hash: &str) -> Result<u64> {
        let r = sqlx::query("DELETE FROM admin_sessions WHERE token_hash <> ?")
            .bind(keep_token_hash)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn credentials_list(&self) -> Result<Vec<CredentialRow>> {
        sqlx::query("SELECT * FROM credentials ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(credential_from)
            .collect()
    }

    async fn credential_get(&self, name: &str) -> Result<Option<CredentialRow>> {
        sqlx::query("SELECT * FROM credentials WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(credential_from)
            .transpose()
    }

    async fn credential_insert(&self, c: &CredentialRow) -> Result<()> {
        insert_credential(&self.pool, c).await
    }

    async fn credential_update(&self, c: &CredentialRow) -> Result<()> {
        let r = sqlx::query(
            "UPDATE credentials SET description = ?, value = ?, updated_at = ?, mode = ?, bound_hosts = ?, \
             bound_methods = ?, bound_header = ?, substitute_body = ?, revoke_on_violation = ?, database_login = ? \
             WHERE id = ?",
        )
        .bind(&c.description)
        .bind(&c.value)
        .bind(c.updated_at)
        .bind(c.seal.mode)
        .bind(json_list(&c.seal.hosts))
        .bind(c.seal.methods.as_deref().map(json_list))
        .bind(&c.seal.header)
        .bind(c.seal.substitute_body)
        .bind(c.seal.revoke_on_violation)
        .bind(database_json(&c.seal))
        .bind(&c.id)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn credential_delete(&self, id: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM profile_credentials WHERE credential_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM credentials WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    async fn credential_profiles(&self, credential_id: &str) -> Result<Vec<ProfileRow>> {
        sqlx::query(
            "SELECT p.* FROM profiles p JOIN profile_credentials pc ON pc.profile_id = p.id \
             WHERE pc.credential_id = ? ORDER BY p.created_at",
        )
        .bind(credential_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(profile_from)
        .collect()
    }

    async fn profiles_list(&self) -> Result<Vec<ProfileRow>> {
        sqlx::query("SELECT * FROM profiles ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(profile_from)
            .collect()
    }

    async fn profile_get(&self, id: &str) -> Result<Option<ProfileRow>> {
        sqlx::query("SELECT * FROM profiles WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(profile_from)
            .transpose()
    }

    async fn profile_get_by_key_id(&self, key_id: &str) -> Result<Option<ProfileRow>> {
        sqlx::query("SELECT * FROM profiles WHERE key_id = ?")
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(profile_from)
            .transpose()
    }

    fn profiles_epoch(&self) -> u64 {
        self.profiles_epoch.load(Ordering::SeqCst)
    }

    async fn profile_insert(&self, p: &ProfileRow) -> Result<()> {
        let (pool, p) = (self.pool.clone(), p.clone());
        self.profile_write(async move { insert_profile(&pool, &p).await })
            .await
    }

    async fn profile_update(&self, p: &ProfileRow) -> Result<()> {
        let (pool, p) = (self.pool.clone(), p.clone());
        self.profile_write(async move { update_profile(&pool, &p).await })
            .await
    }

    async fn profile_delete(&self, id: &str) -> Result<()> {
        let (pool, id) = (self.pool.clone(), id.to_string());
        self.profile_write(async move { delete_profile(&pool, &id).await })
            .await
    }

    async fn profile_touch_used(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE profiles SET last_used_at = ? WHERE id = ?")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn nonce_claim(
        &self,
        profile_id: &str,
        nonce: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM request_nonces WHERE expires_at <= ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query(
            "INSERT INTO request_nonces(profile_id, nonce, expires_at) VALUES(?, ?, ?) \
             ON CONFLICT(profile_id, nonce) DO NOTHING",
        )
        .bind(profile_id)
        .bind(nonce)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    async fn approval_insert(&self, a: &ApprovalRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO approvals(execution_id, profile_id, script_sha256, mode, status, \
             llm_timeout_secs, reason, runs_left, approved_until, created_at, expires_at, decided_at) \
             VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.execution_id)
        .bind(&a.profile_id)
        .bind(&a.script_sha256)
        .bind(a.mode)
        .bind(a.status)
        .bind(a.llm_timeout_secs)
        .bind(&a.reason)
        .bind(a.runs_left)
        .bind(a.approved_until)
        .bind(a.created_at)
        .bind(a.expires_at)
        .bind(a.decided_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn approval_get(&self, execution_id: &str) -> Result<Option<ApprovalRow>> {
        sqlx::query("SELECT * FROM approvals WHERE execution_id = ?")
            .bind(execution_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(approval_from)
            .transpose()
    }

    async fn approvals_list(
        &self,
        statuses: &[ApprovalStatus],
        profile_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ApprovalRow>> {
        let mut qb = sqlx::QueryBuilder::new("SELECT * FROM approvals WHERE 1 = 1");
        if !statuses.is_empty() {
            qb.push(" AND status IN (");
            let mut sep = qb.separated(", ");
            for s in statuses {
                sep.push_bind(*s);
            }
            qb.push(")");
        }
        if let Some(p) = profile_id {
            qb.push(" AND profile_id = ").push_bind(p.to_string());
        }
        qb.push(" ORDER BY created_at DESC LIMIT ").push_bind(limit);
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(approval_from)
            .collect()
    }

    async fn approval_decide(&self, a: &ApprovalRow, from: ApprovalStatus) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE approvals SET status = ?, reason = ?, runs_left = ?, approved_until = ?, \
             decided_at = ? WHERE execution_id = ? AND status = ?",
        )
        .bind(a.status)
        .bind(&a.reason)
        .bind(a.runs_left)
        .bind(a.approved_until)
        .bind(a.decided_at)
        .bind(&a.execution_id)
        .bind(from)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn approval_take_grant(
        &self,
        profile_id: &str,
        script_sha256: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        // One statement: two submissions of the last counted run cannot both take it.
        let row = sqlx::query(
            "UPDATE approvals SET runs_left = runs_left - 1 WHERE execution_id = ( \
               SELECT execution_id FROM approvals WHERE profile_id = ? AND script_sha256 = ? \
               AND mode = 'first_run' AND status = 'approved' \
               AND (approved_until IS NULL OR approved_until > ?) \
               AND (runs_left IS NULL OR runs_left > 0) \
               ORDER BY decided_at DESC LIMIT 1) \
             AND (runs_left IS NULL OR runs_left > 0) RETURNING execution_id",
        )
        .bind(profile_id)
        .bind(script_sha256)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("execution_id")).transpose()?)
    }

    async fn approvals_expire(&self, now: DateTime<Utc>) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "UPDATE approvals SET status = 'expired', decided_at = ? \
             WHERE status = 'pending' AND expires_at <= ? RETURNING execution_id",
        )
        .bind(now)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get("execution_id")?))
            .collect()
    }

    async fn request_put(&self, r: &AgentRequestRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO agent_requests(kind, subject, message, status, reason, created_at, decided_at) \
             VALUES(?, ?, ?, ?, ?, ?, ?) ON CONFLICT(kind, subject) DO UPDATE SET \
             message = excluded.message, status = excluded.status, reason = excluded.reason, \
             created_at = excluded.created_at, decided_at = excluded.decided_at",
        )
        .bind(r.kind)
        .bind(&r.subject)
        .bind(&r.message)
        .bind(r.status)
        .bind(&r.reason)
        .bind(r.created_at)
        .bind(r.decided_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn request_get(
        &self,
        kind: RequestKind,
        subject: &str,
    ) -> Result<Option<AgentRequestRow>> {
        sqlx::query("SELECT * FROM agent_requests WHERE kind = ? AND subject = ?")
            .bind(kind)
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(request_from)
            .transpose()
    }

    async fn requests_list(
        &self,
        kind: Option<RequestKind>,
        status: Option<RequestStatus>,
        limit: i64,
    ) -> Result<Vec<AgentRequestRow>> {
        let mut qb = sqlx::QueryBuilder::new("SELECT * FROM agent_requests WHERE 1 = 1");
        if let Some(k) = kind {
            qb.push(" AND kind = ").push_bind(k);
        }
        if let Some(s) = status {
            qb.push(" AND status = ").push_bind(s);
        }
        qb.push(" ORDER BY created_at DESC, subject LIMIT ")
            .push_bind(limit);
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(request_from)
            .collect()
    }

    async fn request_decide(
        &self,
        kind: RequestKind,
        subject: &str,
        status: RequestStatus,
        reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE agent_requests SET status = ?, reason = ?, decided_at = ? \
             WHERE kind = ? AND subject = ? AND status = 'pending'",
        )
        .bind(status)
        .bind(reason)
        .bind(at)
        .bind(kind)
        .bind(subject)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn request_delete(&self, kind: RequestKind, subject: &str) -> Result<()> {
        sqlx::query("DELETE FROM agent_requests WHERE kind = ? AND subject = ?")
            .bind(kind)
            .bind(subject)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn admin_token_insert(&self, t: &AdminTokenRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO admin_tokens(id, name, role, secret_hash, created_at, expires_at, \
             revoked_at, last_used_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.role)
        .bind(&t.secret_hash)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.revoked_at)
        .bind(t.last_used_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn admin_token_get(&self, id: &str) -> Result<Option<AdminTokenRow>> {
        sqlx::query("SELECT * FROM admin_tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(token_from)
            .transpose()
    }

    async fn admin_tokens_list(&self) -> Result<Vec<AdminTokenRow>> {
        sqlx::query("SELECT * FROM admin_tokens ORDER BY created_at DESC")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(token_from)
            .collect()
    }

    async fn admin_token_revoke(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE admin_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn admin_token_touch(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        sqlx::query("UPDATE admin_tokens SET last_used_at = ? WHERE id = ?")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn audit_append(&self, e: &NewAuditEvent) -> Result<AuditRow> {
        let _one = self.audit_lock.lock().await;
        // IMMEDIATE: the write lock is taken before the chain's end is read, so no
        // other writer can move the snapshot between the read and the insert.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let last = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (seq, prev_hash) = match last {
            Some(r) => (r.try_get::<i64, _>("seq")? + 1, r.try_get("hash")?),
            None => (1, AUDIT_GENESIS.to_string()),
        };
        let mut row = AuditRow {
            seq,
            at: e.at,
            actor: e.actor.clone(),
            role: e.role.clone(),
            client: e.client.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            outcome: e.outcome.clone(),
            detail: e.detail.clone(),
            prev_hash,
            hash: String::new(),
        };
        row.hash = row.expected_hash();
        sqlx::query(
            "INSERT INTO audit_events(seq, at, actor, role, client, action, target, outcome, \
             detail, prev_hash, hash) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(row.seq)
        .bind(row.at)
        .bind(&row.actor)
        .bind(&row.role)
        .bind(&row.client)
        .bind(&row.action)
        .bind(&row.target)
        .bind(&row.outcome)
        .bind(row.detail.to_string())
        .bind(&row.prev_hash)
        .bind(&row.hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    async fn audit_list(&self, f: &AuditFilter) -> Result<Vec<AuditRow>> {
        let mut qb = sqlx::QueryBuilder::new("SELECT * FROM audit_events WHERE 1 = 1");
        if let Some(a) = f.after {
            qb.push(" AND seq > ").push_bind(a);
        }
        if let Some(b) = f.before {
            qb.push(" AND seq < ").push_bind(b);
        }
        if let Some(a) = &f.action {
            // A prefix match without LIKE's wildcards.
            qb.push(" AND substr(action, 1, ")
                .push_bind(a.chars().count() as i64)
                .push(") = ")
                .push_bind(a.clone());
        }
        if let Some(a) = &f.actor {
            qb.push(" AND actor = ").push_bind(a.clone());
        }
        qb.push(if f.newest_first {
            " ORDER BY seq DESC LIMIT "
        } else {
            " ORDER BY seq LIMIT "
        })
        .push_bind(f.limit);
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_from)
            .collect()
    }

    async fn audit_last(&self) -> Result<Option<AuditRow>> {
        sqlx::query("SELECT * FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(audit_from)
            .transpose()
    }

    async fn audit_head_insert(&self, h: &AuditHeadRow) -> Result<()> {
        sqlx::query("INSERT INTO audit_heads(seq, hash, at, signature) VALUES(?, ?, ?, ?)")
            .bind(h.seq)
            .bind(&h.hash)
            .bind(h.at)
            .bind(&h.signature)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn audit_heads(&self) -> Result<Vec<AuditHeadRow>> {
        let rows = sqlx::query("SELECT * FROM audit_heads ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditHeadRow {
                    seq: r.try_get("seq")?,
                    hash: r.try_get("hash")?,
                    at: r.try_get("at")?,
                    signature: r.try_get("signature")?,
                })
            })
            .collect()
    }

    async fn profile_credentials(&self, profile_id: &str) -> Result<Vec<CredentialRow>> {
        sqlx::query(
            "SELECT c.* FROM credentials c JOIN profile_credentials pc ON pc.credential_id = c.id \
             WHERE pc.profile_id = ? ORDER BY c.name",
        )
        .bind(profile_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(credential_from)
        .collect()
    }

    async fn profile_add_credentials(&self, profile_id: &str, ids: &[String]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query("INSERT INTO profile_credentials(profile_id, credential_id) VALUES(?, ?) ON CONFLICT DO NOTHING")
                .bind(profile_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn profile_remove_credentials(&self, profile_id: &str, ids: &[String]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query(
                "DELETE FROM profile_credentials WHERE profile_id = ? AND credential_id = ?",
            )
            .bind(profile_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn execution_insert(&self, e: &ExecutionRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO executions(id, profile_id, status, script, script_sha256, timeout_secs, result, stdout, stderr, \
             error, llm_request, llm_exchanges, redactions, execution_time_ms, llm_wait_ms, inputs, created_at, started_at, completed_at) \
             VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.id)
        .bind(&e.profile_id)
        .bind(e.status)
        .bind(&e.script)
        .bind(&e.script_sha256)
        .bind(e.timeout_secs)
        .bind(&e.result)
        .bind(&e.stdout)
        .bind(&e.stderr)
        .bind(&e.error)
        .bind(e.llm_request.as_ref().map(Json))
        .bind(Json(&e.llm_exchanges))
        .bind(Json(&e.redactions))
        .bind(e.execution_time_ms)
        .bind(e.llm_wait_ms)
        .bind(e.inputs.as_ref().map(Json))
        .bind(e.created_at)
        .bind(e.started_at)
        .bind(e.completed_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn execution_get(&self, id: &str) -> Result<Option<ExecutionRow>> {
        sqlx::query("SELECT * FROM executions WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(execution_from)
            .transpose()
    }

    async fn execution_update(&self, e: &ExecutionRow) -> Result<()> {
        let r = sqlx::query(
            "UPDATE executions SET status = ?, result = ?, stdout = ?, stderr = ?, error = ?, llm_request = ?, \
             llm_exchanges = ?, redactions = ?, execution_time_ms = ?, llm_wait_ms = ?, inputs = ?, started_at = ?, completed_at = ? WHERE id = ?",
        )
        .bind(e.status)
        .bind(&e.result)
        .bind(&e.stdout)
        .bind(&e.stderr)
        .bind(&e.error)
        .bind(e.llm_request.as_ref().map(Json))
        .bind(Json(&e.llm_exchanges))
        .bind(Json(&e.redactions))
        .bind(e.execution_time_ms)
        .bind(e.llm_wait_ms)
        .bind(e.inputs.as_ref().map(Json))
        .bind(e.started_at)
        .bind(e.completed_at)
        .bind(&e.id)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn executions_list(&self, f: &ExecutionFilter) -> Result<Vec<ExecutionSummary>> {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT id, profile_id, status, script_sha256, execution_time_ms, created_at, completed_at FROM executions",
        );
        push_filter(&mut qb, f);
        qb.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(f.limit)
            .push(" OFFSET ")
            .push_bind(f.offset);
        qb.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(ExecutionSummary {
                    id: r.try_get("id")?,
                    profile_id: r.try_get("profile_id")?,
                    status: r.try_get("status")?,
                    script_sha256: r.try_get("script_sha256")?,
                    execution_time_ms: r.try_get("execution_time_ms")?,
                    created_at: r.try_get("created_at")?,
                    completed_at: r.try_get("completed_at")?,
                })
            })
            .collect()
    }

    async fn executions_count(&self, f: &ExecutionFilter) -> Result<i64> {
        let mut qb = sqlx::QueryBuilder::new("SELECT COUNT(*) AS n FROM executions");
        push_filter(&mut qb, f);
        Ok(qb.build().fetch_one(&self.pool).await?.try_get("n")?)
    }

    async fn executions_interrupt(&self, message: &str, at: DateTime<Utc>) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE executions SET status = ?, error = ?, llm_request = NULL, completed_at = ? \
             WHERE status IN (?, ?, ?)",
        )
        .bind(ExecutionStatus::Error)
        .bind(message)
        .bind(at)
        .bind(ExecutionStatus::Pending)
        .bind(ExecutionStatus::Running)
        .bind(ExecutionStatus::AwaitingLlm)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn execution_stats(&self, since: Option<DateTime<Utc>>) -> Result<ExecutionStats> {
        let since = since.unwrap_or(DateTime::<Utc>::MIN_UTC);
        fn pairs<K>(rows: Vec<SqliteRow>) -> Result<Vec<(K, i64)>>
        where
            K: for<'r> sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
        {
            rows.iter()
                .map(|r| Ok((r.try_get::<K, _>("k")?, r.try_get::<i64, _>("n")?)))
                .collect()
        }
        let by_status = pairs(
            sqlx::query("SELECT status AS k, COUNT(*) AS n FROM executions WHERE created_at >= ? GROUP BY status ORDER BY status")
                .bind(since)
                .fetch_all(&self.pool)
                .await?,
        )?;
        let by_profile = pairs(
            sqlx::query("SELECT profile_id AS k, COUNT(*) AS n FROM executions WHERE created_at >= ? GROUP BY profile_id ORDER BY n DESC")
                .bind(since)
                .fetch_all(&self.pool)
                .await?,
        )?;
        let by_day = pairs(
            sqlx::query("SELECT substr(created_at, 1, 10) AS k, COUNT(*) AS n FROM executions WHERE created_at >= ? GROUP BY k ORDER BY k")
                .bind(since)
                .fetch_all(&self.pool)
                .await?,
        )?;
        let mut durations_ms: Vec<i64> = sqlx::query_scalar(
            "SELECT execution_time_ms FROM executions WHERE created_at >= ? AND execution_time_ms IS NOT NULL \
             ORDER BY created_at DESC LIMIT 10000",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        durations_ms.sort_unstable();
        Ok(ExecutionStats {
            by_status,
            by_profile,
            by_day,
            durations_ms,
        })
    }

    async fn egress_insert(&self, e: &EgressRow) -> Result<()> {
        insert_egress(&self.pool, e).await
    }

    async fn egress_list(&self, execution_id: &str) -> Result<Vec<EgressRow>> {
        sqlx::query("SELECT * FROM egress_log WHERE execution_id = ? ORDER BY id")
            .bind(execution_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let port: i64 = r.try_get("port")?;
                Ok(EgressRow {
                    execution_id: r.try_get("execution_id")?,
                    at: r.try_get("at")?,
                    host: r.try_get("host")?,
                    port: u16::try_from(port)
                        .map_err(|_| StoreError::Config(format!("corrupt egress port {port}")))?,
                    method: r.try_get("method")?,
                    path: r.try_get("path")?,
                    bytes_up: r.try_get("bytes_up")?,
                    bytes_down: r.try_get("bytes_down")?,
                    duration_ms: r.try_get("duration_ms")?,
                    status: r
                        .try_get::<Option<i64>, _>("status")?
                        .and_then(|s| u16::try_from(s).ok()),
                    body_sha256: r.try_get("body_sha256")?,
                    allowed: r.try_get("allowed")?,
                    reason: r.try_get("reason")?,
                    violation: r.try_get("violation")?,
                    substituted: serde_json::from_str(&r.try_get::<String, _>("substituted")?)
                        .map_err(|e| {
                            StoreError::Config(format!("corrupt egress substituted list: {e}"))
                        })?,
                })
            })
            .collect()
    }

    async fn answers_insert(&self, rows: &[AnswerRow]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for a in rows {
            insert_answer(&mut *tx, a).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn answers_list(&self, execution_id: &str) -> Result<Vec<AnswerRow>> {
        sqlx::query("SELECT * FROM egress_answers WHERE execution_id = ? ORDER BY seq")
            .bind(execution_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(AnswerRow {
                    execution_id: r.try_get("execution_id")?,
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    sealed: r.try_get("sealed")?,
                })
            })
            .collect()
    }

    async fn answers_count(&self, execution_id: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM egress_answers WHERE execution_id = ?")
                .bind(execution_id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn answers_prune(&self, before: DateTime<Utc>) -> Result<u64> {
        let r = sqlx::query("DELETE FROM egress_answers WHERE at < ?")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn egress_counts(&self, since: Option<DateTime<Utc>>) -> Result<EgressCounts> {
        let since = since.unwrap_or(DateTime::<Utc>::MIN_UTC);
        let row = sqlx::query(
            "SELECT COALESCE(SUM(allowed), 0) AS allowed, COALESCE(SUM(1 - allowed), 0) AS refused \
             FROM egress_log WHERE at >= ?",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(EgressCounts {
            allowed: row.try_get("allowed")?,
            refused: row.try_get("refused")?,
        })
    }

    async fn packages_list(&self) -> Result<Vec<PackageRow>> {
        sqlx::query("SELECT * FROM packages ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(PackageRow {
                    name: r.try_get("name")?,
                    spec: r.try_get("spec")?,
                    status: r.try_get("status")?,
                    installed_version: r.try_get("installed_version")?,
                    error: r.try_get("error")?,
                    requested_at: r.try_get("requested_at")?,
                    install_id: r.try_get("install_id")?,
                })
            })
            .collect()
    }

    async fn package_upsert(&self, p: &PackageRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO packages(name, spec, status, installed_version, error, requested_at, install_id) \
             VALUES(?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, status = excluded.status, \
             installed_version = excluded.installed_version, error = excluded.error, \
             requested_at = excluded.requested_at, install_id = excluded.install_id",
        )
        .bind(&p.name)
        .bind(&p.spec)
        .bind(p.status)
        .bind(&p.installed_version)
        .bind(&p.error)
        .bind(p.requested_at)
        .bind(&p.install_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn package_delete(&self, name: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM packages WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn package_install_insert(&self, i: &PackageInstallRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO package_installs(id, status, specs, log, error, created_at, finished_at) \
             VALUES(?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&i.id)
        .bind(i.status)
        .bind(Json(&i.specs))
        .bind(&i.log)
        .bind(&i.error)
        .bind(i.created_at)
        .bind(i.finished_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn package_install_update(&self, i: &PackageInstallRow) -> Result<()> {
        sqlx::query(
            "UPDATE package_installs SET status = ?, specs = ?, log = ?, error = ?, finished_at = ? \
             WHERE id = ?",
        )
        .bind(i.status)
        .bind(Json(&i.specs))
        .bind(&i.log)
        .bind(&i.error)
        .bind(i.finished_at)
        .bind(&i.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn package_install_get(&self, id: &str) -> Result<Option<PackageInstallRow>> {
        let Some(r) = sqlx::query("SELECT * FROM package_installs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(PackageInstallRow {
            id: r.try_get("id")?,
            status: r.try_get("status")?,
            specs: json_column(&r, "specs").unwrap_or_default(),
            log: r.try_get("log")?,
            error: r.try_get("error")?,
            created_at: r.try_get("created_at")?,
            finished_at: r.try_get("finished_at")?,
        }))
    }

    async fn package_installs_interrupt(&self, message: &str, at: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE package_installs SET status = 'failed', error = ?, finished_at = ? \
             WHERE status IN ('pending', 'installing')",
        )
        .bind(message)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn import_apply(&self, plan: ImportPlan) -> Result<u64> {
        let pool = self.pool.clone();
        self.profile_write(async move { import_apply(&pool, &plan).await })
            .await
    }
}

/// [`Store::import_apply`]: one transaction; any error rolls all of it back.
async fn import_apply(pool: &SqlitePool, plan: &ImportPlan) -> Result<u64> {
    let mut tx = pool.begin().await?;
    for c in &plan.credentials {
        let row = &c.row;
        if c.replace {
            let r = sqlx::query(
                "UPDATE credentials SET description = ?, value = ?, created_at = ?, updated_at = ?, mode = ?, \
                 bound_hosts = ?, bound_methods = ?, bound_header = ?, substitute_body = ?, \
                 revoke_on_violation = ?, database_login = ? WHERE id = ?",
            )
            .bind(&row.description)
            .bind(&row.value)
            .bind(row.created_at)
            .bind(row.updated_at)
            .bind(row.seal.mode)
            .bind(json_list(&row.seal.hosts))
            .bind(row.seal.methods.as_deref().map(json_list))
            .bind(&row.seal.header)
            .bind(row.seal.substitute_body)
            .bind(row.seal.revoke_on_violation)
            .bind(database_json(&row.seal))
            .bind(&row.id)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        } else {
            insert_credential(&mut *tx, row).await?;
        }
    }
    for p in &plan.profiles {
        for old in &p.replaces {
            delete_profile(&mut *tx, old).await?;
        }
        insert_profile(&mut *tx, &p.row).await?;
        for cid in &p.credential_ids {
            sqlx::query("INSERT INTO profile_credentials(profile_id, credential_id) VALUES(?, ?) ON CONFLICT DO NOTHING")
                .bind(&p.row.id)
                .bind(cid)
                .execute(&mut *tx)
                .await?;
        }
    }
    let mut inserted = 0;
    // Executions this import inserts (their logs and answers go in with them).
    let mut fresh = std::collections::HashSet::new();
    for e in &plan.executions {
        let r = sqlx::query(
            "INSERT INTO executions(id, profile_id, status, script, script_sha256, timeout_secs, result, stdout, stderr, \
             error, llm_request, llm_exchanges, redactions, execution_time_ms, llm_wait_ms, inputs, created_at, started_at, completed_at) \
             VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
        )
        .bind(&e.id)
        .bind(&e.profile_id)
        .bind(e.status)
        .bind(&e.script)
        .bind(&e.script_sha256)
        .bind(e.timeout_secs)
        .bind(&e.result)
        .bind(&e.stdout)
        .bind(&e.stderr)
        .bind(&e.error)
        .bind(e.llm_request.as_ref().map(Json))
        .bind(Json(&e.llm_exchanges))
        .bind(Json(&e.redactions))
        .bind(e.execution_time_ms)
        .bind(e.llm_wait_ms)
        .bind(e.inputs.as_ref().map(Json))
        .bind(e.created_at)
        .bind(e.started_at)
        .bind(e.completed_at)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() > 0 {
            fresh.insert(e.id.as_str());
        }
        inserted += r.rows_affected();
    }
    for e in plan
        .egress
        .iter()
        .filter(|e| fresh.contains(e.execution_id.as_str()))
    {
        insert_egress(&mut *tx, e).await?;
    }
    for a in plan
        .answers
        .iter()
        .filter(|a| fresh.contains(a.execution_id.as_str()))
    {
        insert_answer(&mut *tx, a).await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn cred(id: &str, name: &str) -> CredentialRow {
        CredentialRow {
            id: id.into(),
            name: name.into(),
            description: format!("{name} desc"),
            value: None,
            seal: SealSettings::default(),
            created_at: now(),
            updated_at: now(),
        }
    }

    fn profile(id: &str) -> ProfileRow {
        ProfileRow {
            id: id.into(),
            description: "p".into(),
            key_id: None,
            secret: None,
            locked: false,
            revoked: false,
            expires_at: None,
            allowed_hosts: Some(vec!["api.example.com".into()]),
            record: crate::RecordMode::Hashes,
            replay_protection: false,
            approval: crate::ApprovalMode::Off,
            created_at: now(),
            updated_at: now(),
            last_used_at: None,
        }
    }

    #[tokio::test]
    async fn credentials_and_profiles_persist_in_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("airlock.db");
        {
            let s = SqliteStore::open(&db).await.unwrap();
            let mut c = cred("cred_1", "STRIPE_KEY");
            s.credential_insert(&c).await.unwrap();
            let dup = s.credential_insert(&cred("cred_2", "STRIPE_KEY")).await;
            assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
            c.value = Some(vec![1, 2, 3]);
            c.description = "new".into();
            s.credential_update(&c).await.unwrap();
            let mut p = profile("prf_1");
            s.profile_insert(&p).await.unwrap();
            s.profile_add_credentials("prf_1", &["cred_1".into()])
                .await
                .unwrap();
            s.profile_add_credentials("prf_1", &["cred_1".into()])
                .await
                .unwrap();
            p.locked = true;
            p.key_id = Some("ark_abc".into());
            p.secret = Some(vec![9; 40]);
            p.replay_protection = true;
            s.profile_update(&p).await.unwrap();
            s.close().await;
        }
        let s = SqliteStore::open(&db).await.unwrap();
        let c = s.credential_get("STRIPE_KEY").await.unwrap().unwrap();
        assert_eq!(c.value, Some(vec![1, 2, 3]));
        assert_eq!(c.description, "new");
        let p = s.profile_get_by_key_id("ark_abc").await.unwrap().unwrap();
        assert!(p.locked);
        assert_eq!(p.allowed_hosts, Some(vec!["api.example.com".to_string()]));
        assert_eq!(p.secret, Some(vec![9; 40]));
        assert!(p.replay_protection);
        let creds = s.profile_credentials("prf_1").await.unwrap();
        assert_eq!(
            creds.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            vec!["STRIPE_KEY"]
        );
        assert_eq!(s.credential_profiles("cred_1").await.unwrap().len(), 1);
        s.profile_remove_credentials("prf_1", &["cred_1".into()])
            .await
            .unwrap();
        assert!(s.profile_credentials("prf_1").await.unwrap().is_empty());
        s.credential_delete("cred_1").await.unwrap();
        assert!(matches!(
            s.credential_delete("cred_1").await,
            Err(StoreError::NotFound)
        ));
        s.profile_delete("prf_1").await.unwrap();
        assert!(s.profiles_list().await.unwrap().is_empty());
        // WAL mode is on.
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(s.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn meta_insert_if_absent_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        assert!(s.meta_insert_if_absent("k", b"1").await.unwrap());
        assert!(!s.meta_insert_if_absent("k", b"2").await.unwrap());
        assert_eq!(s.meta_get("k").await.unwrap(), Some(b"1".to_vec()));
        s.meta_set("k", b"3").await.unwrap();
        assert_eq!(s.meta_get("k").await.unwrap(), Some(b"3".to_vec()));
    }

    fn exec(id: &str, profile: &str, st: ExecutionStatus, ms: Option<i64>) -> ExecutionRow {
        ExecutionRow {
            id: id.into(),
            profile_id: profile.into(),
            status: st,
            script: "set_result(1)".into(),
            script_sha256: "ab".into(),
            timeout_secs: 60,
            result: None,
            stdout: String::new(),
            stderr: String::new(),
            error: None,
            llm_request: None,
            llm_exchanges: Vec::new(),
            redactions: Vec::new(),
            execution_time_ms: ms,
            llm_wait_ms: 0,
            inputs: None,
            created_at: now(),
            started_at: None,
            completed_at: None,
        }
    }

    #[tokio::test]
    async fn egress_log_lists_in_order_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        let row = |exec: &str, host: &str, allowed: bool| EgressRow {
            execution_id: exec.into(),
            at: now(),
            host: host.into(),
            port: 443,
            method: "CONNECT".into(),
            path: None,
            bytes_up: 10,
            bytes_down: 20,
            duration_ms: allowed.then_some(1234),
            allowed,
            reason: if allowed {
                "api.example.com"
            } else {
                "not listed"
            }
            .into(),
            violation: !allowed,
            substituted: if allowed { vec!["KEY".into()] } else { vec![] },
            status: allowed.then_some(200),
            body_sha256: allowed.then(|| "ab".repeat(32)),
        };
        let a = row("e1", "api.example.com", true);
        let b = EgressRow {
            method: "GET".into(),
            path: Some("/x".into()),
            port: 80,
            ..row("e1", "evil.example", false)
        };
        s.egress_insert(&a).await.unwrap();
        s.egress_insert(&b).await.unwrap();
        s.egress_insert(&row("e2", "other", false)).await.unwrap();
        assert_eq!(s.egress_list("e1").await.unwrap(), vec![a, b]);
        assert_eq!(s.egress_list("nope").await.unwrap(), vec![]);
        assert_eq!(
            s.egress_counts(None).await.unwrap(),
            EgressCounts {
                allowed: 1,
                refused: 2
            }
        );
        let later = now() + chrono::Duration::days(1);
        assert_eq!(
            s.egress_counts(Some(later)).await.unwrap(),
            EgressCounts::default()
        );
    }

    #[tokio::test]
    async fn executions_filter_interrupt_and_stats() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        s.execution_insert(&exec("e1", "p1", ExecutionStatus::Completed, Some(5)))
            .await
            .unwrap();
        s.execution_insert(&exec("e2", "p1", ExecutionStatus::Running, None))
            .await
            .unwrap();
        s.execution_insert(&exec("e3", "p2", ExecutionStatus::AwaitingLlm, None))
            .await
            .unwrap();
        s.execution_insert(&exec("e4", "p2", ExecutionStatus::Pending, None))
            .await
            .unwrap();
        let mut e1 = s.execution_get("e1").await.unwrap().unwrap();
        e1.stdout = "hello".into();
        e1.result = Some("1".into());
        s.execution_update(&e1).await.unwrap();
        assert_eq!(s.execution_get("e1").await.unwrap().unwrap(), e1);

        let f = ExecutionFilter {
            profile_id: Some("p1".into()),
            limit: 10,
            ..Default::default()
        };
        let ids: Vec<String> = s
            .executions_list(&f)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, vec!["e2", "e1"]);
        assert_eq!(s.executions_count(&f).await.unwrap(), 2);
        let f = ExecutionFilter {
            status: Some(ExecutionStatus::Pending),
            limit: 10,
            ..Default::default()
        };
        assert_eq!(s.executions_count(&f).await.unwrap(), 1);

        assert_eq!(
            s.executions_interrupt("interrupted by server restart", now())
                .await
                .unwrap(),
            3
        );
        for id in ["e2", "e3", "e4"] {
            let e = s.execution_get(id).await.unwrap().unwrap();
            assert_eq!(e.status, ExecutionStatus::Error);
            assert_eq!(e.error.as_deref(), Some("interrupted by server restart"));
            assert!(e.completed_at.is_some());
        }
        assert_eq!(
            s.execution_get("e1").await.unwrap().unwrap().status,
            ExecutionStatus::Completed
        );

        let st = s.execution_stats(None).await.unwrap();
        assert_eq!(
            st.by_status,
            vec![(ExecutionStatus::Completed, 1), (ExecutionStatus::Error, 3)]
        );
        assert_eq!(st.durations_ms, vec![5]);
        assert_eq!(st.by_profile.iter().map(|p| p.1).sum::<i64>(), 4);
    }

    #[tokio::test]
    async fn profiles_epoch_moves_with_every_profile_write_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        let mut p = profile("prf_epoch");
        let e0 = s.profiles_epoch();
        s.profile_insert(&p).await.unwrap();
        let e1 = s.profiles_epoch();
        assert!(e1 > e0, "insert moves the epoch");
        s.profile_get(&p.id).await.unwrap();
        s.profile_touch_used(&p.id, now()).await.unwrap();
        assert_eq!(s.profiles_epoch(), e1, "reads and last-used stamps do not");
        p.revoked = true;
        s.profile_update(&p).await.unwrap();
        let e2 = s.profiles_epoch();
        assert!(e2 > e1, "update moves the epoch");
        // A failed write moves it too: the caller cannot know what it changed.
        let mut ghost = profile("prf_ghost");
        ghost.description = "x".into();
        assert!(s.profile_update(&ghost).await.is_err());
        let e3 = s.profiles_epoch();
        assert!(e3 > e2);
        s.profile_delete(&p.id).await.unwrap();
        assert!(s.profiles_epoch() > e3, "delete moves the epoch");
    }

    /// A write whose caller stops waiting (an abandoned request) still moves the epoch
    /// a second time only once it has reached the database, so no profile row read in
    /// between passes for current.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_abandoned_profile_write_moves_the_epoch_after_it_lands() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        let mut p = profile("prf_abandoned");
        s.profile_insert(&p).await.unwrap();
        // Another connection holds the write lock, so the update waits for it.
        let mut blocker = s.pool().acquire().await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *blocker)
            .await
            .unwrap();
        p.revoked = true;
        let write = s.profile_update(&p);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), write)
                .await
                .is_err(),
            "the update should wait for the lock"
        );
        // The caller gave up; the write has not landed.
        let during = s.profiles_epoch();
        sqlx::query("COMMIT").execute(&mut *blocker).await.unwrap();
        drop(blocker);
        let mut landed = false;
        for _ in 0..200 {
            if s.profile_get(&p.id).await.unwrap().unwrap().revoked {
                landed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(landed, "the abandoned update still runs to its end");
        for _ in 0..50 {
            if s.profiles_epoch() != during {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the epoch did not move after the abandoned write landed");
    }

    #[tokio::test]
    async fn import_apply_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        let mut existing = profile("prf_old");
        existing.key_id = Some("ark_taken".into());
        s.profile_insert(&existing).await.unwrap();
        s.credential_insert(&cred("cred_old", "OLD")).await.unwrap();

        let mut clash = profile("prf_new");
        clash.key_id = Some("ark_taken".into());
        let bad = ImportPlan {
            credentials: vec![crate::ImportCredential {
                row: cred("cred_new", "NEW"),
                replace: false,
            }],
            profiles: vec![crate::ImportProfile {
                row: clash.clone(),
                replaces: vec![],
                credential_ids: vec!["cred_new".into()],
            }],
            executions: vec![exec("e1", "prf_new", ExecutionStatus::Completed, Some(1))],
            ..Default::default()
        };
        let err = s.import_apply(bad).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert!(s.credential_get("NEW").await.unwrap().is_none());
        assert!(s.execution_get("e1").await.unwrap().is_none());

        // Replacing the holder of the key id, and overwriting a credential in place.
        let mut old = cred("cred_old", "OLD");
        old.description = "overwritten".into();
        old.value = Some(vec![4, 5]);
        let good = ImportPlan {
            credentials: vec![
                crate::ImportCredential {
                    row: cred("cred_new", "NEW"),
                    replace: false,
                },
                crate::ImportCredential {
                    row: old.clone(),
                    replace: true,
                },
            ],
            profiles: vec![crate::ImportProfile {
                row: clash,
                replaces: vec!["prf_old".into()],
                credential_ids: vec!["cred_new".into(), "cred_old".into()],
            }],
            executions: vec![exec("e1", "prf_new", ExecutionStatus::Completed, Some(1))],
            egress: vec![egress_row("e1", "api.example.com")],
            answers: vec![answer_row("e1", 0, 3)],
        };
        let executions = good.executions.clone();
        assert_eq!(s.import_apply(good).await.unwrap(), 1);
        assert_eq!(s.egress_list("e1").await.unwrap().len(), 1);
        assert_eq!(s.answers_count("e1").await.unwrap(), 1);
        assert!(s.profile_get("prf_old").await.unwrap().is_none());
        let p = s.profile_get_by_key_id("ark_taken").await.unwrap().unwrap();
        assert_eq!(p.id, "prf_new");
        let names: Vec<String> = s
            .profile_credentials("prf_new")
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, vec!["NEW", "OLD"]);
        let c = s.credential_get("OLD").await.unwrap().unwrap();
        assert_eq!(
            (c.description.as_str(), c.value),
            ("overwritten", Some(vec![4, 5]))
        );
        // The same executions again are skipped, not duplicated.
        let again = ImportPlan {
            executions,
            egress: vec![egress_row("e1", "again.example.com")],
            answers: vec![answer_row("e1", 1, 3)],
            ..Default::default()
        };
        assert_eq!(s.import_apply(again).await.unwrap(), 0);
        assert_eq!(
            s.egress_list("e1").await.unwrap().len(),
            1,
            "skipped with it"
        );
        assert_eq!(s.answers_count("e1").await.unwrap(), 1);
    }

    fn egress_row(exec: &str, host: &str) -> EgressRow {
        EgressRow {
            execution_id: exec.into(),
            at: now(),
            host: host.into(),
            port: 443,
            method: "GET".into(),
            path: Some("/".into()),
            bytes_up: 1,
            bytes_down: 2,
            duration_ms: Some(3),
            allowed: true,
            reason: "allowed".into(),
            violation: false,
            substituted: vec![],
            status: Some(200),
            body_sha256: None,
        }
    }

    fn answer_row(exec: &str, seq: i64, days_ago: i64) -> AnswerRow {
        AnswerRow {
            execution_id: exec.into(),
            seq,
            at: now() - chrono::Duration::days(days_ago),
            sealed: vec![seq as u8; 40],
        }
    }

    fn approval(exec: &str, status: ApprovalStatus, runs_left: Option<i64>) -> ApprovalRow {
        ApprovalRow {
            execution_id: exec.into(),
            profile_id: "prf_1".into(),
            script_sha256: "abc".into(),
            mode: crate::ApprovalMode::FirstRun,
            status,
            llm_timeout_secs: 60,
            reason: None,
            runs_left,
            approved_until: None,
            created_at: now(),
            expires_at: now() + chrono::Duration::hours(1),
            decided_at: None,
        }
    }

    async fn execution(s: &SqliteStore, id: &str) {
        s.execution_insert(&ExecutionRow {
            id: id.into(),
            profile_id: "prf_1".into(),
            status: ExecutionStatus::AwaitingApproval,
            script: "1".into(),
            script_sha256: "abc".into(),
            timeout_secs: 5,
            result: None,
            stdout: String::new(),
            stderr: String::new(),
            error: None,
            llm_request: None,
            llm_exchanges: vec![],
            redactions: vec![],
            execution_time_ms: None,
            llm_wait_ms: 0,
            inputs: None,
            created_at: now(),
            started_at: None,
            completed_at: None,
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn agent_requests_are_decided_once_and_reopened_by_a_new_put() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("r.db")).await.unwrap();
        let row = AgentRequestRow {
            kind: RequestKind::Slot,
            subject: "API_KEY".into(),
            message: "for the reports".into(),
            status: RequestStatus::Pending,
            reason: None,
            created_at: now(),
            decided_at: None,
        };
        s.request_put(&row).await.unwrap();
        assert!(s
            .request_decide(
                RequestKind::Slot,
                "API_KEY",
                RequestStatus::Rejected,
                Some("no"),
                now()
            )
            .await
            .unwrap());
        // Decided already: a second decision changes nothing.
        assert!(!s
            .request_decide(
                RequestKind::Slot,
                "API_KEY",
                RequestStatus::Accepted,
                None,
                now()
            )
            .await
            .unwrap());
        let got = s
            .request_get(RequestKind::Slot, "API_KEY")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.status, RequestStatus::Rejected);
        assert_eq!(got.reason.as_deref(), Some("no"));
        // Same subject, other kind: a different request.
        assert!(s
            .request_get(RequestKind::Profile, "API_KEY")
            .await
            .unwrap()
            .is_none());
        // Asking again reopens it.
        s.request_put(&AgentRequestRow {
            message: "again".into(),
            ..row.clone()
        })
        .await
        .unwrap();
        let pending = s
            .requests_list(None, Some(RequestStatus::Pending), 10)
            .await
            .unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].message, "again");
        assert!(pending[0].reason.is_none());
        s.request_delete(RequestKind::Slot, "API_KEY")
            .await
            .unwrap();
        assert!(s.requests_list(None, None, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn approvals_decide_once_grant_counted_runs_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        s.profile_insert(&profile("prf_1")).await.unwrap();
        for id in ["exec_a", "exec_b", "exec_c"] {
            execution(&s, id).await;
        }
        // Nothing approved yet: no grant.
        s.approval_insert(&approval("exec_a", ApprovalStatus::Pending, None))
            .await
            .unwrap();
        assert_eq!(
            s.approval_take_grant("prf_1", "abc", now()).await.unwrap(),
            None
        );
        // Approved for two more runs: exactly two are taken.
        let mut a = approval("exec_a", ApprovalStatus::Approved, Some(2));
        a.decided_at = Some(now());
        assert!(s
            .approval_decide(&a, ApprovalStatus::Pending)
            .await
            .unwrap());
        // A second decision on the same request loses.
        let mut d = a.clone();
        d.status = ApprovalStatus::Denied;
        assert!(!s
            .approval_decide(&d, ApprovalStatus::Pending)
            .await
            .unwrap());
        for _ in 0..2 {
            assert_eq!(
                s.approval_take_grant("prf_1", "abc", now())
                    .await
                    .unwrap()
                    .as_deref(),
                Some("exec_a")
            );
        }
        assert_eq!(
            s.approval_take_grant("prf_1", "abc", now()).await.unwrap(),
            None
        );
        // Another script never rides on it.
        assert_eq!(
            s.approval_take_grant("prf_1", "other", now())
                .await
                .unwrap(),
            None
        );
        // An unlimited grant past its end date grants nothing.
        let mut b = approval("exec_b", ApprovalStatus::Approved, None);
        b.approved_until = Some(now() + chrono::Duration::seconds(60));
        b.decided_at = Some(now());
        s.approval_insert(&b).await.unwrap();
        assert!(s
            .approval_take_grant("prf_1", "abc", now())
            .await
            .unwrap()
            .is_some());
        let later = now() + chrono::Duration::seconds(61);
        assert_eq!(
            s.approval_take_grant("prf_1", "abc", later).await.unwrap(),
            None
        );
        // A pending request past its expiry is expired once.
        let mut c = approval("exec_c", ApprovalStatus::Pending, None);
        c.expires_at = now() - chrono::Duration::seconds(1);
        s.approval_insert(&c).await.unwrap();
        assert_eq!(
            s.approvals_expire(now()).await.unwrap(),
            vec!["exec_c".to_string()]
        );
        assert!(s.approvals_expire(now()).await.unwrap().is_empty());
        let got = s.approval_get("exec_c").await.unwrap().unwrap();
        assert_eq!(got.status, ApprovalStatus::Expired);
        let pending = s
            .approvals_list(&[ApprovalStatus::Approved], Some("prf_1"), 10)
            .await
            .unwrap();
        assert_eq!(pending.len(), 2);
        // A restart leaves executions that wait for approval waiting.
        assert_eq!(s.executions_interrupt("x", now()).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_nonce_is_claimed_once_per_profile_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        s.profile_insert(&profile("prf_1")).await.unwrap();
        s.profile_insert(&profile("prf_2")).await.unwrap();
        let t = now();
        let later = t + chrono::Duration::seconds(600);
        assert!(s.nonce_claim("prf_1", "n1", later, t).await.unwrap());
        assert!(!s.nonce_claim("prf_1", "n1", later, t).await.unwrap());
        // Another profile's nonces are its own.
        assert!(s.nonce_claim("prf_2", "n1", later, t).await.unwrap());
        // Once expired it is forgotten (its timestamp is out of the window then).
        let after = later + chrono::Duration::seconds(1);
        assert!(s.nonce_claim("prf_1", "n2", after, after).await.unwrap());
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM request_nonces WHERE nonce = 'n1'")
                .fetch_one(s.pool())
                .await
                .unwrap();
        assert_eq!(left, 0);
        // Deleting the profile deletes its nonces.
        s.profile_delete("prf_1").await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM request_nonces")
            .fetch_one(s.pool())
            .await
            .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn recorded_answers_list_in_order_and_are_pruned_by_age() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.db")).await.unwrap();
        let rows = [(1, 1), (0, 10), (2, 40)].map(|(seq, age)| answer_row("e1", seq, age));
        s.answers_insert(&rows).await.unwrap();
        s.answers_insert(&[answer_row("e2", 0, 40)]).await.unwrap();
        let dup = s
            .answers_insert(&[answer_row("e3", 0, 1), answer_row("e1", 1, 1)])
            .await;
        assert!(dup.is_err(), "one answer per place");
        assert_eq!(s.answers_count("e3").await.unwrap(), 0, "all or none");
        let seqs: Vec<i64> = s
            .answers_list("e1")
            .await
            .unwrap()
            .iter()
            .map(|a| a.seq)
            .collect();
        assert_eq!(seqs, vec![0, 1, 2]);
        let last = &s.answers_list("e1").await.unwrap()[2];
        assert_eq!(
            (last.execution_id.as_str(), last.sealed.clone()),
            ("e1", vec![2u8; 40])
        );
        assert_eq!(
            s.answers_prune(now() - chrono::Duration::days(30))
                .await
                .unwrap(),
            2
        );
        assert_eq!(s.answers_count("e1").await.unwrap(), 2);
        assert_eq!(s.answers_count("e2").await.unwrap(), 0);
    }
}
