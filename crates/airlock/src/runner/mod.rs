//! The runner: queue, worker pool and execution lifecycle.
//!
//! An accepted script becomes a `pending` row, waits in a bounded queue, runs in
//! the sandbox (`running`, possibly `awaiting_llm` ↔ `running`), and ends
//! `completed`, `error` or `timeout`. Every output is redacted with the
//! profile's values before it is stored, so nothing downstream of the runner
//! ever holds a secret. Waiters (long-polls) are woken through a per-execution
//! watch channel; an execution left unfinished by a crash is marked `error` on
//! the next start.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use airlock_redact::{Piece, RedactionCount, Redactor, Stream};
use airlock_sandbox::{Event, Execution, Job, Outcome, OutcomeStatus, OutputStream, Sandbox};
use airlock_store::{
    ExecutionInputs, ExecutionRow, ExecutionStatus, LlmExchange, LlmRequest, ProfileRow,
    RecordMode, RedactionEvent, Store,
};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::catalog::{Catalog, OpenedCredential};

/// Why an execution was not accepted. The HTTP status of each is chosen in
/// `crate::error`.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The sandbox could not start at boot; the reason is the server's.
    #[error("executions are disabled: {0}")]
    Unavailable(String),
    #[error("the execution queue is full; retry shortly")]
    QueueFull,
    #[error("{0} executions are paused waiting for llm.complete answers (AIRLOCK_MAX_PAUSED); answer them, or let them time out, and retry")]
    PausedFull(usize),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Store(#[from] airlock_store::StoreError),
}
use crate::sealed::SealedValue;
use airlock_egress::EgressTls;

mod egress;
mod finished;
use egress::{close_egress, EgressSession};

pub const INTERRUPTED: &str = "interrupted by server restart";

/// A new execution's row, not stored yet.
fn new_row(
    profile_id: &str,
    script: String,
    timeout: Duration,
    status: ExecutionStatus,
) -> ExecutionRow {
    ExecutionRow {
        id: crate::ids::execution_id(),
        profile_id: profile_id.to_string(),
        status,
        script_sha256: crate::ids::sha256_hex(script.as_bytes()),
        script,
        timeout_secs: timeout.as_secs() as i64,
        result: None,
        stdout: String::new(),
        stderr: String::new(),
        error: None,
        llm_request: None,
        llm_exchanges: Vec::new(),
        redactions: Vec::new(),
        execution_time_ms: None,
        llm_wait_ms: 0,
        inputs: None,
        created_at: Utc::now(),
        started_at: None,
        completed_at: None,
    }
}

/// Limits the runner applies; set from the configuration.
#[derive(Debug, Clone)]
pub struct RunnerLimits {
    /// Executions running at once.
    pub concurrency: usize,
    /// Executions paused in `llm.complete` at once without holding a run slot.
    pub max_paused: usize,
    pub queue_size: usize,
    pub default_timeout_secs: u64,
    pub max_timeout_secs: u64,
    pub max_script_bytes: usize,
    pub output_cap_bytes: usize,
    pub llm_wait: Duration,
    /// What every redactor of an execution looks for.
    pub redaction: airlock_redact::Options,
    /// The bounds of each execution's egress.
    pub egress: airlock_egress::EgressLimits,
    /// The interpreter scripts run with; input records name its `sys.version`.
    pub python: std::path::PathBuf,
}

struct QueuedJob {
    /// The row as inserted (`pending`).
    row: ExecutionRow,
    /// The profile as read when the script was accepted, and the store's profiles
    /// epoch before that read: while the epoch has not moved, the row is current.
    profile: ProfileRow,
    profile_epoch: u64,
    creds: Vec<OpenedCredential>,
    timeout: Duration,
    llm_wait: Duration,
    replay: Option<Replay>,
}

/// A run that replays an earlier execution: its script, its clock and, from a
/// `full` record, its answers.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// The execution replayed.
    pub of: String,
    /// Its recorded clock, which `airlock.now()` returns again.
    pub now: DateTime<Utc>,
    /// Its recorded HTTP answers, served by the proxy instead of the network
    /// (`None`: the network is live).
    pub answers: Option<Arc<airlock_egress::ReplaySource>>,
    /// Its `llm.complete` exchanges, answered again without pausing while each
    /// prompt matches the recorded one (with [`Replay::answers`] only).
    pub llm: std::collections::VecDeque<LlmExchange>,
}

/// What the runner knows of an execution between its submission and its final
/// state (then it is in the store only).
struct Live {
    profile_id: String,
    /// The latest state of the row, for long-polls.
    latest: watch::Sender<Arc<ExecutionRow>>,
    /// Set while the job runs: revoking the profile notifies it.
    cancel: Option<Arc<Notify>>,
    /// The paused `llm.complete` call, while `awaiting_llm`.
    llm: Option<PendingLlm>,
}

