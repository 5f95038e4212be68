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
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;

use crate::event::Attempt;
use crate::meter::{Activity, Metered};
use crate::policy::{Target, TargetHost};
use crate::relay::{relay, Relay};
use crate::serve::{refusal, text, wait_stop, ConnPermit, ProxyBody, Shared};
use crate::tls::EgressTls;

/// An allowed `CONNECT` the hook asked to intercept: what each request inside
/// needs to be relayed as an attempt of its own.
#[derive(Clone)]
pub(crate) struct Interception {
    pub(crate) shared: Arc<Shared>,
    pub(crate) target: Target,
    /// The `allowed_hosts` entry that allowed the tunnel.
    pub(crate) rule: String,
    /// The rule names this exact host or IP.
    pub(crate) explicit: bool,
}

/// Terminates the script's TLS (for a host bound to a sealed credential, or to
/// record or replay answers: `why`, logged), with a leaf certificate from the
/// instance CA, and serves the requests inside one by one as
/// HTTPS requests to the target (each a logged attempt of its own).
pub(crate) fn intercept(
    ic: Interception,
    permit: ConnPermit,
    mut attempt: Attempt,
    req: Request<Incoming>,
    (tls, why): (Arc<EgressTls>, &str),
) -> Response<ProxyBody> {
    let host = match &ic.target.host {
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
                refusal(&ic.target.to_string(), "cannot terminate TLS for this host"),
            );
        }
    };
    let rule = &ic.rule;
    attempt.set(
        true,
        format!("allowed by {rule}; TLS terminated by Airlock {why}"),
    );
    tokio::spawn(ic.run(permit, attempt, req, server));
    Response::new(
        Full::new(Bytes::new())
            .map_err(|n: Infallible| match n {})
            .boxed(),
    )
}

impl Interception {
    /// Once the client's connection is upgraded: the TLS handshake with the client
    /// (the tunnel's attempt is logged when it is through), then its requests. The
    /// connection's permit is held until the end.
    async fn run(
        self,
        permit: ConnPermit,
        mut attempt: Attempt,
        req: Request<Incoming>,
        server: Arc<rustls::ServerConfig>,
    ) {
        let mut stop = self.shared.stop.clone();
        let upgraded = tokio::select! {
            u = hyper::upgrade::on(req) => u,
            _ = wait_stop(&mut stop) => return,
        };
        let Ok(upgraded) = upgraded else { return };
        let _permit = permit;
        let idle = self.shared.cfg.limits.idle_timeout;
        let activity = Activity::new();
        let client = Metered::client(TokioIo::new(upgraded), activity.clone());
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let tls_stream = tokio::select! {
            s = tokio::time::timeout(idle, acceptor.accept(client)) => s,
            _ = wait_stop(&mut stop) => return,
        };
        let Ok(Ok(tls_stream)) = tls_stream else {
            let rule = &self.rule;
            attempt.set(true, format!("allowed by {rule}; the client's TLS handshake with Airlock failed (does it trust the Airlock CA bundle?)"));
            return;
        };
        drop(attempt);
        self.serve_inside(tls_stream, activity).await;
    }

    /// Serves the HTTP requests inside the terminated TLS connection until it closes,
    /// idles or the execution ends.
    async fn serve_inside<S>(self, stream: S, activity: Activity)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let mut stop = self.shared.stop.clone();
        let idle = self.shared.cfg.limits.idle_timeout;
        let svc_activity = activity.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let ic = self.clone();
            let busy = svc_activity.busy();
            async move {
                let resp = ic.relay_one(req).await;
                drop(busy);
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(idle)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        // Closed when the client neither sends nor reads for `idle` with no request
        // waiting upstream (a response it stops reading is dropped, its memory freed).
        tokio::select! {
            _ = conn => {}
            _ = activity.idle(idle) => {}
            _ = wait_stop(&mut stop) => {}
        }
    }

    /// One request inside the tunnel, relayed over TLS as an attempt of its own.
    async fn relay_one(self, req: Request<Incoming>) -> Response<ProxyBody> {
        let method = req.method().to_string();
        let path = req.uri().path().to_string();
        let attempt = Attempt::new(
            &self.shared,
            self.target.host.to_string(),
            self.target.port,
            &method,
            Some(path),
        );
        let (parts, body) = req.into_parts();
        let r = Relay {
            shared: self.shared,
            attempt,
            target: self.target,
            rule: self.rule,
            explicit: self.explicit,
            tls: true,
        };
        relay(r, parts, body).await
    }
}
