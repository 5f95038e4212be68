//! Paused executions and capacity: many scripts paused in `llm.complete` at once must
//! not take the workers from trivial executions. Every layer on, the real sandbox.
//!
//! In one run: the throughput of trivial `set_result(1)` executions with the
//! benchmark's own clients and nothing paused (the baseline), then `BENCH_PAUSED`
//! executions paused at once (`AIRLOCK_MAX_PAUSED` = one more), the private memory of
//! their processes (from `/proc/<pid>/smaps_rollup`: the processes that appeared,
//! less the zygotes and their spares), the same throughput again while they all
//! wait, and the ratio of the two (issue target: >= 0.80, <= 8 MiB per paused
//! execution). Then one more pausing script takes the last pause slot, after which a
//! new execution must get 429, and every paused execution, answered, must complete
//! with its own answer.
//!
//! Run: `cargo bench -p airlock --bench paused` (`BENCH_PAUSED`, default 500;
//! `BENCH_TOTAL`, default 600 trivial executions per throughput round; `BENCH_CLIENTS`,
//! default 8).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a bench fails

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::sandboxed::Sandboxed;
use serde_json::{json, Value};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Every process on the machine, by pid, with its parent.
fn processes() -> BTreeMap<u32, u32> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok());
        if let Some(ppid) = ppid {
            out.insert(pid, ppid);
        }
    }
    out
}

/// (private, proportional) memory of `pid` in KiB, from its smaps_rollup.
fn memory_kib(pid: u32) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
        return (0, 0);
    };
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        field("Private_Clean:") + field("Private_Dirty:"),
        field("Pss:"),
    )
}

/// The machine's `MemAvailable`, in KiB.
fn mem_available_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("MemAvailable in /proc/meminfo")
}

