//! Serving one execution's listener: accepting client connections within the
//! connection limit, handing each request to plain forwarding ([`crate::relay`]) or a
//! `CONNECT` tunnel (untouched, or intercepted by [`crate::intercept`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::addresses::non_public;
use crate::event::{Attempt, EgressEvent};
use crate::hook::{RequestHook, TunnelMode};
use crate::intercept::{intercept, Interception};
use crate::meter::{Activity, Metered};
use crate::policy::{check, HostRule, Policy, Target, TargetHost, Verdict};
use crate::recording::{Record, ReplaySource};
use crate::relay::forward;
use crate::tcp::TcpRoute;
use crate::tls::EgressTls;

/// Requests of one execution whose bodies are buffered for the hook at once; the
/// others wait.
pub(crate) const MAX_INSPECTING: usize = 4;

/// Bounds applied to one execution's egress.
#[derive(Debug, Clone)]
pub struct EgressLimits {
    /// Client connections to the proxy served at once; more wait in the backlog.
    pub max_connections: usize,
    /// Bytes through the proxy, both ways, upstream side, over the whole execution.
    pub max_total_bytes: u64,
    /// A connection with no traffic either way for this long is closed.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub dns_timeout: Duration,
    /// Log rows kept per execution; later attempts are still enforced, not logged.
    pub max_log_rows: u64,
    /// A forwarded TCP connection (a `tcp://` destination) is cut after this long,
    /// busy or not.
    pub max_tcp_duration: Duration,
    /// After bytes last moved on a forwarded TCP connection, its relay keeps polling
    /// (yielding to other tasks) for this long before it sleeps until the next wake-up:
    /// a database answer usually follows its query within microseconds, and a
    /// sleeping thread's wake-up is most of what the extra hop costs. Zero: never spin.
    /// The cost is CPU: up to this much per exchange.
    pub tcp_spin: Duration,
}

impl Default for EgressLimits {
    fn default() -> Self {
        EgressLimits {
            max_connections: 32,
            max_total_bytes: 1 << 30,
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            dns_timeout: Duration::from_secs(5),
            max_log_rows: 1000,
            max_tcp_duration: Duration::from_secs(3600),
            tcp_spin: Duration::from_micros(100),
        }
    }
}

/// Everything one execution's proxy needs.
pub struct EgressConfig {
    pub policy: Policy,
    pub limits: EgressLimits,
    pub hook: Arc<dyn RequestHook>,
    /// The instance CA, for [`TunnelMode::Intercept`].
    pub tls: Option<Arc<EgressTls>>,
    /// The profile's `tcp://` destinations (and sealed database logins), in the order
    /// of [`Listeners::tcp`].
    pub tcp: Vec<TcpRoute>,
    /// What to keep of each answer ([`EgressEvent::body_sha256`],
    /// [`EgressEvent::answer`]).
    pub record: Record,
    /// Serve answers from an earlier execution's record instead of the network: no
    /// request leaves, a request not in the record is answered 502, raw TCP is
    /// refused. Every `CONNECT` is intercepted (needs [`Self::tls`]).
    pub replay: Option<Arc<ReplaySource>>,
}

/// One execution's listening sockets: the HTTP proxy's, and one per TCP destination
/// of [`EgressConfig::tcp`] (same order; `Err` says why the sandbox has none for it).
#[derive(Debug)]
pub struct Listeners {
    pub proxy: std::net::TcpListener,
    pub tcp: Vec<Result<std::net::TcpListener, String>>,
}

impl From<std::net::TcpListener> for Listeners {
    fn from(proxy: std::net::TcpListener) -> Listeners {
        Listeners {
            proxy,
            tcp: Vec::new(),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) cfg: EgressConfig,
    /// Requests whose bodies may be buffered for the hook at once (bounds the memory
    /// one execution can make the server hold).
    pub(crate) inspecting: Arc<Semaphore>,
    pub(crate) total: AtomicU64,
    /// Body bytes kept by [`Record::Bodies`] so far.
    pub(crate) recorded: AtomicU64,
    pub(crate) logged: AtomicU64,
    pub(crate) log: mpsc::UnboundedSender<EgressEvent>,
    pub(crate) stop: watch::Receiver<bool>,
    /// Client connections served at once, HTTP and TCP together
    /// ([`EgressLimits::max_connections`]).
    pub(crate) conns: Arc<Semaphore>,
}

/// A listening socket as a Tokio listener.
pub(crate) fn tokio_listener(l: std::net::TcpListener) -> Option<tokio::net::TcpListener> {
    match l
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(l))
    {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(error = %e, "egress listener unusable");
            None
        }
    }
}

