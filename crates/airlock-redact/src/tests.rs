use super::*;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

fn r1(name: &str, value: &str) -> Redactor {
    Redactor::new([(name, value)])
}

fn red(r: &Redactor, s: &str) -> String {
    r.redact_str(s).0
}

fn count(name: &str, count: u64) -> RedactionCount {
    RedactionCount {
        name: name.to_string(),
        count,
    }
}

#[test]
fn raw_and_counts() {
    let r = r1("STRIPE_KEY", "sk_live_abc123");
    let (out, counts) = r.redact_str("a sk_live_abc123 b sk_live_abc123sk_live_abc123 c");
    assert_eq!(
        out,
        "a [REDACTED:STRIPE_KEY] b [REDACTED:STRIPE_KEY][REDACTED:STRIPE_KEY] c"
    );
    assert_eq!(counts, vec![count("STRIPE_KEY", 3)]);
    let (out, counts) = r.redact_str("nothing here");
    assert_eq!(out, "nothing here");
    assert!(counts.is_empty());
}

#[test]
fn short_values_skipped() {
    let r = Redactor::new([("A", "abc"), ("B", ""), ("C", "abcd"), ("D", "é€")]);
    assert_eq!(r.skipped(), vec!["A", "B", "D"]);
    assert_eq!(red(&r, "abc abcd"), "abc [REDACTED:C]");
    assert!(!r.is_empty());
    let e = Redactor::new([("A", "ab")]);
    assert!(e.is_empty());
    assert_eq!(e.redact(b"ab\xff").bytes, b"ab\xff");
    let none: Vec<(String, String)> = Vec::new();
    assert!(Redactor::new(none).is_empty());
}

#[test]
fn debug_never_prints_values() {
    let r = Redactor::new([("TOKEN", "hunter2-secret"), ("PIN", "12")]);
    let d = format!("{r:?} {:?}", r.stream());
    assert!(d.contains("TOKEN=***"), "{d}");
    assert!(!d.contains("hunter2"), "{d}");
    assert!(!d.contains("12"), "{d}");
    let mut s = r.stream();
    s.push(b"xx hunter2-sec");
    let d = format!("{s:?}");
    assert!(!d.contains("hunter"), "{d}");
}

#[test]
fn hex_all_cases() {
    let r = r1("K", "Secret!");
    let h = hex::encode("Secret!");
    let mixed: String = h
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    for form in [h.clone(), h.to_uppercase(), mixed] {
        assert_eq!(red(&r, &format!("x={form};")), "x=[REDACTED:K];");
    }
}

#[test]
fn base64_standalone_forms() {
    let v = "pa>ss?wo>rd~~"; // produces '+' and '/' in standard base64
    let r = r1("PW", v);
    for enc in [
        STANDARD.encode(v),
        STANDARD_NO_PAD.encode(v),
        URL_SAFE.encode(v),
        URL_SAFE_NO_PAD.encode(v),
    ] {
        assert_eq!(red(&r, &format!("<{enc}>")), "<[REDACTED:PW]>", "{enc}");
    }
    // Basic auth header.
    let basic = STANDARD.encode(format!("user:{v}"));
    let out = red(&r, &format!("Authorization: Basic {basic}\n"));
    assert!(out.starts_with("Authorization: Basic "));
    assert!(out.contains("[REDACTED:PW]\n"), "{out}");
    let kept = &out["Authorization: Basic ".len()..out.find('[').unwrap()];
    // Only characters depending purely on "user:" survive.
    assert!(basic.starts_with(kept));
    assert!(kept.len() <= "user:".len() * 8 / 6);
}

#[test]
fn base64_all_alignments_in_blob() {
    let v = "correct horse battery";
    let r = r1("V", v);
    for pre_len in 0..6usize {
        for post_len in 0..4usize {
            let mut data = vec![0xA5u8; pre_len];
            data.extend_from_slice(v.as_bytes());
            data.extend(std::iter::repeat_n(0x5Au8, post_len));
            for enc in [STANDARD.encode(&data), URL_SAFE_NO_PAD.encode(&data)] {
                let out = red(&r, &format!(" {enc} "));
                // Characters that depend on any bit of the value.
                let first = pre_len * 8 / 6;
                let last = ((pre_len + v.len()) * 8).div_ceil(6);
                let mut rest = &enc[last..];
                if post_len == 0 {
                    rest = rest.trim_start_matches('=');
                }
                let expect = format!(" {}[REDACTED:V]{} ", &enc[..first], rest);
                assert_eq!(out, expect, "pre={pre_len} post={post_len}");
            }
        }
    }
}

