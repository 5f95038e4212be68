//! Python packages agents ask for: one Airlock-managed environment under the data dir.
//!
//! Why it looks like this:
//! - Installing runs code from the package index (build backends), so the installer
//!   (`uv pip install --target`, or `python -m pip install --target` when uv is absent)
//!   runs inside its own sandbox: a one-slot [`Sandbox`] with its own unprivileged uid,
//!   the same namespaces, Landlock, seccomp and rlimits as scripts, no credentials, no
//!   view of the database or master key, and network only through the egress proxy to
//!   the configured index hosts. The only writable host directory it sees is
//!   `<data>/packages/build`; each install writes into a fresh `build/<install id>/`.
//! - Each install rebuilds the whole environment from the stored list into a new
//!   directory, then moves it to `<data>/packages/envs/<install id>` (a rename on the
//!   same filesystem) and switches new executions to it. A running execution keeps the
//!   environment it started with: the previous one is deleted only at the next switch.
//! - Scripts see `<data>/packages/envs` read-only; each job adds the current
//!   environment to `sys.path` (the warm zygote needs no restart after a switch).
//! - The requested list lives in the database. At start-up the environment recorded in
//!   `<data>/packages/current.json` is reused when it matches the list; otherwise it is
//!   rebuilt, and executions wait for that rebuild instead of running half-configured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use std::time::Duration;

use airlock_sandbox::{Event, Job, Layer, Limits, Outcome, OutcomeStatus, Sandbox, SandboxConfig};
use airlock_store::{PackageInstallRow, PackageRow, PackageStatus, Store};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, OnceCell};

use crate::config::{Config, Installer, SandboxMode};

/// Why a package request was refused. The HTTP status of each is chosen in
/// `crate::error`.
#[derive(Debug, thiserror::Error)]
pub enum PackagesError {
    /// A requirement that does not parse; the message says which and why.
    #[error("{0}")]
    Invalid(String),
    #[error("no install with id {0}")]
    NoInstall(String),
    #[error("no package named {0}")]
    NoPackage(String),
    /// Accept or reject of an install that does not wait for review.
    #[error("install {0} does not wait for review (it is {1})")]
    NotAwaiting(String, PackageStatus),
    #[error("{AGENT_UNAVAILABLE}")]
    Unavailable,
    #[error(transparent)]
    Store(#[from] airlock_store::StoreError),
}

pub type PackagesResult<T> = Result<T, PackagesError>;
use crate::requirements;

/// What agents are told when installs cannot run (the reason may name host paths;
/// the operator sees it on the Packages page and in the log).
pub const AGENT_UNAVAILABLE: &str =
    "package installs are unavailable on this instance; ask the operator (the admin Packages page says why)";

/// Settings of the package manager, from [`Config`].
#[derive(Debug, Clone)]
pub struct PackagesConfig {
    pub root: PathBuf,
    pub data_dir: PathBuf,
    pub python: PathBuf,
    /// `None`: no index (find-links only).
    pub index_url: Option<String>,
    pub find_links: Option<PathBuf>,
    /// Resolved uv binary, when uv is used.
    pub uv: Option<PathBuf>,
    pub timeout: Duration,
    pub disk_bytes: u64,
    pub helper: Option<Vec<std::ffi::OsString>>,
    pub uid_base: u32,
    /// The sandbox mode: the installer runs in the same tier as scripts.
    pub sandbox: SandboxMode,
    /// A configuration error that disables installs.
    pub problem: Option<String>,
    /// Modules the warm workers pre-import (`AIRLOCK_PREIMPORT`).
    pub preimport: Vec<String>,
    /// Requests wait for the operator (`AIRLOCK_PACKAGE_REVIEW`).
    pub review: bool,
}

impl PackagesConfig {
    pub fn from_config(c: &Config) -> PackagesConfig {
        let index_url = match c.pip_index_url.trim() {
            "" | "none" => None,
            u => Some(u.to_string()),
        };
        let uv = match c.pip_installer {
            Installer::Pip => None,
            _ => c.uv.clone().filter(|p| p.is_file()).or_else(find_uv),
        };
        let problem = (c.pip_installer == Installer::Uv && uv.is_none()).then(|| {
            "AIRLOCK_PIP_INSTALLER=uv but no uv binary was found (set AIRLOCK_UV or put uv on PATH)"
                .to_string()
        });
        PackagesConfig {
            problem,
            preimport: c
                .preimport
                .iter()
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect(),
            review: c.package_review,
            root: c.data_dir.join("packages"),
            data_dir: c.data_dir.clone(),
            python: c.python.clone(),
            index_url,
            find_links: c.pip_find_links.clone(),
            uv,
            timeout: Duration::from_secs(c.pip_timeout.max(10)),
            disk_bytes: c.pip_disk_mb.max(64) * 1024 * 1024,
            helper: c.sandbox_helper.clone(),
            // The slot after the script slots: a uid of its own.
            uid_base: c.sandbox_uid_base + c.sandbox_slots() as u32,
            sandbox: c.sandbox,
        }
    }

