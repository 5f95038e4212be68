//! The egress log: one event per attempt, sent when the attempt ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::hook::Refusal;
use crate::meter::Meter;
use crate::serve::Shared;

/// One attempt through the proxy, as it ended. Every text field except `reason`'s
/// fixed wording comes from the script: redact before storing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressEvent {
    /// When the attempt started.
    pub at: DateTime<Utc>,
    /// The host as the script asked for it (name or IP literal).
    pub host: String,
    pub port: u16,
    /// `CONNECT` for tunnels, else the HTTP method of a plain-HTTP request.
    pub method: String,
    /// Path of a plain-HTTP request (no query string); `None` for tunnels.
    pub path: Option<String>,
    /// Bytes sent upstream.
    pub bytes_up: u64,
    /// Bytes received from upstream.
    pub bytes_down: u64,
    /// From the start of the attempt to its end (a tunnel's or TCP connection's
    /// whole life).
    pub duration_ms: u64,
    pub allowed: bool,
    /// The rule that allowed it, or why it was refused.
    pub reason: String,
    /// The request tried to take a sealed credential where it does not belong.
    pub violation: bool,
    /// Credential names substituted into the request (never values).
    pub substituted: Vec<String>,
    /// The HTTP status of the answer (plain or intercepted requests that got one).
    pub status: Option<u16>,
    /// Hex SHA-256 of the response body as the script received it, when the session
    /// records ([`crate::EgressConfig::record`]) and the body was read to its end.
    pub body_sha256: Option<String>,
    /// The answer itself, when the session keeps bodies ([`crate::Record::Bodies`]).
    pub answer: Option<crate::CapturedAnswer>,
}

/// One logged attempt. The event is sent when this is dropped, so a connection cut by
/// the end of the execution (its task dropped) is logged too.
pub(crate) struct Attempt {
    shared: Arc<Shared>,
    pub(crate) row: Option<EgressEvent>,
    pub(crate) meter: Arc<Meter>,
    started: std::time::Instant,
}

impl Attempt {
    pub(crate) fn new(
        shared: &Arc<Shared>,
        host: String,
        port: u16,
        method: &str,
        path: Option<String>,
    ) -> Attempt {
        Attempt {
            shared: shared.clone(),
            row: Some(EgressEvent {
                at: Utc::now(),
                host,
                port,
                method: method.to_string(),
                path,
                bytes_up: 0,
                bytes_down: 0,
                duration_ms: 0,
                allowed: false,
                reason: String::new(),
                violation: false,
                substituted: Vec::new(),
                status: None,
                body_sha256: None,
                answer: None,
            }),
            meter: Arc::new(Meter::new(shared.clone())),
            started: std::time::Instant::now(),
        }
    }

    pub(crate) fn set(&mut self, allowed: bool, reason: impl Into<String>) {
        if let Some(r) = self.row.as_mut() {
            r.allowed = allowed;
            r.reason = reason.into();
        }
    }

    pub(crate) fn refuse(&mut self, refusal: &Refusal) {
        self.set(false, refusal.reason.clone());
        if let Some(r) = self.row.as_mut() {
            r.violation = refusal.violation;
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let Some(mut row) = self.row.take() else {
            return;
        };
        row.bytes_up = self.meter.up.load(Ordering::Relaxed);
        row.bytes_down = self.meter.down.load(Ordering::Relaxed);
        row.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if let Ok(mut answer) = self.meter.answer.lock() {
            row.status = answer.status;
            row.body_sha256.clone_from(&answer.body_sha256);
            row.answer = answer.captured.take();
        }
        if let Some(cut) = self.meter.cut.lock().ok().and_then(|c| c.clone()) {
            row.reason = format!("{}; {cut}", row.reason);
        }
        if self.shared.logged.fetch_add(1, Ordering::Relaxed) < self.shared.cfg.limits.max_log_rows
        {
            let _ = self.shared.log.send(row);
        }
    }
}

impl Attempt {
    pub(crate) fn with(mut self, allowed: bool, reason: &str) -> Attempt {
        self.set(allowed, reason);
        self
    }
}
