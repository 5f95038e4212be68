//! Heavy installed packages end to end: a script doing `import pandas; set_result(1)`
//! through the real HTTP API and sandbox, with and without `AIRLOCK_PREIMPORT=pandas`,
//! against `python3 -c "import pandas"` started cold with the same environment on
//! `PYTHONPATH`, measured in the same run. Prints the ratios.
//!
//! Run: `BENCH_FIND_LINKS=/dir/with/wheels cargo bench -p airlock --bench packages`
//! (`pip download -d /dir/with/wheels pandas` fills the directory; without
//! `BENCH_FIND_LINKS` the install uses PyPI through the egress proxy). Other options:
//! `BENCH_MODULE` (default `pandas`), `BENCH_RUNS` (default 30).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Bench {
    http: reqwest::Client,
    base: String,
    key_id: String,
    secret: String,
}

impl Bench {
    async fn start(data_dir: &Path, module: &str, preimport: bool) -> Bench {
        let mut cfg = airlock::config::Config::for_data_dir(data_dir);
        cfg.sandbox_helper = Some(vec![
            env!("CARGO_BIN_EXE_airlock").into(),
            airlock::sandbox::HELPER_ARG.into(),
        ]);
        cfg.memory_mb = 2048;
        cfg.workers = Some(2);
        if let Ok(dir) = std::env::var("BENCH_FIND_LINKS") {
            cfg.pip_find_links = Some(PathBuf::from(dir));
            cfg.pip_index_url = "none".into();
        }
        if preimport {
            cfg.preimport = vec![module.to_string()];
        }
        let app = airlock::app::App::open(cfg).await.expect("airlock starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(airlock::serve(app.router(), listener));
        let http = reqwest::Client::new();
        let setup = http
            .post(format!("{base}/api/admin/setup"))
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
        let admin = |path: &str, body: Value| {
            http.post(format!("{base}{path}"))
                .header("cookie", &cookie)
                .json(&body)
                .send()
        };
        admin(
            "/api/admin/credentials",
            json!({"name": "API_KEY", "value": "sk_bench_0123456789abcdef"}),
        )
        .await
        .unwrap();
        let p: Value = admin(
            "/api/admin/profiles",
            json!({"description": "bench", "credentials": ["API_KEY"]}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let id = p["id"].as_str().unwrap();
        let locked: Value = admin(&format!("/api/admin/profiles/{id}/lock"), json!({}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (key_id, secret) = locked["key"].as_str().unwrap().split_once(':').unwrap();
        Bench {
            http,
            base,
            key_id: key_id.into(),
            secret: secret.into(),
        }
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key_id)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn install(&self, module: &str) -> Duration {
        let t = Instant::now();
        let v: Value = self
            .http
            .post(format!("{}/requirements", self.base))
            .bearer_auth(&self.key_id)
            .json(&json!({"packages": [module]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = v["install_id"]
            .as_str()
            .unwrap_or_else(|| panic!("not accepted: {v}"))
            .to_string();
        loop {
            let v = self.get(&format!("/requirements/{id}")).await;
            match v["status"].as_str() {
                Some("installed") => return t.elapsed(),
                Some("failed") => panic!("install failed: {v}"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn run(&self, script: &str) -> Value {
        let mut body = airlock::ids::signed_body(self.secret.as_bytes(), script);
        body["timeout"] = json!(60);
        let v: Value = self
            .http
            .post(format!("{}/execute", self.base))
            .bearer_auth(&self.key_id)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = v["execution_id"]
            .as_str()
            .unwrap_or_else(|| panic!("not accepted: {v}"))
            .to_string();
        loop {
            let v = self.get(&format!("/executions/{id}?wait=30")).await;
            if matches!(
                v["status"].as_str(),
                Some("completed" | "error" | "timeout")
            ) {
                return v;
            }
        }
    }

    /// p50 of `runs` end-to-end runs after warming every slot.
    async fn measure(&self, script: &str, runs: usize) -> Duration {
        for _ in 0..4 {
            let v = self.run(script).await;
            assert_eq!(v["status"], "completed", "{v}");
        }
        let mut lat = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let v = self.run(script).await;
            lat.push(t.elapsed());
            assert_eq!(v["result"], 1, "{v}");
        }
        p50(lat)
    }
}

fn main() {
    let module = std::env::var("BENCH_MODULE").unwrap_or_else(|_| "pandas".into());
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let script = format!("import {module}\nset_result(1)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // Not under /tmp (even when the checkout is): every sandbox gets its own
        // empty /tmp.
        let target_tmp = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let base = if target_tmp.starts_with("/tmp") {
            std::path::PathBuf::from("/var/tmp")
        } else {
            target_tmp
        };
        let dir = tempfile::Builder::new()
            .prefix("bench-pkgs")
            .tempdir_in(base)
            .unwrap();

        let plain = Bench::start(&dir.path().join("plain"), &module, false).await;
        let took = plain.install(&module).await;
        println!(
            "install   {module} (whole environment)          {:8.1} ms",
            ms(took)
        );
        let without = plain.measure(&script, runs).await;
        drop(plain);

        let warm = Bench::start(&dir.path().join("warm"), &module, true).await;
        warm.install(&module).await;
        let with = warm.measure(&script, runs).await;

        // Cold baseline: a fresh interpreter importing from the same environment.
        let envs = dir.path().join("warm/packages/envs");
        let env_dir = std::fs::read_dir(&envs)
            .unwrap()
            .flatten()
            .next()
            .expect("an environment")
            .path();
        let cold = |_: usize| {
            let t = Instant::now();
            let st = Command::new("/usr/bin/python3")
                .args(["-c", &format!("import {module}")])
                .env("PYTHONPATH", &env_dir)
                .status()
                .expect("python runs");
            assert!(st.success());
            t.elapsed()
        };
        for i in 0..3 {
            let _ = cold(i);
        }
        let cold = p50((0..runs).map(cold).collect());

        println!(
            "baseline  python3 -c \"import {module}\" (cold)   p50 {:8.1} ms",
            ms(cold)
        );
        println!(
            "e2e       import {module}; set_result(1)        p50 {:8.1} ms  (no pre-import)",
            ms(without)
        );
        println!(
            "e2e       same, AIRLOCK_PREIMPORT={module}       p50 {:8.1} ms",
            ms(with)
        );
        println!(
            "ratio     no pre-import / cold                  {:.2}",
            without.as_secs_f64() / cold.as_secs_f64()
        );
        println!(
            "ratio     pre-import / cold                     {:.3}",
            with.as_secs_f64() / cold.as_secs_f64()
        );
    });
}