#[test]
fn base32_all_alignments_both_alphabets_any_case() {
    let v = "correct horse battery";
    let r = r1("V", v);
    for pre_len in 0..8usize {
        for post_len in 0..6usize {
            let mut data = vec![0xA5u8; pre_len];
            data.extend_from_slice(v.as_bytes());
            data.extend(std::iter::repeat_n(0x5Au8, post_len));
            for enc in [
                data_encoding::BASE32.encode(&data),
                data_encoding::BASE32HEX.encode(&data),
                data_encoding::BASE32.encode(&data).to_ascii_lowercase(),
            ] {
                let out = red(&r, &format!(" {enc} "));
                assert!(
                    out.contains("[REDACTED:V]"),
                    "pre={pre_len} post={post_len}: {out}"
                );
                // What is left decodes to no more than a few bytes of the value:
                // only the characters outside the span that depend on it stay,
                // at most one on each side.
                let first = pre_len * 8 / 5;
                let last = ((pre_len + v.len()) * 8).div_ceil(5);
                assert!(out.starts_with(&format!(" {}", &enc[..first])), "{out}");
                let kept_after = out.rsplit("[REDACTED:V]").next().unwrap_or("");
                assert!(
                    kept_after.trim_end().trim_start_matches('=').len() <= enc.len() - last,
                    "pre={pre_len} post={post_len}: {out}"
                );
            }
        }
    }
}

#[test]
fn rot13_and_utf16_forms() {
    let v = "Sk_live_Rot13Utf16";
    let r = r1("V", v);
    let rot13: String = v
        .chars()
        .map(|c| match c {
            'a'..='z' => (((c as u8 - b'a' + 13) % 26) + b'a') as char,
            'A'..='Z' => (((c as u8 - b'A' + 13) % 26) + b'A') as char,
            c => c,
        })
        .collect();
    assert_eq!(red(&r, &format!("x {rot13} y")), "x [REDACTED:V] y");
    for le in [true, false] {
        let units: Vec<u8> = v
            .encode_utf16()
            .flat_map(|u| if le { u.to_le_bytes() } else { u.to_be_bytes() })
            .collect();
        let hex_lower = hex::encode(&units);
        assert_eq!(red(&r, &format!("<{hex_lower}>")), "<[REDACTED:V]>");
        let hex_upper = hex_lower.to_ascii_uppercase();
        assert_eq!(red(&r, &format!("<{hex_upper}>")), "<[REDACTED:V]>");
        let mut raw = b"<".to_vec();
        raw.extend_from_slice(&units);
        raw.push(b'>');
        assert_eq!(r.redact(&raw).bytes, b"<[REDACTED:V]>".to_vec());
    }
    // Ordinary text, including words that share letters with the value, stays.
    let plain = "live updates via https://example.com, utf16 and rot13 explained";
    assert_eq!(red(&r, plain), plain);
}

#[test]
fn percent_forms() {
    let v = "p@ss w/rd&é";
    let r = r1("P", v);
    let all_upper: String = v.bytes().map(|b| format!("%{b:02X}")).collect();
    let forms = [
        "p%40ss%20w/rd%26%C3%A9".to_string(),   // quote
        "p%40ss%20w%2Frd%26%C3%A9".to_string(), // quote(safe='')
        "p%40ss+w%2Frd%26%C3%A9".to_string(),   // quote_plus
        "p%40ss+w%2frd%26%c3%a9".to_string(),   // lower-case escapes
        all_upper.clone(),
        all_upper.to_lowercase(),
    ];
    for f in forms {
        assert_eq!(
            red(&r, &format!("?q={f}&x=1")),
            "?q=[REDACTED:P]&x=1",
            "{f}"
        );
    }
}

#[test]
fn reversed() {
    let r = r1("R", "abcdéf12");
    assert_eq!(red(&r, "x 21fédcba y"), "x [REDACTED:R] y");
}

#[test]
fn json_escaped_values() {
    let v = "pa\"ss\\wörd\n😀";
    let r = r1("J", v);
    let serde_form = serde_json::to_string(&serde_json::json!({ "k": v })).unwrap();
    assert_eq!(red(&r, &serde_form), "{\"k\":\"[REDACTED:J]\"}");
    // Python json.dumps (ensure_ascii=True).
    let py = "{\"k\": \"pa\\\"ss\\\\w\\u00f6rd\\n\\ud83d\\ude00\"}";
    assert_eq!(red(&r, py), "{\"k\": \"[REDACTED:J]\"}");
    // JSON inside a JSON string.
    let inner = serde_json::to_string(&serde_json::json!({ "k": v })).unwrap();
    let outer = serde_json::to_string(&serde_json::json!({ "result": inner })).unwrap();
    let out = red(&r, &outer);
    assert!(out.contains("[REDACTED:J]"), "{out}");
    assert!(!out.contains("ss"), "{out}");
}