    pub fn envs_dir(&self) -> PathBuf {
        self.root.join("envs")
    }
    fn build_dir(&self) -> PathBuf {
        self.root.join("build")
    }
    fn current_file(&self) -> PathBuf {
        self.root.join("current.json")
    }
    /// The hosts the installer may reach through the egress proxy.
    fn index_hosts(&self) -> Vec<String> {
        match &self.index_url {
            None => Vec::new(),
            Some(u) => match host_of(u) {
                Some(h) if h == "pypi.org" => vec![h, "files.pythonhosted.org".into()],
                Some(h) => vec![h],
                None => Vec::new(),
            },
        }
    }
}

/// The host of an http(s) URL (without userinfo or port).
fn host_of(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit('@').next()?;
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        hostport.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// An index URL without its userinfo (`https://user:token@host/` → `https://***@host/`).
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s && !url[s + 3..at].contains('/') => {
            format!("{}***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn find_uv() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("uv"))
        .find(|p| p.is_file())
}

/// One package as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PackageView {
    pub spec: String,
    pub name: String,
    pub installed_version: Option<String>,
    pub status: PackageStatus,
    pub error: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub install_id: String,
}

impl From<PackageRow> for PackageView {
    fn from(r: PackageRow) -> Self {
        PackageView {
            spec: r.spec,
            name: r.name,
            installed_version: r.installed_version,
            status: r.status,
            error: r.error,
            requested_at: r.requested_at,
            install_id: r.install_id,
        }
    }
}

/// What `GET /requirements` says about the environment itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct EnvironmentView {
    /// `ready`, `rebuilding` or `unavailable`.
    pub state: String,
    /// `uv` or `pip`.
    pub installer: String,
    pub python: String,
    /// The index installs use (credentials hidden), or `null` for find-links only.
    pub index_url: Option<String>,
    pub find_links: bool,
    /// Why installs are unavailable, if they are.
    pub reason: Option<String>,
}

/// `GET /requirements`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PackageList {
    pub packages: Vec<PackageView>,
    pub environment: EnvironmentView,
}

/// A package name (PEP 508), at most 100 characters.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, pattern = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")]
#[allow(dead_code)]
pub struct PackageName(String);

/// `POST /requirements` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequirementsRequest {
    /// 1–50 requirement strings, e.g. `pandas>=2`, `requests[socks]` (the document's
    /// pattern states only bare names; extras, specifiers and markers are accepted too).
    #[schema(min_items = 1, max_items = 50, value_type = Vec<PackageName>)]
    pub packages: Vec<String>,
    /// Why the agent needs them, for the operator who reviews the request.
    #[serde(default)]
    #[schema(max_length = 1000)]
    pub message: Option<String>,
}

/// One install (the answer of `POST /requirements` and `GET /requirements/{id}`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstallView {
    pub install_id: String,
    pub status: PackageStatus,
    /// The requirements of this request, as accepted.
    pub packages: Vec<String>,
    pub error: Option<String>,
    /// Sanitized tail of the installer's output.
    pub log: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Under package review: the request and the operator's answer (a rejection's
    /// reason). `null` when the install needed no review.
    pub request: Option<crate::catalog::RequestState>,
}

impl From<PackageInstallRow> for InstallView {
    fn from(r: PackageInstallRow) -> Self {
        InstallView {
            install_id: r.id,
            status: r.status,
            packages: r.specs,
            error: r.error,
            log: r.log,
            created_at: r.created_at,
            finished_at: r.finished_at,
            request: None,
        }
    }
}

