//! Redaction throughput and set-up cost, in one run, on the same 1 MiB of
//! log-like output:
//!
//! * `before`: the matcher Airlock used before the canonical one — two
//!   Aho-Corasick automata (case-sensitive and ASCII-case-insensitive,
//!   contiguous NFA, overlapping search) over the exact forms of each value;
//! * `exact`: this crate with `Options::exact_only()` (the same forms, the
//!   q-gram matcher);
//! * `canonical`: this crate with the default options (canonical view,
//!   partial runs, compressed blobs).
//!
//! `cargo bench -p airlock-redact --bench throughput`
//!
//! Prints MB/s of each, the canonical matcher's ratio to `before`, and the
//! median time to build each matcher (the per-execution set-up), for 1, 10
//! and 100 credentials.
#![allow(clippy::expect_used)] // a benchmark that cannot build its baseline stops

use std::hint::black_box;
use std::time::{Duration, Instant};

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use airlock_redact::{exact_forms_for_benchmark, Options, Redactor};

/// Log-like text with numbers, JSON, a base64 blob and a few secrets.
fn output(secrets: &[(String, String)], size: usize) -> Vec<u8> {
    let mut text = String::with_capacity(size + 256);
    let mut i = 0usize;
    while text.len() < size {
        text.push_str("2026-12-02T10:00:00Z INFO request handled in 12 ms path=/api/v1/items?id=");
        text.push_str(&i.to_string());
        text.push_str(" {\"ok\": true, \"user\": \"jane@example.com\", \"total\": 1234.56}\n");
        if i.is_multiple_of(50) {
            text.push_str(
                "payload: U29tZSBvcmRpbmFyeSBiYXNlNjQgdGV4dCB0aGF0IGlzIG5vdCBzZWNyZXQ=\n",
            );
        }
        if i.is_multiple_of(1000) {
            text.push_str(&secrets[i % secrets.len()].1);
            text.push('\n');
        }
        i += 1;
    }
    text.into_bytes()
}

fn secrets(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            (
                format!("SECRET_{i}"),
                format!("sk_live_{i}_{}Zq9x", "aB3dE".repeat(5)),
            )
        })
        .collect()
}

/// The previous matcher: both automata, every overlapping match, merged.
struct Before {
    automata: Vec<AhoCorasick>,
}

impl Before {
    fn new(secrets: &[(String, String)]) -> Before {
        let mut cs: Vec<Vec<u8>> = Vec::new();
        let mut ci: Vec<Vec<u8>> = Vec::new();
        for (_, v) in secrets {
            for (bytes, insensitive) in exact_forms_for_benchmark(v) {
                if insensitive {
                    ci.push(bytes)
                } else {
                    cs.push(bytes)
                }
            }
        }
        let build = |pats: &[Vec<u8>], insensitive: bool| {
            AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .ascii_case_insensitive(insensitive)
                .build(pats)
                .expect("automaton")
        };
        Before {
            automata: vec![build(&cs, false), build(&ci, true)],
        }
    }

    /// Replaced spans (merged), as the old scan produced them.
    fn scan(&self, input: &[u8]) -> usize {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for ac in &self.automata {
            for m in ac.find_overlapping_iter(input) {
                spans.push((m.start(), m.end()));
            }
        }
        spans.sort_unstable();
        let mut merged = 0;
        let mut end = 0;
        for (s, e) in spans {
            if s >= end {
                merged += 1;
            }
            end = end.max(e);
        }
        merged
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect(),
    )
}

fn main() {
    let size = 1 << 20;
    println!("redaction of 1 MiB of log output: MB/s (median of 9 runs), build µs (median of 31)");
    println!(
        "{:>7}  {:>8} {:>8} {:>10} {:>6}   {:>8} {:>8} {:>10}",
        "secrets", "before", "exact", "canonical", "ratio", "before", "exact", "canonical"
    );
    for n in [1, 10, 100] {
        let s = secrets(n);
        let input = output(&s, size);
        let before = Before::new(&s);
        let exact = Redactor::with_options(s.iter().cloned(), &Options::exact_only());
        let canon = Redactor::with_options(s.iter().cloned(), &Options::default());
        // Same verdict on this input: every planted value replaced by each.
        let planted = exact.redact(&input).counts;
        assert_eq!(canon.redact(&input).counts, planted, "matchers disagree");
        let total: u64 = planted.iter().map(|c| c.count).sum();
        assert_eq!(
            before.scan(&input) as u64,
            total,
            "the old matcher disagrees"
        );

        let mb = input.len() as f64 / 1e6;
        let rate = |d: Duration| mb / d.as_secs_f64();
        let t_before = time(9, || {
            black_box(before.scan(black_box(&input)));
        });
        let t_exact = time(9, || {
            black_box(exact.redact(black_box(&input)));
        });
        let t_canon = time(9, || {
            black_box(canon.redact(black_box(&input)));
        });
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let b_before = time(31, || {
            black_box(Before::new(&s));
        });
        let b_exact = time(31, || {
            black_box(Redactor::with_options(
                s.iter().cloned(),
                &Options::exact_only(),
            ));
        });
        let b_canon = time(31, || {
            black_box(Redactor::with_options(
                s.iter().cloned(),
                &Options::default(),
            ));
        });
        println!(
            "{n:>7}  {:>8.0} {:>8.0} {:>10.0} {:>6.2}   {:>8.1} {:>8.1} {:>10.1}",
            rate(t_before),
            rate(t_exact),
            rate(t_canon),
            t_before.as_secs_f64() / t_canon.as_secs_f64(),
            us(b_before),
            us(b_exact),
            us(b_canon),
        );
    }
    println!("ratio: canonical throughput / before throughput (targets: canonical ≥ 200 MB/s at 10 secrets, build < 100 µs)");
}
