//! Forwarding one plain-HTTP request (or one request inside an intercepted
//! tunnel): hop-by-hop headers dropped, the hook applied, the answer relayed.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;

use crate::event::Attempt;
use crate::hook::{Passed, RequestHook};
use crate::meter::{Meter, Metered};
use crate::policy::{check, Target, TargetHost, Verdict};
use crate::recording::{AnswerKey, Capture, Record, ReplaySource, Unserved};
use crate::serve::{open_upstream, refusal, text, wait_stop, PermitBody, ProxyBody, Shared};
use crate::MAX_INSPECTED_BODY;

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

pub(crate) async fn forward(shared: Arc<Shared>, req: Request<Incoming>) -> Response<ProxyBody> {
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
    let r = Relay {
        shared,
        attempt,
        target,
        rule,
        explicit,
        tls: false,
    };
    relay(r, parts, body).await
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

/// One allowed request on its way upstream: what every phase of [`relay`] needs.
pub(crate) struct Relay {
    pub(crate) shared: Arc<Shared>,
    /// Logged when the upstream connection ends (or when the request is answered
    /// without one).
    pub(crate) attempt: Attempt,
    pub(crate) target: Target,
    /// The `allowed_hosts` entry that allowed it.
    pub(crate) rule: String,
    /// The rule names this exact host or IP (see [`Verdict::Allowed`]).
    pub(crate) explicit: bool,
    /// Over TLS (a request inside an intercepted CONNECT) or in clear.
    pub(crate) tls: bool,
}

/// What the client gets back (the upstream's answer, or the proxy's own).
type Answer = Response<ProxyBody>;

/// The proxy's own answer, ending a request before it reached the upstream.
type Early = Box<Answer>;

/// The request body as the hook left it: buffered (when the hook inspects bodies)
/// or still streaming from the client.
struct Body {
    buffered: Option<Vec<u8>>,
    streamed: Option<Incoming>,
}

/// The upstream HTTP connection of one request.
type UpstreamConn = hyper::client::conn::http1::Connection<TokioIo<Box<dyn UpstreamIo>>, ProxyBody>;

/// Sends an allowed request to its target (over TLS when [`Relay::tls`]) through the
/// hook, and relays the answer.
pub(crate) async fn relay(r: Relay, parts: hyper::http::request::Parts, body: Incoming) -> Answer {
    r.run(parts, body).await.unwrap_or_else(|early| *early)
}

impl Relay {
    /// The phases in order: the request made origin-form, its body taken, the hook
    /// applied, the upstream opened and watched, the answer relayed.
    async fn run(
        mut self,
        mut parts: hyper::http::request::Parts,
        body: Incoming,
    ) -> Result<Answer, Early> {
        self.origin_form(&mut parts)?;
        let hook = self.shared.cfg.hook.clone();
        // Held until the request is through and, for a rewritten response, until its
        // body was handed to the client: bounds what this execution has buffered.
        let inspecting = if hook.inspects_bodies() {
            self.shared.inspecting.clone().acquire_owned().await.ok()
        } else {
            None
        };
        let body = self.take_body(body).await?;
        let (passed, body) = self.apply_hook(&mut parts, body)?;
        let key = AnswerKey::new(
            parts.method.as_str(),
            &self.target,
            parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        );
        if let Some(source) = self.shared.cfg.replay.clone() {
            return Err(Box::new(self.replayed(
                &source,
                &key,
                parts.method == Method::HEAD,
            )));
        }
        let capture = match self.shared.cfg.record {
            Record::Bodies { per_answer, .. } => Some((key, per_answer)),
            _ => None,
        };
        let (sender, conn) = self.open(&passed).await?;
        let target = self.target.clone();
        let meter = self.attempt.meter.clone();
        // When recording, the attempt is logged once the body's hash is known too.
        let (body_read, body_seen) = if self.shared.cfg.record.is_on() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.watch(conn, body_seen);
        let answer = Answering {
            target,
            hook,
            rewrite: passed.rewrite_response,
            head: parts.method == Method::HEAD,
            inspecting,
            meter,
            body_read,
            capture,
        };
        Ok(answer.send(sender, Request::from_parts(parts, body)).await)
    }

    /// A replay's answer: the next one its record holds for this request (nothing
    /// leaves), or 502 naming why there is none.
    fn replayed(&mut self, source: &ReplaySource, key: &AnswerKey, head: bool) -> Answer {
        let of = source.of().to_string();
        let answer = match source.take(key) {
            Ok(a) => a,
            Err(Unserved::NotRecorded) => {
                let why = format!(
                    "this request is not in the record of {of} (a replay answers only the requests its record holds, matched by method, host, port, path and query, in order)"
                );
                return *self.refuse(StatusCode::BAD_GATEWAY, &why);
            }
            Err(Unserved::Truncated) => {
                let why = format!(
                    "the answer the record of {of} holds for this request was cut at the record's size limit, so it cannot be served"
                );
                return *self.refuse(StatusCode::BAD_GATEWAY, &why);
            }
        };
        let rule = &self.rule;
        self.attempt.set(
            true,
            format!("allowed by {rule}; answered from the record of {of}"),
        );
        let body = if head { Vec::new() } else { answer.body };
        let meter = &self.attempt.meter;
        meter.answered(answer.status);
        if self.shared.cfg.record.is_on() {
            meter.body_hashed(hex::encode(Sha256::digest(&body)));
        }
        let mut resp = Response::new(full(Vec::new()));
        *resp.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
        let headers = resp.headers_mut();
        for (k, v) in &answer.headers {
            let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                continue;
            };
            if k == header::TRANSFER_ENCODING || (!head && k == header::CONTENT_LENGTH) {
                continue;
            }
            headers.append(k, v);
        }
        if !head {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        *resp.body_mut() = full(body);
        resp
    }

    /// Logs the attempt as refused with `reason` and answers `status`.
    fn refuse(&mut self, status: StatusCode, reason: &str) -> Early {
        self.attempt.set(false, reason);
        Box::new(text(status, refusal(&self.target.to_string(), reason)))
    }

    /// Origin-form URI, one-hop headers gone, Host from the request target.
    fn origin_form(&mut self, parts: &mut hyper::http::request::Parts) -> Result<(), Early> {
        strip_hop_by_hop(&mut parts.headers);
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        parts.uri = match pq.parse() {
            Ok(u) => u,
            Err(_) => return Err(self.refuse(StatusCode::BAD_REQUEST, "invalid path")),
        };
        let default_port = if self.tls { 443 } else { 80 };
        let host_header = if self.target.port == default_port {
            self.target.host.to_string()
        } else {
            self.target.to_string()
        };
        if let Ok(h) = HeaderValue::from_str(&host_header) {
            parts.headers.insert(header::HOST, h);
        }
        Ok(())
    }

    /// Buffers the body for the hook when it inspects bodies (refusing one over
    /// [`MAX_INSPECTED_BODY`]); otherwise leaves it streaming.
    async fn take_body(&mut self, body: Incoming) -> Result<Body, Early> {
        if !self.shared.cfg.hook.inspects_bodies() {
            return Ok(Body {
                buffered: None,
                streamed: Some(body),
            });
        }
        match buffer_body(body, MAX_INSPECTED_BODY).await {
            Ok(Some(b)) => Ok(Body {
                buffered: Some(b),
                streamed: None,
            }),
            Ok(None) => {
                let msg = format!(
                    "the request body exceeds {MAX_INSPECTED_BODY} bytes, the most Airlock inspects for sealed credentials"
                );
                Err(self.refuse(StatusCode::PAYLOAD_TOO_LARGE, &msg))
            }
            Err(e) => {
                self.attempt
                    .set(false, format!("reading the request body failed: {e}"));
                Err(Box::new(text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the request body failed: {e}"),
                )))
            }
        }
    }

    /// Lets the hook refuse or rewrite the request; returns its verdict and the body
    /// to send.
    fn apply_hook(
        &mut self,
        parts: &mut hyper::http::request::Parts,
        body: Body,
    ) -> Result<(Passed, ProxyBody), Early> {
        let Body {
            mut buffered,
            streamed,
        } = body;
        let hook = self.shared.cfg.hook.clone();
        let passed = match hook.on_request(&self.target, self.tls, parts, &mut buffered) {
            Ok(p) => p,
            Err(r) => {
                self.attempt.refuse(&r);
                return Err(Box::new(text(
                    StatusCode::FORBIDDEN,
                    refusal(&self.target.to_string(), &r.reason),
                )));
            }
        };
        if let Some(row) = self.attempt.row.as_mut() {
            row.substituted = passed.substituted.clone();
        }
        let body: ProxyBody = match (buffered, streamed) {
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
        Ok((passed, body))
    }

    /// Connects to the target (the address rules enforced), metered, over TLS when
    /// asked, and opens an HTTP/1 connection on it.
    async fn open(
        &mut self,
        passed: &Passed,
    ) -> Result<(SendRequest<ProxyBody>, UpstreamConn), Early> {
        let (upstream, addr) = match open_upstream(&self.shared, &self.target, self.explicit).await
        {
            Ok(s) => s,
            Err((status, reason)) => {
                let early = self.refuse(status, &reason);
                let logged = crate::serve::logged_failure(&self.rule, status, &reason);
                self.attempt.set(false, logged);
                return Err(early);
            }
        };
        let what = if passed.substituted.is_empty() {
            String::new()
        } else {
            format!("; substituted {}", passed.substituted.join(", "))
        };
        let rule = &self.rule;
        self.attempt
            .set(true, format!("allowed by {rule} ({addr}){what}"));
        let metered = Metered::upstream(upstream, self.attempt.meter.clone());
        let io: Box<dyn UpstreamIo> = if self.tls {
            self.upstream_tls(metered).await?
        } else {
            Box::new(metered)
        };
        match hyper::client::conn::http1::handshake::<_, ProxyBody>(TokioIo::new(io)).await {
            Ok(x) => Ok(x),
            Err(e) => {
                let rule = &self.rule;
                self.attempt
                    .set(true, format!("allowed by {rule}; upstream failed: {e}"));
                Err(Box::new(text(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream {} failed: {e}", self.target),
                )))
            }
        }
    }

    /// TLS with the upstream over `metered`, verified against the public roots (and
    /// the operator's bundle).
    async fn upstream_tls(
        &mut self,
        metered: Metered<tokio::net::TcpStream>,
    ) -> Result<Box<dyn UpstreamIo>, Early> {
        let Some(cfg) = self.shared.cfg.tls.clone() else {
            return Err(self.refuse(
                StatusCode::BAD_GATEWAY,
                "TLS interception is not configured",
            ));
        };
        let name = match &self.target.host {
            TargetHost::Name(n) => rustls_pki_types::ServerName::try_from(n.clone()),
            TargetHost::Ip(ip) => Ok(rustls_pki_types::ServerName::IpAddress((*ip).into())),
        };
        let Ok(name) = name else {
            return Err(self.refuse(StatusCode::BAD_GATEWAY, "invalid TLS server name"));
        };
        let connector = tokio_rustls::TlsConnector::from(cfg.upstream());
        let target = &self.target;
        let (status, msg) = match tokio::time::timeout(
            self.shared.cfg.limits.connect_timeout,
            connector.connect(name, metered),
        )
        .await
        {
            Ok(Ok(s)) => return Ok(Box::new(s)),
            Ok(Err(e)) => (
                StatusCode::BAD_GATEWAY,
                format!("TLS with upstream {target} failed: {e}"),
            ),
            Err(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                format!("TLS with upstream {target} timed out"),
            ),
        };
        let rule = &self.rule;
        self.attempt.set(true, format!("allowed by {rule}; {msg}"));
        Err(Box::new(text(status, msg)))
    }

    /// The upstream connection lives until the response body is through (or idle, or
    /// the execution ends); the attempt is logged when it ends.
    fn watch(self, conn: UpstreamConn, body_seen: Option<tokio::sync::oneshot::Receiver<()>>) {
        let idle = self.shared.cfg.limits.idle_timeout;
        let mut stop = self.shared.stop.clone();
        let attempt = self.attempt;
        let meter = attempt.meter.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                _ = meter.idle(idle) => meter.cut(format!("closed after {} s idle", idle.as_secs())),
                _ = wait_stop(&mut stop) => meter.cut("cut when the execution ended"),
            }
            // The connection can end before the script has read the last of the body
            // (hyper hands it over through a channel): wait for the hash, briefly.
            if let Some(seen) = body_seen {
                tokio::select! {
                    _ = seen => {}
                    _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                    _ = wait_stop(&mut stop) => {}
                }
            }
            drop(attempt);
        });
    }
}