/// Trivial executions with `clients` concurrent clients; executions/s.
async fn throughput(env: &Arc<Sandboxed>, key: &str, total: usize, clients: usize) -> f64 {
    let per = total.div_ceil(clients);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (env, key) = (env.clone(), key.to_string());
        tasks.push(tokio::spawn(async move {
            for _ in 0..per {
                let v = env.run(&key, "set_result(1)").await;
                assert_eq!(v["result"], json!(1), "{v}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    (per * clients) as f64 / t.elapsed().as_secs_f64()
}

/// Polls `id` until its status is `want` (a long-poll returns when the status
/// changes, so the first look does not wait).
async fn wait_status(env: &Sandboxed, key: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    let (_, mut v) = env.poll(key, id, 0).await;
    while v["status"] != want {
        assert!(Instant::now() < deadline, "never reached {want}: {v}");
        v = env.poll(key, id, 1).await.1;
    }
    v
}

#[tokio::main]
async fn main() {
    let paused = env_usize("BENCH_PAUSED", 500);
    let total = env_usize("BENCH_TOTAL", 600);
    let clients = env_usize("BENCH_CLIENTS", 8);
    let Some(env) = Sandboxed::start_with(|c| {
        c.max_paused = paused + 1;
        c.queue_size = 4096;
    })
    .await
    else {
        eprintln!("no sandbox here: nothing measured");
        std::process::exit(1);
    };
    let env = Arc::new(env);
    let (_, key) = env
        .locked_profile("paused bench", &[("API_KEY", "sk_bench_0123456789abcdef")])
        .await;
    println!(
        "workers {}, AIRLOCK_MAX_PAUSED {}, {clients} clients, {total} trivial executions per round",
        env.app.state.runner.limits.concurrency,
        env.app.state.runner.limits.max_paused
    );
    for _ in 0..20 {
        assert_eq!(env.run(&key, "set_result(1)").await["result"], json!(1));
    }
    let before = throughput(&env, &key, total, clients).await;
    println!("throughput, nothing paused:    {before:7.1} executions/s");

    let pids_before: BTreeSet<u32> = processes().into_keys().collect();
    let available_before = mem_available_kib();
    let t = Instant::now();
    let mut ids = Vec::with_capacity(paused);
    for i in 0..paused {
        let script = format!("r = llm.complete('question {i}')\nset_result(r)");
        let (s, _, v) = env.submit(&key, &script, Some(60)).await;
        assert!(s.is_success(), "pausing execution {i} refused: {v}");
        ids.push(v["execution_id"].as_str().unwrap().to_string());
    }
    let mut requests = Vec::with_capacity(paused);
    for id in &ids {
        let v = wait_status(&env, &key, id, "awaiting_llm").await;
        requests.push(v["llm_request"]["request_id"].clone());
    }
    println!(
        "{paused} executions paused in {:.1} s ({:.1} ms each, with a zygote start for each parked slot's replacement)",
        t.elapsed().as_secs_f64(),
        t.elapsed().as_secs_f64() * 1000.0 / paused as f64
    );

    // Their processes: what appeared, less the zygotes and their spares (once the
    // zygotes that took the parked ones' places have started).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fell = available_before.saturating_sub(mem_available_kib());
    let zygotes: BTreeSet<u32> = env
        .app
        .state
        .runner
        .sandbox()
        .unwrap()
        .zygote_pids()
        .await
        .into_iter()
        .collect();
    let now = processes();
    let under_zygote = |mut pid: u32| loop {
        if zygotes.contains(&pid) {
            return true;
        }
        match now.get(&pid) {
            Some(&ppid) if ppid > 1 && ppid != pid => pid = ppid,
            _ => return false,
        }
    };
    let theirs: Vec<u32> = now
        .keys()
        .copied()
        .filter(|p| !pids_before.contains(p) && !under_zygote(*p))
        .collect();
    // By role: the supervisor's parent is not one of them, the reaper's is the
    // supervisor, the script's the reaper.
    let ours: BTreeSet<u32> = theirs.iter().copied().collect();
    let depth = |mut pid: u32| {
        let mut d = 0;
        while let Some(&ppid) = now.get(&pid).filter(|p| ours.contains(p)) {
            d += 1;
            pid = ppid;
        }
        d
    };
    let mut roles: BTreeMap<usize, (u64, u64, u64)> = BTreeMap::new();
    let (mut private, mut pss) = (0, 0);
    for &p in &theirs {
        let (x, y) = memory_kib(p);
        private += x;
        pss += y;
        let r = roles.entry(depth(p).min(3)).or_default();
        *r = (r.0 + 1, r.1 + x, r.2 + y);
    }
    for (d, (n, x, y)) in &roles {
        let role = ["supervisor", "reaper", "script", "script's children"][*d];
        println!(
            "  {role:<17} {n:>4} processes, private {:6.2} MiB, PSS {:6.2} MiB each",
            *x as f64 / 1024.0 / *n as f64,
            *y as f64 / 1024.0 / *n as f64
        );
    }
    println!(
        "memory of the paused executions: {} processes, private {:.1} MiB in all, {:.2} MiB per paused execution (PSS {:.2} MiB); {} zygotes alive  (target <= 8 MiB private)",
        theirs.len(),
        private as f64 / 1024.0,
        private as f64 / 1024.0 / paused as f64,
        pss as f64 / 1024.0 / paused as f64,
        zygotes.len()
    );
    println!(
        "  the machine's MemAvailable fell by {:.2} MiB per paused execution (the whole machine: noisy)",
        fell as f64 / 1024.0 / paused as f64
    );

    let during = throughput(&env, &key, total, clients).await;
    println!("throughput, {paused} paused:     {during:7.1} executions/s");
    println!(
        "ratio      paused / nothing paused {:.2}  (target >= 0.80)",
        during / before
    );

    // The last pause slot taken: new executions are refused.
    let (s, _, v) = env
        .submit(&key, "set_result(llm.complete('last'))", Some(60))
        .await;
    assert!(s.is_success(), "the last pausing execution refused: {v}");
    let last = v["execution_id"].as_str().unwrap().to_string();
    let v = wait_status(&env, &key, &last, "awaiting_llm").await;
    ids.push(last);
    requests.push(v["llm_request"]["request_id"].clone());
    let (s, _, v) = env.submit(&key, "set_result(1)", None).await;
    assert_eq!(s.as_u16(), 429, "every pause slot taken, yet accepted: {v}");

    let t = Instant::now();
    for (i, (id, request)) in ids.iter().zip(&requests).enumerate() {
        let body = json!({"response": format!("answer {i}"), "request_id": request});
        let (s, v) = env
            .agent(
                &key,
                "POST",
                &format!("/executions/{id}/respond"),
                Some(body),
            )
            .await;
        assert!(s.is_success(), "{v}");
    }
    for (i, id) in ids.iter().enumerate() {
        let v = wait_status(&env, &key, id, "completed").await;
        assert_eq!(v["result"], json!(format!("answer {i}")), "{v}");
    }
    println!(
        "{} answered and completed in {:.1} s, each with its own answer",
        ids.len(),
        t.elapsed().as_secs_f64()
    );
    env.app.state.runner.sandbox().unwrap().shutdown().await;
}
