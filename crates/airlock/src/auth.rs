//! Admin authentication: the one password, sessions and login throttling.
//!
//! Sessions are random 256-bit tokens; the database keeps only their SHA-256, so a
//! leaked database row cannot be replayed. The HTTP side (the cookie, the session
//! extractor, cross-site request protection) is in `crate::api::session`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use airlock_store::{vault, SessionRow, Store, StoreError};
use chrono::{DateTime, Utc};

use crate::ids;
use crate::validate::Invalid;

pub const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_BYTES: usize = 1024;
const META_PASSWORD: &str = "admin_password";
/// A session ends after this long without a request.
pub const SESSION_IDLE: chrono::Duration = chrono::Duration::hours(12);
/// And at the latest this long after login.
pub const SESSION_ABSOLUTE: chrono::Duration = chrono::Duration::days(7);
const LOGIN_MAX_FAILURES: u32 = 5;
const LOGIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Why an authentication step was refused. The HTTP status of each is chosen in
/// `crate::error`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("the admin password is already set; log in instead")]
    AlreadySetUp,
    /// No password yet; the message depends on what was attempted.
    #[error("{0}")]
    SetupRequired(&'static str),
    /// The password given is wrong; the message names which one.
    #[error("{0}")]
    WrongPassword(&'static str),
    /// Too many wrong passwords from this client.
    #[error("too many {what}; try again in {wait_secs} s")]
    Throttled { what: &'static str, wait_secs: u64 },
    /// A stored hash that is not text, or a hashing task that died.
    #[error("the password check failed")]
    Internal,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type AuthResult<T> = Result<T, AuthError>;

/// Failed-login counters per client address.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<Limited, (u32, Instant)>>,
}

/// Who wrong passwords are counted against: a client address for logins; a
/// session for the password re-checks of a logged-in operator (export,
/// import, password change), so that someone else's failed logins from the
/// same address (another browser, a shared proxy) never block them, and a
/// stolen session cannot try passwords without limit either.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Limited {
    Client(IpAddr),
    /// The SHA-256 of the session token.
    Session(String),
}

impl Limited {
    fn session(token: &str) -> Limited {
        Limited::Session(ids::sha256_hex(token.as_bytes()))
    }
}

impl LoginLimiter {
    /// Seconds `who` must still wait, if it is locked out.
    pub fn locked_for(&self, who: &Limited) -> Option<u64> {
        let map = self.failures.lock();
        let (count, since) = map.get(who)?;
        let elapsed = since.elapsed();
        if *count >= LOGIN_MAX_FAILURES && elapsed < LOGIN_WINDOW {
            Some((LOGIN_WINDOW - elapsed).as_secs().max(1))
        } else {
            None
        }
    }

    pub fn record_failure(&self, who: &Limited) {
        let mut map = self.failures.lock();
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < LOGIN_WINDOW);
        }
        let entry = map.entry(who.clone()).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= LOGIN_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn reset(&self, who: &Limited) {
        self.failures.lock().remove(who);
    }
}

