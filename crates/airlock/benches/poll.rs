//! The poll path: `GET /executions/{id}` of a finished execution, served on a loopback
//! socket and loaded with `wrk -t2 -c32` (Debian's `wrk`), against `GET /health`
//! (the cheapest route: the same listener, router and middleware, no key, no store)
//! measured in the same run, alternating. Prints requests/s of each and the ratio
//! (issue target: the poll ≥ 20,000 requests/s on this machine kind).
//!
//! Run: `cargo bench -p airlock --bench poll` (`BENCH_ROUNDS`, default 3 rounds of
//! `BENCH_SECONDS`, default 5, per route).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a bench fails

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::sandboxed::Sandboxed;
use serde_json::json;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Requests/s `wrk` reached on `url` (with `header`, if any); every answer must be 200.
fn wrk(url: &str, header: Option<&str>, seconds: u64) -> f64 {
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", "-c32", &format!("-d{seconds}s"), "--latency"]);
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    let out = cmd.arg(url).output().expect("wrk (apt install wrk)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx"),
        "answers other than 2xx from {url}: {text}"
    );
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output: {text}"))
}

#[tokio::main]
async fn main() {
    let rounds = env_u64("BENCH_ROUNDS", 3);
    let seconds = env_u64("BENCH_SECONDS", 5);
    let Some(env) = Sandboxed::start_with(|_| {}).await else {
        eprintln!("no sandbox here: nothing measured");
        std::process::exit(1);
    };
    let (_, key) = env
        .locked_profile("poll bench", &[("API_KEY", "sk_bench_0123456789abcdef")])
        .await;
    let v = env.run(&key, "print('hi')\nset_result({'n': 1})").await;
    assert_eq!(v["status"], json!("completed"), "{v}");
    let id = v["execution_id"].as_str().unwrap().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(airlock::serve(env.app.router(), listener));
    let key_id = key.split_once(':').unwrap().0.to_string();
    let poll_url = format!("{base}/executions/{id}");
    let auth = format!("Authorization: Bearer {key_id}");
    let health_url = format!("{base}/health");
    let (mut poll, mut health) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (p, h) = tokio::task::spawn_blocking({
            let (poll_url, auth, health_url) = (poll_url.clone(), auth.clone(), health_url.clone());
            move || {
                (
                    wrk(&poll_url, Some(&auth), seconds),
                    wrk(&health_url, None, seconds),
                )
            }
        })
        .await
        .unwrap();
        poll.push(p);
        health.push(h);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (p, h) = (median(poll), median(health));
    println!(
        "GET /executions/{{id}} (finished), wrk -t2 -c32, median of {rounds} x {seconds} s: {p:.0} requests/s; GET /health {h:.0} requests/s; ratio {:.3} (target: >= 20000 requests/s)",
        p / h
    );
}
