//! The seam for sealed credentials: what may look at and rewrite a request.

use hyper::header::HeaderMap;

use crate::policy::Target;

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
    /// plain-HTTP one (needs [`crate::EgressConfig::tls`]; tunnelled untouched without it).
    Intercept,
}

/// Called on the request path after the policy allowed a request and before anything
/// leaves the server. Sealed credentials ((Airlock's `Sealer`)) implement it: the
/// script holds a placeholder, and the hook substitutes the real value in requests to
/// the hosts bound to that credential, refuses it everywhere else, and rewrites the
/// bound hosts' responses.
pub trait RequestHook: Send + Sync + 'static {
    /// Whether request bodies are buffered (up to [`crate::MAX_INSPECTED_BODY`])
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

    /// Byte strings that must never leave on a raw TCP connection (placeholders of
    /// sealed credentials, in every form they may take), each with the credential's
    /// name. A connection that sends one is cut and the attempt logged as a violation.
    fn tcp_guard(&self) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }

    /// A raw TCP connection to `destination` (`tcp://host:port`) carried the
    /// placeholder of credential `name` (cut); returns what the log adds (for
    /// example that the profile is revoked).
    fn on_tcp_violation(&self, name: &str, destination: &str) -> Option<String> {
        let _ = (name, destination);
        None
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
