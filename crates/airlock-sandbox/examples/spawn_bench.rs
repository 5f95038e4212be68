//! Per-execution latency of a trivial script (`set_result(1)`) through the real sandbox,
//! against a bare `python3 -I -S -c pass` measured in the same run.
//!
//! `cargo run --release -p airlock-sandbox --example spawn_bench [-- --cold] [--gap-ms=N]`
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use airlock_sandbox::*;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    if is_helper_invocation() {
        unreachable!("the helper re-executes before the runtime starts");
    }
    let cold = std::env::args().any(|a| a == "--cold");
    // `--gap-ms=N`: idle time between sequential runs (a server's requests rarely arrive
    // back to back; the previous execution's teardown then happens in the gap).
    let gap = Duration::from_millis(
        std::env::args()
            .find_map(|a| a.strip_prefix("--gap-ms=").and_then(|v| v.parse().ok()))
            .unwrap_or(0),
    );
    let exe = std::env::current_exe()?;
    let helper = exe.with_file_name("airlock-sandbox-helper");
    let helper = if helper.exists() {
        helper
    } else {
        exe.parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("airlock-sandbox-helper")
    };
    let mut cfg = SandboxConfig::new(vec![helper.into_os_string(), HELPER_ARG.into()]);
    cfg.force_cold = cold;
    let python = cfg.python.clone();
    let t = Instant::now();
    let sb = Sandbox::start(cfg).await?;
    println!(
        "sandbox start ({} slots, mode {}): {:.1} ms",
        sb.zygote_pids().await.len(),
        sb.layers().mode,
        ms(t.elapsed())
    );
    let job = || Job {
        script: "set_result(1)".into(),
        timeout: Duration::from_secs(10),
        ..Default::default()
    };
    for _ in 0..10 {
        let mut ex = sb.run(job()).await?;
        ex.next_event().await;
    }
    let n = 200;
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        let t = Instant::now();
        let mut ex = sb.run(job()).await?;
        match ex.next_event().await {
            Event::Finished(o) if o.status == OutcomeStatus::Completed => {}
            other => panic!("unexpected {other:?}"),
        }
        lat.push(t.elapsed());
    }
    lat.sort();

    // Where a run's time goes: from `run()` to the script's first statement (slot,
    // hand-off to the spare, job frame), and from its last statement to the outcome
    // (final frame, end of both pipes). Wall clock on both sides of the boundary.
    let wall_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as f64)
            .unwrap_or(0.0)
    };
    let (mut start, mut end) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        if !gap.is_zero() {
            tokio::time::sleep(gap).await;
        }
        let t0 = wall_ns();
        let mut ex = sb
            .run(Job {
                script: "import time\nset_result([time.time_ns(), time.time_ns()])".into(),
                timeout: Duration::from_secs(10),
                ..Default::default()
            })
            .await?;
        let Event::Finished(o) = ex.next_event().await else {
            panic!("no outcome")
        };
        let t1 = wall_ns();
        let r: Vec<f64> = serde_json::from_value(o.result.expect("result")).expect("times");
        start.push((r[0] - t0) / 1e6);
        end.push((t1 - r[1]) / 1e6);
    }
    for v in [&mut start, &mut end] {
        v.sort_by(f64::total_cmp);
    }

    let mut base = Vec::with_capacity(50);
    for _ in 0..50 {
        let t = Instant::now();
        let st = std::process::Command::new(&python)
            .args(["-I", "-S", "-c", "pass"])
            .env_clear()
            .status()?;
        assert!(st.success());
        base.push(t.elapsed());
    }
    base.sort();

    // Concurrent throughput over all slots.
    let t = Instant::now();
    let m = 200;
    let mut tasks = Vec::new();
    for _ in 0..m {
        let sb = sb.clone();
        let j = job();
        tasks.push(tokio::spawn(async move {
            let mut ex = sb.run(j).await.unwrap();
            ex.next_event().await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let throughput = m as f64 / t.elapsed().as_secs_f64();

    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    let b50 = percentile(&base, 0.5);
    println!(
        "sandboxed set_result(1), {n} sequential runs (gap {} ms): p50 {:.2} ms  p99 {:.2} ms  min {:.2} ms",
        gap.as_millis(),
        ms(p50),
        ms(p99),
        ms(lat[0])
    );
    println!(
        "bare `{} -I -S -c pass`, 50 runs:          p50 {:.2} ms  p99 {:.2} ms",
        python.display(),
        ms(b50),
        ms(percentile(&base, 0.99))
    );
    println!(
        "ratio sandboxed p50 / bare p50: {:.2}",
        p50.as_secs_f64() / b50.as_secs_f64()
    );
    println!(
        "  run() to the script's first statement:   p50 {:.2} ms  p90 {:.2} ms",
        start[50], start[90]
    );
    println!(
        "  script's last statement to the outcome:  p50 {:.2} ms  p90 {:.2} ms",
        end[50], end[90]
    );
    println!("concurrent throughput ({m} jobs): {throughput:.0} executions/s");
    sb.shutdown().await;
    Ok(())
}
