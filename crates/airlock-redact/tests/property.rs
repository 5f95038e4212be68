//! Property-style tests with a small deterministic PRNG (no proptest).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use airlock_redact::{Piece, RedactionCount, Redactor, Stream};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// Secret values: lowercase, digits, punctuation, space, non-ASCII. Never
/// uppercase, so markers and noise cannot contain a value substring.
const VALUE_CHARS: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'k', 'm', 'n', 'p', 'q', 'r', 's', 't', 'w', 'x', 'z',
    '0', '1', '2', '3', '5', '7', '9', '-', '_', '.', '~', '/', '+', '=', '?', '&', '%', '"', '\\',
    ' ', '!', '*', '(', '@', '#', 'é', 'ü', '€', '😀',
];

/// Surrounding text: uppercase and a few separators, disjoint from values.
const NOISE_CHARS: &[char] = &[
    'A', 'B', 'G', 'H', 'K', 'M', 'Q', 'X', 'Y', 'Z', ',', ';', ':', '\n', '|', '<', '>', 'Ω',
];

fn value(rng: &mut Rng) -> String {
    let n = rng.range(4, 40);
    (0..n).map(|_| *rng.pick(VALUE_CHARS)).collect()
}

fn noise(rng: &mut Rng, max: usize) -> String {
    let n = rng.range(0, max);
    (0..n).map(|_| *rng.pick(NOISE_CHARS)).collect()
}

