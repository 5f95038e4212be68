//! The egress proxy: the only way a script reaches the network.
//!
//! A script's network namespace has nothing but its own loopback, and on it one
//! listening socket (127.0.0.1:3128) that the sandbox created and handed to the server.
//! This module serves that listener: an HTTP proxy (absolute-form requests for plain
//! HTTP, `CONNECT` tunnels for HTTPS) that checks every request against the profile's
//! `allowed_hosts`, resolves names itself, refuses loopback/private/link-local/metadata
//! addresses unless listed exactly, connects to the very address it checked (so DNS
//! rebinding cannot swap it afterwards), and logs each attempt. A connection is
//! attributed to an execution by the listener it arrived on, not by anything the
//! script sends, so one execution can neither use nor guess another's egress.
//!
//! The request path is a seam for sealed credentials: [`RequestHook`] sees each
//! allowed plain-HTTP request (and each tunnel target) before it leaves, so a later
//! feature can substitute real values for placeholders on the hosts bound to them.

use std::convert::Infallible;
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use airlock_store::EgressRow;
use bytes::Bytes;
use chrono::Utc;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// Requests of one execution whose bodies are buffered for the hook at once; the
/// others wait.
const MAX_INSPECTING: usize = 4;

/// Ports a host pattern without `:port` allows.
pub const DEFAULT_PORTS: [u16; 2] = [80, 443];

// ---------------------------------------------------------------------------
// Policy: allowed_hosts patterns
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// `api.example.com`
    Exact(String),
    /// `*.example.com`: strict subdomains of `example.com`.
    Subdomains(String),
    /// `10.0.0.1`, `[::1]`
    Ip(IpAddr),
}

/// One parsed `allowed_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    host: HostMatch,
    /// `None`: the [`DEFAULT_PORTS`].
    port: Option<u16>,
    text: String,
}

impl HostRule {
    /// Parses one entry as normalised by `validate::host_patterns` (lowercase).
    pub fn parse(pattern: &str) -> Option<HostRule> {
        let text = pattern.trim().to_ascii_lowercase();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (addr, tail) = rest.split_once(']')?;
            let ip: Ipv6Addr = addr.parse().ok()?;
            let port = match tail {
                "" => None,
                t => Some(
                    t.strip_prefix(':')?
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)?,
                ),
            };
            (HostMatch::Ip(IpAddr::V6(ip)), port)
        } else {
            let (h, port) = match text.rsplit_once(':') {
                Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p > 0)?)),
                None => (text.as_str(), None),
            };
            let host = if let Some(d) = h.strip_prefix("*.") {
                if d.is_empty() || d.parse::<Ipv4Addr>().is_ok() {
                    return None;
                }
                HostMatch::Subdomains(d.trim_end_matches('.').to_string())
            } else if let Ok(ip) = h.parse::<Ipv4Addr>() {
                HostMatch::Ip(IpAddr::V4(ip))
            } else if h.is_empty() {
                return None;
            } else {
                HostMatch::Exact(h.trim_end_matches('.').to_string())
            };
            (host, port)
        };
        Some(HostRule { host, port, text })
    }

    /// Whether this rule covers `target` (host and port).
    pub fn matches(&self, target: &Target) -> bool {
        self.host_matches(target) && self.port_ok(target.port)
    }

    fn port_ok(&self, port: u16) -> bool {
        match self.port {
            Some(p) => p == port,
            None => DEFAULT_PORTS.contains(&port),
        }
    }

    fn host_matches(&self, target: &Target) -> bool {
        match (&self.host, &target.host) {
            (HostMatch::Exact(h), TargetHost::Name(n)) => h == n,
            (HostMatch::Subdomains(d), TargetHost::Name(n)) => n
                .strip_suffix(d.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
            (HostMatch::Ip(a), TargetHost::Ip(b)) => canonical(*a) == canonical(*b),
            _ => false,
        }
    }

    /// Whether this rule pins the target: an explicit `:port` or an IP address.
    pub fn is_pinned(&self) -> bool {
        self.port.is_some() || matches!(self.host, HostMatch::Ip(_))
    }

    /// Whether this rule names `ip` itself (an explicit listing, which may unlock a
    /// non-public address).
    fn names_ip(&self, ip: IpAddr, port: u16) -> bool {
        matches!(self.host, HostMatch::Ip(a) if canonical(a) == canonical(ip)) && self.port_ok(port)
    }
}

/// A profile's egress policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// `allowed_hosts: null`: any public host, any port.
    Unrestricted,
    /// A list of patterns (never empty here: `[]` means no egress listener at all).
    Allow(Vec<HostRule>),
}

