//! Raw TCP destinations (`tcp://host:port`): each has a listener of its own in the
//! execution's network namespace, at the address the sandbox gave the name. A
//! connection accepted there is forwarded to the destination after the same checks as
//! HTTP egress: the server resolves the name itself, connects to the very address it
//! checked, counts the bytes against the execution's budget and logs the attempt
//! (method `TCP`). The destination is listed exactly, so (as with an exact HTTP entry)
//! a private address is reachable. A connection that cannot be forwarded is reset, so
//! the script's driver fails at once, and the log says why.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::event::Attempt;
use crate::meter::{Activity, Metered};
use crate::policy::TcpDestination;
use crate::postgres::{self, Failed, Io, Opening, PgLogin};
use crate::serve::{accept_each, logged_failure, open_upstream, tokio_listener, wait_stop, Shared};

/// A TCP destination and, when sealed database credentials are bound to it, the
/// logins the server performs upstream on the script's behalf (the one whose
/// placeholder the script presents).
#[derive(Debug, Clone)]
pub struct TcpRoute {
    pub dest: TcpDestination,
    pub logins: Vec<Arc<PgLogin>>,
}

impl From<TcpDestination> for TcpRoute {
    fn from(dest: TcpDestination) -> TcpRoute {
        TcpRoute {
            dest,
            logins: Vec::new(),
        }
    }
}

/// Serves the listener of `route` on a task of its own (logs once why there is none).
pub(crate) fn start(
    shared: Arc<Shared>,
    route: TcpRoute,
    listener: Result<std::net::TcpListener, String>,
) {
    match listener {
        Ok(l) => {
            tokio::spawn(accept_loop(shared, route, l));
        }
        Err(e) => {
            let t = route.dest.target();
            let attempt = Attempt::new(&shared, t.host.to_string(), t.port, "TCP", None);
            drop(attempt.with(
                false,
                &format!("the sandbox has no listener for {}: {e}", route.dest.text()),
            ));
        }
    }
}

async fn accept_loop(shared: Arc<Shared>, route: TcpRoute, listener: std::net::TcpListener) {
    let Some(listener) = tokio_listener(listener) else {
        return;
    };
    accept_each(&shared, &listener, "tcp destination", |sock, permit| {
        let (shared, route) = (shared.clone(), route.clone());
        let mut stop = shared.stop.clone();
        tokio::spawn(async move {
            // Cut at the end of the execution even while still signing in.
            tokio::select! {
                _ = forward(shared.clone(), route, sock) => {}
                _ = wait_stop(&mut stop) => {}
            }
            drop(permit);
        });
    })
    .await;
}

/// Closes `sock` with a reset: the client sees the connection refused by its peer
/// rather than a clean end of stream it might take for an answer.
fn reset(sock: TcpStream) {
    // A zero linger never blocks (the deprecation is about non-zero ones): the close
    // sends RST at once.
    #[allow(deprecated)]
    let _ = sock.set_linger(Some(Duration::ZERO));
    drop(sock);
}

/// Ends a connection that may not go on: a database login refused is told to the
/// script as a PostgreSQL error, anything else is a reset.
async fn refuse(
    shared: &Shared,
    attempt: &mut Attempt,
    mut client: TcpStream,
    f: Failed,
    destination: &str,
) {
    let mut reason = f.log;
    if let Some(name) = &f.violation {
        if let Some(r) = attempt.row.as_mut() {
            r.violation = true;
        }
        if let Some(extra) = shared.cfg.hook.on_tcp_violation(name, destination) {
            reason = format!("{reason}; {extra}");
        }
    }
    attempt.set(false, reason);
    match f.tell {
        Some((code, msg)) => {
            let _ = client
                .write_all(&postgres::error_response(code, &msg))
                .await;
            let _ = client.shutdown().await;
        }
        None => reset(client),
    }
}