fn pct(v: &str, keep: &str, plus: bool, lower: bool) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() && !keep.is_empty() || keep.as_bytes().contains(&b) {
            out.push(b as char);
        } else if b == b' ' && plus {
            out.push('+');
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn json_ascii(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut u = [0u16; 2];
                for unit in c.encode_utf16(&mut u) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Standalone encodings of `v`: (label, encoded, compare case-insensitively).
fn encodings(v: &str) -> Vec<(&'static str, String, bool)> {
    let h = hex::encode(v);
    let mixed: String = h
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 3 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let json = serde_json::to_string(v).unwrap();
    let json = json[1..json.len() - 1].to_string();
    vec![
        ("raw", v.to_string(), false),
        ("reversed", v.chars().rev().collect(), false),
        ("hex", h.clone(), true),
        ("HEX", h.to_uppercase(), true),
        ("hex-mixed", mixed, true),
        ("b64", STANDARD.encode(v), false),
        ("b64-nopad", STANDARD_NO_PAD.encode(v), false),
        ("b64url", URL_SAFE.encode(v), false),
        ("b64url-nopad", URL_SAFE_NO_PAD.encode(v), false),
        ("pct-all", pct(v, "", false, false), true),
        ("pct-all-lower", pct(v, "", false, true), true),
        ("quote", pct(v, "_.-~/", false, false), true),
        ("quote-lower", pct(v, "_.-~/", false, true), true),
        ("quote_plus", pct(v, "_.-~", true, false), true),
        ("json", json, false),
        ("json-ascii", json_ascii(v), false),
    ]
}

fn contains(hay: &[u8], needle: &[u8], ci: bool) -> bool {
    hay.windows(needle.len()).any(|w| {
        if ci {
            w.eq_ignore_ascii_case(needle)
        } else {
            w == needle
        }
    })
}

fn total(counts: &[RedactionCount]) -> u64 {
    counts.iter().map(|c| c.count).sum()
}

#[test]
fn every_form_of_random_values_is_removed() {
    let mut rng = Rng(0x5EED_0001);
    for iter in 0..400 {
        let v = value(&mut rng);
        let r = Redactor::new([("SECRET", v.as_str())]);
        let encs = encodings(&v);
        for (label, enc, _) in &encs {
            let reps = rng.range(1, 3);
            let mut text = noise(&mut rng, 30);
            for _ in 0..reps {
                text.push_str(enc);
                text.push(' ');
                text.push_str(&noise(&mut rng, 30));
            }
            let out = r.redact(text.as_bytes());
            for (l2, e2, ci) in &encs {
                assert!(
                    !contains(&out.bytes, e2.as_bytes(), *ci),
                    "iter {iter}: {l2} survived after inserting {label}"
                );
            }
            // No 4-byte window of the raw value survives.
            for w in v.as_bytes().windows(4) {
                assert!(!contains(&out.bytes, w, false), "iter {iter} {label}");
            }
            assert_eq!(total(&out.counts), reps as u64, "iter {iter} {label}");
            assert_eq!(
                out.counts,
                vec![RedactionCount {
                    name: "SECRET".into(),
                    count: reps as u64,
                    partial: 0,
                }]
            );
        }
    }
}

#[test]
fn base64_any_alignment_removes_every_dependent_char() {
    let mut rng = Rng(0x5EED_0002);
    for iter in 0..300 {
        let v = value(&mut rng);
        let r = Redactor::new([("V", v.as_str())]);
        let pre: Vec<u8> = (0..rng.range(0, 9)).map(|_| rng.next() as u8).collect();
        let post: Vec<u8> = (0..rng.range(0, 9)).map(|_| rng.next() as u8).collect();
        let mut data = pre.clone();
        data.extend_from_slice(v.as_bytes());
        data.extend_from_slice(&post);
        let engines = [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD];
        let enc = engines[iter % 4].encode(&data);
        let out = r.redact_str(&format!("data: {enc}\n")).0;
        let first = pre.len() * 8 / 6;
        let last = ((pre.len() + v.len()) * 8).div_ceil(6);
        let mut rest = &enc[last..];
        if post.is_empty() {
            rest = rest.trim_start_matches('=');
        }
        let expect = format!("data: {}[REDACTED:V]{}\n", &enc[..first], rest);
        assert_eq!(out, expect, "iter {iter}");
    }
}

/// Random text with forms of several secrets, returning the text and how
/// many insertions were made per secret index.
fn mixed_text(rng: &mut Rng, values: &[String]) -> (String, Vec<u64>) {
    let mut text = noise(rng, 20);
    let mut per = vec![0u64; values.len()];
    for _ in 0..rng.range(0, 12) {
        let i = rng.below(values.len());
        let encs = encodings(&values[i]);
        let (_, enc, _) = rng.pick(&encs);
        text.push_str(enc);
        text.push(' ');
        text.push_str(&noise(rng, 20));
        per[i] += 1;
    }
    (text, per)
}

fn secrets(rng: &mut Rng) -> Vec<String> {
    let n = rng.range(1, 5);
    let mut vs: Vec<String> = Vec::new();
    while vs.len() < n {
        let v = value(rng);
        // Keep values independent so per-name counts are exact.
        if vs
            .iter()
            .all(|o| !o.contains(v.as_str()) && !v.contains(o.as_str()))
        {
            vs.push(v);
        }
    }
    vs
}

#[test]
fn several_secrets_exact_counts() {
    let mut rng = Rng(0x5EED_0003);
    for iter in 0..200 {
        let vs = secrets(&mut rng);
        let r = Redactor::new(
            vs.iter()
                .enumerate()
                .map(|(i, v)| (format!("S{i}"), v.clone())),
        );
        let (text, per) = mixed_text(&mut rng, &vs);
        let out = r.redact(text.as_bytes());
        for v in &vs {
            for w in v.as_bytes().windows(4) {
                assert!(!contains(&out.bytes, w, false), "iter {iter}");
            }
        }
        let expect: Vec<RedactionCount> = per
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| RedactionCount {
                name: format!("S{i}"),
                count: c,
                partial: 0,
            })
            .collect();
        assert_eq!(out.counts, expect, "iter {iter}");
    }
}

/// Names made of letters that no value contains, so that any value character
/// left in the output (markers aside) is a leak.
fn letter_name(i: usize) -> String {
    format!("S{}", (b'A' + i as u8) as char)
}

fn without_markers(out: &str) -> String {
    let mut rest = out.to_string();
    while let Some(a) = rest.find("[REDACTED:") {
        let b = a + rest[a..].find(']').expect("marker closes");
        rest.replace_range(a..=b, "|");
    }
    rest
}

#[test]
fn values_split_between_two_streams_are_removed_from_both() {
    let mut rng = Rng(0x5EED_0004);
    for iter in 0..300 {
        let vs = secrets(&mut rng);
        let r = Redactor::new(
            vs.iter()
                .enumerate()
                .map(|(i, v)| (letter_name(i), v.clone())),
        );
        let mut text = noise(&mut rng, 20);
        for _ in 0..rng.range(1, 6) {
            text.push_str(rng.pick(&vs).as_str());
            text.push_str(&noise(&mut rng, 20));
        }
        // Cut the text into pieces at random char boundaries, each written to
        // stream 0 or 1, and remember the order.
        let chars: Vec<char> = text.chars().collect();
        let mut streams = [String::new(), String::new()];
        let mut order = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let n = rng.range(1, 6).min(chars.len() - i);
            let s = rng.below(2);
            let piece: String = chars[i..i + n].iter().collect();
            order.push(Piece {
                stream: s,
                len: piece.len(),
            });
            streams[s].push_str(&piece);
            i += n;
        }
        let outs = r.redact_outputs(
            &[streams[0].as_bytes(), streams[1].as_bytes()]
                .map(|bytes| Stream { bytes, cut: false }),
            &order,
            1 << 20,
        );
        for (k, (out, cut)) in outs.iter().enumerate() {
            assert!(!cut);
            let s = std::str::from_utf8(&out.bytes).unwrap();
            let left = without_markers(s);
            assert!(
                !left.chars().any(|c| VALUE_CHARS.contains(&c)),
                "iter {iter} stream {k}: a value character survived in {s:?} (from {:?})",
                streams[k]
            );
        }
    }
}