/// One execution while it runs: its row and what the phases of
/// [`Runner::run_job`] share.
struct Run {
    row: ExecutionRow,
    redactor: Arc<Redactor>,
    events: Vec<RedactionEvent>,
    started: Instant,
    /// Time paused in `llm.complete` (not running time).
    waited: Duration,
    llm_wait: Duration,
    /// The run slot (a core's worth), held while the script may run.
    run_slot: Option<OwnedSemaphorePermit>,
    egress: Option<EgressSession>,
    /// What the run keeps of its inputs (the profile's `record`, once checked).
    record: RecordMode,
    replay: Option<Replay>,
}

/// One `llm.complete` call as the script made it.
struct LlmCall {
    request_id: String,
    prompt: String,
    model: String,
}

/// A pending `llm.complete` call waiting for the agent's answer.
struct PendingLlm {
    request_id: String,
    reply: oneshot::Sender<String>,
}

/// Outcome of posting an LLM answer.
#[derive(Debug, PartialEq, Eq)]
pub enum RespondError {
    NotAwaiting,
    WrongRequest,
}

/// Shared runner state.
pub struct Runner {
    store: Arc<dyn Store>,
    catalog: Catalog,
    sandbox: Option<Arc<Sandbox>>,
    unavailable: Option<String>,
    packages: Arc<crate::packages::Packages>,
    pub limits: RunnerLimits,
    queue: mpsc::Sender<QueuedJob>,
    /// Run slots (`concurrency`): an execution holds one while its script may run.
    run_slots: Arc<Semaphore>,
    /// Pause slots (`max_paused`): an execution paused in `llm.complete` holds one
    /// instead of its run slot.
    pause_slots: Arc<Semaphore>,
    /// Executions from submission until their final state is published, by id.
    live: Mutex<HashMap<String, Live>>,
    /// Recently finished executions, for polls that come after the end.
    finished: Mutex<finished::Finished>,
    /// TLS interception for sealed credentials, when the instance CA is available.
    egress_tls: Option<Arc<EgressTls>>,
    /// The CA bundle (system roots + the instance CA) as the sandbox sees it.
    ca_bundle: Option<std::path::PathBuf>,
    /// When this process last stamped each profile's "last used" (the profile row an
    /// agent request carries may be older than the last stamp).
    last_used: Mutex<HashMap<String, DateTime<Utc>>>,
    /// `sys.version` of [`RunnerLimits::python`], asked once, when a run first records.
    python_version: tokio::sync::OnceCell<String>,
    /// What `GET /metrics` reports.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Told about sealed-credential violations.
    notifier: Arc<crate::notify::Notifier>,
}

/// How sealed credentials reach HTTPS hosts: the instance CA and the bundle path the
/// sandbox trusts.
#[derive(Default)]
pub struct SealedTls {
    pub tls: Option<Arc<EgressTls>>,
    pub ca_bundle: Option<std::path::PathBuf>,
}

impl Runner {
    /// Starts the dispatcher. `sandbox` is `Err(reason)` when the sandbox could not
    /// start: executions are then refused with that reason (fail closed).
    pub fn start(
        store: Arc<dyn Store>,
        catalog: Catalog,
        sandbox: Result<Arc<Sandbox>, String>,
        packages: Arc<crate::packages::Packages>,
        limits: RunnerLimits,
        sealed: SealedTls,
        notifier: Arc<crate::notify::Notifier>,
    ) -> Arc<Runner> {
        let (tx, rx) = mpsc::channel(limits.queue_size.max(1));
        let run_slots = Arc::new(Semaphore::new(limits.concurrency.max(1)));
        let pause_slots = Arc::new(Semaphore::new(limits.max_paused));
        let (sandbox, unavailable) = match sandbox {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        let runner = Arc::new(Runner {
            store,
            catalog,
            sandbox,
            unavailable,
            packages,
            limits,
            queue: tx,
            run_slots,
            pause_slots,
            live: Mutex::new(HashMap::new()),
            finished: Mutex::default(),
            egress_tls: sealed.tls,
            ca_bundle: sealed.ca_bundle,
            last_used: Mutex::new(HashMap::new()),
            python_version: tokio::sync::OnceCell::new(),
            metrics: Arc::default(),
            notifier,
        });
        tokio::spawn(dispatch(Arc::downgrade(&runner), rx));
        runner
    }

    pub fn sandbox(&self) -> Option<&Arc<Sandbox>> {
        self.sandbox.as_ref()
    }

    /// Why executions are refused, if they are.
    pub fn unavailable_reason(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// What `/health` and the admin status say about the sandbox.
    pub fn sandbox_status(&self) -> serde_json::Value {
        match self.sandbox() {
            Some(s) => {
                let layers = s.layers();
                let names = |l: &[airlock_sandbox::Layer]| -> Vec<&'static str> {
                    l.iter().map(|l| l.name()).collect()
                };
                let in_tier = layers.tier.layers();
                let outside: Vec<airlock_sandbox::Layer> = airlock_sandbox::Layer::ALL
                    .into_iter()
                    .filter(|l| !in_tier.contains(l))
                    .collect();
                serde_json::json!({
                    "ready": true,
                    "tier": layers.tier.name(),
                    "tier_layers": names(in_tier),
                    "missing": names(&layers.missing()),
                    "not_in_tier": names(&outside),
                    "permissive": !layers.missing().is_empty(),
                    "layers": layers,
                })
            }
            None => serde_json::json!({
                "ready": false,
                "reason": self.unavailable_reason(),
            }),
        }
    }

    /// Queues a script; returns the new execution id. `profile` is the caller's
    /// profile as read with `profile_epoch` ([`crate::catalog::ActiveProfile`]);
    /// `llm_wait` bounds each pause in `llm.complete`; `replay` names the execution
    /// this one replays.
    pub async fn submit(
        &self,
        profile: &ProfileRow,
        profile_epoch: u64,
        script: String,
        (timeout, llm_wait): (Duration, Duration),
        replay: Option<Replay>,
    ) -> Result<String, RunnerError> {
        let permit = self.reserve()?;
        let row = new_row(&profile.id, script, timeout, ExecutionStatus::Pending);
        let id = row.id.clone();
        // The row is stored while the credentials are read and opened (two queries
        // on two connections at once).
        let (creds, inserted) = tokio::join!(
            self.catalog.open_credentials(&profile.id),
            self.store.execution_insert(&row)
        );
        inserted?;
        self.enqueue(
            permit,
            row,
            creds,
            profile,
            profile_epoch,
            (timeout, llm_wait),
            replay,
        )
        .await?;
        Ok(id)
    }

    /// A place in the queue, or why there is none.
    fn reserve(&self) -> Result<mpsc::Permit<'_, QueuedJob>, RunnerError> {
        if let Some(reason) = &self.unavailable {
            return Err(RunnerError::Unavailable(reason.clone()));
        }
        // Every pause slot taken: a new execution that paused would hold a worker.
        let paused = self.limits.max_paused;
        if paused > 0 && self.pause_slots.available_permits() == 0 {
            return Err(RunnerError::PausedFull(paused));
        }
        self.queue.try_reserve().map_err(|_| RunnerError::QueueFull)
    }