pub(crate) type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Serves one execution's egress listeners until `stop` turns true (or its sender is
/// dropped). Every attempt is sent to `log` as it ends; open connections are cut at
/// stop and logged with what they moved. `log` closes (all senders dropped) only when
/// every connection task is gone, so a receiver that drains it to the end has every row.
pub(crate) async fn serve(
    listeners: Listeners,
    mut cfg: EgressConfig,
    log: mpsc::UnboundedSender<EgressEvent>,
    stop: watch::Receiver<bool>,
) {
    let tcp: Vec<_> = std::mem::take(&mut cfg.tcp)
        .into_iter()
        .zip(listeners.tcp)
        .collect();
    let conns = Arc::new(Semaphore::new(cfg.limits.max_connections.max(1)));
    let shared = Arc::new(Shared {
        cfg,
        inspecting: Arc::new(Semaphore::new(MAX_INSPECTING)),
        total: AtomicU64::new(0),
        recorded: AtomicU64::new(0),
        logged: AtomicU64::new(0),
        log,
        stop: stop.clone(),
        conns,
    });
    for (dest, listener) in tcp {
        crate::tcp::start(shared.clone(), dest, listener);
    }
    let Some(listener) = tokio_listener(listeners.proxy) else {
        return;
    };
    // The permit travels with the connection: into the tunnel or interception task
    // when it is upgraded, so a CONNECT counts until its tunnel is gone.
    accept_each(&shared, &listener, "egress", |sock, permit| {
        tokio::spawn(serve_client(shared.clone(), sock, Arc::new(permit)));
    })
    .await;
    // The listener closes here: the port is gone for the rest of the execution.
}

/// Accepts clients on `listener` until the session stops, each within the execution's
/// connection limit (`Shared::conns`); `on` gets the socket and its permit. `what`
/// names the listener in the log of a failed accept.
pub(crate) async fn accept_each(
    shared: &Shared,
    listener: &tokio::net::TcpListener,
    what: &str,
    mut on: impl FnMut(TcpStream, OwnedSemaphorePermit),
) {
    let mut stop = shared.stop.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = shared.conns.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let sock = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "{what} accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        // Answers go out as they are written: an intercepted TLS connection writes
        // its records in pieces, which Nagle's algorithm would hold back for the
        // script's delayed ACK (40 ms a request).
        let _ = sock.set_nodelay(true);
        on(sock, permit);
    }
}

/// One client connection's share of [`EgressLimits::max_connections`], held by every
/// task serving it (the HTTP connection, its tunnel or interception).
pub(crate) type ConnPermit = Arc<OwnedSemaphorePermit>;

async fn serve_client(shared: Arc<Shared>, sock: TcpStream, permit: ConnPermit) {
    let mut stop = shared.stop.clone();
    let svc_shared = shared.clone();
    let activity = Activity::new();
    let svc_activity = activity.clone();
    let service = hyper::service::service_fn(move |req| {
        let (shared, permit) = (svc_shared.clone(), permit.clone());
        let busy = svc_activity.busy();
        async move {
            let resp = handle(shared, permit, req).await;
            drop(busy);
            Ok::<_, Infallible>(resp)
        }
    });
    let idle = shared.cfg.limits.idle_timeout;
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .keep_alive(true)
        .serve_connection(
            TokioIo::new(Metered::client(sock, activity.clone())),
            service,
        )
        .with_upgrades();
    tokio::select! {
        _ = conn => {}
        _ = activity.idle(idle) => {}
        _ = wait_stop(&mut stop) => {}
    }
}

