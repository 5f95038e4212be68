//! One execution's egress: its session with the profile's policy and, for sealed
//! credentials, the `Sealer` hook (whose violation revokes the profile when the
//! operator asked), and the writer that stores every attempt redacted.

use super::*;

/// One execution's egress proxy and the task writing its log.
pub(super) struct EgressSession {
    stop: airlock_egress::Stopper,
    writer: tokio::task::JoinHandle<()>,
}

impl Runner {
    /// Serves the execution's egress listeners (once the sandbox delivers them) with
    /// the profile's policy and TCP destinations; each attempt is redacted and stored
    /// as it ends.
    pub(super) fn start_egress(
        self: Arc<Self>,
        run: &Run,
        (policy, tcp): (airlock_egress::Policy, Vec<airlock_egress::TcpRoute>),
        pending: airlock_sandbox::PendingProxy,
        sealed: Vec<SealedValue>,
    ) -> EgressSession {
        let (execution_id, profile_id) = (run.row.id.as_str(), run.row.profile_id.as_str());
        let redactor = run.redactor.clone();
        // Recording sees every HTTP answer (HTTPS intercepted). A replay from a
        // record hashes what it serves (its answers are in the record already).
        let replay = run.replay.as_ref().and_then(|r| r.answers.clone());
        let record = match (run.record, &replay) {
            (RecordMode::Off, None) => airlock_egress::Record::Off,
            (RecordMode::Full, None) => airlock_egress::Record::bodies(),
            _ => airlock_egress::Record::Hashes,
        };
        let answers =
            matches!(record, airlock_egress::Record::Bodies { .. }).then(|| self.catalog.clone());
        let hook: Arc<dyn airlock_egress::RequestHook> = if sealed.is_empty() {
            Arc::new(airlock_egress::NoHook)
        } else {
            let runner = Arc::downgrade(&self);
            let (profile, exec) = (profile_id.to_string(), execution_id.to_string());
            let on_violation: crate::sealed::ViolationHandler = Arc::new(
                move |v: crate::sealed::Violation| {
                    let Some(runner) = runner.upgrade() else {
                        return;
                    };
                    let (profile, exec) = (profile.clone(), exec.clone());
                    let revoke = !v.revoke.is_empty();
                    tracing::warn!(execution = %exec, profile = %profile, credentials = ?v.credentials,
                        host = %v.host, revoke, "sealed credential sent to a host it is not bound to");
                    runner.notifier.notify(
                        crate::notify::Event::SealedViolation,
                        format!(
                            "a script sent sealed credential{} {} to {}, where {} may not go{}",
                            if v.credentials.len() == 1 { "" } else { "s" },
                            v.credentials.join(", "),
                            v.host,
                            if v.credentials.len() == 1 {
                                "its value"
                            } else {
                                "their values"
                            },
                            if revoke {
                                "; the profile is revoked"
                            } else {
                                "; the request was refused"
                            }
                        ),
                        format!("/ui/executions/{exec}"),
                        serde_json::json!({
                            "execution_id": exec,
                            "profile_id": profile,
                            "credentials": v.credentials,
                            "host": v.host,
                            "revoked": revoke,
                        }),
                    );
                    if revoke {
                        tokio::spawn(async move {
                            if let Err(e) = runner.revoke_profile(&profile).await {
                                tracing::warn!(profile = %profile, error = %e, "revocation after a violation failed");
                            }
                        });
                    }
                },
            );
            Arc::new(crate::sealed::Sealer::new(
                sealed,
                &self.limits.redaction,
                on_violation,
            ))
        };
        let cfg = airlock_egress::EgressConfig {
            record,
            replay,
            policy,
            limits: self.limits.egress.clone(),
            hook,
            tls: self.egress_tls.clone(),
            tcp,
        };
        let span = tracing::info_span!("egress", execution = %execution_id);
        let session = span.in_scope(|| {
            let listeners = async move {
                pending
                    .listeners()
                    .await
                    .map(|l| airlock_egress::Listeners {
                        proxy: l.proxy,
                        tcp: l.tcp,
                    })
            };
            airlock_egress::Session::start(cfg, airlock_egress::Listen::later(listeners))
        });
        let (stop, events) = session.split();
        // Every text field comes from the script: each may carry a secret.
        let writer = crate::egress_log::spawn_writer(
            self.store.clone(),
            execution_id.to_string(),
            events,
            Some(redactor),
            answers,
            Some(self.metrics.clone()),
        );
        EgressSession { stop, writer }
    }
}

/// Stops the execution's proxy (closing its listener and cutting open connections)
/// and waits until every attempt is stored, so the log is complete when the
/// execution's final state is visible.
pub(super) async fn close_egress(session: Option<EgressSession>) {
    if let Some(s) = session {
        s.stop.stop();
        if tokio::time::timeout(Duration::from_secs(10), s.writer)
            .await
            .is_err()
        {
            tracing::warn!("egress log writer did not finish in 10 s");
        }
    }
}