async fn forward(shared: Arc<Shared>, route: TcpRoute, mut client: TcpStream) {
    let dest = &route.dest;
    let target = dest.target();
    let mut attempt = Attempt::new(&shared, target.host.to_string(), target.port, "TCP", None);
    let guard = shared.cfg.hook.tcp_guard();
    // A database login: taken from the script before anything goes upstream.
    let mut opening = None;
    let mut login: Option<Arc<PgLogin>> = None;
    if !route.logins.is_empty() {
        let others: Vec<(String, Vec<u8>)> = guard
            .iter()
            .filter(|(n, _)| !route.logins.iter().any(|l| l.credential == *n))
            .cloned()
            .collect();
        let got = match postgres::opening(&mut client).await {
            Ok(Opening::Startup(params)) => {
                postgres::take_login(&mut client, &route.logins, params, &others)
                    .await
                    .map(|(l, p)| {
                        login = Some(l);
                        Opening::Startup(p)
                    })
            }
            other => other,
        };
        match got {
            Ok(o) => opening = Some(o),
            Err(f) => return refuse(&shared, &mut attempt, client, f, dest.text()).await,
        }
    }
    if let Some(source) = &shared.cfg.replay {
        let f = Failed {
            log: format!(
                "a replay does not reach the network, and the record of {} holds HTTP answers only (not {})",
                source.of(),
                dest.text()
            ),
            tell: opening.as_ref().map(|_| {
                (
                    "08006",
                    "this is a replay: Airlock serves recorded HTTP answers only, not database connections".to_string(),
                )
            }),
            violation: None,
        };
        return refuse(&shared, &mut attempt, client, f, dest.text()).await;
    }
    let (upstream, addr) = match open_upstream(&shared, &target, true).await {
        Ok(u) => u,
        Err((status, reason)) => {
            let log = logged_failure(dest.text(), status, &reason);
            let f = match opening {
                Some(_) => Failed {
                    log,
                    tell: Some((
                        "08006",
                        format!("cannot reach the database server: {reason}"),
                    )),
                    violation: None,
                },
                None => Failed {
                    log,
                    tell: None,
                    violation: None,
                },
            };
            return refuse(&shared, &mut attempt, client, f, dest.text()).await;
        }
    };
    let _ = client.set_nodelay(true);
    let meter = attempt.meter.clone();
    let mut upstream: Box<dyn Io> = Box::new(Metered::upstream(upstream, meter.clone()));
    let mut own = None;
    let mut how = String::new();
    if let Some(opening) = opening {
        let roots = shared.cfg.tls.as_ref().map(|t| t.upstream());
        let host = target.host.to_string();
        // A cancel request carries no password: any of the destination's logins says
        // how to reach the server.
        let Some(login) = login.clone().or_else(|| route.logins.first().cloned()) else {
            return;
        };
        let (mut up, tls) = match postgres::secure(upstream, login.tls, &host, roots).await {
            Ok(u) => u,
            Err(f) => return refuse(&shared, &mut attempt, client, f, dest.text()).await,
        };
        let tls_text = if tls { "TLS" } else { "no TLS" };
        match opening {
            Opening::Cancel(raw) => {
                let _ = up.write_all(&raw).await;
                let _ = up.shutdown().await;
                attempt.set(
                    true,
                    format!(
                        "allowed by {} ({addr}): a cancel request ({tls_text})",
                        dest.text()
                    ),
                );
                return;
            }
            Opening::Startup(params) => {
                let method = match postgres::sign_in(&mut *up, &login, &params).await {
                    Ok(m) => m,
                    Err(f) => return refuse(&shared, &mut attempt, client, f, dest.text()).await,
                };
                if client.write_all(&postgres::AUTH_OK).await.is_err() {
                    attempt.set(false, "the script hung up while the server signed in");
                    return;
                }
                how = format!(
                    "; signed in as {} to {} with sealed credential {} ({method}, {tls_text}{})",
                    login.user,
                    login.database,
                    login.credential,
                    if login.read_only { ", read-only" } else { "" }
                );
                if let Some(r) = attempt.row.as_mut() {
                    r.substituted = vec![login.credential.clone()];
                }
                own = Some(login.credential.clone());
            }
        }
        upstream = up;
    }
    attempt.set(true, format!("allowed by {} ({addr}){how}", dest.text()));
    let limits = &shared.cfg.limits;
    let (idle, longest) = (limits.idle_timeout, limits.max_tcp_duration);
    let spin = limits.tcp_spin;
    // The script's bytes are watched for the placeholders of sealed credentials
    // (other than the one this destination is signed in with).
    let needles: Vec<(String, Vec<u8>)> = guard
        .into_iter()
        .filter(|(n, _)| Some(n) != own.as_ref())
        .collect();
    let hit = Arc::new(std::sync::Mutex::new(None));
    let mut client = Guarded::new(
        Metered::client(client, Activity::new()),
        needles,
        hit.clone(),
    );
    let mut stop = shared.stop.clone();
    let relay = Box::pin(tokio::io::copy_bidirectional(&mut client, &mut upstream));
    tokio::select! {
        _ = Spinning::new(relay, &meter, spin) => {}
        _ = meter.idle(idle) => meter.cut(format!("closed after {} s idle", idle.as_secs())),
        _ = tokio::time::sleep(longest) => {
            meter.cut(format!("cut after {} s (the longest a TCP connection may last)", longest.as_secs()));
        }
        _ = wait_stop(&mut stop) => meter.cut("cut when the execution ended"),
    }
    let found = hit.lock().ok().and_then(|mut h| h.take());
    if let Some(name) = found {
        let mut why = format!(
            "cut: the script sent the placeholder of sealed credential {name}, which is not bound to this destination"
        );
        if let Some(extra) = shared.cfg.hook.on_tcp_violation(&name, dest.text()) {
            why = format!("{why}; {extra}");
        }
        meter.cut(why);
        if let Some(r) = attempt.row.as_mut() {
            r.violation = true;
        }
    }
    drop(attempt);
}