/// A buffered (rewritten) response body that holds the execution's buffering permit
/// until the last byte was handed to the connection (or the body is dropped), and
/// hands it over in small pieces so the connection takes more only as the client
/// reads: what one execution has buffered stays bounded while the script reads slowly.
pub(crate) struct PermitBody {
    pub(crate) data: Bytes,
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

const PERMIT_BODY_CHUNK: usize = 64 * 1024;

impl hyper::body::Body for PermitBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        if self.data.is_empty() {
            self.permit = None;
            return Poll::Ready(None);
        }
        let n = self.data.len().min(PERMIT_BODY_CHUNK);
        let chunk = self.data.split_to(n);
        Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.data.len() as u64)
    }
}

pub(crate) async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

pub(crate) fn text(status: StatusCode, msg: String) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(msg + "\n"))
            .map_err(|never: Infallible| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn handle(
    shared: Arc<Shared>,
    permit: ConnPermit,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        return connect(shared, permit, req).await;
    }
    forward(shared, req).await
}

/// Resolves and connects to an allowed target, enforcing the address rules. Returns the
/// connected stream or the refusal/failure (status, message).
/// What the log says of a connection `open_upstream` could not make: a
/// refusal by the address rules as it is; a failure of an allowed destination
/// (DNS, connect, timeout: a 5xx) as "allowed by RULE, but …", which
/// [`crate::attempt_failed`] recognises.
pub(crate) fn logged_failure(rule: &str, status: StatusCode, reason: &str) -> String {
    if status.is_server_error() {
        format!("{ALLOWED_BUT}{rule}, but {reason}")
    } else {
        reason.to_string()
    }
}

const ALLOWED_BUT: &str = "allowed by ";

/// True for a logged attempt that the rules allowed but that did not reach
/// its destination (the name did not resolve, the connection failed or timed
/// out), as opposed to one the rules refused.
pub fn attempt_failed(allowed: bool, reason: &str) -> bool {
    !allowed && reason.starts_with(ALLOWED_BUT)
}

pub(crate) async fn open_upstream(
    shared: &Shared,
    target: &Target,
    explicit: bool,
) -> Result<(TcpStream, SocketAddr), (StatusCode, String)> {
    let limits = &shared.cfg.limits;
    let rules: &[HostRule] = match &shared.cfg.policy {
        Policy::Allow(r) => r,
        Policy::Unrestricted => &[],
    };
    let addrs: Vec<SocketAddr> = match &target.host {
        TargetHost::Ip(ip) => vec![SocketAddr::new(*ip, target.port)],
        TargetHost::Name(n) => {
            match tokio::time::timeout(
                limits.dns_timeout,
                tokio::net::lookup_host((n.as_str(), target.port)),
            )
            .await
            {
                Ok(Ok(a)) => a.collect(),
                Ok(Err(e)) => {
                    return Err((
                        StatusCode::BAD_GATEWAY,
                        format!("cannot resolve {}: {e}", target.host),
                    ))
                }
                Err(_) => {
                    return Err((
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("resolving {} timed out", target.host),
                    ))
                }
            }
        }
    };
    let mut refused = Vec::new();
    let permitted: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match non_public(a.ip()) {
            None => true,
            Some(_) if explicit => true,
            Some(_) if rules.iter().any(|r| r.names_ip(a.ip(), target.port)) => true,
            Some(kind) => {
                refused.push(format!("{} ({kind})", a.ip()));
                false
            }
        })
        .collect();
    if permitted.is_empty() {
        const RULE: &str = "non-public addresses are reachable only when that host or IP is listed exactly in allowed_hosts";
        let msg = match &target.host {
            TargetHost::Ip(ip) => format!(
                "{} is a {} address: {RULE}",
                target.host,
                non_public(*ip).unwrap_or("non-public")
            ),
            TargetHost::Name(_) if refused.is_empty() => {
                format!("{} resolves to no address", target.host)
            }
            TargetHost::Name(_) => {
                format!("{} resolves to {}: {RULE}", target.host, refused.join(", "))
            }
        };
        return Err((StatusCode::FORBIDDEN, msg));
    }
    let mut last = String::new();
    for addr in permitted {
        match tokio::time::timeout(limits.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok((s, addr));
            }
            Ok(Err(e)) => last = format!("connecting to {addr}: {e}"),
            Err(_) => last = format!("connecting to {addr} timed out"),
        }
    }
    Err((StatusCode::BAD_GATEWAY, last))
}