fn check_password_rules(password: &str) -> Result<(), Invalid> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Invalid(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Invalid(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// The admin password, sessions and the failed-password limiter, over the store.
pub struct Auth {
    store: Arc<dyn Store>,
    limiter: LoginLimiter,
    /// The admin password was seen set: it never goes away again (it can only be
    /// changed), so `setup_required` stops asking the store.
    password_set: std::sync::atomic::AtomicBool,
}

impl Auth {
    pub fn new(store: Arc<dyn Store>) -> Auth {
        Auth {
            store,
            limiter: LoginLimiter::default(),
            password_set: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub async fn setup_required(&self) -> AuthResult<bool> {
        use std::sync::atomic::Ordering;
        if self.password_set.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let required = self.store.meta_get(META_PASSWORD).await?.is_none();
        if !required {
            self.password_set.store(true, Ordering::Relaxed);
        }
        Ok(required)
    }

    /// First-visit setup; refuses once a password exists. Returns a session token.
    pub async fn setup(&self, password: &str) -> AuthResult<String> {
        check_password_rules(password)?;
        if !self.setup_required().await? {
            return Err(AuthError::AlreadySetUp);
        }
        let phc = hash_blocking(password.to_string()).await?;
        if !self
            .store
            .meta_insert_if_absent(META_PASSWORD, phc.as_bytes())
            .await?
        {
            return Err(AuthError::AlreadySetUp);
        }
        self.new_session().await
    }

    /// Checks the password and returns a new session token.
    pub async fn login(&self, ip: IpAddr, password: &str) -> AuthResult<String> {
        let who = Limited::Client(ip);
        self.not_throttled(&who, "failed logins")?;
        let Some(phc) = self.store.meta_get(META_PASSWORD).await? else {
            return Err(AuthError::SetupRequired(
                "no admin password is set yet; complete setup first",
            ));
        };
        if self.verify(&who, password, phc).await? {
            self.new_session().await
        } else {
            Err(AuthError::WrongPassword("wrong password"))
        }
    }

    /// Verifies the current password (for sensitive actions) and sets a new one.
    pub async fn change_password(
        &self,
        session_token: &str,
        current: &str,
        new: &str,
    ) -> AuthResult<()> {
        let who = Limited::session(session_token);
        self.not_throttled(&who, "wrong passwords")?;
        check_password_rules(new)?;
        let phc = self.password_hash().await?;
        if !self.verify(&who, current, phc).await? {
            return Err(AuthError::WrongPassword("current password is wrong"));
        }
        let new_phc = hash_blocking(new.to_string()).await?;
        self.store
            .meta_set(META_PASSWORD, new_phc.as_bytes())
            .await?;
        // Every other session ends: a password change is how an operator evicts
        // someone who had the old one.
        self.store
            .session_delete_others(&ids::sha256_hex(session_token.as_bytes()))
            .await?;
        Ok(())
    }

    /// Checks a re-entered admin password before a sensitive action (export,
    /// import), throttled per session (see [`Limited`]).
    pub async fn reauthenticate(&self, session_token: &str, password: &str) -> AuthResult<()> {
        let who = Limited::session(session_token);
        self.not_throttled(&who, "wrong passwords")?;
        let phc = self.password_hash().await?;
        if !self.verify(&who, password, phc).await? {
            return Err(AuthError::WrongPassword("the admin password is wrong"));
        }
        Ok(())
    }

    fn not_throttled(&self, who: &Limited, what: &'static str) -> AuthResult<()> {
        match self.limiter.locked_for(who) {
            Some(wait_secs) => Err(AuthError::Throttled { what, wait_secs }),
            None => Ok(()),
        }
    }

    async fn password_hash(&self) -> AuthResult<Vec<u8>> {
        self.store
            .meta_get(META_PASSWORD)
            .await?
            .ok_or(AuthError::SetupRequired("no admin password is set"))
    }

    /// Checks `password` against the stored hash and counts the outcome for `who`.
    async fn verify(&self, who: &Limited, password: &str, phc: Vec<u8>) -> AuthResult<bool> {
        let phc = String::from_utf8(phc).map_err(|_| AuthError::Internal)?;
        let ok = verify_blocking(password.to_string(), phc).await?;
        if ok {
            self.limiter.reset(who);
        } else {
            self.limiter.record_failure(who);
        }
        Ok(ok)
    }

    async fn new_session(&self) -> AuthResult<String> {
        let token = ids::session_token();
        let now = Utc::now();
        self.store
            .session_insert(&SessionRow {
                token_hash: ids::sha256_hex(token.as_bytes()),
                created_at: now,
                last_seen_at: now,
                expires_at: now + SESSION_ABSOLUTE,
            })
            .await?;
        let _ = self.store.session_delete_expired(now).await;
        Ok(token)
    }

    pub async fn end_session(&self, token: &str) -> AuthResult<()> {
        self.store
            .session_delete(&ids::sha256_hex(token.as_bytes()))
            .await?;
        Ok(())
    }

    /// Live admin sessions, the caller's own marked `current`.
    pub async fn list_sessions(&self, current_token: &str) -> AuthResult<Vec<SessionView>> {
        let mine = ids::sha256_hex(current_token.as_bytes());
        let now = Utc::now();
        Ok(self
            .store
            .sessions_list(now)
            .await?
            .into_iter()
            .filter(|s| s.last_seen_at + SESSION_IDLE > now)
            .map(|s| SessionView {
                id: s.token_hash[..12].to_string(),
                current: s.token_hash == mine,
                created_at: s.created_at,
                last_seen_at: s.last_seen_at,
                expires_at: s.expires_at,
            })
            .collect())
    }

    /// Ends every session but the caller's; returns how many ended.
    pub async fn end_other_sessions(&self, current_token: &str) -> AuthResult<u64> {
        Ok(self
            .store
            .session_delete_others(&ids::sha256_hex(current_token.as_bytes()))
            .await?)
    }

    /// When the live session `token` ends if nothing more happens in it: its
    /// idle limit from now, or its absolute expiry if sooner. `None` when it
    /// is not a live session.
    pub async fn session_ends_at(&self, token: &str) -> AuthResult<Option<DateTime<Utc>>> {
        Ok(self
            .live_session(token)
            .await?
            .map(|s| s.expires_at.min(Utc::now() + SESSION_IDLE)))
    }

    /// Whether `token` is a live session (and refreshes its idle timer).
    pub async fn session_valid(&self, token: &str) -> AuthResult<bool> {
        Ok(self.live_session(token).await?.is_some())
    }

    /// The session of `token` if it is live (an ended one is deleted); its
    /// idle timer is refreshed.
    async fn live_session(&self, token: &str) -> AuthResult<Option<SessionRow>> {
        let hash = ids::sha256_hex(token.as_bytes());
        let Some(s) = self.store.session_get(&hash).await? else {
            return Ok(None);
        };
        let now = Utc::now();
        if s.expires_at <= now || s.last_seen_at + SESSION_IDLE <= now {
            self.store.session_delete(&hash).await?;
            return Ok(None);
        }
        // Avoid a write per request: refresh the idle timer at most once a minute.
        if now - s.last_seen_at > chrono::Duration::minutes(1) {
            self.store.session_touch(&hash, now).await?;
        }
        Ok(Some(s))
    }
}

async fn hash_blocking(password: String) -> AuthResult<String> {
    tokio::task::spawn_blocking(move || vault::hash_password(&password))
        .await
        .map_err(|_| AuthError::Internal)?
        .map_err(AuthError::from)
}

async fn verify_blocking(password: String, phc: String) -> AuthResult<bool> {
    tokio::task::spawn_blocking(move || vault::verify_password(&password, &phc))
        .await
        .map_err(|_| AuthError::Internal)
}

/// A session as the operator sees it: a short fingerprint of its hash, never the token.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SessionView {
    pub id: String,
    pub current: bool,
    pub created_at: chrono::DateTime<Utc>,
    pub last_seen_at: chrono::DateTime<Utc>,
    pub expires_at: chrono::DateTime<Utc>,
}