#[test]
fn python_bytes_repr() {
    let v = "naïve-pass";
    let r = r1("B", v);
    assert_eq!(red(&r, "b'na\\xc3\\xafve-pass'"), "b'[REDACTED:B]'");
}

#[test]
fn overlapping_and_nested_secrets() {
    // One value contains another: the longer one wins.
    let r = Redactor::new([("SHORT", "word"), ("LONG", "password123")]);
    assert_eq!(
        red(&r, "password123 word"),
        "[REDACTED:LONG] [REDACTED:SHORT]"
    );
    let (_, counts) = r.redact_str("password123 word word");
    assert_eq!(counts, vec![count("LONG", 1), count("SHORT", 2)]);

    // Partial overlap of two values: merged, nothing survives.
    let r = Redactor::new([("A", "abcdefgh"), ("B", "efghijkl")]);
    let (out, counts) = r.redact_str("-abcdefghijkl-");
    assert_eq!(out, "-[REDACTED:A]-");
    assert_eq!(counts, vec![count("A", 1)]);

    // Same value under two names: deterministic (smaller name).
    let r = Redactor::new([("ZED", "same-value"), ("ALPHA", "same-value")]);
    assert_eq!(red(&r, "same-value"), "[REDACTED:ALPHA]");
    let r = Redactor::new([("ALPHA", "same-value"), ("ZED", "same-value")]);
    assert_eq!(red(&r, "same-value"), "[REDACTED:ALPHA]");

    // Self-overlapping occurrences merge into one marker.
    let r = r1("A", "abab");
    assert_eq!(r.redact_str("xababab").0, "x[REDACTED:A]");
}

#[test]
fn non_utf8_bytes() {
    let r = r1("K", "tok-1234");
    let input = b"\xff\xfe tok-1234 \x80";
    let out = r.redact(input);
    assert_eq!(out.bytes, b"\xff\xfe [REDACTED:K] \x80");
    assert_eq!(out.counts, vec![count("K", 1)]);
}

#[test]
fn stream_equals_one_shot_every_split() {
    let r = Redactor::new([("A", "alpha-secret-1"), ("B", "b3ta/+?"), ("C", "gamma")]);
    let b64 = STANDARD.encode("xxalpha-secret-1yy");
    let sample = format!(
        "start alpha-secret-1 {b64} {} {} gamma gammagamma end",
        hex::encode("b3ta/+?"),
        "b3ta%2F%2B%3F"
    );
    let mut sample = sample.into_bytes();
    sample.push(0xff);
    let sample = &sample[..];
    let expect = r.redact(sample);
    for i in 0..=sample.len() {
        for j in [i, (i + 7).min(sample.len()), sample.len()] {
            let mut s = r.stream();
            let mut out = s.push(&sample[..i]);
            out.extend(s.push(&sample[i..j]));
            out.extend(s.push(&sample[j..]));
            out.extend(s.finish());
            assert_eq!(out, expect.bytes, "split {i} {j}");
            assert_eq!(s.counts(), expect.counts);
        }
    }
    // Byte-at-a-time.
    let mut s = r.stream();
    let mut out = Vec::new();
    for b in sample {
        out.extend(s.push(std::slice::from_ref(b)));
        assert!(s.buffered() < 2 * r.holdback() + 1);
    }
    out.extend(s.finish());
    assert_eq!(out, expect.bytes);
}

#[test]
fn stream_emits_before_finish() {
    let r = r1("K", "secretvalue");
    let mut s = r.stream();
    let big = "x".repeat(10_000);
    let out = s.push(big.as_bytes());
    assert!(out.len() >= 10_000 - r.holdback());
    let empty = Redactor::new([("K", "ab")]);
    let mut s = empty.stream();
    assert_eq!(s.push(b"abc"), b"abc");
    assert!(s.finish().is_empty());
}

#[test]
fn truncate_basic() {
    let r = r1("KEY", "supersecret");
    let input = b"hello supersecret world";
    let (full, cut) = r.redact_truncate(input, 1000);
    assert!(!cut);
    assert_eq!(full.bytes, b"hello [REDACTED:KEY] world");
    // Cap inside the marker: cut before it.
    for cap in 6..20 {
        let (t, cut) = r.redact_truncate(input, cap);
        assert!(cut);
        assert_eq!(t.bytes, b"hello ");
        assert!(t.counts.is_empty());
    }
    let (t, _) = r.redact_truncate(input, 21);
    assert_eq!(t.bytes, b"hello [REDACTED:KEY] ");
    assert_eq!(t.counts, vec![count("KEY", 1)]);
}