pub(crate) fn refusal(target: &str, reason: &str) -> String {
    format!("Airlock egress proxy refused {target}: {reason}")
}

async fn connect(
    shared: Arc<Shared>,
    permit: ConnPermit,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let authority = req.uri().authority().cloned();
    let (host_text, port) = match &authority {
        Some(a) => (a.host().to_string(), a.port_u16()),
        None => (req.uri().to_string(), None),
    };
    let mut attempt = Attempt::new(
        &shared,
        host_text.clone(),
        port.unwrap_or(0),
        "CONNECT",
        None,
    );
    let Some(target) = port.and_then(|p| Target::new(&host_text, p)) else {
        let msg = "CONNECT needs host:port".to_string();
        attempt.set(false, msg.clone());
        return text(StatusCode::BAD_REQUEST, refusal(&host_text, &msg));
    };
    let (rule, explicit) = match check(&shared.cfg.policy, &target) {
        Verdict::Allowed { rule, explicit } => (rule, explicit),
        Verdict::Refused(reason) => {
            attempt.set(false, reason.clone());
            return text(StatusCode::FORBIDDEN, refusal(&target.to_string(), &reason));
        }
    };
    let mode = match shared.cfg.hook.on_tunnel(&target) {
        Ok(m) => m,
        Err(r) => {
            attempt.refuse(&r);
            return text(
                StatusCode::FORBIDDEN,
                refusal(&target.to_string(), &r.reason),
            );
        }
    };
    // Why TLS is terminated, for the log.
    let why = if shared.cfg.replay.is_some() {
        "to answer from the record"
    } else if mode == TunnelMode::Intercept {
        "for sealed credentials"
    } else {
        "to record the answers"
    };
    let mode = if shared.cfg.record.is_on() || shared.cfg.replay.is_some() {
        TunnelMode::Intercept
    } else {
        mode
    };
    if shared.cfg.replay.is_some() && shared.cfg.tls.is_none() {
        let msg =
            "a replay serves HTTPS from the record, which needs TLS interception (not configured)";
        attempt.set(false, msg);
        return text(StatusCode::BAD_GATEWAY, refusal(&target.to_string(), msg));
    }
    if let (TunnelMode::Intercept, Some(tls)) = (mode, shared.cfg.tls.clone()) {
        let ic = Interception {
            shared,
            target,
            rule,
            explicit,
        };
        return intercept(ic, permit, attempt, req, (tls, why));
    }
    let (upstream, addr) = match open_upstream(&shared, &target, explicit).await {
        Ok(s) => s,
        Err((status, reason)) => {
            attempt.set(false, logged_failure(&rule, status, &reason));
            return text(status, refusal(&target.to_string(), &reason));
        }
    };
    attempt.set(true, format!("allowed by {rule} ({addr})"));
    let idle = shared.cfg.limits.idle_timeout;
    let mut stop = shared.stop.clone();
    tokio::spawn(async move {
        let upgraded = tokio::select! {
            u = hyper::upgrade::on(req) => u,
            _ = wait_stop(&mut stop) => return,
        };
        let Ok(upgraded) = upgraded else { return };
        let mut client = TokioIo::new(upgraded);
        let mut upstream = Metered::upstream(upstream, attempt.meter.clone());
        let meter = attempt.meter.clone();
        tokio::select! {
            _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
            _ = meter.idle(idle) => meter.cut(format!("closed after {} s idle", idle.as_secs())),
            _ = wait_stop(&mut stop) => meter.cut("cut when the execution ended"),
        }
        drop(attempt);
        drop(permit);
    });
    Response::new(
        Full::new(Bytes::new())
            .map_err(|n: Infallible| match n {})
            .boxed(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_of_allowed_destinations_are_told_apart_from_refusals() {
        let dns = logged_failure(
            "db.internal:5432",
            StatusCode::BAD_GATEWAY,
            "cannot resolve db.internal: no",
        );
        assert_eq!(
            dns,
            "allowed by db.internal:5432, but cannot resolve db.internal: no"
        );
        assert!(attempt_failed(false, &dns));
        let rule = logged_failure(
            "x",
            StatusCode::FORBIDDEN,
            "x resolves to 10.0.0.1 (private)",
        );
        assert_eq!(rule, "x resolves to 10.0.0.1 (private)");
        assert!(!attempt_failed(false, &rule));
        assert!(!attempt_failed(true, "allowed by x (1.2.3.4:443)"));
    }
    use crate::hook::{NoHook, Passed, Refusal};

    fn policy(list: &[&str]) -> Policy {
        Policy::from_allowed_hosts(&Some(
            list.iter().map(std::string::ToString::to_string).collect(),
        ))
        .expect("non-empty")
    }

    #[tokio::test]
    async fn a_rewritten_body_holds_its_buffering_permit_until_read_or_dropped() {
        let sem = Arc::new(Semaphore::new(1));
        let mut body = PermitBody {
            data: Bytes::from(vec![7u8; 200_000]),
            permit: Some(sem.clone().acquire_owned().await.unwrap()),
        };
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first.len(), PERMIT_BODY_CHUNK);
        assert_eq!(sem.available_permits(), 0, "held while unread");
        let mut total = first.len();
        while let Some(f) = body.frame().await {
            total += f.unwrap().into_data().unwrap().len();
        }
        assert_eq!(total, 200_000);
        assert_eq!(sem.available_permits(), 1, "released at the end");
        let body = PermitBody {
            data: Bytes::from_static(b"unread"),
            permit: Some(sem.clone().acquire_owned().await.unwrap()),
        };
        assert_eq!(sem.available_permits(), 0);
        drop(body);
        assert_eq!(sem.available_permits(), 1, "released when dropped");
    }

    async fn read_head(s: &mut TcpStream) -> String {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        let mut b = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut b).await.unwrap(), 1, "{buf:?}");
            buf.push(b[0]);
        }
        String::from_utf8(buf).unwrap()
    }

    #[tokio::test]
    async fn a_connect_tunnel_keeps_its_connection_slot_until_it_closes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = up.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = up.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 || s.write_all(&b[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = listener.local_addr().unwrap();
        let (log, _rows) = mpsc::unbounded_channel();
        let (stop_tx, stop) = watch::channel(false);
        let cfg = EgressConfig {
            record: Record::Off,
            replay: None,
            policy: policy(&[&format!("127.0.0.1:{port}")]),
            limits: EgressLimits {
                max_connections: 1,
                ..EgressLimits::default()
            },
            hook: Arc::new(NoHook),
            tls: None,
            tcp: Vec::new(),
        };
        tokio::spawn(serve(listener.into(), cfg, log, stop));
        let connect =
            format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        let mut a = TcpStream::connect(proxy).await.unwrap();
        a.write_all(connect.as_bytes()).await.unwrap();
        assert!(read_head(&mut a).await.starts_with("HTTP/1.1 200"));
        a.write_all(b"ping").await.unwrap();
        let mut b4 = [0u8; 4];
        a.read_exact(&mut b4).await.unwrap();
        assert_eq!(&b4, b"ping");
        // The only slot is the open tunnel's: a second client waits.
        let mut b = TcpStream::connect(proxy).await.unwrap();
        b.write_all(connect.as_bytes()).await.unwrap();
        let mut one = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(700), b.peek(&mut one))
                .await
                .is_err(),
            "a second connection was served while the tunnel held the only slot"
        );
        drop(a);
        let head = tokio::time::timeout(Duration::from_secs(10), read_head(&mut b))
            .await
            .expect("served once the tunnel closed");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        stop_tx.send(true).unwrap();
    }

    /// Buffers every body and asks for every response to be rewritten.
    struct BufferAll;

    impl RequestHook for BufferAll {
        fn inspects_bodies(&self) -> bool {
            true
        }

        fn on_request(
            &self,
            _target: &Target,
            _tls: bool,
            _parts: &mut hyper::http::request::Parts,
            _body: &mut Option<Vec<u8>>,
        ) -> Result<Passed, Refusal> {
            Ok(Passed {
                substituted: Vec::new(),
                rewrite_response: true,
            })
        }
    }

    /// A large-answering upstream and a proxy with [`BufferAll`] in front of it;
    /// returns the proxy's address, the upstream port and the stop switch.
    async fn big_answers(limits: EgressLimits) -> (SocketAddr, u16, watch::Sender<bool>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // An upstream answering every request with a body just under the inspection
        // limit, far more than the socket buffers between the proxy and a client hold.
        let size = crate::MAX_INSPECTED_BODY - 1024;
        let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = up.local_addr().unwrap().port();
        tokio::spawn(async move {
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
                    let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n");
                    let _ = s.write_all(resp.as_bytes()).await;
                    let _ = s.write_all(&vec![b'a'; size]).await;
                });
            }
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy = listener.local_addr().unwrap();
        let (log, _rows) = mpsc::unbounded_channel();
        let (stop_tx, stop) = watch::channel(false);
        let cfg = EgressConfig {
            record: Record::Off,
            replay: None,
            policy: policy(&[&format!("127.0.0.1:{port}")]),
            limits,
            hook: Arc::new(BufferAll),
            tls: None,
            tcp: Vec::new(),
        };
        tokio::spawn(serve(listener.into(), cfg, log, stop));
        (proxy, port, stop_tx)
    }

    /// A client with a tiny receive buffer asking the proxy for a big answer.
    async fn ask_big(proxy: SocketAddr, port: u16) -> TcpStream {
        use tokio::io::AsyncWriteExt;
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let mut s = sock.connect(proxy).await.unwrap();
        let rq = format!("GET http://127.0.0.1:{port}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        s.write_all(rq.as_bytes()).await.unwrap();
        s
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unread_rewritten_responses_keep_their_buffering_slots() {
        let (proxy, port, stop_tx) = big_answers(EgressLimits::default()).await;
        let ask = || ask_big(proxy, port);
        // Four clients get their answers' heads and then read nothing more.
        let mut held = Vec::new();
        for _ in 0..MAX_INSPECTING {
            let mut s = ask().await;
            let head = tokio::time::timeout(Duration::from_secs(20), read_head(&mut s))
                .await
                .expect("answered");
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            held.push(s);
        }
        // Their bodies are still held by the proxy: a fifth request waits.
        let mut fifth = ask().await;
        let mut one = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(1500), fifth.peek(&mut one))
                .await
                .is_err(),
            "a fifth response was buffered while four unread ones were held"
        );
        // One client goes away: its body is dropped and the fifth goes through.
        drop(held.remove(0));
        let head = tokio::time::timeout(Duration::from_secs(20), read_head(&mut fifth))
            .await
            .expect("answered once a slot was freed");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        stop_tx.send(true).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_stops_reading_is_cut_after_the_idle_timeout() {
        use tokio::io::AsyncReadExt;
        let idle = Duration::from_secs(1);
        let (proxy, port, stop_tx) = big_answers(EgressLimits {
            idle_timeout: idle,
            ..EgressLimits::default()
        })
        .await;
        let mut held = Vec::new();
        for _ in 0..MAX_INSPECTING {
            let mut s = ask_big(proxy, port).await;
            let head = tokio::time::timeout(Duration::from_secs(20), read_head(&mut s))
                .await
                .expect("answered");
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            held.push(s);
        }
        // Nobody reads: the idle cut frees the slots, and a fifth request is answered.
        let mut fifth = ask_big(proxy, port).await;
        let head = tokio::time::timeout(Duration::from_secs(20), read_head(&mut fifth))
            .await
            .expect("answered once idle clients were cut");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        // What a cut client can still read ends early: its connection was closed.
        let mut rest = Vec::new();
        let got = tokio::time::timeout(Duration::from_secs(20), held[0].read_to_end(&mut rest))
            .await
            .expect("the cut connection ends");
        assert!(got.is_err() || rest.len() < crate::MAX_INSPECTED_BODY - 1024);
        stop_tx.send(true).unwrap();
    }
}
