//! Script approval: executions of profiles with `approval` wait for a person.
//!
//! An execution that needs approval is stored `awaiting_approval` with an
//! approval row of the same id (`approvals` table), and is not queued. An
//! approver approves (the runner queues it) or denies it (it ends `denied`);
//! nobody deciding within `AIRLOCK_APPROVAL_TIMEOUT` ends it `denied` too (fail
//! closed). Under `first_run` an approved row is also a grant: the same script
//! (by SHA-256) of that profile runs without asking while the grant holds (runs
//! left, end date, not withdrawn).

use std::sync::{Arc, Weak};
use std::time::Duration;

use airlock_store::{
    ApprovalMode, ApprovalRow, ApprovalStatus, ExecutionRow, ExecutionStatus, ProfileRow, Store,
    StoreError,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::runner::{Runner, RunnerError};

/// Requests that may wait for an approver at once; more get 429.
pub const MAX_PENDING: usize = 1000;
/// How often pending requests past their expiry are looked for.
const EXPIRY_SWEEP: Duration = Duration::from_secs(2);
/// Scripts compared when looking for the closest approved one.
const CLOSEST_OF: i64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    #[error("no approval request {0:?}")]
    NotFound(String),
    /// It was decided already (or expired); the message says how.
    #[error("{0}")]
    Decided(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the profile cannot run code now ({0}); the request was denied")]
    ProfileInactive(String),
    #[error("{MAX_PENDING} executions already wait for approval; decide some and retry")]
    TooMany,
    #[error(transparent)]
    Runner(#[from] RunnerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type ApprovalResult<T> = Result<T, ApprovalError>;

/// A request as approvers see it (no secret: names, hosts and hashes only).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApprovalView {
    /// The waiting execution's id, which is also the request's.
    pub execution_id: String,
    pub profile_id: String,
    pub profile_description: String,
    pub mode: ApprovalMode,
    pub status: ApprovalStatus,
    pub script_sha256: String,
    /// Credential names the script could read.
    pub credentials: Vec<String>,
    /// Hosts it could reach (`null`: unrestricted, `[]`: none).
    pub allowed_hosts: Option<Vec<String>>,
    pub reason: Option<String>,
    /// `first_run` grants: runs still allowed without asking (`null`: no limit).
    pub runs_left: Option<i64>,
    /// `first_run` grants: when the grant ends (`null`: until withdrawn).
    pub approved_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// One request with its script, and how it differs from the closest script of
/// the same profile that was approved before.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApprovalDetail {
    #[serde(flatten)]
    pub approval: ApprovalView,
    pub script: String,
    pub closest_approved: Option<ClosestApproved>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClosestApproved {
    pub execution_id: String,
    /// Share of equal lines, 0 to 1.
    pub similarity: f32,
    /// Unified diff from that script to this one (empty when equal).
    pub diff: String,
}

/// What an approver grants beyond this one execution (`first_run` only).
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// Runs including this one (`None`: no limit).
    pub runs: Option<i64>,
    pub until: Option<DateTime<Utc>>,
    pub note: Option<String>,
}

pub struct Approvals {
    store: Arc<dyn Store>,
    notifier: Arc<crate::notify::Notifier>,
    runner: Arc<Runner>,
    timeout: chrono::Duration,
}

impl Approvals {
    /// Starts the service: executions stored waiting (before a restart) are
    /// watched again, and the expiry sweep runs while the service lives.
    pub async fn start(
        store: Arc<dyn Store>,
        runner: Arc<Runner>,
        notifier: Arc<crate::notify::Notifier>,
        timeout_secs: u64,
    ) -> ApprovalResult<Arc<Approvals>> {
        let approvals = Arc::new(Approvals {
            store,
            notifier,
            runner,
            timeout: chrono::Duration::seconds(i64::try_from(timeout_secs).unwrap_or(i64::MAX)),
        });
        for a in approvals
            .store
            .approvals_list(&[ApprovalStatus::Pending], None, MAX_PENDING as i64 * 2)
            .await?
        {
            if let Some(row) = approvals.store.execution_get(&a.execution_id).await? {
                approvals.runner.watch_held(&row);
            }
        }
        tokio::spawn(sweep(Arc::downgrade(&approvals)));
        Ok(approvals)
    }

    /// Whether this submission must wait for an approver; under `first_run` a
    /// grant that holds is used (one run of it).
    pub async fn needed(&self, profile: &ProfileRow, script: &str) -> ApprovalResult<bool> {
        Ok(match profile.approval {
            ApprovalMode::Off => false,
            ApprovalMode::EveryRun => true,
            ApprovalMode::FirstRun => {
                let sha = crate::ids::sha256_hex(script.as_bytes());
                self.store
                    .approval_take_grant(&profile.id, &sha, Utc::now())
                    .await?
                    .is_none()
            }
        })
    }

    /// Stores the execution waiting, with its request.
    pub async fn request(
        &self,
        profile: &ProfileRow,
        script: String,
        (timeout, llm_wait): (Duration, Duration),
    ) -> ApprovalResult<ApprovalRow> {
        let pending = self
            .store
            .approvals_list(&[ApprovalStatus::Pending], None, MAX_PENDING as i64)
            .await?;
        if pending.len() >= MAX_PENDING {
            return Err(ApprovalError::TooMany);
        }
        let row = self.runner.hold(profile, script, timeout).await?;
        let now = Utc::now();
        let approval = ApprovalRow {
            execution_id: row.id.clone(),
            profile_id: profile.id.clone(),
            script_sha256: row.script_sha256.clone(),
            mode: profile.approval,
            status: ApprovalStatus::Pending,
            llm_timeout_secs: llm_wait.as_secs() as i64,
            reason: None,
            runs_left: None,
            approved_until: None,
            created_at: now,
            expires_at: now + self.timeout,
            decided_at: None,
        };
        if let Err(e) = self.store.approval_insert(&approval).await {
            self.runner
                .end_held(
                    row,
                    ExecutionStatus::Error,
                    "the approval request could not be stored".into(),
                )
                .await;
            return Err(e.into());
        }
        self.notifier.notify(
            crate::notify::Event::ApprovalNeeded,
            format!(
                "an execution of profile \"{}\" waits for approval",
                profile.description
            ),
            format!("/ui/approvals/{}", approval.execution_id),
            serde_json::json!({
                "execution_id": approval.execution_id,
                "profile_id": profile.id,
                "profile_description": profile.description,
                "mode": mode_name(profile.approval),
                "script_sha256": approval.script_sha256,
                "expires_at": approval.expires_at,
            }),
        );
        Ok(approval)
    }

    pub async fn list(&self, statuses: &[ApprovalStatus]) -> ApprovalResult<Vec<ApprovalView>> {
        let rows = self.store.approvals_list(statuses, None, 200).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.view(r).await?);
        }
        Ok(out)
    }

    async fn view(&self, a: ApprovalRow) -> ApprovalResult<ApprovalView> {
        let profile = self.store.profile_get(&a.profile_id).await?;
        let credentials = self
            .store
            .profile_credentials(&a.profile_id)
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect();
        Ok(ApprovalView {
            execution_id: a.execution_id,
            profile_id: a.profile_id,
            profile_description: profile
                .as_ref()
                .map(|p| p.description.clone())
                .unwrap_or_default(),
            mode: a.mode,
            status: a.status,
            script_sha256: a.script_sha256,
            credentials,
            allowed_hosts: profile.and_then(|p| p.allowed_hosts),
            reason: a.reason,
            runs_left: a.runs_left,
            approved_until: a.approved_until,
            created_at: a.created_at,
            expires_at: a.expires_at,
            decided_at: a.decided_at,
        })
    }

    async fn load(&self, id: &str) -> ApprovalResult<(ApprovalRow, ExecutionRow)> {
        let a = self
            .store
            .approval_get(id)
            .await?
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))?;
        let e = self
            .store
            .execution_get(id)
            .await?
            .ok_or_else(|| ApprovalError::NotFound(id.to_string()))?;
        Ok((a, e))
    }

    pub async fn detail(&self, id: &str) -> ApprovalResult<ApprovalDetail> {
        let (a, e) = self.load(id).await?;
        let closest = self.closest_approved(&a, &e.script).await?;
        Ok(ApprovalDetail {
            approval: self.view(a).await?,
            script: e.script,
            closest_approved: closest,
        })
    }

    /// The most similar script among the profile's latest approved ones.
    async fn closest_approved(
        &self,
        a: &ApprovalRow,
        script: &str,
    ) -> ApprovalResult<Option<ClosestApproved>> {
        let approved = self
            .store
            .approvals_list(
                &[ApprovalStatus::Approved, ApprovalStatus::Withdrawn],
                Some(&a.profile_id),
                CLOSEST_OF,
            )
            .await?;
        let mut best: Option<(f32, String, String)> = None;
        for other in approved
            .into_iter()
            .filter(|o| o.execution_id != a.execution_id)
        {
            let Some(row) = self.store.execution_get(&other.execution_id).await? else {
                continue;
            };
            let ratio = similar::TextDiff::from_lines(row.script.as_str(), script).ratio();
            if best.as_ref().is_none_or(|(r, _, _)| ratio > *r) {
                best = Some((ratio, other.execution_id, row.script));
            }
        }
        Ok(best.map(|(similarity, execution_id, old)| {
            let diff = similar::TextDiff::from_lines(old.as_str(), script);
            ClosestApproved {
                diff: if old == script {
                    String::new()
                } else {
                    diff.unified_diff()
                        .context_radius(3)
                        .header(&format!("approved {execution_id}"), "this script")
                        .to_string()
                },
                execution_id,
                similarity,
            }
        }))
    }

    /// A pending request that is still pending and not past its expiry, or why not.
    async fn pending(&self, id: &str) -> ApprovalResult<(ApprovalRow, ExecutionRow)> {
        let (a, e) = self.load(id).await?;
        if a.status != ApprovalStatus::Pending {
            return Err(ApprovalError::Decided(format!(
                "approval request {id} is {}, not pending",
                status_name(a.status)
            )));
        }
        if a.expires_at <= Utc::now() {
            self.expire_due().await;
            return Err(ApprovalError::Decided(format!(
                "approval request {id} expired at {}; the agent must submit the script again",
                a.expires_at.to_rfc3339()
            )));
        }
        Ok((a, e))
    }

    /// Approves a pending request: the execution is queued. Under `first_run`
    /// the same script may then run `runs - 1` more times until `until`.
    pub async fn approve(&self, id: &str, grant: Grant) -> ApprovalResult<ApprovalRow> {
        if let Some(n) = grant.runs {
            if !(1..=1_000_000).contains(&n) {
                return Err(ApprovalError::Invalid(
                    "runs must be between 1 and 1000000 (this run included)".into(),
                ));
            }
        }
        let now = Utc::now();
        if grant.until.is_some_and(|u| u <= now) {
            return Err(ApprovalError::Invalid("until must be in the future".into()));
        }
        let note = check_reason(grant.note)?;
        let (a, e) = self.pending(id).await?;
        if a.mode == ApprovalMode::EveryRun && (grant.runs.is_some() || grant.until.is_some()) {
            return Err(ApprovalError::Invalid(
                "runs and until apply to first_run approvals; under every_run each execution is approved on its own".into(),
            ));
        }
        let epoch = self.store.profiles_epoch();
        let profile = self.store.profile_get(&a.profile_id).await?;
        let refusal = match &profile {
            None => Some("it was deleted".to_string()),
            Some(p) => p.refusal(now).map(|r| {
                match r {
                    airlock_store::Unusable::Revoked => "it is revoked",
                    airlock_store::Unusable::Unlocked => "it is not locked",
                    airlock_store::Unusable::Expired => "it has expired",
                }
                .to_string()
            }),
        };
        if let Some(why) = refusal {
            self.deny_held(
                &a,
                e,
                format!("the profile cannot run code ({why})"),
                format!("denied: the profile cannot run code now ({why})"),
            )
            .await?;
            return Err(ApprovalError::ProfileInactive(why));
        }
        let Some(profile) = profile else {
            return Err(ApprovalError::NotFound(id.to_string()));
        };
        let mut decided = a.clone();
        decided.status = ApprovalStatus::Approved;
        decided.reason = note;
        decided.decided_at = Some(now);
        if a.mode == ApprovalMode::FirstRun {
            decided.runs_left = grant.runs.map(|n| n - 1);
            decided.approved_until = grant.until;
        }
        if !self
            .store
            .approval_decide(&decided, ApprovalStatus::Pending)
            .await?
        {
            return Err(ApprovalError::Decided(format!(
                "approval request {id} was decided by someone else meanwhile"
            )));
        }
        let timeouts = (
            Duration::from_secs(u64::try_from(e.timeout_secs).unwrap_or(1)),
            Duration::from_secs(u64::try_from(a.llm_timeout_secs).unwrap_or(1)),
        );
        if let Err(err) = self
            .runner
            .release(e.clone(), &profile, epoch, timeouts)
            .await
        {
            // Approved, but it cannot be queued now: the execution ends with the
            // reason (a first_run grant stands, so a resubmission runs).
            self.runner
                .end_held(
                    e,
                    ExecutionStatus::Error,
                    format!("approved, but it could not be queued: {err}"),
                )
                .await;
            return Err(err.into());
        }
        Ok(decided)
    }

    /// Denies a pending request with a reason the agent reads in `error`.
    pub async fn deny(&self, id: &str, reason: Option<String>) -> ApprovalResult<ApprovalRow> {
        let Some(reason) = check_reason(reason)? else {
            return Err(ApprovalError::Invalid(
                "give a reason for the denial: the agent reads it".into(),
            ));
        };
        let (a, e) = self.pending(id).await?;
        let message = format!("denied by an approver: {reason}");
        match self.deny_held(&a, e, reason, message).await? {
            Some(decided) => Ok(decided),
            None => Err(ApprovalError::Decided(format!(
                "approval request {id} was decided by someone else meanwhile"
            ))),
        }
    }

    /// Records the denial of a still-pending request (`reason` for approvers),
    /// then ends its execution `denied` with `message` for the agent; `None`
    /// when someone decided it first.
    async fn deny_held(
        &self,
        a: &ApprovalRow,
        execution: ExecutionRow,
        reason: String,
        message: String,
    ) -> ApprovalResult<Option<ApprovalRow>> {
        let mut decided = a.clone();
        decided.status = ApprovalStatus::Denied;
        decided.reason = Some(reason);
        decided.decided_at = Some(Utc::now());
        if !self
            .store
            .approval_decide(&decided, ApprovalStatus::Pending)
            .await?
        {
            return Ok(None);
        }
        self.runner
            .end_held(execution, ExecutionStatus::Denied, message)
            .await;
        Ok(Some(decided))
    }

    /// Takes a `first_run` grant back: the script asks again next time.
    pub async fn withdraw(&self, id: &str) -> ApprovalResult<ApprovalRow> {
        let (a, _) = self.load(id).await?;
        if a.status != ApprovalStatus::Approved || a.mode != ApprovalMode::FirstRun {
            return Err(ApprovalError::Decided(format!(
                "only an approved first_run request can be withdrawn; {id} is {} ({})",
                status_name(a.status),
                mode_name(a.mode)
            )));
        }
        let mut decided = a;
        decided.status = ApprovalStatus::Withdrawn;
        if !self
            .store
            .approval_decide(&decided, ApprovalStatus::Approved)
            .await?
        {
            return Err(ApprovalError::Decided(format!(
                "approval {id} changed meanwhile"
            )));
        }
        Ok(decided)
    }

    /// Denies every pending request of a profile that can no longer run code
    /// (revoked, deleted); `why` completes "the profile …".
    pub async fn end_for_profile(&self, profile_id: &str, why: &str) -> ApprovalResult<usize> {
        let pending = self
            .store
            .approvals_list(
                &[ApprovalStatus::Pending],
                Some(profile_id),
                MAX_PENDING as i64,
            )
            .await?;
        let mut ended = 0;
        for a in pending {
            let Some(row) = self.store.execution_get(&a.execution_id).await? else {
                continue;
            };
            let (reason, message) = (
                format!("the profile {why}"),
                format!("denied: the profile {why}"),
            );
            if self.deny_held(&a, row, reason, message).await?.is_some() {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Ends every execution whose request expired undecided.
    async fn expire_due(&self) {
        let ids = match self.store.approvals_expire(Utc::now()).await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot expire approval requests");
                return;
            }
        };
        let secs = self.timeout.num_seconds();
        for id in ids {
            if let Ok(Some(row)) = self.store.execution_get(&id).await {
                if row.status == ExecutionStatus::AwaitingApproval {
                    self.runner
                        .end_held(
                            row,
                            ExecutionStatus::Denied,
                            format!(
                                "denied: no approver decided within {secs} s (AIRLOCK_APPROVAL_TIMEOUT); submit it again"
                            ),
                        )
                        .await;
                }
            }
            tracing::info!(execution = %id, "approval request expired");
        }
    }
}

async fn sweep(approvals: Weak<Approvals>) {
    let mut tick = tokio::time::interval(EXPIRY_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(a) = approvals.upgrade() else { return };
        a.expire_due().await;
    }
}

fn check_reason(text: Option<String>) -> ApprovalResult<Option<String>> {
    crate::validate::note("reason", text).map_err(|e| ApprovalError::Invalid(e.0))
}

pub fn status_name(s: ApprovalStatus) -> &'static str {
    match s {
        ApprovalStatus::Pending => "pending",
        ApprovalStatus::Approved => "approved",
        ApprovalStatus::Denied => "denied",
        ApprovalStatus::Expired => "expired",
        ApprovalStatus::Withdrawn => "withdrawn",
    }
}

pub fn mode_name(m: ApprovalMode) -> &'static str {
    match m {
        ApprovalMode::Off => "off",
        ApprovalMode::FirstRun => "first_run",
        ApprovalMode::EveryRun => "every_run",
    }
}
