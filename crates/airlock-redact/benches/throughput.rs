//! Redaction throughput and set-up cost: the canonical matcher (the default
//! options) against the exact-forms matcher (`Options::exact_only`, what
//! Airlock used before), on the same 1 MiB output, in one run.
//!
//! `cargo bench -p airlock-redact --bench throughput`
//!
//! Prints, for 1, 10 and 100 credentials: MB/s of each matcher, their ratio,
//! and the median time to build each matcher.

use std::hint::black_box;
use std::time::{Duration, Instant};

use airlock_redact::{Options, Redactor};

/// Log-like text with numbers, JSON, a base64 blob and a few secrets.
fn output(secrets: &[(String, String)], size: usize) -> Vec<u8> {
    let mut text = String::with_capacity(size + 256);
    let mut i = 0usize;
    while text.len() < size {
        text.push_str("2026-12-02T10:00:00Z INFO request handled in 12 ms path=/api/v1/items?id=");
        text.push_str(&i.to_string());
        text.push_str(" {\"ok\": true, \"user\": \"jane@example.com\", \"total\": 1234.56}\n");
        if i % 50 == 0 {
            text.push_str("payload: U29tZSBvcmRpbmFyeSBiYXNlNjQgdGV4dCB0aGF0IGlzIG5vdCBzZWNyZXQ=\n");
        }
        if i % 1000 == 0 {
            text.push_str(&secrets[i % secrets.len()].1);
            text.push('\n');
        }
        i += 1;
    }
    text.into_bytes()
}

fn secrets(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("SECRET_{i}"), format!("sk_live_{i}_{}Zq9x", "aB3dE".repeat(5))))
        .collect()
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn scan_time(r: &Redactor, input: &[u8]) -> Duration {
    let runs = 9;
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                black_box(r.redact(black_box(input)));
                t.elapsed()
            })
            .collect(),
    )
}

fn build_time(s: &[(String, String)], o: &Options) -> Duration {
    median(
        (0..31)
            .map(|_| {
                let t = Instant::now();
                black_box(Redactor::with_options(s.iter().cloned(), o));
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let size = 1 << 20;
    println!("redaction of a 1 MiB output (median of 9 runs; build: median of 31)");
    println!(
        "{:>7}  {:>12} {:>12} {:>7}  {:>12} {:>12}",
        "secrets", "exact MB/s", "canon MB/s", "ratio", "exact build", "canon build"
    );
    for n in [1, 10, 100] {
        let s = secrets(n);
        let input = output(&s, size);
        let exact = Redactor::with_options(s.iter().cloned(), &Options::exact_only());
        let canon = Redactor::with_options(s.iter().cloned(), &Options::default());
        // Same verdict on this input: every planted value replaced by both.
        let (a, b) = (exact.redact(&input), canon.redact(&input));
        assert_eq!(a.counts, b.counts, "matchers disagree on the planted values");
        let mb = input.len() as f64 / 1e6;
        let te = scan_time(&exact, &input).as_secs_f64();
        let tc = scan_time(&canon, &input).as_secs_f64();
        println!(
            "{n:>7}  {:>12.0} {:>12.0} {:>7.2}  {:>9.1} µs {:>9.1} µs",
            mb / te,
            mb / tc,
            (mb / tc) / (mb / te),
            build_time(&s, &Options::exact_only()).as_secs_f64() * 1e6,
            build_time(&s, &Options::default()).as_secs_f64() * 1e6,
        );
    }
}