impl Policy {
    /// From a profile's `allowed_hosts`; `None` for `Some([])` (no network).
    /// Entries that do not parse are ignored (the API validates them on the way in).
    pub fn from_allowed_hosts(allowed: &Option<Vec<String>>) -> Option<Policy> {
        match allowed {
            None => Some(Policy::Unrestricted),
            Some(list) if list.is_empty() => None,
            Some(list) => Some(Policy::Allow(
                list.iter().filter_map(|p| HostRule::parse(p)).collect(),
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            Policy::Unrestricted => "unrestricted (any public host)".into(),
            Policy::Allow(rules) => rules
                .iter()
                .map(|r| r.text.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Where a request wants to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: TargetHost,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    /// Lowercase, no trailing dot.
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for TargetHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetHost::Name(n) => f.write_str(n),
            TargetHost::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            TargetHost::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Target {
    /// Parses the host part of a request (`Host`-style, brackets around IPv6).
    pub fn new(host: &str, port: u16) -> Option<Target> {
        let h = host.trim().to_ascii_lowercase();
        let h = h.trim_end_matches('.');
        if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            return inner.parse::<Ipv6Addr>().ok().map(|ip| Target {
                host: TargetHost::Ip(IpAddr::V6(ip)),
                port,
            });
        }
        if let Ok(ip) = h.parse::<IpAddr>() {
            return Some(Target {
                host: TargetHost::Ip(ip),
                port,
            });
        }
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        ok.then(|| Target {
            host: TargetHost::Name(h.to_string()),
            port,
        })
    }
}

/// The policy's answer before any DNS lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed by `rule`; `explicit` when the rule names this exact host or IP (which
    /// may then resolve to, or be, a non-public address).
    Allowed {
        rule: String,
        explicit: bool,
    },
    Refused(String),
}

/// What the egress log records as a request's method (after redaction): a request line
/// is written by the script, so anything but a short upper-case token (`GET`,
/// `PROPFIND`, ...) is recorded as a placeholder rather than verbatim.
pub fn logged_method(method: &str) -> String {
    if (1..=16).contains(&method.len()) && method.bytes().all(|b| b.is_ascii_uppercase()) {
        method.to_string()
    } else {
        "[non-standard method]".to_string()
    }
}

/// Checks `target` against the policy (names and ports only; addresses come later).
pub fn check(policy: &Policy, target: &Target) -> Verdict {
    match policy {
        Policy::Unrestricted => Verdict::Allowed {
            rule: "unrestricted".into(),
            explicit: false,
        },
        Policy::Allow(rules) => {
            let matching: Vec<&HostRule> =
                rules.iter().filter(|r| r.host_matches(target)).collect();
            if let Some(r) = matching.iter().find(|r| r.port_ok(target.port)) {
                return Verdict::Allowed {
                    rule: r.text.clone(),
                    explicit: !matches!(r.host, HostMatch::Subdomains(_)),
                };
            }
            if !matching.is_empty() {
                return Verdict::Refused(format!(
                    "port {} is not allowed for {} (matching entries: {}; an entry without :port allows ports 80 and 443 only)",
                    target.port,
                    target.host,
                    matching.iter().map(|r| r.text.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
            let what = match target.host {
                TargetHost::Ip(_) => {
                    "the IP address is not in allowed_hosts (IP addresses must be listed exactly)"
                }
                TargetHost::Name(_) => "the host is not in allowed_hosts",
            };
            Verdict::Refused(format!("{what} ({})", policy.describe()))
        }
    }
}

// ---------------------------------------------------------------------------
// Address classification
// ---------------------------------------------------------------------------

/// IPv4-mapped and IPv4-compatible IPv6 addresses as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// `None` for a public unicast address; otherwise what kind of non-public address it
/// is (loopback, private, link-local/metadata, CGNAT, ULA, multicast, ...). Such
/// addresses are reachable only when listed exactly.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, _, _) => "unspecified (0.0.0.0/8)",
        (127, _, _) => "loopback",
        (10, _, _) => "private (10.0.0.0/8)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (169, 254, _) => "link-local / cloud metadata (169.254.0.0/16)",
        (100, 64..=127, _) => "shared CGNAT (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (224..=239, _, _) => "multicast",
        (255, 255, 255) if ip == Ipv4Addr::BROADCAST => "broadcast",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // IPv4-compatible (::a.b.c.d, deprecated), NAT64 (64:ff9b::/96) and 6to4
    // (2002::/16) carry an IPv4 address: judge that one.
    if s[..6] == [0; 6] {
        return Some("IPv4-compatible (::/96)");
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return non_public_v4(v4).map(|_| "NAT64 of a non-public IPv4 address");
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        if non_public_v4(v4).is_some() {
            return Some("6to4 of a non-public IPv4 address");
        }
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        x if x & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        x if x & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        x if x & 0xff00 == 0xff00 => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation (2001:db8::/32)",
        0x0100 if s[1..4] == [0, 0, 0] => "discard (100::/64)",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// The seam for sealed credentials
// ---------------------------------------------------------------------------

/// A request the hook let through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passed {
    /// Credential names substituted into the request (logged, never values).
    pub substituted: Vec<String>,
    /// The response must be buffered and given to [`RequestHook::on_response`].
    pub rewrite_response: bool,
}

/// Why the hook refused a request (answered with 403 and this reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    /// The request tried to take a sealed credential where it does not belong.
    pub violation: bool,
}

/// What to do with an allowed CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelMode {
    /// Relay bytes untouched.
    Tunnel,
    /// Terminate TLS with the instance CA and handle each request inside like a
    /// plain-HTTP one (needs [`EgressConfig::tls`]; tunnelled untouched without it).
    Intercept,
}

/// Called on the request path after the policy allowed a request and before anything
/// leaves the server. Sealed credentials ([`crate::sealed::Sealer`]) implement it: the
/// script holds a placeholder, and the hook substitutes the real value in requests to
/// the hosts bound to that credential, refuses it everywhere else, and rewrites the
/// bound hosts' responses.
pub trait RequestHook: Send + Sync + 'static {
    /// Whether request bodies are buffered (up to [`crate::sealed::MAX_INSPECTED_BODY`])
    /// and handed to [`on_request`](Self::on_request).
    fn inspects_bodies(&self) -> bool {
        false
    }

    /// May rewrite a request (`parts.uri` is already origin-form, hop-by-hop and
    /// `Proxy-*` headers are gone, `Host` is set) and its buffered body. `tls` tells
    /// whether it goes out over TLS (an intercepted CONNECT) or in clear. An `Err`
    /// refuses the request with 403 and that message.
    fn on_request(
        &self,
        target: &Target,
        tls: bool,
        parts: &mut hyper::http::request::Parts,
        body: &mut Option<Vec<u8>>,
    ) -> Result<Passed, Refusal>;

    /// Before a CONNECT tunnel is opened: tunnel, intercept, or refuse.
    fn on_tunnel(&self, target: &Target) -> Result<TunnelMode, Refusal> {
        let _ = target;
        Ok(TunnelMode::Tunnel)
    }

    /// A buffered response of a request whose [`Passed::rewrite_response`] was set.
    fn on_response(&self, headers: &mut HeaderMap, body: &mut Vec<u8>) {
        let _ = (headers, body);
    }
}

/// The hook that changes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHook;

impl RequestHook for NoHook {
    fn on_request(
        &self,
        _target: &Target,
        _tls: bool,
        _parts: &mut hyper::http::request::Parts,
        _body: &mut Option<Vec<u8>>,
    ) -> Result<Passed, Refusal> {
        Ok(Passed::default())
    }
}

// ---------------------------------------------------------------------------
// Serving one execution's listener
// ---------------------------------------------------------------------------

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
        }
    }
}

/// Everything one execution's proxy needs.
pub struct EgressConfig {
    pub execution_id: String,
    pub policy: Policy,
    pub limits: EgressLimits,
    pub hook: Arc<dyn RequestHook>,
    /// The instance CA, for [`TunnelMode::Intercept`].
    pub tls: Option<Arc<crate::sealed::EgressTls>>,
}

struct Shared {
    cfg: EgressConfig,
    /// Requests whose bodies may be buffered for the hook at once (bounds the memory
    /// one execution can make the server hold).
    inspecting: Arc<Semaphore>,
    total: AtomicU64,
    logged: AtomicU64,
    log: mpsc::UnboundedSender<EgressRow>,
    stop: watch::Receiver<bool>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Serves one execution's egress listener until `stop` turns true (or its sender is
/// dropped). Every attempt is sent to `log` as it ends; open connections are cut at
/// stop and logged with what they moved. `log` closes (all senders dropped) only when
/// every connection task is gone, so a receiver that drains it to the end has every row.
pub async fn serve(
    listener: std::net::TcpListener,
    cfg: EgressConfig,
    log: mpsc::UnboundedSender<EgressRow>,
    mut stop: watch::Receiver<bool>,
) {
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(execution = %cfg.execution_id, error = %e, "egress listener unusable");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(cfg.limits.max_connections.max(1)));
    let shared = Arc::new(Shared {
        cfg,
        inspecting: Arc::new(Semaphore::new(MAX_INSPECTING)),
        total: AtomicU64::new(0),
        logged: AtomicU64::new(0),
        log,
        stop: stop.clone(),
    });
    loop {
        if *stop.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let sock = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "egress accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let shared = shared.clone();
        // The permit travels with the connection: into the tunnel or interception task
        // when it is upgraded, so a CONNECT counts until its tunnel is gone.
        tokio::spawn(serve_client(shared, sock, Arc::new(permit)));
    }
    // The listener closes here: the port is gone for the rest of the execution.
}

/// One client connection's share of [`EgressLimits::max_connections`], held by every
/// task serving it (the HTTP connection, its tunnel or interception).
type ConnPermit = Arc<OwnedSemaphorePermit>;

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
        .serve_connection(TokioIo::new(Watched::new(sock, activity.clone())), service)
        .with_upgrades();
    tokio::select! {
        _ = conn => {}
        _ = activity.idle(idle) => {}
        _ = wait_stop(&mut stop) => {}
    }
}

/// When a client connection last moved a byte, and how many of its requests are
/// waiting for an answer (a connection waiting for its upstream is not idle).
#[derive(Clone)]
struct Activity {
    started: Instant,
    last: Arc<AtomicU64>,
    busy: Arc<AtomicU64>,
}

/// Marks a request in flight until dropped.
struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl Activity {
    fn new() -> Activity {
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

    fn busy(&self) -> Busy {
        self.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Resolves once no request was in flight and no byte moved either way for
    /// `idle` (a client that stops reading a response is cut, and what was buffered
    /// for it freed).
    async fn idle(&self, idle: Duration) {
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

/// The client side of a connection, with its progress recorded in an [`Activity`].
struct Watched<S> {
    inner: S,
    activity: Activity,
}

impl<S> Watched<S> {
    fn new(inner: S, activity: Activity) -> Self {
        activity.touch();
        Watched { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
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

/// A buffered (rewritten) response body that holds the execution's buffering permit
/// until the last byte was handed to the connection (or the body is dropped), and
/// hands it over in small pieces so the connection takes more only as the client
/// reads: what one execution has buffered stays bounded while the script reads slowly.
struct PermitBody {
    data: Bytes,
    permit: Option<OwnedSemaphorePermit>,
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

async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

fn text(status: StatusCode, msg: String) -> Response<ProxyBody> {
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

/// One logged attempt. The row is sent when this is dropped, so a connection cut by
/// the end of the execution (its task dropped) is logged too.
struct Attempt {
    shared: Arc<Shared>,
    row: Option<EgressRow>,
    meter: Arc<Meter>,
}

impl Attempt {
    fn new(
        shared: &Arc<Shared>,
        host: String,
        port: u16,
        method: &str,
        path: Option<String>,
    ) -> Attempt {
        Attempt {
            shared: shared.clone(),
            row: Some(EgressRow {
                execution_id: shared.cfg.execution_id.clone(),
                at: Utc::now(),
                host,
                port,
                method: method.to_string(),
                path,
                bytes_up: 0,
                bytes_down: 0,
                allowed: false,
                reason: String::new(),
                violation: false,
                substituted: Vec::new(),
            }),
            meter: Arc::new(Meter::new(shared.clone())),
        }
    }

    fn set(&mut self, allowed: bool, reason: impl Into<String>) {
        if let Some(r) = self.row.as_mut() {
            r.allowed = allowed;
            r.reason = reason.into();
        }
    }

    fn refuse(&mut self, refusal: &Refusal) {
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
        row.bytes_up = self.meter.up.load(Ordering::Relaxed) as i64;
        row.bytes_down = self.meter.down.load(Ordering::Relaxed) as i64;
        if let Some(cut) = self.meter.cut.lock().ok().and_then(|c| c.clone()) {
            row.reason = format!("{}; {cut}", row.reason);
        }
        if self.shared.logged.fetch_add(1, Ordering::Relaxed) < self.shared.cfg.limits.max_log_rows
        {
            let _ = self.shared.log.send(row);
        }
    }
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
async fn open_upstream(
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

fn refusal(target: &str, reason: &str) -> String {
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
    if let (TunnelMode::Intercept, Some(tls)) = (mode, shared.cfg.tls.clone()) {
        return intercept(shared, permit, attempt, req, target, rule, explicit, tls);
    }
    let (upstream, addr) = match open_upstream(&shared, &target, explicit).await {
        Ok(s) => s,
        Err((status, reason)) => {
            attempt.set(false, reason.clone());
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
        let mut upstream = Metered::new(upstream, attempt.meter.clone());
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

/// Terminates the script's TLS for a host bound to a sealed credential, with a leaf
/// certificate from the instance CA, and serves the requests inside one by one as
/// HTTPS requests to `target` (each a logged attempt of its own).
#[allow(clippy::too_many_arguments)]
fn intercept(
    shared: Arc<Shared>,
    permit: ConnPermit,
    mut attempt: Attempt,
    req: Request<Incoming>,
    target: Target,
    rule: String,
    explicit: bool,
    tls: Arc<crate::sealed::EgressTls>,
) -> Response<ProxyBody> {
    let host = match &target.host {
        TargetHost::Name(n) => n.clone(),
        TargetHost::Ip(ip) => ip.to_string(),
    };
    let server = match tls.server_config(&host) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot mint a leaf certificate");
            attempt.set(false, "cannot terminate TLS for this host");
            return text(
                StatusCode::BAD_GATEWAY,
                refusal(&target.to_string(), "cannot terminate TLS for this host"),
            );
        }
    };
    attempt.set(
        true,
        format!("allowed by {rule}; TLS terminated by Airlock for sealed credentials"),
    );
    let mut stop = shared.stop.clone();
    tokio::spawn(async move {
        let upgraded = tokio::select! {
            u = hyper::upgrade::on(req) => u,
            _ = wait_stop(&mut stop) => return,
        };
        let Ok(upgraded) = upgraded else { return };
        let _permit = permit;
        let idle = shared.cfg.limits.idle_timeout;
        let activity = Activity::new();
        let client = Watched::new(TokioIo::new(upgraded), activity.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let tls_stream = tokio::select! {
            s = tokio::time::timeout(idle, acceptor.accept(client)) => s,
            _ = wait_stop(&mut stop) => return,
        };
        let Ok(Ok(tls_stream)) = tls_stream else {
            attempt.set(true, format!("allowed by {rule}; the client's TLS handshake with Airlock failed (does it trust the Airlock CA bundle?)"));
            return;
        };
        drop(attempt);
        let svc_shared = shared.clone();
        let svc_activity = activity.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let (shared, target, rule) = (svc_shared.clone(), target.clone(), rule.clone());
            let busy = svc_activity.busy();
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let attempt = Attempt::new(
                    &shared,
                    target.host.to_string(),
                    target.port,
                    &method,
                    Some(path),
                );
                let (parts, body) = req.into_parts();
                let resp = relay(shared, attempt, target, rule, explicit, true, parts, body).await;
                drop(busy);
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(idle)
            .keep_alive(true)
            .serve_connection(TokioIo::new(tls_stream), service);
        // Closed when the client neither sends nor reads for `idle` with no request
        // waiting upstream (a response it stops reading is dropped, its memory freed).
        tokio::select! {
            _ = conn => {}
            _ = activity.idle(idle) => {}
            _ = wait_stop(&mut stop) => {}
        }
    });
    Response::new(
        Full::new(Bytes::new())
            .map_err(|n: Infallible| match n {})
            .boxed(),
    )
}

/// Headers that describe one hop, never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in listed {
        headers.remove(n);
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for n in proxy {
        headers.remove(n);
    }
}

async fn forward(shared: Arc<Shared>, req: Request<Incoming>) -> Response<ProxyBody> {
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let (Some(scheme), Some(authority)) = (parts.uri.scheme_str(), parts.uri.authority().cloned())
    else {
        let _attempt = Attempt::new(&shared, String::new(), 0, &method, Some(path))
            .with(false, "not a proxy request (origin-form)");
        return text(
            StatusCode::BAD_REQUEST,
            "This is Airlock's egress proxy: send absolute-form requests (http://host/path) or CONNECT host:port.".into(),
        );
    };
    let host_text = authority.host().to_string();
    let port = authority.port_u16().unwrap_or(80);
    let mut attempt = Attempt::new(&shared, host_text.clone(), port, &method, Some(path));
    if !scheme.eq_ignore_ascii_case("http") {
        let msg = format!("scheme {scheme} is not proxied as plain HTTP: use CONNECT for https");
        attempt.set(false, msg.clone());
        return text(StatusCode::BAD_REQUEST, refusal(&host_text, &msg));
    }
    let Some(target) = Target::new(&host_text, port) else {
        attempt.set(false, "invalid host");
        return text(StatusCode::BAD_REQUEST, refusal(&host_text, "invalid host"));
    };
    let (rule, explicit) = match check(&shared.cfg.policy, &target) {
        Verdict::Allowed { rule, explicit } => (rule, explicit),
        Verdict::Refused(reason) => {
            attempt.set(false, reason.clone());
            return text(StatusCode::FORBIDDEN, refusal(&target.to_string(), &reason));
        }
    };
    relay(shared, attempt, target, rule, explicit, false, parts, body).await
}

/// Whether every value of every `name` header is `allowed` (comma-separated lists
/// included; no header at all passes).
fn only_tokens(headers: &HeaderMap, name: HeaderName, allowed: &str) -> bool {
    headers.get_all(name).iter().all(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .all(|t| t.eq_ignore_ascii_case(allowed))
        })
    })
}

/// An upstream byte stream: TCP, or TLS over TCP.
trait UpstreamIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> UpstreamIo for T {}

/// Reads a whole body, up to `max` bytes; `None` when it is larger.
async fn buffer_body<B>(body: B, max: usize) -> Result<Option<Vec<u8>>, String>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limited = http_body_util::Limited::new(body, max);
    match limited.collect().await {
        Ok(c) => Ok(Some(c.to_bytes().to_vec())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn full(bytes: Vec<u8>) -> ProxyBody {
    Full::new(Bytes::from(bytes))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// Sends an allowed request to `target` (over TLS when `tls`) through the hook, and
/// relays the answer.
#[allow(clippy::too_many_arguments)]
async fn relay(
    shared: Arc<Shared>,
    mut attempt: Attempt,
    target: Target,
    rule: String,
    explicit: bool,
    tls: bool,
    mut parts: hyper::http::request::Parts,
    body: Incoming,
) -> Response<ProxyBody> {
    // Origin-form URI, one-hop headers gone, Host from the request target.
    strip_hop_by_hop(&mut parts.headers);
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = match pq.parse() {
        Ok(u) => u,
        Err(_) => {
            attempt.set(false, "invalid path");
            return text(
                StatusCode::BAD_REQUEST,
                refusal(&target.to_string(), "invalid path"),
            );
        }
    };
    let default_port = if tls { 443 } else { 80 };
    let host_header = if target.port == default_port {
        target.host.to_string()
    } else {
        target.to_string()
    };
    if let Ok(h) = HeaderValue::from_str(&host_header) {
        parts.headers.insert(header::HOST, h);
    }
    let hook = shared.cfg.hook.clone();
    // Held until the request is through and, for a rewritten response, until its body
    // was handed to the client: bounds what this execution has buffered.
    let inspecting = if hook.inspects_bodies() {
        shared.inspecting.clone().acquire_owned().await.ok()
    } else {
        None
    };
    let (mut buffered, body) = if hook.inspects_bodies() {
        match buffer_body(body, crate::sealed::MAX_INSPECTED_BODY).await {
            Ok(Some(b)) => (Some(b), None),
            Ok(None) => {
                let msg = format!(
                    "the request body exceeds {} bytes, the most Airlock inspects for sealed credentials",
                    crate::sealed::MAX_INSPECTED_BODY
                );
                attempt.set(false, msg.clone());
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    refusal(&target.to_string(), &msg),
                );
            }
            Err(e) => {
                attempt.set(false, format!("reading the request body failed: {e}"));
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body failed: {e}"),
                );
            }
        }
    } else {
        (None, Some(body))
    };
    let passed = match hook.on_request(&target, tls, &mut parts, &mut buffered) {
        Ok(p) => p,
        Err(r) => {
            attempt.refuse(&r);
            return text(
                StatusCode::FORBIDDEN,
                refusal(&target.to_string(), &r.reason),
            );
        }
    };
    if let Some(row) = attempt.row.as_mut() {
        row.substituted = passed.substituted.clone();
    }
    let body: ProxyBody = match (buffered, body) {
        (Some(b), _) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            if !b.is_empty() || parts.method != Method::GET {
                parts
                    .headers
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(b.len()));
            }
            full(b)
        }
        (None, Some(b)) => b.boxed(),
        (None, None) => full(Vec::new()),
    };
    if passed.rewrite_response {
        // Compressed answers could not be inspected.
        parts.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        // A response read back piece by piece (byte ranges) would defeat the rewrite:
        // a value split across two ranges matches in neither.
        parts.headers.remove(header::RANGE);
        parts.headers.remove(header::IF_RANGE);
    }
    let (upstream, addr) = match open_upstream(&shared, &target, explicit).await {
        Ok(s) => s,
        Err((status, reason)) => {
            attempt.set(false, reason.clone());
            return text(status, refusal(&target.to_string(), &reason));
        }
    };
    let what = if passed.substituted.is_empty() {
        String::new()
    } else {
        format!("; substituted {}", passed.substituted.join(", "))
    };
    attempt.set(true, format!("allowed by {rule} ({addr}){what}"));
    let meter = attempt.meter.clone();
    let metered = Metered::new(upstream, meter.clone());
    let io: Box<dyn UpstreamIo> = if tls {
        let Some(cfg) = shared.cfg.tls.as_ref() else {
            attempt.set(false, "TLS interception is not configured");
            return text(
                StatusCode::BAD_GATEWAY,
                refusal(&target.to_string(), "TLS interception is not configured"),
            );
        };
        let name = match &target.host {
            TargetHost::Name(n) => rustls_pki_types::ServerName::try_from(n.clone()),
            TargetHost::Ip(ip) => Ok(rustls_pki_types::ServerName::IpAddress((*ip).into())),
        };
        let Ok(name) = name else {
            attempt.set(false, "invalid TLS server name");
            return text(
                StatusCode::BAD_GATEWAY,
                refusal(&target.to_string(), "invalid TLS server name"),
            );
        };
        let connector = tokio_rustls::TlsConnector::from(cfg.upstream());
        match tokio::time::timeout(
            shared.cfg.limits.connect_timeout,
            connector.connect(name, metered),
        )
        .await
        {
            Ok(Ok(s)) => Box::new(s),
            Ok(Err(e)) => {
                let msg = format!("TLS with upstream {target} failed: {e}");
                attempt.set(true, format!("allowed by {rule}; {msg}"));
                return text(StatusCode::BAD_GATEWAY, msg);
            }
            Err(_) => {
                let msg = format!("TLS with upstream {target} timed out");
                attempt.set(true, format!("allowed by {rule}; {msg}"));
                return text(StatusCode::GATEWAY_TIMEOUT, msg);
            }
        }
    } else {
        Box::new(metered)
    };
    let (mut sender, conn) =
        match hyper::client::conn::http1::handshake::<_, ProxyBody>(TokioIo::new(io)).await {
            Ok(x) => x,
            Err(e) => {
                attempt.set(true, format!("allowed by {rule}; upstream failed: {e}"));
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream {target} failed: {e}"),
                );
            }
        };
    // The upstream connection lives until the response body is through (or idle, or the
    // execution ends); the attempt is logged when it ends.
    let idle = shared.cfg.limits.idle_timeout;
    let mut stop = shared.stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = conn => {}
            _ = meter.idle(idle) => meter.cut(format!("closed after {} s idle", idle.as_secs())),
            _ = wait_stop(&mut stop) => meter.cut("cut when the execution ended"),
        }
        drop(attempt);
    });
    let head = parts.method == Method::HEAD;
    match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut rparts, rbody) = resp.into_parts();
            // Only `chunked` (which hyper decodes) may frame a response that is
            // rewritten; any other transfer coding would hide the value.
            let framed_unknown = passed.rewrite_response
                && !only_tokens(&rparts.headers, header::TRANSFER_ENCODING, "chunked");
            strip_hop_by_hop(&mut rparts.headers);
            if passed.rewrite_response {
                // The status line is rebuilt from the code: an upstream cannot echo the
                // value in its reason phrase.
                rparts.extensions.remove::<hyper::ext::ReasonPhrase>();
            }
            if framed_unknown {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream {target} sent a transfer coding other than chunked, which Airlock cannot inspect for sealed credentials"),
                );
            }
            let bodiless = head
                || rparts.status.is_informational()
                || rparts.status == StatusCode::NO_CONTENT
                || rparts.status == StatusCode::NOT_MODIFIED;
            if bodiless && passed.rewrite_response {
                let mut nothing = Vec::new();
                hook.on_response(&mut rparts.headers, &mut nothing);
                return Response::from_parts(rparts, full(Vec::new()));
            }
            if !passed.rewrite_response {
                return Response::from_parts(rparts, rbody.boxed());
            }
            if !only_tokens(&rparts.headers, header::CONTENT_ENCODING, "identity") {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream {target} sent a compressed response, which Airlock cannot inspect for sealed credentials"),
                );
            }
            let mut bytes = match buffer_body(rbody, crate::sealed::MAX_INSPECTED_BODY).await {
                Ok(Some(b)) => b,
                Ok(None) => {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "the response from {target} exceeds {} bytes, the most Airlock inspects for sealed credentials",
                            crate::sealed::MAX_INSPECTED_BODY
                        ),
                    )
                }
                Err(e) => {
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("upstream {target} failed: {e}"),
                    )
                }
            };
            hook.on_response(&mut rparts.headers, &mut bytes);
            rparts.headers.remove(header::CONTENT_LENGTH);
            rparts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            let body = PermitBody {
                data: Bytes::from(bytes),
                permit: inspecting,
            };
            Response::from_parts(rparts, body.boxed())
        }
        Err(e) => text(
            StatusCode::BAD_GATEWAY,
            format!("upstream {target} failed: {e}"),
        ),
    }
}