    /// Stores an execution that waits for an approver (`awaiting_approval`): not
    /// queued, but long-polls see it change. [`Runner::release`] queues it,
    /// [`Runner::end_held`] ends it.
    pub async fn hold(
        &self,
        profile: &ProfileRow,
        script: String,
        timeout: Duration,
    ) -> Result<ExecutionRow, RunnerError> {
        if let Some(reason) = &self.unavailable {
            return Err(RunnerError::Unavailable(reason.clone()));
        }
        let row = new_row(
            &profile.id,
            script,
            timeout,
            ExecutionStatus::AwaitingApproval,
        );
        self.store.execution_insert(&row).await?;
        self.watch_held(&row);
        Ok(row)
    }

    /// Lets long-polls wait on a held execution (at start, for those stored).
    pub fn watch_held(&self, row: &ExecutionRow) {
        self.live().entry(row.id.clone()).or_insert_with(|| Live {
            profile_id: row.profile_id.clone(),
            latest: watch::channel(Arc::new(row.clone())).0,
            cancel: None,
            llm: None,
        });
    }

    /// Queues a held execution once it is approved, under `profile` as read with
    /// `profile_epoch`.
    pub async fn release(
        &self,
        mut row: ExecutionRow,
        profile: &ProfileRow,
        profile_epoch: u64,
        timeouts: (Duration, Duration),
    ) -> Result<(), RunnerError> {
        let permit = self.reserve()?;
        let creds = self.catalog.open_credentials(&profile.id).await;
        row.status = ExecutionStatus::Pending;
        self.store.execution_update(&row).await?;
        self.watch_held(&row);
        self.publish(&row);
        self.enqueue(permit, row, creds, profile, profile_epoch, timeouts, None)
            .await
    }

    /// Ends a held execution that will not run (denied, expired, its profile
    /// gone: `denied`; approved but not queued: `error`).
    pub async fn end_held(&self, mut row: ExecutionRow, status: ExecutionStatus, reason: String) {
        row.status = status;
        row.error = Some(reason);
        row.completed_at = Some(Utc::now());
        self.metrics.ended_unrun(status.as_str());
        self.persist(&row).await;
        self.publish(&row);
    }

    /// Hands a stored execution to the queue once its credentials are open.
    #[allow(clippy::too_many_arguments)]
    async fn enqueue(
        &self,
        permit: mpsc::Permit<'_, QueuedJob>,
        row: ExecutionRow,
        creds: crate::catalog::CatalogResult<Vec<crate::catalog::OpenedCredential>>,
        profile: &ProfileRow,
        profile_epoch: u64,
        (timeout, llm_wait): (Duration, Duration),
        replay: Option<Replay>,
    ) -> Result<(), RunnerError> {
        let profile_id = profile.id.as_str();
        let id = row.id.clone();
        let now = row.created_at.max(Utc::now());
        let creds = match creds {
            Ok(c) => c,
            Err(e) => {
                // Nothing ran: the stored row says why, and the caller gets the error.
                let mut row = row;
                row.status = ExecutionStatus::Error;
                row.error = Some("the profile's credentials could not be opened".into());
                row.completed_at = Some(Utc::now());
                self.persist(&row).await;
                self.publish(&row);
                return Err(e.into());
            }
        };
        // "Last used" is shown to the second: a profile used within the last
        // second is not written again (one write less per execution under load).
        let stamp = {
            let mut last = self.last_used.lock();
            let prev = last.get(profile_id).copied().max(profile.last_used_at);
            let due = prev.is_none_or(|t| now - t >= chrono::TimeDelta::seconds(1));
            if due {
                last.insert(profile_id.to_string(), now);
            }
            due
        };
        if stamp {
            let _ = self.store.profile_touch_used(profile_id, now).await;
        }
        self.live().entry(id).or_insert_with(|| Live {
            profile_id: profile_id.to_string(),
            latest: watch::channel(Arc::new(row.clone())).0,
            cancel: None,
            llm: None,
        });
        permit.send(QueuedJob {
            row,
            profile: profile.clone(),
            profile_epoch,
            creds,
            timeout,
            llm_wait,
            replay,
        });
        Ok(())
    }

