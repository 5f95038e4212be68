//! Starting the sandbox from the server's configuration.
//!
//! The sandbox itself lives in the `airlock-sandbox` crate (the only crate with
//! `unsafe`). This module maps `Config` onto it and decides, once at start-up, in
//! which tier executions run (`AIRLOCK_SANDBOX`: the first tier of the mode whose
//! every layer works), or that they cannot run at all.

use std::sync::Arc;

use airlock_sandbox::{Layer, Limits, Sandbox, SandboxConfig, Tier};

use crate::config::{Config, SandboxMode};

/// The argument that makes the `airlock` binary act as the sandbox helper.
pub use airlock_sandbox::HELPER_ARG;

/// Where scripts see the egress CA bundle's directory.
pub const CA_DIR_INSIDE: &str = "/airlock/ca";
/// Where scripts see the package environments' directory.
pub const PACKAGES_DIR_INSIDE: &str = "/airlock/packages";

/// Starts the sandbox, or returns why executions are disabled.
/// `mounts` are extra host directories made visible read-only at neutral paths (the
/// egress CA bundle at [`CA_DIR_INSIDE`], the package environments at
/// [`PACKAGES_DIR_INSIDE`], see [`crate::packages`]).
pub async fn start(
    config: &Config,
    mounts: &[airlock_sandbox::ReadonlyMount],
) -> Result<Arc<Sandbox>, String> {
    let Some(helper) = config.sandbox_helper.clone() else {
        return Err("no sandbox helper is configured for this instance".into());
    };
    let limits = Limits {
        memory_bytes: config.memory_mb * 1024 * 1024,
        output_bytes: config.max_output_bytes + 64 * 1024,
        // CPU time is a backstop behind the wall-clock timeout: never lower than
        // the longest timeout a script may ask for.
        cpu_seconds: config.max_timeout.max(1) + 5,
        ..Limits::default()
    };
    let mut cfg = SandboxConfig::new(helper);
    cfg.python = config.python.clone();
    if let Some(p) = config
        .python_paths
        .iter()
        .find(|p| !p.is_absolute() || p.starts_with("/tmp"))
    {
        return Err(format!(
            "AIRLOCK_PYTHON_PATHS entry {} must be an absolute path outside /tmp (each execution gets its own empty /tmp)",
            p.display()
        ));
    }
    cfg.python_paths = config.python_paths.clone();
    cfg.mounts.extend(mounts.iter().cloned());
    if let Some(m) = config.preimport.iter().map(|m| m.trim()).find(|m| {
        m.is_empty()
            || !m.split('.').all(|p| {
                !p.is_empty()
                    && !p.starts_with(|c: char| c.is_ascii_digit())
                    && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
    }) {
        return Err(format!(
            "AIRLOCK_PREIMPORT entry {m:?} is not a module name (dotted Python identifiers, comma-separated)"
        ));
    }
    if config.sandbox_uid_base < 1000 {
        return Err(format!(
            "AIRLOCK_SANDBOX_UID_BASE must be at least 1000 (got {}): slots must never run as root or a system account",
            config.sandbox_uid_base
        ));
    }
    if config.max_paused > MAX_PAUSED_LIMIT {
        return Err(format!(
            "AIRLOCK_MAX_PAUSED must be at most {MAX_PAUSED_LIMIT} (got {}): each one is a sandbox slot (a uid, a cgroup) made at start-up",
            config.max_paused
        ));
    }
    cfg.uid_base = config.sandbox_uid_base;
    cfg.scratch_dir = config.scratch_dir.clone();
    // A slot per worker (warm: a zygote each) and one per execution that may be
    // paused in `llm.complete` (their zygote is retired while they wait).
    cfg.slots = config.sandbox_slots();
    cfg.warm_slots = Some(config.worker_count());
    cfg.limits = limits;
    if config.sandbox == SandboxMode::Permissive {
        cfg.allow_missing = Layer::ALL.to_vec();
    }
    start_tiers(cfg, config.sandbox.tiers()).await.map(Arc::new)
}

/// The largest `AIRLOCK_MAX_PAUSED` accepted.
pub const MAX_PAUSED_LIMIT: usize = 10_000;

/// Starts `cfg` in the first of `tiers` whose layers all work; the error names why
/// each tier could not start.
pub async fn start_tiers(mut cfg: SandboxConfig, tiers: &[Tier]) -> Result<Sandbox, String> {
    let mut why = Vec::new();
    for &tier in tiers {
        cfg.tier = tier;
        match Sandbox::start(cfg.clone()).await {
            Ok(sb) => {
                if !why.is_empty() {
                    tracing::warn!(tier = %tier, earlier = %why.join("; "),
                        "sandbox: running in the {tier} tier");
                }
                return Ok(sb);
            }
            Err(e) => why.push(format!("{tier} tier: {e}")),
        }
    }
    Err(format!("sandbox unavailable: {}", why.join("; ")))
}

/// `sys.version` of the interpreter at `python` (for input records), or why not.
pub fn python_version(python: &std::path::Path) -> String {
    match std::process::Command::new(python)
        .args(["-I", "-S", "-c", "import sys; print(sys.version)"])
        .output()
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => format!("unknown ({} exited with {})", python.display(), o.status),
        Err(e) => format!("unknown ({}: {e})", python.display()),
    }
}