/// What `current.json` records: which environment matches which list.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct CurrentEnv {
    env: Option<String>,
    specs: Vec<String>,
}

/// The package manager: the API's service and the runner's view of the environment.
pub struct Packages {
    store: Arc<dyn Store>,
    cfg: PackagesConfig,
    current: RwLock<Option<PathBuf>>,
    /// [`Packages::current_installed`] of the environment at that path (an
    /// environment never changes once built: a new one gets a new path).
    versions: RwLock<Option<(PathBuf, Installed)>>,
    ready: watch::Sender<bool>,
    queue: mpsc::UnboundedSender<String>,
    installer: OnceCell<Result<Arc<Sandbox>, String>>,
    unavailable: Option<String>,
}

impl Packages {
    /// Prepares the directories, reuses or schedules the environment, starts the
    /// install worker. Never fails: problems make installs unavailable (with a reason).
    pub async fn start(store: Arc<dyn Store>, mut cfg: PackagesConfig) -> Arc<Packages> {
        let mut unavailable = cfg.problem.clone();
        if let Err(e) = prepare_dirs(&cfg) {
            tracing::error!(error = %e, "cannot prepare the package directories");
            unavailable.get_or_insert(format!("cannot prepare the package directories: {e}"));
        }
        // Absolute paths: they appear inside the sandbox at the same place.
        if let (Ok(root), Ok(data)) = (cfg.root.canonicalize(), cfg.data_dir.canonicalize()) {
            cfg.root = root;
            cfg.data_dir = data;
        }
        if let Some(dir) = build::is_root().then(|| untraversable(&cfg.root)).flatten() {
            unavailable.get_or_insert(format!(
                "{} is not searchable by other users (chmod o+x), so the sandboxes \
                 cannot reach the package environment",
                dir.display()
            ));
        }
        if cfg.helper.is_none() {
            unavailable.get_or_insert("no sandbox helper is configured for this instance".into());
        } else if cfg.root.starts_with("/tmp") {
            unavailable.get_or_insert(
                "the data directory is under /tmp, which every sandbox replaces with its own; \
                 move AIRLOCK_DATA_DIR to install packages"
                    .into(),
            );
        }
        let interrupted = store
            .package_installs_interrupt("interrupted by a restart", Utc::now())
            .await
            .unwrap_or(0);
        if interrupted > 0 {
            tracing::warn!(
                count = interrupted,
                "package installs interrupted by a restart"
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let pk = Arc::new(Packages {
            store,
            cfg,
            current: RwLock::new(None),
            versions: RwLock::new(None),
            ready: watch::channel(true).0,
            queue: tx,
            installer: OnceCell::new(),
            unavailable,
        });
        pk.startup().await;
        tokio::spawn(worker(Arc::downgrade(&pk), rx));
        pk
    }

    /// Reuses the recorded environment when it matches the stored list, else queues a
    /// rebuild (executions wait for it).
    async fn startup(&self) {
        let rows = match self.store.packages_list().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the requested packages");
                return;
            }
        };
        let wanted = wanted_specs(&rows);
        let recorded: Option<CurrentEnv> = std::fs::read(self.cfg.current_file())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if let Some(rec) = &recorded {
            let env_ok = match &rec.env {
                Some(e) => self.cfg.envs_dir().join(e).is_dir(),
                None => true,
            };
            if env_ok && rec.specs == wanted {
                *self.current.write() = rec.env.as_ref().map(|e| self.cfg.envs_dir().join(e));
                // Rows left `installing` by a crash after the switch are done.
                if let Some(e) = &rec.env {
                    self.mark_from_env(&rows, &self.cfg.envs_dir().join(e))
                        .await;
                }
                if !wanted.is_empty() {
                    tracing::info!(packages = wanted.len(), "package environment reused");
                }
                return;
            }
        }
        if wanted.is_empty() {
            return;
        }
        if self.unavailable.is_some() {
            return;
        }
        tracing::info!(
            packages = wanted.len(),
            "package environment missing or out of date: rebuilding it; executions wait until it is ready"
        );
        self.ready.send_replace(false);
        match self.new_install(&wanted, PackageStatus::Pending).await {
            Ok(id) => {
                // Until the rebuild succeeds nothing is installed.
                for r in rows.iter().filter(|r| r.status != PackageStatus::Failed) {
                    let mut r = r.clone();
                    r.status = PackageStatus::Pending;
                    r.installed_version = None;
                    r.install_id = id.clone();
                    if let Err(e) = self.store.package_upsert(&r).await {
                        tracing::error!(error = %e, "cannot update a package row");
                    }
                }
                let _ = self.queue.send(id);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot schedule the package rebuild");
                self.ready.send_replace(true);
            }
        }
    }