    /// The load at this moment, for `GET /metrics`.
    pub fn load(&self) -> crate::metrics::Load {
        let workers = self.limits.concurrency.max(1);
        let max_paused = self.limits.max_paused;
        crate::metrics::Load {
            queued: self.queue.max_capacity() - self.queue.capacity(),
            running: workers.saturating_sub(self.run_slots.available_permits()),
            paused: max_paused.saturating_sub(self.pause_slots.available_permits()),
            workers,
            max_paused,
        }
    }

    /// A receiver holding the execution's latest state, which changes with every
    /// status change, or `None` when the execution is no longer live (its final
    /// state is then in the store).
    pub fn subscribe(&self, id: &str) -> Option<watch::Receiver<Arc<ExecutionRow>>> {
        self.live().get(id).map(|l| l.latest.subscribe())
    }

    /// The live executions (a short-held lock; never across an await).
    fn live(&self) -> parking_lot::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock()
    }

    /// Hands the row's new state to long-polls; a final state also ends the
    /// execution's watch.
    fn publish(&self, row: &ExecutionRow) {
        let mut map = self.live();
        let latest = Arc::new(row.clone());
        if let Some(l) = map.get(&row.id) {
            l.latest.send_replace(latest.clone());
        }
        if row.status.is_terminal() {
            // Kept before the live entry goes: a poll finds it in one or the other.
            self.finished.lock().keep(latest);
            map.remove(&row.id);
        }
    }

    /// A finished execution kept in memory ([`Runner::remember_finished`] or its
    /// end here), if it still is.
    pub fn finished(&self, id: &str) -> Option<Arc<ExecutionRow>> {
        self.finished.lock().get(id)
    }

    /// Keeps a row read from the store for later polls, when it is final.
    pub fn remember_finished(&self, row: Arc<ExecutionRow>) {
        self.finished.lock().keep(row);
    }

    /// Revokes a profile and ends its running executions (a queued one checks the
    /// profile when it starts). The one revoke: the admin route and a sealed
    /// credential's violation both come here. Returns the profile and how many
    /// executions were stopped.
    pub async fn revoke_profile(
        &self,
        id: &str,
    ) -> Result<(crate::catalog::ProfileView, usize), crate::catalog::CatalogError> {
        let p = self.catalog.revoke_profile(id).await?;
        let stopped = self.cancel_profile(&p.id);
        tracing::info!(profile = %p.id, stopped, "profile revoked");
        Ok((p, stopped))
    }

    /// Ends every running execution of a profile; returns how many.
    fn cancel_profile(&self, profile_id: &str) -> usize {
        let map = self.live();
        let running = map
            .values()
            .filter(|l| l.profile_id == profile_id)
            .filter_map(|l| l.cancel.as_ref());
        let mut n = 0;
        for cancel in running {
            cancel.notify_one();
            n += 1;
        }
        n
    }

    /// Delivers the agent's answer to a paused `llm.complete`.
    pub fn respond_llm(
        &self,
        execution_id: &str,
        request_id: Option<&str>,
        response: String,
    ) -> Result<(), RespondError> {
        let mut map = self.live();
        let Some(Live {
            llm: slot @ Some(_),
            ..
        }) = map.get_mut(execution_id)
        else {
            return Err(RespondError::NotAwaiting);
        };
        if let (Some(asked), Some(p)) = (request_id, slot.as_ref()) {
            if asked != p.request_id {
                return Err(RespondError::WrongRequest);
            }
        }
        let pending = slot.take().ok_or(RespondError::NotAwaiting)?;
        pending
            .reply
            .send(response)
            .map_err(|_| RespondError::NotAwaiting)
    }

    /// Sets (or clears) the execution's paused `llm.complete` call.
    fn set_llm(&self, id: &str, pending: Option<PendingLlm>) {
        if let Some(l) = self.live().get_mut(id) {
            l.llm = pending;
        }
    }

    /// Stores the row, then publishes it: a long-poll never announces a state
    /// the store does not have.
    async fn save(&self, row: &ExecutionRow) {
        self.persist(row).await;
        self.publish(row);
    }

    async fn persist(&self, row: &ExecutionRow) {
        if let Err(e) = self.store.execution_update(row).await {
            tracing::error!(execution = %row.id, error = %e, "cannot persist execution state");
        }
    }

    /// Runs one queued job to its final state, in phases: the profile is checked
    /// again, the sandbox starts the script (with the egress session when it has
    /// network), then each event is handled until the outcome (or a revocation).
    async fn run_job(self: Arc<Self>, job: QueuedJob, run_slot: OwnedSemaphorePermit) {
        let Some(sandbox) = self.sandbox.clone() else {
            return;
        };
        let (settings, sealed) = script_settings(&job.creds);
        let mut run = Run {
            row: job.row,
            // Every value is redacted from output, sealed ones too (defence in depth).
            redactor: Arc::new(Redactor::with_options(
                job.creds.iter().map(|c| (c.name.clone(), c.value.clone())),
                &self.limits.redaction,
            )),
            events: Vec::new(),
            started: Instant::now(),
            waited: Duration::ZERO,
            llm_wait: job.llm_wait,
            run_slot: Some(run_slot),
            egress: None,
            record: RecordMode::Off,
            replay: job.replay,
        };
        // Registered before the profile check below, so a revoke that lands
        // between the check and the start still reaches this execution.
        let cancel = Arc::new(Notify::new());
        if let Some(l) = self.live().get_mut(&run.row.id) {
            l.cancel = Some(cancel.clone());
        }
        let _unregister = Unregister(self.clone(), run.row.id.clone());

        let Some(profile) = self
            .current_profile(job.profile, job.profile_epoch, &run.row.profile_id)
            .await
        else {
            let why = "the profile was revoked or expired before the script started";
            return self.end(run, ExecutionStatus::Error, why.into()).await;
        };
        run.record = match (&run.replay, profile.record) {
            // A replay keeps at least hashes, or it could not be compared.
            (Some(_), RecordMode::Off) => RecordMode::Hashes,
            (_, mode) => mode,
        };
        let tcp = tcp_routes(&profile.allowed_hosts, &job.creds, &sealed);
        // A database credential brings its destination: network even with `[]`.
        let policy = airlock_egress::Policy::from_allowed_hosts(&profile.allowed_hosts)
            .or_else(|| (!tcp.is_empty()).then(|| airlock_egress::Policy::Allow(Vec::new())));
        let network = policy.is_some();
        let started = self
            .start_script(&sandbox, &mut run, settings, job.timeout, network, &tcp)
            .await;
        let mut exec = match started {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(execution = %run.row.id, error = %e, "sandbox refused to start the execution");
                return self
                    .end(run, ExecutionStatus::Error, format!("sandbox failure: {e}"))
                    .await;
            }
        };
        if let (Some(policy), Some(pending)) = (policy, exec.take_proxy()) {
            run.egress = Some(
                self.clone()
                    .start_egress(&run, (policy, tcp), pending, sealed),
            );
        }
        loop {
            let event = tokio::select! {
                e = exec.next_event() => e,
                _ = cancel.notified() => {
                    exec.kill();
                    let why = "the profile was revoked while the script ran";
                    return self.end(run, ExecutionStatus::Error, why.into()).await;
                }
            };
            match event {
                Event::LlmRequest {
                    request_id,
                    prompt,
                    model,
                } => {
                    let call = LlmCall {
                        request_id,
                        prompt,
                        model,
                    };
                    if let Err((status, why)) = self.pause_for_llm(&mut run, &mut exec, call).await
                    {
                        exec.kill();
                        return self.end(run, status, why).await;
                    }
                }
                Event::Finished(outcome) => return self.complete(run, outcome).await,
            }
        }
    }

    /// The profile as it is now: it may have been revoked or have expired while the
    /// job waited in the queue, and the admin may have edited allowed_hosts (the
    /// egress policy). The row read at submission is current while no profile was
    /// written since. `None` when it may not run code any more.
    async fn current_profile(
        &self,
        queued: ProfileRow,
        epoch: u64,
        profile_id: &str,
    ) -> Option<ProfileRow> {
        let current = if self.store.profiles_epoch() == epoch {
            Ok(Some(queued))
        } else {
            self.store.profile_get(profile_id).await
        };
        match current {
            Ok(Some(p)) if p.is_usable(Utc::now()) => Some(p),
            _ => None,
        }
    }

    /// The interpreter's `sys.version` (run once, off the async threads).
    async fn python_version(&self) -> String {
        let python = self.limits.python.clone();
        self.python_version
            .get_or_init(|| async move {
                let shown = python.display().to_string();
                tokio::task::spawn_blocking(move || crate::sandbox::python_version(&python))
                    .await
                    .unwrap_or_else(|e| format!("unknown ({shown}: {e})"))
            })
            .await
            .clone()
    }

    /// Marks the execution `running` and has the sandbox start the script.
    async fn start_script(
        &self,
        sandbox: &Sandbox,
        run: &mut Run,
        settings: BTreeMap<String, String>,
        timeout: Duration,
        network: bool,
        tcp: &[airlock_egress::TcpRoute],
    ) -> airlock_sandbox::Result<Execution> {
        // A start-up rebuild of the package environment: wait rather than run a
        // script without the packages it asked for.
        self.packages.wait_ready().await;
        let (paths, preimport) = self.packages.warm_imports();
        sandbox.set_warm_imports(paths, preimport);
        run.row.status = ExecutionStatus::Running;
        // Microseconds: what the script's `datetime` holds (`airlock.now()`).
        let started = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
        run.row.started_at = Some(started);
        // A replay's clock is the replayed execution's.
        let now = run.replay.as_ref().map_or(started, |r| r.now);
        if run.record.is_on() {
            let installed = self.packages.current_installed();
            run.row.inputs = Some(ExecutionInputs {
                script_sha256: run.row.script_sha256.clone(),
                python: self.python_version().await,
                packages: installed.versions,
                package_contents: installed.contents,
                now,
                replay_of: run.replay.as_ref().map(|r| r.of.clone()),
                record: Some(match &run.replay {
                    Some(r) if r.answers.is_some() => RecordMode::Hashes,
                    _ => run.record,
                }),
            });
        }
        // Announced at once; stored while the sandbox starts the script (a crash
        // before the write leaves `pending`, which a restart turns into an error
        // like `running`).
        self.publish(&run.row);
        let running_row = run.row.clone();
        let mut env = BTreeMap::new();
        // The execution's clock (`airlock.now()`), recorded with its inputs.
        env.insert(
            "AIRLOCK_NOW".to_string(),
            now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        );
        if let (Some(bundle), true) = (&self.ca_bundle, network) {
            let b = bundle.display().to_string();
            for k in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
                env.insert(k.to_string(), b.clone());
            }
        }
        let (exec, ()) = tokio::join!(
            sandbox.run(Job {
                script: run.row.script.clone(),
                settings,
                timeout,
                env,
                network,
                tcp: tcp
                    .iter()
                    .map(|r| airlock_sandbox::TcpForward {
                        host: r.dest.host().to_string(),
                        port: r.dest.port(),
                    })
                    .collect(),
                python_paths: self.packages.sandbox_env_path().into_iter().collect(),
            }),
            self.persist(&running_row)
        );
        exec
    }

    /// A paused `llm.complete`: the request is stored redacted (`awaiting_llm`), the
    /// agent's answer is waited for, recorded redacted and delivered to the script as
    /// it is. Ends with (status, message) when no usable answer comes.
    async fn pause_for_llm(
        &self,
        run: &mut Run,
        exec: &mut Execution,
        call: LlmCall,
    ) -> Result<(), (ExecutionStatus, String)> {
        let (prompt, counts) = run.redactor.redact_str(&call.prompt);
        let (model, model_counts) = run.redactor.redact_str(&call.model);
        record(&mut run.events, "llm_prompt", counts);
        record(&mut run.events, "llm_model", model_counts);
        let request_id = call.request_id;
        if let Some(response) = recorded_llm_answer(run, &prompt, &model) {
            run.row.llm_exchanges.push(LlmExchange {
                request_id: request_id.clone(),
                prompt,
                model,
                response: response.clone(),
                asked_at: Some(Utc::now()),
                answered_at: Some(Utc::now()),
            });
            self.save(&run.row).await;
            if let Err(e) = exec.respond_llm(&request_id, &response).await {
                tracing::warn!(execution = %run.row.id, error = %e, "recorded LLM answer not delivered");
            }
            return Ok(());
        }
        run.row.status = ExecutionStatus::AwaitingLlm;
        run.row.llm_request = Some(LlmRequest {
            request_id: request_id.clone(),
            prompt: prompt.clone(),
            model: model.clone(),
        });
        run.row.redactions = run.events.clone();
        let (tx, rx) = oneshot::channel();
        self.set_llm(
            &run.row.id,
            Some(PendingLlm {
                request_id: request_id.clone(),
                reply: tx,
            }),
        );
        let asked_at = Utc::now();
        let paused = Instant::now();
        // The script is stopped while it waits: its run slot goes to another
        // execution, and its slot's idle zygote goes, while a pause slot is free.
        let pause_slot = self.pause_slots.clone().try_acquire_owned().ok();
        if pause_slot.is_some() {
            run.run_slot = None;
            exec.park();
        }
        self.save(&run.row).await;
        let answer = self.wait_llm(&run.row.profile_id, rx, run.llm_wait).await;
        if pause_slot.is_some() && answer.is_ok() {
            // Back to running: wait for a run slot (the pause slot is held meanwhile).
            run.run_slot = self.run_slots.clone().acquire_owned().await.ok();
        }
        drop(pause_slot);
        run.waited += paused.elapsed();
        run.row.llm_wait_ms = run.waited.as_millis() as i64;
        let answer = answer?;
        let (response, counts) = run.redactor.redact_str(&answer);
        record(&mut run.events, "llm_response", counts);
        run.row.llm_exchanges.push(LlmExchange {
            request_id: request_id.clone(),
            prompt,
            model,
            response,
            asked_at: Some(asked_at),
            answered_at: Some(Utc::now()),
        });
        run.row.llm_request = None;
        run.row.status = ExecutionStatus::Running;
        self.save(&run.row).await;
        if let Err(e) = exec.respond_llm(&request_id, &answer).await {
            tracing::warn!(execution = %run.row.id, error = %e, "LLM answer not delivered");
        }
        Ok(())
    }

    /// The script's outcome, redacted and cut to the output limit, as the final state.
    async fn complete(&self, mut run: Run, outcome: Outcome) {
        let cap = self.limits.output_cap_bytes;
        let redactor = &run.redactor;
        // Both streams, and the two as one in the order they were written, so
        // that a value split between them goes too.
        let order: Vec<Piece> = outcome
            .output_order
            .iter()
            .map(|&(stream, len)| Piece {
                stream: match stream {
                    OutputStream::Stdout => 0,
                    OutputStream::Stderr => 1,
                },
                len,
            })
            .collect();
        let streams = [
            Stream {
                bytes: &outcome.stdout,
                cut: outcome.stdout_truncated,
            },
            Stream {
                bytes: &outcome.stderr,
                cut: outcome.stderr_truncated,
            },
        ];
        let mut both = redactor.redact_outputs(&streams, &order, cap).into_iter();
        let (Some((out, out_trunc)), Some((err, err_trunc))) = (both.next(), both.next()) else {
            unreachable!("one result per stream")
        };
        record(&mut run.events, "stdout", out.counts);
        record(&mut run.events, "stderr", err.counts);
        let row = &mut run.row;
        row.stdout = with_marker(out.bytes, out_trunc || outcome.stdout_truncated, cap);
        row.stderr = with_marker(err.bytes, err_trunc || outcome.stderr_truncated, cap);
        if let Some(v) = outcome.result {
            let (text, counts) = redactor.redact_str(&v.to_string());
            record(&mut run.events, "result", counts);
            row.result = Some(text);
        }
        if let Some(e) = outcome.error {
            let (text, counts) = redactor.redact_str(&e);
            record(&mut run.events, "error", counts);
            row.error = Some(text);
        }
        row.status = match outcome.status {
            OutcomeStatus::Completed => ExecutionStatus::Completed,
            OutcomeStatus::Error => ExecutionStatus::Error,
            OutcomeStatus::Timeout => ExecutionStatus::Timeout,
        };
        close_egress(run.egress.take()).await;
        self.finish(run.row, run.started + run.waited, run.events)
            .await;
    }

    /// Ends the execution with `status` and `why` (nothing paused, the egress log
    /// complete) before the script produced an outcome.
    async fn end(&self, mut run: Run, status: ExecutionStatus, why: String) {
        self.set_llm(&run.row.id, None);
        run.row.llm_request = None;
        run.row.status = status;
        run.row.error = Some(why);
        close_egress(run.egress.take()).await;
        self.finish(run.row, run.started + run.waited, run.events)
            .await;
    }

    /// Waits for the agent's answer; ends with (status, message) on timeout or
    /// when the profile stops being usable.
    async fn wait_llm(
        &self,
        profile_id: &str,
        mut rx: oneshot::Receiver<String>,
        limit: Duration,
    ) -> Result<String, (ExecutionStatus, String)> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            tokio::select! {
                r = &mut rx => return r.map_err(|_| (ExecutionStatus::Error, "the LLM request was abandoned".to_string())),
                _ = tokio::time::sleep_until(deadline) => {
                    return Err((ExecutionStatus::Timeout, format!(
                        "the LLM answer never came: no response within {} s",
                        limit.as_secs()
                    )));
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    match self.store.profile_get(profile_id).await {
                        Ok(Some(p)) if p.is_usable(Utc::now()) => {}
                        Ok(_) => return Err((ExecutionStatus::Error, "the profile was revoked or expired while the script waited for the LLM".to_string())),
                        Err(e) => tracing::warn!(error = %e, "cannot check profile state"),
                    }
                }
            }
        }
    }

    /// Stores the final state. `run_start` is shifted by the time spent paused
    /// for LLM answers, so `execution_time_ms` counts running time only.
    async fn finish(&self, mut row: ExecutionRow, run_start: Instant, events: Vec<RedactionEvent>) {
        row.execution_time_ms = Some(run_start.elapsed().as_millis() as i64);
        row.completed_at = Some(Utc::now());
        self.metrics
            .redacted(events.iter().map(|e| e.count).sum::<u64>());
        row.redactions = events;
        self.metrics.finished(
            row.status.as_str(),
            row.execution_time_ms.unwrap_or(0),
            row.llm_wait_ms,
        );
        self.save(&row).await;
    }
}

