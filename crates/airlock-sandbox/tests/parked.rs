//! A parked execution (paused in `llm.complete`, see `Execution::park`) lets its
//! slot's zygote go and keeps everything else: its processes, its uid, its answer.
//! Dropping it still ends its whole tree, with no zygote left to take it down. Real
//! helper, real Python, warm and cold mode.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

mod common;
use airlock_sandbox::*;
use common::*;
use serde_json::json;

const PAUSES: &str =
    "import os\nr = llm.complete('q')\nset_result({'answer': r, 'uid': os.getuid()})";

/// Two slots, one of them warm.
fn two_slots_one_warm(cold: bool) -> SandboxConfig {
    let mut cfg = config(2);
    cfg.warm_slots = Some(1);
    cfg.force_cold = cold;
    cfg
}

async fn parked_execution_outlives_its_zygote(cold: bool) {
    let Some(sb) = start(two_slots_one_warm(cold)).await else {
        return;
    };
    let zygotes = sb.zygote_pids().await;
    assert_eq!(zygotes.len(), 1, "one warm slot, one zygote");
    let mut a = sb.run(job(PAUSES)).await.unwrap();
    let request = llm_request(&mut a).await;
    a.park();
    wait_until("the parked slot's zygote to go", || !alive(zygotes[0])).await;
    let tree = a.pid().expect("the parked execution's reaper") as u32;
    assert!(alive(tree), "the parked execution died with its zygote");
    // In its place, the free slot starts one in the background.
    let mut warm = Vec::new();
    for _ in 0..1000 {
        warm = sb.zygote_pids().await;
        if !warm.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(warm.len(), 1, "no zygote took the parked one's place");
    assert_ne!(warm[0], zygotes[0]);

    // The other slot runs a job meanwhile.
    let b = result(&sb, "import os\nset_result(os.getuid())").await;
    assert_eq!(sb.zygote_pids().await, warm);

    a.respond_llm(&request, "yes").await.unwrap();
    let o = finished(&mut a).await;
    assert_eq!(o.status, OutcomeStatus::Completed, "{:?}", o.error);
    let r = o.result.unwrap();
    assert_eq!(r["answer"], json!("yes"));
    if is_root() {
        // Each slot is an identity of its own, parked or not.
        assert_ne!(r["uid"], b, "a parked execution shared its uid");
    }
    drop(a);
    // Both slots are free; the parked one has no zygote, and the next job still runs.
    assert_eq!(result(&sb, "set_result(3)").await, json!(3));
    assert_eq!(result(&sb, "set_result(4)").await, json!(4));
}

#[tokio::test(flavor = "multi_thread")]
async fn warm_parked_execution_outlives_its_zygote() {
    parked_execution_outlives_its_zygote(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cold_parked_execution_outlives_its_zygote() {
    parked_execution_outlives_its_zygote(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_parked_execution_ends_its_tree() {
    let Some(sb) = start(two_slots_one_warm(false)).await else {
        return;
    };
    let zygote = sb.zygote_pids().await[0];
    let mut a = sb.run(job(PAUSES)).await.unwrap();
    llm_request(&mut a).await;
    a.park();
    wait_until("the parked slot's zygote to go", || !alive(zygote)).await;
    let reaper = a.pid().expect("the parked execution's reaper") as u32;
    let supervisor = parent_of(reaper).expect("the reaper's parent");
    assert_ne!(supervisor, zygote);
    assert!(alive(reaper) && alive(supervisor));
    // The server lets go of the execution (as when it ends it, or dies): the
    // supervisor sees its status socket close and ends the tree.
    drop(a);
    wait_until("the parked tree to end", || {
        !alive(reaper) && !alive(supervisor)
    })
    .await;
}