    /// Installs refused, and why.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// The environment new executions should add to `sys.path`.
    pub fn env_path(&self) -> Option<PathBuf> {
        self.current.read().clone()
    }

    /// The current environment as scripts see it (below
    /// [`crate::sandbox::PACKAGES_DIR_INSIDE`]).
    pub fn sandbox_env_path(&self) -> Option<PathBuf> {
        let host = self.env_path()?;
        let Ok(rel) = host.strip_prefix(self.envs_dir()) else {
            tracing::warn!(env = %host.display(), "the package environment is outside the environments directory: scripts run without it");
            return None;
        };
        Some(Path::new(crate::sandbox::PACKAGES_DIR_INSIDE).join(rel))
    }

    /// What the warm workers should have on `sys.path` (as scripts see it) and
    /// pre-import right now.
    pub fn warm_imports(&self) -> (Vec<PathBuf>, Vec<String>) {
        (
            self.sandbox_env_path().into_iter().collect(),
            self.cfg.preimport.clone(),
        )
    }

    /// The directory scripts see read-only (holds every environment).
    pub fn envs_dir(&self) -> PathBuf {
        self.cfg.envs_dir()
    }

    /// Waits until no start-up rebuild is in progress.
    pub async fn wait_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// `ready`, `rebuilding` or `unavailable`.
    pub fn state(&self) -> &'static str {
        if self.unavailable.is_some() {
            "unavailable"
        } else if self.is_ready() {
            "ready"
        } else {
            "rebuilding"
        }
    }

    fn environment(&self) -> EnvironmentView {
        EnvironmentView {
            state: self.state().into(),
            installer: if self.cfg.uv.is_some() { "uv" } else { "pip" }.into(),
            python: self.cfg.python.display().to_string(),
            index_url: self.cfg.index_url.as_deref().map(redact_url),
            find_links: self.cfg.find_links.is_some(),
            reason: self.unavailable.clone(),
        }
    }

    pub async fn list(&self) -> PackagesResult<PackageList> {
        let rows = self.store.packages_list().await?;
        Ok(PackageList {
            packages: rows.into_iter().map(PackageView::from).collect(),
            environment: self.environment(),
        })
    }

    /// Version of every package in the environment scripts import from now
    /// (normalized name → version); empty while there is none.
    pub fn current_versions(&self) -> BTreeMap<String, String> {
        self.current_installed().versions
    }

    /// Every package of the environment scripts import from now: versions and
    /// content hashes.
    pub fn current_installed(&self) -> Installed {
        let Some(env) = self.current.read().clone() else {
            return Installed::default();
        };
        if let Some((at, v)) = self.versions.read().as_ref() {
            if *at == env {
                return v.clone();
            }
        }
        // Read once per environment (every recording execution asks).
        let v = Installed {
            versions: installed_versions(&env),
            contents: installed_contents(&env),
        };
        *self.versions.write() = Some((env, v.clone()));
        v
    }

    pub async fn install(&self, id: &str) -> PackagesResult<InstallView> {
        let mut view = self
            .store
            .package_install_get(id)
            .await?
            .map(InstallView::from)
            .ok_or_else(|| PackagesError::NoInstall(id.to_string()))?;
        view.request = self
            .store
            .request_get(airlock_store::RequestKind::Packages, id)
            .await?
            .as_ref()
            .map(crate::catalog::RequestState::from);
        Ok(view)
    }

    /// Whether requests wait for the operator.
    pub fn review(&self) -> bool {
        self.cfg.review
    }

    /// Validates and records a request. Under review it waits (`awaiting_review`,
    /// with a pending agent request) for [`Packages::accept`]; otherwise its
    /// install is queued at once.
    pub async fn request(&self, specs: &[String], message: &str) -> PackagesResult<InstallView> {
        let reqs = requirements::parse_all(specs).map_err(PackagesError::Invalid)?;
        let message = crate::validate::note("message", Some(message.to_string()))
            .map_err(|e| PackagesError::Invalid(e.0))?
            .unwrap_or_default();
        if self.unavailable.is_some() {
            return Err(PackagesError::Unavailable);
        }
        let rendered: Vec<String> = reqs.iter().map(std::string::ToString::to_string).collect();
        if self.cfg.review {
            let id = self
                .new_install(&rendered, PackageStatus::AwaitingReview)
                .await?;
            self.store
                .request_put(&airlock_store::AgentRequestRow {
                    kind: airlock_store::RequestKind::Packages,
                    subject: id.clone(),
                    message,
                    status: airlock_store::RequestStatus::Pending,
                    reason: None,
                    created_at: Utc::now(),
                    decided_at: None,
                })
                .await?;
            return self.install(&id).await;
        }
        let id = self.new_install(&rendered, PackageStatus::Pending).await?;
        self.queue_install(&id, &rendered).await
    }

    /// The operator accepted a request that waited for review: its install runs.
    pub async fn accept(&self, id: &str) -> PackagesResult<InstallView> {
        let mut inst = self.awaiting(id).await?;
        if self.unavailable.is_some() {
            return Err(PackagesError::Unavailable);
        }
        inst.status = PackageStatus::Pending;
        self.store.package_install_update(&inst).await?;
        self.queue_install(id, &inst.specs).await
    }

    /// The operator rejected a request that waited for review: nothing is installed.
    pub async fn reject(&self, id: &str, reason: &str) -> PackagesResult<InstallView> {
        let mut inst = self.awaiting(id).await?;
        inst.status = PackageStatus::Rejected;
        inst.error = Some(format!("rejected by the operator: {reason}"));
        inst.finished_at = Some(Utc::now());
        self.store.package_install_update(&inst).await?;
        self.install(id).await
    }

    async fn awaiting(&self, id: &str) -> PackagesResult<PackageInstallRow> {
        let inst = self
            .store
            .package_install_get(id)
            .await?
            .ok_or_else(|| PackagesError::NoInstall(id.to_string()))?;
        if inst.status != PackageStatus::AwaitingReview {
            return Err(PackagesError::NotAwaiting(id.to_string(), inst.status));
        }
        Ok(inst)
    }

    /// Adds the install's packages to the list and queues the install.
    async fn queue_install(&self, id: &str, specs: &[String]) -> PackagesResult<InstallView> {
        let reqs = requirements::parse_all(specs).map_err(PackagesError::Invalid)?;
        let now = Utc::now();
        for r in &reqs {
            self.store
                .package_upsert(&PackageRow {
                    name: r.normalized_name(),
                    spec: r.to_string(),
                    status: PackageStatus::Pending,
                    installed_version: None,
                    error: None,
                    requested_at: now,
                    install_id: id.to_string(),
                })
                .await?;
        }
        let _ = self.queue.send(id.to_string());
        self.install(id).await
    }

    /// Removes a package and rebuilds the environment without it.
    pub async fn remove(&self, name: &str) -> PackagesResult<InstallView> {
        let norm = requirements::normalize(name);
        match self.store.package_delete(&norm).await {
            Ok(()) => {}
            Err(airlock_store::StoreError::NotFound) => return Err(PackagesError::NoPackage(norm)),
            Err(e) => return Err(e.into()),
        }
        let id = self.new_install(&[], PackageStatus::Pending).await?;
        let _ = self.queue.send(id.clone());
        self.install(&id).await
    }

    async fn new_install(&self, specs: &[String], status: PackageStatus) -> PackagesResult<String> {
        let id = format!("inst_{}", crate::ids::lower_alnum(16));
        self.store
            .package_install_insert(&PackageInstallRow {
                id: id.clone(),
                status,
                specs: specs.to_vec(),
                log: String::new(),
                error: None,
                created_at: Utc::now(),
                finished_at: None,
            })
            .await?;
        Ok(id)
    }

    /// Sets installed versions (and statuses) of `rows` from the environment's metadata.
    async fn mark_from_env(&self, rows: &[PackageRow], env: &Path) {
        let versions = installed_versions(env);
        for r in rows {
            if r.status == PackageStatus::Failed {
                continue;
            }
            let mut r = r.clone();
            match versions.get(&r.name) {
                Some(v) => {
                    r.status = PackageStatus::Installed;
                    r.installed_version = Some(v.clone());
                    r.error = None;
                }
                None => {
                    r.status = PackageStatus::Failed;
                    r.installed_version = None;
                    r.error = Some("not present in the environment after the install".into());
                }
            }
            if let Err(e) = self.store.package_upsert(&r).await {
                tracing::error!(error = %e, "cannot update a package row");
            }
        }
    }

    async fn run_install(&self, id: &str) {
        let Ok(Some(mut inst)) = self.store.package_install_get(id).await else {
            tracing::error!(install = %id, "queued install vanished");
            return;
        };
        inst.status = PackageStatus::Installing;
        let _ = self.store.package_install_update(&inst).await;
        let rows = self.store.packages_list().await.unwrap_or_default();
        let wanted = wanted_specs(&rows);
        for r in rows.iter().filter(|r| r.status == PackageStatus::Pending) {
            let mut r = r.clone();
            r.status = PackageStatus::Installing;
            let _ = self.store.package_upsert(&r).await;
        }
        tracing::info!(install = %id, packages = wanted.len(), "building the package environment");
        let result = if wanted.is_empty() {
            Ok((None, String::new()))
        } else {
            self.build(id, &wanted).await.map(|(p, log)| (Some(p), log))
        };
        let rows = self.store.packages_list().await.unwrap_or_default();
        match result {
            Ok((env, log)) => {
                let name = env
                    .as_ref()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned());
                let rec = CurrentEnv {
                    env: name,
                    specs: wanted.clone(),
                };
                if let Err(e) = write_current(&self.cfg.current_file(), &rec) {
                    tracing::error!(error = %e, "cannot record the package environment");
                }
                let previous = {
                    let mut cur = self.current.write();
                    std::mem::replace(&mut *cur, env.clone())
                };
                // Keep the environment running executions may still use; drop older ones.
                self.prune(&[env.clone(), previous]);
                if let Some(p) = &env {
                    let built: Vec<PackageRow> = rows
                        .into_iter()
                        .filter(|r| wanted.contains(&r.spec))
                        .collect();
                    self.mark_from_env(&built, p).await
                }
                inst.status = PackageStatus::Installed;
                inst.log = log;
                tracing::info!(install = %id, "package environment ready");
            }
            Err((error, log)) => {
                // Only this build's new rows: a request queued meanwhile gets its own try.
                for r in rows.into_iter().filter(|r| {
                    matches!(r.status, PackageStatus::Pending | PackageStatus::Installing)
                        && wanted.contains(&r.spec)
                }) {
                    let mut r = r;
                    r.status = PackageStatus::Failed;
                    r.error = Some(format!("{error} (see GET /requirements/{id})"));
                    let _ = self.store.package_upsert(&r).await;
                }
                tracing::warn!(install = %id, %error, "package install failed");
                inst.status = PackageStatus::Failed;
                inst.error = Some(error);
                inst.log = log;
            }
        }
        inst.finished_at = Some(Utc::now());
        let _ = self.store.package_install_update(&inst).await;
        let _ = std::fs::remove_dir_all(self.cfg.build_dir().join(id));
        self.ready.send_replace(true);
    }

    /// Removes every environment except `keep`.
    fn prune(&self, keep: &[Option<PathBuf>]) {
        let Ok(entries) = std::fs::read_dir(self.cfg.envs_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if !keep.iter().flatten().any(|k| *k == p) {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }
}

async fn worker(pk: std::sync::Weak<Packages>, mut rx: mpsc::UnboundedReceiver<String>) {
    while let Some(id) = rx.recv().await {
        let Some(pk) = pk.upgrade() else { return };
        pk.run_install(&id).await;
    }
}

/// The specs the environment should hold: everything not failed, sorted.
fn wanted_specs(rows: &[PackageRow]) -> Vec<String> {
    let mut v: Vec<String> = rows
        .iter()
        .filter(|r| r.status != PackageStatus::Failed)
        .map(|r| r.spec.clone())
        .collect();
    v.sort();
    v
}

fn prepare_dirs(cfg: &PackagesConfig) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for d in [cfg.root.clone(), cfg.envs_dir(), cfg.build_dir()] {
        std::fs::create_dir_all(&d)?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))?;
    }
    // Leftovers of an install interrupted by a crash.
    for e in std::fs::read_dir(cfg.build_dir())?.flatten() {
        let _ = std::fs::remove_dir_all(e.path());
    }
    Ok(())
}