/// Takes an execution out of the running set when its job ends, however it ends.
struct Unregister(Arc<Runner>, String);

impl Drop for Unregister {
    fn drop(&mut self) {
        if let Some(l) = self.0.live().get_mut(&self.1) {
            l.cancel = None;
        }
    }
}

/// What the script's `settings` hold: plain values as they are, and for each sealed
/// credential a fresh placeholder (its value never enters the sandbox).
fn script_settings(creds: &[OpenedCredential]) -> (BTreeMap<String, String>, Vec<SealedValue>) {
    let sealed: Vec<SealedValue> = creds
        .iter()
        .filter(|c| c.seal.is_sealed())
        .map(|c| SealedValue::new(&c.name, &c.value, &c.seal))
        .collect();
    let mut settings: BTreeMap<String, String> = creds
        .iter()
        .filter(|c| !c.seal.is_sealed())
        .map(|c| (c.name.clone(), c.value.clone()))
        .collect();
    for s in &sealed {
        let login = creds
            .iter()
            .find(|c| c.name == s.name)
            .and_then(|c| c.seal.database.as_ref());
        let shown = match login {
            Some(d) => connection_string(d, &s.placeholder),
            None => s.placeholder.clone(),
        };
        settings.insert(s.name.clone(), shown);
    }
    (settings, sealed)
}

