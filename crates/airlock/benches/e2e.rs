//! End-to-end execution benchmark through the real HTTP API with every sandbox
//! layer on. It prints latency percentiles, throughput, and the ratio against a
//! bare `python3 -I -S -c pass` start measured in the same run.
//!
//! Latency is one client's `set_result(1)` (submit + long-poll to `completed`), with
//! `BENCH_GAP_MS` (default 10) between requests, as an agent's requests are separated
//! by its own work; each request is paired with a bare interpreter start right after
//! it, so both figures see the same machine on a shared host. The same requests back
//! to back (no gap: the previous execution's teardown and the next spare's preparation
//! then share the two cores with the request) are printed too, then throughput with
//! concurrent clients.
//!
//! Run: `cargo bench -p airlock --bench e2e` (options through env: `BENCH_RUNS`
//! (default 200), `BENCH_GAP_MS` (default 10), `BENCH_TOTAL` (default 1000),
//! `BENCH_CLIENTS` (default 8), `BENCH_HELPER` (the `airlock` binary whose sandbox
//! helper runs the scripts; default: this build's), so two builds can be compared in
//! alternating runs), `BENCH_TIERS` (default `full,container`: each sandbox tier in
//! turn, each against its own baseline).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Client {
    http: reqwest::Client,
    base: String,
    key_id: String,
    secret: String,
}

impl Client {
    /// Submits `script` and long-polls to a terminal state; returns the final JSON.
    async fn run(&self, script: &str) -> Value {
        let body = airlock::ids::signed_body(self.secret.as_bytes(), script);
        let resp: Value = self
            .http
            .post(format!("{}/execute", self.base))
            .bearer_auth(&self.key_id)
            .json(&body)
            .send()
            .await
            .expect("submit")
            .json()
            .await
            .expect("submit json");
        let id = resp["execution_id"]
            .as_str()
            .unwrap_or_else(|| panic!("not accepted: {resp}"))
            .to_string();
        loop {
            let v: Value = self
                .http
                .get(format!("{}/executions/{id}?wait=30", self.base))
                .bearer_auth(&self.key_id)
                .send()
                .await
                .expect("poll")
                .json()
                .await
                .expect("poll json");
            if matches!(
                v["status"].as_str(),
                Some("completed" | "error" | "timeout")
            ) {
                return v;
            }
        }
    }
}