fn write_current(path: &Path, rec: &CurrentEnv) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(rec).unwrap_or_default())?;
    std::fs::rename(&tmp, path)
}

/// The first directory on the way to `p` (inclusive) that others cannot search.
fn untraversable(p: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    p.ancestors()
        .find(|a| {
            std::fs::metadata(a)
                .map(|m| m.permissions().mode() & 0o001 == 0)
                .unwrap_or(true)
        })
        .map(Path::to_path_buf)
}

/// Normalized project name → version, from `*.dist-info/METADATA` in `env`.
/// The packages of one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// Normalized name → version.
    pub versions: BTreeMap<String, String>,
    /// Normalized name → SHA-256 of its `RECORD` (which lists the hash of every file
    /// the wheel installed): the same version built otherwise shows here.
    pub contents: BTreeMap<String, String>,
}

/// Normalized name → SHA-256 of the `.dist-info/RECORD` of each package in `env`.
fn installed_contents(env: &Path) -> BTreeMap<String, String> {
    use sha2::Digest;
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(env) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        let (Some(stem), true) = (
            p.file_stem().and_then(|s| s.to_str()),
            p.extension().is_some_and(|x| x == "dist-info"),
        ) else {
            continue;
        };
        // `name-version.dist-info`; the name's own dashes were escaped to `_`.
        let name = stem.split_once('-').map_or(stem, |(n, _)| n);
        if let Ok(record) = std::fs::read(p.join("RECORD")) {
            out.insert(
                requirements::normalize(name),
                hex::encode(sha2::Sha256::digest(&record)),
            );
        }
    }
    out
}

