//! Byte accounting and idle detection: what a connection moved and when it last
//! moved anything. [`Metered`] wraps both sides of the proxy: the client side marks
//! its [`Activity`], the upstream side also counts its bytes with a [`Meter`].

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::serve::Shared;

/// When a connection last moved a byte, and how many of its requests are waiting
/// for an answer (a client connection waiting for its upstream is not idle; an
/// upstream connection never has requests of its own in flight).
#[derive(Clone)]
pub(crate) struct Activity {
    started: Instant,
    last: Arc<AtomicU64>,
    busy: Arc<AtomicU64>,
}

/// Marks a request in flight until dropped.
pub(crate) struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            started: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
            busy: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        self.last
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(crate) fn busy(&self) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Resolves once no request was in flight and no byte moved either way for
    /// `idle` (a client that stops reading a response is cut, and what was buffered
    /// for it freed).
    pub(crate) async fn idle(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let quiet = self.started.elapsed().saturating_sub(last);
            if self.busy.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(idle).await;
                continue;
            }
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet + Duration::from_millis(10)).await;
        }
    }
}

/// One attempt's upstream traffic: bytes each way, counted against the execution's
/// budget, when it last moved, and why it was cut (if it was).
pub(crate) struct Meter {
    shared: Arc<Shared>,
    pub(crate) up: AtomicU64,
    pub(crate) down: AtomicU64,
    activity: Activity,
    pub(crate) cut: std::sync::Mutex<Option<String>>,
    /// What the answer was, for the log ([`crate::EgressEvent::status`]).
    pub(crate) answer: std::sync::Mutex<Answered>,
}

/// The recorded side of an HTTP answer.
#[derive(Debug, Default)]
pub(crate) struct Answered {
    pub(crate) status: Option<u16>,
    pub(crate) body_sha256: Option<String>,
    pub(crate) captured: Option<crate::CapturedAnswer>,
}

impl Meter {
    pub(crate) fn new(shared: Arc<Shared>) -> Meter {
        Meter {
            shared,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            activity: Activity::new(),
            cut: std::sync::Mutex::new(None),
            answer: std::sync::Mutex::new(Answered::default()),
        }
    }

    /// Counts `n` bytes against the execution's budget; `Err` once it is spent.
    fn count(&self, n: usize, up: bool) -> io::Result<()> {
        let n = n as u64;
        if up {
            self.up.fetch_add(n, Ordering::Relaxed);
        } else {
            self.down.fetch_add(n, Ordering::Relaxed);
        }
        let total = self.shared.total.fetch_add(n, Ordering::Relaxed) + n;
        let max = self.shared.cfg.limits.max_total_bytes;
        if total > max {
            let msg = format!("the execution's egress limit of {max} bytes was reached");
            self.cut(msg.clone());
            return Err(io::Error::other(msg));
        }
        Ok(())
    }

    pub(crate) fn answered(&self, status: u16) {
        if let Ok(mut a) = self.answer.lock() {
            a.status = Some(status);
        }
    }

    pub(crate) fn body_hashed(&self, sha256: String) {
        if let Ok(mut a) = self.answer.lock() {
            a.body_sha256 = Some(sha256);
        }
    }

    /// Keeps a captured answer, its body charged to the session's record budget.
    pub(crate) fn captured(&self, capture: crate::recording::Capture) {
        let per_execution = match self.shared.cfg.record {
            crate::Record::Bodies { per_execution, .. } => per_execution,
            _ => 0,
        };
        let answer = capture.finish(&self.shared.recorded, per_execution);
        if let Ok(mut a) = self.answer.lock() {
            a.captured = Some(answer);
        }
    }

    pub(crate) fn cut(&self, why: impl Into<String>) {
        if let Ok(mut c) = self.cut.lock() {
            c.get_or_insert(why.into());
        }
    }

    /// Resolves once nothing moved either way for `idle`.
    pub(crate) async fn idle(&self, idle: Duration) {
        self.activity.idle(idle).await
    }
}

/// A stream with its progress recorded: every byte either way marks its
/// [`Activity`]; an upstream stream's bytes are also counted by its [`Meter`] (reads
/// are bytes down, writes bytes up), and fail once the execution's budget is spent.
pub(crate) struct Metered<S> {
    inner: S,
    activity: Activity,
    meter: Option<Arc<Meter>>,
}

impl<S> Metered<S> {
    /// The client side of a connection: activity only.
    pub(crate) fn client(inner: S, activity: Activity) -> Self {
        activity.touch();
        Metered {
            inner,
            activity,
            meter: None,
        }
    }

    /// The upstream side of an attempt: activity and bytes, in `meter`.
    pub(crate) fn upstream(inner: S, meter: Arc<Meter>) -> Self {
        let activity = meter.activity.clone();
        activity.touch();
        Metered {
            inner,
            activity,
            meter: Some(meter),
        }
    }

    /// Records `n` bytes moved (`up`: written).
    fn moved(&self, n: usize, up: bool) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        self.activity.touch();
        match &self.meter {
            Some(m) => m.count(n, up),
            None => Ok(()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            self.moved(buf.filled().len() - before, false)?;
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.moved(n, true)?;
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