/// What `settings.get` returns for a sealed database credential: a libpq connection
/// URI whose password is the placeholder. `sslmode=disable`: the hop is the
/// execution's own loopback, to the server, which speaks TLS to the database itself.
fn connection_string(d: &airlock_store::DatabaseLogin, placeholder: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    // What a URI's user, password and path segment cannot hold as it is. The
    // placeholder's `:` becomes `%3A`, a form the egress guards know.
    const URI_PART: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'/')
        .add(b':')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'@')
        .add(b'[')
        .add(b'\\')
        .add(b']')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'|')
        .add(b'}');
    let enc = |s: &str| utf8_percent_encode(s, URI_PART).to_string();
    format!(
        "postgresql://{}:{}@{}:{}/{}?sslmode=disable",
        enc(&d.user),
        enc(placeholder),
        d.host,
        d.port,
        enc(&d.database)
    )
}

/// The execution's TCP routes: the profile's `tcp://` destinations, and the
/// destination of each sealed database credential with its login (which the server
/// performs with the real password).
fn tcp_routes(
    allowed_hosts: &Option<Vec<String>>,
    creds: &[OpenedCredential],
    sealed: &[SealedValue],
) -> Vec<airlock_egress::TcpRoute> {
    let mut routes: Vec<airlock_egress::TcpRoute> =
        airlock_egress::TcpDestination::from_allowed_hosts(allowed_hosts)
            .into_iter()
            .map(airlock_egress::TcpRoute::from)
            .collect();
    for c in creds {
        let (Some(d), Some(s)) = (
            c.seal.database.as_ref(),
            sealed.iter().find(|s| s.name == c.name),
        ) else {
            continue;
        };
        let Some(dest) = airlock_egress::TcpDestination::parse(&d.destination()) else {
            continue;
        };
        let login = std::sync::Arc::new(airlock_egress::PgLogin {
            credential: c.name.clone(),
            user: d.user.clone(),
            database: d.database.clone(),
            password: c.value.clone(),
            placeholder: s.placeholder.clone(),
            tls: match d.tls {
                airlock_store::DatabaseTls::VerifyFull => airlock_egress::PgTls::VerifyFull,
                airlock_store::DatabaseTls::Disable => airlock_egress::PgTls::Disable,
            },
            read_only: d.read_only,
        });
        match routes.iter_mut().find(|r| r.dest == dest) {
            Some(r) => r.logins.push(login),
            None => routes.push(airlock_egress::TcpRoute {
                dest,
                logins: vec![login],
            }),
        }
    }
    routes
}

