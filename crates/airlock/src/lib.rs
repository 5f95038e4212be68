//! Airlock: a trust boundary between AI agents and production credentials.
//!
//! The binary serves one HTTP port with the agent API, the admin API and
//! the web UI. This library holds everything so tests can build the real router
//! with [`app::App::open`] and drive it without a socket.
#![forbid(unsafe_code)]

pub mod answers;
pub mod api;
pub mod app;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod compare;
pub mod config;
pub mod egress_log;
pub mod error;
pub mod ids;
pub mod inbox;
pub mod mcp;
pub mod metrics;
pub mod notify;
pub mod packages;
pub mod requirements;
pub mod runner;
pub mod sandbox;
pub mod sealed;
pub mod skill;
pub mod tokens;
pub mod transfer;
pub mod validate;
pub mod web;

/// Serves `router` on an already-bound listener until the process is stopped.
pub async fn serve(router: axum::Router, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}
