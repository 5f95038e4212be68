//! What input records cost: the same script (10 HTTP requests to a loopback upstream)
//! under three locked profiles that differ only in `record` (`off` / `hashes` /
//! `full`), run in rotating rounds so all see the same machine; once over plain HTTP and once over
//! HTTPS (with `record` on, the proxy intercepts the TLS connection to see the answers;
//! with it off, HTTPS is a tunnel). Printed: the median end-to-end time (submit to
//! completed, through the real router and sandbox) of each, and the ratio (target
//! ≤ 1.10).
//!
//! Run: `cargo bench -p airlock --bench records` (`BENCH_RUNS`, default 30 rounds).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a bench fails

#[path = "../tests/common/mod.rs"]
#[allow(unused)]
mod common;

use std::time::{Duration, Instant};

use serde_json::json;

use common::sandboxed::Sandboxed;
use common::upstream::Answer;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn profile(
    env: &Sandboxed,
    name: &str,
    ca_pem: &str,
    hosts: &serde_json::Value,
    record: &str,
) -> String {
    // The upstream's CA, for the tunnel (record off); an intercepted connection is
    // signed by the instance CA, which the sandbox's bundle holds.
    let (id, key) = env.locked_profile(name, &[("CA_PEM", ca_pem)]).await;
    env.set_hosts(&id, hosts.clone()).await;
    let (s, v) = env
        .admin(
            "PUT",
            &format!("/api/admin/profiles/{id}"),
            Some(json!({ "record": record })),
        )
        .await;
    assert!(s.is_success(), "{v}");
    key
}

#[tokio::main]
async fn main() {
    let (tls, ca_pem) = common::upstream::tls(
        "127.0.0.5",
        "127.0.0.5",
        "records bench CA",
        Answer::Line("tls"),
    )
    .await;
    let plain = common::upstream::http("127.0.0.4", Answer::Line("plain")).await;
    let dir = tempfile::tempdir().unwrap();
    let public = common::sandbox_visible_tempdir("records-bench-ca");
    let bundle = dir.path().join("upstream-ca.pem");
    std::fs::write(&bundle, &ca_pem).unwrap();
    let mut c = common::sandboxed_config(&dir.path().join("data"));
    c.egress_ca_bundle = Some(bundle);
    c.egress_ca_dir = Some(public.path().join("ca"));
    let Some(env) = Sandboxed::start_in(dir, c).await else {
        eprintln!("no sandbox here: nothing measured");
        std::process::exit(1);
    };
    let hosts = json!([
        format!("127.0.0.4:{}", plain.port()),
        format!("127.0.0.5:{}", tls.port())
    ]);
    let modes = ["off", "hashes", "full"];
    let mut keys = Vec::new();
    for m in modes {
        keys.push(profile(&env, &format!("record {m}"), &ca_pem, &hosts, m).await);
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    for (what, url) in [
        ("plain HTTP", format!("http://127.0.0.4:{}/x", plain.port())),
        ("HTTPS", format!("https://127.0.0.5:{}/x", tls.port())),
    ] {
        let script = format!(
            "import ssl, urllib.request\nctx = ssl.create_default_context()\nctx.load_verify_locations(cadata=settings.get('CA_PEM'))\nn = 0\nfor i in range(10):\n    n += len(urllib.request.urlopen('{url}?i=%d' % i, timeout=15, context=ctx).read())\nset_result(n)\n"
        );
        // One of each first, not measured (spares, caches, the first TLS handshakes).
        for key in &keys {
            let v = env.run(key, &script).await;
            assert_eq!(v["status"], json!("completed"), "{v}");
        }
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); keys.len()];
        for i in 0..runs {
            // Each mode in each position equally often.
            for k in 0..keys.len() {
                let m = (i + k) % keys.len();
                let t = Instant::now();
                let v = env.run(&keys[m], &script).await;
                let took = t.elapsed();
                assert_eq!(v["status"], json!("completed"), "{v}");
                times[m].push(took);
            }
        }
        let medians: Vec<Duration> = times.into_iter().map(median).collect();
        let base = medians[0].as_secs_f64();
        for (m, t) in modes.iter().zip(&medians).skip(1) {
            println!(
                "{what}, 10 requests per script, median of {runs}: record off {:.1} ms, record {m} {:.1} ms, ratio {:.3} (target <= 1.10)",
                base * 1e3,
                t.as_secs_f64() * 1e3,
                t.as_secs_f64() / base
            );
        }
    }
}
