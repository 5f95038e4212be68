//! Application start-up and shared state.
//!
//! [`App::open`] does everything `airlock serve` needs before it can answer a
//! request: data directory, master key, database, key check. Tests call it with
//! a temporary directory and drive [`App::router`] directly.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use airlock_store::{KeyOrigin, SqliteStore, Store, StoreError, Vault};

use crate::auth::Auth;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::runner::{Runner, RunnerLimits, SealedTls, INTERRUPTED};

const META_KEY_CHECK: &str = "key_check";
const KEY_CHECK_AAD: &str = "meta:key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"airlock master key check v1";

/// Why the server could not start. Each message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot prepare data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("master key: {0}")]
    MasterKey(String),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Egress(String),
    #[error("audit log: {0}")]
    Audit(String),
    #[error("approvals: {0}")]
    Approvals(String),
}

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub catalog: Catalog,
    /// The admin password, sessions and the failed-password limiter.
    pub auth: Arc<Auth>,
    pub key_origin: KeyOrigin,
    pub runner: Arc<Runner>,
    /// Python packages agents asked for.
    pub packages: Arc<crate::packages::Packages>,
    /// Export and import (decrypted files waiting for the operator's confirmation).
    pub transfer: Arc<crate::transfer::Transfer>,
    /// Executions waiting for an approver.
    pub approvals: Arc<crate::approvals::Approvals>,
    /// Webhooks told about what waits for a person.
    pub notifier: Arc<crate::notify::Notifier>,
    /// The hash-chained record of who changed what.
    pub audit: Arc<crate::audit::Audit>,
}

impl AppState {
    /// Whether cookies get the `Secure` attribute (public URL is https).
    pub fn secure_cookies(&self) -> bool {
        self.config
            .public_url
            .as_deref()
            .is_some_and(|u| u.to_ascii_lowercase().starts_with("https://"))
    }
}

/// A started Airlock instance.
#[derive(Clone)]
pub struct App {
    pub state: AppState,
}

impl App {
    /// Prepares the data directory, the master key and the database.
    pub async fn open(config: Config) -> Result<App, StartupError> {
        prepare_data_dir(&config.data_dir)?;
        let db_path = config.database_path();
        let key_path = config.master_key_path();
        let store = SqliteStore::open(&db_path).await?;
        restrict_db_files(&db_path);
        let (vault, key_origin) = open_vault(&store, &db_path, &key_path).await?;
        let interrupted = store
            .executions_interrupt(INTERRUPTED, chrono::Utc::now())
            .await?;
        if interrupted > 0 {
            tracing::warn!(
                count = interrupted,
                "executions interrupted by a restart marked as error"
            );
        }
        let sealed = prepare_sealed_tls(&config, &store, &vault).await?;
        let store: Arc<dyn Store> = Arc::new(store);
        let audit = crate::audit::Audit::start(
            store.clone(),
            &vault,
            std::time::Duration::from_secs(config.audit_verify_secs),
            config.audit_syslog.as_deref(),
        )
        .await
        .map_err(StartupError::Audit)?;
        let vault = Arc::new(vault);
        let catalog = Catalog::new(store.clone(), vault.clone());
        let notifier = crate::notify::Notifier::start(
            store.clone(),
            vault,
            config
                .public_base()
                .map(str::to_string)
                .unwrap_or_else(|| format!("http://{}", config.bind)),
            std::time::Duration::from_millis(config.notify_retry_ms),
        );
        crate::notify::watch_expiry(
            store.clone(),
            Arc::downgrade(&notifier),
            std::time::Duration::from_secs(config.expiry_check_secs),
        );
        let packages = crate::packages::Packages::start(
            store.clone(),
            crate::packages::PackagesConfig::from_config(&config),
        )
        .await;
        let mut sealed = sealed;
        let mounts = sandbox_mounts(&mut sealed, &packages);
        let sandbox = crate::sandbox::start(&config, &mounts).await;
        if let Err(reason) = &sandbox {
            tracing::warn!(%reason, "executions are disabled");
            notifier.notify(
                crate::notify::Event::SandboxUnavailable,
                format!("the sandbox did not start, executions are refused: {reason}"),
                "/ui/settings".into(),
                serde_json::json!({ "reason": reason }),
            );
        }
        let runner = Runner::start(
            store.clone(),
            catalog.clone(),
            sandbox,
            packages.clone(),
            RunnerLimits {
                concurrency: config.worker_count(),
                max_paused: config.max_paused,
                queue_size: config.queue_size,
                default_timeout_secs: config.max_timeout.min(60),
                max_timeout_secs: config.max_timeout,
                max_script_bytes: config.max_script_bytes,
                output_cap_bytes: config.max_output_bytes,
                redaction: config.redaction(),
                egress: config.egress_limits(),
                python: config.python.clone(),
                llm_wait: std::time::Duration::from_secs(config.llm_timeout),
            },
            sealed,
            notifier.clone(),
        );
        if config.record_retention_days > 0 {
            tokio::spawn(prune_answers(
                Arc::downgrade(&store),
                config.record_retention_days,
            ));
        }
        let approvals = crate::approvals::Approvals::start(
            store.clone(),
            runner.clone(),
            notifier.clone(),
            config.approval_timeout,
        )
        .await
        .map_err(|e| StartupError::Approvals(e.to_string()))?;
        let auth = Arc::new(Auth::new(Arc::clone(&store)));
        let transfer = Arc::new(crate::transfer::Transfer::new(
            Arc::clone(&store),
            catalog.clone(),
        ));
        Ok(App {
            state: AppState {
                config: Arc::new(config),
                store,
                catalog,
                auth,
                key_origin,
                runner,
                packages,
                transfer,
                approvals,
                notifier,
                audit,
            },
        })
    }