/// A replay from a `full` record answers `llm.complete` with the recorded answer
/// while the calls come in the recorded order with the recorded (redacted) prompt
/// and model; the first that differs, and every call after it, pauses as usual.
fn recorded_llm_answer(run: &mut Run, prompt: &str, model: &str) -> Option<String> {
    let replay = run.replay.as_mut()?;
    replay.answers.as_ref()?;
    let next = replay.llm.front()?;
    if next.prompt == prompt && next.model == model {
        replay.llm.pop_front().map(|x| x.response)
    } else {
        replay.llm.clear();
        None
    }
}

fn record(events: &mut Vec<RedactionEvent>, field: &str, counts: Vec<RedactionCount>) {
    for c in counts {
        match events
            .iter_mut()
            .find(|e| e.field == field && e.name == c.name)
        {
            Some(e) => {
                e.count += c.count;
                e.partial += c.partial;
            }
            None => events.push(RedactionEvent {
                field: field.to_string(),
                name: c.name,
                count: c.count,
                partial: c.partial,
            }),
        }
    }
}

fn with_marker(bytes: Vec<u8>, truncated: bool, cap: usize) -> String {
    let mut s = String::from_utf8_lossy(&bytes).into_owned();
    if truncated {
        s.push_str(&format!("\n[output truncated at {cap} bytes]"));
    }
    s
}

/// Starts each queued job once a run slot is free (the job holds the slot, and
/// gives it up while it is paused in `llm.complete`).
async fn dispatch(runner: std::sync::Weak<Runner>, mut rx: mpsc::Receiver<QueuedJob>) {
    let slots = match runner.upgrade() {
        Some(r) => r.run_slots.clone(),
        None => return,
    };
    while let Some(job) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(r) = runner.upgrade() else {
            return;
        };
        tokio::spawn(r.run_job(job, permit));
    }
}