impl Attempt {
    fn with(mut self, allowed: bool, reason: &str) -> Attempt {
        self.set(allowed, reason);
        self
    }
}

// ---------------------------------------------------------------------------
// Byte accounting and idle detection on the upstream side
// ---------------------------------------------------------------------------

struct Meter {
    shared: Arc<Shared>,
    up: AtomicU64,
    down: AtomicU64,
    started: Instant,
    /// Milliseconds since `started` of the last byte either way.
    last: AtomicU64,
    cut: std::sync::Mutex<Option<String>>,
}

impl Meter {
    fn new(shared: Arc<Shared>) -> Meter {
        Meter {
            shared,
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            started: Instant::now(),
            last: AtomicU64::new(0),
            cut: std::sync::Mutex::new(None),
        }
    }

    fn touch(&self) {
        self.last
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Counts `n` bytes against the execution's budget; `Err` once it is spent.
    fn count(&self, n: usize, up: bool) -> io::Result<()> {
        let n = n as u64;
        if up {
            self.up.fetch_add(n, Ordering::Relaxed);
        } else {
            self.down.fetch_add(n, Ordering::Relaxed);
        }
        self.touch();
        let total = self.shared.total.fetch_add(n, Ordering::Relaxed) + n;
        let max = self.shared.cfg.limits.max_total_bytes;
        if total > max {
            let msg = format!("the execution's egress limit of {max} bytes was reached");
            self.cut(msg.clone());
            return Err(io::Error::other(msg));
        }
        Ok(())
    }

    fn cut(&self, why: impl Into<String>) {
        if let Ok(mut c) = self.cut.lock() {
            c.get_or_insert(why.into());
        }
    }

    /// Resolves once nothing moved either way for `idle`.
    async fn idle(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let quiet = self.started.elapsed().saturating_sub(last);
            if quiet >= idle {
                return;
            }
            tokio::time::sleep(idle - quiet + Duration::from_millis(10)).await;
        }
    }
}

