//! When a slot's zygote prepares its next spare: only once the execution that took the
//! previous one is over and dropped (or a job needs the slot), never while its outcome
//! is still being handled. Real helper, real Python, warm and cold mode.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;
use airlock_sandbox::*;
use common::*;
use serde_json::json;
use std::time::Duration;

/// Host pids of the live processes whose parent is `pid` (a zygote's children are the
/// supervisors of its spares and running executions).
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses. A zombie
        // (an exited supervisor not reaped yet) is not a spare.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().take(2).collect())
            .unwrap_or_default();
        if fields.len() == 2 && fields[0] != "Z" && fields[1].parse::<u32>() == Ok(pid) {
            out.push(child);
        }
    }
    out
}

async fn next_spare_waits_for_the_dropped_execution(cfg: SandboxConfig) {
    let Some(sb) = start(cfg).await else { return };
    let zygote = sb.zygote_pids().await[0];
    wait_until("the first spare", || !children_of(zygote).is_empty()).await;

    let mut ex = sb.run(job("set_result(1)")).await.unwrap();
    assert_eq!(finished(&mut ex).await.result, Some(json!(1)));
    // The spare's supervisor exits with its execution ...
    wait_until("the supervisor's exit", || children_of(zygote).is_empty()).await;
    // ... and while the finished execution is still held, nothing is forked.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        children_of(zygote),
        Vec::<u32>::new(),
        "a spare was prepared before the execution was dropped"
    );
    drop(ex);
    // Dropped: the next spare is prepared without waiting for a job.
    wait_until("a spare after the drop", || !children_of(zygote).is_empty()).await;
    assert_eq!(result(&sb, "set_result(2)").await, json!(2));
}

async fn a_job_does_not_wait_for_the_previous_execution_to_be_dropped(cfg: SandboxConfig) {
    let Some(sb) = start(cfg).await else { return };
    let mut held = sb.run(job("set_result(1)")).await.unwrap();
    assert_eq!(finished(&mut held).await.result, Some(json!(1)));
    // One slot, its last execution still held: the next job asks for a spare itself.
    let next = tokio::time::timeout(Duration::from_secs(10), result(&sb, "set_result(2)"));
    assert_eq!(next.await.expect("the job got a spare"), json!(2));
    drop(held);
    assert_eq!(result(&sb, "set_result(3)").await, json!(3));
}

fn cold(slots: usize) -> SandboxConfig {
    let mut cfg = config(slots);
    cfg.force_cold = true;
    cfg
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_next_spare_waits_for_the_dropped_execution() {
    next_spare_waits_for_the_dropped_execution(config(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_next_spare_waits_for_the_dropped_execution() {
    next_spare_waits_for_the_dropped_execution(cold(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_job_does_not_wait_for_the_previous_drop() {
    a_job_does_not_wait_for_the_previous_execution_to_be_dropped(config(1)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_job_does_not_wait_for_the_previous_drop() {
    a_job_does_not_wait_for_the_previous_execution_to_be_dropped(cold(1)).await;
}