fn installed_versions(env: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(env) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_none_or(|x| x != "dist-info") {
            continue;
        }
        let Ok(meta) = std::fs::read_to_string(p.join("METADATA")) else {
            continue;
        };
        let mut name = None;
        let mut version = None;
        for line in meta.lines() {
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("Name:") {
                name = Some(requirements::normalize(v.trim()));
            } else if let Some(v) = line.strip_prefix("Version:") {
                version = Some(v.trim().to_string());
            }
        }
        if let (Some(n), Some(v)) = (name, version) {
            out.insert(n, v);
        }
    }
    out
}

mod build;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_hosts_and_redaction() {
        assert_eq!(host_of("https://pypi.org/simple"), Some("pypi.org".into()));
        assert_eq!(
            host_of("https://u:p@mirror.example:8443/simple/"),
            Some("mirror.example".into())
        );
        assert_eq!(host_of("file:///x"), None);
        assert_eq!(
            redact_url("https://u:tok@mirror.example/simple"),
            "https://***@mirror.example/simple"
        );
        assert_eq!(
            redact_url("https://pypi.org/simple"),
            "https://pypi.org/simple"
        );
    }

    #[test]
    fn versions_come_from_dist_info_metadata() {
        let d = tempfile::tempdir().unwrap();
        let di = d.path().join("Foo_Bar-1.2.dist-info");
        std::fs::create_dir(&di).unwrap();
        std::fs::write(
            di.join("METADATA"),
            "Metadata-Version: 2.1\nName: Foo_Bar\nVersion: 1.2\n\nName: not-this\n",
        )
        .unwrap();
        let v = installed_versions(d.path());
        assert_eq!(
            v,
            BTreeMap::from([("foo-bar".to_string(), "1.2".to_string())])
        );
        assert!(installed_contents(d.path()).is_empty(), "no RECORD yet");
        std::fs::write(di.join("RECORD"), "foo_bar/__init__.py,sha256=abc,10\n").unwrap();
        let c = installed_contents(d.path());
        assert_eq!(c.keys().collect::<Vec<_>>(), vec!["foo-bar"]);
        std::fs::write(di.join("RECORD"), "foo_bar/__init__.py,sha256=abd,10\n").unwrap();
        assert_ne!(
            installed_contents(d.path()),
            c,
            "other contents, other hash"
        );
    }
}
