//! The sealed-PostgreSQL forwarder against a direct connection, in one run, against a
//! real PostgreSQL (started here, as the database tests do) with psycopg 3 from the
//! host's Python.
//!
//! Direct: psycopg to the server over TLS (`sslmode=verify-full`, the test CA), SCRAM
//! with the real password. Forwarded: psycopg to the forwarder's listener on loopback
//! with the placeholder, the forwarder signing in upstream over verified TLS with
//! SCRAM. Printed: the median connection setup and the median `SELECT 1` round trip
//! (after setup) of each, alternating direct and forwarded rounds so both see the same
//! machine, and the ratios (targets: setup ≤ 2×, round trip ≤ 1.3×).
//!
//! Run: `cargo bench -p airlock --bench postgres` (`BENCH_CONNECTS`, default 40;
//! `BENCH_QUERIES`, default 3000; `BENCH_TLS=disable` measures both paths without TLS
//! to the server; `BENCH_TCP_SPIN_US`, default 100 as `AIRLOCK_TCP_SPIN_US`, the
//! relay's spin after traffic, `0` for none).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a bench fails

#[path = "../tests/common/mod.rs"]
#[allow(unused)]
mod common;

use std::process::Command;
use std::sync::Arc;

use common::postgres::{psycopg_dir, Postgres};

const PASSWORD: &str = "bench-report-password-2208";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const MEASURE: &str = r#"
import json, statistics, sys, time
import psycopg
direct, forwarded, connects, queries = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def setup(dsn):
    t = time.perf_counter()
    c = psycopg.connect(dsn, autocommit=True)
    took = time.perf_counter() - t
    c.close()
    return took
def round_trips(dsn, n):
    out = []
    with psycopg.connect(dsn, autocommit=True) as c:
        cur = c.cursor()
        for _ in range(200):
            cur.execute("SELECT 1")
        for _ in range(n):
            t = time.perf_counter()
            cur.execute("SELECT 1")
            cur.fetchone()
            out.append(time.perf_counter() - t)
    return out
res = {"setup": {"direct": [], "forwarded": []}, "query": {"direct": [], "forwarded": []}}
for i in range(connects):
    for name, dsn in (("direct", direct), ("forwarded", forwarded)) if i % 2 == 0 else (("forwarded", forwarded), ("direct", direct)):
        res["setup"][name].append(setup(dsn))
for i in range(10):
    for name, dsn in (("direct", direct), ("forwarded", forwarded)) if i % 2 == 0 else (("forwarded", forwarded), ("direct", direct)):
        res["query"][name].extend(round_trips(dsn, queries // 10))
print(json.dumps({k: {n: statistics.median(v) for n, v in d.items()} for k, d in res.items()}))
"#;

#[tokio::main]
async fn main() {
    let Some(pg) = Postgres::start() else {
        eprintln!("no PostgreSQL here: nothing measured");
        std::process::exit(1);
    };
    pg.sql("postgres", "CREATE DATABASE shop");
    pg.sql(
        "shop",
        &format!("CREATE ROLE report LOGIN PASSWORD '{PASSWORD}'"),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &pg.ca_pem).unwrap();
    let tls = airlock_egress::EgressTls::from_pem(
        airlock_egress::tls::CaMaterial::generate().unwrap(),
        Some(&ca_path),
    )
    .unwrap();
    let placeholder = "airlock-sealed:SHOP_DB:benchplaceholder0123456789";
    let plain = std::env::var("BENCH_TLS").as_deref() == Ok("disable");
    let spin_us = env_usize("BENCH_TCP_SPIN_US", 100);
    let login = Arc::new(airlock_egress::PgLogin {
        credential: "SHOP_DB".into(),
        user: "report".into(),
        database: "shop".into(),
        password: PASSWORD.into(),
        placeholder: placeholder.into(),
        tls: if plain {
            airlock_egress::PgTls::Disable
        } else {
            airlock_egress::PgTls::VerifyFull
        },
        read_only: false,
    });
    let dest =
        airlock_egress::TcpDestination::parse(&format!("tcp://localhost:{}", pg.port)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fwd_port = listener.local_addr().unwrap().port();
    let cfg = airlock_egress::EgressConfig {
        record: airlock_egress::Record::Off,
        replay: None,
        policy: airlock_egress::Policy::Allow(Vec::new()),
        limits: airlock_egress::EgressLimits {
            max_log_rows: u64::MAX,
            tcp_spin: std::time::Duration::from_micros(spin_us as u64),
            ..Default::default()
        },
        hook: Arc::new(airlock_egress::NoHook),
        tls: Some(Arc::new(tls)),
        tcp: vec![airlock_egress::TcpRoute {
            dest,
            logins: vec![login],
        }],
    };
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let session = airlock_egress::Session::start(
        cfg,
        airlock_egress::Listeners {
            proxy,
            tcp: vec![Ok(listener)],
        },
    );
    let (_stop, mut events) = session.split();
    // Drain the log as the server would.
    tokio::spawn(async move { while events.recv().await.is_some() {} });

    let direct = if plain {
        format!(
            "postgresql://report:{PASSWORD}@localhost:{}/shop?sslmode=disable",
            pg.port
        )
    } else {
        format!(
            "postgresql://report:{PASSWORD}@localhost:{}/shop?sslmode=verify-full&sslrootcert={}",
            pg.port,
            ca_path.display()
        )
    };
    let forwarded = format!(
        "postgresql://report:{}@127.0.0.1:{fwd_port}/shop?sslmode=disable",
        placeholder.replace(':', "%3A")
    );
    let connects = env_usize("BENCH_CONNECTS", 40);
    let queries = env_usize("BENCH_QUERIES", 3000);
    let psycopg = psycopg_dir();
    let cpu_before = cpu_seconds();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg("-c")
            .arg(MEASURE)
            .args([
                &direct,
                &forwarded,
                &connects.to_string(),
                &queries.to_string(),
            ])
            .env("PYTHONPATH", psycopg)
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "measuring failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ms = |k: &str, n: &str| v[k][n].as_f64().unwrap() * 1000.0;
    let (sd, sf) = (ms("setup", "direct"), ms("setup", "forwarded"));
    let (qd, qf) = (ms("query", "direct"), ms("query", "forwarded"));
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "sealed PostgreSQL forwarder vs direct (median, {connects} connections, {queries} queries each, {}, relay spin {spin_us} us)",
        if plain { "no TLS to the server" } else { "TLS to the server" }
    );
    println!(
        "  connection setup (SCRAM):  direct {sd:.2} ms, forwarded {sf:.2} ms, ratio {:.2} (target <= 2.0)",
        sf / sd
    );
    println!(
        "  SELECT 1 round trip:       direct {:.1} us, forwarded {:.1} us, ratio {:.2} (target <= 1.3)",
        qd * 1000.0,
        qf * 1000.0,
        qf / qd
    );
    println!(
        "  forwarder CPU over the run: {cpu:.2} s ({:.1} us per forwarded query)",
        cpu * 1e6 / (queries + 200 * 10) as f64
    );
}

/// User + system CPU of this process (the forwarder) so far, from /proc.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which may hold spaces): state is field 3.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}
