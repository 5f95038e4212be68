//! Airlock's sandbox: runs untrusted Python scripts in isolated, warm workers.
//!
//! This is the only crate of the workspace allowed to use `unsafe`, and only in the
//! modules that allow it: `sys.rs` (raw syscalls), `embed.rs` (loading libpython),
//! `isolate.rs` (the FFI entry points and each execution's forks), `helper.rs` (the
//! helper's fork/exec before any thread exists) and one `AsyncFd` registration in
//! `sandbox.rs`; every block has a `SAFETY:` note. See the crate README for what is enforced, in which order, and how it
//! is tested.
//!
//! Process tree per slot: server (tokio) → helper/zygote (own uid, user+mount+net+ipc+uts
//! namespaces, minimal read-only root, warm Python) → per execution: supervisor C (new
//! user/pid/mount/net/ipc/uts/cgroup namespaces) → reaper R (PID 1) → script process S
//! (rlimits, Landlock, no_new_privs, no capabilities, seccomp).
//!
//! ```no_run
//! # async fn demo() -> airlock_sandbox::Result<()> {
//! use airlock_sandbox::*;
//! let helper = vec![std::env::current_exe()?.into_os_string(), HELPER_ARG.into()];
//! let sandbox = Sandbox::start(SandboxConfig::new(helper)).await?;
//! let mut exec = sandbox.run(Job { script: "set_result(1)".into(), timeout: std::time::Duration::from_secs(5), ..Default::default() }).await?;
//! while let Event::LlmRequest { request_id, .. } = exec.next_event().await {
//!     exec.respond_llm(&request_id, "an answer").await?;
//! }
//! # Ok(()) }
//! ```

mod cgroup;
mod config;
mod embed;
mod execution;
mod helper;
mod isolate;
mod landlock_rules;
mod plan;
pub mod protocol;
mod sandbox;
mod seccomp;
mod sys;

pub use config::{Layer, LayerReport, Limits, ReadonlyMount, SandboxConfig, Tier};
pub use execution::{
    EgressListeners, Event, Execution, Outcome, OutcomeStatus, OutputStream, PendingProxy,
    MAX_ORDER_PIECES,
};
pub use helper::{helper_main, is_helper_invocation, BASE_ENV, HELPER_ARG};
pub use sandbox::{proxy_env, Job, Sandbox, TcpForward, PROXY_PORT};
pub use sys::signal_name;

/// Errors of the sandbox API.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid sandbox configuration: {0}")]
    Config(String),
    #[error(
        "sandbox layer {layer} is not available ({detail}); allow it explicitly to run weaker"
    )]
    LayerMissing { layer: Layer, detail: String },
    #[error("sandbox start-up failed: {0}")]
    Startup(String),
    #[error("the sandbox is shut down")]
    ShutDown,
    #[error("no pending LLM request with id {0:?}")]
    UnknownRequest(String),
    #[error("the execution has already finished")]
    Finished,
    #[error("sandbox I/O error: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, Error>;