/// The answer phase of [`relay`]: relays the upstream's response, rewritten by the
/// hook when it asked for that.
struct Answering {
    target: Target,
    hook: Arc<dyn RequestHook>,
    /// [`Passed::rewrite_response`].
    rewrite: bool,
    /// The request was a HEAD (its answer has no body).
    head: bool,
    /// The execution's buffering permit, handed to a rewritten body.
    inspecting: Option<OwnedSemaphorePermit>,
    /// The attempt's meter, which keeps the answer's status and body hash.
    meter: Arc<Meter>,
    /// When recording: dropped once the body's hash is in the meter (or the body was
    /// abandoned), which lets the attempt be logged.
    body_read: Option<tokio::sync::oneshot::Sender<()>>,
    /// When keeping bodies ([`Record::Bodies`]): the request's key and how much of
    /// its body to keep.
    capture: Option<(AnswerKey, usize)>,
}

impl Answering {
    async fn send(self, mut sender: SendRequest<ProxyBody>, req: Request<ProxyBody>) -> Answer {
        match sender.send_request(req).await {
            Ok(resp) => self.answer(resp).await,
            Err(e) => text(
                StatusCode::BAD_GATEWAY,
                format!("upstream {} failed: {e}", self.target),
            ),
        }
    }

    async fn answer(mut self, resp: Response<Incoming>) -> Answer {
        let (mut rparts, rbody) = resp.into_parts();
        self.meter.answered(rparts.status.as_u16());
        let target = &self.target;
        // Only `chunked` (which hyper decodes) may frame a response that is
        // rewritten; any other transfer coding would hide the value.
        let framed_unknown =
            self.rewrite && !only_tokens(&rparts.headers, header::TRANSFER_ENCODING, "chunked");
        strip_hop_by_hop(&mut rparts.headers);
        if self.rewrite {
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
        let bodiless = self.head
            || rparts.status.is_informational()
            || rparts.status == StatusCode::NO_CONTENT
            || rparts.status == StatusCode::NOT_MODIFIED;
        if bodiless && self.rewrite {
            let mut nothing = Vec::new();
            self.hook.on_response(&mut rparts.headers, &mut nothing);
            self.record_whole(&nothing, &rparts);
            return Response::from_parts(rparts, full(Vec::new()));
        }
        if !self.rewrite {
            return match self.body_read.take() {
                Some(done) => {
                    let capture = self.capture.take().map(|(key, n)| {
                        Capture::new(key, rparts.status.as_u16(), &rparts.headers, n)
                    });
                    let body = Hashed {
                        inner: rbody,
                        sha: Some(Sha256::new()),
                        meter: self.meter.clone(),
                        done: Some(done),
                        capture,
                    };
                    Response::from_parts(rparts, body.boxed())
                }
                None => Response::from_parts(rparts, rbody.boxed()),
            };
        }
        self.rewritten(rparts, rbody).await
    }

    /// Records the hash (and, keeping bodies, the answer) of a body the proxy holds
    /// whole (when recording).
    fn record_whole(&mut self, body: &[u8], rparts: &hyper::http::response::Parts) {
        if let Some(done) = self.body_read.take() {
            self.meter.body_hashed(hex::encode(Sha256::digest(body)));
            if let Some((key, n)) = self.capture.take() {
                let mut c = Capture::new(key, rparts.status.as_u16(), &rparts.headers, n);
                c.push(body);
                self.meter.captured(c);
            }
            drop(done);
        }
    }

    /// Buffers the response, hands it to the hook, and answers with what it left.
    async fn rewritten(
        mut self,
        mut rparts: hyper::http::response::Parts,
        rbody: Incoming,
    ) -> Answer {
        let target = &self.target;
        if !only_tokens(&rparts.headers, header::CONTENT_ENCODING, "identity") {
            return text(
                StatusCode::BAD_GATEWAY,
                format!("upstream {target} sent a compressed response, which Airlock cannot inspect for sealed credentials"),
            );
        }
        let mut bytes = match buffer_body(rbody, MAX_INSPECTED_BODY).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "the response from {target} exceeds {MAX_INSPECTED_BODY} bytes, the most Airlock inspects for sealed credentials"
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
        self.hook.on_response(&mut rparts.headers, &mut bytes);
        rparts.headers.remove(header::CONTENT_LENGTH);
        rparts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        self.record_whole(&bytes, &rparts);
        let body = PermitBody {
            data: Bytes::from(bytes),
            permit: self.inspecting,
        };
        Response::from_parts(rparts, body.boxed())
    }
}

/// A response body on its way to the script, hashed as it passes; the hash reaches
/// the meter when the body ends (an abandoned or failed body records none).
struct Hashed {
    inner: Incoming,
    sha: Option<Sha256>,
    meter: Arc<Meter>,
    done: Option<tokio::sync::oneshot::Sender<()>>,
    /// The answer kept as it passes ([`Record::Bodies`]).
    capture: Option<Capture>,
}

impl Hashed {
    fn finish(&mut self) {
        if let Some(sha) = self.sha.take() {
            self.meter.body_hashed(hex::encode(sha.finalize()));
            if let Some(c) = self.capture.take() {
                self.meter.captured(c);
            }
        }
        self.done = None;
    }
}

impl Drop for Hashed {
    fn drop(&mut self) {
        // An empty body is never polled: it is complete all the same.
        if self.inner.is_end_stream() {
            self.finish();
        }
    }
}

impl hyper::body::Body for Hashed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let got = Pin::new(&mut this.inner).poll_frame(cx);
        match &got {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(sha), Some(data)) = (this.sha.as_mut(), frame.data_ref()) {
                    sha.update(data);
                    if let Some(c) = this.capture.as_mut() {
                        c.push(data);
                    }
                }
                // A body of known length ends with its last frame: hyper does not
                // poll again once `is_end_stream` says so.
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => {
                this.sha = None;
                this.capture = None;
                this.done = None;
            }
            Poll::Pending => {}
        }
        got
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut left: Vec<&str> = h.keys().map(hyper::http::HeaderName::as_str).collect();
        left.sort();
        assert_eq!(left, vec!["accept", "authorization"]);
    }
}
