//! The egress proxy: the only way a script reaches the network.
//!
//! A script's network namespace has nothing but its own loopback, and on it one
//! listening socket (127.0.0.1:3128) that the sandbox created and handed to the server.
//! This crate serves that listener: an HTTP proxy (absolute-form requests for plain
//! HTTP, `CONNECT` tunnels for HTTPS) that checks every request against the profile's
//! `allowed_hosts`, resolves names itself, refuses loopback/private/link-local/metadata
//! addresses unless listed exactly, connects to the very address it checked (so DNS
//! rebinding cannot swap it afterwards), and logs each attempt. A connection is
//! attributed to an execution by the listener it arrived on, not by anything the
//! script sends, so one execution can neither use nor guess another's egress.
//!
//! The request path is a seam for sealed credentials: [`RequestHook`] sees each
//! allowed plain-HTTP request (and each tunnel target) before it leaves, so the server
//! can substitute real values for placeholders on the hosts bound to them, with TLS
//! terminated by [`tls::EgressTls`] for the tunnels the hook asks to intercept.
//!
//! Modules: [`policy`] (allowed_hosts patterns), [`addresses`] (address
//! classification), [`hook`] (the seam), `serve` (one listener), `intercept`
//! (CONNECT with TLS termination), `relay` (forwarding one request), `meter` (byte
//! accounting and idle detection), [`tls`] (the CA, leaves, the upstream verifier).
//! [`Session`] runs one execution's proxy and hands out its log.

#![forbid(unsafe_code)]

pub mod addresses;
mod event;
pub mod hook;
mod intercept;
mod meter;
pub mod policy;
mod postgres;
pub mod recording;
mod relay;
mod serve;
mod session;
mod tcp;
pub mod tls;

pub use addresses::non_public;
pub use event::EgressEvent;
pub use hook::{NoHook, Passed, Refusal, RequestHook, TunnelMode};
pub use policy::{
    check, is_tcp_entry, logged_method, HostRule, Policy, Target, TargetHost, TcpDestination,
    Verdict, DEFAULT_PORTS, MAX_TCP_DESTINATIONS, TCP_SCHEME,
};
pub use postgres::{PgLogin, PgTls};
pub use recording::{AnswerKey, CapturedAnswer, Record, ReplaySource};
pub use serve::{attempt_failed, EgressConfig, EgressLimits, Listeners};
pub use session::{Events, Listen, PendingListener, Session, Stopper};
pub use tcp::TcpRoute;
pub use tls::{EgressTls, TlsError};

/// Largest request or response body the proxy buffers to substitute or scan.
pub const MAX_INSPECTED_BODY: usize = 8 * 1024 * 1024;
