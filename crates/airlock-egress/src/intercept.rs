//! `CONNECT` with TLS interception: the script's TLS is terminated with a leaf
//! from the instance CA and each request inside is relayed like a plain one over a
//! verified upstream TLS connection.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::event::Attempt;
use crate::meter::{Activity, Metered};
use crate::policy::{Target, TargetHost};
use crate::relay::{relay, Relay};
use crate::serve::{refusal, text, wait_stop, ConnPermit, ProxyBody, Shared};
use crate::tls::EgressTls;

/// Terminates the script's TLS for a host bound to a sealed credential, with a leaf
/// certificate from the instance CA, and serves the requests inside one by one as
/// HTTPS requests to `target` (each a logged attempt of its own).
#[allow(clippy::too_many_arguments)]
pub(crate) fn intercept(
    shared: Arc<Shared>,
    permit: ConnPermit,
    mut attempt: Attempt,
    req: Request<Incoming>,
    target: Target,
    rule: String,
    explicit: bool,
    tls: Arc<EgressTls>,
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
        let client = Metered::client(TokioIo::new(upgraded), activity.clone());
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
                let r = Relay {
                    shared,
                    attempt,
                    target,
                    rule,
                    explicit,
                    tls: true,
                };
                let resp = relay(r, parts, body).await;
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
