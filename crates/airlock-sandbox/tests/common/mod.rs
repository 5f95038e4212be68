//! Shared helpers for the tests that attack the real sandbox (real helper binary, real
//! Python). A test whose kernel lacks a feature prints `SKIPPED: ...` and returns, or
//! fails when `AIRLOCK_TEST_REQUIRE_SANDBOX=1` (set by `.ci/run`).
#![allow(dead_code)]

use airlock_sandbox::*;
use std::collections::BTreeMap;
use std::time::Duration;

pub fn helper() -> Vec<std::ffi::OsString> {
    vec![
        env!("CARGO_BIN_EXE_airlock-sandbox-helper").into(),
        HELPER_ARG.into(),
    ]
}

/// The tier these tests attack: `full` unless `AIRLOCK_TEST_SANDBOX_TIER=container`
/// (`.ci/run` runs the sandbox tests once per tier).
pub fn tier() -> Tier {
    match std::env::var("AIRLOCK_TEST_SANDBOX_TIER").as_deref() {
        Ok("container") => Tier::Container,
        Ok("full") | Err(_) => Tier::Full,
        Ok(other) => panic!("AIRLOCK_TEST_SANDBOX_TIER={other}: use full or container"),
    }
}

pub fn container() -> bool {
    tier() == Tier::Container
}

pub fn config(slots: usize) -> SandboxConfig {
    // Every sandbox of this test process gets uids of its own: without user namespaces
    // (container tier) RLIMIT_NPROC counts every process of a uid, so one test's fork
    // bomb would starve a concurrent test's slot with the same uid.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mut cfg = SandboxConfig::new(helper());
    cfg.slots = slots;
    cfg.tier = tier();
    cfg.uid_base = 2_100_000 + 64 * NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    cfg
}

/// Starts a sandbox, or prints a loud SKIPPED line when a kernel feature is missing.
pub async fn start(cfg: SandboxConfig) -> Option<Sandbox> {
    match Sandbox::start(cfg).await {
        Ok(sb) => Some(sb),
        Err(Error::LayerMissing { layer, detail }) => {
            if std::env::var_os("AIRLOCK_TEST_REQUIRE_SANDBOX").is_some_and(|v| v == "1") {
                panic!("sandbox layer {layer} unavailable, and AIRLOCK_TEST_REQUIRE_SANDBOX=1: {detail}");
            }
            eprintln!("SKIPPED: sandbox layer {layer} unavailable on this kernel: {detail}");
            None
        }
        Err(e) => panic!("sandbox failed to start: {e}"),
    }
}

pub async fn sandbox(slots: usize) -> Option<Sandbox> {
    start(config(slots)).await
}

pub fn job(script: &str) -> Job {
    Job {
        script: script.to_string(),
        settings: BTreeMap::new(),
        timeout: Duration::from_secs(20),
        env: BTreeMap::new(),
        network: false,
        tcp: Vec::new(),
        python_paths: Vec::new(),
    }
}

/// Runs a job to the end; LLM requests are a test failure.
pub async fn run_job(sb: &Sandbox, j: Job) -> Outcome {
    let mut ex = sb.run(j).await.expect("run");
    match ex.next_event().await {
        Event::Finished(o) => o,
        other => panic!("unexpected event {other:?}"),
    }
}

pub async fn run(sb: &Sandbox, script: &str) -> Outcome {
    run_job(sb, job(script)).await
}

/// Runs a script that must complete, returning its result.
pub async fn result(sb: &Sandbox, script: &str) -> serde_json::Value {
    result_of(sb, job(script)).await
}

/// Runs a job that must complete, returning its result.
pub async fn result_of(sb: &Sandbox, j: Job) -> serde_json::Value {
    let o = run_job(sb, j).await;
    assert_eq!(
        o.status,
        OutcomeStatus::Completed,
        "error: {:?}\nstderr: {}",
        o.error,
        String::from_utf8_lossy(&o.stderr)
    );
    o.result.expect("a result")
}

/// Waits up to 10 s for `cond`.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("waited 10 s for {what}");
}

/// The next event, which must be the outcome.
pub async fn finished(ex: &mut Execution) -> Outcome {
    match ex.next_event().await {
        Event::Finished(o) => o,
        other => panic!("unexpected event {other:?}"),
    }
}

/// The next event, which must be an `llm.complete` call; returns its request id.
pub async fn llm_request(ex: &mut Execution) -> String {
    match ex.next_event().await {
        Event::LlmRequest { request_id, .. } => request_id,
        other => panic!("expected an llm.complete call, got {other:?}"),
    }
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// The parent pid of `pid`, while it exists.
pub fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether this test process runs as root (then every slot has a uid of its own).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}