    /// The full HTTP router (agent API, admin API, health).
    pub fn router(&self) -> axum::Router {
        crate::api::router(self.state.clone())
    }
}

/// Loads (or creates) the master key and checks that it opens this database's
/// values: a database with sealed values and no key, or the wrong key, stops the start.
/// Deletes recorded answers (`record: full`) older than `days`, at start and then
/// hourly, until the store is gone.
async fn prune_answers(store: std::sync::Weak<dyn Store>, days: u64) {
    let keep = chrono::Duration::days(i64::try_from(days).unwrap_or(i64::MAX / 86_400_000));
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let Some(store) = store.upgrade() else { return };
        let before = chrono::Utc::now()
            .checked_sub_signed(keep)
            .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
        match store.answers_prune(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(count = n, days, "recorded answers past retention deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot delete recorded answers past retention"),
        }
    }
}

async fn open_vault(
    store: &SqliteStore,
    db_path: &Path,
    key_path: &Path,
) -> Result<(Vault, KeyOrigin), StartupError> {
    let check = store.meta_get(META_KEY_CHECK).await?;
    if check.is_some() && !key_path.exists() {
        return Err(StartupError::MasterKey(format!(
            "the database at {} holds sealed values but the master key file {} is missing; \
             restore the original key file (a new key would not open the data)",
            db_path.display(),
            key_path.display()
        )));
    }
    let (vault, key_origin) =
        Vault::load_or_create(key_path).map_err(|e| StartupError::MasterKey(e.to_string()))?;
    match check {
        Some(blob) => {
            if vault.open(KEY_CHECK_AAD, &blob).is_err() {
                return Err(StartupError::MasterKey(format!(
                    "the master key in {} does not open the values in {}; \
                     refusing to start. Restore the key file that belongs to this database",
                    key_path.display(),
                    db_path.display()
                )));
            }
        }
        None => {
            let blob = vault
                .seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)
                .map_err(|e| StartupError::MasterKey(e.to_string()))?;
            store.meta_insert_if_absent(META_KEY_CHECK, &blob).await?;
        }
    }
    Ok((vault, key_origin))
}

/// The host directories scripts see read-only: the CA bundle and the package
/// environments, at neutral paths (never the host's, which would name the data
/// directory). `sealed.ca_bundle` becomes the path inside the sandbox.
fn sandbox_mounts(
    sealed: &mut SealedTls,
    packages: &crate::packages::Packages,
) -> Vec<airlock_sandbox::ReadonlyMount> {
    let mut mounts = Vec::new();
    if let Some(bundle) = sealed.ca_bundle.take() {
        if let (Some(dir), Some(name)) = (bundle.parent(), bundle.file_name()) {
            mounts.push(airlock_sandbox::ReadonlyMount {
                host: dir.to_path_buf(),
                inside: crate::sandbox::CA_DIR_INSIDE.into(),
            });
            sealed.ca_bundle = Some(Path::new(crate::sandbox::CA_DIR_INSIDE).join(name));
        }
    }
    if packages.unavailable_reason().is_none() {
        let envs = packages.envs_dir();
        match std::fs::create_dir_all(&envs) {
            Ok(()) => mounts.push(airlock_sandbox::ReadonlyMount {
                host: envs,
                inside: crate::sandbox::PACKAGES_DIR_INSIDE.into(),
            }),
            Err(e) => tracing::warn!(dir = %envs.display(), error = %e,
                "cannot create the package environments directory: scripts run without packages"),
        }
    }
    mounts
}

/// Loads (or creates) the instance's egress CA and writes the public bundle the
/// sandbox trusts. A missing bundle directory only disables HTTPS interception (the
/// scripts' TLS to bound hosts then fails verification, closed); an unreadable
/// operator bundle stops the start, since it was asked for explicitly.
async fn prepare_sealed_tls(
    config: &Config,
    store: &SqliteStore,
    vault: &Vault,
) -> Result<crate::runner::SealedTls, StartupError> {
    let tls = crate::sealed::load_or_create_ca(store, vault, config.egress_ca_bundle.as_deref())
        .await
        .map_err(|e| StartupError::Egress(e.to_string()))?;
    let dir = config.egress_ca_dir();
    let abs = std::path::absolute(&dir).unwrap_or(dir);
    let problem =
        airlock_egress::tls::ca_dir_problem(&abs, &config.data_dir, &config.master_key_path());
    let ca_bundle = if let Some(why) = problem {
        tracing::warn!(dir = %abs.display(), %why, "AIRLOCK_EGRESS_CA_DIR must be outside /tmp, the data directory \
            and the master key's directory: scripts will not trust the egress CA, so HTTPS to hosts bound to sealed \
            credentials fails");
        None
    } else {
        match airlock_egress::tls::write_bundle(&abs, tls.ca_pem()) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(dir = %abs.display(), error = %e, "cannot write the egress CA bundle: \
                    HTTPS to hosts bound to sealed credentials fails");
                None
            }
        }
    };
    Ok(crate::runner::SealedTls {
        tls: Some(Arc::new(tls)),
        ca_bundle,
    })
}

/// The database and its WAL files hold sealed values: owner-only, like the key.
fn restrict_db_files(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
    }
}

fn prepare_data_dir(dir: &Path) -> Result<(), StartupError> {
    let err = |source| StartupError::DataDir {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    // Owner-only except "search" (x) for others: the sandbox helpers run under their
    // own uids and must reach `packages/envs` to bind it, but can neither list the
    // directory nor open anything in it (every file inside is 0600).
    let meta = std::fs::metadata(dir).map_err(err)?;
    if meta.permissions().mode() & 0o777 != 0o711 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).map_err(err)?;
    }
    Ok(())
}
