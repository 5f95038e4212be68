use airlock_redact::{Options, Redactor};
fn main() {
    let canon = std::env::args().nth(1).as_deref() == Some("canon");
    let s: Vec<(String, String)> = (0..10).map(|i| (format!("S{i}"), format!("sk_live_{i}_{}Zq9x", "aB3dE".repeat(5)))).collect();
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 1 << 20 {
        text.push_str("2026-12-02T10:00:00Z INFO request handled in 12 ms path=/api/v1/items?id=");
        text.push_str(&i.to_string());
        text.push_str(" {\"ok\": true, \"user\": \"jane@example.com\", \"total\": 1234.56}\n");
        i += 1;
    }
    let o = if canon { Options::default() } else { Options::exact_only() };
    let r = Redactor::with_options(s, &o);
    let t = std::time::Instant::now();
    for _ in 0..30 { std::hint::black_box(r.redact(text.as_bytes())); }
    eprintln!("{:.0} MB/s", 30.0 * text.len() as f64 / 1e6 / t.elapsed().as_secs_f64());
}