/// A relay that, for `spin` after bytes last moved (upstream side), polls again as
/// soon as the runtime has looked for I/O (`yield_now`: other tasks run first)
/// instead of sleeping until a wake-up. A query and its answer follow each other
/// closely, and waking a parked thread is most of what the hop through the server
/// costs (`cargo bench -p airlock --bench postgres`; docs/performance.md).
struct Spinning<'a, F> {
    inner: F,
    meter: &'a crate::meter::Meter,
    spin: Duration,
    seen: u64,
    until: Instant,
}

impl<'a, F> Spinning<'a, F> {
    fn new(inner: F, meter: &'a crate::meter::Meter, spin: Duration) -> Self {
        Spinning {
            inner,
            meter,
            spin,
            seen: 0,
            until: Instant::now() + spin,
        }
    }
}

impl<F: Future + Unpin> Future for Spinning<'_, F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if let Poll::Ready(v) = Pin::new(&mut self.inner).poll(cx) {
            return Poll::Ready(v);
        }
        if self.spin.is_zero() {
            return Poll::Pending;
        }
        let moved = self.meter.up.load(Ordering::Relaxed) + self.meter.down.load(Ordering::Relaxed);
        let now = Instant::now();
        if moved != self.seen {
            self.seen = moved;
            self.until = now + self.spin;
        }
        if now < self.until {
            let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
        }
        Poll::Pending
    }
}

/// The script's side of a raw connection, watched for forbidden byte strings (which
/// may be split across reads): a read that completes one is refused, so the bytes
/// never reach the destination, and the credential is noted.
struct Guarded<S> {
    inner: S,
    needles: Vec<(String, Vec<u8>)>,
    /// The last bytes read, as long as the longest needle less one.
    tail: Vec<u8>,
    keep: usize,
    hit: Arc<std::sync::Mutex<Option<String>>>,
}