#[test]
fn truncation_never_leaves_partial_values() {
    let mut rng = Rng(0x5EED_0006);
    let mut fragments_removed = 0;
    for iter in 0..200 {
        let vs = secrets(&mut rng);
        let r = Redactor::new(
            vs.iter()
                .enumerate()
                .map(|(i, v)| (format!("S{i}"), v.clone())),
        );
        let (text, _) = mixed_text(&mut rng, &vs);
        // Half the time, simulate an upstream capture limit that cut the
        // input itself, possibly inside an encoded value.
        let text = if iter % 2 == 0 {
            let mut cut = rng.range(0, text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text[..cut].to_string()
        } else {
            text
        };
        let full = r.redact(text.as_bytes());
        let all_forms: Vec<(String, bool)> = vs
            .iter()
            .flat_map(|v| encodings(v.as_str()))
            .map(|(_, e, ci)| (e, ci))
            .collect();
        for _ in 0..10 {
            let cap = rng.range(0, full.bytes.len() + 5);
            let (t, cut) = r.redact_truncate(text.as_bytes(), cap);
            assert!(t.bytes.len() <= cap, "iter {iter}");
            assert_eq!(cut, full.bytes.len() > cap);
            let s = std::str::from_utf8(&t.bytes).expect("utf-8 boundary");
            // Either a prefix of the full redaction, or such a prefix plus
            // one marker replacing a trailing fragment.
            if s.len() < full.bytes.len().min(cap) {
                fragments_removed += 1;
            }
            let body = match s.rfind("[REDACTED:") {
                Some(m) if s.ends_with(']') && !full.bytes.starts_with(s.as_bytes()) => &s[..m],
                _ => s,
            };
            assert!(
                full.bytes.starts_with(body.as_bytes()),
                "iter {iter} cap {cap}"
            );
            // No marker is cut.
            let opens = s.matches("[REDACTED:").count();
            let closes = s.matches(']').count();
            assert_eq!(opens, closes, "iter {iter} cap {cap}: {s}");
            // No trailing fragment (>= 4 bytes) of any form.
            let tail_start = body.rfind(']').map_or(0, |i| i + 1);
            let tail = &body.as_bytes()[tail_start..];
            for (form, ci) in &all_forms {
                let f = form.as_bytes();
                for l in 4..=tail.len().min(f.len()) {
                    let frag = &tail[tail.len() - l..];
                    let same = if *ci {
                        frag.eq_ignore_ascii_case(&f[..l])
                    } else {
                        frag == &f[..l]
                    };
                    assert!(!same, "iter {iter} cap {cap}: tail fragment left");
                }
            }
            // Counts match the markers present.
            assert_eq!(total(&t.counts) as usize, opens, "iter {iter} cap {cap}");
        }
    }
    // The tail check was actually exercised.
    assert!(fragments_removed > 20, "{fragments_removed}");
}

#[test]
fn debug_output_never_contains_values() {
    let mut rng = Rng(0x5EED_0007);
    for _ in 0..50 {
        let vs = secrets(&mut rng);
        let r = Redactor::new(
            vs.iter()
                .enumerate()
                .map(|(i, v)| (format!("S{i}"), v.clone())),
        );
        let d = format!("{r:?}");
        for v in &vs {
            for w in v.as_bytes().windows(4) {
                assert!(!contains(d.as_bytes(), w, false), "{d}");
            }
        }
    }
}