#[test]
fn truncate_never_leaves_value_prefix() {
    let r = r1("KEY", "supersecret");
    // Only a prefix of the value is in the kept part: dropped when the
    // marker does not fit.
    let input = b"0123456789 supersecXXXXXXXXXXXXXXXX";
    let (t, cut) = r.redact_truncate(input, 17);
    assert!(cut);
    assert_eq!(t.bytes, b"0123456789 ");
    assert!(t.counts.is_empty());
    // ... and replaced by the marker when it fits (hex form is long).
    let h = hex::encode("supersecret");
    let input = format!("ab {}{}", &h[..20], "z".repeat(50));
    let (t, cut) = r.redact_truncate(input.as_bytes(), 23);
    assert!(cut);
    assert_eq!(t.bytes, b"ab [REDACTED:KEY]");
    assert_eq!(t.counts, vec![count("KEY", 1)]);
    // Fragments shorter than 4 bytes are kept.
    let (t, _) = r.redact_truncate(b"0123456789 supXXXX", 14);
    assert_eq!(t.bytes, b"0123456789 sup");
}

#[test]
fn truncate_utf8_boundary() {
    let r = r1("K", "zzzzzz");
    let input = "ééééé".as_bytes(); // 10 bytes
    for cap in 0..10 {
        let (t, cut) = r.redact_truncate(input, cap);
        assert!(cut);
        assert!(t.bytes.len() <= cap);
        assert!(std::str::from_utf8(&t.bytes).is_ok());
        assert_eq!(t.bytes.len(), cap / 2 * 2);
    }
}

#[test]
fn truncate_hex_prefix_tail() {
    let r = r1("K", "secretvalue");
    let h = hex::encode_upper("secretvalue");
    for k in 0..=h.len() {
        let input = format!("{}{}", "a ".repeat(20), &h[..k]);
        for cap in [30, 40, 43, 44, 50, 52, 55, 60, 1000] {
            let (t, cut) = r.redact_truncate(input.as_bytes(), cap);
            assert_eq!(cut, r.redact(input.as_bytes()).bytes.len() > cap);
            assert!(t.bytes.len() <= cap);
            let s = String::from_utf8(t.bytes).unwrap();
            let tail = s.trim_end_matches("[REDACTED:K]");
            let tail = &tail[tail.len().min(40)..];
            assert!(tail.len() < 4, "k {k} cap {cap}: {s}");
            if s.ends_with(']') {
                assert_eq!(t.counts, vec![count("K", 1)]);
            } else {
                assert!(t.counts.is_empty());
            }
        }
    }
}

#[test]
fn counts_serialize() {
    let c = count("STRIPE_KEY", 2);
    assert_eq!(
        serde_json::to_string(&c).unwrap(),
        "{\"name\":\"STRIPE_KEY\",\"count\":2}"
    );
}

#[test]
fn error_display_has_no_values() {
    let e = RedactError {
        reason: "too big".into(),
    };
    assert_eq!(e.to_string(), "cannot build redaction matcher: too big");
}

#[test]
fn performance_one_mib_twenty_secrets() {
    let secrets: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("SECRET_{i}"),
                format!("v{i}-{}-Zq9", "k".repeat(20 + i)),
            )
        })
        .collect();
    let r = Redactor::new(secrets.clone());
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 1 << 20 {
        text.push_str("INFO request handled in 12ms path=/api/v1/items?id=");
        text.push_str(&i.to_string());
        text.push('\n');
        if i % 1000 == 0 {
            text.push_str(&secrets[i % 20].1);
            text.push('\n');
        }
        i += 1;
    }
    let t = std::time::Instant::now();
    let out = r.redact(text.as_bytes());
    let dt = t.elapsed();
    let total: u64 = out.counts.iter().map(|c| c.count).sum();
    assert_eq!(total as usize, i.div_ceil(1000));
    eprintln!("redacted {} bytes in {dt:?}", text.len());
    // Generous bound so unoptimised test builds pass; release is ~ms.
    assert!(dt.as_secs_f64() < 2.0, "{dt:?}");
}

#[test]
fn build_time_twenty_secrets() {
    let secrets: Vec<(String, String)> = (0..20)
        .map(|i| (format!("S{i}"), format!("sk_live_{i}_{}", "x9Y".repeat(14))))
        .collect();
    let t = std::time::Instant::now();
    let r = Redactor::new(secrets);
    eprintln!(
        "built {:?} in {:?}, max pattern {} bytes",
        r,
        t.elapsed(),
        r.max_pattern_len()
    );
    assert!(!r.is_empty());
}
