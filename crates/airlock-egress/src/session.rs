//! One execution's egress as a whole: the proxy served on its listener, the log of
//! its attempts, and the switch that ends it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::event::EgressEvent;
use crate::serve::{serve, EgressConfig};

/// A listening socket that arrives later, or why there is none.
pub type PendingListener =
    Pin<Box<dyn Future<Output = Result<std::net::TcpListener, String>> + Send>>;

/// Where a session accepts its clients.
pub enum Listen {
    /// An already-bound listening socket.
    Ready(std::net::TcpListener),
    /// A socket delivered later (the sandbox creates it in the execution's own
    /// network namespace); the session serves it once it arrives, unless stopped
    /// first.
    Later(PendingListener),
}

impl Listen {
    /// A socket `listener` resolves to.
    pub fn later(
        listener: impl Future<Output = Result<std::net::TcpListener, String>> + Send + 'static,
    ) -> Listen {
        Listen::Later(Box::pin(listener))
    }
}

impl From<std::net::TcpListener> for Listen {
    fn from(l: std::net::TcpListener) -> Listen {
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
