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
            record: crate::Record::Off,
            replay: None,
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

    /// A loopback upstream answering `body` (with a `content-type`) to every request;
    /// returns its port and the task to abort it.
    async fn upstream(body: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
        let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = up.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = up.accept().await {
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&b[..n]),
                        }
                    }
                    let resp = format!(
                        "HTTP/1.1 201 Created\r\nContent-Type: text/csv\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        (port, task)
    }

    /// One plain-HTTP GET through the proxy at `addr`; the whole answer as text.
    async fn get(addr: std::net::SocketAddr, url: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let rq = format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(rq.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
            .await
            .expect("answered")
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Every event of a session, once stopped.
    async fn drain(mut session: Session) -> Vec<EgressEvent> {
        session.stop();
        let mut all = Vec::new();
        while let Some(e) = tokio::time::timeout(Duration::from_secs(10), session.next_event())
            .await
            .expect("the log ends once stopped")
        {
            all.push(e);
        }
        all
    }

    #[tokio::test]
    async fn recorded_answers_are_replayed_with_the_upstream_gone() {
        let (port, upstream_task) = upstream("day,total\n1,30\n").await;
        let allowed = Policy::from_allowed_hosts(&Some(vec![format!("127.0.0.1:{port}")])).unwrap();
        let recording = EgressConfig {
            record: crate::Record::bodies(),
            policy: allowed.clone(),
            ..cfg()
        };
        let (session, addr) = Session::bind(recording, "127.0.0.1:0".parse().unwrap()).unwrap();
        let url = format!("http://127.0.0.1:{port}/rates?day=1");
        let live = get(addr, &url).await;
        assert!(live.starts_with("HTTP/1.1 201"), "{live}");
        let events = drain(session).await;
        assert_eq!(events.len(), 1, "{events:?}");
        let answer = events[0].answer.clone().expect("the answer is kept");
        assert_eq!(answer.body, b"day,total\n1,30\n");
        assert!(answer.complete);
        assert_eq!(answer.status, 201);
        assert!(answer
            .headers
            .contains(&("content-type".into(), "text/csv".into())));
        assert_eq!(
            events[0].body_sha256.as_deref(),
            Some(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&answer.body)).as_str())
        );
        // The upstream goes away; the replay still gets the same answer, once.
        upstream_task.abort();
        let _ = upstream_task.await;
        let replaying = EgressConfig {
            record: crate::Record::Hashes,
            replay: Some(Arc::new(crate::ReplaySource::new("exe_first", [answer]))),
            policy: allowed,
            ..cfg()
        };
        let (session, addr) = Session::bind(replaying, "127.0.0.1:0".parse().unwrap()).unwrap();
        let again = get(addr, &url).await;
        assert!(again.starts_with("HTTP/1.1 201"), "{again}");
        assert!(again.contains("content-type: text/csv"), "{again}");
        assert!(again.ends_with("\r\n\r\nday,total\n1,30\n"), "{again}");
        let second = get(addr, &url).await;
        assert!(second.starts_with("HTTP/1.1 502"), "{second}");
        assert!(
            second.contains("not in the record of exe_first"),
            "{second}"
        );
        let other = get(addr, &format!("http://127.0.0.1:{port}/rates?day=2")).await;
        assert!(
            other.starts_with("HTTP/1.1 502"),
            "a different query is a different request: {other}"
        );
        let events = drain(session).await;
        assert_eq!(events.len(), 3);
        assert!(
            events[0].allowed
                && events[0]
                    .reason
                    .contains("answered from the record of exe_first")
        );
        assert_eq!(events[0].status, Some(201));
        assert!(events[0].body_sha256.is_some());
        assert!(!events[1].allowed && !events[2].allowed);
    }
}