fn main() {
    let runs = env_usize("BENCH_RUNS", 200);
    let total = env_usize("BENCH_TOTAL", 1000);
    let clients = env_usize("BENCH_CLIENTS", 8);
    let gap = Duration::from_millis(env_usize("BENCH_GAP_MS", 10) as u64);
    let python = std::env::var("AIRLOCK_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into());

    // A bare interpreter start, the baseline.
    let bare = {
        let python = python.clone();
        move || {
            let t = Instant::now();
            let st = Command::new(&python)
                .args(["-I", "-S", "-c", "pass"])
                .status()
                .expect("python runs");
            assert!(st.success());
            t.elapsed()
        }
    };
    for _ in 0..5 {
        bare();
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tiers = std::env::var("BENCH_TIERS").unwrap_or_else(|_| "full,container".into());
    for tier in tiers.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let mode = match tier {
            "full" => airlock::config::SandboxMode::Strict,
            "container" => airlock::config::SandboxMode::Container,
            other => panic!("BENCH_TIERS: unknown tier {other:?} (full, container)"),
        };
        println!("\n== {tier} tier");
        rt.block_on(bench(mode, &python, &bare, runs, total, clients, gap));
    }
}

async fn bench(
    mode: airlock::config::SandboxMode,
    python: &str,
    bare: &(impl Fn() -> Duration + Clone + Send + 'static),
    runs: usize,
    total: usize,
    clients: usize,
    gap: Duration,
) {
    {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = airlock::config::Config::for_data_dir(dir.path());
        cfg.sandbox = mode;
        cfg.python = python.into();
        cfg.queue_size = 4096;
        let helper =
            std::env::var("BENCH_HELPER").unwrap_or_else(|_| env!("CARGO_BIN_EXE_airlock").into());
        cfg.sandbox_helper = Some(vec![helper.into(), airlock::sandbox::HELPER_ARG.into()]);
        let app = airlock::app::App::open(cfg).await.expect("airlock starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(airlock::serve(app.router(), listener));

        let http = reqwest::Client::builder().build().unwrap();
        let setup = http
            .post(format!("{base_url}/api/admin/setup"))
            .json(&json!({"password": "benchmark password 123"}))
            .send()
            .await
            .unwrap();
        let cookie = setup.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let admin = |m: reqwest::Method, path: &str, body: Value| {
            http.request(m, format!("{base_url}{path}"))
                .header("cookie", &cookie)
                .json(&body)
                .send()
        };
        admin(
            reqwest::Method::POST,
            "/api/admin/credentials",
            json!({"name": "API_KEY", "value": "sk_bench_0123456789abcdef"}),
        )
        .await
        .unwrap();
        let p: Value = admin(
            reqwest::Method::POST,
            "/api/admin/profiles",
            json!({"description": "bench", "credentials": ["API_KEY"]}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let id = p["id"].as_str().unwrap();
        let locked: Value = admin(
            reqwest::Method::POST,
            &format!("/api/admin/profiles/{id}/lock"),
            json!({}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let (key_id, secret) = locked["key"].as_str().unwrap().split_once(':').unwrap();
        let client = std::sync::Arc::new(Client {
            http: http.clone(),
            base: base_url.clone(),
            key_id: key_id.into(),
            secret: secret.into(),
        });

        let layers: Value = http
            .get(format!("{base_url}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        println!("sandbox: {}", layers["sandbox"]);

        for _ in 0..20 {
            let v = client.run("set_result(1)").await;
            assert_eq!(v["status"], "completed", "{v}");
        }
        // Latency, each request paired with a baseline measurement.
        let (mut lat, mut base) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        for _ in 0..runs {
            tokio::time::sleep(gap).await;
            let t = Instant::now();
            let v = client.run("set_result(1)").await;
            lat.push(t.elapsed());
            assert_eq!(v["result"], 1, "{v}");
            tokio::time::sleep(gap).await;
            base.push(tokio::task::spawn_blocking(bare.clone()).await.unwrap());
        }
        lat.sort();
        base.sort();
        let base_p50 = pct(&base, 50.0);
        let (p50, p99) = (pct(&lat, 50.0), pct(&lat, 99.0));

        let mut b2b = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let v = client.run("set_result(1)").await;
            b2b.push(t.elapsed());
            assert_eq!(v["result"], 1, "{v}");
        }
        b2b.sort();
        let (b2b50, b2b99) = (pct(&b2b, 50.0), pct(&b2b, 99.0));
        let mut base_b2b: Vec<Duration> = (0..runs.min(100)).map(|_| bare()).collect();
        base_b2b.sort();
        let base_b2b50 = pct(&base_b2b, 50.0);

        let t = Instant::now();
        let per = total.div_ceil(clients);
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut ok = 0usize;
                for _ in 0..per {
                    if c.run("set_result(1)").await["status"] == "completed" {
                        ok += 1;
                    }
                }
                ok
            }));
        }
        let mut completed = 0;
        for t in tasks {
            completed += t.await.unwrap();
        }
        let elapsed = t.elapsed();
        let submitted = per * clients;

        let ratio = |d: Duration| d.as_secs_f64() / base_p50.as_secs_f64();
        println!("baseline   python3 -I -S -c pass               p50 {:7.2} ms  (n={runs}, paired with the requests)", ms(base_p50));
        println!(
            "e2e        set_result(1) via HTTP, {:>3} ms apart p50 {:7.2} ms  p99 {:7.2} ms  (n={runs})",
            gap.as_millis(),
            ms(p50),
            ms(p99)
        );
        println!(
            "ratio      e2e p50 / baseline p50              {:.2}  (target <= 0.50)",
            ratio(p50)
        );
        println!(
            "back2back  set_result(1) via HTTP, no gap      p50 {:7.2} ms  p99 {:7.2} ms  (ratio {:.2} to bare starts back to back, p50 {:.2} ms)",
            ms(b2b50),
            ms(b2b99),
            b2b50.as_secs_f64() / base_b2b50.as_secs_f64(),
            ms(base_b2b50)
        );
        println!(
            "throughput {clients} clients: {:.1} executions/s  ({completed}/{submitted} completed, {} lost)  (target >= 100/s, 0 lost)",
            completed as f64 / elapsed.as_secs_f64(),
            submitted - completed
        );
        app.state.runner.sandbox().unwrap().shutdown().await;
    }
}