/// The upstream stream, counted: reads are bytes down, writes bytes up.
struct Metered<S> {
    inner: S,
    meter: Arc<Meter>,
}

impl<S> Metered<S> {
    fn new(inner: S, meter: Arc<Meter>) -> Self {
        meter.touch();
        Metered { inner, meter }
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
            let n = buf.filled().len() - before;
            if n > 0 {
                self.meter.count(n, false)?;
            }
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
            if n > 0 {
                self.meter.count(n, true)?;
            }
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

#[cfg(test)]
mod tests {
    #[test]
    fn logs_only_plain_method_tokens() {
        assert_eq!(super::logged_method("GET"), "GET");
        assert_eq!(super::logged_method("PROPFIND"), "PROPFIND");
        for hostile in [
            "[REDACTED:API_TOKEN]",
            "sk-live-123",
            "get",
            "",
            "ABCDEFGHIJKLMNOPQ",
        ] {
            assert_eq!(
                super::logged_method(hostile),
                "[non-standard method]",
                "{hostile}"
            );
        }
    }

    use super::*;

    fn policy(list: &[&str]) -> Policy {
        Policy::from_allowed_hosts(&Some(list.iter().map(|s| s.to_string()).collect()))
            .expect("non-empty")
    }

    fn t(host: &str, port: u16) -> Target {
        Target::new(host, port).expect("valid target")
    }

    fn allowed(p: &Policy, host: &str, port: u16) -> Option<(String, bool)> {
        match check(p, &t(host, port)) {
            Verdict::Allowed { rule, explicit } => Some((rule, explicit)),
            Verdict::Refused(_) => None,
        }
    }

    #[test]
    fn empty_list_means_no_listener_and_null_means_unrestricted() {
        assert_eq!(Policy::from_allowed_hosts(&Some(vec![])), None);
        assert_eq!(
            Policy::from_allowed_hosts(&None),
            Some(Policy::Unrestricted)
        );
        assert_eq!(
            allowed(&Policy::Unrestricted, "anything.example", 8443),
            Some(("unrestricted".into(), false))
        );
    }

    #[test]
    fn exact_hosts_and_default_ports() {
        let p = policy(&["api.stripe.com"]);
        assert_eq!(
            allowed(&p, "api.stripe.com", 443),
            Some(("api.stripe.com".into(), true))
        );
        assert_eq!(
            allowed(&p, "API.Stripe.com.", 80),
            Some(("api.stripe.com".into(), true))
        );
        assert_eq!(allowed(&p, "api.stripe.com", 8443), None);
        assert_eq!(allowed(&p, "stripe.com", 443), None);
        assert_eq!(allowed(&p, "x.api.stripe.com", 443), None);
        assert_eq!(allowed(&p, "api.stripe.com.evil.com", 443), None);
        let Verdict::Refused(why) = check(&p, &t("api.stripe.com", 22)) else {
            panic!()
        };
        assert_eq!(
            why,
            "port 22 is not allowed for api.stripe.com (matching entries: api.stripe.com; an entry without :port allows ports 80 and 443 only)"
        );
        let Verdict::Refused(why) = check(&p, &t("evil.com", 443)) else {
            panic!()
        };
        assert_eq!(why, "the host is not in allowed_hosts (api.stripe.com)");
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = policy(&["*.example.com"]);
        assert_eq!(
            allowed(&p, "a.example.com", 443),
            Some(("*.example.com".into(), false))
        );
        assert!(allowed(&p, "a.b.example.com", 80).is_some());
        assert_eq!(allowed(&p, "example.com", 443), None);
        assert_eq!(allowed(&p, "badexample.com", 443), None);
        assert_eq!(allowed(&p, "a.example.com", 8080), None);
        assert_eq!(allowed(&p, "a.example.com.evil.org", 443), None);
    }

    #[test]
    fn explicit_ports() {
        let p = policy(&[
            "api.local:8080",
            "*.svc.test:9000",
            "10.0.0.5:5432",
            "[::1]:7000",
        ]);
        assert!(allowed(&p, "api.local", 8080).is_some());
        assert_eq!(allowed(&p, "api.local", 443), None);
        assert!(allowed(&p, "x.svc.test", 9000).is_some());
        assert_eq!(allowed(&p, "x.svc.test", 443), None);
        assert_eq!(
            allowed(&p, "10.0.0.5", 5432),
            Some(("10.0.0.5:5432".into(), true))
        );
        assert_eq!(allowed(&p, "10.0.0.5", 5433), None);
        assert_eq!(
            allowed(&p, "[::1]", 7000),
            Some(("[::1]:7000".into(), true))
        );
        assert_eq!(allowed(&p, "[::1]", 443), None);
    }

    #[test]
    fn ip_literals_only_when_listed() {
        let p = policy(&["api.example.com", "93.184.216.34"]);
        assert!(allowed(&p, "93.184.216.34", 443).is_some());
        assert_eq!(allowed(&p, "93.184.216.35", 443), None);
        // A mapped IPv6 form of a listed IPv4 address is the same address.
        assert!(allowed(&p, "[::ffff:93.184.216.34]", 443).is_some());
        let Verdict::Refused(why) = check(&p, &t("1.1.1.1", 443)) else {
            panic!()
        };
        assert_eq!(
            why,
            "the IP address is not in allowed_hosts (IP addresses must be listed exactly) (api.example.com, 93.184.216.34)"
        );
        // A host name never matches an IP rule, nor an IP a host rule.
        let p = policy(&["*.example.com"]);
        assert_eq!(allowed(&p, "127.0.0.1", 443), None);
    }

    #[test]
    fn rules_name_ips_for_unlocking_private_addresses() {
        let r = HostRule::parse("127.0.0.2:8080").unwrap();
        assert!(r.names_ip("127.0.0.2".parse().unwrap(), 8080));
        assert!(r.names_ip("::ffff:127.0.0.2".parse().unwrap(), 8080));
        assert!(!r.names_ip("127.0.0.2".parse().unwrap(), 80));
        assert!(!HostRule::parse("localhost")
            .unwrap()
            .names_ip("127.0.0.1".parse().unwrap(), 80));
    }

    #[test]
    fn parses_patterns() {
        for bad in ["", "*.", "*.1.2.3.4", "x:0", "x:70000", "[zz]", "[::1]x"] {
            assert_eq!(HostRule::parse(bad), None, "{bad}");
        }
        assert_eq!(
            HostRule::parse("[2001:db8::1]:443"),
            Some(HostRule {
                host: HostMatch::Ip("2001:db8::1".parse().unwrap()),
                port: Some(443),
                text: "[2001:db8::1]:443".into()
            })
        );
    }

    #[test]
    fn targets_parse_names_and_ips() {
        assert_eq!(
            Target::new("[::1]", 443),
            Some(Target {
                host: TargetHost::Ip("::1".parse().unwrap()),
                port: 443
            })
        );
        assert_eq!(
            t("Example.COM.", 80).host,
            TargetHost::Name("example.com".into())
        );
        assert_eq!(Target::new("a b", 80), None);
        assert_eq!(Target::new("", 80), None);
        assert_eq!(Target::new("x/y", 80), None);
        assert_eq!(t("[::1]", 8080).to_string(), "[::1]:8080");
    }

    #[test]
    fn classifies_non_public_addresses() {
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1", Some("loopback")),
            ("127.9.9.9", Some("loopback")),
            ("10.1.2.3", Some("private (10.0.0.0/8)")),
            ("172.16.0.1", Some("private (172.16.0.0/12)")),
            ("172.31.255.255", Some("private (172.16.0.0/12)")),
            ("172.32.0.1", None),
            ("192.168.1.1", Some("private (192.168.0.0/16)")),
            (
                "169.254.169.254",
                Some("link-local / cloud metadata (169.254.0.0/16)"),
            ),
            ("100.64.0.1", Some("shared CGNAT (100.64.0.0/10)")),
            ("100.100.100.200", Some("shared CGNAT (100.64.0.0/10)")),
            ("100.128.0.1", None),
            ("0.0.0.0", Some("unspecified (0.0.0.0/8)")),
            ("224.0.0.1", Some("multicast")),
            ("255.255.255.255", Some("broadcast")),
            ("240.0.0.1", Some("reserved (240.0.0.0/4)")),
            ("8.8.8.8", None),
            ("93.184.216.34", None),
            ("::1", Some("loopback (::1)")),
            ("::", Some("unspecified (::)")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:10.0.0.1", Some("private (10.0.0.0/8)")),
            (
                "::ffff:169.254.169.254",
                Some("link-local / cloud metadata (169.254.0.0/16)"),
            ),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some("IPv4-compatible (::/96)")),
            ("64:ff9b::a00:1", Some("NAT64 of a non-public IPv4 address")),
            ("64:ff9b::808:808", None),
            ("2002:7f00:1::", Some("6to4 of a non-public IPv4 address")),
            ("fc00::1", Some("unique local (fc00::/7)")),
            ("fd00:ec2::254", Some("unique local (fc00::/7)")),
            ("fe80::1", Some("link-local (fe80::/10)")),
            ("ff02::1", Some("multicast")),
            ("2001:db8::1", Some("documentation (2001:db8::/32)")),
            ("2606:4700:4700::1111", None),
        ];
        for (ip, want) in cases {
            assert_eq!(non_public(ip.parse().unwrap()), *want, "{ip}");
        }
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
            execution_id: "e".into(),
            policy: policy(&[&format!("127.0.0.1:{port}")]),
            limits: EgressLimits {
                max_connections: 1,
                ..EgressLimits::default()
            },
            hook: Arc::new(NoHook),
            tls: None,
        };
        tokio::spawn(serve(listener, cfg, log, stop));
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
        let size = crate::sealed::MAX_INSPECTED_BODY - 1024;
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
            execution_id: "e".into(),
            policy: policy(&[&format!("127.0.0.1:{port}")]),
            limits,
            hook: Arc::new(BufferAll),
            tls: None,
        };
        tokio::spawn(serve(listener, cfg, log, stop));
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
        assert!(got.is_err() || rest.len() < crate::sealed::MAX_INSPECTED_BODY - 1024);
        stop_tx.send(true).unwrap();
    }

    #[test]
    fn every_coding_value_is_checked() {
        let h = |vals: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in vals {
                h.append(header::CONTENT_ENCODING, HeaderValue::from_static(v));
            }
            h
        };
        let ok =
            |vals: &[&'static str]| only_tokens(&h(vals), header::CONTENT_ENCODING, "identity");
        assert!(ok(&[]));
        assert!(ok(&["identity"]));
        assert!(ok(&["Identity, identity"]));
        assert!(!ok(&["identity", "gzip"]));
        assert!(!ok(&["identity, br"]));
        assert!(!ok(&["gzip"]));
    }

    #[test]
    fn strips_hop_by_hop_and_proxy_headers() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-connection", "keep-alive"),
            ("proxy-foo", "1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("authorization", "Bearer kept"),
            ("accept", "*/*"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, vec!["accept", "authorization"]);
    }
}
