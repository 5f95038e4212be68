//! One execution's egress as a whole: the proxy served on its listener, the log of
//! its attempts, and the switch that ends it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::event::EgressEvent;
use crate::serve::{serve, EgressConfig, Listeners};

/// Listening sockets that arrive later, or why there are none.
pub type PendingListener = Pin<Box<dyn Future<Output = Result<Listeners, String>> + Send>>;

/// Where a session accepts its clients.
pub enum Listen {
    /// Already-bound listening sockets.
    Ready(Listeners),
    /// Sockets delivered later (the sandbox creates them in the execution's own
    /// network namespace); the session serves them once they arrive, unless stopped
    /// first.
    Later(PendingListener),
}

impl Listen {
    /// The socket(s) `listener` resolves to: a [`std::net::TcpListener`] (the proxy
    /// alone) or [`Listeners`].
    pub fn later<L: Into<Listeners>>(
        listener: impl Future<Output = Result<L, String>> + Send + 'static,
    ) -> Listen {
        Listen::Later(Box::pin(async move { listener.await.map(Into::into) }))
    }
}

impl From<std::net::TcpListener> for Listen {
    fn from(l: std::net::TcpListener) -> Listen {
        Listen::Ready(l.into())
    }
}

impl From<Listeners> for Listen {
    fn from(l: Listeners) -> Listen {
        Listen::Ready(l)
    }
}

/// The log of a session's attempts, one [`EgressEvent`] each as it ends. It closes
/// once the session is stopped and every connection it served is gone, so draining
/// it to the end yields every attempt.
pub type Events = mpsc::UnboundedReceiver<EgressEvent>;

/// Ends a session: its listener closes and open connections are cut (and logged
/// with what they moved). Dropping it does the same.
#[derive(Debug)]
pub struct Stopper(watch::Sender<bool>);

impl Stopper {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// One execution's egress proxy, running.
#[derive(Debug)]
pub struct Session {
    stop: Stopper,
    events: Events,
}

impl Session {
    /// Serves `listen` with `cfg` on a task of its own until stopped. Must be called
    /// inside a Tokio runtime; the task runs in the caller's tracing span.
    pub fn start(cfg: EgressConfig, listen: impl Into<Listen>) -> Session {
        let (stop_tx, stop) = watch::channel(false);
        let (log, events) = mpsc::unbounded_channel();
        let listen = listen.into();
        let mut waiting = stop.clone();
        let task = async move {
            let listener = match listen {
                Listen::Ready(l) => Ok(l),
                Listen::Later(pending) => tokio::select! {
                    l = pending => l,
                    _ = waiting.wait_for(|s| *s) => return,
                },
            };
            match listener {
                Ok(l) => serve(l, cfg, log, stop).await,
                Err(e) => tracing::warn!(error = %e, "no egress listener"),
            }
        };
        tokio::spawn(task.instrument(tracing::Span::current()));
        Session {
            stop: Stopper(stop_tx),
            events,
        }
    }

    /// Binds `addr` and serves it (see [`start`](Self::start)); returns the session
    /// and the address it listens on.
    pub fn bind(cfg: EgressConfig, addr: SocketAddr) -> std::io::Result<(Session, SocketAddr)> {
        let listener = std::net::TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        Ok((Session::start(cfg, listener), local))
    }

    /// The next attempt as it ends; `None` once the session is stopped and every
    /// attempt was handed out.
    pub async fn next_event(&mut self) -> Option<EgressEvent> {
        self.events.recv().await
    }

    pub fn stop(&self) {
        self.stop.stop();
    }

    /// The stop switch and the log apart, for a caller that drains the log on a task
    /// of its own.
    pub fn split(self) -> (Stopper, Events) {
        (self.stop, self.events)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::{EgressLimits, NoHook, Policy};

    fn cfg() -> EgressConfig {
        EgressConfig {
            record: false,
            policy: Policy::from_allowed_hosts(&Some(vec!["api.example.com".into()])).unwrap(),
            limits: EgressLimits::default(),
            hook: Arc::new(NoHook),
            tls: None,
            tcp: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_session_logs_each_attempt_and_its_log_ends_once_stopped() {
        let (mut session, addr) = Session::bind(cfg(), "127.0.0.1:0".parse().unwrap()).unwrap();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET http://evil.example/x HTTP/1.1\r\nHost: evil.example\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 403");
        let e = session.next_event().await.expect("one event");
        assert_eq!(
            (
                e.host.as_str(),
                e.port,
                e.method.as_str(),
                e.path.as_deref()
            ),
            ("evil.example", 80, "GET", Some("/x"))
        );
        assert!(!e.allowed);
        assert_eq!(
            e.reason,
            "the host is not in allowed_hosts (api.example.com)"
        );
        session.stop();
        let end = tokio::time::timeout(Duration::from_secs(10), session.next_event())
            .await
            .expect("the log ends once stopped");
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn a_session_stopped_before_its_listener_arrives_never_serves() {
        let (tx, rx) = tokio::sync::oneshot::channel::<std::net::TcpListener>();
        let session = Session::start(
            cfg(),
            Listen::later(async move { rx.await.map_err(|e| e.to_string()) }),
        );
        session.stop();
        let (_stop, mut events) = session.split();
        let end = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("the log ends once stopped");
        assert_eq!(end, None);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(tx.send(l).is_err(), "the session no longer waits for it");
    }
}