impl<S> Guarded<S> {
    fn new(
        inner: S,
        needles: Vec<(String, Vec<u8>)>,
        hit: Arc<std::sync::Mutex<Option<String>>>,
    ) -> Guarded<S> {
        let keep = needles
            .iter()
            .map(|(_, n)| n.len())
            .max()
            .unwrap_or(1)
            .saturating_sub(1);
        Guarded {
            inner,
            needles,
            tail: Vec::new(),
            keep,
            hit,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        if this.needles.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let mut hay = std::mem::take(&mut this.tail);
        hay.extend_from_slice(&buf.filled()[before..]);
        if let Some((name, _)) = this
            .needles
            .iter()
            .find(|(_, n)| memchr::memmem::find(&hay, n).is_some())
        {
            if let Ok(mut h) = this.hit.lock() {
                h.get_or_insert(name.clone());
            }
            buf.set_filled(before);
            return Poll::Ready(Err(std::io::Error::other(
                "a sealed credential's placeholder on a raw connection",
            )));
        }
        let from = hay.len().saturating_sub(this.keep);
        this.tail = hay.split_off(from);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::TcpRoute;
    use crate::{EgressConfig, EgressLimits, Listeners, NoHook, Policy, Session, TcpDestination};

    fn session(dests: &[String], listeners: Listeners) -> Session {
        let cfg = EgressConfig {
            record: crate::Record::Off,
            replay: None,
            policy: Policy::from_allowed_hosts(&Some(dests.to_vec())).expect("network"),
            limits: EgressLimits::default(),
            hook: Arc::new(NoHook),
            tls: None,
            tcp: dests
                .iter()
                .filter_map(|d| TcpDestination::parse(d))
                .map(TcpRoute::from)
                .collect(),
        };
        Session::start(cfg, listeners)
    }

    fn listener() -> (std::net::TcpListener, u16) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    #[tokio::test]
    async fn a_tcp_destination_is_forwarded_both_ways_and_logged() {
        // The destination: an echo server that answers with a prefix.
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_port = upstream.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = upstream.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"echo:").await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let (proxy, _) = listener();
        let (db, db_port) = listener();
        let dests = vec![format!("tcp://127.0.0.1:{up_port}")];
        let mut s = session(
            &dests,
            Listeners {
                proxy,
                tcp: vec![Ok(db)],
            },
        );
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", db_port))
            .await
            .unwrap();
        c.write_all(b"hello").await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"echo:hello");
        // The attempt ends when both sides have closed.
        drop(c);
        let e = tokio::time::timeout(Duration::from_secs(10), s.next_event())
            .await
            .unwrap()
            .expect("one event");
        assert_eq!(
            (e.host.as_str(), e.port, e.method.as_str()),
            ("127.0.0.1", up_port, "TCP")
        );
        assert!(e.allowed, "{e:?}");
        assert!(
            e.reason
                .starts_with(&format!("allowed by tcp://127.0.0.1:{up_port}")),
            "{}",
            e.reason
        );
        assert_eq!((e.bytes_up, e.bytes_down), (5, 10));
        s.stop();
    }

    #[tokio::test]
    async fn an_unreachable_destination_resets_the_client_and_logs_why() {
        // A port nobody listens on (bound, then closed).
        let (gone, gone_port) = listener();
        drop(gone);
        let (proxy, _) = listener();
        let (db, db_port) = listener();
        let dests = vec![
            format!("tcp://127.0.0.1:{gone_port}"),
            "tcp://db.invalid:5432".into(),
        ];
        let mut s = session(
            &dests,
            Listeners {
                proxy,
                tcp: vec![Ok(db), Err("no address left".into())],
            },
        );
        // The missing listener is logged once, at the start.
        let first = tokio::time::timeout(Duration::from_secs(10), s.next_event())
            .await
            .unwrap()
            .expect("an event");
        assert_eq!(first.host, "db.invalid");
        assert!(!first.allowed);
        assert!(
            first
                .reason
                .contains("no listener for tcp://db.invalid:5432: no address left"),
            "{}",
            first.reason
        );
        let mut c = tokio::net::TcpStream::connect(("127.0.0.1", db_port))
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let r = c.read(&mut buf).await;
        assert!(
            matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "the client sees a reset, not an answer: {r:?}"
        );
        let e = tokio::time::timeout(Duration::from_secs(10), s.next_event())
            .await
            .unwrap()
            .expect("an event");
        assert!(!e.allowed);
        assert!(crate::attempt_failed(e.allowed, &e.reason), "{}", e.reason);
        assert!(e.reason.contains("connecting to 127.0.0.1"), "{}", e.reason);
        s.stop();
    }
}
